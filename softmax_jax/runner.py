"""From configs to a workdir: load data, train (or resume), write every output.

One config is a single run; several are a sweep, whose best by validation
accuracy may then be trained again on all the training data. Every run
checkpoints (after an epoch, at most every `checkpoint_every` seconds, and
at its end) and resumes when started again with the same workdir and
configs; Ctrl-C or SIGTERM stops it after the current epoch, checkpointed.
`evaluate` and `predict` use a finished (or stopped) run's checkpoint. In
multi-host runs every process trains, and only process 0 writes and prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
import signal
import time

import jax
import numpy as np

from softmax_jax import calibration
from softmax_jax import config as config_lib
from softmax_jax import evaluation
from softmax_jax import losses
from softmax_jax import model
from softmax_jax import outcome as outcome_lib
from softmax_jax import results
from softmax_jax import seeds
from softmax_jax import solvers
from softmax_jax import sweep
from softmax_jax import train
from softmax_jax.data import datasets
from softmax_jax.data import feed as feed_lib
from softmax_jax.data import images as images_lib
from softmax_jax.errors import Interrupted
from softmax_jax.errors import UserError
from softmax_jax.hosts import distributed
from softmax_jax.outputs import checkpoint
from softmax_jax.outputs import console
from softmax_jax.outputs import report
from softmax_jax.outputs import tensorboard
from softmax_jax.outputs import workdir as workdir_lib
from softmax_jax.solvers import minibatch
from softmax_jax.solvers import objective


def run(configs: list[config_lib.Config] | config_lib.Config,
        workdir: str | Path | None = None, *, overwrite: bool = False,
        checkpoint_every: float = checkpoint.EVERY_SECONDS,
        refit: bool = False, verbose: bool = True,
        mesh: str = "auto", shard_data: bool = True,
        figures: bool = True) -> dict:
  """Trains the config(s), writes the outputs and returns the summary.

  A checkpoint is written at most every `checkpoint_every` seconds (0: after
  every epoch), after the last epoch and when stopped by a signal. With
  `refit`, a sweep's best configuration is then trained again on all the
  training examples, the validation split included, as a single run in
  workdir/refit; the sweep's summary holds its results under "refit".
  mesh: the devices as "CONFIGSxDATA" (see distributed.make_layout), or auto.
  shard_data: in a multi-host run that splits minibatches across hosts, each
  host holds only its share of the training examples (train.train_configs).
  figures: draw the figures (PNGs in the workdir, shown in report.md); False
  skips them and matplotlib (~0.6 s of a small run).
  """
  configs = _validated(configs)
  options = _Options(checkpoint_every, mesh, shard_data, figures)
  shape = distributed.parse_mesh(mesh)
  for batch_size in {c.batch_size for c in configs}:  # refused before loading
    distributed.make_layout(1, batch_size, shape)
  if not checkpoint_every >= 0:
    raise UserError(f"--checkpoint_every={checkpoint_every} must be a number "
                    "of seconds >= 0 (0 checkpoints every epoch)")
  if refit and len(configs) == 1:
    raise UserError("--refit retrains a sweep's best configuration on all the "
                    "training data; give a sweep (comma lists or --config "
                    "with get_sweep)")
  named = workdir is not None
  # The workdir is held (process 0 holds it) until the refit has written.
  with contextlib.ExitStack() as held:
    # Training, evaluation and the refit: one precision (--matmul_precision).
    held.enter_context(
        jax.default_matmul_precision(configs[0].matmul_precision))
    with _stop_requests() as stop_requested:
      summary, workdir, configs = _train(configs, workdir, overwrite,
                                         options, stop_requested, verbose,
                                         held)
      # Asked during the sweep's last epoch (on any host: all stop alike).
      if refit and distributed.common_decision(stop_requested(), False)[0]:
        raise Interrupted(f"stopped before the refit; the sweep is finished "
                          f"in {workdir}; run {_again(workdir, named)} to "
                          "refit")
    if refit:
      return _refit(configs, summary, workdir, options, verbose)
    return summary


@dataclasses.dataclass(frozen=True)
class _Options:
  """How a run trains, beyond its configurations."""
  checkpoint_every: float
  mesh: str  # "auto" or "CONFIGSxDATA"
  shard_data: bool  # each host holds only its share of the examples
  figures: bool  # draw the figures


def _train(configs, workdir, overwrite, options, stop_requested,
           verbose, held: contextlib.ExitStack):
  """run() without the refit: (summary, workdir, the configs with their
  strengths absolute); the workdir's lock goes into `held`."""
  named = workdir is not None
  c = configs[0]
  if c.data_dir and c.dataset.startswith(datasets.OWN_FILES):
    raise UserError(f"--data_dir={c.data_dir} is for TFDS data sets; "
                    f"--dataset={c.dataset} reads its own files: drop it")
  dataset = _load(configs)
  configs, maxes = objective.in_absolute_units(configs, dataset)
  train.check(configs, dataset)
  single = len(configs) == 1
  writer = distributed.is_main_process()
  if jax.process_count() > 1 and workdir is None:
    raise UserError("a multi-host run needs --workdir, a folder every host "
                    "reaches: its outputs, checkpoints and logs go there")
  resume, finished = False, None
  with distributed.decided_by_process_0():  # the others wait for its verdict
    if writer:
      workdir = held.enter_context(workdir_lib.lock(
          workdir or workdir_lib.default_workdir(
              tag=configs[0].loss if single else "sweep"), "training run"))
      workdir, resume = workdir_lib.prepare(
          workdir, [_recorded(c) for c in configs], overwrite,
          datasets.facts(dataset))
      finished = workdir_lib.read_summary(workdir) if resume else None
      # summary.json is written before the figures and again, with
      # report_seconds, after them: without it the report stage is redone.
      if finished is not None and "report_seconds" not in finished:
        finished = None
  distributed.check_shared(workdir)
  talk = verbose and writer
  if distributed.agree(bool(finished)):  # the same command again: all done
    if talk:
      print(f"{workdir} holds this run, finished; its outputs are there "
            "(--mode=eval recomputes them, --overwrite trains anew)",
            flush=True)
    return finished, workdir, configs
  if talk:
    _print_header(configs, dataset, resume, options)
    if maxes is not None:
      print("--weight_decay_unit=lambda_max: lambda_max = "
            + ", ".join(f"{m:.6g}" for m in sorted(set(maxes)))
            + "; strengths " + ", ".join(f"{c.weight_decay:.4g}"
                                         for c in configs[:8])
            + (" ..." if len(configs) > 8 else ""), flush=True)
  # Every process saves its share of each checkpoint there (orbax).
  checkpoints = Path(workdir) / workdir_lib.CHECKPOINTS
  swept = sweep.swept_fields(configs)
  progress = (console.EpochLog(train.num_rounds(configs[0]), enabled=talk)
              if single else console.SweepProgress(
                  sum(train.num_rounds(c) for c in configs), enabled=talk))
  board = tensorboard.Writer(Path(workdir) / workdir_lib.TENSORBOARD
                             if writer else None)

  def on_epoch(i, record):
    if writer:
      workdir_lib.append_metrics(workdir,
                                 _metrics_record(i, record, configs, swept))
      board.epoch(i, record)
    progress(record)
    if single and talk and "warning" in record:  # a sweep: its status says
      progress.write(f"warning: {record['warning']}")

  try:
    result = train.train_configs(configs, dataset, on_epoch,
                                 checkpoint_dir=checkpoints,
                                 checkpoint_every=options.checkpoint_every,
                                 should_stop=stop_requested,
                                 mesh=distributed.parse_mesh(options.mesh),
                                 shard_data=options.shard_data)
  except train.StopRequested as e:
    raise Interrupted(
        f"stopped after epoch {e.epoch}, its checkpoint saved in {workdir}; "
        f"run {_again(workdir, named)} to resume") from e
  finally:
    progress.close()
    board.close()
  if writer:  # the records of every epoch, also of epochs before a resume
    workdir_lib.write_metrics(workdir, [
        _metrics_record(i, r, configs, swept)
        for i, run_ in enumerate(result.runs) for r in run_.history])
  if single and result.runs[0].status == results.DIVERGED:
    if writer and options.figures:
      workdir_lib.save_curves(workdir, result.runs[0].history,
                              _title(configs[0]))
    raise results.diverged_error(result.runs[0])
  return _write_outputs(configs, dataset, result, workdir if writer else None,
                        talk, final=True,
                        figures=options.figures), workdir, configs


