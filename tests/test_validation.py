"""Bad parameters and bad input raise clear errors (``sklearn_cpvae._validation``)."""

import numpy as np
import pytest
from _data import make_populations
from conftest import CONFIGS, SMALL
from sklearn.exceptions import NotFittedError

from sklearn_cpvae import CPVAE


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y), "NaN"),
        (
            lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X), y),
            "infinity",
        ),
        (lambda X, y: (X, np.full(len(y), "pop0")), "at least 2 populations"),
        (lambda X, y: (X, np.append(y[:-1], "lonely")), r"at least 2 rows.*lonely"),
        (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
        (lambda X, y: (X[:, :, None], y), "3"),
    ],
    ids=["nan", "inf", "one-population", "tiny-population", "length-mismatch", "3d"],
)
def test_bad_fit_input_raises_clearly(populations_data, mutate, match):
    X, y, _, _ = populations_data
    Xb, yb = mutate(X, y)
    with pytest.raises(ValueError, match=match):
        CPVAE(**SMALL).fit(Xb, yb)


def test_bad_inference_input_raises_clearly(fitted, populations_data):
    X, y, _, _ = populations_data
    with pytest.raises(ValueError, match="expecting 12 features"):
        fitted.transform(X[:, :5])
    with pytest.raises(ValueError, match=r"unknown population label\(s\) \['pop9'\]"):
        fitted.transform(X[:2], populations=["pop0", "pop9"])
    codes = fitted.transform(X[:2], populations=y[:2])
    with pytest.raises(ValueError, match="unknown population"):
        fitted.inverse_transform(codes, populations=["x", "pop0"])
    with pytest.raises(ValueError, match="one label per row"):
        fitted.transform(X[:2], populations=["pop0"])
    with pytest.raises(ValueError, match="needs populations"):
        fitted.inverse_transform(codes, part="full")
    with pytest.raises(ValueError, match="columns"):
        fitted.inverse_transform(codes[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(np.full((1, 12), np.nan))


@pytest.mark.parametrize(
    "method", ["transform", "predict", "predict_proba", "score_samples", "inverse_transform"]
)
def test_unfitted_raises(method):
    with pytest.raises(NotFittedError):
        getattr(CPVAE(), method)(np.zeros((2, 3)))


def test_invalid_parameters_raise():
    X, y, _, _ = make_populations(n_per_pop=10)
    for params in (
        {"n_shared": 0},
        {"objective": "x"},
        {"mi_weight": -1},
        {"hidden_layer_sizes": (0,)},
        {"device": "tpu9"},
        {"priors": [1.0]},
    ):
        with pytest.raises(ValueError):
            CPVAE(**{**SMALL, **params, "max_iter": 1}).fit(X, y).predict(X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_count_likelihood_rejects_negative_values():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="non-negative counts"):
        CPVAE(likelihood="poisson", max_iter=1, **CONFIGS["counts"]).fit(X, np.repeat([0, 1], 10))


def test_population_column_missing_from_x_names_the_column(populations_data):
    pd = pytest.importorskip("pandas")
    X, y, _, _ = populations_data
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).assign(study=y)
    with pytest.raises(ValueError, match="population_column='stdy' is not a column of X"):
        CPVAE(population_column="stdy", **SMALL).fit(df)
    with pytest.raises(ValueError, match="X is not a DataFrame"):
        CPVAE(population_column="study", **SMALL).fit(X)
