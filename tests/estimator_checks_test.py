"""scikit-learn's own estimator checks over SoftmaxRegression and
SoftmaxRegressionCV (a file of their own: a worker of their own)."""

import warnings

import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from softmax_jax import SoftmaxRegression
from softmax_jax import SoftmaxRegressionCV

# What float32 cannot do: scikit-learn asks two fits (weights 2 against a
# repeated row) to agree to 1e-7 in probability; two float32 optima to the
# gradient norm tol agree to ~1e-4 (test_integer_weights_are_repeated_rows
# holds them to the objective instead).
FLOAT32 = ("float32 arithmetic: two fits agree to ~1e-4 in probability, "
           "not scikit-learn's 1e-7")


def _expected_failures(estimator):
  del estimator
  return {"check_sample_weight_equivalence_on_dense_data": FLOAT32}


@pytest.mark.slow  # ~130 fits, ~2 minutes of CPU
@parametrize_with_checks([SoftmaxRegression(),
                          SoftmaxRegressionCV(Cs=3, cv=3)],
                         expected_failed_checks=_expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
  with warnings.catch_warnings():  # (tiny separable sets: C = 1e4 is slow)
    warnings.simplefilter("ignore", ConvergenceWarning)
    check(estimator)
