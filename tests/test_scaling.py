"""Correctness of the fast paths: sub-sampled MI, balanced layout, data placement, chunking.

No timings here: speed is measured by the scripts in ``benchmarks/``.
"""

import numpy as np
import pytest
import torch
from _data import CONFIGS

from sklearn_cpvae import CPVAE
from sklearn_cpvae._data import training_tensor
from sklearn_cpvae._module import CPVAEModule
from sklearn_cpvae._objective import batch_terms, draw_off_population, mi_weights


@pytest.mark.parametrize("counts", [[3, 3, 3], [2, 5, 1, 4]])
def test_subsampled_mi_is_unbiased(counts):
    """Averaged over many draws, the sub-sampled term equals the exact minibatch term."""
    gen = torch.Generator().manual_seed(0)
    k = len(counts)
    populations = torch.repeat_interleave(torch.arange(k), torch.tensor(counts))
    batch_counts = torch.tensor(counts, dtype=torch.float64)
    pop_sizes = torch.tensor([10.0, 40.0, 7.0, 13.0][:k], dtype=torch.float64)
    kl = torch.rand((k, len(populations)), generator=gen, dtype=torch.float64) * 5
    exact = torch.sum(mi_weights(populations, batch_counts, pop_sizes) * kl)
    # Every draw is independent, so one call with m draws averages m estimates.
    m = 400_000
    rows, weight = draw_off_population(populations, batch_counts, pop_sizes, m, gen)
    assert rows.shape == weight.shape == (k, m)
    # Encoder k never sees its own population.
    assert not torch.any(populations[rows] == torch.arange(k)[:, None])
    estimate = torch.sum(weight * kl.gather(1, rows))
    assert estimate.item() == pytest.approx(exact.item(), rel=5e-3)
    # And a single small draw is an estimate of the same sum, per encoder.
    rows1, w1 = draw_off_population(populations, batch_counts, pop_sizes, 1, gen)
    per_k = mi_weights(populations, batch_counts, pop_sizes).sum(1)
    np.testing.assert_allclose(w1[:, 0].numpy(), per_k.numpy())