def _refit(configs, summary, workdir, options, verbose) -> dict:
  """Trains the sweep's best config on train + validation; adds its results.

  (Only process 0 is sure to hold the summary, so it names the best.)
  """
  best_id = distributed.from_process_0(
      summary["best"]["config_id"] if summary else 0)
  # All the training data: no validation split is left to calibrate on.
  best_config = dataclasses.replace(configs[best_id], val_fraction=0.0,
                                    calibrate=False)
  where = Path(workdir) / workdir_lib.REFIT if workdir is not None else None
  talk = verbose and distributed.is_main_process()
  if talk:
    print(f"\nrefit: the best configuration on all the training data, in "
          f"{where}", flush=True)
  refit = run(best_config, where, checkpoint_every=options.checkpoint_every,
              verbose=verbose, mesh=options.mesh,
              shard_data=options.shard_data, figures=options.figures)
  if summary is None:  # a process other than 0, on a finished sweep
    return refit
  summary["refit"] = {
      **{k: refit[k] for k in ("test_accuracy", "test_nll", "ece", "num_train",
                               "train_seconds", "compile_seconds")},
      **outcome_lib.solution(refit), "workdir": str(where)}
  if where is not None and distributed.is_main_process():
    workdir_lib.write_summary(workdir, summary)
  if talk:
    best = summary["best"]  # (over seeds: the chosen configuration's mean)
    seeds_ = (f", mean of {best['num_seeds']} seeds" if "num_seeds" in best
              else "")
    unconverged = (f"; NOT converged in --max_iters={best_config.max_iters} "
                   f"(gradient norm {refit['grad_norm']:.3g} > --tol="
                   f"{best_config.tol:g})"
                   if refit.get("converged") is False else "")
    print(f"refit on {refit['num_train']:,} examples: test acc "
          f"{refit['test_accuracy']:.4f} (the sweep's best, trained on "
          f"{summary['num_train']:,}{seeds_}: {best['test_accuracy']:.4f})"
          f"{unconverged}", flush=True)
  return summary


