"""benchmarks/kernels.py's reading of JAX's profiler trace: each kernel XLA
ran, its time per epoch, the tracer's and runtime's own events left out."""

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import kernels


def test_kernel_seconds_adds_up_each_kernel_per_epoch(tmp_path):
  step = jax.jit(lambda a, b: jnp.tanh(a @ b).sum())
  a = jnp.ones((256, 256))
  step(a, a).block_until_ready()  # (compiled before the trace)
  jax.profiler.start_trace(str(tmp_path), create_perfetto_trace=True)
  for _ in range(4):
    step(a, a).block_until_ready()
  jax.profiler.stop_trace()

  per_two = kernels.kernel_seconds(tmp_path, epochs=2)
  per_four = kernels.kernel_seconds(tmp_path, epochs=4)
  assert per_two, "no kernel found in the trace"
  # Each is XLA's (its HLO name), none the Python tracer's or the runtime's.
  assert not any(n.startswith("$") or "Thunk" in n for n in per_two), per_two
  assert any("dot" in n or "fusion" in n for n in per_two), per_two
  for name, seconds in per_two.items():
    assert seconds > 0
    np.testing.assert_allclose(per_four[name], seconds / 2)
