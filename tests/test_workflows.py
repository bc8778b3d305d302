"""CPVAE inside scikit-learn workflows: clone, Pipeline, GridSearchCV, KMeans + ARI, pickle
and joblib, DataFrames with a population column."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
from _data import make_populations, make_two_studies
from conftest import CONFIGS, SMALL
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


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_dataframe_population_column_in_pipeline():
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_two_studies(n=80)
    genes = [f"gene{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=genes)
    df["study"] = y
    pre = ColumnTransformer(
        [("scale", StandardScaler(), genes)],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    model = CPVAE(population_column="study", max_iter=3, **CONFIGS["counts"])
    pipe = make_pipeline(pre, model).set_output(transform="pandas")
    codes = pipe.fit_transform(df)
    assert list(model.feature_names_in_) == genes
    assert list(codes.columns) == ["shared0", "shared1", "private0", "private1"]
    # The column doubles as `populations` in transform; explicit y agrees with it.
    np.testing.assert_allclose(codes.to_numpy(), pipe.transform(df).to_numpy())
    rec = model.inverse_transform(codes, y)
    assert list(rec.columns) == genes
    # With the column, y is another step's target: CPVAE ignores it.
    other = clone(pipe).fit(df, y[::-1])
    np.testing.assert_array_equal(other.transform(df).to_numpy(), pipe.transform(df).to_numpy())
    # predict ignores the column; y-routing in a plain Pipeline keeps working.
    assert model.predict(df.drop(columns="study")).shape == (len(df),)
    make_pipeline(StandardScaler(), CPVAE(max_iter=2, **CONFIGS["counts"])).fit(
        df[genes], df["study"]
    )
    # A search over the DataFrame alone: fit and score read the column.
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(
        CPVAE(population_column="study", max_iter=2, **CONFIGS["counts"]),
        {"n_private": [1, 2]},
        cv=2,
    ).fit(df.sample(frac=1.0, random_state=0))
    assert search.best_params_["n_private"] in (1, 2)
    assert 0.0 <= search.best_score_ <= 1.0


def _joblib_dumps(obj):
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def _joblib_loads(data):
    return joblib.load(io.BytesIO(data))


def test_pickle_and_joblib_round_trips_are_identical(fitted, populations_data):
    X, y, _, _ = populations_data
    for dump, load in ((pickle.dumps, pickle.loads), (_joblib_dumps, _joblib_loads)):
        restored = load(dump(fitted))
        np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
        np.testing.assert_array_equal(
            restored.transform(X, populations=y), fitted.transform(X, populations=y)
        )
        assert restored.history_ == fitted.history_


def test_populations_apart_from_y_feed_a_downstream_classifier(populations_data):
    """Populations routed as metadata (or read from a column) leave y to the next step."""
    pd = pytest.importorskip("pandas")
    from sklearn import config_context
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, pops, _, _ = populations_data
    target = (X[:, 0] > np.median(X[:, 0])).astype(int)  # not the population
    with config_context(enable_metadata_routing=True):
        # fit and transform must make the same request (fit_transform uses both).
        cpvae = CPVAE(blocks="shared", **SMALL).set_fit_request(populations=True)
        cpvae.set_transform_request(populations=True)
        pipe = make_pipeline(cpvae, LogisticRegression())
        pipe.fit(X, target, populations=pops)
        assert list(pipe[0].classes_) == sorted(set(pops))
        assert set(pipe.predict(X)) <= {0, 1}
        scores = cross_val_score(pipe, X, target, cv=2, params={"populations": pops})
        assert np.all(np.isfinite(scores))
    # Same through population_column, without routing.
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).assign(site=pops)
    pipe = make_pipeline(
        CPVAE(blocks="shared", population_column="site", **SMALL), LogisticRegression()
    ).fit(df, target)
    assert list(pipe[0].classes_) == sorted(set(pops))
    assert pipe.score(df, target) > 0.5
    # populations and the column must agree.
    with pytest.raises(ValueError, match="populations disagrees with the population_column"):
        CPVAE(population_column="site", **SMALL).fit(df, populations=pops[::-1])