def evaluate(workdir: str | Path, verbose: bool = True,
             figures: bool = True) -> dict:
  """Reloads a run's checkpoint, recomputes its test metrics, redraws figures
  (unless not `figures`).

  report.md keeps the facts of the training run (its times, date, devices)
  from its summary.json; only what is recomputed here changes.
  """
  with workdir_lib.lock(workdir, "evaluation", create=False):
    configs, dataset, result, scored = _restore(workdir)
    recorded = workdir_lib.read_summary(workdir)
    summary = _write_outputs(configs, dataset, result, Path(workdir), verbose,
                             final=False, trained=recorded, figures=figures)
  if verbose and not recorded:  # (summary.json is written when it ends)
    print(f"note: the run in {workdir} has not finished: these are the scores "
          "of its latest checkpoint; run its training command again to finish "
          "it", flush=True)
  if verbose and scored:
    print(f"note: epoch {', '.join(map(str, sorted(set(scored))))}, where it "
          "stopped, was not evaluated in training (--eval_every="
          f"{configs[0].eval_every}): its validation and test scores are "
          "computed now from that epoch's checkpoint", flush=True)
  if verbose and recorded:
    same = recorded.get("test_accuracy") == summary["test_accuracy"]
    print(f"the run's summary.json says test accuracy "
          f"{recorded['test_accuracy']:.4f}: "
          f"{'the same' if same else 'DIFFERENT'}", flush=True)
  return summary


def predict(workdir: str | Path, image_paths: list[str], top: int = 3
            ) -> list[tuple[str, list[tuple[str, float]]]]:
  """Each input's name (an image, or a row of a .npy array) with its top
  classes and probabilities under a run (calibrated by its temperature if
  it was trained with --calibrate)."""
  return predict_calibrated(workdir, image_paths, top)[0]


def predict_calibrated(workdir: str | Path, image_paths: list[str],
                       top: int = 3):
  """predict's ranking, and the temperature its probabilities are
  calibrated by (None: not calibrated)."""
  with workdir_lib.lock(workdir, "prediction", create=False):
    trained = _trained_model(workdir)
  params, facts = trained
  # A model trained on rows of features (a linear probe on embeddings)
  # predicts on .npy arrays of such rows.
  x_NxD, names = images_lib.load(
      image_paths, facts.get("image_shape") or (model.input_width(params),),
      facts.get("pixels"))
  if facts.get("feature_mean") is not None:  # trained with --standardize
    x_NxD = (x_NxD - facts["feature_mean"]) / facts["feature_std"]
  logits = np.asarray(model.logits(params, x_NxD)) / (
      facts.get("temperature") or 1.0)
  probs = np.asarray(losses.softmax(logits))
  ranked = []
  for name, row, p in zip(names, logits, probs, strict=True):
    best = np.argsort(-row, kind="stable")[:top]  # ties: the lower class
    ranked.append((name, [(facts["class_names"][k], float(p[k]))
                          for k in best]))
  return ranked, facts.get("temperature")


