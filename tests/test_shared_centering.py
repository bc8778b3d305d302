"""``shared_centering="population"``: the shared encoder reads each row minus its
population's mean; the importance-sampled likelihood uses each population's centring."""

import math
import warnings

import numpy as np
import pytest
import torch
from _data import make_populations
from conftest import CONFIGS

from sklearn_cpvae import CPVAE
from sklearn_cpvae._objective import log_likelihood_per_population
from sklearn_cpvae.diagnostics import leakage_report

CFG = dict(CONFIGS["small"], max_iter=30, shared_centering="population")


def _offset_data(n=100, seed=0):
    """Identically distributed rows in both populations, then a large offset per population:
    a lab or batch effect and nothing else."""
    rng = np.random.default_rng(seed)
    y = np.repeat(["a", "b"], n)
    factor = rng.normal(size=(2 * n, 2))
    X = factor @ rng.normal(size=(2, 6)) + rng.normal(scale=0.3, size=(2 * n, 6))
    X[y == "b"] += 3.0 * rng.normal(size=6)
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y, _, _ = make_populations(n_per_pop=60, n_populations=3, n_features=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CPVAE(**CFG).fit(X, y), X, y


def test_centres_are_each_populations_mean_encoder_input():
    X, y = _offset_data(n=20)
    X[[0, 5, 30], [1, 2, 4]] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**{**CFG, "max_iter": 1}, missing="mask").fit(X, y)
    m = model.module_
    Xs = (X - m.x_loc.numpy()) / m.x_scale.numpy()
    expected = np.stack([np.nanmean(Xs[y == k], axis=0) for k in ("a", "b")])
    np.testing.assert_allclose(m.population_centre.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_shared_code_depends_on_the_row_minus_its_population_mean(fitted):
    model, X, _ = fitted
    m = model.module_
    xs = m.standardize_rows(torch.as_tensor(X[:10], dtype=torch.float32))
    c = m.population_centre
    as_0 = m.encode_shared(xs, standardized=True, populations=torch.zeros(10, dtype=torch.long))
    moved = xs + (c[2] - c[0])
    as_2 = m.encode_shared(moved, standardized=True, populations=torch.full((10,), 2))
    for a, b in zip(as_0, as_2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="population"):
        m.encode_shared(xs, standardized=True)


def test_likelihood_uses_each_populations_proposal(fitted):
    """eq. 8 with the proposal q(z|x, k) q_k(t|x), against a loop over rows, populations
    and samples."""
    model, X, _ = fitted
    m = model.module_
    x = torch.as_tensor(X[:4], dtype=torch.float64)
    torch.set_grad_enabled(False)
    m64 = m.double()
    try:
        gen = torch.Generator().manual_seed(0)
        s, k, dz, dt = 5, m.n_populations, m.n_shared, m.n_private
        eps_z = torch.randn((s, dz), generator=gen, dtype=torch.float64)
        eps_t = torch.randn((s, dt), generator=gen, dtype=torch.float64)
        p_mean = torch.zeros((k, dt), dtype=torch.float64)
        got = log_likelihood_per_population(m64, x, eps_z, eps_t, p_mean, torch.zeros_like(p_mean))
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        psi = float(torch.exp(m64.log_psi))
        xs = m64.standardize_rows(x)
        for i in range(len(x)):
            for j in range(k):
                row, pop = xs[i : i + 1], torch.tensor([j])
                mu_z, lv_z = m64.encode_shared(row, standardized=True, populations=pop)
                mu_t, lv_t = m64.encode_private(row, pop, standardized=True)
                logw = []
                for a in range(s):
                    z = mu_z + torch.exp(0.5 * lv_z) * eps_z[a]
                    t = mu_t + torch.exp(0.5 * lv_t) * eps_t[a]
                    mean = m64.decode_shared(z) + m64.decode_private(t, pop)
                    rec = -0.5 * float(((row - mean) ** 2).sum()) / psi
                    rec -= row.shape[1] * (half_log_2pi + 0.5 * math.log(psi))
                    lp = lambda v, mu, lv: float(  # noqa: E731
                        (-half_log_2pi - 0.5 * lv - 0.5 * (v - mu) ** 2 / torch.exp(lv)).sum()
                    )
                    zero = torch.zeros_like(z)
                    w = rec + lp(z, zero, zero) - lp(z, mu_z, lv_z)
                    w += lp(t, torch.zeros_like(t), torch.zeros_like(t)) - lp(t, mu_t, lv_t)
                    logw.append(w)
                expected = float(torch.logsumexp(torch.tensor(logw), 0)) - math.log(s)
                assert float(got[i, j]) == pytest.approx(expected, rel=1e-6)
    finally:
        m.float()
        torch.set_grad_enabled(True)


def test_population_offsets_do_not_reach_the_shared_code():
    """Populations that differ by an offset only: with centring the shared codes of the
    two are alike (the probe near chance); without it the probe reads the offset."""
    X, y = _offset_data()
    probes = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for centring in ("none", "population"):
            model = CPVAE(**{**CFG, "max_iter": 60, "shared_centering": centring}).fit(X, y)
            probes[centring] = leakage_report(model, X, y)["shared_probe"]
    assert probes["population"] < 0.65
    assert probes["none"] > probes["population"] + 0.2


def test_codes_without_populations_centre_by_the_predicted_population(fitted):
    model, X, _ = fitted
    pred = model.predict(X)
    np.testing.assert_array_equal(model.transform(X), model.transform(X, populations=pred))
    shared = model.get_latent_representation(X, blocks="shared")
    np.testing.assert_array_equal(shared, model.transform(X, populations=pred)[:, :2])


@pytest.mark.parametrize(
    "options", [{}, {"shared_centering": "none", "mi_alignment": "mean"}], ids=["centring", "mi"]
)
def test_added_population_gets_its_own_centre(options):
    X, y, _, _ = make_populations(n_per_pop=60, n_populations=3, n_features=8)
    old = y != "pop1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**{**CFG, **options}).fit(X[old], y[old])
        before = model.module_.population_centre.clone()
        codes = model.transform(X[old], populations=y[old])
        model.add_populations(X[~old], y[~old])
    m = model.module_
    assert model.classes_.tolist() == ["pop0", "pop1", "pop2"]
    torch.testing.assert_close(m.population_centre[[0, 2]], before, rtol=0, atol=0)
    xs = m.standardize_rows(torch.as_tensor(X[~old], dtype=torch.float32))
    torch.testing.assert_close(m.population_centre[1], xs.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.transform(X[old], populations=y[old]), codes)


def test_population_swap_keeps_the_source_centring(fitted):
    """A swapped row keeps the shared code of its own population's centring and takes
    the target's private encoder and decoder."""
    from sklearn_cpvae.plotting import PopulationSwapDisplay

    model, X, y = fitted
    x, src = X[:4], y[:4]
    disp = PopulationSwapDisplay.from_estimator(model, x, src, image_shape=(2, 4))
    shared = model.transform(x, populations=src)[:, : model.n_shared]
    for k in model.classes_:
        as_k = np.full(len(x), k)
        codes = model.transform(x, populations=as_k)
        codes[:, : model.n_shared] = shared
        np.testing.assert_allclose(
            disp.images[f"as {k}"], model.inverse_transform(codes, as_k), rtol=1e-6
        )
