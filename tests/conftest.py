"""Shared fixtures: data with known shared and private structure, and a fitted model."""

import pytest
from _data import SMALL, make_populations

from sklearn_cpvae import CPVAE


@pytest.fixture(scope="session")
def populations_data():
    return make_populations()


@pytest.fixture(scope="session")
def fitted(populations_data):
    X, y, _, _ = populations_data
    return CPVAE(**SMALL).fit(X, y)