def _trained_model(workdir) -> tuple[model.Params, dict]:
  """The params and facts (workdir.MODEL_FACTS) of the model a run wrote
  to params.npz, which needs no data; for a run without one (unfinished, or
  written before it held the facts), of its latest checkpoint, with the
  facts of its data."""
  stored = workdir_lib.read_model(workdir)
  if stored is not None:
    leaves, facts = stored
    params = model.params_from_arrays(leaves)
    if params is not None:
      return params, facts
  configs, dataset, result, _ = _restore(workdir)
  best = outcome_lib.best_index(
      result, None if dataset.x_val is None else len(dataset.x_val))
  params = result.runs[best].params
  temperature = calibrated_temperature(workdir)
  if temperature is None and configs[best].calibrate:  # (unfinished: no
    # summary yet) fit as the finished run and --mode=eval fit it
    fitted = calibration.calibrate([params], dataset)[0]
    temperature = None if fitted is None else fitted["temperature"]
  return params, _model_facts(dataset, temperature)


def _model_facts(dataset: datasets.Dataset, temperature: float | None) -> dict:
  """What a model needs beside its params to predict (workdir.MODEL_FACTS):
  None where it does not apply."""
  return {"class_names": list(dataset.class_names),
          "feature_mean": dataset.feature_mean,
          "feature_std": dataset.feature_std, "pixels": dataset.pixels,
          "image_shape": dataset.image_shape, "temperature": temperature}


def calibrated_temperature(workdir: str | Path) -> float | None:
  """The temperature of the run in workdir if it was trained with
  --calibrate (its summary.json says), else None."""
  summary = workdir_lib.read_summary(workdir) or {}
  return (summary.get("calibration") or {}).get("temperature")


def _validated(configs) -> list[config_lib.Config]:
  if isinstance(configs, config_lib.Config):
    configs = [configs]
  for c in configs:
    c.validate()
  first: dict[config_lib.Config, int] = {}
  for i, c in enumerate(configs):
    if c in first:  # (it would train twice and be reported as one)
      raise UserError(f"configurations {first[c]} and {i} of the sweep are "
                      "the same: a swept flag or the --config file's "
                      "sweep lists a value twice (e.g. --lr=0.1,0.1); give "
                      "each value once")
    trained = solvers.trained_as(c)
    if trained in first:  # (the same solution twice, as if seeds agreed)
      raise UserError(
          f"configurations {first[trained]} and {i} of the sweep are the "
          f"same --optimizer={c.optimizer} run: it reads none of "
          f"{', '.join(solvers.get(c.optimizer).UNREAD)}; give each once "
          "(sweep.expand does)")
    first[c] = first[trained] = i
  return list(configs)


def _recorded(c: config_lib.Config) -> dict:
  """A config as configs.json records it: its data's paths absolute (eval
  and predict find the data from any directory)."""
  return config_lib.to_dict(dataclasses.replace(
      c, dataset=datasets.absolute(c.dataset),
      test_csv=datasets.absolute_path(c.test_csv),
      data_dir=datasets.absolute_path(c.data_dir)))


def _load(configs) -> datasets.Dataset:
  """The data set, with the validation split a run or sweep uses."""
  config_lib.check_run_wide(configs)  # (before the data is read)
  c = configs[0]
  fraction = c.val_fraction
  if len(configs) > 1:
    if fraction is None:
      fraction = sweep.DEFAULT_VAL_FRACTION
    elif fraction == 0:
      raise UserError("a sweep chooses its best configuration on a validation "
                      "split: give --val_fraction > 0 (default 1/6)")
  dataset = datasets.load(c.dataset, c.data_dir or None, c.test_csv, c.pixels)
  if dataset.x_val is not None:  # the data's own validation split
    if c.val_fraction:
      raise UserError(f"{c.dataset} has its own validation split (x_val), "
                      f"and val_fraction={c.val_fraction} would hold out "
                      "another: drop --val_fraction (--val_fraction=auto "
                      "overrides a --config file's)")
    if c.val_fraction == 0:  # none held out: train on it too (e.g. a refit)
      dataset = datasets.without_validation(dataset)
    fraction = 0
  if fraction:
    dataset = datasets.hold_out_validation(dataset, fraction)
  dataset = datasets.with_class_weight(dataset, c.class_weight)
  return datasets.standardize(dataset) if c.standardize else dataset


