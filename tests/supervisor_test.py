"""What the supervisor of a multi-host process says when the runtime ended
it, from the log the runtime left (its own words, as measured with JAX on
gloo)."""

import dataclasses
import os
from pathlib import Path
import signal

from softmax_jax.hosts import supervisor

RUN = supervisor.Run(process_id=0, coordinator="10.0.0.1:1234",
                     coordinator_timeout=300, workdir=Path("/runs/probe"))
JOINED = f"{supervisor.JOINED} as process 0 of 3\n"
ABORTED = -signal.SIGABRT
HEARTBEATS = (
    "E1122 coordination_service.cc:1549] Use error polling to propagate the "
    "following error to all tasks: UNAVAILABLE: The following tasks are "
    "unhealthy (stopped sending heartbeats):\n{}\nThe tasks have crashed.\n")


def test_a_peer_whose_heartbeats_stopped_is_named():
  line = supervisor.explain(JOINED + HEARTBEATS.format("2"), ABORTED, RUN)
  assert line.startswith("process 2 of the run was lost")
  assert "so process 0 stopped" in line
  assert ("start the same command on every host again to resume from the "
          "last checkpoint in /runs/probe") in line
  assert "/runs/probe/logs/process_0.log" in line
  assert "\n" not in line


def test_several_lost_peers():
  line = supervisor.explain(JOINED + HEARTBEATS.format("1,2"), ABORTED, RUN)
  assert line.startswith("processes 1, 2 of the run were lost")


def test_a_lost_coordinator():
  log = JOINED + ("F1122 client.h:80] Terminating process ... UNAVAILABLE: "
                  "Failed to send RPC to coordination service. Either the "
                  "leader task was preempted/died/restarted unexpectedly\n")
  run = supervisor.Run(process_id=1, coordinator="10.0.0.1:1234",
                       coordinator_timeout=300, workdir=Path("/w"))
  line = supervisor.explain(log, ABORTED, run)
  assert line.startswith("process 0 (the coordinator, at 10.0.0.1:1234) was "
                         "lost, so process 1 stopped")


def _joined(process_id: int) -> str:
  return f"{supervisor.JOINED} as process {process_id} of 3\n"


def _peer_log(workdir: Path, name: str, *sessions: str) -> None:
  """A peer's log as its supervisor and the child write it."""
  logs = workdir / supervisor.LOGS
  logs.mkdir(parents=True, exist_ok=True)
  (logs / f"{name}.log").write_text("".join(
      f"{supervisor.SESSION}2026-11-22 10:00:00 launch.py\n{s}"
      for s in sessions))


def test_a_peer_that_ended_itself_is_quoted(tmp_path):
  run = supervisor.Run(process_id=0, coordinator="10.0.0.1:1234",
                       coordinator_timeout=300, workdir=tmp_path)
  said = "error: /data/x_train.npy: x_train row 7, column 3 is nan"
  _peer_log(tmp_path, "process_2",
            f"{_joined(2)}{supervisor.EXITING}2: error: an earlier run's\n",
            f"{_joined(2)}{supervisor.EXITING}2: {said}\n")
  line = supervisor.explain(JOINED + HEARTBEATS.format("2"), ABORTED, run)
  assert line.startswith(f'process 2 of the run ended first, saying "{said}"; '
                         "so process 0 stopped; once that is dealt with, "
                         "start the same command on every host again")
  # The coordinator, too, says why it ended, where its peers read it.
  _peer_log(tmp_path, "process_0",
            f"{_joined(0)}{supervisor.EXITING}1: ValueError: bad\n")
  run_1 = dataclasses.replace(run, process_id=1)
  line = supervisor.explain(JOINED + "Failed to send RPC to coordination "
                            "service\n", ABORTED, run_1)
  assert line.startswith('process 0 of the run ended first, saying '
                         '"ValueError: bad"; so process 1 stopped')


