"""The command line: `python launch.py --loss=xent` or, installed,
`softmax-jax --loss=xent`.

Flags override the fields of the experiment config (--config, default: the
d2l ch. 3 setup). A comma-separated list makes a sweep axis:
`--loss=xent,l2 --lr=0.1,1` trains 4 configurations. Every mistake in the
input ends in one line on stderr and exit status 2; --debug shows the
traceback instead.
"""

import atexit
import contextlib
import os
from pathlib import Path
import sys
import threading

from absl import app
from absl import flags
from absl import logging

from softmax_jax import config as config_lib
from softmax_jax.errors import Interrupted
from softmax_jax.errors import UserError

_DEFAULTS = config_lib.Config()
for _name in config_lib.FIELDS:
  _default = getattr(_DEFAULTS, _name)
  if isinstance(_default, bool):
    flags.DEFINE_bool(_name, _default, config_lib.HELP[_name])
  else:
    flags.DEFINE_string(_name, "auto" if _default is None else str(_default),
                        config_lib.HELP[_name])
flags.DEFINE_string("config", None, "Experiment file with get_config() (and "
                    "optionally get_sweep()), e.g. experiments/loss_sweep.py; "
                    "flags override its fields.")
flags.DEFINE_string("workdir", None,
                    "Output folder (default: a new folder under runs/); the "
                    "same configuration there resumes, another is refused "
                    "unless --overwrite.")
flags.DEFINE_bool("overwrite", False,
                  "Replace the outputs of a run in --workdir.")
flags.DEFINE_bool("refit", False, "After a sweep, train its best "
                  "configuration again on all the training data (validation "
                  "split included), in WORKDIR/refit.")
flags.DEFINE_float("checkpoint_every", None, "Least seconds between two "
                   "checkpoints (default 10; 0: after every epoch); the last "
                   "epoch and a stop by Ctrl-C/SIGTERM are always "
                   "checkpointed.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "predict", "prepare_data"],
                  "train (or resume) a run; eval: reload --workdir's "
                  "checkpoint, recompute the test metrics and redraw the "
                  "figures; predict: classify --images with --workdir's "
                  "model; prepare_data: only prepare and cache the data set.")
flags.DEFINE_bool("figures", True, "Draw the run's figures (learning curves "
                  "or the sweep's plot, reliability, confusion, predictions, "
                  "weights) as PNGs in the workdir, shown in report.md; "
                  "--nofigures skips them, and matplotlib (~0.6 s of a small "
                  "run); --mode=eval draws them later.")
flags.DEFINE_list("images", None,
                  "--mode=predict: image files (PNG, JPEG, ...; converted to "
                  "the model's channels and size) or .npy arrays.")
flags.DEFINE_bool("debug", False, "Show full tracebacks.")
flags.DEFINE_string("coordinator_address", None, "Multi-host runs: host:port "
                    "of process 0, the same on every host; 'auto' on TPU pod "
                    "slices and SLURM/Open MPI clusters.")
flags.DEFINE_integer("num_processes", None,
                     "Multi-host runs: number of processes.")
flags.DEFINE_integer("process_id", None,
                     "Multi-host runs: this process's index.")
flags.DEFINE_integer("coordinator_timeout", 300, "Multi-host runs: seconds "
                     "to wait for the other processes to join before giving "
                     "up.")
flags.DEFINE_integer("heartbeat_timeout", 60, "Multi-host runs: seconds "
                     "without a heartbeat after which a process is taken for "
                     "lost; the others then stop (restart them all to "
                     "resume).")
flags.DEFINE_bool("shard_data", True, "Multi-host runs that split each "
                  "minibatch across hosts: each host holds only its share of "
                  "the training examples (--noshard_data: all of them; the "
                  "minibatches are the same).")
flags.DEFINE_string("mesh", "auto", "Multi-device runs: the device mesh as "
                    "CONFIGSxDATA, e.g. 4x2: the configurations split over 4 "
                    "device rows, each minibatch over 2 (auto: chosen from "
                    "the number of configurations and devices).")
FLAGS = flags.FLAGS


