"""Adding populations (studies) to a fitted CPVAE: new private networks trained next to
the frozen shared ones, then merged into the fitted networks (``CPVAE.add_populations``)."""

import dataclasses
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from sklearn_cpvae import _inference
from sklearn_cpvae._likelihoods import get_likelihood
from sklearn_cpvae._torch_utils import derive_seeds, resolve_device
from sklearn_cpvae._training import fit_module, training_data
from sklearn_cpvae._validation import (
    check_fitted_X,
    check_float32_range,
    resolve_priors,
    warn_non_integer_counts,
)
from sklearn_cpvae.diagnostics import active_units


def add_populations(est, X, populations=None, *, max_iter=None):
    """:meth:`CPVAE.add_populations` on the fitted estimator ``est`` (see its docstring)."""
    check_is_fitted(est)
    if max_iter is not None and (
        not isinstance(max_iter, Integral) or isinstance(max_iter, bool) or max_iter < 1
    ):
        raise ValueError(f"max_iter must be a positive integer or None; got {max_iter!r}.")
    X, column = check_fitted_X(est, X, return_column=True)
    if populations is None:
        populations = column
    if populations is None:
        raise ValueError(
            "add_populations needs the population of each new row: pass populations=, "
            "or X holding population_column."
        )
    labels = np.asarray(populations)
    if labels.ndim != 1 or len(labels) != X.shape[0]:
        raise ValueError(
            f"populations must be 1-D with one label per row ({X.shape[0]}); got shape "
            f"{labels.shape}."
        )
    check_classification_targets(labels)
    new_classes, new_idx = np.unique(labels, return_inverse=True)
    known = new_classes[np.isin(new_classes, est.classes_)].tolist()
    if known:
        raise ValueError(
            f"add_populations got rows of population(s) {known} that the model was "
            "already fitted on; pass the rows of new populations only (refit, or "
            "warm_start, to train on more rows of known ones)."
        )
    counts = np.bincount(new_idx, minlength=len(new_classes))
    if np.any(counts < 2):
        raise ValueError(
            f"every new population needs at least 2 rows; population(s) "
            f"{new_classes[counts < 2].tolist()} have 1."
        )
    if est.priors is not None and not isinstance(est.priors, str):
        raise ValueError(
            f"priors gives {len(est.priors)} values for the fitted populations; set "
            "priors to None, 'uniform' or one value per population after the addition "
            "(set_params) before add_populations."
        )
    check_float32_range(X)
    get_likelihood(est.likelihood).check_support(X)
    warn_non_integer_counts(X, est.likelihood, get_likelihood(est.likelihood).counts)
    seed_init, seed_train, seed_split, seed_val = derive_seeds(est.random_state, 9)[5:]
    device = resolve_device(est.device)
    n_new = len(new_classes)
    sub = est._build_module(X.shape[1], np.ones(n_new), seed_init, adversary=False)
    _copy_shared_networks(est.module_, sub)
    if sub.shared_centering or sub.mi_alignment:
        # Each new row is centred by (or moved from) its own population's mean.
        sub.population_centre.copy_(_inference.population_centres(sub, X, new_idx))
    data, val = training_data(
        X,
        new_idx,
        n_new,
        device,
        validation_fraction=est.validation_fraction if est.early_stopping else None,
        seed=seed_split,
    )
    # One new population has no other rows for its MI term: train it with eq. 3,
    # which is "elbo_mi" without that term (for "paper", the own KL then keeps the
    # lone private code from drifting, which nothing else would).
    objective = est._objective() if n_new > 1 else "elbo"
    cfg = est._train_config(
        objective,
        max_iter=est.max_iter if max_iter is None else int(max_iter),
        mi_anneal_epochs=est.mi_anneal_epochs if objective != "elbo" else 0,
    )
    # The adversary trains the shared encoder, which stays frozen here.
    cfg = dataclasses.replace(cfg, shared_adversary=0.0)
    outcome = fit_module(
        sub,
        data,
        cfg,
        device=device,
        learning_rate=est.learning_rate_init,
        seed=seed_train,
        val=val,
        val_seed=seed_val,
    )
    if outcome.diverged is not None:
        # The fitted model is untouched: nothing was merged yet.
        raise outcome.diverged
    mu, var = _inference.encode(
        sub, est.device, X, new_idx, has_private=np.ones(n_new, bool), private_var=True
    )
    new_mean = np.stack([mu[new_idx == j].mean(0) for j in range(n_new)])
    new_var = np.stack([mu[new_idx == j].var(0) + var[new_idx == j].mean(0) for j in range(n_new)])
    new_active = np.stack([active_units(mu[new_idx == j]) for j in range(n_new)])
    classes = np.concatenate([est.classes_, new_classes])
    order = np.argsort(classes, kind="stable")
    gate = np.concatenate([est.has_private_.astype(float), np.ones(n_new)])[order]
    merged = est._build_module(X.shape[1], gate, 0)
    _copy_shared_networks(est.module_, merged)
    _merge_private_networks(est.module_, sub, merged, order)
    _merge_adversary(est.module_, merged, order)
    if merged.shared_centering or merged.mi_alignment:
        with torch.no_grad():
            centres = torch.cat([est.module_.population_centre, sub.population_centre])
            merged.population_centre.copy_(centres[torch.as_tensor(order)])
    for p in merged.parameters():
        p.requires_grad_(True)
    est.module_ = merged.eval()
    est.classes_ = classes[order]
    est.population_counts_ = np.concatenate([est.population_counts_, counts])[order]
    est.has_private_ = gate.astype(bool)
    est.priors_ = resolve_priors(est.priors, est.population_counts_)
    est.private_code_mean_ = np.concatenate([est.private_code_mean_, new_mean])[order]
    est.private_code_var_ = np.concatenate([est.private_code_var_, new_var])[order]
    if hasattr(est, "active_private_"):  # a model loaded from an older file may lack it
        est.active_private_ = np.concatenate([est.active_private_, new_active])[order]
    est._optimizer_state = None
    if not outcome.result.converged and not est.early_stopping:
        warnings.warn(
            f"add_populations stopped after {cfg.max_iter} epochs without converging; "
            "increase max_iter.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return est


def _copy_shared_networks(source, target):
    """Copy everything but the private networks from ``source`` into ``target`` and freeze
    it there: the shared encoder and decoder, Psi, the NB dispersions, the library-size
    reference and the standardisation."""
    private = ("enc_private.", "dec_private.", "private_gate")
    # The population classifier and the population centres have an entry per
    # population: see _merge_adversary and add_populations.
    skip = (*private, "adversary.", "population_centre")
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(skip)}
    missing = target.load_state_dict(state, strict=False)
    if missing.unexpected_keys:
        raise RuntimeError(f"unexpected network weights {missing.unexpected_keys}")
    for name, p in target.named_parameters():
        p.requires_grad_(name.startswith(private))


