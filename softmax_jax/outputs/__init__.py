"""Outputs: what a run writes and shows. These modules read a run's results
(outcome.Outcome, train's records) and write them; none computes results.

  workdir.py      the run folder's files: configs, data facts, params.npz,
                  summary.json, results.csv, metrics.jsonl, finished runs
  checkpoint.py   orbax checkpoints of a stack's state (resume, eval)
  report.py       report.md and its figures for a finished run
  plotting.py     the figures (curves, sweeps, confusion, reliability)
  console.py      the terminal: header, progress bar, epoch lines
  tensorboard.py  TensorBoard scalars (tensorboardX)
  atomic_io.py    files written whole or not at all
"""
