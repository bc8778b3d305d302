"""Datasets for cross-population experiments.

* :func:`make_grassy_mnist` / :func:`load_grassy_mnist` build Grassy-MNIST
  (digits superimposed on grass photos, the contrastive-PCA benchmark);
  :func:`load_grass_backgrounds` reads the ImageNet grass photos, or the CC0
  scikit-image grass texture where they are absent.
* ``fetch_*`` return a public dataset, read from a local copy when ``data_home``
  (default ``$SKLEARN_CPVAE_DATA`` or ``~/sklearn_cpvae_data``) holds one, and
  downloaded from the original source only when it does not.
* :func:`load_shared_npz` reads a preprocessed ``<name>/<name>.npz`` file as is.

Where the fetchers look, first found wins:

1. ``<data_home>/<folder>/<folder>_parsed.npz``, the cache an earlier call wrote;
2. the original files in ``<data_home>/<folder>/raw/`` (parsed, then cached);
3. the packaged copy ``<data_home>/<name>/<name>.npz`` (``mnist``,
   ``fashion_mnist``, ``cifar10_jpeg``, ``mice_protein``,
   ``heart_disease_multisite``, ``wine_quality``): read as is. Some are partial
   or lossy (Fashion-MNIST: the first 10,000 training images; CIFAR-10: 500
   JPEG-decoded images per class and split); ``DESCR`` says so when such a copy
   was read;
4. a download of the original files into ``<data_home>/<folder>/raw/``
   (``download_if_missing=False`` raises ``FileNotFoundError`` instead).

Every ``fetch_*`` returns a :class:`sklearn.utils.Bunch` with the same keys:

``data``
    ndarray of shape (n_samples, n_features) (images flattened row-major), or a
    DataFrame with ``as_frame=True``.
``target``
    ndarray of shape (n_samples,): the label of the source dataset (digit, class,
    diagnosis, quality score), or a Series with ``as_frame=True``.
``populations``
    int64 ndarray of shape (n_samples,), an index into ``population_names``: the
    grouping to pass to :class:`~sklearn_cpvae.CPVAE` as ``y`` (image sets: one
    population per class, as in the paper's classification experiment; Mice
    Protein: genotype; Heart Disease: hospital; Wine Quality: colour). A Series
    named ``"population"`` with ``as_frame=True``.
``population_names``
    ndarray of str, the name of each population index.
``feature_names``
    ndarray of str, one name per column of ``data`` (``pixel_<row>_<col>`` for
    greyscale images, ``pixel_<row>_<col>_<R|G|B>`` for colour).
``frame``
    With ``as_frame=True``, a DataFrame of ``data``, ``target`` and
    ``population`` side by side; None otherwise.
``DESCR``
    str, the dataset's source, licence and, for a partial or lossy copy, what
    differs from the original.

Fetchers keep their dataset's own extra keys: ``images`` and ``target_names``
(image sets), ``site``/``site_names`` (Heart Disease), ``color``/``color_names``
(Wine Quality), ``target_names``, ``genotype``, ``treatment``, ``behavior``,
``mouse_id``, ``measurement_id`` (Mice Protein).

Examples
--------
>>> import numpy as np
>>> from sklearn_cpvae.datasets import fetch_wine_quality
>>> folder = getfixture("tmp_path") / "wine_quality"
>>> folder.mkdir()
>>> np.savez(folder / "wine_quality.npz", X=np.ones((3, 11), np.float32),
...          quality=np.array([5, 6, 7]), color=np.array([0, 1, 1]),
...          feature_names=np.array([f"f{i}" for i in range(11)]))
>>> wine = fetch_wine_quality(folder.parent, download_if_missing=False)
>>> wine.data.shape, wine.populations.tolist(), wine.population_names.tolist()
((3, 11), [0, 1, 1], ['red', 'white'])
"""

from ._base import DATA_HOME_ENV, get_data_home, load_shared_npz
from ._grassy_mnist import (
    BACKGROUND_SOURCES,
    DIGIT_POPULATIONS,
    load_grass_backgrounds,
    load_grassy_mnist,
    make_grassy_mnist,
    population_names,
)
from ._images import fetch_cifar10, fetch_fashion_mnist, fetch_mnist
from ._synthetic import make_cross_population
from ._tabular import fetch_heart_disease, fetch_mice_protein, fetch_wine_quality

__all__ = [
    "BACKGROUND_SOURCES",
    "DATA_HOME_ENV",
    "DIGIT_POPULATIONS",
    "fetch_cifar10",
    "fetch_fashion_mnist",
    "fetch_heart_disease",
    "fetch_mice_protein",
    "fetch_mnist",
    "fetch_wine_quality",
    "get_data_home",
    "load_grass_backgrounds",
    "load_grassy_mnist",
    "load_shared_npz",
    "make_cross_population",
    "make_grassy_mnist",
    "population_names",
]
