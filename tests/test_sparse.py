"""scipy.sparse input served as dense minibatches (``sklearn_cpvae._sparse``)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _data import make_two_studies
from conftest import CONFIGS

from sklearn_cpvae import CPVAE
from sklearn_cpvae._sparse import SparseRows, row_totals


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sparse_fit_matches_dense_and_never_densifies_whole(monkeypatch):
    X, y = make_two_studies(n=150)
    X[np.abs(X) < 0.5] = 0.0
    dense = CPVAE(max_iter=3, early_stopping=True, **CONFIGS["counts"]).fit(X, y)
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
        model = CPVAE(max_iter=3, early_stopping=True, **CONFIGS["counts"]).fit(Xs, y)
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
    CPVAE(max_iter=1, **CONFIGS["counts"]).fit(sp.csr_matrix(X), y)
    assert biggest[0] == 2 * CONFIGS["counts"]["batch_size"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
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
