"""Large CPU temporaries from a heap that keeps its pages while the library computes.

glibc's ``malloc`` serves every request above its mmap threshold (32 MiB at most) with a
fresh ``mmap`` and unmaps it again on ``free``, so each large temporary pays a page fault
and the kernel's zeroing for every 4 KiB page it writes. The K stacked private encoders
make such temporaries on every step: the MI term's first-layer activations and their
gradients are (rows, K x hidden) floats, 82 MB each at K = 50, 800 rows and hidden 512.
Writing one into fresh pages takes three to six times as long as into pages the process
already holds (:doc:`the performance page </performance>`, "Fresh pages for every
large temporary").

Inside :func:`retained_heap` large requests come from the main heap instead and the heap
is not trimmed, so a step reuses the pages the previous step freed. This changes where
tensors live, never what is computed: results are bitwise the same. Like
``threadpoolctl`` for BLAS threads, the setting is process-wide and undone on exit: mmap
is allowed again and the thresholds are set to the largest values glibc's own adaptive
rule reaches (32 MiB and 64 MiB; any explicit ``mallopt`` turns that rule off). A fit
ends with ``malloc_trim``, which hands the free pages back to the system; inference does
not, since a caller scoring many small batches would otherwise fault the same pages in
again on every call. Other C libraries (macOS, Windows, musl) are left alone.
"""

import ctypes
import functools
import platform
import threading
from contextlib import contextmanager

# mallopt parameter numbers and glibc's defaults (malloc.h, malloc/malloc.c).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
DEFAULT_MMAP_MAX = 65536
# The ceilings of glibc's adaptive thresholds on 64-bit systems: after it frees a mapped
# block of up to 32 MiB it raises the mmap threshold to that size and the trim threshold
# to twice it, so a process that has worked with large arrays is usually already here.
ADAPTIVE_MMAP_THRESHOLD = 32 * 2**20
ADAPTIVE_TRIM_THRESHOLD = 2 * ADAPTIVE_MMAP_THRESHOLD
# mallopt takes a C int: the largest trim threshold it can be given (2 GiB).
RETAINED_TRIM_THRESHOLD = 2**31 - 1

# Tests turn it off to compare results with and without.
ENABLED = True
_lock = threading.Lock()
_depth = 0
_trim_on_exit = False


@functools.cache
def _libc():
    """glibc's ``mallopt`` and ``malloc_trim``, or None under another C library."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return mallopt, trim


@contextmanager
def retained_heap(trim=False):
    """Serve large allocations from the main heap and keep its free pages until exit.

    Re-entrant and thread-safe: the setting is applied by the first caller in and undone
    by the last one out, who also returns the free pages to the system if any caller
    asked for ``trim``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_cpvae._memory import retained_heap
    >>> with retained_heap():
    ...     total = sum(float(torch.ones(2**22).sum()) for _ in range(3))
    >>> total
    12582912.0
    """
    global _depth, _trim_on_exit
    libc = _libc() if ENABLED else None
    if libc is None:
        yield
        return
    mallopt, release = libc
    with _lock:
        if _depth == 0:
            mallopt(M_MMAP_MAX, 0)
            mallopt(M_TRIM_THRESHOLD, RETAINED_TRIM_THRESHOLD)
        _depth += 1
        _trim_on_exit = _trim_on_exit or trim
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                mallopt(M_MMAP_THRESHOLD, ADAPTIVE_MMAP_THRESHOLD)
                mallopt(M_TRIM_THRESHOLD, ADAPTIVE_TRIM_THRESHOLD)
                if _trim_on_exit:
                    release(0)
                _trim_on_exit = False


def with_retained_heap(fn=None, *, trim=False):
    """Decorator: run ``fn`` inside :func:`retained_heap` (``trim`` as there)."""
    if fn is None:
        return functools.partial(with_retained_heap, trim=trim)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with retained_heap(trim):
            return fn(*args, **kwargs)

    return wrapped
