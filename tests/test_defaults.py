"""The default parameters on easy data with a known answer.

Every test here uses ``CPVAE()`` as a new user would (only ``random_state`` set, and the
training length where the test is about training length), on data whose answer a
simple baseline gets right.
"""

import warnings

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import ConvergenceWarning

from sklearn_cpvae import CPVAE


def _two_gaussians():
    """Two populations of 10 features, one shifted by 1 in every feature."""
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], 200)
    X = rng.normal(size=(400, 10))
    X[y == "b"] += 1.0
    te = rng.permutation(400)[:120]
    tr = np.setdiff1d(np.arange(400), te)
    return X[tr], y[tr], X[te], y[te]


def _unequal_scales():
    """Three populations of 20 features whose variances range from 3.7 to 114."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 150)
    scales = np.sqrt(np.geomspace(3.7, 114, 20))
    X = (rng.normal(size=(450, 20)) + 0.7 * rng.normal(size=(3, 20))[y]) * scales
    te = rng.permutation(450)[:135]
    tr = np.setdiff1d(np.arange(450), te)
    return X[tr], y[tr], X[te], y[te]


def _fit(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return CPVAE(random_state=0, **params).fit(X, y)


def _accuracy(model, X, y):
    return float(np.mean(model.predict(X) == y))


def test_predict_matches_lda_on_two_gaussian_populations():
    X, y, X_te, y_te = _two_gaussians()
    lda = _accuracy(LinearDiscriminantAnalysis().fit(X, y), X_te, y_te)
    assert _accuracy(_fit(X, y), X_te, y_te) >= lda - 0.01


def test_more_training_does_not_make_predict_worse():
    """The likelihood classifier integrates over the prior it was trained with, so a
    longer fit (no early stop) classifies at least as well as a short one."""
    X, y, X_te, y_te = _two_gaussians()
    short = _accuracy(_fit(X, y, max_iter=10), X_te, y_te)
    long = _accuracy(_fit(X, y, max_iter=300, n_iter_no_change=300), X_te, y_te)
    assert long >= short - 0.01
    assert long >= 0.92


@pytest.mark.parametrize("scale, shift", [(1e-3, 0.0), (1e6, 0.0), (1.0, 100.0)])
def test_results_do_not_depend_on_the_units_of_x(scale, shift):
    X, y, X_te, y_te = _unequal_scales()
    ref = _fit(X, y)
    moved = _fit(X * scale + shift, y)
    lda = _accuracy(LinearDiscriminantAnalysis().fit(X, y), X_te, y_te)
    acc_ref = _accuracy(ref, X_te, y_te)
    acc = _accuracy(moved, X_te * scale + shift, y_te)
    assert acc_ref >= lda - 0.02
    assert abs(acc - acc_ref) <= 0.01
    # Densities are those of X itself: moving to other units subtracts D log(scale).
    ll_ref = ref.score_samples(X_te, populations=y_te)
    ll = moved.score_samples(X_te * scale + shift, populations=y_te)
    shift_expected = -X.shape[1] * np.log(scale)
    assert np.median(ll - ll_ref) == pytest.approx(
        shift_expected, abs=0.05 + 1e-3 * abs(ll_ref).mean()
    )
    # Reconstructions come back in the caller's units.
    codes = moved.transform(X_te * scale + shift, populations=y_te)
    rec = moved.inverse_transform(codes, populations=y_te)
    rec_ref = ref.inverse_transform(ref.transform(X_te, populations=y_te), populations=y_te)
    # float32 rounding of the moved X changes the fit slightly: 1 % of the spread.
    np.testing.assert_allclose((rec - shift) / scale, rec_ref, atol=1e-2 * X.std())


def test_standardize_false_models_x_as_given():
    X, y, X_te, _ = _two_gaussians()
    model = _fit(X * 10 + 5, y, standardize=False, max_iter=5)
    assert not model.module_.standardize
    assert np.isfinite(model.score_samples(X_te * 10 + 5)).all()


def test_default_objective_trains_the_private_prior_it_scores_with():
    X, y, _, _ = _two_gaussians()
    model = _fit(X, y, max_iter=5)
    assert model.objective == "elbo_mi"
    assert all(r["kl_private"] > 0 and r["mi"] > 0 for r in model.history_)
    assert model._private_prior() == "standard"


def test_paper_objective_stays_available_and_mi_is_its_alias():
    X, y, X_te, _ = _two_gaussians()
    paper = _fit(X, y, objective="paper", max_iter=3)
    assert all(r["kl_private"] == 0 for r in paper.history_)
    assert paper._private_prior() == "aggregate"
    with pytest.warns(FutureWarning, match='objective="paper"'):
        alias = _fit(X, y, objective="mi", max_iter=3)
    np.testing.assert_array_equal(alias.predict_proba(X_te), paper.predict_proba(X_te))
    assert alias.loss_curve_ == paper.loss_curve_
