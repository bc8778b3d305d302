"""Diagnostics of a fitted CPVAE for multi-study data: leakage and variance explained.

Two questions a multi-study analysis has to answer before the codes are trusted:

* **Leakage** (:func:`leakage_report`, :func:`linear_probe`, :func:`active_units`): does
  the shared code still encode the study (a cross-validated linear probe predicting the
  population from the shared codes; near chance is good), read from every unit, from the
  active units only and from one draw z ~ q(z|x), and does each private encoder stay
  uninformative on the *other* populations (the per-row KL of eq. 6, which eq. 4 drives
  to 0)?
* **Variance explained** (:func:`variance_explained`): per feature and population, the
  share of the variance of X captured by the shared part ``f_s(z)`` and by the
  population's private part ``f_k(t)`` (as MOFA reports it per factor group), to ask
  which features are study-specific; for count models, the share of deviance.
* **Differential expression** (:func:`differential_expression`): per feature, how two
  populations' decoders differ on the same shared states (scvi-tools' "change" mode).
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

__all__ = [
    "active_units",
    "differential_expression",
    "leakage_report",
    "linear_probe",
    "private_kl",
    "variance_explained",
]


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


def active_units(codes, threshold=0.01):
    """Which units of a code vary with the data: the variance of their posterior means.

    A unit whose posterior mean ``E q(u | x)`` varies over the rows by less than
    ``threshold`` is collapsed: its posterior is close to the prior for every row and
    the decoder cannot use it (Burda, Grosse and Salakhutdinov, *Importance Weighted
    Autoencoders*, 2016, whose threshold 0.01 this takes for unit-variance priors).

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_units)
        Posterior means, e.g. a block of :meth:`CPVAE.transform`.
    threshold : float, default=0.01
        Smallest variance over the rows of an active unit's posterior mean.

    Returns
    -------
    active : ndarray of bool, shape (n_units,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cpvae.diagnostics import active_units
    >>> rng = np.random.default_rng(0)
    >>> codes = np.column_stack([rng.normal(size=100), 0.01 * rng.normal(size=100)])
    >>> active_units(codes)
    array([ True, False])
    """
    codes = np.asarray(codes, dtype=np.float64)
    return codes.var(axis=0) > threshold


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
        ``active_shared``: the :func:`active_units` of the shared code on these rows;
        ``shared_probe_active``: the probe from the active units alone (NaN if none is);
        ``shared_probe_draw``: the probe from one draw z ~ q(z|x) per row, seeded by
        ``random_state``; ``chance``: ``1 / n_populations``; ``private_kl_own`` and
        ``private_kl_off`` (arrays over ``classes``): mean ``KL(q_k(t|x) || N(0, I))``
        of encoder k on its own rows and on the other populations' rows (good: ``off``
        near 0, ``own`` large; NaN for populations without a private space);
        ``classes``.

    Notes
    -----
    The probe standardises every unit, so it also reads differences between the
    populations of a few hundredths in the means of collapsed units, which the decoder
    does not use and which one draw of z, whose noise has standard deviation about 1
    there, hides. When ``shared_probe`` is high but ``shared_probe_active`` and
    ``shared_probe_draw`` are near ``chance``, the population is in those collapsed
    units only (:doc:`the quality panel </quality>`, "What the invariance penalty
    sees"); if the codes go on to a method that standardises them, pass it the active
    units.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cpvae import CPVAE
    >>> from sklearn_cpvae.diagnostics import leakage_report
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(["a", "b"], 100)
    >>> X = rng.normal(size=(200, 6))
    >>> X[y == "b", :2] += 2.0
    >>> model = CPVAE(n_shared=4, n_private=2, max_iter=20, random_state=0).fit(X, y)
    >>> report = leakage_report(model, X, y)
    >>> sorted(k for k in report if k.startswith("shared"))
    ['shared_probe', 'shared_probe_active', 'shared_probe_draw']
    """
    X, idx = _prepare(model, X, populations)
    centre = idx if model.module_.shared_centering else None
    shared, var = _inference.encode(model.module_, model.device, X, centre=centre, shared_var=True)
    k = len(model.classes_)
    probe = linear_probe(shared, idx, groups=groups, cv=cv, random_state=random_state)
    active = active_units(shared)
    probe_active = (
        linear_probe(shared[:, active], idx, groups=groups, cv=cv, random_state=random_state)
        if active.any()
        else np.nan
    )
    noise = np.random.default_rng(random_state).standard_normal(shared.shape)
    draw = shared + np.sqrt(var.astype(np.float64)) * noise
    probe_draw = linear_probe(draw, idx, groups=groups, cv=cv, random_state=random_state)
    kl = private_kl(model, X)
    own = np.array([kl[idx == j, j].mean() if np.any(idx == j) else np.nan for j in range(k)])
    off = np.array([kl[idx != j, j].mean() if np.any(idx != j) else np.nan for j in range(k)])
    own[~model.has_private_] = np.nan
    off[~model.has_private_] = np.nan
    return {
        "shared_probe": probe,
        "active_shared": active,
        "shared_probe_active": probe_active,
        "shared_probe_draw": probe_draw,
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

    For ``likelihood="poisson"`` and ``"nb"`` the share is deviance explained (the D² of
    a GLM): ``1 - sum_i dev(x_id, mu_id) / sum_i dev(x_id, mu0_id)`` with the model's
    unit deviance (NB with the fitted theta), where the log mean of a part holds the
    other part at its population average, ``log mu = f_s(z) + mean f_k(t) + o`` (shared)
    or ``mean f_s(z) + f_k(t) + o`` (private), ``o`` the row's log library-size factor,
    and the null model ``mu0`` is the population's mean count of the feature, scaled by
    each row's library size. Bernoulli models are not supported.

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
    lik = get_likelihood(model.likelihood)
    if lik.counts:
        return _deviance_explained(model, *_prepare(model, X, populations))
    if not lik.identity_mean:
        raise ValueError(
            "variance_explained needs likelihood='gaussian' (decoder output in the units "
            "of X), 'poisson' or 'nb' (deviance explained); the model uses "
            f"{model.likelihood!r}."
        )
    X, idx = _prepare(model, X, populations)
    module, device, _ = _inference.inference_module(model.module_, model.device, X.dtype)
    k, d = len(model.classes_), X.shape[1]
    per_row = 8 * X.itemsize * (2 * d + module.layer_width)
    sums = {name: np.zeros((k, d)) for name in ("shared", "private", "total", "x")}
    # Centred sums need per-population means first: accumulate raw moments, then centre.
    mom = {name: np.zeros((k, d)) for name in ("x", "s", "p", "n")}
    cross = {name: np.zeros((k, d)) for name in ("xx", "ss", "pp", "xs", "xp", "sp")}
    scale = module.x_scale.cpu().numpy().astype(np.float64) if module.standardize else None
    for sl, x, s, p in _decoded_parts(module, device, X, idx, per_row):
        if scale is not None:
            # Back to the units of X; the offset x_loc drops out of centred sums.
            s, p = s * scale, p * scale
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


def differential_expression(
    model, X, population1, population2, *, delta=None, n_samples=25, random_state=0
):
    """Per-feature difference between two populations' decoders on the same cells.

    Every row's shared code is drawn from ``q(z | x)``; for each draw the row is decoded
    by population 1's and by population 2's decoder, each with a private code drawn from
    that population's private prior (:meth:`CPVAE.get_normalized_expression`), with
    common random numbers. The effect of a draw is the log2 fold change
    ``log2(mu_1 / mu_2)`` for the count likelihoods (means at one library size, which
    cancels) and the difference ``mu_1 - mu_2`` otherwise (units of X, probabilities
    for Bernoulli). Pooled over rows and draws, ``proba_de = P(|effect| > delta)``, as
    in scvi-tools' ``mode="change"``; the rows choose the cells compared (e.g. one cell
    type of every study).

    Parameters
    ----------
    model : fitted CPVAE
    X : {array-like, sparse matrix, DataFrame, AnnData} of shape (n_samples, n_features)
        Rows whose shared states are decoded.
    population1, population2 : label
        The two populations compared (effects are 1 relative to 2).
    delta : float, default=None
        Smallest effect that counts as a difference. None: 0.25 (log2 fold change) for
        the count likelihoods, 0.25 times each feature's training standard deviation
        for the Gaussian one (its ``standardize`` scale; 0.25 without it), 0.05 for
        Bernoulli.
    n_samples : int, default=25
        Posterior draws per row.
    random_state : int, RandomState instance or None, default=0
        Seeds the draws.

    Returns
    -------
    result : dict
        ``effect_mean``, ``effect_std``, ``proba_de``, ``proba_not_de`` and the mean
        decoded values ``mean1``, ``mean2``: arrays of shape (n_features,); ``effect``:
        ``"log2_fold_change"`` or ``"difference"``; ``delta`` (n_features,);
        ``features``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cpvae import CPVAE
    >>> from sklearn_cpvae.diagnostics import differential_expression
    >>> rng = np.random.default_rng(0)
    >>> C = rng.poisson(5.0, size=(40, 4)).astype(float)
    >>> model = CPVAE(n_shared=2, n_private=1, likelihood="nb", hidden_layer_sizes=(8,),
    ...               max_iter=2, n_importance_samples=4,
    ...               random_state=0).fit(C, np.repeat(["a", "b"], 20))
    >>> de = differential_expression(model, C, "a", "b")
    >>> de["effect"], de["proba_de"].shape
    ('log2_fold_change', (4,))
    """
    X = check_fitted_X(model, X)
    lik = get_likelihood(model.likelihood)
    n, d = X.shape
    pair = population_index(model.classes_, [population1, population2], 2, "population")
    if pair[0] == pair[1]:
        raise ValueError(f"population1 and population2 are both {population1!r}.")
    if delta is None:
        if lik.counts:
            delta = 0.25
        elif lik.identity_mean:
            scale = model.module_.x_scale.numpy() if model.module_.standardize else np.ones(d)
            delta = 0.25 * scale.astype(np.float64)
        else:
            delta = 0.05
    delta = np.broadcast_to(np.asarray(delta, dtype=np.float64), (d,))
    if np.any(~np.isfinite(delta)) or np.any(delta < 0):
        raise ValueError(f"delta must be non-negative and finite; got {delta!r}.")
    targets = [np.full(n, pair[0]), np.full(n, pair[1])]
    total, sq, above, m1, m2 = (np.zeros(d) for _ in range(5))
    for _, (mu1, mu2) in model._posterior_decodes(X, targets, n_samples, random_state):
        if lik.counts:
            tiny = np.finfo(np.float64).tiny
            effect = (np.log(np.maximum(mu1, tiny)) - np.log(np.maximum(mu2, tiny))) / np.log(2)
        else:
            effect = mu1 - mu2
        total += effect.sum(0)
        sq += (effect**2).sum(0)
        above += (np.abs(effect) > delta).sum(0)
        m1 += mu1.sum(0)
        m2 += mu2.sum(0)
    count = n * n_samples
    mean = total / count
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = np.asarray([f"x{i}" for i in range(d)], dtype=object)
    return {
        "effect": "log2_fold_change" if lik.counts else "difference",
        "effect_mean": mean,
        "effect_std": np.sqrt(np.maximum(sq / count - mean**2, 0.0)),
        "proba_de": above / count,
        "proba_not_de": 1 - above / count,
        "mean1": m1 / count,
        "mean2": m2 / count,
        "delta": delta.copy(),
        "features": np.asarray(names, dtype=object),
    }


def unit_deviance(x, mu, theta=None):
    """Poisson (``theta=None``) or NB unit deviance ``2 [log p(x | x) - log p(x | mu)]``.

    Poisson: ``2 (x log(x / mu) - (x - mu))``; NB with inverse dispersion theta:
    ``2 (x log(x / mu) - (x + theta) log((x + theta) / (mu + theta)))``, with
    ``0 log 0 = 0``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        xlog = np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0) / mu), 0.0)
        if theta is None:
            return 2 * (xlog - (x - mu))
        return 2 * (xlog - (x + theta) * np.log((x + theta) / (mu + theta)))


def _count_parts(model, module, device, X, idx):
    """Per chunk: rows (NaN kept), shared and private log-mean parts, log offsets."""
    per_row = 8 * X.itemsize * (3 * X.shape[1] + module.layer_width)
    log_ref = float(module.log_library_ref)
    for sl, x, s, p in _decoded_parts(module, device, X, idx, per_row):
        obs = ~np.isnan(x)
        offset = np.zeros(len(x))
        if module.library_size:
            # As the model's offset: the observed total scaled up to the whole row.
            total = np.nansum(x, 1) * x.shape[1] / np.maximum(obs.sum(1), 1)
            offset = np.log(np.maximum(total, 1.0)) - log_ref
        yield sl, x, obs, s, p, offset


def _decoded_parts(module, device, X, idx, per_row):
    """Per chunk of rows: the slice, the rows (float64, NaN kept) and the shared and
    private decoder outputs f_s(E[z]) and f_k(E[t]) (float64, the model's units), each
    chunk standardised once for both encoders."""
    with torch.inference_mode():
        for sl in _inference.chunks(X.shape[0], per_row):
            xb = _inference.to_tensor(X[sl], device, X.dtype)
            pops = torch.as_tensor(idx[sl], device=device)
            xs = module.standardize_rows(xb)
            mu_z, _ = module.encode_shared(xs, standardized=True, populations=pops)
            mu_t, _ = module.encode_private(xs, pops, standardized=True)
            s = module.decode_shared(mu_z).cpu().numpy().astype(np.float64)
            p = module.decode_private(mu_t, pops).cpu().numpy().astype(np.float64)
            yield sl, xb.cpu().numpy().astype(np.float64), s, p


def _deviance_explained(model, X, idx):
    module, device, _ = _inference.inference_module(model.module_, model.device, X.dtype)
    k, d = len(model.classes_), X.shape[1]
    theta = np.exp(module.log_theta.detach().cpu().numpy().astype(np.float64))
    theta = theta if model.likelihood == "nb" else None
    # Pass 1: population means of the parts, and the null model's rate per feature.
    sums = {name: np.zeros((k, d)) for name in ("s", "p", "x", "lib")}
    n = np.zeros((k, 1))
    for sl, x, obs, s, p, offset in _count_parts(model, module, device, X, idx):
        onehot = np.eye(k)[idx[sl]].T
        sums["s"] += onehot @ s
        sums["p"] += onehot @ p
        sums["x"] += onehot @ np.where(obs, x, 0.0)
        sums["lib"] += onehot @ (obs * np.exp(offset)[:, None])
        n += onehot.sum(1, keepdims=True)
    mean_s, mean_p = sums["s"] / np.maximum(n, 1), sums["p"] / np.maximum(n, 1)
    rate0 = sums["x"] / np.maximum(sums["lib"], np.finfo(float).tiny)
    # Pass 2: deviances of every part against the null model.
    dev = {name: np.zeros((k, d)) for name in ("shared", "private", "total", "null")}
    for sl, x, obs, s, p, offset in _count_parts(model, module, device, X, idx):
        rows = idx[sl]
        onehot = np.eye(k)[rows].T
        o = offset[:, None]
        xs = np.where(obs, x, 0.0)
        logs = {
            "shared": s + mean_p[rows] + o,
            "private": mean_s[rows] + p + o,
            "total": s + p + o,
        }
        for name, log_mu in logs.items():
            dev[name] += onehot @ (obs * unit_deviance(xs, np.exp(log_mu), theta))
        mu0 = np.maximum(rate0[rows] * np.exp(o), np.finfo(float).tiny)
        dev["null"] += onehot @ (obs * unit_deviance(xs, mu0, theta))
    valid = dev["null"] > 1e-10
    out, overall = {}, {}
    for name in ("shared", "private", "total"):
        out[name] = np.where(valid, 1 - dev[name] / np.where(valid, dev["null"], 1.0), np.nan)
        overall[name] = 1 - np.sum(np.where(valid, dev[name], 0), 1) / np.sum(
            np.where(valid, dev["null"], 0), 1
        )
    out["private"][~model.has_private_] = 0.0
    overall["private"][~model.has_private_] = 0.0
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = np.asarray([f"x{i}" for i in range(d)], dtype=object)
    return {
        **out,
        "overall": overall,
        "classes": model.classes_.copy(),
        "features": np.asarray(names, dtype=object),
    }
