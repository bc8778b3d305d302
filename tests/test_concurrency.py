"""Parallel model selection equals sequential; threads do not share random state."""

import threading
import warnings

import numpy as np
import pytest
from _data import make_offset_populations
from conftest import CONFIGS
from joblib import parallel_backend
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score

from sklearn_cpvae import CPVAE

TINY = CONFIGS["concurrency"]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(32, 3))
    y = np.repeat(["a", "b"], 16)
    X[y == "b", 0] += 2.0
    return X, y


CV = StratifiedKFold(2, shuffle=True, random_state=0)


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


@pytest.fixture(scope="module")
def sequential():
    X, y = _data()
    ctx = _quiet()
    try:
        search = GridSearchCV(CPVAE(**TINY), {"n_shared": [1, 2]}, cv=CV, n_jobs=1).fit(X, y)
        scores = cross_val_score(CPVAE(**TINY), X, y, cv=CV, n_jobs=1)
    finally:
        ctx.__exit__(None, None, None)
    return search, scores


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_grid_search_and_cross_val_score_parallel_equal_sequential(backend, sequential):
    X, y = _data()
    search1, scores1 = sequential
    ctx = _quiet()
    try:
        with parallel_backend(backend, n_jobs=2):
            search2 = GridSearchCV(CPVAE(**TINY), {"n_shared": [1, 2]}, cv=CV, n_jobs=2).fit(X, y)
            scores2 = cross_val_score(CPVAE(**TINY), X, y, cv=CV, n_jobs=2)
    finally:
        ctx.__exit__(None, None, None)
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        assert_array_equal(search2.cv_results_[key], search1.cv_results_[key], err_msg=key)
    assert search2.best_params_ == search1.best_params_
    assert_array_equal(search2.predict_proba(X), search1.predict_proba(X))
    assert_array_equal(scores2, scores1)


def test_two_threads_do_not_disturb_each_other():
    """Fits in two threads at once equal the same fits run one after the other."""
    data = [_data(0), _data(1)]
    params = [dict(TINY, random_state=0), dict(TINY, random_state=1, max_iter=3)]
    ctx = _quiet()
    try:
        sequential = [CPVAE(**p).fit(*d) for p, d in zip(params, data, strict=True)]
        concurrent = [CPVAE(**p) for p in params]
        errors = []
        barrier = threading.Barrier(2)

        def work(est, X, y):
            try:
                barrier.wait()
                est.fit(X, y)
            except BaseException as exc:  # surfaced in the main thread below
                errors.append(exc)

        threads = [
            threading.Thread(target=work, args=(est, *d))
            for est, d in zip(concurrent, data, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        ctx.__exit__(None, None, None)
    assert not errors, errors
    for seq, con, (X, y) in zip(sequential, concurrent, data, strict=True):
        assert_array_equal(con.loss_curve_, seq.loss_curve_)
        assert_array_equal(con.transform(X, y), seq.transform(X, y))
        assert_allclose(con.predict_proba(X), seq.predict_proba(X), rtol=0, atol=0)


def test_fit_leaves_global_rng_untouched():
    import random

    import torch

    X, y = _data()
    np_state, torch_state, py_state = (
        np.random.get_state(),  # noqa: NPY002
        torch.random.get_rng_state(),
        random.getstate(),
    )
    ctx = _quiet()
    try:
        model = CPVAE(**{**TINY, "random_state": None}).fit(X, y)
        model.predict_proba(X)
        model.sample(3)
    finally:
        ctx.__exit__(None, None, None)
    assert np.array_equal(np.random.get_state()[1], np_state[1])  # noqa: NPY002
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert random.getstate() == py_state


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_through_joblib_threading_backend():
    """A search runs under a joblib backend chosen by the caller, with no code change."""
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    X, y = make_offset_populations()
    search = GridSearchCV(
        CPVAE(random_state=0, **CONFIGS["scaling"]), {"mi_samples": [None, 2]}, cv=2, n_jobs=2
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

    X, y = make_offset_populations()
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster):
            search = GridSearchCV(
                CPVAE(random_state=0, **CONFIGS["scaling"]),
                {"mi_samples": [None, 2]},
                cv=2,
                n_jobs=-1,
            )
            with parallel_backend("dask"):
                search.fit(X, y)
    local = GridSearchCV(
        CPVAE(random_state=0, **CONFIGS["scaling"]), {"mi_samples": [None, 2]}, cv=2
    )
    local.fit(X, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
