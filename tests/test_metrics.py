"""Tests for sklearn_cpvae.metrics: the log-likelihood scorer in model selection."""

import numpy as np
import pytest
import sklearn
from _data import make_populations
from conftest import CONFIGS
from sklearn.base import clone
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sklearn_cpvae
from sklearn_cpvae import CPVAE, VAE
from sklearn_cpvae.metrics import LogLikelihoodScorer, log_likelihood_scorer, mean_log_likelihood

TINY = CONFIGS["persistence"]
# The tiny fits stop at max_iter on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_populations(n_per_pop=24, n_features=5, random_state=1)
    return X, y


@pytest.fixture(scope="module")
def model(data):
    return CPVAE(**TINY).fit(*data)


def test_exported_from_the_package():
    assert sklearn_cpvae.log_likelihood_scorer is log_likelihood_scorer


def test_scores_each_row_under_its_population(model, data):
    X, y = data
    expected = model.score_samples(X, populations=y).mean()
    assert log_likelihood_scorer(model, X, y) == pytest.approx(expected, rel=1e-12)
    # populations= wins over y, which a search may fill with other labels.
    flipped = np.where(y == "pop0", "pop1", "pop0")
    assert log_likelihood_scorer(model, X, flipped, populations=y) == pytest.approx(expected)
    assert log_likelihood_scorer(model, X, flipped) != pytest.approx(expected)
    mixture = model.score_samples(X).mean()
    assert log_likelihood_scorer(model, X) == pytest.approx(mixture, rel=1e-12)
    weights = np.arange(len(X), dtype=float)
    assert log_likelihood_scorer(model, X, y, sample_weight=weights) == pytest.approx(
        np.average(model.score_samples(X, populations=y), weights=weights)
    )


def test_population_column_of_a_dataframe_is_used(data):
    pd = pytest.importorskip("pandas")
    X, y = data
    frame = pd.DataFrame(X, columns=[f"g{i}" for i in range(X.shape[1])]).assign(pop=y)
    model = CPVAE(**TINY, population_column="pop").fit(frame)
    expected = model.score_samples(frame, populations=y).mean()
    wrong = np.full(len(y), "pop0")
    assert log_likelihood_scorer(model, frame, wrong) == pytest.approx(expected, rel=1e-12)


def test_unknown_population_is_an_error(model, data):
    X, _ = data
    with pytest.raises(ValueError, match="pop7"):
        log_likelihood_scorer(model, X, np.full(len(X), "pop7"))


def test_grid_search_scores_are_held_out_log_likelihoods(data):
    X, y = data
    cv = KFold(2, shuffle=True, random_state=0)
    search = GridSearchCV(
        CPVAE(**TINY),
        {"n_private": [1, 2]},
        scoring=log_likelihood_scorer,
        cv=cv,
        error_score="raise",
    ).fit(X, y)
    scores = search.cv_results_["split0_test_score"]
    assert np.isfinite(scores).all() and search.best_params_["n_private"] in (1, 2)
    # The search's number is the held-out mean log p(x | k) of a model fitted on the
    # training fold (fits are bitwise reproducible on CPU).
    train, test = next(cv.split(X, y))
    manual = clone(CPVAE(**TINY)).set_params(n_private=2).fit(X[train], y[train])
    expected = manual.score_samples(X[test], populations=y[test]).mean()
    assert scores[1] == pytest.approx(expected, rel=1e-10)


def test_routed_populations_must_be_requested_by_the_scorer(data):
    X, y = data
    other_labels = np.arange(len(y)) % 3  # y of a later step, not the populations
    cv = KFold(2, shuffle=True, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        model = CPVAE(**TINY).set_fit_request(populations=True)
        search = GridSearchCV(
            model, {"n_private": [2]}, scoring=log_likelihood_scorer, cv=cv, error_score="raise"
        )
        with pytest.raises(UnsetMetadataPassedError, match="LogLikelihoodScorer"):
            search.fit(X, other_labels, populations=y)
        scorer = LogLikelihoodScorer().set_score_request(populations=True)
        search.set_params(scoring=scorer).fit(X, other_labels, populations=y)
    train, test = next(cv.split(X))
    manual = CPVAE(**TINY).set_params(n_private=2).fit(X[train], y[train])
    expected = manual.score_samples(X[test], populations=y[test]).mean()
    assert search.cv_results_["split0_test_score"][0] == pytest.approx(expected, rel=1e-10)
    assert "_metadata_request" not in vars(log_likelihood_scorer)  # the shared one is untouched


def test_set_score_request_needs_routing():
    with pytest.raises(RuntimeError, match="enable_metadata_routing"):
        LogLikelihoodScorer().set_score_request(populations=True)


def test_pipeline_transforms_before_scoring(data):
    X, y = data
    pipe = make_pipeline(StandardScaler(), CPVAE(**TINY)).fit(X, y)
    expected = pipe[-1].score_samples(pipe[0].transform(X), populations=y).mean()
    assert log_likelihood_scorer(pipe, X, y) == pytest.approx(expected, rel=1e-12)
    search = GridSearchCV(
        pipe, {"cpvae__n_shared": [1, 2]}, scoring=log_likelihood_scorer, cv=2, error_score="raise"
    ).fit(X, y)
    assert np.isfinite(search.best_score_)


def test_vae_ignores_populations(data):
    X, y = data
    vae = VAE(**CONFIGS["vae"]).set_params(max_iter=2).fit(X)
    assert log_likelihood_scorer(vae, X, y) == pytest.approx(vae.score(X), rel=1e-12)


def test_model_without_score_samples_is_refused(data):
    X, y = data
    classifier = LogisticRegression().fit(X, y)
    with pytest.raises(TypeError, match="score_samples"):
        log_likelihood_scorer(classifier, X, y)


@pytest.mark.parametrize(
    "values, weights, match",
    [
        ([], None, "non-empty"),
        ([[1.0, 2.0]], None, "1-d"),
        ([1.0, 2.0], [1.0], "shape"),
        ([1.0, 2.0], [-1.0, 2.0], "non-negative"),
        ([1.0, 2.0], [0.0, 0.0], "positive sum"),
    ],
)
def test_mean_log_likelihood_validation(values, weights, match):
    with pytest.raises(ValueError, match=match):
        mean_log_likelihood(values, sample_weight=weights)
