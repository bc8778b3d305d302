"""scikit-learn's common estimator checks, with the default parameters and on small
configurations of the other objectives and options."""

import warnings

from conftest import CONFIGS
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_cpvae import CPVAE

# Every check passes: no expected failures are listed.
EXPECTED_FAILED_CHECKS = {}


def _instances():
    common = CONFIGS["sklearn_checks"]
    return [
        # The defaults, as a user gets them (the checks set random_state themselves).
        CPVAE(),
        CPVAE(**common),
        CPVAE(objective="paper", standardize=False, **common),
        CPVAE(objective="elbo", blocks="private", **common),
        # allow_nan follows missing="mask"; the invariance penalty meets every check too.
        # (no_private_populations names labels of y, which vary across the checks; its
        # paths are tested in test_estimator.py.)
        CPVAE(missing="mask", shared_invariance=0.5, **common),
    ]


@parametrize_with_checks(_instances(), expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
