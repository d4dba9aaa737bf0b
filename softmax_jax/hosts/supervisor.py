"""Each process of a multi-host run is watched by a small supervisor.

JAX's distributed runtime ends a process from C++ when a peer stops sending
heartbeats, when process 0 (the coordinator) goes away, or when the
coordinator never comes: an abort with a stack dump (exit 134) that Python
cannot catch. So the command, given --coordinator_address, starts itself
again as a child and waits for it. The child's C++ output (file descriptors
1 and 2) goes to a log file in the workdir, its Python output to the
terminal; when it dies, the supervisor reads the log and says in one line
what happened and how to go on. The supervisor forwards Ctrl-C and SIGTERM
to the child (which stops after a checkpoint common to all processes), and
the child dies with it (a SIGKILL of the command reaches the trainer too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import faulthandler
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time
import traceback

from softmax_jax.errors import os_error_advice
from softmax_jax.errors import UserError

# Set in the child: the file descriptors of the terminal's stdout and stderr,
# and the supervisor's pid.
ENV = "SOFTMAX_JAX_SUPERVISED"
JOINED = "softmax_jax: joined the run"  # the child's lines in the log
EXITING = "softmax_jax: exiting with status "
LOGS = "logs"  # under the workdir: a log per process
SESSION = "\n=== "  # starts each run's part of a log: the time, the command
# The runtime's words, in the log, for a peer whose heartbeats stopped and
# for a coordinator that cannot be reached.
_STOPPED_HEARTBEATS = re.compile(
    r"stopped sending heartbeats\):\s*\n\s*([\d,\s]+?)\s*\n")
_COORDINATOR_LOST = "Failed to send RPC to coordination service"
# Collectives failing because a peer went away (gloo on CPUs, NCCL on GPUs).
_COLLECTIVE_FAILED = ("Gloo", "NCCL", "Connection closed by peer",
                      "Connection reset by peer", "UNAVAILABLE")


@dataclasses.dataclass(frozen=True)
class Run:
  """What the supervisor tells the user about: this process and its run."""
  process_id: int | None  # None: found by JAX (--coordinator_address=auto)
  coordinator: str  # host:port, or "auto"
  coordinator_timeout: int
  workdir: Path

  @property
  def log_path(self) -> Path:
    name = (f"process_{self.process_id}" if self.process_id is not None
            else f"{os.uname().nodename}-{os.getpid()}")
    return self.workdir / LOGS / f"{name}.log"

  @property
  def name(self) -> str:
    return ("this process" if self.process_id is None
            else f"process {self.process_id}")


def inside() -> bool:
  """Whether this is the supervised child."""
  return ENV in os.environ


def supervise(argv: list[str], run: Run) -> int:
  """Runs `python argv` as the supervised child; its exit status, or 1 with
  one line on stderr when the runtime or a signal ended it."""
  try:
    run.log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(run.log_path, "ab")  # noqa: SIM115  closed below
  except OSError as e:
    raise UserError(f"cannot write this process's log in --workdir="
                    f"{run.workdir}: {os_error_advice(e)}") from e
  with log:
    log.write(f"{SESSION}{datetime.datetime.now():%Y-%m-%d %H:%M:%S} "
              f"{' '.join(argv)}\n".encode())
    log.flush()
    start = log.tell()
    terminal = (os.dup(1), os.dup(2))
    try:
      child = subprocess.Popen(
          [sys.executable, *argv],
          env={**os.environ,
               ENV: ",".join(map(str, (*terminal, os.getpid())))},
          stdout=log, stderr=log, pass_fds=terminal,
          # Its own process group: a Ctrl-C reaches it once, through us.
          process_group=0)
    finally:
      for fd in terminal:
        os.close(fd)
  with _forwarding_signals(child):
    returncode = child.wait()
  if returncode >= 0:  # it ended itself (its own message is shown)
    return returncode
  with open(run.log_path, "rb") as written:
    written.seek(start)
    text = written.read().decode(errors="replace")
  said = re.search(re.escape(EXITING) + r"(\d+)", text)
  if said:  # ended by the runtime while it exited: its message stands
    return int(said.group(1))
  print(f"error: {explain(text, returncode, run)}", file=sys.stderr)
  return 1


def explain(log_text: str, returncode: int, run: Run) -> str:
  """One line for a child the runtime or a signal ended."""
  where = (f"{run.coordinator}" if run.coordinator != "auto"
           else "the coordinator JAX found")
  details = f"(details: {run.log_path})"
  resume = ("start the same command on every host again to resume from the "
            f"last checkpoint in {run.workdir}")
  if returncode == -signal.SIGKILL:
    return (f"{run.name} was killed (SIGKILL: out of memory, or by hand); "
            f"the others stop too; {resume}")
  if JOINED not in log_text:
    waited_for = ("the other processes" if run.process_id == 0
                  else "process 0")
    return (f"gave up waiting for {waited_for} at {where} after "
            f"{run.coordinator_timeout} s (--coordinator_timeout): start the "
            "same command on every host, with the same --coordinator_address "
            f"and --num_processes and a distinct --process_id {details}")
  lost = _STOPPED_HEARTBEATS.search(log_text)
  ids = ([int(i) for i in re.findall(r"\d+", lost.group(1))] if lost
         else [0] if _COORDINATOR_LOST in log_text else [])
  for i in ids:  # one that ended itself has said why
    words = _last_words(run, i)
    if words:
      return (f"process {i} of the run ended first, saying \"{words}\"; so "
              f"{run.name} stopped; once that is dealt with, {resume} "
              f"{details}")
  if lost:
    names = ", ".join(str(i) for i in ids)
    return (f"process{'es' if len(ids) > 1 else ''} {names} of the run "
            f"{'were' if len(ids) > 1 else 'was'} lost (no heartbeat: killed, "
            f"preempted or out of memory), so {run.name} stopped; {resume} "
            f"{details}")
  if _COORDINATOR_LOST in log_text:
    return (f"process 0 (the coordinator, at {where}) was lost, so "
            f"{run.name} stopped; {resume} {details}")
  reason = (f"signal {signal.Signals(-returncode).name}" if returncode < 0
            else f"exit status {returncode}")
  return f"{run.name} ended abnormally ({reason}); {resume} {details}"


def _last_words(run: Run, process_id: int) -> str | None:
  """What a peer said as it ended itself in this run, from its log in the
  shared workdir, or None if it said nothing there. With
  --coordinator_address=auto, logs are named by host and pid: the peer's is
  the newest whose last session joined as that process."""
  logs = run.workdir / LOGS
  if run.process_id is not None:
    paths = [logs / f"process_{process_id}.log"]
  else:
    try:
      paths = sorted(logs.glob("*.log"), key=lambda p: p.stat().st_mtime,
                     reverse=True)
    except OSError:
      return None
  for path in paths:
    try:
      session = path.read_text(errors="replace").rsplit(SESSION, 1)[-1]
    except OSError:
      continue
    if f"{JOINED} as process {process_id} of " in session:
      said = re.search(re.escape(EXITING) + r"\d+: (.*)", session)
      return said.group(1).strip() if said else None
  return None


def _die_with_parent(parent: int) -> None:
  """In the child: a SIGKILL when the supervisor dies (Linux)."""
  with contextlib.suppress(OSError, AttributeError):
    import ctypes  # pylint: disable=g-import-not-at-top
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig,
                                            signal.SIGKILL)
  if os.getppid() != parent:  # it died before that
    os._exit(1)  # pylint: disable=protected-access


@contextlib.contextmanager
def _forwarding_signals(child: subprocess.Popen):
  def forward(signum, frame):
    del frame
    with contextlib.suppress(ProcessLookupError):
      child.send_signal(signum)
  previous = {sig: signal.signal(sig, forward)
              for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
  try:
    yield
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


# The child's side.


def enter() -> None:
  """In the child: Python's output goes to the terminal; file descriptors 1
  and 2, where the runtime's C++ code writes, go to the log."""
  out, err, parent = map(int, os.environ[ENV].split(","))
  _die_with_parent(parent)
  sys.stdout = os.fdopen(out, "w", buffering=1)
  sys.stderr = os.fdopen(err, "w", buffering=1)


