"""Guards at the numpy/torch boundary: input ranges, finite outputs, the reproducibility record."""

import math
import platform
from numbers import Integral

import numpy as np
import sklearn
import torch

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(X):
    """Reject X whose squared residuals would overflow the float32 arithmetic of training.

    The Gaussian log-likelihood sums ``(x - f(z, t))**2`` over the D features in float32,
    so training is impossible once ``D * max|x|**2`` nears the float32 maximum (3.4e38).
    A factor 16 of margin covers decoder outputs of the same magnitude as ``x``.
    """
    limit = math.sqrt(_FLOAT32_MAX / (16 * max(1, X.shape[1])))
    peak = float(np.max(np.abs(X))) if X.size else 0.0
    if peak > limit:
        raise ValueError(
            f"X has values of magnitude up to {peak:.3g}; training runs in float32, where "
            f"squared residuals of {X.shape[1]} features overflow beyond {limit:.3g}. "
            "Standardise X (e.g. sklearn.preprocessing.StandardScaler) before fitting."
        )


def check_finite_output(out, what, dtype):
    """Raise ``ValueError`` naming the rows whose ``out`` is not finite.

    Rows far outside the scale of the training data can overflow the networks' arithmetic
    at inference; returning NaN silently would be worse than a clear error.
    """
    bad = ~np.isfinite(out).reshape(len(out), -1).all(axis=1)
    if np.any(bad):
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{what} is not finite for {len(rows)} row(s) (first: {rows[:5].tolist()}): "
            f"their values are too far from the scale of the training data for {dtype} "
            "arithmetic. Preprocess them as the training data (e.g. with the same scaler)."
        )
    return out


def fit_info(device, seeds, random_state):
    """What is needed to reproduce a fit: versions, device, seeds, threads."""
    from sklearn_cpvae import __version__

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
