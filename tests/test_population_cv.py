"""Population-safe cross-validation: refusals on unknown populations, and population_cv."""

import warnings

import numpy as np
import pytest
from conftest import CONFIGS
from sklearn.model_selection import cross_val_score

from sklearn_cpvae import CPVAE, population_cv

pd = pytest.importorskip("pandas")

FAST = dict(CONFIGS["persistence"], max_iter=2)


def _sorted_sites(n=(12, 12, 6)):
    rng = np.random.default_rng(0)
    sites = np.repeat(["a", "b", "c"], n)
    df = pd.DataFrame(rng.normal(size=(len(sites), 4)), columns=list("wxyz"))
    df["site"] = sites
    return df


def test_unshuffled_kfold_on_sorted_rows_is_refused_not_silent():
    df = _sorted_sites()
    # KFold(5) without y: the last fold holds every row of site c, so its training rows
    # have no c; scoring those rows must fail and name the population.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"\['c'\].*population_cv"):
            cross_val_score(CPVAE(population_column="site", **FAST), df, error_score="raise")
        scores = cross_val_score(CPVAE(population_column="site", **FAST), df)
    assert np.isnan(scores[-1])


def test_population_cv_keeps_every_population_in_training():
    df = _sorted_sites()
    splits = population_cv(df["site"], n_splits=5)
    assert len(splits) == 5
    for train, _ in splits:
        assert set(df["site"].iloc[train]) == {"a", "b", "c"}
        assert np.all(np.bincount(pd.factorize(df["site"].iloc[train], sort=True)[0]) >= 2)
    tested = np.sort(np.concatenate([test for _, test in splits]))
    np.testing.assert_array_equal(tested, np.arange(len(df)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(
            CPVAE(population_column="site", **FAST), df, cv=splits, error_score="raise"
        )
    assert np.all(np.isfinite(scores))


def test_population_cv_refuses_folds_it_cannot_make():
    with pytest.raises(ValueError, match=r"\['c'\].*lower n_splits"):
        population_cv(np.repeat(["a", "c"], [10, 2]), n_splits=2)
    with pytest.raises(ValueError, match="n_splits"):
        population_cv(np.repeat(["a", "b"], 10), n_splits=1)


def test_likelihood_of_an_unknown_population_is_refused():
    df = _sorted_sites()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**FAST).fit(df.drop(columns="site"), df["site"])
    X = df.drop(columns="site")
    with pytest.raises(ValueError, match=r"\['d'\].*private networks do not exist"):
        model.score_samples(X.iloc[:2], populations=["a", "d"])
    with pytest.raises(ValueError, match=r"\['d'\]"):
        model.score(X.iloc[:2], ["a", "d"])
    with pytest.raises(ValueError, match=r"\['d'\]"):
        model.transform(X.iloc[:2], populations=["d", "d"])
