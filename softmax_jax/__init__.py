"""softmax_jax: softmax regression (multinomial logistic regression) in JAX.

One module per concept; docs/guide/library.md maps them. Importing the
package imports nothing heavy, so that bad input is refused fast.
"""

__version__ = "0.1.0"

# The scikit-learn estimators (estimator.py), imported on first use.
_ESTIMATORS = ("SoftmaxRegression", "SoftmaxRegressionCV")


def __getattr__(name: str):
  if name in _ESTIMATORS:
    from softmax_jax import estimator  # pylint: disable=g-import-not-at-top
    return getattr(estimator, name)
  raise AttributeError(f"module 'softmax_jax' has no attribute {name!r}")
