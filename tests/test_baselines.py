"""The plain VAE baseline: sklearn contract, behaviour and reproducibility."""

import warnings

import numpy as np
import pytest
import torch
from _data import make_populations
from conftest import CONFIGS
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_cpvae import VAE

SMALL_VAE = CONFIGS["vae"]


@parametrize_with_checks([VAE(**SMALL_VAE)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def data():
    X, _, _, _ = make_populations()
    return X


@pytest.fixture(scope="module")
def fitted(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return VAE(**{**SMALL_VAE, "max_iter": 60}).fit(data)


def test_outputs_and_learning(fitted, data):
    codes = fitted.transform(data)
    assert codes.shape == (len(data), 2)
    assert fitted.inverse_transform(codes).shape == data.shape
    assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]
    assert fitted.n_iter_ == len(fitted.history_) == 60
    ll = fitted.score_samples(data)
    assert ll.shape == (len(data),) and np.all(np.isfinite(ll))
    assert fitted.score(data) == pytest.approx(ll.mean())
    # Reconstructions through the code beat predicting the column means.
    rec = fitted.inverse_transform(codes)
    assert np.mean((rec - data) ** 2) < np.mean((data - data.mean(0)) ** 2)
    assert fitted.sample(4, random_state=0).shape == (4, data.shape[1])
    assert fitted.get_feature_names_out().tolist() == ["vae0", "vae1"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_reproducible_and_no_global_rng(data):
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002
    a = VAE(**{**SMALL_VAE, "max_iter": 3}).fit(data).transform(data)
    b = VAE(**{**SMALL_VAE, "max_iter": 3}).fit(data).transform(data)
    np.testing.assert_array_equal(a, b)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(np_state, np.random.get_state()[1])  # noqa: NPY002


def test_bernoulli_needs_unit_interval(data):
    with pytest.raises(ValueError, match="bernoulli"):
        VAE(likelihood="bernoulli", **SMALL_VAE).fit(data)
    X01 = (data - data.min()) / (data.max() - data.min())
    model = VAE(likelihood="bernoulli", **{**SMALL_VAE, "max_iter": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        rec = model.fit(X01).inverse_transform(model.transform(X01))
    assert rec.min() >= 0 and rec.max() <= 1


def test_errors(fitted):
    with pytest.raises(NotFittedError):
        VAE().transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="columns"):
        fitted.inverse_transform(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)


def test_convergence_warning(data):
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        VAE(**{**SMALL_VAE, "max_iter": 1}).fit(data)
