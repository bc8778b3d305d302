"""Shared by every test file: the table of tiny configurations, and the fixtures (data with
known shared and private structure, and a model fitted on it).

Test files import the table with ``from conftest import CONFIGS``.
"""

import sys

import pytest
import torch
from _data import make_populations

from sklearn_cpvae import CPVAE

# The test networks are tiny: one thread is as fast, and intra-op threads stall badly when
# the cores are shared (measured: a 2-thread bmm of 2x(64x12 @ 12x32) took 15 ms under load,
# 3 us on one thread). The library itself never changes torch's thread settings.
torch.set_num_threads(1)

# pytest imports this file as ``tests.conftest`` (--import-mode=importlib); a test file's
# ``from conftest import CONFIGS`` must get this module, not a second copy of it.
sys.modules.setdefault("conftest", sys.modules[__name__])

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
    "persistence_options": dict(
        n_shared=2,
        n_private=1,
        hidden_layer_sizes=(6,),
        max_iter=2,
        n_importance_samples=4,
        random_state=0,
    ),
    "sklearn_checks": dict(
        n_shared=2,
        n_private=2,
        hidden_layer_sizes=(16,),
        max_iter=20,
        n_importance_samples=8,
        batch_size=16,
        device="cpu",
        random_state=0,
    ),
    # Fitted on 1 and on 2 processes (tests/test_distributed.py): few steps, so that
    # float32 summation-order differences stay far below the seed-to-seed spread.
    "distributed": dict(
        n_shared=2,
        n_private=2,
        hidden_layer_sizes=(16,),
        max_iter=3,
        batch_size=16,
        n_importance_samples=4,
        device="cpu",
        random_state=0,
    ),
}
SMALL = CONFIGS["small"]


@pytest.fixture(scope="session")
def populations_data():
    return make_populations()


@pytest.fixture(scope="session")
def fitted(populations_data):
    X, y, _, _ = populations_data
    return CPVAE(**SMALL).fit(X, y)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
