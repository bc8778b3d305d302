"""Behaviour of the CPVAE estimator: outputs, options, reproducibility and errors."""

import random
import re
import warnings

import numpy as np
import pytest
import torch
from _data import SMALL, make_populations
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from sklearn_cpvae import CPVAE


def test_fitted_attributes(fitted, populations_data):
    X, y, _, _ = populations_data
    assert fitted.classes_.tolist() == ["pop0", "pop1"]
    assert fitted.n_features_in_ == X.shape[1]
    assert fitted.population_counts_.tolist() == [150, 150]
    np.testing.assert_allclose(fitted.priors_, [0.5, 0.5])
    assert fitted.n_iter_ == len(fitted.history_) == len(fitted.loss_curve_)
    assert set(fitted.history_[0]) >= {"loss", "recon", "kl_shared", "kl_private", "mi"}
    assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]
    assert fitted.device_ == "cpu"


def test_integer_and_string_labels_agree(populations_data):
    X, y, _, _ = populations_data
    y_int = np.where(y == "pop0", 3, 7)
    a = CPVAE(**{**SMALL, "max_iter": 3}).fit(X, y)
    b = CPVAE(**{**SMALL, "max_iter": 3}).fit(X, y_int)
    assert b.classes_.tolist() == [3, 7]
    np.testing.assert_array_equal(a.transform(X, populations=y), b.transform(X, populations=y_int))
    assert set(b.predict(X)) <= {3, 7}


def test_transform_blocks_and_names(fitted, populations_data):
    X, y, _, _ = populations_data
    codes = fitted.transform(X, populations=y)
    assert codes.shape == (len(X), 4)
    names = fitted.get_feature_names_out().tolist()
    assert names == ["shared0", "shared1", "private0", "private1"]
    try:  # the fixture is shared by the session: always set blocks back
        shared = fitted.set_params(blocks="shared").transform(X)
        private = fitted.set_params(blocks="private").transform(X, populations=y)
    finally:
        fitted.set_params(blocks="both")
    np.testing.assert_allclose(codes, np.hstack([shared, private]))


def test_transform_without_populations_uses_predicted(fitted, populations_data):
    X, _, _, _ = populations_data
    predicted = fitted.predict(X)
    np.testing.assert_allclose(fitted.transform(X), fitted.transform(X, populations=predicted))


def test_set_output_pandas(fitted, populations_data):
    pd = pytest.importorskip("pandas")
    X, y, _, _ = populations_data
    df = fitted.set_output(transform="pandas").transform(X[:5], populations=y[:5])
    fitted.set_output(transform="default")
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["shared0", "shared1", "private0", "private1"]


def test_predict_proba_is_a_distribution_and_classifies(fitted, populations_data):
    X, y, _, _ = populations_data
    proba = fitted.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(np.log(proba), fitted.predict_log_proba(X), atol=1e-10)
    assert np.mean(fitted.predict(X) == y) > 0.9


def test_priors_shift_the_posterior(populations_data):
    X, y, _, _ = populations_data
    keep = np.r_[0:150, 150:180]  # 150 vs 30 rows
    model = CPVAE(**{**SMALL, "max_iter": 5}).fit(X[keep], y[keep])
    np.testing.assert_allclose(model.priors_, [150 / 180, 30 / 180])
    emp = model.predict_log_proba(X[:5])
    uniform = CPVAE(**{**SMALL, "max_iter": 5}, priors="uniform").fit(X[keep], y[keep])
    np.testing.assert_allclose(uniform.priors_, [0.5, 0.5])
    uni = uniform.predict_log_proba(X[:5])
    # The likelihood part is common: the difference is the log-prior ratio.
    np.testing.assert_allclose(
        (emp[:, 0] - emp[:, 1]) - (uni[:, 0] - uni[:, 1]), np.log(150 / 30), rtol=1e-10
    )


def test_predictions_do_not_depend_on_batch(fitted, populations_data):
    X, _, _, _ = populations_data
    full = fitted.predict_proba(X)
    np.testing.assert_allclose(fitted.predict_proba(X[7:9]), full[7:9], rtol=1e-12)
    np.testing.assert_allclose(fitted.predict_proba(X[::-1])[::-1], full, rtol=1e-12)
    x32 = X.astype(np.float32)
    np.testing.assert_array_equal(fitted.predict(x32[10:13]), fitted.predict(x32)[10:13])


def test_dtype_follows_input(fitted, populations_data):
    X, y, _, _ = populations_data
    assert fitted.transform(X.astype(np.float32), populations=y).dtype == np.float32
    assert fitted.transform(X, populations=y).dtype == np.float64


