"""Synthetic data with known truth and small settings, shared by the tests."""

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


# Every tiny configuration the tests fit, in one table: "small" is the shared fixture's
# model; the others are sized for the one test file that names them.
CONFIGS = {
    "small": dict(
        n_shared=2,
        n_private=2,
        hidden_layer_sizes=(32,),
        max_iter=60,
        batch_size=32,
        n_importance_samples=16,
        device="cpu",
        random_state=0,
    ),
    "bad_input": dict(
        n_shared=2,
        n_private=1,
        hidden_layer_sizes=(4,),
        max_iter=1,
        batch_size=4,
        n_importance_samples=3,
        device="cpu",
        random_state=0,
    ),
    "vae": dict(
        n_components=2,
        hidden_layer_sizes=(16,),
        max_iter=20,
        batch_size=32,
        n_importance_samples=8,
        device="cpu",
        random_state=0,
    ),
    "concurrency": dict(
        n_shared=1,
        n_private=1,
        hidden_layer_sizes=(4,),
        max_iter=2,
        batch_size=8,
        n_importance_samples=4,
        device="cpu",
        random_state=0,
    ),
    "divergence": dict(
        n_shared=2,
        n_private=1,
        hidden_layer_sizes=(6,),
        batch_size=8,
        n_importance_samples=4,
        device="cpu",
        random_state=0,
        n_iter_no_change=50,
    ),
    "counts": dict(
        n_shared=2,
        n_private=2,
        hidden_layer_sizes=(32,),
        n_importance_samples=8,
        batch_size=32,
        device="cpu",
        random_state=0,
    ),
    "persistence": dict(
        n_shared=2,
        n_private=1,
        hidden_layer_sizes=(6,),
        max_iter=3,
        batch_size=8,
        n_importance_samples=4,
        device="cpu",
        random_state=0,
    ),
    "scaling": dict(
        n_shared=2,
        n_private=2,
        hidden_layer_sizes=(8,),
        max_iter=2,
        batch_size=8,
        n_importance_samples=4,
        device="cpu",
    ),
}
SMALL = CONFIGS["small"]
