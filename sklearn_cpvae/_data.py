"""Placing the training matrix on the training device with at most one copy of it.

The estimator validates ``X`` as float32 or float64 numpy. Training needs float32 rows on
the device. This module makes that tensor without the intermediate full-size copies that
``np.array(X[rows], dtype=np.float32)`` would make (one for the row gather, one for the
cast), and decides where the tensor lives: on the GPU when it fits there, otherwise in
pinned host memory from which :func:`~sklearn_cpvae._training.train` streams minibatches.
A memory-mapped ``X`` (``np.load(path, mmap_mode="r")``, ``np.memmap``) is not copied at
all: :class:`MappedRows` reads each minibatch's rows from the file. An h5py Dataset or
a zarr array (a backed AnnData's dense ``.X`` is an h5py Dataset) is wrapped in
:class:`DiskRows` and read the same way, one block or minibatch of rows at a time.
"""

import mmap

import numpy as np
import scipy.sparse as sp
import torch

# Rows are converted in blocks of about this many bytes, so temporaries stay small.
_BLOCK_BYTES = 64 * 2**20
# Keep the resident training matrix under this share of the GPU's free memory; the rest
# is for the networks, their activations and the optimiser.
_GPU_SHARE = 0.5


def file_backed(X):
    """Whether the dense array ``X`` is (a view of) a memory-mapped file.

    scikit-learn's validation returns a plain ndarray view of a ``np.memmap``; the map
    is found by following ``.base``.
    """
    while isinstance(X, np.ndarray):
        if isinstance(X, np.memmap):
            return True
        X = X.base
    return isinstance(X, mmap.mmap)


def on_disk(X):
    """Whether ``X`` is an h5py Dataset or a zarr array: rows stored in a file, read in
    blocks (:class:`DiskRows`) rather than loaded whole as scikit-learn's validation would."""
    if isinstance(X, np.ndarray) or not (hasattr(X, "shape") and hasattr(X, "dtype")):
        return False
    return type(X).__module__.split(".")[0] in ("h5py", "zarr")


class DiskRows:
    """An h5py Dataset or zarr array seen as a 2-D numpy array that is read in rows.

    ``shape``, ``dtype`` (float32 kept, any other dtype read as float64, as
    scikit-learn's validation converts it), ``len`` and indexing by a slice or by
    integer rows, which returns a numpy block. Integer rows are read in increasing order
    without repeats (what h5py's selection needs, and one forward sweep of the chunks)
    and put back in the order asked for. Converting the whole object to an array
    (``np.asarray``) reads every row: the training and inference paths never do.
    """

    def __init__(self, X):
        self.X = X
        self.shape = tuple(int(n) for n in X.shape)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))
        kept = X.dtype in (np.float32, np.float64)
        self.dtype = np.dtype(X.dtype) if kept else np.dtype(np.float64)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return np.asarray(self.X[idx], dtype=self.dtype)
        idx = np.asarray(idx)
        rows, inverse = np.unique(idx, return_inverse=True)
        if hasattr(self.X, "oindex"):
            block = self.X.oindex[rows]  # zarr: an orthogonal selection of rows
        else:
            block = self.X[rows]
        return np.asarray(block, dtype=self.dtype)[inverse.reshape(-1)]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.X[:], dtype=dtype or self.dtype)


def row_blocks(X, block_rows=8192):
    """Consecutive blocks of rows of a dense ``X`` (an ndarray, a memory map or
    :class:`DiskRows`) as numpy arrays, so that a pass over X holds one block at a time."""
    for start in range(0, X.shape[0], block_rows):
        yield np.asarray(X[start : start + block_rows])


class MappedRows:
    """Rows of a memory-mapped ``X``, read from the file one minibatch at a time.

    Indexable like a (n, D) float32 tensor on ``device`` (``len``, ``.device``,
    ``.dtype``, ``.shape``, a slice or 1-D integer index), as
    :class:`~sklearn_cpvae._sparse.SparseRows`: training then holds one minibatch of
    X in memory, never X. ``rows`` restricts it to those rows of X (a validation split).
    The rows of a minibatch are read in increasing file order (one forward sweep of the
    pages they touch) and put back in the minibatch's order.
    """

    def __init__(self, X, device, rows=None):
        self.X = X
        self.rows = None if rows is None else np.asarray(rows)
        self.device = torch.device(device)
        self.dtype = torch.float32
        n = X.shape[0] if rows is None else len(self.rows)
        self.shape = (n,) + tuple(X.shape[1:])

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        elif isinstance(idx, torch.Tensor):
            idx = idx.cpu().numpy()
        idx = np.asarray(idx)
        if self.rows is not None:
            idx = self.rows[idx]
        order = np.argsort(idx, kind="stable")
        block = np.empty((len(idx),) + self.shape[1:], dtype=np.float32)
        if isinstance(self.X, DiskRows):
            block[order] = self.X[idx[order]]
        else:
            block[order] = np.take(self.X, idx[order], axis=0)
        out = torch.from_numpy(block)
        if self.device.type == "cuda":
            return out.pin_memory().to(self.device, non_blocking=True)
        return out.to(self.device)


