"""Counterfactual expression, library sizes and differential expression."""

import warnings

import numpy as np
import pytest
from conftest import CONFIGS
from sklearn.exceptions import ConvergenceWarning

from sklearn_cpvae import CPVAE
from sklearn_cpvae.diagnostics import differential_expression

CFG = dict(CONFIGS["counts"], max_iter=40)


def _de_counts(n=80, seed=0):
    """Two studies sharing a 1-d cell state; features 0-1 are 4x higher in study a."""
    rng = np.random.default_rng(seed)
    state = rng.normal(size=2 * n)
    base = np.exp(1.5 + 0.8 * np.outer(state, [1, -1, 1, -1, 1, -1]))
    base[:n, :2] *= 4.0
    y = np.repeat(["a", "b"], n)
    return rng.poisson(base).astype(float), y


@pytest.fixture(scope="module")
def nb_model():
    C, y = _de_counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Without the library offset the decoded means are absolute, so the true fold
        # changes are 4 and 1 (with it, study a's larger totals make them compositional).
        return CPVAE(likelihood="nb", library_size=False, **CFG).fit(C, y), C, y


def test_library_size_scales_decoded_counts(nb_model):
    C, y = nb_model[1:]
    with pytest.raises(ValueError, match="fitted with library_size=True"):
        nb_model[0].inverse_transform(nb_model[0].transform(C, y), y, library_size=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(likelihood="poisson", **dict(CFG, max_iter=3)).fit(C, y)
    codes = model.transform(C, populations=y)
    ref = model.inverse_transform(codes, y)
    doubled = model.inverse_transform(codes, y, library_size=2 * model.library_size_ref_)
    np.testing.assert_allclose(doubled, 2 * ref, rtol=1e-6)
    per_row = model.inverse_transform(codes, y, library_size=np.arange(1, len(C) + 1))
    np.testing.assert_allclose(
        per_row, ref * np.arange(1, len(C) + 1)[:, None] / model.library_size_ref_, rtol=1e-6
    )
    with pytest.raises(ValueError, match="library_size must be a positive"):
        model.inverse_transform(codes, y, library_size=-1.0)
    with pytest.raises(ValueError, match="part='private'"):
        model.inverse_transform(codes, y, part="private", library_size=10.0)
    fixed = model.get_normalized_expression(C[:3], "a", library_size=1e4, random_state=0)
    at_ref = model.get_normalized_expression(C[:3], "a", random_state=0)
    np.testing.assert_allclose(fixed, at_ref * 1e4 / model.library_size_ref_, rtol=1e-6)


def test_counterfactual_expression(nb_model):
    model, C, y = nb_model
    b_rows = y == "b"
    as_a = model.get_normalized_expression(C[b_rows], "a", random_state=0)
    as_b = model.get_normalized_expression(C[b_rows], "b", random_state=0)
    # Study b's cells decoded in study a: features 0-1 about 4x up, the others alike.
    ratio = as_a.mean(0) / as_b.mean(0)
    assert np.all((ratio[:2] > 2.5) & (ratio[:2] < 6.5)), ratio
    assert np.all(np.abs(np.log2(ratio[2:])) < 0.5), ratio
    np.testing.assert_array_equal(
        as_a, model.get_normalized_expression(C[b_rows], "a", random_state=0)
    )
    with pytest.raises(ValueError, match=r"unknown population label\(s\) \['z'\]"):
        model.get_normalized_expression(C[:3], "z")


def test_differential_expression_finds_the_changed_features(nb_model):
    model, C, y = nb_model
    de = differential_expression(model, C, "a", "b", n_samples=10)
    assert de["effect"] == "log2_fold_change"
    # True log2 fold change 2 on features 0-1, 0 elsewhere.
    assert np.all(np.abs(de["effect_mean"][:2] - 2) < 0.7), de["effect_mean"]
    assert np.all(np.abs(de["effect_mean"][2:]) < 0.5), de["effect_mean"]
    assert np.all(de["proba_de"][:2] > 0.9)
    assert de["proba_de"][2:].max() < de["proba_de"][:2].min()
    np.testing.assert_allclose(de["proba_de"] + de["proba_not_de"], 1.0)
    with pytest.raises(ValueError, match="both"):
        differential_expression(model, C, "a", "a")


def test_gaussian_counterfactual_and_difference():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(160, 1))
    X = z @ rng.normal(size=(1, 5)) + 0.3 * rng.normal(size=(160, 5))
    y = np.repeat(["a", "b"], 80)
    X[y == "a", 0] += 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**CFG).fit(X, y)
    de = differential_expression(model, X, "a", "b", n_samples=10)
    assert de["effect"] == "difference"
    assert abs(de["effect_mean"][0] - 3.0) < 0.8, de["effect_mean"]
    assert np.all(np.abs(de["effect_mean"][1:]) < 0.6), de["effect_mean"]
    assert de["proba_de"][0] > 0.9
    with pytest.raises(ValueError, match="library_size= sets the total count"):
        model.get_normalized_expression(X[:2], "a", library_size=100.0)


@pytest.mark.parametrize("likelihood", ["poisson", "nb"])
def test_non_integer_counts_warn(likelihood):
    C, y = _de_counts(n=10)
    cfg = dict(CFG, max_iter=1)
    with pytest.warns(UserWarning, match=f"likelihood='{likelihood}' models raw integer counts"):
        CPVAE(likelihood=likelihood, **cfg).fit(np.log1p(C), y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        CPVAE(likelihood=likelihood, **cfg).fit(C, y)


def test_deviance_explained_of_count_models():
    from sklearn_cpvae.diagnostics import unit_deviance, variance_explained

    rng = np.random.default_rng(0)
    n = 150
    state = rng.normal(size=(2 * n, 1))
    log_rate = 1.5 + 0.8 * state @ np.array([[1, -1, 1, -1, 0, 0]])
    t = rng.normal(size=n)
    log_rate[:n, 4] += 1.2 * t
    log_rate[:n, 5] -= 1.2 * t
    C = rng.poisson(np.exp(log_rate)).astype(float)
    y = np.repeat(["a", "b"], n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # One shared dimension: the shared state; the private factor must go to t.
        model = CPVAE(likelihood="poisson", **dict(CFG, max_iter=60, n_shared=1)).fit(C, y)
    ve = variance_explained(model, C, y)
    assert ve["shared"].shape == (2, 6)
    # Features 0-3 vary through the shared state, 4-5 (in a) through a's private factor.
    assert np.all(ve["shared"][:, :4] > ve["private"][:, :4]), ve
    assert np.all(ve["shared"][:, :4] > 0.3), ve["shared"]
    assert np.all(ve["private"][0, 4:] > 0.5) and np.all(ve["shared"][0, 4:] < 0.2), ve
    assert np.all(ve["total"] <= 1) and np.all(ve["total"][0, :] > 0.2), ve["total"]
    # Unit deviance: zero at mu = x, positive elsewhere, 0 log 0 handled.
    x = np.array([0.0, 3.0, 3.0])
    np.testing.assert_allclose(unit_deviance(x, np.array([1e-12, 3.0, 3.0]))[1:], 0.0)
    assert unit_deviance(x, np.array([1.0, 1.0, 5.0]), theta=2.0).min() > 0
