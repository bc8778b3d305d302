"""Cross-validation that keeps every population in every training fold.

A CPVAE has one private encoder and decoder per population of its training rows, so a
held-out row of a population absent from the training fold has no likelihood (its
private networks do not exist). ``cross_val_score(CPVAE(population_column="site"), df)``
without ``y`` uses unshuffled :class:`~sklearn.model_selection.KFold`, and on rows sorted
by population a fold can train without one. :func:`population_cv` gives folds
stratified by population; the estimator refuses to score rows of a population it was not
fitted on (:func:`check_known_populations`), so wrong folds fail loudly.
"""

import numpy as np
from sklearn.model_selection import StratifiedKFold

__all__ = ["population_cv"]


def check_known_populations(classes, populations, what="populations"):
    """Raise ``ValueError`` naming the labels of ``populations`` that are not ``classes``."""
    populations = np.asarray(populations)
    try:
        unknown = ~np.isin(populations, classes)
    except TypeError:
        # Incomparable label types: population_index reports them.
        return
    if np.any(unknown):
        names = np.unique(populations[unknown]).tolist()
        raise ValueError(
            f"unknown population label(s) {names} in {what}: the model was fitted on "
            f"{classes.tolist()}, and their private networks do not exist, so their rows have "
            "no likelihood. In cross-validation, use folds that keep every population in "
            "every training fold, cv=sklearn_cpvae.population_cv(populations); to add a new "
            "study to a fitted model, use add_populations; its shared codes need no "
            'population (get_latent_representation(X, blocks="shared")).'
        )


def population_cv(populations, n_splits=5, *, shuffle=True, random_state=0):
    """Train/test folds stratified by population, for ``cross_val_score(..., cv=...)``.

    Every population is in every training fold with at least two rows (the least a
    CPVAE fits a population on), and each test fold holds about ``1 / n_splits`` of
    every population.

    Parameters
    ----------
    populations : array-like of shape (n_samples,)
        Population of each row (e.g. ``df["site"]`` or ``adata.obs["batch"]``).
    n_splits : int, default=5
        Number of folds.
    shuffle : bool, default=True
        Shuffle each population's rows before splitting (rows sorted by anything then
        do not make folds of one kind).
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffle.

    Returns
    -------
    splits : list of (train, test) index arrays
        Pass as ``cv=`` to :func:`~sklearn.model_selection.cross_val_score`,
        :class:`~sklearn.model_selection.GridSearchCV` and the like.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cpvae import population_cv
    >>> sites = np.repeat(["a", "b", "c"], [10, 20, 30])
    >>> splits = population_cv(sites, n_splits=5)
    >>> [sorted(set(sites[train])) for train, _ in splits][0]
    [np.str_('a'), np.str_('b'), np.str_('c')]
    >>> len(splits[0][1])
    12
    """
    populations = np.asarray(populations)
    if populations.ndim != 1:
        raise ValueError(
            f"populations must be 1-D with one label per row; got shape {populations.shape}."
        )
    if not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer of at least 2; got {n_splits!r}.")
    classes, counts = np.unique(populations, return_counts=True)
    # A test fold takes at most ceil(c / n_splits) of a population's c rows.
    left = counts - -(-counts // n_splits)
    small = classes[left < 2].tolist()
    if small:
        raise ValueError(
            f"population(s) {small} have too few rows ({counts[left < 2].tolist()}) to keep "
            f"two in every training fold of n_splits={n_splits}; lower n_splits."
        )
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=shuffle, random_state=random_state)
    return list(splitter.split(np.zeros((len(populations), 1)), populations))