def _restore(workdir):
  """The configs, data and checkpointed state of the run in workdir, and
  the epochs whose scores were computed here (see _score_unscored)."""
  workdir = Path(workdir)
  recorded = workdir_lib.read_configs(workdir)
  if recorded is None:
    raise UserError(f"--workdir={workdir} holds no run ({workdir_lib.CONFIGS} "
                    "is missing); give the workdir of a training run")
  try:
    configs = _validated([config_lib.Config(**c) for c in recorded])
  except TypeError as e:
    raise UserError(f"{workdir / workdir_lib.CONFIGS} is not a run's record: "
                    f"{e}") from e
  dataset = _load(configs)
  workdir_lib.check_same_data(workdir, datasets.facts(dataset))
  result = train.train_configs(
      configs, dataset, checkpoint_dir=workdir / workdir_lib.CHECKPOINTS,
      restore_only=True)
  return configs, dataset, result, _score_unscored(result, dataset)


def _score_unscored(result: results.SweepResult,
                    dataset: datasets.Dataset) -> list[int]:
  """Training scores every --eval_every epochs (and the last), so a run
  stopped between two evaluations has a last record without scores: they
  are computed from its restored model, the params of that same epoch, and
  put in that record. Returns the epochs so scored."""
  splits = {"test": (dataset.x_test, dataset.y_test),
            "val": (dataset.x_val, dataset.y_val)}
  scored = []
  for run_ in result.runs:
    last = run_.history[-1]
    if "test_accuracy" in last:
      continue
    for split, (x, y) in splits.items():
      if x is None:  # no validation split
        continue
      scores = jax.device_get(_evaluate(run_.params, x, y))
      last.update({f"{split}_{k}": float(v) for k, v in scores.items()})
    scored.append(last["epoch"])
  return scored


_evaluate = jax.jit(evaluation.evaluate)


def _write_outputs(configs, dataset, result, workdir, verbose, final,
                   trained=None, figures=True) -> dict:
  """Concludes the run (outcome.conclude) and shows it: its summary,
  figures (where `figures`) and report; `final` also writes params and
  summary.json, before any figure. workdir None: a process that writes
  nothing."""
  started = time.perf_counter()
  try:
    outcome = outcome_lib.conclude(configs, dataset, result, final=final,
                                   trained=trained)
  except outcome_lib.NoUsableModel as e:  # still keep the table
    if not e.rows or workdir is None or not final:
      raise
    workdir_lib.write_results(workdir, e.rows, sweep.swept_fields(configs))
    raise UserError(f"{e}; each one's status and last scores are in "
                    f"{Path(workdir) / workdir_lib.RESULTS}") from e
  summary, best = outcome.summary, outcome.best
  if workdir is None:
    return summary
  if final:  # the model and its numbers before any figure
    calibrated = summary.get("calibration")
    workdir_lib.save_params(workdir, best.params, _model_facts(
        dataset, calibrated["temperature"] if calibrated else None))
    workdir_lib.write_summary(workdir, summary)
  ranking = _ranking(outcome)
  drawn = []
  if outcome.single:
    if figures and workdir_lib.save_curves(workdir, best.history,
                                           _title(best.config)):
      drawn.append(workdir_lib.CURVES)
  else:
    workdir_lib.write_results(workdir, outcome.rows, outcome.swept)
    if outcome.aggregated:
      workdir_lib.write_results_by_config(
          workdir, outcome.aggregated,
          seeds.columns(outcome.aggregated, outcome.swept))
    if figures and workdir_lib.save_sweep_plot(
        workdir, outcome.aggregated or outcome.rows, outcome.swept):
      drawn.append(workdir_lib.SWEEP_PLOT)
  if figures:
    drawn += report.write_figures(workdir, outcome.analysis, best.params,
                                  dataset.x_test, dataset.image_shape)
  title = (_title(best.config) if outcome.single else
           f"Sweep of {len(configs)} configurations; the best: "
           f"{_title(best.config)}")
  report.write_markdown(workdir, title, summary, drawn, ranking=ranking)
  if final:
    # Evaluation of the final model, figures and report (not in report.md).
    summary["report_seconds"] = time.perf_counter() - started
    workdir_lib.write_summary(workdir, summary)
  if verbose:
    if ranking:
      print(ranking, flush=True)
    print(console.format_evaluation(summary), flush=True)
    if final:
      print((console.format_summary(summary, workdir) if outcome.single else
             console.format_sweep_summary(summary, workdir)), flush=True)
  return summary


