"""Multi-study / omics inputs: count likelihoods, NaN masking, sparse X, DataFrames,
populations without a private space, the invariance penalty and the diagnostics.

Every test runs on small synthetic data whose generating structure is known.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _data import CONFIGS
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score

from sklearn_cpvae import CPVAE
from sklearn_cpvae._likelihoods import count_log_prob, log_likelihood
from sklearn_cpvae._objective import mmd_rbf_groups
from sklearn_cpvae._sparse import SparseRows, row_totals
from sklearn_cpvae.diagnostics import (
    leakage_report,
    linear_probe,
    private_kl,
    variance_explained,
)

SMALL = CONFIGS["counts"]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _two_study_data(n=200, d=8, seed=0):
    """Population "a" has private variation on features 4-5; both share features 0-3."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(2 * n, 1))
    w = rng.normal(size=(1, 4)) * 2
    X = rng.normal(scale=0.3, size=(2 * n, d))
    X[:, :4] += z @ w
    y = np.repeat(["a", "b"], n)
    t = rng.normal(size=n)
    X[:n, 4] += 2 * t
    X[:n, 5] -= 2 * t
    return X, y


# ------------------------------------------------------------------ likelihoods
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


def test_nb_fits_overdispersed_counts_better_than_poisson():
    rng = np.random.default_rng(0)
    n, d = 300, 12
    mu = np.exp(rng.normal(1.5, 0.5, size=d))
    theta = 1.0  # strong overdispersion: Var = mu + mu^2
    C = rng.negative_binomial(theta, theta / (theta + mu), size=(2 * n, d)).astype(float)
    y = np.repeat([0, 1], n)
    scores = {}
    for lik in ("poisson", "nb"):
        m = CPVAE(likelihood=lik, max_iter=40, **SMALL).fit(C[::2], y[::2])
        scores[lik] = m.score_samples(C[1::2]).mean()
        if lik == "nb":
            theta_hat = np.exp(m.module_.log_theta.detach().numpy())
    assert scores["nb"] > scores["poisson"] + 1.0
    # The learned per-feature inverse dispersion is near the truth, not at Poisson (inf).
    assert 0.3 < np.median(theta_hat) < 3.0


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
            **{k: v for k, v in SMALL.items() if k != "n_shared"},
        ).fit(C, y)
        z = m.set_params(blocks="shared").transform(C).ravel()
        corr[lib] = abs(np.corrcoef(z, np.log(depth))[0, 1])
        if lib:
            assert m.library_size_ref_ == pytest.approx(np.median(C.sum(1)))
            assert roc_auc_score(state, z) > 0.9 or roc_auc_score(state, -z) > 0.9
    assert corr[True] < 0.3 < corr[False]


def test_count_likelihood_rejects_negative_values():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="non-negative counts"):
        CPVAE(likelihood="poisson", max_iter=1, **SMALL).fit(X, np.repeat([0, 1], 10))


def test_decoder_mean_of_count_model_is_mean_count():
    rng = np.random.default_rng(0)
    C = rng.poisson(5.0, size=(200, 6)).astype(float)
    y = np.repeat([0, 1], 100)
    m = CPVAE(likelihood="nb", max_iter=60, **SMALL).fit(C, y)
    rec = m.inverse_transform(m.transform(C, y), y)
    assert np.all(rec > 0)
    np.testing.assert_allclose(rec.mean(0), C.mean(0), rtol=0.25)