def test_a_peer_that_said_nothing_in_this_run_was_lost(tmp_path):
  """Its words from an earlier run, or from before it joined, are not
  taken for why it ended now."""
  run = supervisor.Run(process_id=0, coordinator="10.0.0.1:1234",
                       coordinator_timeout=300, workdir=tmp_path)
  _peer_log(tmp_path, "process_1",
            f"{_joined(1)}{supervisor.EXITING}2: error: old\n",
            f"{_joined(1)}training...\n")
  line = supervisor.explain(JOINED + HEARTBEATS.format("1"), ABORTED, run)
  assert line.startswith("process 1 of the run was lost (no heartbeat")
  _peer_log(tmp_path, "process_1", f"{supervisor.EXITING}2: error: early\n")
  line = supervisor.explain(JOINED + HEARTBEATS.format("1"), ABORTED, run)
  assert line.startswith("process 1 of the run was lost (no heartbeat")


def test_with_auto_the_peers_log_is_the_newest_that_joined_as_it(tmp_path):
  """--coordinator_address=auto names logs by host and pid."""
  run = supervisor.Run(process_id=None, coordinator="auto",
                       coordinator_timeout=300, workdir=tmp_path)
  _peer_log(tmp_path, "host-b-11",
            f"{_joined(1)}{supervisor.EXITING}2: error: an earlier run's\n")
  _peer_log(tmp_path, "host-c-12", f"{_joined(2)}training...\n")
  _peer_log(tmp_path, "host-b-13",
            f"{_joined(1)}{supervisor.EXITING}2: error: disk full\n")
  os.utime(tmp_path / "logs" / "host-b-11.log", (1, 1))  # the oldest
  line = supervisor.explain(JOINED + HEARTBEATS.format("1"), ABORTED, run)
  assert line.startswith('process 1 of the run ended first, saying "error: '
                         'disk full"; so this process stopped')
  line = supervisor.explain(JOINED + HEARTBEATS.format("2"), ABORTED, run)
  assert line.startswith("process 2 of the run was lost (no heartbeat")


def test_a_coordinator_that_never_came():
  run = supervisor.Run(process_id=1, coordinator="10.0.0.1:1234",
                       coordinator_timeout=30, workdir=Path("/w"))
  line = supervisor.explain("F1122 Connect failed\n", ABORTED, run)
  assert line.startswith("gave up waiting for process 0 at 10.0.0.1:1234 "
                         "after 30 s (--coordinator_timeout)")
  line = supervisor.explain("", ABORTED, RUN)  # process 0 waits for peers
  assert line.startswith("gave up waiting for the other processes at "
                         "10.0.0.1:1234 after 300 s")


def test_this_process_killed():
  line = supervisor.explain(JOINED, -signal.SIGKILL, RUN)
  assert line.startswith("process 0 was killed (SIGKILL")


def test_an_unexplained_end_names_the_signal():
  line = supervisor.explain(JOINED + "something else\n", -signal.SIGSEGV, RUN)
  assert line.startswith("process 0 ended abnormally (signal SIGSEGV)")


def test_the_log_is_named_by_process():
  assert RUN.log_path == Path("/runs/probe/logs/process_0.log")
  auto = supervisor.Run(process_id=None, coordinator="auto",
                        coordinator_timeout=300, workdir=Path("/w"))
  assert auto.log_path.parent == Path("/w/logs")
  assert "the coordinator JAX found" in supervisor.explain("", ABORTED, auto)


def test_a_collective_that_failed_under_another_error_is_a_lost_peer():
  """orbax (or our own handling) may wrap gloo's error in another."""
  try:
    try:
      raise ValueError("UNKNOWN: Gloo AllGather failed: Connection reset by "
                       "peer")
    except ValueError as e:
      raise RuntimeError("cannot write a checkpoint") from e
  except RuntimeError as wrapped:
    assert supervisor.peer_lost(wrapped)
  assert not supervisor.peer_lost(ValueError("a bug of ours"))