def _ranking(outcome: outcome_lib.Outcome) -> str:
  """A sweep's ranking, as the terminal and report.md show it."""
  if outcome.aggregated:
    return console.format_seed_ranking(
        sorted(outcome.aggregated, key=seeds.rank_key), outcome.swept)
  if outcome.rows:
    return console.format_ranking(
        sorted(outcome.rows, key=outcome_lib.rank_key), outcome.swept)
  return ""


def _metrics_record(i: int, record: dict, configs, swept) -> dict:
  if len(configs) == 1:
    return record
  return {"config_id": i, **{f: getattr(configs[i], f) for f in swept},
          **record}


@contextlib.contextmanager
def _stop_requests():
  """Turns the first Ctrl-C or SIGTERM into a stop after the current epoch,
  checkpointed."""
  requested = []

  def handler(signum, frame):
    del frame
    if requested:  # a second one: stop now
      raise KeyboardInterrupt
    requested.append(signum)
    print("\nstopping after this epoch's checkpoint (again to stop at once)",
          flush=True)

  previous = {}
  try:
    for sig in (signal.SIGINT, signal.SIGTERM):
      previous[sig] = signal.signal(sig, handler)
  except ValueError:  # not the main thread: leave signals alone
    pass
  try:
    yield lambda: bool(requested)
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


def _again(workdir, named: bool) -> str:
  """How to run the same command again on this workdir: a run given none
  made a new folder, which the command must now name."""
  command = ("the same command" if named
             else f"the same command with --workdir={workdir}")
  return (f"{command} on every host again" if jax.process_count() > 1
          else f"{command} again")


def _print_header(configs, dataset, resume, options) -> None:
  c = configs[0]
  # (held out, or the data's own x_val)
  val = (f" ({len(dataset.x_val):,} for validation)"
         if dataset.x_val is not None else "")
  print(f"{c.dataset}: {len(dataset.x_train):,} train{val} / "
        f"{len(dataset.x_test):,} test examples, {dataset.num_features} "
        f"features ({outcome_lib.inputs(dataset)}), {dataset.num_classes} "
        f"classes; {distributed.describe()}",
        flush=True)
  budget = feed_lib.budget_bytes(c.device_memory_gb)
  if feed_lib.streams(dataset.x_train, budget):
    assert budget is not None  # streams() is true only with a budget
    print(f"the training features ({dataset.x_train.nbytes / 2**30:.2f} GiB) "
          f"exceed half the device memory budget ({budget / 2**30:.2f} GiB): "
          "minibatches stream from host memory", flush=True)
  if len(configs) > 1:
    swept = sweep.swept_fields(configs)
    groups = len(sweep.groups(configs))
    print(f"sweep over {', '.join(swept)}: {len(configs)} configurations in "
          f"{groups} compiled group{'s' if groups > 1 else ''}", flush=True)
    full = sorted({c.optimizer for c in configs
                   if solvers.full_batch(c.optimizer)})
    unread = [f for f in swept
              if full and not any(solvers.reads(o, f) for o in full)]
    if unread:  # (sweep.expand kept each of theirs once)
      print(f"--optimizer={'/'.join(full)} reads no {', '.join(unread)}: "
            "each of its configurations runs once"
            + (", without a spread over seeds" if "seed" in unread else ""),
            flush=True)
  if jax.device_count() > 1:
    layouts = [(distributed.make_layout(
        len(indices), configs[indices[0]].batch_size,
        distributed.parse_mesh(options.mesh)), [configs[i] for i in indices])
               for indices in sweep.groups(configs)]
    meshes = dict.fromkeys(f"{layout.rows}x{layout.columns}"
                           for layout, _ in layouts)
    print(f"device mesh (configurations x data): {', '.join(meshes)}",
          flush=True)
    shares = {minibatch.host_share(group, layout, len(dataset.x_train),
                                   options.shard_data)
              for layout, group in layouts
              if not solvers.full_batch(group[0].optimizer)}
    for count, shard in shares:
      if shard:
        print(f"each host holds only its share of the training examples: "
              f"{shard.size:,} of {len(dataset.x_train):,} ({count} shares)",
              flush=True)
  if resume:
    print("resuming from the workdir's checkpoints", flush=True)


def _title(config: config_lib.Config) -> str:
  """The figures' and report's title: the settings this solver reads."""
  settings = (f"weight decay {config.weight_decay:g}"
              if solvers.full_batch(config.optimizer)
              else f"lr {config.lr:g}, batch {config.batch_size}")
  return (f"{config.dataset}, loss {config.loss}, {config.optimizer} "
          f"{settings}")
