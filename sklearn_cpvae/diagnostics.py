"""Diagnostics of a fitted CPVAE for multi-study data: leakage and variance explained.

Two questions a multi-study analysis has to answer before the codes are trusted:

* **Leakage** (:func:`leakage_report`, :func:`linear_probe`): does the shared code still
  encode the study (a cross-validated linear probe predicting the population from the
  shared codes; near chance is good), and does each private encoder stay uninformative
  on the *other* populations (the per-row KL of eq. 6, which eq. 4 drives to 0)?
* **Variance explained** (:func:`variance_explained`): per feature and population, the
  share of the variance of X captured by the shared part ``f_s(z)`` and by the
  population's private part ``f_k(t)`` (as MOFA reports it per factor group), to ask
  which features are study-specific.
"""

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_cpvae import _inference
from sklearn_cpvae._likelihoods import get_likelihood
from sklearn_cpvae._validation import check_fitted_X, population_index

__all__ = ["leakage_report", "linear_probe", "private_kl", "variance_explained"]


def linear_probe(codes, labels, *, groups=None, cv=5, random_state=0):
    """Cross-validated balanced accuracy of a linear classifier predicting ``labels``.

    Standardised codes, multinomial logistic regression. Used both as a leakage probe
    (labels = populations: near ``1 / n_classes`` means the codes carry no study
    information a linear model can read) and to compare embeddings of any method.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_codes)
    labels : array-like of shape (n_samples,)
    groups : array-like of shape (n_samples,), default=None
        Non-independent rows (e.g. replicate measurements of one mouse) kept in the
        same fold, with :class:`~sklearn.model_selection.StratifiedGroupKFold`; the
        number of folds is at most the number of groups of the rarest class.
    cv : int, default=5
        Number of folds (reduced to the smallest class size when needed, at least 2).
    random_state : int, default=0
        Seeds the stratified fold assignment.

    Returns
    -------
    score : float
        Mean balanced accuracy over the folds. Chance level is ``1 / n_classes``.
    """
    codes = np.asarray(codes, dtype=np.float64)
    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    if groups is not None:
        groups = np.asarray(groups)
        # Folds of whole groups, each class present in every fold where possible.
        per_class = [len(np.unique(groups[labels == c])) for c in np.unique(labels)]
        n_splits = max(2, min(cv, min(per_class)))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    else:
        n_splits = max(2, min(cv, int(counts.min())))
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = cross_val_score(
        clf, codes, labels, groups=groups, cv=splitter, scoring="balanced_accuracy"
    )
    return float(np.mean(scores))


def _prepare(model, X, populations):
    X = check_fitted_X(model, X)
    idx = population_index(model.classes_, populations, X.shape[0])
    return X, idx


def private_kl(model, X):
    """``KL(q_k(t | x_i) || N(0, I))`` of every private encoder k on every row i (eq. 6).

    Parameters
    ----------
    model : fitted CPVAE
    X : {array-like, sparse matrix} of shape (n_samples, n_features)

    Returns
    -------
    kl : ndarray of shape (n_samples, n_populations)
        In nats; columns follow ``model.classes_``. On a row of another population, it
        bounds what encoder k's code says about that row (the MI term of eq. 4-6).
    """
    X = check_fitted_X(model, X)
    return _inference.private_kl(model.module_, model.device, X)


def leakage_report(model, X, populations, *, groups=None, cv=5, random_state=0):
    """How much population information leaks into the shared code and the private codes.

    Parameters
    ----------
    model : fitted CPVAE
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Rows to diagnose (held-out rows give the honest answer).
    populations : array-like of shape (n_samples,)
        Population of each row.
    groups : array-like of shape (n_samples,), default=None
        Passed to :func:`linear_probe` (keep replicate rows in one fold).
    cv : int, default=5
        Folds of the probe.
    random_state : int, default=0
        Seeds the probe's folds.

    Returns
    -------
    report : dict
        ``shared_probe``: cross-validated balanced accuracy of a linear probe predicting
        the population from the shared posterior means (good: near ``chance``);
        ``chance``: ``1 / n_populations``; ``private_kl_own`` and ``private_kl_off``
        (arrays over ``classes``): mean ``KL(q_k(t|x) || N(0, I))`` of encoder k on its
        own rows and on the other populations' rows (good: ``off`` near 0, ``own``
        large; NaN for populations without a private space); ``classes``.
    """
    X, idx = _prepare(model, X, populations)
    shared = _inference.encode(model.module_, model.device, X)
    k = len(model.classes_)
    probe = linear_probe(shared, idx, groups=groups, cv=cv, random_state=random_state)
    kl = private_kl(model, X)
    own = np.array([kl[idx == j, j].mean() if np.any(idx == j) else np.nan for j in range(k)])
    off = np.array([kl[idx != j, j].mean() if np.any(idx != j) else np.nan for j in range(k)])
    own[~model.has_private_] = np.nan
    off[~model.has_private_] = np.nan
    return {
        "shared_probe": probe,
        "chance": 1.0 / k,
        "private_kl_own": own,
        "private_kl_off": off,
        "classes": model.classes_.copy(),
    }


