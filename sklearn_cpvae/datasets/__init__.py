"""Datasets for cross-population experiments.

* :func:`make_grassy_mnist` / :func:`load_grassy_mnist` build Grassy-MNIST
  (digits superimposed on grass photos, the contrastive-PCA benchmark).
* ``fetch_*`` download the original public files into a local cache
  (``data_home``, default ``$SKLEARN_CPVAE_DATA`` or ``~/sklearn_cpvae_data``),
  parse them and return a :class:`sklearn.utils.Bunch`.
* :func:`load_shared_npz` reads the project's preprocessed ``<name>/<name>.npz`` files.
"""

from ._base import DATA_HOME_ENV, get_data_home, load_shared_npz
from ._grassy_mnist import (
    DIGIT_POPULATIONS,
    load_grassy_mnist,
    make_grassy_mnist,
    population_names,
)
from ._images import fetch_cifar10, fetch_fashion_mnist, fetch_mnist
from ._synthetic import make_cross_population
from ._tabular import fetch_heart_disease, fetch_mice_protein, fetch_wine_quality

__all__ = [
    "DATA_HOME_ENV",
    "DIGIT_POPULATIONS",
    "fetch_cifar10",
    "fetch_fashion_mnist",
    "fetch_heart_disease",
    "fetch_mice_protein",
    "fetch_mnist",
    "fetch_wine_quality",
    "get_data_home",
    "load_grassy_mnist",
    "load_shared_npz",
    "make_cross_population",
    "make_grassy_mnist",
    "population_names",
]
