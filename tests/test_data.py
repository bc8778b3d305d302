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