def build_configs():
  from softmax_jax import sweep  # pylint: disable=g-import-not-at-top
  base, file_sweep = (config_lib.load_experiment(FLAGS.config) if FLAGS.config
                      else (config_lib.Config(), []))
  texts = {n: str(FLAGS[n].value) for n in config_lib.FIELDS
           if FLAGS[n].present}
  dataset = texts.get("dataset", base.dataset)
  if "," not in dataset:  # (a list is refused as a sweep axis below)
    from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
    # A data set that cannot be had is refused before JAX is even imported.
    datasets.check_available(dataset,
                             texts.get("data_dir", base.data_dir) or None)
  return sweep.build(base, file_sweep, texts)


def _show_notes():
  """softmax_jax's own warnings (e.g. a checkpoint skipped) as 'note:' lines."""
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  handler = std_logging.StreamHandler(sys.stderr)
  handler.setFormatter(std_logging.Formatter("note: %(message)s"))
  log = std_logging.getLogger("softmax_jax")
  log.addHandler(handler)
  log.setLevel(std_logging.INFO)
  log.propagate = False


def _use_compilation_cache():
  """Keeps compiled programs on disk: a repeated run skips most compilation."""
  import os  # pylint: disable=g-import-not-at-top

  import jax  # pylint: disable=g-import-not-at-top
  cache = os.environ.get("SOFTMAX_JAX_COMPILATION_CACHE",
                         os.path.expanduser("~/.cache/softmax_jax/xla"))
  if cache:  # "" turns the cache off
    jax.config.update("jax_compilation_cache_dir", cache)
    # Every program however small, unless JAX's own environment variables
    # say otherwise (the tests keep only those over 0.2 s: see conftest.py).
    for name in ("jax_persistent_cache_min_compile_time_secs",
                 "jax_persistent_cache_min_entry_size_bytes"):
      if name.upper() not in os.environ:
        jax.config.update(name, 0)


# Flags that only some modes read; elsewhere they would be silently ignored.
_TRAINING_FLAGS = ("config", "overwrite", "refit", "checkpoint_every", "mesh",
                   "shard_data")


def _refuse_flags_without_effect():
  """A flag that would change nothing in this combination is refused."""

  def given(name):
    return FLAGS[name].present

  mode = FLAGS.mode
  if given("workdir") and not FLAGS.workdir.strip():
    raise UserError("--workdir is empty (an unset shell variable?); give a "
                    "folder, or drop the flag for a new one under runs/")
  if given("images") and mode != "predict":
    raise UserError("--images is for --mode=predict; drop it or add "
                    "--mode=predict")
  if mode in ("eval", "predict"):
    for name in (*config_lib.FIELDS, *_TRAINING_FLAGS):
      if given(name):
        raise UserError(f"--{name} has no effect with --mode={mode}: it uses "
                        "the run's own configuration, recorded in --workdir")
  if given("figures") and mode in ("predict", "prepare_data"):
    raise UserError(f"--figures has no effect with --mode={mode}, which "
                    "draws none; drop it")
  if mode == "prepare_data":
    for name in (*config_lib.FIELDS, *_TRAINING_FLAGS, "workdir"):
      if given(name) and name not in (*config_lib.DATA_FIELDS, "config"):
        raise UserError(f"--{name} has no effect with --mode=prepare_data, "
                        "which only prepares the data set")
  for name in ("num_processes", "process_id", "coordinator_timeout",
               "heartbeat_timeout", "shard_data"):
    if given(name) and not FLAGS.coordinator_address:
      raise UserError(f"--{name} is for multi-host runs; give "
                      "--coordinator_address too (or drop it)")
  if FLAGS.coordinator_address:
    if mode != "train":
      raise UserError(f"--coordinator_address is for training runs; "
                      f"--mode={mode} runs on one host (drop it)")
    if not FLAGS.workdir:
      raise UserError("a multi-host run needs --workdir, a folder every host "
                      "reaches (the same path on every host): its outputs, "
                      "checkpoints and logs go there")
    for name in ("coordinator_timeout", "heartbeat_timeout"):
      if FLAGS[name].value < 1:
        raise UserError(f"--{name}={FLAGS[name].value} must be at least 1 "
                        "(seconds)")
  if given("overwrite") and FLAGS.overwrite and not FLAGS.workdir:
    raise UserError("--overwrite replaces the run in --workdir, and none was "
                    "given (a new folder under runs/ is made); give --workdir")


