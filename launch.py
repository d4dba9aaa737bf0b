"""Trains softmax regression: `python launch.py --loss=xent`.

The launcher is softmax_jax/cli.py (installed, the `softmax-jax` command);
this file runs it from a checkout, no install needed.
"""

from softmax_jax import cli

if __name__ == "__main__":
  cli.run()
