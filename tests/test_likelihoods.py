"""The observation models (``sklearn_cpvae._likelihoods``): Bernoulli, counts, offsets, masking."""

import re

import numpy as np
import pytest
import torch
from _data import make_two_studies
from conftest import CONFIGS, SMALL
from scipy import stats
from sklearn.metrics import roc_auc_score

from sklearn_cpvae import CPVAE
from sklearn_cpvae._likelihoods import count_log_prob, log_likelihood


def test_bernoulli_likelihood():
    rng = np.random.default_rng(0)
    X = (rng.random((120, 10)) < np.r_[[0.8] * 5, [0.2] * 5]).astype(float)
    X[60:, :5] = 1 - X[60:, :5]
    y = np.repeat([0, 1], 60)
    model = CPVAE(**{**SMALL, "max_iter": 40}, likelihood="bernoulli").fit(X, y)
    rec = model.inverse_transform(model.transform(X, populations=y), populations=y)
    assert rec.min() >= 0 and rec.max() <= 1
    assert np.mean(model.predict(X) == y) > 0.9
    with pytest.raises(ValueError, match=re.escape("needs X in [0, 1]")):
        CPVAE(**SMALL, likelihood="bernoulli").fit(X * 2, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_count_log_prob_matches_scipy():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.poisson(4.0, size=(5, 3)), dtype=torch.float64)
    log_mu = torch.as_tensor(rng.normal(1.0, 0.5, size=(5, 3)))
    log_theta = torch.as_tensor(rng.normal(0.5, 0.3, size=3))
    mu, theta = np.exp(log_mu.numpy()), np.exp(log_theta.numpy())
    pois = count_log_prob(x, log_mu, "poisson").numpy()
    np.testing.assert_allclose(pois, stats.poisson.logpmf(x.numpy(), mu), rtol=1e-10)
    nb = count_log_prob(x, log_mu, "nb", log_theta).numpy()
    ref = stats.nbinom.logpmf(x.numpy(), theta, theta / (theta + mu))
    np.testing.assert_allclose(nb, ref, rtol=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_log_likelihood_offset_and_mask():
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.poisson(3.0, size=(4, 5)), dtype=torch.float64)
    out = torch.as_tensor(rng.normal(size=(4, 5)))
    off = torch.as_tensor(rng.normal(size=(4, 1)))
    ll = log_likelihood(x, out, "poisson", log_offset=off)
    ref = stats.poisson.logpmf(x.numpy(), np.exp(out.numpy() + off.numpy())).sum(1)
    np.testing.assert_allclose(ll.numpy(), ref, rtol=1e-10)
    # Masking = the likelihood of the observed entries only, for every family.
    mask = torch.as_tensor(rng.random((4, 5)) > 0.3, dtype=torch.float64)
    xg = torch.as_tensor(rng.normal(size=(4, 5)))
    log_psi = torch.tensor(0.3, dtype=torch.float64)
    got = log_likelihood(xg, out, "gaussian", log_psi, mask=mask).numpy()
    sd = np.exp(0.5 * 0.3)
    dens = stats.norm.logpdf(xg.numpy(), out.numpy(), sd)
    np.testing.assert_allclose(got, (dens * mask.numpy()).sum(1), rtol=1e-10)
    got_p = log_likelihood(x, out, "poisson", mask=mask).numpy()
    dens_p = stats.poisson.logpmf(x.numpy(), np.exp(out.numpy()))
    np.testing.assert_allclose(got_p, (dens_p * mask.numpy()).sum(1), rtol=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nb_fits_overdispersed_counts_better_than_poisson():
    rng = np.random.default_rng(0)
    n, d = 300, 12
    mu = np.exp(rng.normal(1.5, 0.5, size=d))
    theta = 1.0  # strong overdispersion: Var = mu + mu^2
    C = rng.negative_binomial(theta, theta / (theta + mu), size=(2 * n, d)).astype(float)
    y = np.repeat([0, 1], n)
    scores = {}
    for lik in ("poisson", "nb"):
        m = CPVAE(likelihood=lik, max_iter=40, **CONFIGS["counts"]).fit(C[::2], y[::2])
        scores[lik] = m.score_samples(C[1::2]).mean()
        if lik == "nb":
            theta_hat = np.exp(m.module_.log_theta.detach().numpy())
    assert scores["nb"] > scores["poisson"] + 1.0
    # The learned per-feature inverse dispersion is near the truth, not at Poisson (inf).
    assert 0.3 < np.median(theta_hat) < 3.0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_library_size_offset_removes_depth_from_codes():
    # Same two-state biology at very different sequencing depths.
    rng = np.random.default_rng(0)
    n, d = 400, 20
    state = rng.integers(0, 2, n)
    profile = np.where(state[:, None] == 1, np.linspace(0.2, 2, d), np.linspace(2, 0.2, d))
    depth = np.exp(rng.uniform(0, 2.5, n))
    C = rng.poisson(profile * depth[:, None]).astype(float)
    y = rng.integers(0, 2, n)
    corr = {}
    for lib in (True, False):
        m = CPVAE(
            likelihood="poisson",
            library_size=lib,
            n_shared=1,
            max_iter=40,
            **{k: v for k, v in CONFIGS["counts"].items() if k != "n_shared"},
        ).fit(C, y)
        z = m.set_params(blocks="shared").transform(C).ravel()
        corr[lib] = abs(np.corrcoef(z, np.log(depth))[0, 1])
        if lib:
            assert m.library_size_ref_ == pytest.approx(np.median(C.sum(1)))
            assert roc_auc_score(state, z) > 0.9 or roc_auc_score(state, -z) > 0.9
    assert corr[True] < 0.3 < corr[False]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_decoder_mean_of_count_model_is_mean_count():
    rng = np.random.default_rng(0)
    C = rng.poisson(5.0, size=(200, 6)).astype(float)
    y = np.repeat([0, 1], 100)
    m = CPVAE(likelihood="nb", max_iter=60, **CONFIGS["counts"]).fit(C, y)
    rec = m.inverse_transform(m.transform(C, y), y)
    assert np.all(rec > 0)
    np.testing.assert_allclose(rec.mean(0), C.mean(0), rtol=0.25)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_missing_mask_fits_and_predicts_with_nan():
    X, y = make_two_studies()
    X[y == "a", 6:] += 1.5  # a study offset, so that classification is well posed
    rng = np.random.default_rng(3)
    Xn = X.copy()
    Xn[rng.random(X.shape) < 0.2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        CPVAE(max_iter=2, **CONFIGS["counts"]).fit(Xn, y)
    full = CPVAE(max_iter=40, **CONFIGS["counts"]).fit(X[::2], y[::2])
    masked = CPVAE(missing="mask", max_iter=40, **CONFIGS["counts"]).fit(Xn[::2], y[::2])
    assert masked.__sklearn_tags__().input_tags.allow_nan
    assert not full.__sklearn_tags__().input_tags.allow_nan
    acc_full = np.mean(full.predict(X[1::2]) == y[1::2])
    acc_mask = np.mean(masked.predict(Xn[1::2]) == y[1::2])
    codes = masked.transform(Xn[1::2], y[1::2])
    assert np.isfinite(codes).all()
    assert np.isfinite(masked.score_samples(Xn[1::2])).all()
    assert acc_mask > 0.8 and acc_mask > acc_full - 0.1
    # A row with every entry missing is still accepted (its likelihood term is 0).
    allnan = np.full((1, X.shape[1]), np.nan)
    assert np.isfinite(masked.transform(allnan, ["a"])).all()


def test_standardization_stops_at_twenty_standard_deviations():
    """A near-constant feature's rare value (an image's border pixel) would sit sqrt(n)
    standard deviations out; its scale grows until the furthest value sits at 20. Other
    features keep their standard deviation exactly, and the rule has no unit: rescaling
    or shifting X rescales the scales and leaves the standardised values."""
    from sklearn_cpvae._likelihoods import EXTREME_STANDARDIZED, get_likelihood

    rng = np.random.default_rng(0)
    X = rng.normal(size=(900, 4)) * [1.0, 3.0, 1e3, 1.0]
    X[:, 3] = 0.0
    X[3, 3] = 1.0  # sqrt(899) = 30 standard deviations out
    gauss = get_likelihood("gaussian")
    loc, scale, _, _ = gauss.standardization(X)
    np.testing.assert_allclose(scale[:3], X[:, :3].astype(np.float32).std(0), rtol=1e-6)
    reach = np.abs(X - loc).max(0) / scale
    assert reach[:3].max() < EXTREME_STANDARDIZED
    np.testing.assert_allclose(reach[3], EXTREME_STANDARDIZED, rtol=1e-6)
    loc2, scale2, _, _ = gauss.standardization(X * 1e-3 + 5.0)
    np.testing.assert_allclose(scale2, scale * 1e-3, rtol=1e-4)
    est = CPVAE(**{**SMALL, "max_iter": 2}).fit(X, np.repeat(["a", "b"], 450))
    np.testing.assert_allclose(est.module_.x_scale.numpy(), scale, rtol=1e-6)
