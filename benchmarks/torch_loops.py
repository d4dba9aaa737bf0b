"""The PyTorch loops the benchmarks measure softmax_jax against, on any
device: plain minibatch SGD on in-memory tensors (d2l's model, a probe, one
model of a sweep) and full-batch L-BFGS (torch.optim.LBFGS) along a path.

Only the benchmarks import it (PyTorch is in requirements-bench.txt).
"""

from __future__ import annotations

import time

import numpy as np


def _sync(device) -> None:
  import torch  # pylint: disable=g-import-not-at-top
  if str(device).startswith("cuda"):
    torch.cuda.synchronize()


def _tensor(a, device):
  """The array as a tensor on device (a read-only array, such as a
  memory-mapped npy: file, copied first: PyTorch's tensors are writable)."""
  import torch  # pylint: disable=g-import-not-at-top
  if isinstance(a, torch.Tensor):
    return a.to(device)
  a = np.asarray(a)
  return torch.as_tensor(a if a.flags.writeable else np.array(a),
                         device=device)


def sgd(x, y, x_test, y_test, *, epochs: int, batch: int, lr: float,
        device="cpu", seed: int = 0) -> dict:
  """Softmax regression by minibatch SGD, the fastest plain PyTorch way:
  the arrays as tensors on `device`, minibatches by indexing a permutation,
  cross-entropy, W ~ N(0, 0.01^2). Returns each epoch's seconds (data
  already on the device) and the test accuracy."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  x, y = _tensor(x, device), _tensor(np.asarray(y, np.int64), device)
  k = int(y.max()) + 1
  w = (torch.randn(x.shape[1], k, device=device) * 0.01).requires_grad_()
  b = torch.zeros(k, device=device, requires_grad=True)
  seconds = []
  for _ in range(epochs):
    _sync(device)
    start = time.perf_counter()
    order = torch.randperm(len(x), device=device)
    for i in range(0, len(x) - batch + 1, batch):
      idx = order[i:i + batch]
      loss = torch.nn.functional.cross_entropy(x[idx] @ w + b, y[idx])
      loss.backward()
      assert w.grad is not None and b.grad is not None  # (backward set them)
      with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
        w.grad.zero_()
        b.grad.zero_()
    _sync(device)
    seconds.append(time.perf_counter() - start)
  with torch.no_grad():
    x_test = _tensor(x_test, device)
    y_test = _tensor(np.asarray(y_test, np.int64), device)
    accuracy = float(((x_test @ w + b).argmax(1) == y_test).float().mean())
  return {"epoch_seconds": seconds, "accuracy": accuracy}


def lbfgs_path(x, y, weight_decays, *, tol: float, max_iters: int,
               device="cpu") -> dict:
  """torch.optim.LBFGS (strong Wolfe line search) on mean cross-entropy +
  weight_decay / 2 ||W||^2 (the bias unpenalized), strength after strength
  from the largest, each warm-started from the previous; stops where the
  gradient's largest entry is below tol (PyTorch's test) or at max_iters.
  Returns the seconds and each strength's objective and gradient 2-norm."""
  import torch  # pylint: disable=g-import-not-at-top
  x, y = _tensor(x, device), _tensor(np.asarray(y, np.int64), device)
  k = int(y.max()) + 1
  w = torch.zeros(x.shape[1], k, device=device, requires_grad=True)
  b = torch.zeros(k, device=device, requires_grad=True)
  fits = {}
  _sync(device)
  start = time.perf_counter()
  for wd in sorted(weight_decays, reverse=True):
    def objective(wd=wd):
      return (torch.nn.functional.cross_entropy(x @ w + b, y)
              + wd / 2 * (w * w).sum())
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iters,
                            tolerance_grad=tol, tolerance_change=0,
                            history_size=10, line_search_fn="strong_wolfe")

    def closure(opt=opt, objective=objective):
      opt.zero_grad()
      value = objective()
      value.backward()
      return value
    opt.step(closure)
    value = closure()
    assert w.grad is not None and b.grad is not None  # (closure set them)
    grad_norm = float(torch.sqrt((w.grad ** 2).sum() + (b.grad ** 2).sum()))
    fits[float(wd)] = {"objective": float(value.detach()),
                       "grad_norm": grad_norm,
                       "iterations": int(opt.state[w]["n_iter"])}
  _sync(device)
  seconds = time.perf_counter() - start
  return {"seconds": seconds,
          "fits": [fits[float(wd)] for wd in weight_decays]}
