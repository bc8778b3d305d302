"""Leakage and variance-explained diagnostics (``sklearn_cpvae.diagnostics``)."""

import numpy as np
import pytest
import torch
from _data import make_two_studies
from conftest import CONFIGS

from sklearn_cpvae import CPVAE
from sklearn_cpvae.diagnostics import (
    active_units,
    leakage_report,
    linear_probe,
    private_kl,
    variance_explained,
)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_linear_probe_chance_and_perfect():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 60)
    noise = rng.normal(size=(180, 3))
    assert linear_probe(noise, labels) < 0.5
    informative = noise + 5 * np.eye(3)[labels]
    assert linear_probe(informative, labels) > 0.95
    groups = np.arange(180) // 5
    assert linear_probe(informative, labels, groups=groups) > 0.95


def test_active_units_against_brute_force():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(50, 6)) * np.array([1.0, 0.2, 0.05, 0.0, 3.0, 0.09])
    brute = [np.mean((c - np.mean(c)) ** 2) > 0.01 for c in codes.T]
    np.testing.assert_array_equal(active_units(codes), brute)
    np.testing.assert_array_equal(active_units(codes, threshold=0.5), codes.var(axis=0) > 0.5)
    assert not active_units(np.zeros((5, 3))).any()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_leakage_and_variance_explained_on_known_structure():
    X, y = make_two_studies(n=200)
    model = CPVAE(max_iter=60, **CONFIGS["counts"]).fit(X, y)
    report = leakage_report(model, X, y)
    assert report["chance"] == 0.5
    assert set(report) >= {"shared_probe", "private_kl_own", "private_kl_off"}
    # Population a's private encoder is informative on its rows, not on b's (eq. 6).
    assert report["private_kl_own"][0] > 5 * report["private_kl_off"][0]
    # The probe from the active units and from one draw of z, against their definitions.
    shared = model.transform(X)[:, : model.n_shared]
    np.testing.assert_array_equal(report["active_shared"], shared.var(axis=0) > 0.01)
    assert report["active_shared"].any()
    assert report["shared_probe_active"] == linear_probe(shared[:, report["active_shared"]], y)
    with torch.no_grad():
        mu, logvar = model.module_.eval().encode_shared(torch.as_tensor(X, dtype=torch.float32))
    noise = np.random.default_rng(0).standard_normal(mu.shape)
    draw = mu.double().numpy() + np.exp(0.5 * logvar.double().numpy()) * noise
    assert report["shared_probe_draw"] == pytest.approx(linear_probe(draw, y), abs=1e-9)
    assert leakage_report(model, X, y)["shared_probe_draw"] == report["shared_probe_draw"]
    kl = private_kl(model, X)
    assert kl.shape == (len(X), 2) and np.all(kl >= 0)
    ve = variance_explained(model, X, y)
    assert ve["shared"].shape == (2, X.shape[1])
    a = 0
    # Features 4-5 vary through a's private code; features 0-3 through the shared one.
    assert np.all(ve["private"][a, 4:6] > 0.5)
    assert np.all(ve["private"][a, 4:6] > ve["shared"][a, 4:6])
    assert np.all(ve["shared"][:, :4] > 0.5)
    assert np.all(ve["shared"][:, :4] > ve["private"][:, :4])
    assert np.all(ve["total"][a, :6] > 0.7)
    assert ve["overall"]["total"][a] > 0.5
    x_const = X.copy()
    x_const[y == "b", 7] = 3.0  # constant within b: nothing to explain there
    ve_const = variance_explained(model, x_const, y)
    assert np.isnan(ve_const["shared"][1, 7]) and np.isfinite(ve_const["shared"][0, 7])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_variance_explained_needs_gaussian_or_counts():
    C = np.random.default_rng(0).binomial(1, 0.5, size=(40, 3)).astype(float)
    m = CPVAE(likelihood="bernoulli", max_iter=1, **CONFIGS["counts"]).fit(
        C, np.repeat([0, 1], 20)
    )
    with pytest.raises(ValueError, match="gaussian"):
        variance_explained(m, C, np.repeat([0, 1], 20))
