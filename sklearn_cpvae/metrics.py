"""Scorers for model selection with the library's estimators.

scikit-learn turns ``scoring`` strings into scorers built from ``predict``-like
outputs; ``scoring="score_samples"`` is rejected. :data:`log_likelihood_scorer` (an
instance of :class:`LogLikelihoodScorer`) has the scorer signature
``scorer(estimator, X, y)`` and scores a fitted model by its mean held-out
log-likelihood, so that a search can pick the hyper-parameters under which unseen rows
are most probable.
"""

from __future__ import annotations

import inspect

import numpy as np
from sklearn import get_config
from sklearn.pipeline import Pipeline
from sklearn.utils.metadata_routing import UNCHANGED, MetadataRequest, get_routing_for_object


def _final_step(estimator):
    """``(steps before the last, last step)``; ``(None, estimator)`` for a plain estimator."""
    if isinstance(estimator, Pipeline):
        return estimator[:-1], estimator[-1]
    return None, estimator


def _takes_populations(score_samples):
    return "populations" in inspect.signature(score_samples).parameters


def _resolve_populations(model, X, y, populations):
    """The populations ``score`` would use: the ``population_column`` of X, else the given
    ones (``populations``, then ``y``); None when the model has no populations to use."""
    if not _takes_populations(model.score_samples):
        return None
    column = getattr(model, "population_column", None)
    if column is not None and hasattr(X, "columns") and column in X.columns:
        return np.asarray(X[column])
    return populations if populations is not None else y


def mean_log_likelihood(log_likelihood, sample_weight=None):
    """Mean, optionally weighted, of per-row log-likelihoods.

    The Monte Carlo estimate of the expected held-out log-likelihood
    ``E_x[log p(x | k)]`` from the importance-sampled ``log p(x | k)`` of each row
    (the paper's eq. 7-8).

    Parameters
    ----------
    log_likelihood : array-like of shape (n_samples,)
        Per-row log-likelihoods, as returned by ``score_samples``.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative row weights; None weighs every row equally.

    Returns
    -------
    mean : float

    Examples
    --------
    >>> from sklearn_cpvae.metrics import mean_log_likelihood
    >>> mean_log_likelihood([-1.0, -3.0])
    -2.0
    >>> mean_log_likelihood([-1.0, -3.0], sample_weight=[3, 1])
    -1.5
    """
    log_likelihood = np.asarray(log_likelihood, dtype=np.float64)
    if log_likelihood.ndim != 1 or log_likelihood.size == 0:
        raise ValueError(
            f"log_likelihood must be a non-empty 1-d array, got shape {log_likelihood.shape}"
        )
    if sample_weight is None:
        return float(np.mean(log_likelihood))
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    if sample_weight.shape != log_likelihood.shape:
        raise ValueError(
            f"sample_weight has shape {sample_weight.shape} but there are "
            f"{log_likelihood.shape[0]} rows"
        )
    if (sample_weight < 0).any() or not sample_weight.sum() > 0:
        raise ValueError("sample_weight must be non-negative with a positive sum")
    return float(np.average(log_likelihood, weights=sample_weight))


