"""Behaviour of the CPVAE estimator (``sklearn_cpvae._estimator``): fitted attributes,
public methods, options and reproducibility."""

import random

import numpy as np
import pytest
import torch
from conftest import CONFIGS, SMALL
from sklearn.metrics import roc_auc_score

from sklearn_cpvae import CPVAE
from sklearn_cpvae.diagnostics import leakage_report


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


def test_inverse_transform_parts(fitted, populations_data):
    X, y, _, _ = populations_data
    codes = fitted.transform(X, populations=y)
    full = fitted.inverse_transform(codes, populations=y)
    shared = fitted.inverse_transform(codes, part="shared")
    private = fitted.inverse_transform(codes, populations=y, part="private")
    np.testing.assert_allclose(full, shared + private, atol=1e-10)  # g(a, b) = a + b
    assert np.mean((full - X) ** 2) < np.mean((X - X.mean(0)) ** 2)
    with pytest.raises(ValueError, match="needs populations to decode the private block"):
        fitted.inverse_transform(codes)  # never quietly the shared part alone
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


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_population_without_private_space_is_contrastive():
    rng = np.random.default_rng(0)
    n, d = 200, 10
    shared = rng.normal(size=(2 * n, 2)) @ rng.normal(size=(2, d)) * 1.5
    X = shared + rng.normal(scale=0.3, size=(2 * n, d))
    y = np.repeat(["background", "target"], n)
    sub = rng.integers(0, 2, n)  # hidden subgroups of the target only
    X[n:, 6:] += np.where(sub[:, None] == 1, 2.0, -2.0)
    model = CPVAE(
        no_private_populations=["background"],
        n_private=1,
        max_iter=60,
        **{k: v for k, v in CONFIGS["counts"].items() if k != "n_private"},
    ).fit(X, y)
    assert list(model.has_private_) == [False, True]
    codes = model.set_params(blocks="private").transform(X, y)
    assert np.all(codes[:n] == 0)
    t = codes[n:].ravel()
    assert roc_auc_score(sub, t) > 0.95 or roc_auc_score(sub, -t) > 0.95
    # f_k is 0 for the background: its full reconstruction is the shared one.
    both = model.set_params(blocks="both").transform(X[:5], y[:5])
    np.testing.assert_allclose(
        model.inverse_transform(both, y[:5], part="full"),
        model.inverse_transform(both, part="shared"),
        atol=1e-6,
    )
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all()
    assert np.mean(model.predict(X) == y) > 0.8
    with pytest.raises(ValueError, match="not populations"):
        CPVAE(no_private_populations=["nope"], max_iter=1, **CONFIGS["counts"]).fit(X, y)
    report = leakage_report(model, X, y)
    assert np.isnan(report["private_kl_own"][0])
