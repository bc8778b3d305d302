"""Placing the training matrix on the device (``sklearn_cpvae._data``)."""

import numpy as np
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