def _module(k, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return CPVAEModule(d, k, 2, 3, [8], "relu", "gaussian", g).double()


@pytest.mark.parametrize("objective", ["elbo_mi", "paper", "elbo"])
def test_balanced_layout_matches_general_path(objective):
    """The balanced fast path (views, block diagonal) computes the same loss and grads."""
    k, m, d = 3, 4, 6
    mod = _module(k, d)
    x = torch.randn(k * m, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pops = torch.arange(k).repeat_interleave(m)
    counts = torch.full((k,), float(m), dtype=torch.float64)
    sizes = torch.tensor([20.0, 30.0, 50.0], dtype=torch.float64)
    results = []
    for balanced in (True, False):
        gen = torch.Generator().manual_seed(5)
        terms = batch_terms(
            mod,
            x,
            pops,
            counts,
            sizes,
            objective=objective,
            mi_weight=2.0,
            generator=gen,
            balanced=balanced,
        )
        grads = torch.autograd.grad(terms.loss, list(mod.parameters()), allow_unused=True)
        results.append(({n: float(v.detach()) for n, v in terms.__dict__.items()}, grads))
    (f1, g1), (f2, g2) = results
    assert f1 == pytest.approx(f2, rel=1e-12)
    for a, b in zip(g1, g2, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b)


def test_subsampled_batch_terms_expectation():
    """batch_terms with mi_samples averages to the exact MI term over the draws."""
    k, m, d = 3, 4, 6
    mod = _module(k, d)
    x = torch.randn(k * m, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pops = torch.arange(k).repeat_interleave(m)
    counts = torch.full((k,), float(m), dtype=torch.float64)
    sizes = torch.tensor([20.0, 30.0, 50.0], dtype=torch.float64)
    common = dict(objective="paper", mi_weight=1.0, balanced=True)
    with torch.no_grad():
        exact = batch_terms(mod, x, pops, counts, sizes, generator=torch.Generator(), **common)
        sub = batch_terms(
            mod,
            x,
            pops,
            counts,
            sizes,
            generator=torch.Generator().manual_seed(2),
            mi_samples=50_000,
            **common,
        )
    assert sub.mi.item() == pytest.approx(exact.mi.item(), rel=1e-2)


def _data(n=120, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) + y[:, None]
    return X, y


SMALL = CONFIGS["scaling"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "params", [dict(mi_samples=3), dict(precision="bf16"), dict(mi_samples=2, early_stopping=True)]
)
def test_fit_options_are_deterministic(params):
    X, y = _data(n=60)
    a = CPVAE(random_state=0, **SMALL, **params).fit(X, y)
    b = CPVAE(random_state=0, **SMALL, **params).fit(X.astype(np.float32), y)
    assert np.isfinite(a.loss_curve_).all()
    # float32 and float64 input give the same float32 training tensor.
    for p, q in zip(a.module_.parameters(), b.module_.parameters(), strict=True):
        assert torch.equal(p, q)


def test_training_tensor_copies_at_most_once():
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    t = training_tensor(X, torch.device("cpu"))
    assert t.data_ptr() == X.__array_interface__["data"][0]  # used in place
    X64 = X.astype(np.float64)
    rows = np.array([3, 1])
    t = training_tensor(X64, torch.device("cpu"), rows)
    assert t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), X[rows])
    X.setflags(write=False)  # a read-only array is copied, never aliased
    assert training_tensor(X, torch.device("cpu")).data_ptr() != X.__array_interface__["data"][0]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_inference_chunking_does_not_change_results(monkeypatch):
    """Methods give the same rows whatever the chunk size (memory stays flat in n)."""
    import sklearn_cpvae._inference as inference

    X, y = _data()
    est = CPVAE(random_state=0, **SMALL).fit(X, y)
    Xf = X.astype(np.float32)
    codes = est.transform(Xf, populations=y)
    ref = [
        est.predict_proba(Xf),
        est.score_samples(Xf),
        codes,
        est.inverse_transform(codes, populations=y),
    ]
    monkeypatch.setattr(inference, "CHUNK_BYTES", 1)  # one row per chunk
    got = [
        est.predict_proba(Xf),
        est.score_samples(Xf),
        est.transform(Xf, populations=y),
        est.inverse_transform(codes, populations=y),
    ]
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_through_joblib_threading_backend():
    """A search runs under a joblib backend chosen by the caller, with no code change."""
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    X, y = _data()
    search = GridSearchCV(
        CPVAE(random_state=0, **SMALL), {"mi_samples": [None, 2]}, cv=2, n_jobs=2
    )
    with parallel_backend("threading"):
        search.fit(X, y)
    assert set(search.cv_results_["param_mi_samples"]) == {None, 2}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_on_local_dask_cluster():
    """The same search distributed over a local Dask cluster (two worker processes)."""
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    X, y = _data()
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster):
            search = GridSearchCV(
                CPVAE(random_state=0, **SMALL), {"mi_samples": [None, 2]}, cv=2, n_jobs=-1
            )
            with parallel_backend("dask"):
                search.fit(X, y)
    local = GridSearchCV(CPVAE(random_state=0, **SMALL), {"mi_samples": [None, 2]}, cv=2)
    local.fit(X, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_cuda_fit_and_predict(precision):
    X, y = _data(n=300)
    params = {**SMALL, "device": "cuda"}
    est = CPVAE(random_state=0, precision=precision, mi_samples=4, **params).fit(X, y)
    assert est.device_.startswith("cuda")
    assert np.isfinite(est.loss_curve_).all()
    assert est.predict_proba(X).shape == (300, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cuda_streams_data_that_does_not_fit(monkeypatch):
    """With no room on the GPU the rows stay in pinned host memory and are streamed."""
    import sklearn_cpvae._data as data_mod

    monkeypatch.setattr(data_mod, "_GPU_SHARE", 0.0)
    X, y = _data(n=300)
    t = training_tensor(X, torch.device("cuda"))
    assert t.device.type == "cpu" and t.is_pinned()
    est = CPVAE(random_state=0, **{**SMALL, "device": "cuda"}).fit(X, y)
    assert np.isfinite(est.loss_curve_).all()