def _refuse_config_flags_without_effect(configs):
  """Config flags that no configuration of the run would read."""
  from softmax_jax import solvers  # pylint: disable=g-import-not-at-top
  used = sorted({c.optimizer for c in configs})
  unread = dict.fromkeys(f for solver in solvers.REGISTRY.values()
                         for f in solver.UNREAD)
  for name in unread:
    if FLAGS[name].present and not any(solvers.reads(o, name) for o in used):
      readers = [o for o in solvers.REGISTRY if solvers.reads(o, name)]
      how = (", which solves on the full batch from W = 0" if all(
          solvers.full_batch(o) for o in used) else "")
      raise UserError(f"--{name} has no effect with --optimizer="
                      f"{'/'.join(used)}{how}; it is for --optimizer="
                      f"{'/'.join(readers)}: drop it")
  if FLAGS["huber_delta"].present and all(c.loss != "huber" for c in configs):
    raise UserError("--huber_delta has no effect without --loss=huber")
  if FLAGS["l1_ratio"].present and all(c.penalty != "elasticnet"
                                       for c in configs):
    raise UserError("--l1_ratio has no effect without --penalty=elasticnet")
  if FLAGS["loss_input"].present and all(c.loss == "xent" for c in configs):
    raise UserError("--loss_input has no effect with --loss=xent, which is "
                    "always computed from the logits; it is for l2, l1 and "
                    "huber")


def main(argv):
  if not FLAGS.debug:  # JAX, TFDS and orbax log chatter a user cannot act on
    logging.set_verbosity(logging.FATAL)
  _show_notes()
  if len(argv) > 1:
    raise UserError(f"unexpected argument {argv[1]!r}; flags look like "
                    "--loss=xent")
  _refuse_flags_without_effect()
  if FLAGS.coordinator_address:  # before any other JAX call
    _join_multi_host_run()
  if FLAGS.mode in ("eval", "predict"):
    _use_compilation_cache()
    _use_trained_model()
    return
  configs = build_configs()
  if FLAGS.mode == "train":
    _refuse_config_flags_without_effect(configs)
  if FLAGS.mode == "prepare_data":
    from softmax_jax.data import datasets  # pylint: disable=g-import-not-at-top
    c = configs[0]
    dataset = datasets.load(c.dataset, c.data_dir or None, c.test_csv, c.pixels)
    data_dir = c.data_dir or datasets.default_data_dir()
    cached = ("" if c.dataset.startswith(datasets.USER_DATA) else ", cached in "
              f"{datasets.cache_path(c.dataset, data_dir)}")
    print(f"{c.dataset} ready: {len(dataset.x_train):,} train / "
          f"{len(dataset.x_test):,} test examples{cached}")
    return
  _use_compilation_cache()
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  every = FLAGS.checkpoint_every
  runner.run(configs, FLAGS.workdir, overwrite=FLAGS.overwrite,
             refit=FLAGS.refit, mesh=FLAGS.mesh, shard_data=FLAGS.shard_data,
             figures=FLAGS.figures,
             **({} if every is None else {"checkpoint_every": every}))


def _join_multi_host_run():
  """Runs this command again under a supervisor (supervisor.py), and there
  joins the run."""
  from softmax_jax.hosts import supervisor  # pylint: disable=g-import-not-at-top
  address = FLAGS.coordinator_address
  timeout = FLAGS.coordinator_timeout
  if not supervisor.inside():
    sys.exit(supervisor.supervise(sys.argv, supervisor.Run(
        process_id=FLAGS.process_id, coordinator=address,
        coordinator_timeout=timeout, workdir=Path(FLAGS.workdir).absolute())))
  supervisor.keep_crash_dumps_in_log()
  if address == "auto":
    print(f"waiting for the run's processes (found by JAX), up to {timeout} s",
          flush=True)
  elif FLAGS.process_id == 0:
    print(f"waiting for the other processes at {address}, up to {timeout} s",
          flush=True)
  else:
    print(f"waiting for process 0 at {address}, up to {timeout} s", flush=True)
  from softmax_jax.hosts import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize(address, FLAGS.num_processes, FLAGS.process_id,
                         coordinator_timeout=timeout,
                         heartbeat_timeout=FLAGS.heartbeat_timeout)
  import jax  # pylint: disable=g-import-not-at-top
  supervisor.joined(jax.process_index(), jax.process_count())


