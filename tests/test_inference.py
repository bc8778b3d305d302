"""Inference with fitted networks (``sklearn_cpvae._inference``): batching, dtypes,
chunking and devices."""

import numpy as np
import pytest
from _data import make_offset_populations
from conftest import CONFIGS

from sklearn_cpvae import CPVAE


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


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_inference_chunking_does_not_change_results(monkeypatch):
    """Methods give the same rows whatever the chunk size (memory stays flat in n)."""
    import sklearn_cpvae._inference as inference

    X, y = make_offset_populations()
    est = CPVAE(random_state=0, **CONFIGS["scaling"]).fit(X, y)
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
def test_likelihood_blocks_and_slices_keep_rows_in_place(monkeypatch):
    """The likelihood encodes blocks of rows and samples slices of each block: with
    blocks of many rows cut into slices of 3, every row keeps its own estimate."""
    import sklearn_cpvae._inference as inference

    X, y = make_offset_populations()
    est = CPVAE(random_state=0, **CONFIGS["scaling"]).fit(X, y)
    Xf = X.astype(np.float32)
    ref = est.score_samples(Xf, populations=y), est.predict_proba(Xf)
    sizes = []
    chunks = inference.chunks

    def spy(n, bytes_per_row):
        sizes.append(bytes_per_row)
        return chunks(n, bytes_per_row)

    monkeypatch.setattr(inference, "chunks", spy)
    est.score_samples(Xf[:1])
    per_row_encode, per_row_samples = sizes[:2]
    assert per_row_samples > 4 * per_row_encode
    monkeypatch.setattr(inference, "CHUNK_BYTES", 3 * per_row_samples)
    got = est.score_samples(Xf, populations=y), est.predict_proba(Xf)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", ["mixed", "sorted", "one_dominant"])
def test_grouped_chunks_cover_the_rows_within_the_budget(layout, monkeypatch):
    """Slices for a padded (K, m, ...) pass: every row once, in order, and each slice's
    (2 n + K m) rows within the budget; mixed populations get slices K times larger than
    one population per slice would allow."""
    import sklearn_cpvae._inference as inference

    k, n = 50, 5000
    pops = {
        "mixed": np.arange(n) % k,
        "sorted": np.repeat(np.arange(k), n // k),
        "one_dominant": np.where(np.arange(n) % 10 == 0, np.arange(n) % k, 0),
    }[layout]
    monkeypatch.setattr(inference, "CHUNK_BYTES", 10_000 * 8)
    budget = 10_000  # rows of 8 bytes
    slices = inference.grouped_chunks(pops, k, 8)
    covered = np.concatenate([np.arange(n)[sl] for sl in slices])
    np.testing.assert_array_equal(covered, np.arange(n))
    for sl in slices:
        part = pops[sl]
        assert 2 * len(part) + k * np.bincount(part).max() <= budget
    worst_case = budget // (2 + k)  # rows per slice when each slice holds one population
    largest = max(sl.stop - sl.start for sl in slices)
    assert largest >= worst_case
    if layout == "mixed":  # (2 + 1) rows per row: within a factor 2 of budget / 3
        assert largest >= budget // 6


def test_encoding_leaves_the_callers_rows_unchanged(fitted, populations_data):
    """Each chunk is standardised in place, on its own copy: a float32 C-ordered X (the
    input a zero-copy conversion would alias) stays as it was, and the codes are those of
    the rows standardised out of place."""
    import torch

    X, y, _, _ = populations_data
    x32 = np.ascontiguousarray(X, dtype=np.float32)
    before = x32.copy()
    codes = fitted.transform(x32, populations=y)
    np.testing.assert_array_equal(x32, before)
    module = fitted.module_
    assert module.standardize
    rows = torch.from_numpy(before)
    with torch.inference_mode():
        mu_z = module.encode_shared(rows)[0].numpy()
        pops = torch.as_tensor(np.searchsorted(fitted.classes_, y))
        mu_t = module.encode_private(rows, pops)[0].numpy()
    np.testing.assert_array_equal(codes, np.hstack([mu_z, mu_t]))
    standardized = module.standardize_rows(rows.clone(), inplace=True)
    torch.testing.assert_close(standardized, module.standardize_rows(rows), rtol=0, atol=0)
