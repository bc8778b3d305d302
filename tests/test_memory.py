"""The retained heap (``sklearn_cpvae._memory``): applied once, undone by the last caller
out, after an error too, and invisible in the results."""

import threading

import numpy as np
import pytest
import torch

from sklearn_cpvae import CPVAE, _memory


class FakeLibc:
    """Records the mallopt and malloc_trim calls instead of making them."""

    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def trim(self, pad):
        self.calls.append(("trim", pad))
        return 1


@pytest.fixture
def fake(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(_memory, "_libc", lambda: (libc.mallopt, libc.trim))
    return libc


RETAIN = [
    ("mallopt", _memory.M_MMAP_MAX, 0),
    ("mallopt", _memory.M_TRIM_THRESHOLD, _memory.RETAINED_TRIM_THRESHOLD),
]
RESTORE = [
    ("mallopt", _memory.M_MMAP_MAX, _memory.DEFAULT_MMAP_MAX),
    ("mallopt", _memory.M_MMAP_THRESHOLD, 32 * 2**20),
    ("mallopt", _memory.M_TRIM_THRESHOLD, 64 * 2**20),
]
TRIM = [("trim", 0)]


def test_nested_scopes_set_once_and_restore_on_the_last_exit(fake):
    with _memory.retained_heap():
        assert fake.calls == RETAIN
        with _memory.retained_heap():
            assert fake.calls == RETAIN
        assert fake.calls == RETAIN
    assert fake.calls == RETAIN + RESTORE
    assert _memory._depth == 0


def test_a_trim_asked_for_inside_is_made_by_the_last_one_out(fake):
    with _memory.retained_heap():
        with _memory.retained_heap(trim=True):
            pass
        assert fake.calls == RETAIN
    assert fake.calls == RETAIN + RESTORE + TRIM
    with _memory.retained_heap():
        pass
    assert fake.calls == (RETAIN + RESTORE + TRIM) + (RETAIN + RESTORE)


def test_an_error_inside_the_scope_still_restores(fake):
    with pytest.raises(RuntimeError, match="inside"):
        with _memory.retained_heap(trim=True):
            raise RuntimeError("inside")
    assert fake.calls == RETAIN + RESTORE + TRIM
    assert _memory._depth == 0


def test_overlapping_threads_restore_only_when_both_are_out(fake):
    entered = [threading.Event(), threading.Event()]
    release = threading.Event()

    def work(i):
        with _memory.retained_heap():
            entered[i].set()
            release.wait(10)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    assert all(e.wait(10) for e in entered)
    assert fake.calls == RETAIN
    release.set()
    for t in threads:
        t.join()
    assert fake.calls == RETAIN + RESTORE


def test_disabled_or_without_glibc_nothing_is_called(fake, monkeypatch):
    monkeypatch.setattr(_memory, "ENABLED", False)
    with _memory.retained_heap():
        pass
    monkeypatch.setattr(_memory, "ENABLED", True)
    monkeypatch.setattr(_memory, "_libc", lambda: None)
    with _memory.retained_heap():
        pass
    assert fake.calls == []


def test_fit_and_inference_run_inside_the_scope(fake):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)), np.repeat([0, 1], 30)
    est = CPVAE(4, 2, hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    est.fit(X, y)
    # Training is one scope that ends by trimming; the post-fit pass is inference.
    n = len(RETAIN + RESTORE)
    assert fake.calls[: n + 1] == RETAIN + RESTORE + TRIM
    assert fake.calls[n + 1 :] == (RETAIN + RESTORE) * ((len(fake.calls) - n - 1) // n)
    codes = est.transform(X, populations=y)
    calls = (
        lambda: est.predict_proba(X),
        lambda: est.transform(X, populations=y),
        lambda: est.inverse_transform(codes, populations=y),
    )
    for call in calls:
        before = len(fake.calls)
        call()
        scopes = (len(fake.calls) - before) // len(RETAIN + RESTORE)
        assert scopes >= 1
        assert fake.calls[before:] == (RETAIN + RESTORE) * scopes


def test_results_are_bitwise_the_same_with_and_without(monkeypatch):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(90, 6)), np.repeat([0, 1, 2], 30)
    kw = dict(n_shared=3, n_private=2, hidden_layer_sizes=(16,), max_iter=3, random_state=0)
    fitted = []
    for enabled in (True, False):
        monkeypatch.setattr(_memory, "ENABLED", enabled)
        est = CPVAE(**kw).fit(X, y)
        fitted.append((est, est.predict_proba(X), est.transform(X)))
    (a, pa, ta), (b, pb, tb) = fitted
    assert a.loss_curve_ == b.loss_curve_
    assert np.array_equal(pa, pb) and np.array_equal(ta, tb)
    for wa, wb in zip(a.module_.state_dict().values(), b.module_.state_dict().values()):
        assert torch.equal(wa, wb)