def test_inverse_transform_parts(fitted, populations_data):
    X, y, _, _ = populations_data
    codes = fitted.transform(X, populations=y)
    full = fitted.inverse_transform(codes, populations=y)
    shared = fitted.inverse_transform(codes, part="shared")
    private = fitted.inverse_transform(codes, populations=y, part="private")
    np.testing.assert_allclose(full, shared + private, atol=1e-10)  # g(a, b) = a + b
    assert np.mean((full - X) ** 2) < np.mean((X - X.mean(0)) ** 2)
    np.testing.assert_allclose(fitted.inverse_transform(codes), shared)  # auto -> shared
    swapped = fitted.inverse_transform(codes, populations=np.where(y == "pop0", "pop1", "pop0"))
    assert swapped.shape == X.shape and not np.allclose(swapped, full)


def test_score_samples(fitted, populations_data):
    X, y, _, _ = populations_data
    mixture = fitted.score_samples(X[:10])
    own = fitted.score_samples(X[:10], populations=y[:10])
    assert np.all(np.isfinite(mixture)) and mixture.shape == (10,)
    assert np.all(own >= mixture + np.log(0.5) - 1e-9)  # p(x) >= prior * p(x|k)


def test_sample(fitted):
    X, pops = fitted.sample(20, "pop1", random_state=0)
    assert X.shape == (20, fitted.n_features_in_) and set(pops) == {"pop1"}
    np.testing.assert_array_equal(X, fitted.sample(20, "pop1", random_state=0)[0])
    _, mixed = fitted.sample(200, random_state=1)
    assert set(mixed) == {"pop0", "pop1"}
    with pytest.raises(ValueError, match="unknown population"):
        fitted.sample(2, "nope")


def test_random_state_is_bitwise_reproducible_and_global_rng_untouched(populations_data):
    X, y, _, _ = populations_data
    np_state = np.random.get_state()  # noqa: NPY002 (the global state is what we check)
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    a = CPVAE(**{**SMALL, "max_iter": 4}).fit(X, y)
    b = CPVAE(**{**SMALL, "max_iter": 4}).fit(X, y)
    CPVAE(**{**SMALL, "random_state": None, "max_iter": 2}).fit(X, y)
    assert np.array_equal(np.random.get_state()[1], np_state[1])  # noqa: NPY002
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state
    for pa, pb in zip(a.module_.parameters(), b.module_.parameters()):
        assert torch.equal(pa, pb)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = CPVAE(**{**SMALL, "random_state": 1, "max_iter": 4}).fit(X, y)
    assert not np.array_equal(a.transform(X, populations=y), c.transform(X, populations=y))


def test_mi_term_pushes_other_populations_to_the_prior(populations_data):
    """Eq. 4's last term: encoder k maps rows of other populations towards N(0, I)."""
    X, y, _, _ = populations_data
    idx = (y == "pop1").astype(int)

    def off_population_kl(model):
        with torch.no_grad():
            mu, lv = model.module_.encode_private_all(torch.as_tensor(X, dtype=torch.float32))
        kl = 0.5 * (lv.exp() + mu**2 - 1 - lv).sum(-1).numpy()  # (K, n)
        return np.mean([kl[k, idx != k].mean() for k in range(2)])

    mi = CPVAE(**SMALL).fit(X, y)
    elbo = CPVAE(**{**SMALL, "objective": "elbo"}).fit(X, y)
    assert off_population_kl(mi) < 0.5 * off_population_kl(elbo)


def test_early_stopping_restores_best(populations_data):
    X, y, _, _ = populations_data
    model = CPVAE(
        **{**SMALL, "max_iter": 200}, early_stopping=True, n_iter_no_change=3, tol=1e-2
    ).fit(X, y)
    val = [r["val_loss"] for r in model.history_]
    assert model.n_iter_ < 200 and model.best_loss_ == pytest.approx(min(val))
    assert "val_mi" in model.history_[0]