def variance_explained(model, X, populations):
    """Per-feature share of variance explained by the shared and each private part.

    For the rows of population k, with posterior means ``z`` and ``t`` and everything
    centred within the population (``~``), the share of feature d explained by a part
    ``a`` is ``R2 = 1 - sum_i (x~_id - a~_id)^2 / sum_i x~_id^2`` (MOFA's definition per
    factor group). ``a`` is ``f_s(z)`` (shared), ``f_k(t)`` (private) or their sum
    (total). Because the parts are not orthogonal, shared + private need not equal total;
    a value can be negative when a part alone fits worse than the population's mean.
    NaN entries of X are left out of the sums.

    Only defined for ``likelihood="gaussian"``, whose decoder output is in the units of X.

    Parameters
    ----------
    model : fitted CPVAE
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
    populations : array-like of shape (n_samples,)

    Returns
    -------
    result : dict
        ``shared``, ``private``, ``total``: arrays of shape (n_populations, n_features),
        rows following ``classes`` (NaN for a feature constant within the population);
        ``overall``: dict of the same three names, each (n_populations,), the share of
        the population's total variance (sums over features before the ratio);
        ``classes``; ``features`` (``feature_names_in_`` or ``x0, x1, ...``).
        ``private`` is 0 for populations without a private space.
    """
    if not get_likelihood(model.likelihood).identity_mean:
        raise ValueError(
            "variance_explained needs likelihood='gaussian' (decoder output in the units "
            f"of X); the model uses {model.likelihood!r}."
        )
    X, idx = _prepare(model, X, populations)
    module, device, _ = _inference.inference_module(model.module_, model.device, X.dtype)
    k, d = len(model.classes_), X.shape[1]
    per_row = 8 * X.itemsize * (2 * d + max(module.hidden_layer_sizes))
    sums = {name: np.zeros((k, d)) for name in ("shared", "private", "total", "x")}
    # Centred sums need per-population means first: accumulate raw moments, then centre.
    mom = {name: np.zeros((k, d)) for name in ("x", "s", "p", "n")}
    cross = {name: np.zeros((k, d)) for name in ("xx", "ss", "pp", "xs", "xp", "sp")}
    with torch.inference_mode():
        for sl in _inference.chunks(X.shape[0], per_row):
            xb = _inference.to_tensor(X[sl], device, X.dtype)
            pops = torch.as_tensor(idx[sl], device=device)
            mu_z, _ = module.encode_shared(xb)
            mu_t, _ = module.encode_private(xb, pops)
            s = module.decode_shared(mu_z).cpu().numpy().astype(np.float64)
            p = module.decode_private(mu_t, pops).cpu().numpy().astype(np.float64)
            if module.standardize:
                # Back to the units of X; the offset x_loc drops out of centred sums.
                scale = module.x_scale.cpu().numpy().astype(np.float64)
                s, p = s * scale, p * scale
            x = xb.cpu().numpy().astype(np.float64)
            obs = ~np.isnan(x)
            x = np.where(obs, x, 0.0)
            s, p = s * obs, p * obs
            onehot = np.eye(k)[idx[sl]].T  # (k, rows)
            mom["x"] += onehot @ x
            mom["s"] += onehot @ s
            mom["p"] += onehot @ p
            mom["n"] += onehot @ obs
            for name, a, b in (
                ("xx", x, x),
                ("ss", s, s),
                ("pp", p, p),
                ("xs", x, s),
                ("xp", x, p),
                ("sp", s, p),
            ):
                cross[name] += onehot @ (a * b)
    n = np.maximum(mom["n"], 1.0)
    mx, ms, mp = mom["x"] / n, mom["s"] / n, mom["p"] / n

    def centred(name, ma, mb):
        return cross[name] - n * ma * mb

    sxx = centred("xx", mx, mx)
    sss, spp = centred("ss", ms, ms), centred("pp", mp, mp)
    sxs, sxp, ssp = centred("xs", mx, ms), centred("xp", mx, mp), centred("sp", ms, mp)
    # A feature constant within a population has no variance to explain: its centred sum
    # of squares is round-off of the raw moment, so compare it with that moment.
    valid = sxx > 1e-8 * np.maximum(cross["xx"], np.finfo(float).tiny)
    resid = {
        "shared": sxx - 2 * sxs + sss,
        "private": sxx - 2 * sxp + spp,
        "total": sxx - 2 * sxs - 2 * sxp + sss + spp + 2 * ssp,
    }
    overall = {}
    for name, r in resid.items():
        sums[name] = np.where(valid, 1 - r / np.where(valid, sxx, 1.0), np.nan)
        overall[name] = 1 - np.sum(np.where(valid, r, 0), 1) / np.sum(np.where(valid, sxx, 0), 1)
    sums["private"][~model.has_private_] = 0.0
    overall["private"][~model.has_private_] = 0.0
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = np.asarray([f"x{i}" for i in range(d)], dtype=object)
    return {
        "shared": sums["shared"],
        "private": sums["private"],
        "total": sums["total"],
        "overall": overall,
        "classes": model.classes_.copy(),
        "features": np.asarray(names, dtype=object),
    }