def keep_crash_dumps_in_log() -> None:
  """Python's own dump of a fatal signal (absl turns it on, to the terminal)
  goes to the log instead."""
  faulthandler.enable(file=2)  # fd 2: the log


def log(line: str) -> None:
  """A line in this process's log (the child's fd 2)."""
  os.write(2, (line.rstrip("\n") + "\n").encode())


def joined(process_index: int, process_count: int) -> None:
  log(f"{JOINED} as process {process_index} of {process_count}")


def exiting(code: int, message: str) -> None:
  """The child has said why it ends (on the terminal: message) and exits
  with code; its peers' supervisors may read it here (see explain)."""
  log(f"{EXITING}{code}: {' '.join(message.split())}")


def peer_lost(error: BaseException | None) -> bool:
  """Whether error, or one that caused it, is a collective that failed
  because a peer went away."""
  while error is not None:
    if any(s in str(error) for s in _COLLECTIVE_FAILED):
      return True
    error = error.__cause__ or error.__context__
  return False


def failed(error: BaseException, heartbeat_timeout: int) -> None:
  """In the child, an exception training could not go on from: the
  traceback goes to the log. A collective that failed because a peer went
  away is followed, within the heartbeat timeout, by the runtime ending this
  process (the supervisor then names the lost peer); anything else is shown
  on the terminal. Either way the process ends here without waiting for
  its peers at exit."""
  trace = "".join(traceback.format_exception(error))
  log(trace)
  if peer_lost(error):
    time.sleep(heartbeat_timeout + 30)  # the runtime ends us before
  print(trace, file=sys.stderr, end="", flush=True)
  exiting(1, traceback.format_exception_only(error)[0])
  os._exit(1)  # pylint: disable=protected-access