def _use_trained_model():
  if not FLAGS.workdir:
    raise UserError(f"--mode={FLAGS.mode} needs --workdir, the folder of a "
                    "training run")
  from softmax_jax import runner  # pylint: disable=g-import-not-at-top
  if FLAGS.mode == "eval":
    runner.evaluate(FLAGS.workdir, figures=FLAGS.figures)
    return
  if not FLAGS.images:
    raise UserError("--mode=predict needs --images=a.png,b.png or "
                    "--images=file.npy")
  predictions, temperature = runner.predict_calibrated(FLAGS.workdir,
                                                       FLAGS.images)
  if temperature is not None:
    print(f"probabilities calibrated by temperature scaling: T = "
          f"{temperature:.4g}, fit on the validation split (--calibrate)")
  for name, top in predictions:
    print(f"{name}: " + ", ".join(f"{label} {p:.3f}" for label, p in top))


def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}; see --helpfull", file=sys.stderr)
    sys.exit(2)


def _main_reporting_errors(argv):
  from softmax_jax.hosts import supervisor  # pylint: disable=g-import-not-at-top
  try:
    main(argv)
  except Interrupted as e:
    _exit(str(e), 130)
  except UserError as e:
    if FLAGS.debug:
      raise
    if supervisor.inside() and supervisor.peer_lost(e):
      supervisor.failed(e, FLAGS.heartbeat_timeout)
    _exit(f"error: {e}", 2, at_once=supervisor.inside())
  except KeyboardInterrupt:
    _exit("interrupted; run the same command again to resume from the last "
          "checkpoint" + ("" if FLAGS.workdir else
                          ", with --workdir= the run's folder (under runs/, "
                          "named above)"), 130, at_once=supervisor.inside())
  except Exception as e:
    if supervisor.inside():  # a multi-host process: maybe a peer was lost
      supervisor.failed(e, FLAGS.heartbeat_timeout)
    raise


def _exit(message: str, code: int, at_once: bool = False):
  """Says why the command ends, and ends it. A multi-host process that ends
  alone goes `at_once`: JAX's shutdown barrier would keep it at exit while
  its peers wait for it in a collective. They learn of it within the
  heartbeat timeout, and show its line (supervisor.explain)."""
  from softmax_jax.hosts import supervisor  # pylint: disable=g-import-not-at-top
  print(message, file=sys.stderr, flush=True)
  if supervisor.inside():  # said: the supervisor adds nothing if it ends now
    supervisor.exiting(code, message)
  if at_once:  # without waiting for the peers at exit
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


def run():
  """Parses the flags and trains, evaluates or predicts; exits on an error."""
  # absl's --help shows __main__'s docstring: this one, whichever script
  # (launch.py, the softmax-jax command) started us.
  sys.modules["__main__"].__doc__ = __doc__
  from softmax_jax.hosts import supervisor  # pylint: disable=g-import-not-at-top
  if supervisor.inside():
    supervisor.enter()
  try:
    app.run(_main_reporting_errors, flags_parser=_parse_flags)
  except SystemExit as e:
    _end(e)


def _end(ending: SystemExit):
  """Ends the process as the interpreter would, less its finalization: the
  threads it waits for are joined (idle thread pools told to end), the exit
  handlers run (JAX's among them: a multi-host run's distributed
  shutdown), the streams are flushed, and os._exit skips the teardown of
  every module and object, which frees nothing the OS does not (XLA's
  client, its compiled programs): 0.36-0.41 s of a ~3 s warm d2l run,
  measured 2026-12-04. Everything the run wrote is closed by then
  (checkpoint.Checkpointer.close waits for the last one). An exit with a
  message, not a code, ends as Python ends it, and so does a process under
  a profiler or a debugger (python -m cProfile, pdb), which has more to do
  once the command returns."""
  code = ending.code
  if ((code is not None and not isinstance(code, int))
      or sys.getprofile() is not None or sys.gettrace() is not None):
    raise ending
  # What Python's own exit runs first: thread pools told to finish, then
  # every non-daemon thread joined.
  threading._shutdown()  # type: ignore[attr-defined]  # pylint: disable=protected-access
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr):
    with contextlib.suppress(OSError, ValueError):  # a closed pipe
      stream.flush()
  os._exit(code or 0)  # pylint: disable=protected-access
