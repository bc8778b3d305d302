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
    if dev.type == "cuda" and not torch.cuda.is_available():
        if fallback_warn:
            warnings.warn(
                f"device={device!r} is not available on this machine; using the CPU.",
                UserWarning,
                stacklevel=3,
            )
            return torch.device("cpu")
        raise ValueError(f"device={device!r} was requested but CUDA is not available.")
    return dev


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
