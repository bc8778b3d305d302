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
        ({"likelihood": "zinb"}, "likelihood"),
        ({"likelihood": "nb", "nb_theta": 0}, "nb_theta"),
        ({"likelihood": "poisson", "base_count": -1.0}, "base_count"),
        ({"likelihood": "poisson", "feature_scales": (1, 1000)}, "feature_scales"),
    ],
)
def test_bad_input(kwargs, match):
    params = {"n_samples": 100, "n_populations": 2}
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_cross_population(**params)


@pytest.mark.parametrize("likelihood", ["poisson", "nb"])
def test_count_modes_draw_counts_around_the_gaussian_rates(likelihood):
    kw = dict(n_features=6, population_effect="mean", effect_size=0.5, random_state=0)
    gauss = make_cross_population(20000, 2, **kw)
    d = make_cross_population(20000, 2, likelihood=likelihood, base_count=4.0, **kw)
    assert gauss.rates is None and d.likelihood == likelihood
    # The count draws come last: the rates are exp of the Gaussian data of the same seed.
    np.testing.assert_allclose(d.rates, 4.0 * np.exp(gauss.data))
    np.testing.assert_array_equal(d.subgroups, gauss.subgroups)
    assert np.all(d.data >= 0) and np.all(d.data == np.round(d.data))
    resid = d.data - d.rates
    np.testing.assert_allclose(resid.mean(0) / d.rates.mean(0), 0.0, atol=0.05)
    # Poisson: Var = mu; NB with theta = 5: Var = mu + mu^2 / 5.
    extra = (d.rates**2 / 5.0) if likelihood == "nb" else 0.0
    ratio = np.mean(resid**2) / np.mean(d.rates + extra)
    assert 0.9 < ratio < 1.1
    # The mean shift is a multiplicative batch effect: log mean counts differ by m_k.
    log_gap = np.log(d.rates[d.populations == 1].mean(0) / d.rates[d.populations == 0].mean(0))
    shift = d.population_means[1] - d.population_means[0]
    assert np.corrcoef(log_gap, shift)[0, 1] > 0.99


def test_count_mode_nb_is_overdispersed_against_poisson():
    kw = dict(n_features=5, random_state=1, likelihood="nb")
    tight = make_cross_population(5000, 2, nb_theta=100.0, **kw)
    loose = make_cross_population(5000, 2, nb_theta=0.5, **kw)
    assert np.var(loose.data - loose.rates) > 2 * np.var(tight.data - tight.rates)
