"""Placing the training matrix on the device (``sklearn_cpvae._data``)."""

import numpy as np
import pytest
import torch

from sklearn_cpvae._data import training_tensor


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


def _on_disk(tmp_path, X):
    path = tmp_path / "X.npy"
    np.save(path, X)
    return np.load(path, mmap_mode="r")


def test_memory_mapped_X_is_read_from_its_file(tmp_path, populations_data):
    """A memory-mapped X is neither copied by validation nor by training, and the fit,
    its inference and its validation split equal those of the same X in memory."""
    import warnings

    from conftest import CONFIGS

    from sklearn_cpvae import CPVAE
    from sklearn_cpvae._data import MappedRows, file_backed
    from sklearn_cpvae._training import rows_source

    X, y, _, _ = populations_data
    X = X.astype(np.float32)
    mapped = _on_disk(tmp_path, X)
    assert file_backed(mapped) and not file_backed(X)
    params = {**CONFIGS["persistence"], "early_stopping": True}
    model = CPVAE(**params)
    Xv = model._validated_fit_data(mapped, y)[0]
    assert file_backed(Xv) and np.shares_memory(Xv, mapped)
    source = rows_source(Xv, torch.device("cpu"))
    assert isinstance(source, MappedRows)
    idx = torch.tensor([5, 1, 5, 250, 0])
    assert torch.equal(source[idx], torch.from_numpy(X[idx.numpy()]))
    assert torch.equal(source[2:7], torch.from_numpy(X[2:7]))
    part = rows_source(Xv, torch.device("cpu"), rows=np.array([9, 3, 7]))
    assert len(part) == 3 and torch.equal(part[torch.tensor([2, 0])], torch.from_numpy(X[[7, 9]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_memory = CPVAE(**params).fit(X, y)
        on_disk = CPVAE(**params).fit(mapped, y)
    assert on_disk.loss_curve_ == in_memory.loss_curve_
    np.testing.assert_array_equal(on_disk.predict_proba(mapped), in_memory.predict_proba(X))
    np.testing.assert_array_equal(on_disk.transform(mapped, y), in_memory.transform(X, y))


def test_float32_range_check_reads_X_in_blocks():
    from sklearn_cpvae._validation import _abs_max, check_float32_range

    X = np.zeros((20_000, 3), dtype=np.float32)
    X[17_000, 2] = -7.0
    assert _abs_max(X, block_rows=4096) == 7.0
    X[19_999, 0] = 1e30
    with pytest.raises(ValueError, match="Standardise X"):
        check_float32_range(X)


def _h5py_rows(tmp_path, X):
    h5py = pytest.importorskip("h5py")
    f = h5py.File(tmp_path / "X.h5", "w")
    f.create_dataset("X", data=X, chunks=(16, X.shape[1]))
    return f["X"]


def _zarr_rows(tmp_path, X):
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(
        tmp_path / "X.zarr", mode="w", shape=X.shape, chunks=(16, X.shape[1]), dtype=X.dtype
    )
    z[:] = X
    return z


@pytest.fixture
def never_whole(monkeypatch):
    """Reading every row of an on-disk X at once fails the test: fit and inference must
    read it in blocks and minibatches."""
    from sklearn_cpvae._data import DiskRows

    def whole(self, dtype=None, copy=None):
        raise AssertionError("the whole on-disk X was loaded")

    monkeypatch.setattr(DiskRows, "__array__", whole)


@pytest.mark.parametrize("store", [_h5py_rows, _zarr_rows], ids=["h5py", "zarr"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_h5py_and_zarr_X_are_read_in_blocks(tmp_path, populations_data, store, dtype, never_whole):
    """An h5py Dataset or zarr array is validated, trained on and predicted from block by
    block, never loaded whole, and the fit equals the fit on the same array in memory."""
    import warnings

    from conftest import CONFIGS

    from sklearn_cpvae import CPVAE
    from sklearn_cpvae._data import DiskRows, MappedRows
    from sklearn_cpvae._training import rows_source

    X, y, _, _ = populations_data
    X = X.astype(dtype)
    stored = store(tmp_path, X)
    params = {**CONFIGS["persistence"], "early_stopping": True}
    Xv = CPVAE(**params)._validated_fit_data(stored, y)[0]
    assert isinstance(Xv, DiskRows) and Xv.dtype == dtype
    source = rows_source(Xv, torch.device("cpu"))
    assert isinstance(source, MappedRows)
    idx = torch.tensor([5, 1, 5, 250, 0])  # unsorted, with a repeat
    assert torch.equal(source[idx], torch.from_numpy(X[idx.numpy()].astype(np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_memory = CPVAE(**params).fit(X, y)
        on_disk = CPVAE(**params).fit(stored, y)
    assert on_disk.loss_curve_ == in_memory.loss_curve_
    assert on_disk.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(on_disk.predict_proba(stored), in_memory.predict_proba(X))
    np.testing.assert_array_equal(on_disk.score_samples(stored), in_memory.score_samples(X))
    np.testing.assert_array_equal(on_disk.transform(stored, y), in_memory.transform(X, y))
    np.testing.assert_array_equal(on_disk.transform(stored), in_memory.transform(X))


def test_backed_anndata_X_is_read_in_blocks(tmp_path, populations_data, never_whole):
    """A backed AnnData's dense .X (an h5py Dataset) is streamed like the Dataset itself."""
    import warnings

    anndata = pytest.importorskip("anndata")
    from conftest import CONFIGS

    from sklearn_cpvae import CPVAE

    X, y, _, _ = populations_data
    X = X.astype(np.float32)
    adata = anndata.AnnData(X=X, obs={"pop": np.asarray(y).astype(str)})
    adata.write_h5ad(tmp_path / "a.h5ad")
    backed = anndata.read_h5ad(tmp_path / "a.h5ad", backed="r")
    params = {**CONFIGS["persistence"], "population_column": "pop"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_memory = CPVAE(**params).fit(adata)
        on_disk = CPVAE(**params).fit(backed)
    assert on_disk.loss_curve_ == in_memory.loss_curve_
    np.testing.assert_array_equal(on_disk.predict_proba(backed), in_memory.predict_proba(adata))


def test_on_disk_X_with_bad_values_is_rejected(tmp_path):
    from sklearn_cpvae import CPVAE

    X = np.ones((40, 3))
    X[33, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        CPVAE(n_shared=1, n_private=1).fit(_h5py_rows(tmp_path, X), np.arange(40) % 2)


def test_column_moments_range_skips_nan_counts_implicit_zeros_and_reads_blocks(tmp_path):
    """``column_moments(with_range=True)``: the extremes Gaussian standardisation stops at."""
    import scipy.sparse as sp

    from sklearn_cpvae._data import column_moments

    def column_range(X, **kw):
        return column_moments(X, with_range=True, **kw)[2:]

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    X[4, 1] = np.nan
    lo, hi = column_range(X, block_rows=7)
    np.testing.assert_allclose(lo, np.nanmin(X.astype(np.float32), 0))
    np.testing.assert_allclose(hi, np.nanmax(X.astype(np.float32), 0))
    np.testing.assert_array_equal(column_moments(X, with_range=True)[:2], column_moments(X))
    S = sp.random(40, 5, density=0.2, random_state=0, format="csr")
    lo, hi = column_range(S)
    np.testing.assert_allclose(lo, S.toarray().min(0))
    np.testing.assert_allclose(hi, S.toarray().max(0))
    path = tmp_path / "X.npy"
    np.save(path, X)
    _, hi_m = column_range(np.load(path, mmap_mode="r"), block_rows=9)
    np.testing.assert_array_equal(hi_m, column_range(X)[1])


def test_column_moments_match_nan_aware_numpy_with_and_without_nan_blocks():
    """Blocks with a NaN and blocks without one give the moments of the observed
    entries, rounded to float32 first, as NumPy's NaN-aware reductions compute them."""
    from sklearn_cpvae._data import column_moments

    rng = np.random.default_rng(1)
    X = rng.normal(loc=3.0, scale=2.0, size=(60, 4))
    X[[2, 3, 40], [0, 0, 2]] = np.nan  # in the first and the sixth block of 7 rows
    mean, var, lo, hi = column_moments(X, block_rows=7, with_range=True)
    seen = X.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(mean, np.nanmean(seen, 0), rtol=1e-12)
    np.testing.assert_allclose(var, np.nanvar(seen, 0), rtol=1e-9)
    np.testing.assert_array_equal(lo, np.nanmin(seen, 0))
    np.testing.assert_array_equal(hi, np.nanmax(seen, 0))
    whole = column_moments(X[~np.isnan(X).any(1)], block_rows=1000)
    parts = column_moments(X[~np.isnan(X).any(1)], block_rows=7)
    np.testing.assert_allclose(whole, parts, rtol=1e-12)