def test_warm_start_continues(populations_data):
    X, y, _, _ = populations_data
    model = CPVAE(**{**SMALL, "max_iter": 3}, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        first = [p.detach().clone() for p in model.module_.parameters()]
        model.fit(X, y)
    assert model.n_iter_ == 6 and len(model.history_) == 6
    assert any(not torch.equal(a, b) for a, b in zip(first, model.module_.parameters()))
    with pytest.raises(ValueError, match="warm_start"):
        model.fit(X, np.where(y == "pop0", "a", "b"))


@pytest.mark.parametrize(
    "change",
    [
        {"n_private": 3},
        {"hidden_layer_sizes": (8,)},
        {"activation": "tanh"},
        {"likelihood": "bernoulli"},
        {"missing": "mask"},
        {"shared_invariance": 1.0},
        {"no_private_populations": ["pop0"]},
    ],
)
def test_warm_start_refuses_changed_networks(populations_data, change):
    X, y, _, _ = populations_data
    X = np.clip(X, 0, 1) if "likelihood" in change else X
    model = CPVAE(**{**SMALL, "max_iter": 1}, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        before = [p.detach().clone() for p in model.module_.parameters()]
        with pytest.raises(ValueError, match=f"configuration changed.*{next(iter(change))}"):
            model.set_params(**change).fit(X, y)
        assert all(torch.equal(a, b) for a, b in zip(before, model.module_.parameters()))
        # What only the training loop reads may change between warm-started fits.
        model.set_params(**{k: SMALL.get(k, CPVAE().get_params()[k]) for k in change})
        model.set_params(mi_weight=2.0, learning_rate_init=1e-4).fit(X, y)
    assert model.n_iter_ == 2


def test_convergence_and_anneal_warnings(populations_data):
    X, y, _, _ = populations_data
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        CPVAE(**{**SMALL, "max_iter": 2}).fit(X, y)
    with pytest.warns(UserWarning, match="mi_anneal_epochs=5 is longer than max_iter=2"):
        CPVAE(**{**SMALL, "max_iter": 2}, mi_weight=3.0, mi_anneal_epochs=5).fit(X, y)


def test_annealing_is_recorded(populations_data):
    X, y, _, _ = populations_data
    model = CPVAE(**{**SMALL, "max_iter": 4}, mi_weight=5.0, mi_anneal_epochs=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    alphas = [r["mi_weight"] for r in model.history_]
    assert alphas == sorted(alphas) and 1.0 < alphas[0] < alphas[-1] <= 5.0


def test_verbose_prints_each_term(populations_data, capsys):
    X, y, _, _ = populations_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        CPVAE(**{**SMALL, "max_iter": 2}, verbose=1).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(t in out[0] for t in ("recon=", "kl_shared=", "mi="))


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


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y), "NaN"),
        (
            lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X), y),
            "infinity",
        ),
        (lambda X, y: (X, np.full(len(y), "pop0")), "at least 2 populations"),
        (lambda X, y: (X, np.append(y[:-1], "lonely")), r"at least 2 rows.*lonely"),
        (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
        (lambda X, y: (X[:, :, None], y), "3"),
    ],
    ids=["nan", "inf", "one-population", "tiny-population", "length-mismatch", "3d"],
)
def test_bad_fit_input_raises_clearly(populations_data, mutate, match):
    X, y, _, _ = populations_data
    Xb, yb = mutate(X, y)
    with pytest.raises(ValueError, match=match):
        CPVAE(**SMALL).fit(Xb, yb)


def test_bad_inference_input_raises_clearly(fitted, populations_data):
    X, y, _, _ = populations_data
    with pytest.raises(ValueError, match="expecting 12 features"):
        fitted.transform(X[:, :5])
    with pytest.raises(ValueError, match=r"unknown population label\(s\) \['pop9'\]"):
        fitted.transform(X[:2], populations=["pop0", "pop9"])
    codes = fitted.transform(X[:2], populations=y[:2])
    with pytest.raises(ValueError, match="unknown population"):
        fitted.inverse_transform(codes, populations=["x", "pop0"])
    with pytest.raises(ValueError, match="one label per row"):
        fitted.transform(X[:2], populations=["pop0"])
    with pytest.raises(ValueError, match="needs populations"):
        fitted.inverse_transform(codes, part="full")
    with pytest.raises(ValueError, match="columns"):
        fitted.inverse_transform(codes[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(np.full((1, 12), np.nan))


@pytest.mark.parametrize(
    "method", ["transform", "predict", "predict_proba", "score_samples", "inverse_transform"]
)
def test_unfitted_raises(method):
    with pytest.raises(NotFittedError):
        getattr(CPVAE(), method)(np.zeros((2, 3)))


def test_invalid_parameters_raise():
    X, y, _, _ = make_populations(n_per_pop=10)
    for params in (
        {"n_shared": 0},
        {"objective": "x"},
        {"mi_weight": -1},
        {"hidden_layer_sizes": (0,)},
        {"device": "tpu9"},
        {"priors": [1.0]},
    ):
        with pytest.raises(ValueError):
            CPVAE(**{**SMALL, **params, "max_iter": 1}).fit(X, y).predict(X)


def test_cuda_model_falls_back_to_cpu_with_a_warning(fitted, populations_data, monkeypatch):
    """A model fitted on a GPU, used on a CPU-only machine (simulated)."""
    import torch as _torch

    monkeypatch.setattr(_torch.cuda, "is_available", lambda: False)
    X, _, _, _ = populations_data
    moved = CPVAE(**fitted.get_params())
    moved.__dict__.update(fitted.__dict__)
    moved.set_params(device="cuda")
    moved.device_ = "cuda:0"
    with pytest.warns(UserWarning, match="not available on this machine; using the CPU"):
        proba = moved.predict_proba(X[:5])
    np.testing.assert_array_equal(proba, fitted.predict_proba(X[:5]))