def _fits_on(device, nbytes):
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= _GPU_SHARE * free


def training_tensor(X, device, rows=None):
    """float32 tensor of ``X[rows]`` (all rows when None) for training on ``device``.

    Returns a tensor on ``device``, or, on a GPU too small for the data, a pinned CPU
    tensor (the caller streams minibatches from it). On the CPU a C-contiguous, writable
    float32 ``X`` with ``rows=None`` is used in place (training never writes to it);
    every other case makes exactly one float32 copy, filled block by block.
    """
    X = np.asarray(X)
    n = X.shape[0] if rows is None else len(rows)
    shape = (n,) + X.shape[1:]
    nbytes = 4 * int(np.prod(shape))
    if (
        device.type == "cpu"
        and rows is None
        and X.dtype == np.float32
        and X.flags.c_contiguous
        and X.flags.writeable
    ):
        return torch.from_numpy(X)
    if _fits_on(device, nbytes):
        out = torch.empty(shape, dtype=torch.float32, device=device)
    else:
        out = torch.empty(shape, dtype=torch.float32, pin_memory=True)
    row_bytes = max(1, nbytes // max(n, 1))
    step = max(1, _BLOCK_BYTES // row_bytes)
    for start in range(0, n, step):
        sel = slice(start, start + step)
        block = X[sel] if rows is None else X[rows[sel]]
        # np.array copies the (small) block, so torch never aliases a read-only array.
        out[sel] = torch.from_numpy(np.array(block, dtype=np.float32, order="C"))
    return out


def column_moments(X, block_rows=8192, with_range=False):
    """Mean and variance of each column of X as float32 sees it, NaN entries skipped;
    with ``with_range`` also each column's smallest and largest value (a sparse X's
    implicit zeros count): ``(mean, var[, lo, hi])``.

    Values are rounded to float32 first (training's view of X, so float32 and float64
    inputs give identical results) and summed in float64, block by block: neither a dense
    copy of X nor a densified sparse X is ever made.
    """
    n_cols = X.shape[1]
    total = np.zeros(n_cols)
    total_sq = np.zeros(n_cols)
    count = np.zeros(n_cols)
    lo = np.full(n_cols, np.inf)
    hi = np.full(n_cols, -np.inf)
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        data = np.nan_to_num(X.data.astype(np.float32).astype(np.float64))
        X = sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape)
        total = np.asarray(X.sum(axis=0)).ravel()
        total_sq = np.asarray(X.multiply(X).sum(axis=0)).ravel()
        count[:] = X.shape[0]
        if with_range:
            lo, hi = X.min(axis=0).toarray().ravel(), X.max(axis=0).toarray().ravel()
    else:
        for block in row_blocks(X, block_rows):
            block = np.asarray(block, dtype=np.float32)
            # Accumulated in float64 without a float64 copy of the block (whose fresh
            # pages cost more than the sums themselves).
            sums = block.sum(0, dtype=np.float64)
            if not np.isnan(sums).any():
                # No NaN in the block (a NaN makes its column's sum NaN): the sums of the
                # masked path below, without its masks and NaN-aware passes.
                if with_range and len(block):
                    lo = np.fmin(lo, block.min(0))
                    hi = np.fmax(hi, block.max(0))
                total += sums
                total_sq += np.einsum("ij,ij->j", block, block, dtype=np.float64)
                count += len(block)
                continue
            block = block.astype(np.float64)
            observed = ~np.isnan(block)
            if with_range:
                lo = np.fmin(lo, np.nanmin(block, 0, initial=np.inf))
                hi = np.fmax(hi, np.nanmax(block, 0, initial=-np.inf))
            block = np.where(observed, block, 0.0)
            total += block.sum(0)
            total_sq += (block * block).sum(0)
            count += observed.sum(0)
    count = np.maximum(count, 1)
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    return (mean, var, lo, hi) if with_range else (mean, var)
