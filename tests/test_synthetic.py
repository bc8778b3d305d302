"""Tests of the synthetic cross-population generator (fast, no fitting)."""

import numpy as np
import pytest

from sklearn_cpvae.datasets import make_cross_population


def test_shapes_and_keys():
    d = make_cross_population(
        n_samples=150,
        n_populations=3,
        n_features=7,
        n_shared_factors=2,
        n_private_factors=3,
        n_subgroups=4,
        random_state=0,
    )
    assert d.data.shape == (150, 7)
    assert d.populations.shape == (150,) and set(d.populations) == {0, 1, 2}
    assert d.shared_factors.shape == (150, 2)
    assert d.private_factors.shape == (150, 3)
    assert d.subgroups.min() >= 0 and d.subgroups.max() < 4
    assert d.population_means.shape == (3, 7)
    assert isinstance(d.DESCR, str) and np.all(np.isfinite(d.data))


@pytest.mark.parametrize("decoder", ["linear", "nonlinear"])
@pytest.mark.parametrize("effect", ["mean", "subspace", "both", "none"])
def test_reproducible(decoder, effect):
    a = make_cross_population(200, 2, decoder=decoder, population_effect=effect, random_state=3)
    b = make_cross_population(200, 2, decoder=decoder, population_effect=effect, random_state=3)
    c = make_cross_population(200, 2, decoder=decoder, population_effect=effect, random_state=4)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.subgroups, b.subgroups)
    assert not np.allclose(a.data, c.data)


def test_imbalance_ratio():
    d = make_cross_population(n_samples=1010, population_weights=[100, 1], random_state=0)
    assert np.bincount(d.populations).tolist() == [1000, 10]
    with pytest.raises(ValueError, match="too small"):
        make_cross_population(n_samples=50, population_weights=[100, 1])


def test_mean_effect_changes_only_means():
    d = make_cross_population(
        20000, 2, n_features=6, population_effect="mean", noise=0.1, random_state=0
    )
    X, p = d.data, d.populations
    gap = X[p == 1].mean(0) - X[p == 0].mean(0)
    np.testing.assert_allclose(gap, d.population_means[1] - d.population_means[0], atol=0.05)
    assert np.abs(gap).max() > 0.5
    c0, c1 = np.cov(X[p == 0].T), np.cov(X[p == 1].T)
    assert np.abs(c0 - c1).max() < 0.15 * np.abs(c0).max()


def test_subspace_effect_changes_covariance_not_mean():
    d = make_cross_population(20000, 2, n_features=6, population_effect="subspace", random_state=0)
    X, p = d.data, d.populations
    gap = X[p == 1].mean(0) - X[p == 0].mean(0)
    assert np.abs(gap).max() < 0.1
    assert np.all(d.population_means == 0)
    c0, c1 = np.cov(X[p == 0].T), np.cov(X[p == 1].T)
    assert np.abs(c0 - c1).max() > 0.3 * np.abs(c0).max()


def test_both_effect_changes_mean_and_covariance():
    d = make_cross_population(20000, 2, n_features=6, population_effect="both", random_state=0)
    X, p = d.data, d.populations
    assert np.abs(X[p == 1].mean(0) - X[p == 0].mean(0)).max() > 0.5
    c0, c1 = np.cov(X[p == 0].T), np.cov(X[p == 1].T)
    assert np.abs(c0 - c1).max() > 0.3 * np.abs(c0).max()


def test_none_effect_indistinguishable():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    d = make_cross_population(2000, 2, n_features=6, population_effect="none", random_state=0)
    X, p = d.data, d.populations
    assert np.abs(X[p == 1].mean(0) - X[p == 0].mean(0)).max() < 0.2
    acc = cross_val_score(LogisticRegression(max_iter=1000), X, p, cv=5).mean()
    assert acc < 0.6


def test_feature_scales():
    base = make_cross_population(500, 2, n_features=5, random_state=0)
    scaled = make_cross_population(500, 2, n_features=5, feature_scales=(1, 1000), random_state=0)
    np.testing.assert_allclose(scaled.feature_scales, np.geomspace(1, 1000, 5))
    np.testing.assert_allclose(scaled.data, base.data * np.geomspace(1, 1000, 5))
    explicit = [1.0, 2.0, 3.0, 4.0, 5.0]
    d = make_cross_population(500, 2, n_features=5, feature_scales=explicit, random_state=0)
    np.testing.assert_allclose(d.data, base.data * np.array(explicit))
    sd = scaled.data.std(0)
    assert sd[-1] / sd[0] > 100


def test_nonlinear_differs_from_linear():
    lin = make_cross_population(300, 2, decoder="linear", random_state=0)
    non = make_cross_population(300, 2, decoder="nonlinear", random_state=0)
    assert lin.data.shape == non.data.shape and not np.allclose(lin.data, non.data)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 10.5}, "n_samples"),
        ({"n_populations": 0}, "n_populations"),
        ({"n_features": 0}, "n_features"),
        ({"decoder": "cubic"}, "decoder"),
        ({"population_effect": "scale"}, "population_effect"),
        ({"population_weights": [1, 2, 3]}, "population_weights"),
        ({"population_weights": [1, -1]}, "population_weights"),
        ({"feature_scales": [1, 2, 3]}, "feature_scales"),
        ({"feature_scales": (0, 10)}, "feature_scales"),
        ({"noise": -1}, "noise"),
        ({"n_private_factors": 0, "n_subgroups": 3}, "n_subgroups"),
    ],
)
def test_bad_input(kwargs, match):
    params = {"n_samples": 100, "n_populations": 2}
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_cross_population(**params)