class LogLikelihoodScorer:
    """Mean held-out log-likelihood of a fitted model, for ``scoring=`` in searches.

    Calls the model's ``score_samples`` on ``X`` and averages it (higher is better,
    as scikit-learn's searches expect). Pass the scorer object, not a string:
    ``GridSearchCV(CPVAE(), grid, scoring=log_likelihood_scorer)``.

    The populations are found as :meth:`CPVAE.score <sklearn_cpvae.CPVAE.score>`
    finds them: the ``population_column`` of X when X is a DataFrame holding it,
    else ``populations``, else ``y``; each row then scores ``log p(x | k)`` under its
    own population ``k``. With none of these, each row scores the mixture
    ``log sum_k priors_[k] p(x | k)``. A model whose ``score_samples`` takes no
    populations (e.g. :class:`~sklearn_cpvae.VAE`) ignores them.

    With metadata routing enabled (``sklearn.set_config(enable_metadata_routing=True)``)
    and the populations routed to ``fit`` as ``populations=`` rather than given as
    ``y``, route them to the scorer too, on a scorer of its own:
    ``LogLikelihoodScorer().set_score_request(populations=True)``; scikit-learn
    raises until the scorer says whether it takes them, so that ``y`` is never
    silently used in their place.

    Calling the scorer takes these parameters:

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
        A model with ``score_samples``, or a Pipeline ending in one: X then goes
        through the earlier steps' ``transform`` first, and the populations are
        read from the raw X.
    X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
        Held-out rows.
    y : array-like of shape (n_samples,), default=None
        Populations of the rows (what a search passes as the targets).
    populations : array-like of shape (n_samples,), default=None
        Populations of the rows; takes precedence over ``y``.
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights of the mean.

    Returns
    -------
    score : float
        Mean log-likelihood per row, in nats.

    Raises
    ------
    TypeError
        If the (final) estimator has no ``score_samples``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_cpvae import CPVAE, log_likelihood_scorer
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (30, 4)), rng.normal(2, 1, (30, 4))])
    >>> y = np.repeat([0, 1], 30)
    >>> search = GridSearchCV(
    ...     CPVAE(n_shared=1, hidden_layer_sizes=(8,), max_iter=3, random_state=0),
    ...     {"n_private": [1, 2]}, scoring=log_likelihood_scorer, cv=2,
    ... ).fit(X, y)
    >>> sorted(search.best_params_)
    ['n_private']
    >>> bool(np.isfinite(search.best_score_))
    True
    """

    def __call__(self, estimator, X, y=None, *, populations=None, sample_weight=None):
        head, model = _final_step(estimator)
        if not callable(getattr(model, "score_samples", None)):
            raise TypeError(
                f"log_likelihood_scorer needs a model with score_samples; "
                f"{type(model).__name__} has none."
            )
        pops = _resolve_populations(model, X, y, populations)
        Xt = X if head is None else head.transform(X)
        if pops is None:
            log_likelihood = model.score_samples(Xt)
        else:
            log_likelihood = model.score_samples(Xt, populations=pops)
        return mean_log_likelihood(log_likelihood, sample_weight)

    def set_score_request(self, *, populations=UNCHANGED, sample_weight=UNCHANGED):
        """Say which routed metadata the scorer takes (metadata routing only).

        Parameters
        ----------
        populations, sample_weight : bool, None, str or UNCHANGED, default=UNCHANGED
            True: take the metadata of that name; False: do not; a string: take the
            metadata passed under that name; None: raise if it is passed.

        Returns
        -------
        self : LogLikelihoodScorer
        """
        if not get_config()["enable_metadata_routing"]:
            raise RuntimeError(
                "set_score_request is only available when metadata routing is enabled: "
                "sklearn.set_config(enable_metadata_routing=True)."
            )
        request = self.get_metadata_routing()
        for param, alias in (("populations", populations), ("sample_weight", sample_weight)):
            if alias is not UNCHANGED:
                request.score.add_request(param=param, alias=alias)
        self._metadata_request = request
        return self

    def get_metadata_routing(self):
        """The metadata the scorer takes: none until :meth:`set_score_request` says.

        Returns
        -------
        routing : sklearn.utils.metadata_routing.MetadataRequest
        """
        request = getattr(self, "_metadata_request", None)
        if request is None:
            request = MetadataRequest(owner=type(self).__name__)
            # None: scikit-learn raises if these are routed before a request is set.
            request.score.add_request(param="populations", alias=None)
            request.score.add_request(param="sample_weight", alias=None)
        return get_routing_for_object(request)  # a copy: callers may not alter ours

    def __repr__(self):
        return "LogLikelihoodScorer()"


#: The default :class:`LogLikelihoodScorer`: ``scoring=log_likelihood_scorer``.
log_likelihood_scorer = LogLikelihoodScorer()
