"""Shared fixtures: data with known shared and private structure, and a fitted model."""

import pytest
import torch
from _data import SMALL, make_populations

from sklearn_cpvae import CPVAE

# The test networks are tiny: one thread is as fast, and intra-op threads stall badly when
# the cores are shared (measured: a 2-thread bmm of 2x(64x12 @ 12x32) took 15 ms under load,
# 3 us on one thread). The library itself never changes torch's thread settings.
torch.set_num_threads(1)


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
