"""CPVAE inside scikit-learn workflows: clone, Pipeline, GridSearchCV, KMeans + ARI, pickle."""

import io
import pickle
import warnings

import joblib
import numpy as np
from _data import SMALL, make_populations
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_cpvae import CPVAE


def test_clone_gives_an_unfitted_copy_with_the_same_params(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "module_")


def test_pipeline_with_scaler(populations_data):
    X, y, _, _ = populations_data
    pipe = make_pipeline(StandardScaler(), CPVAE(**SMALL))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
    assert pipe.score(X, y) > 0.9
    assert pipe.transform(X).shape == (len(X), 4)


def test_grid_search_over_latent_sizes_and_mi_weight(populations_data):
    X, y, _, _ = populations_data
    grid = GridSearchCV(
        CPVAE(**{**SMALL, "max_iter": 15}),
        {"n_private": [1, 2], "mi_weight": [1.0, 4.0]},
        cv=2,
        n_jobs=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    assert grid.best_estimator_.n_iter_ > 0


def test_kmeans_on_private_codes_finds_the_subgroups():
    """The paper's sub-group discovery protocol (Table 1) on data with known subgroups."""
    X, y, subgroups, _ = make_populations(n_per_pop=200, n_subgroups=3, random_state=1)
    model = CPVAE(**{**SMALL, "max_iter": 80}, blocks="private")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    for pop in ("pop0", "pop1"):
        rows = y == pop
        codes = model.transform(X[rows], populations=y[rows])
        labels = KMeans(3, n_init=10, random_state=0).fit_predict(codes)
        assert adjusted_rand_score(subgroups[rows], labels) > 0.8


def test_pickle_and_joblib_round_trips_are_identical(fitted, populations_data):
    X, y, _, _ = populations_data
    for dump, load in ((pickle.dumps, pickle.loads), (_joblib_dumps, _joblib_loads)):
        restored = load(dump(fitted))
        np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
        np.testing.assert_array_equal(
            restored.transform(X, populations=y), fitted.transform(X, populations=y)
        )
        assert restored.history_ == fitted.history_


def _joblib_dumps(obj):
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def _joblib_loads(data):
    return joblib.load(io.BytesIO(data))