def _merge_private_networks(old, new, target, order):
    """``target``'s private networks are ``old``'s K slices then ``new``'s M slices,
    reordered by ``order``, along the axis that stacks each parameter's networks
    (``stack_axes`` of :class:`~sklearn_cpvae._nn.StackedMLP` and the convolutional
    stacks)."""
    order = torch.as_tensor(order)
    with torch.no_grad():
        for name in ("enc_private", "dec_private"):
            a, b, t = getattr(old, name), getattr(new, name), getattr(target, name)
            pa, pb, axes = dict(a.named_parameters()), dict(b.named_parameters()), t.stack_axes()
            for key, pt in t.named_parameters():
                axis = axes[key]
                pt.copy_(torch.cat([pa[key], pb[key]], axis).index_select(axis, order))


def _merge_adversary(old, target, order):
    """``target``'s population classifier (``shared_adversary``) is ``old``'s, with the
    output units of the populations ``old`` knows moved to their places in ``order``;
    the new populations' output units keep ``target``'s initial weights (no shared
    network, hence no classifier, is trained while populations are added)."""
    if old.adversary is None or target.adversary is None:
        return
    k_old = old.n_populations
    places = torch.as_tensor(np.argsort(order, kind="stable")[:k_old])
    with torch.no_grad():
        a, t = old.adversary, target.adversary
        for wa, wt in zip(a.weights[:-1], t.weights[:-1]):
            wt.copy_(wa)
        for ba, bt in zip(a.biases[:-1], t.biases[:-1]):
            bt.copy_(ba)
        t.weights[-1][..., places] = a.weights[-1]
        t.biases[-1][..., places] = a.biases[-1]
