"""Seeds and devices without global side effects, and the record that reproduces a fit."""

import platform
import warnings
from numbers import Integral

import numpy as np
import sklearn
import torch
from sklearn.utils import check_random_state

from sklearn_cpvae._version import __version__


def derive_seeds(random_state, n):
    """``n`` independent integer seeds from a sklearn ``random_state``.

    Never reads the global numpy RNG: ``None`` takes fresh OS entropy instead of
    ``np.random``'s singleton, so fitting leaves ``np.random.get_state()`` untouched.
    """
    if random_state is None:
        seq = np.random.SeedSequence()
    else:
        rng = check_random_state(random_state)
        seq = np.random.SeedSequence(int(rng.randint(0, 2**31 - 1)))
    return [int(s) for s in seq.generate_state(n, dtype=np.uint32)]


def make_generator(seed, device):
    """A private torch RNG on ``device``: all randomness in the library flows through these."""
    return torch.Generator(device=device).manual_seed(seed)


def resolve_device(device, *, fallback_warn=False):
    """``"auto"`` -> CUDA when available, else CPU; validates any other torch device string.

    With ``fallback_warn``, a CUDA device that is not available (a model fitted on a GPU,
    used on a CPU-only machine) falls back to CPU with a warning instead of failing.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device string: {exc}") from None
    missing = _unavailable(dev)
    if missing is not None:
        if fallback_warn:
            warnings.warn(
                f"device={device!r} is not available on this machine; using the CPU.",
                UserWarning,
                stacklevel=3,
            )
            return torch.device("cpu")
        raise ValueError(
            f"device={device!r} was requested but {missing}; the devices available on "
            f"this machine are {available_devices()}. Set device to one of them, or to "
            "'auto' (CUDA when available, else the CPU)."
        )
    return dev


def available_devices():
    """The device strings this machine can train on: the CPU, each CUDA device, MPS."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def _unavailable(dev):
    """Why ``dev`` cannot be used here (None when it can): checked before any work, so a
    missing backend is a ValueError naming ``device`` rather than an error deep in torch."""
    if dev.type == "cpu":
        return None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
        return None
    if dev.type == "mps":
        return None if torch.backends.mps.is_available() else "MPS is not available"
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, NotImplementedError):
        return f"torch has no working {dev.type!r} backend on this machine"
    return None


def fit_info(device, seeds, random_state):
    """What is needed to reproduce a fit: versions, device, seeds, threads."""
    return {
        "sklearn_cpvae_version": __version__,
        "torch_version": torch.__version__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cuda_version": torch.version.cuda,
        "torch_num_threads": torch.get_num_threads(),
        "random_state": int(random_state) if isinstance(random_state, Integral) else None,
        "seeds": {
            name: int(s)
            for name, s in zip(
                ("init", "train", "split", "validation", "importance"), seeds, strict=True
            )
        },
    }
