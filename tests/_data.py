"""Synthetic data with known truth, shared by the tests.

The tiny model configurations the tests fit are in ``conftest.py`` (``CONFIGS``).
"""

import os
from pathlib import Path

import numpy as np

# Real data is optional: tests that need it skip when it is absent.
DATA_DIR = Path(
    os.environ.get("SKLEARN_CPVAE_DATA", Path(__file__).parents[2] / "shared" / "data")
)


def make_populations(
    n_per_pop=150, n_populations=2, n_features=12, n_subgroups=3, noise=0.3, random_state=0
):
    """Rows from a linear CPVAE: a 2-D shared factor seen by every population, plus
    ``n_subgroups`` clusters that exist only in each population's own directions.

    Returns ``X, populations, subgroups, shared_factor``.
    """
    rng = np.random.default_rng(random_state)
    w_shared = rng.normal(size=(2, n_features))
    xs, pops, subs, zs = [], [], [], []
    for k in range(n_populations):
        w_private = rng.normal(size=(n_subgroups, n_features)) * 2.0
        z = rng.normal(size=(n_per_pop, 2))
        sub = rng.integers(n_subgroups, size=n_per_pop)
        x = z @ w_shared + w_private[sub] + noise * rng.normal(size=(n_per_pop, n_features))
        xs.append(x)
        pops.append(np.full(n_per_pop, f"pop{k}"))
        subs.append(sub)
        zs.append(z)
    return (np.vstack(xs), np.concatenate(pops), np.concatenate(subs), np.vstack(zs))


def make_offset_populations(n=120, d=5, k=3, seed=0):
    """``k`` populations in turn, row i in population ``i % k``, shifted by its label."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) + y[:, None]
    return X, y


def make_two_studies(n=200, d=8, seed=0):
    """Population "a" has private variation on features 4-5; both share features 0-3."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(2 * n, 1))
    w = rng.normal(size=(1, 4)) * 2
    X = rng.normal(scale=0.3, size=(2 * n, d))
    X[:, :4] += z @ w
    y = np.repeat(["a", "b"], n)
    t = rng.normal(size=n)
    X[:n, 4] += 2 * t
    X[:n, 5] -= 2 * t
    return X, y
