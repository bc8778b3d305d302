"""Seeds and devices without global side effects."""

import warnings

import numpy as np
import torch
from sklearn.utils import check_random_state


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