# --------------------------------------------------------------------- missing
def test_missing_mask_fits_and_predicts_with_nan():
    X, y = _two_study_data()
    X[y == "a", 6:] += 1.5  # a study offset, so that classification is well posed
    rng = np.random.default_rng(3)
    Xn = X.copy()
    Xn[rng.random(X.shape) < 0.2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        CPVAE(max_iter=2, **SMALL).fit(Xn, y)
    full = CPVAE(max_iter=40, **SMALL).fit(X[::2], y[::2])
    masked = CPVAE(missing="mask", max_iter=40, **SMALL).fit(Xn[::2], y[::2])
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


# ---------------------------------------------------------------------- sparse
def test_sparse_fit_matches_dense_and_never_densifies_whole(monkeypatch):
    X, y = _two_study_data(n=150)
    X[np.abs(X) < 0.5] = 0.0
    dense = CPVAE(max_iter=3, early_stopping=True, **SMALL).fit(X, y)
    # Small inference chunks, so "never the whole matrix" is visible on small data.
    monkeypatch.setattr("sklearn_cpvae._inference.CHUNK_BYTES", 64 * 1024)
    biggest = []
    for cls in (sp.csr_matrix, sp.csr_array):
        orig = cls.toarray

        def toarray(self, *a, _orig=orig, **k):
            biggest.append(self.shape[0])
            return _orig(self, *a, **k)

        monkeypatch.setattr(cls, "toarray", toarray)
    for fmt in ("csr", "csc"):
        biggest.clear()
        Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
        model = CPVAE(max_iter=3, early_stopping=True, **SMALL).fit(Xs, y)
        codes = model.transform(Xs, y)
        pred = model.predict_proba(Xs)
        assert max(biggest) < len(X) // 2
        np.testing.assert_allclose(codes, dense.transform(X, y), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pred, dense.predict_proba(X), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            model.score_samples(Xs), dense.score_samples(X), rtol=1e-4, atol=1e-4
        )
    # Minibatches densify K * batch_size rows at most.
    biggest.clear()
    CPVAE(max_iter=1, **SMALL).fit(sp.csr_matrix(X), y)
    assert biggest[0] == 2 * SMALL["batch_size"]


def test_sparse_rows_and_row_totals():
    rng = np.random.default_rng(0)
    X = sp.random(30, 7, density=0.3, random_state=0, format="csr")
    rows = SparseRows(X, "cpu")
    idx = torch.tensor([3, 0, 29])
    np.testing.assert_array_equal(rows[idx].numpy(), X[[3, 0, 29]].toarray().astype(np.float32))
    assert len(rows) == 30
    Xd = X.toarray()
    Xd[rng.random(Xd.shape) < 0.1] = np.nan
    Xs = sp.csr_matrix(np.where(Xd == 0, 0, Xd))
    expect = np.nansum(Xd, 1) * 7 / (~np.isnan(Xd)).sum(1)
    np.testing.assert_allclose(row_totals(Xs), expect)
    np.testing.assert_allclose(row_totals(Xd), expect)


# ------------------------------------------------------------------- DataFrames
def test_dataframe_population_column_in_pipeline():
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _two_study_data(n=80)
    genes = [f"gene{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=genes)
    df["study"] = y
    pre = ColumnTransformer(
        [("scale", StandardScaler(), genes)],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    model = CPVAE(population_column="study", max_iter=3, **SMALL)
    pipe = make_pipeline(pre, model).set_output(transform="pandas")
    codes = pipe.fit_transform(df)
    assert list(model.feature_names_in_) == genes
    assert list(codes.columns) == ["shared0", "shared1", "private0", "private1"]
    # The column doubles as `populations` in transform; explicit y agrees with it.
    np.testing.assert_allclose(codes.to_numpy(), pipe.transform(df).to_numpy())
    rec = model.inverse_transform(codes, y)
    assert list(rec.columns) == genes
    with pytest.raises(ValueError, match="disagrees"):
        CPVAE(population_column="study", max_iter=1, **SMALL).fit(df, y[::-1])
    # predict ignores the column; y-routing in a plain Pipeline keeps working.
    assert model.predict(df.drop(columns="study")).shape == (len(df),)
    make_pipeline(StandardScaler(), CPVAE(max_iter=2, **SMALL)).fit(df[genes], df["study"])
    # A search over the DataFrame alone: fit and score read the column.
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(
        CPVAE(population_column="study", max_iter=2, **SMALL), {"n_private": [1, 2]}, cv=2
    ).fit(df.sample(frac=1.0, random_state=0))
    assert search.best_params_["n_private"] in (1, 2)
    assert 0.0 <= search.best_score_ <= 1.0


# ------------------------------------------------------- no private space (cVAE)
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
        **{k: v for k, v in SMALL.items() if k != "n_private"},
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
        CPVAE(no_private_populations=["nope"], max_iter=1, **SMALL).fit(X, y)
    report = leakage_report(model, X, y)
    assert np.isnan(report["private_kl_own"][0])


# ------------------------------------------------------------- invariance, MMD
def test_mmd_rbf_groups_matches_brute_force():
    rng = np.random.default_rng(0)
    codes = torch.as_tensor(rng.normal(size=(12, 3)))
    pops = torch.as_tensor(rng.integers(0, 3, 12))

    def k(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 1.7)

    c = codes.numpy()
    ref = 0.0
    for j in range(3):
        g = c[pops.numpy() == j]
        ref += k(g, g).mean() - 2 * k(g, c).mean() + k(c, c).mean()
    got = mmd_rbf_groups(codes, pops, 3, bandwidth=1.7)
    assert float(got) == pytest.approx(ref, rel=1e-10)


def test_shared_invariance_reduces_study_leakage():
    rng = np.random.default_rng(0)
    n, d = 150, 8
    bio = rng.integers(0, 2, 3 * n)
    y = np.repeat([0, 1, 2], n)
    X = rng.normal(scale=0.5, size=(3 * n, d))
    X[:, :4] += np.where(bio[:, None] == 1, 1.5, -1.5)
    X[:, 4:] += np.array([-2.0, 0.0, 2.0])[y][:, None]  # study effect
    probes = {}
    for lam in (0.0, 20.0):
        m = CPVAE(shared_invariance=lam, max_iter=40, **SMALL).fit(X, y)
        z = m.set_params(blocks="shared").transform(X)
        probes[lam] = linear_probe(z, y)
        if lam:
            assert linear_probe(z, bio) > 0.9  # the biology survives the penalty
    assert probes[20.0] < probes[0.0]


# ----------------------------------------------------------------- diagnostics
def test_linear_probe_chance_and_perfect():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 60)
    noise = rng.normal(size=(180, 3))
    assert linear_probe(noise, labels) < 0.5
    informative = noise + 5 * np.eye(3)[labels]
    assert linear_probe(informative, labels) > 0.95
    groups = np.arange(180) // 5
    assert linear_probe(informative, labels, groups=groups) > 0.95


def test_leakage_and_variance_explained_on_known_structure():
    X, y = _two_study_data(n=200)
    model = CPVAE(max_iter=60, **SMALL).fit(X, y)
    report = leakage_report(model, X, y)
    assert report["chance"] == 0.5
    assert set(report) >= {"shared_probe", "private_kl_own", "private_kl_off"}
    # Population a's private encoder is informative on its rows, not on b's (eq. 6).
    assert report["private_kl_own"][0] > 5 * report["private_kl_off"][0]
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


def test_variance_explained_needs_gaussian():
    C = np.random.default_rng(0).poisson(2.0, size=(40, 3)).astype(float)
    m = CPVAE(likelihood="poisson", max_iter=1, **SMALL).fit(C, np.repeat([0, 1], 20))
    with pytest.raises(ValueError, match="gaussian"):
        variance_explained(m, C, np.repeat([0, 1], 20))


# ------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_sparse_counts_missing_and_gate():
    # Not run in development (no GPU there): sparse rows are densified on the host and
    # moved per minibatch; masks, library offsets and the gate live on the device.
    rng = np.random.default_rng(0)
    C = rng.poisson(3.0, size=(200, 10)).astype(float)
    y = np.repeat(["bg", "tg"], 100)
    params = {**SMALL, "device": "cuda"}
    m = CPVAE(likelihood="nb", no_private_populations=["bg"], max_iter=3, **params)
    m.fit(sp.csr_matrix(C), y)
    assert np.isfinite(m.predict_proba(sp.csr_matrix(C))).all()
    Xn = rng.normal(size=(200, 10))
    Xn[rng.random(Xn.shape) < 0.2] = np.nan
    mm = CPVAE(missing="mask", shared_invariance=1.0, max_iter=3, **params).fit(Xn, y)
    assert np.isfinite(mm.transform(Xn, y)).all()
