"""Quality panel: one table of what CPVAE recovers, leaks and predicts, per configuration.

Run from the repository root::

    python -m benchmarks.quality.panel --quick --out benchmarks/results/quality/panel_quick.json
    python -m benchmarks.quality.panel --full --configs old_defaults elbo --cases two_gaussian wine
    python -m benchmarks.quality.panel --retabulate benchmarks/results/quality/panel_quick.json

Without ``--configs`` the four compared configurations run (DEFAULT_CONFIGS); fits run in
``--jobs`` worker processes (default one per core). ``--retabulate`` recomputes a results
file's tables from its records under the current targets.

Every configuration below is a dict of CPVAE keyword arguments; anything not named
keeps the estimator's default (n_shared=100, n_private=25, max_iter=200, ...). To add
one, add an entry to CONFIGS; ``--configs`` picks a subset. Case-level settings that
depend on the data (``likelihood="bernoulli"`` for images in [0, 1], a shorter
``max_iter`` on the image cases) are listed in each case and recorded in the output.

Metrics (on held-out rows; see docs/quality.md): active units of each space, linear-probe
R^2 of every true factor from each space, KMeans ARI of private sub-groups, leakage both
ways, ``predict`` accuracy against LDA / QDA / logistic regression, held-out
log-likelihood, fit time, biology preservation on real sets against batch-centred PCA,
and the invariance of ``predict`` to rescaling and shifting X.

Shared data are read with ``np.load`` from ``<repo>/../shared/data`` (override with the
environment variable CPVAE_SHARED_DATA); a case whose files are absent is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------------
# Configurations: name -> CPVAE keyword arguments (everything else: the defaults)
# ----------------------------------------------------------------------------------
CONFIGS = {
    # The defaults of release 0.1: eq. 4 with the aggregate private prior, X as given.
    "old_defaults": {"objective": "paper", "private_prior": "aggregate", "standardize": False},
    # Eq. 4/10 and eq. 7-8 exactly as published (N(0, I) private prior), X as given.
    "paper_literal": {"objective": "paper", "private_prior": "standard", "standardize": False},
    # Eq. 3 (the paper's "No MI"), X as given.
    "elbo": {"objective": "elbo", "standardize": False},
    # The current defaults.
    "new_defaults": {},
    # Eq. 3 with the default standardisation: what the MI term adds to the defaults.
    "elbo_std": {"objective": "elbo"},
    # The defaults with a private code no wider than the synthetic cases' private factors
    # (2): whether private capacity decides where the shared factors go.
    "n_private2": {"n_private": 2},
    # Five times the default epochs: on small sets (E. coli: 82 rows, one step per
    # epoch) whether the empty shared space is a matter of optimiser steps.
    "max_iter1000": {"max_iter": 1000},
    # No relative stopping tolerance: training ends only when the mean loss stops
    # falling at all; against the defaults it shows whether a fit tol stopped had
    # levelled off.
    "tol0_max_iter1000": {"tol": 0.0, "max_iter": 1000},
    # Codes about the size of a small table's structure (10 features on heart).
    "small_codes": {"n_shared": 10, "n_private": 2},
    # Stop on the loss of a held-out tenth of the training rows (docs/quality.md,
    # "How the defaults were chosen").
    "early_stop": {"early_stopping": True},
    # Levers on where structure goes (docs/quality.md, "Table 1"): a private nat at half
    # the price of a shared one; the MMD invariance penalty on the shared codes.
    "pkl0.5": {"private_kl_weight": 0.5},
    # The own private KL's weight rising from 0 to 1 over the first half of max_iter.
    "warmup0.5": {"private_kl_warmup": 0.5},
    # The opposite schedule: the own private KL's weight falling from 10 to 1 over the
    # first quarter of max_iter ("shared first").
    "shared_first10": {"private_kl_warmup": 0.25, "private_kl_warmup_start": 10.0},
    "shared_first3": {"private_kl_warmup": 0.25, "private_kl_warmup_start": 3.0},
    "inv10": {"shared_invariance": 10.0},
    # An L2 prior on the decoders' weights: what K private decoders would each model
    # costs more there than in the one shared decoder (docs/quality.md).
    "dec_wd0.01": {"decoder_weight_decay": 0.01},
    "dec_wd0.1": {"decoder_weight_decay": 0.1},
    # The same at five times the default epochs, where small sets' fits level off.
    "dec_wd0.01_max_iter1000": {"decoder_weight_decay": 0.01, "max_iter": 1000},
    "dec_wd0.1_max_iter1000": {"decoder_weight_decay": 0.1, "max_iter": 1000},
    # The population adversary on the shared posterior means (docs/quality.md).
    "adv1": {"shared_adversary": 1.0},
    "adv10": {"shared_adversary": 10.0},
    "adv100": {"shared_adversary": 100.0},
    # The shared encoder reads each row minus its population's mean.
    "centred": {"shared_centering": "population"},
    # Eq. 4's MI term reads other populations' rows moved to each encoder's mean.
    "mi_aligned": {"mi_alignment": "mean"},
    "centred_mi_aligned": {"shared_centering": "population", "mi_alignment": "mean"},
    # The defaults with convolutional encoders and decoders (the image cases' own
    # image_shape; the config is skipped on the other cases).
    "conv": {"image_shape": "case", "conv_channels": (32, 64)},
}

# What ``--configs`` defaults to: the three objectives the panel compares (release 0.1's
# defaults, eq. 4 as published, the current defaults) and eq. 3, whose private sub-group
# ARI is the bar of the ARI target. The others are levers, run by name.
DEFAULT_CONFIGS = ("old_defaults", "paper_literal", "elbo", "new_defaults")

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "quality"
TEST_SIZE = 0.3
QUICK_SCALES = ("x0.001", "x1000000.0", "+100")
FULL_SCALES = ("x0.001", "x1", "x1000.0", "x1000000.0", "+100")


def shared_data_dir():
    env = os.environ.get("CPVAE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


class Skip(Exception):
    """A case cannot run (its data are absent)."""


def _npz(folder, name=None):
    path = shared_data_dir() / folder / f"{name or folder}.npz"
    if not path.exists():
        raise Skip(f"{path} not found")
    return np.load(path)


# ----------------------------------------------------------------------------------
# Cases: each builder(mode, seed) returns a dict with X, y and optional truth
# ----------------------------------------------------------------------------------
def _synthetic(n_quick, n_full, **kwargs):
    def build(mode, seed):
        from sklearn_cpvae.datasets import make_cross_population

        n = n_quick if mode == "quick" else n_full
        d = make_cross_population(n_samples=n, random_state=seed, **kwargs)
        return {
            "X": d.data,
            "y": d.populations,
            "shared_factors": d.shared_factors,
            "private_factors": d.private_factors,
            "subgroups": d.subgroups,
            "n_subgroups": kwargs.get("n_subgroups", 3),
            # populations differ only by private factors (or not at all): the shared
            # codes should not tell them apart
            "private_only": kwargs.get("population_effect", "both") in ("subspace", "none"),
            # each population has its own private decoder and sub-groups; under "mean" and
            # "none" the sub-groups and their decoder are common to every population
            "private_variation": kwargs.get("population_effect", "both") in ("subspace", "both"),
            "note": f"make_cross_population(n_samples={n}, {kwargs}, random_state=seed)",
        }

    return build


def two_gaussian(mode, seed):
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], 200)
    X = rng.normal(size=(400, 10))
    X[y == "b"] += 1.0
    te = rng.permutation(400)[:120]
    tr = np.setdiff1d(np.arange(400), te)
    return {"X": X, "y": y, "split": (tr, te), "note": "fixed data and split; seed = model seed"}


def _subsample(rng, y, n):
    """Stratified subsample of n row indices (all when n is None or >= len(y))."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=rng)
    return np.sort(idx)


def wine(mode, seed):
    d = _npz("wine_quality")
    y = np.where(d["color"] == 0, "red", "white")
    idx = _subsample(seed, y, 600 if mode == "quick" else None)
    return {
        "X": d["X"][idx].astype(float),
        "y": y[idx],
        "biology": (d["quality"][idx] >= 6).astype(int),
        "standardise": True,
        "note": "populations red/white; biology = quality >= 6"
        + ("; 600 stratified rows" if mode == "quick" else ""),
    }


def mice(mode, seed):
    d = _npz("mice_protein")
    X = d["X"].astype(float)
    keep = ~np.isnan(X).any(axis=0)
    mouse = d["mouse_id"]
    rows = np.arange(len(mouse))
    if mode == "quick":
        mice_ids = np.unique(mouse)
        chosen = np.random.default_rng(seed).choice(mice_ids, size=40, replace=False)
        rows = np.flatnonzero(np.isin(mouse, chosen))
    biology = np.char.add(np.char.add(d["treatment"][rows], "|"), d["behavior"][rows])
    return {
        "X": X[rows][:, keep],
        "y": d["genotype"][rows],
        "biology": biology,
        "groups": mouse[rows],
        "standardise": True,
        "batch_effect": True,
        "note": f"populations = genotype; biology = treatment|behaviour; complete-case "
        f"columns ({int(keep.sum())} of {X.shape[1]} proteins, no NaN); "
        f"split by mouse_id" + ("; 40 random mice" if mode == "quick" else ""),
    }


def heart(mode, seed):
    d = _npz("heart_disease_multisite")
    X = d["X"].astype(float)
    names = list(d["feature_names"])
    drop = [names.index(c) for c in ("slope", "ca", "thal")]
    cols = np.setdiff1d(np.arange(X.shape[1]), drop)
    X = X[:, cols]
    rows = ~np.isnan(X).any(axis=1)
    site = d["site_names"][d["site"]]
    return {
        "X": X[rows],
        "y": site[rows],
        "biology": (d["num"][rows] > 0).astype(int),
        "standardise": True,
        "batch_effect": True,
        "note": f"populations = 4 hospitals; biology = diagnosis num>0; columns slope, ca, "
        f"thal dropped (mostly missing), then complete-case rows ({int(rows.sum())} "
        f"of {len(rows)})",
    }


def ecoli(mode, seed):
    d = _npz("ecoli_proteomics_5labs")
    X = d["X"].astype(float)
    keep = ~np.isnan(X).any(axis=0)
    return {
        "X": X[:, keep],
        "y": d["lab"],
        "biology": d["condition"],
        "standardise": True,
        "batch_effect": True,
        "note": f"populations = lab; biology = growth condition; complete-case proteins "
        f"({int(keep.sum())}), standardised",
    }


def quartet(mode, seed):
    d = _npz("quartet_multiomics")
    X = d["prot_X"].astype(float)
    keep = ~np.isnan(X).any(axis=0)
    return {
        "X": X[:, keep],
        "y": d["prot_lab"],
        "biology": d["prot_donor"],
        "standardise": True,
        "batch_effect": True,
        "note": "proteomics; populations = lab; biology = donor; standardised",
    }


def _grassy(grass_seed):
    def build(mode, seed):
        from sklearn_cpvae.datasets import make_grassy_mnist

        m = _npz("mnist")
        g = _npz("grass_imagenet")
        n = 600 if mode == "quick" else 5000
        X, y, digit = make_grassy_mnist(
            m["X_train"][:10000],
            m["y_train"][:10000],
            g["X_gray100"],
            n_samples=n,
            random_state=grass_seed,
        )
        return {
            "X": X.astype(float),
            "y": y,
            "subgroups": digit,
            "n_subgroups": 5,
            "biology": digit,
            "image_shape": (28, 28),
            "note": f"make_grassy_mnist(MNIST train[:10000], grass_imagenet, n_samples={n}, "
            f"random_state={grass_seed}); digits 0-4 vs 5-9; subgroups = digit; "
            f"Gaussian likelihood (values exceed 1)",
        }

    return build


def _image_classes(folder, n_quick, n_full):
    def build(mode, seed):
        d = _npz(folder)
        X = np.concatenate([d["X_train"], d["X_test"]]).reshape(-1, 784)
        y = np.concatenate([d["y_train"], d["y_test"]]).astype(int)
        idx = _subsample(seed, y, n_quick if mode == "quick" else n_full)
        return {
            "X": X[idx].astype(float) / 255.0,
            "y": y[idx],
            "fit_kwargs": {"likelihood": "bernoulli"},
            "image_shape": (28, 28),
            "note": f"{folder}: populations = the 10 classes; {len(idx)} rows; /255, "
            f"Bernoulli likelihood",
        }

    return build


def celeba(mode, seed):
    d = _npz("celeba_subset", "celeba_64px_4000")
    X = d["X"].astype(np.float32).reshape(-1, 32, 2, 32, 2, 3).mean(axis=(2, 4)) / 255.0
    names = list(d["attribute_names"])
    attrs = (d["attributes"] > 0).astype(int)
    male_only = [a for a in CELEBA_MALE_ATTRIBUTES if a in names]
    return {
        "X": X.reshape(len(X), -1).astype(float),
        "y": np.where(d["male"] == 1, "male", "non-male"),
        "biology": attrs[:, names.index("Smiling")],
        "population_attributes": {
            "male": (male_only, attrs[:, [names.index(a) for a in male_only]])
        },
        # The default (Gaussian, standardised) likelihood: intensities of RGB faces are
        # not binary, and Bernoulli on them scored predict 0.858 against 0.912 (seed 0,
        # docs/quality.md, "CelebA").
        "fit_kwargs": {"max_iter": 100},
        "image_shape": (32, 32, 3),
        "note": "4000 faces, 2x2-averaged to 32x32x3 RGB, /255, default likelihood; "
        "biology = Smiling; "
        "male-specific attributes probed in the male rows",
    }


# The male-specific attributes of the data set's suggested protocol (the paper's §4.2).
CELEBA_MALE_ATTRIBUTES = (
    "Goatee",
    "Mustache",
    "No_Beard",
    "Sideburns",
    "5_o_Clock_Shadow",
    "Bald",
)


# name -> (builder, modes, scale check)
CASES = {
    "two_gaussian": (two_gaussian, ("quick", "full"), True),
    "syn_lin_K2_both": (_synthetic(400, 2000, n_populations=2), ("quick", "full"), False),
    "syn_nonlin_K2_both": (
        _synthetic(400, 2000, n_populations=2, decoder="nonlinear"),
        ("quick", "full"),
        False,
    ),
    "syn_lin_K5_both": (_synthetic(500, 2000, n_populations=5), ("quick", "full"), False),
    "syn_nonlin_K5_both": (
        _synthetic(500, 2000, n_populations=5, decoder="nonlinear"),
        ("full",),
        False,
    ),
    "syn_lin_K20_both": (_synthetic(2000, 4000, n_populations=20), ("full",), False),
    "syn_lin_K2_mean": (_synthetic(400, 2000, population_effect="mean"), ("quick", "full"), False),
    "syn_lin_K2_subspace": (
        _synthetic(400, 2000, population_effect="subspace"),
        ("quick", "full"),
        False,
    ),
    "syn_nonlin_K2_subspace": (
        _synthetic(400, 2000, decoder="nonlinear", population_effect="subspace"),
        ("full",),
        False,
    ),
    "syn_lin_K2_none": (_synthetic(400, 2000, population_effect="none"), ("quick", "full"), False),
    "syn_lin_K2_unbalanced100": (
        _synthetic(1010, 5050, population_weights=[100, 1]),
        ("quick", "full"),
        False,
    ),
    "syn_lin_K2_scales1e3": (
        _synthetic(400, 2000, feature_scales=(1, 1000)),
        ("quick", "full"),
        True,
    ),
    "wine": (wine, ("quick", "full"), False),
    "mice_genotype": (mice, ("quick", "full"), False),
    "heart_4sites": (heart, ("quick", "full"), False),
    "ecoli_5labs": (ecoli, ("quick", "full"), False),
    "quartet_prot": (quartet, ("quick", "full"), False),
    "grassy_mnist_g0": (_grassy(0), ("quick", "full"), False),
    "grassy_mnist_g1": (_grassy(1), ("full",), False),
    "mnist_10": (_image_classes("mnist", 700, 5000), ("quick", "full"), False),
    "fashion_10": (_image_classes("fashion_mnist", 700, 5000), ("full",), False),
    "celeba_male": (celeba, ("full",), False),
}


# ----------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------
def _split(case, seed):
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    n = len(case["y"])
    if "split" in case:
        return case["split"]
    if "groups" in case:
        cv = StratifiedGroupKFold(n_splits=round(1 / TEST_SIZE), shuffle=True, random_state=seed)
        tr, te = next(cv.split(np.zeros(n), case["y"], case["groups"]))
        return tr, te
    return train_test_split(
        np.arange(n), test_size=TEST_SIZE, stratify=case["y"], random_state=seed
    )


def _r2_probe(Z, T):
    """Mean over columns of T of the cross-validated R^2 of a ridge probe from Z."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    if T is None or T.shape[1] == 0 or len(Z) < 10:
        return None
    pred = cross_val_predict(
        RidgeCV(alphas=np.logspace(-3, 3, 7)), Z, T, cv=KFold(5, shuffle=True, random_state=0)
    )
    return float(np.mean([r2_score(T[:, j], pred[:, j]) for j in range(T.shape[1])]))


def _class_probe(Z, labels, scoring="accuracy"):
    """Cross-validated ``scoring`` (accuracy) of a logistic-regression probe, and the
    majority share."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, counts = np.unique(labels, return_counts=True)
    chance = float(counts.max() / counts.sum())
    if len(counts) < 2 or counts.min() < 2:
        return None, chance
    cv = StratifiedKFold(min(5, int(counts.min())), shuffle=True, random_state=0)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc = cross_val_score(probe, Z, labels, cv=cv, scoring=scoring).mean()
    return float(acc), chance


def _silhouette(Z, labels):
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2 or np.allclose(Z.var(axis=0).sum(), 0):
        return None
    return float(silhouette_score(Z, labels))


def _ari(Z, labels, k):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    if len(Z) < 2 * k or np.allclose(Z.var(axis=0).sum(), 0):
        return None
    km = KMeans(n_clusters=k, n_init=10, random_state=0).fit(Z)
    return float(adjusted_rand_score(labels, km.labels_))


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def baselines(Xtr, ytr, Xte, yte, biology_te=None, n_components=None):
    """LDA, QDA, logistic regression accuracy; batch-centred PCA biology preservation and
    the population it leaves readable."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import (
        LinearDiscriminantAnalysis,
        QuadraticDiscriminantAnalysis,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["lda_acc"] = float(LinearDiscriminantAnalysis().fit(Xtr, ytr).score(Xte, yte))
        # plain QDA; reg_param=0.1 when a class covariance is singular; shrinkage when
        # a class has fewer rows than features (this scikit-learn refuses svd then)
        out["qda_acc"], out["qda_params"] = None, None
        for qparams in ({}, {"reg_param": 0.1}, {"solver": "eigen", "shrinkage": "auto"}):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error" if "solver" not in qparams else "ignore")
                    qda = QuadraticDiscriminantAnalysis(**qparams).fit(Xtr, ytr)
                    out["qda_acc"], out["qda_params"] = float(qda.score(Xte, yte)), qparams
                break
            except Exception:
                continue
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        out["logreg_acc"] = float(lr.fit(Xtr, ytr).score(Xte, yte))
    if biology_te is not None:
        classes = np.unique(ytr)
        means = {c: Xtr[ytr == c].mean(axis=0) for c in classes}
        ctr = Xtr - np.array([means[c] for c in ytr])
        cte = Xte - np.array([means[c] for c in yte])
        k = int(min(n_components, np.linalg.matrix_rank(ctr), len(cte) - 1))
        Z = PCA(n_components=k, random_state=0).fit(ctr).transform(cte)
        out["pca_centred_n_components"] = k
        out["pca_centred_bio_probe_acc"], out["bio_chance"] = _class_probe(Z, biology_te)
        out["pca_centred_bio_silhouette"] = _silhouette(Z, biology_te)
        # What the reference leaves of the population: the bar a shared code can reach.
        out["pca_centred_leak_pop_acc"] = _class_probe(Z, yte)[0]
    return out


def code_metrics(model, Xte, yte, truth):
    """Every metric of a fitted model on the held-out rows."""
    from sklearn_cpvae.diagnostics import active_units

    n_shared = model.n_shared
    t = time.perf_counter()
    codes = model.transform(Xte, populations=yte)
    S, P = codes[:, :n_shared], codes[:, n_shared:]
    pops = np.unique(yte)
    rows = {k: yte == k for k in pops}
    m = {}
    active = active_units(S)
    m["active_shared"] = int(active.sum())
    m["active_private_per_pop"] = {
        str(k): int(active_units(P[r]).sum()) for k, r in rows.items() if r.sum() > 1
    }
    m["active_private"] = _mean(list(m["active_private_per_pop"].values()))
    big = [k for k in pops if rows[k].sum() >= 10]
    sf, pf, sg = truth.get("shared_factors"), truth.get("private_factors"), truth.get("subgroups")
    if sf is not None:
        m["r2_shared_from_shared"] = _r2_probe(S, sf)
        m["leak_r2_shared_from_private"] = _mean([_r2_probe(P[rows[k]], sf[rows[k]]) for k in big])
    if pf is not None:
        m["r2_private_from_private"] = _mean([_r2_probe(P[rows[k]], pf[rows[k]]) for k in big])
        m["r2_private_from_shared"] = _mean([_r2_probe(S[rows[k]], pf[rows[k]]) for k in big])
    if sg is not None:
        g = truth["n_subgroups"]
        m["ari_private"] = _mean([_ari(P[rows[k]], sg[rows[k]], g) for k in big])
        m["ari_shared"] = _mean([_ari(S[rows[k]], sg[rows[k]], g) for k in big])
    m["leak_pop_acc_shared"], m["pop_chance"] = _class_probe(S, yte)
    # The all-unit probe standardises every unit, so it also reads population
    # differences of ~0.02 in the means of collapsed units (docs/quality.md, "What the
    # invariance penalty sees"); the active units and one draw z ~ q(z|x) show what the
    # model's own code carries.
    m["leak_pop_acc_shared_active"] = _class_probe(S[:, active], yte)[0] if active.any() else None
    m["leak_pop_acc_shared_draw"] = _class_probe(_shared_draw(model, Xte, yte), yte)[0]
    bio = truth.get("biology")
    if bio is not None:
        m["bio_probe_acc_shared"], m["bio_chance"] = _class_probe(S, bio)
        m["bio_silhouette_shared"] = _silhouette(S, bio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = model.predict(Xte)
        ll = model.score_samples(Xte, populations=yte)
    from sklearn.metrics import balanced_accuracy_score

    m["predict_acc"] = float(np.mean(pred == yte))
    m["predict_balanced_acc"] = float(balanced_accuracy_score(yte, pred))
    finite = np.isfinite(ll)
    m["heldout_loglik"] = float(ll[finite].mean()) if finite.any() else None
    m["heldout_loglik_nonfinite"] = int((~finite).sum())
    m["metrics_s"] = round(time.perf_counter() - t, 2)
    return m


def _shared_draw(model, X, y, seed=0):
    """One draw z ~ q(z|x) per row of population ``y`` (the posterior means are
    ``transform``'s shared block)."""
    import torch

    module = model.module_.eval()
    pops = torch.as_tensor(np.searchsorted(model.classes_, y))
    with torch.no_grad():
        # a copy: X may be a worker's read-only memory map, which a tensor must not alias
        x = torch.as_tensor(np.array(X, dtype=np.float32))
        mu, logvar = module.encode_shared(x, populations=pops)
    gen = torch.Generator().manual_seed(seed)
    return (mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen)).double().numpy()


def attribute_metrics(model, Xte, yte, attributes):
    """Population-specific attributes read from the shared codes and from the private codes.

    ``attributes`` maps a population to ``(names, matrix)`` of binary attributes of its
    rows. For each attribute: cross-validated ROC AUC of a logistic probe on that
    population's held-out rows, from its shared codes and from its own private codes
    (AUC, since attributes such as a goatee are rare).
    """
    codes = model.transform(Xte, populations=yte)
    n_shared = model.n_shared
    out = {}
    for pop, (names, A) in attributes.items():
        rows = yte == pop
        for j, name in enumerate(names):
            a = A[rows, j]
            if np.bincount(a, minlength=2).min() < 5:
                continue
            out[f"{pop}:{name}"] = {
                space: _class_probe(Z, a, scoring="roc_auc")[0]
                for space, Z in (
                    ("shared", codes[rows, :n_shared]),
                    ("private", codes[rows, n_shared:]),
                )
            }
    return out


def fit_model(params, Xtr, ytr):
    from sklearn_cpvae import CPVAE, TrainingDivergedError

    model = CPVAE(**params)
    info = {}
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(Xtr, ytr)
        except TrainingDivergedError as exc:  # fitted, weights restored
            info["diverged"] = str(exc)
    info["fit_s"] = round(time.perf_counter() - t, 2)
    info["n_iter"] = int(model.n_iter_)
    info["warnings"] = sorted({type(w.message).__name__ for w in caught})
    return model, info


def _transform_X(X, name):
    return X + float(name[1:]) if name.startswith("+") else X * float(name[1:])


def case_flags(case):
    """What the truth of a case says about where its structure belongs: which targets apply."""
    return {
        "private_only": bool(case.get("private_only", False)),
        "has_shared_and_private": "shared_factors" in case and "private_factors" in case,
        # False where the sub-groups are common to every population (they belong to the
        # shared codes); True, or unknown (real data), where they are population-specific
        "private_variation": bool(case.get("private_variation", True)),
        # the populations are batches (labs, sites, genotypes): the shared codes should keep
        # the biology and drop the batch
        "biology_case": bool(case.get("batch_effect", False)),
    }


def prepare_case(name, mode, seed):
    """The case's split, truth and baselines: everything the configurations share.

    Returns ``(record, data)``: the record to which each configuration's entry is added,
    and what :func:`run_config` needs to fit and score one configuration."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.preprocessing import StandardScaler

    builder, _, scale_check = CASES[name]
    case = builder(mode, seed)
    X, y = np.asarray(case["X"], dtype=float), np.asarray(case["y"])
    tr, te = _split(case, seed)
    Xtr, Xte = X[tr], X[te]
    if case.get("standardise"):
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    truth = {
        k: (np.asarray(case[k])[te] if k in case else None)
        for k in ("shared_factors", "private_factors", "subgroups", "biology")
    }
    truth["n_subgroups"] = case.get("n_subgroups")
    attributes = {
        pop: (names, np.asarray(A)[te])
        for pop, (names, A) in case.get("population_attributes", {}).items()
    }
    fit_kwargs = case.get("fit_kwargs", {})
    scales = (QUICK_SCALES if mode == "quick" else FULL_SCALES) if scale_check else ()
    record = {
        "case": name,
        "seed": seed,
        "note": case.get("note", ""),
        "n_train": int(len(tr)),
        "n_test": int(len(te)),
        "n_features": int(X.shape[1]),
        "populations": {str(k): int(c) for k, c in zip(*np.unique(y, return_counts=True))},
        "standardised": bool(case.get("standardise", False)),
        **case_flags(case),
        "case_fit_kwargs": fit_kwargs,
        "baselines": baselines(Xtr, y[tr], Xte, y[te], truth["biology"], n_components=100),
        "configs": {},
    }
    if scale_check:
        record["scale_check_lda"] = {}
        for tname in scales:
            lda = LinearDiscriminantAnalysis().fit(_transform_X(Xtr, tname), y[tr])
            record["scale_check_lda"][tname] = float(lda.score(_transform_X(Xte, tname), y[te]))
    data = dict(
        name=name,
        seed=seed,
        Xtr=Xtr,
        ytr=y[tr],
        Xte=Xte,
        yte=y[te],
        truth=truth,
        attributes=attributes,
        fit_kwargs=fit_kwargs,
        image_shape=case.get("image_shape"),
        scales=scales,
    )
    return record, data


def run_config(data, cname, config, threads=1):
    """Fit configuration ``cname`` (CPVAE keyword arguments ``config``) on a prepared case.

    Returns the configuration's entry, or None where the configuration does not apply
    to the case (a convolutional configuration on tabular data). Runs in a worker
    process when the panel runs jobs in parallel, hence the thread setting here."""
    import torch

    torch.set_num_threads(threads)
    name, seed = data["name"], data["seed"]
    Xtr, ytr, Xte, yte = data["Xtr"], data["ytr"], data["Xte"], data["yte"]
    params = {**config, **data["fit_kwargs"], "random_state": seed}
    if params.get("image_shape") == "case":
        if data["image_shape"] is None:
            return None
        params["image_shape"] = data["image_shape"]
    entry = {"params": {k: v for k, v in params.items() if k != "random_state"}}
    try:
        model, info = fit_model(params, Xtr, ytr)
        entry.update(info)
        entry.update(code_metrics(model, Xte, yte, data["truth"]))
        if data["attributes"]:
            per = attribute_metrics(model, Xte, yte, data["attributes"])
            entry["attribute_auc"] = per
            entry["attr_private_better"] = sum(v["private"] > v["shared"] for v in per.values())
            entry["attr_n"] = len(per)
            entry["attr_auc_private"] = _mean([v["private"] for v in per.values()])
            entry["attr_auc_shared"] = _mean([v["shared"] for v in per.values()])
        if data["scales"]:
            entry["scale_check_acc"] = {"x1": entry["predict_acc"]}
            for tname in data["scales"]:
                if tname == "x1":
                    continue
                m2, info2 = fit_model(params, _transform_X(Xtr, tname), ytr)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    acc = float(np.mean(m2.predict(_transform_X(Xte, tname)) == yte))
                entry["scale_check_acc"][tname] = acc
                entry.setdefault("scale_check_fit_s", {})[tname] = info2["fit_s"]
                entry.setdefault("scale_check_n_iter", {})[tname] = info2["n_iter"]
    except Exception as exc:  # record and go on with the other configs
        entry["error"] = f"{type(exc).__name__}: {exc}"
    print(
        f"  {name} seed={seed} {cname}: fit {entry.get('fit_s')} s, "
        f"predict {entry.get('predict_acc')}",
        flush=True,
    )
    return entry


def run_panel(cases, mode, seeds, configs, threads=1, jobs=1):
    """Every case, seed and configuration; ``jobs`` fits run in parallel processes.

    Returns ``(records, skipped)``. Each fit is seeded by its case's seed alone, so the
    records do not depend on ``jobs``; the order of configurations in a record is the
    order of ``configs``."""
    from joblib import Parallel, delayed

    prepared, skipped = [], {}
    for name in cases:
        for seed in seeds:
            try:
                prepared.append(prepare_case(name, mode, seed))
            except Skip as exc:
                print(f"  skip {name}: {exc}", flush=True)
                skipped[name] = str(exc)
                break
    tasks = [(i, c) for i in range(len(prepared)) for c in configs]
    entries = Parallel(n_jobs=jobs)(
        delayed(run_config)(prepared[i][1], c, CONFIGS[c], threads) for i, c in tasks
    )
    for (i, cname), entry in zip(tasks, entries):
        if entry is not None:
            prepared[i][0]["configs"][cname] = entry
    return [record for record, _ in prepared], skipped


# ----------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------
TABLE_ROWS = [
    ("predict_acc", "predict acc"),
    ("predict_balanced_acc", "predict balanced acc"),
    ("heldout_loglik", "held-out loglik"),
    ("active_shared", "active shared units"),
    ("active_private", "active private units"),
    ("r2_shared_from_shared", "R2 shared<-shared"),
    ("r2_private_from_private", "R2 private<-private"),
    ("ari_private", "ARI private"),
    ("ari_shared", "ARI shared"),
    ("leak_pop_acc_shared", "leak: pop acc<-shared"),
    ("leak_pop_acc_shared_active", "  from active units"),
    ("leak_pop_acc_shared_draw", "  from a draw of z"),
    ("leak_r2_shared_from_private", "leak: R2 shared<-private"),
    ("r2_private_from_shared", "leak: R2 private<-shared"),
    ("bio_probe_acc_shared", "bio probe acc<-shared"),
    ("bio_silhouette_shared", "bio silhouette shared"),
    ("attr_auc_private", "pop attrs AUC<-private"),
    ("attr_auc_shared", "pop attrs AUC<-shared"),
    ("attr_private_better", "pop attrs private>shared"),
    ("fit_s", "fit s"),
    ("n_iter", "epochs"),
]


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) >= 1000 else f"{v:.3f}"
    return str(v)


def _agg(values):
    values = [v for v in values if isinstance(v, (int, float)) and v is not None]
    return float(np.mean(values)) if values else None


def table(records, configs):
    """Configs side by side per case and metric (means over seeds)."""
    lines = []
    by_case = {}
    for r in records:
        by_case.setdefault(r["case"], []).append(r)
    width = max(12, *(len(c) for c in configs))
    for case, recs in by_case.items():
        b = recs[0]["baselines"]
        seeds = [r["seed"] for r in recs]
        lines.append(
            f"\n== {case}  (n_train={recs[0]['n_train']}, n_test={recs[0]['n_test']}, "
            f"D={recs[0]['n_features']}, K={len(recs[0]['populations'])}, seeds={seeds})"
        )
        lines.append(
            f"{'metric':28s}" + "".join(f"{c:>{width + 2}s}" for c in configs) + "   reference"
        )
        for key, label in TABLE_ROWS:
            vals = [_agg([r["configs"].get(c, {}).get(key) for r in recs]) for c in configs]
            if all(v is None for v in vals):
                continue
            ref = ""
            if key == "predict_acc":
                ref = "LDA {} QDA {} LR {}".format(
                    *(
                        _fmt(_agg([r["baselines"][k] for r in recs]))
                        for k in ("lda_acc", "qda_acc", "logreg_acc")
                    )
                )
            elif key == "leak_pop_acc_shared":
                chance = [r["configs"].get(c, {}).get("pop_chance") for r in recs for c in configs]
                ref = f"chance {_fmt(_agg(chance))}"
                if "pca_centred_leak_pop_acc" in b:
                    pca = _agg([r["baselines"]["pca_centred_leak_pop_acc"] for r in recs])
                    ref += f", centred PCA {_fmt(pca)}"
            elif key == "bio_probe_acc_shared" and "pca_centred_bio_probe_acc" in b:
                pca = _agg([r["baselines"]["pca_centred_bio_probe_acc"] for r in recs])
                ref = f"centred PCA {_fmt(pca)}, chance {_fmt(b.get('bio_chance'))}"
            elif key == "bio_silhouette_shared" and "pca_centred_bio_silhouette" in b:
                pca = _agg([r["baselines"]["pca_centred_bio_silhouette"] for r in recs])
                ref = f"centred PCA {_fmt(pca)}"
            lines.append(
                f"{label:28s}"
                + "".join(f"{_fmt(v):>{width + 2}s}" for v in vals)
                + (f"   {ref}" if ref else "")
            )
        if "scale_check_lda" in recs[0]:
            for tname in recs[0]["scale_check_lda"]:
                vals = [
                    _agg(
                        [
                            r["configs"].get(c, {}).get("scale_check_acc", {}).get(tname)
                            for r in recs
                        ]
                    )
                    for c in configs
                ]
                lda = _agg([r["scale_check_lda"][tname] for r in recs])
                lines.append(
                    f"{'predict acc, X ' + tname:28s}"
                    + "".join(f"{_fmt(v):>{width + 2}s}" for v in vals)
                    + f"   LDA {_fmt(lda)}"
                )
                its = [
                    _agg(
                        [
                            r["configs"].get(c, {}).get("scale_check_n_iter", {}).get(tname)
                            for r in recs
                        ]
                    )
                    for c in configs
                ]
                lines.append(
                    f"{'  epochs, X ' + tname:28s}"
                    + "".join(f"{_fmt(v):>{width + 2}s}" for v in its)
                )
        for c in configs:
            for r in recs:
                e = r["configs"].get(c, {})
                if "error" in e or "diverged" in e:
                    lines.append(
                        f"  ! {c} seed {r['seed']}: {e.get('error') or e.get('diverged')}"
                    )
    return "\n".join(lines)


# Targets checked per case: (name, applies(record), value(entry, record),
# bound(entry, record, configs' entries)).
def _chance_plus(e, r, _):
    return e.get("pop_chance") + 0.1 if e.get("pop_chance") is not None else None


TARGETS = [
    (
        "predict acc >= LDA - 0.01",
        lambda r: True,
        lambda e, r: e.get("predict_acc"),
        lambda e, r, _: r["baselines"]["lda_acc"] - 0.01,
    ),
    (
        "predict acc >= 0.90",
        lambda r: r["case"].startswith("celeba"),
        lambda e, r: e.get("predict_acc"),
        lambda e, r, _: 0.90,
    ),
    (
        "scale/shift: max |acc - acc(X)| <= 0.01",
        lambda r: "scale_check_lda" in r,
        lambda e, r: (
            -max(
                abs(v - e["scale_check_acc"]["x1"])
                for v in e.get("scale_check_acc", {"x1": 0}).values()
            )
        ),
        lambda e, r, _: -0.01,
    ),
    (
        "both spaces in use (active units)",
        lambda r: r.get("has_shared_and_private", False) and r.get("private_variation", True),
        lambda e, r: min(e.get("active_shared", 0), e.get("active_private") or 0),
        lambda e, r, _: 1,
    ),
    (
        "shared space in use (active units)",
        lambda r: r.get("biology_case", False),
        lambda e, r: e.get("active_shared"),
        lambda e, r, _: 1,
    ),
    (
        "leak all units <= chance + 0.1",
        lambda r: r.get("private_only", False) or r.get("biology_case", False),
        lambda e, r: -e.get("leak_pop_acc_shared", 1.0),
        lambda e, r, by: -_chance_plus(e, r, by),
    ),
    (
        "leak active units <= chance + 0.1",
        lambda r: r.get("private_only", False) or r.get("biology_case", False),
        lambda e, r: (
            None
            if e.get("leak_pop_acc_shared_active") is None
            else -e["leak_pop_acc_shared_active"]
        ),
        lambda e, r, by: -_chance_plus(e, r, by),
    ),
    (
        "leak draw of z <= chance + 0.1",
        lambda r: r.get("private_only", False) or r.get("biology_case", False),
        lambda e, r: -e.get("leak_pop_acc_shared_draw", 1.0),
        lambda e, r, by: -_chance_plus(e, r, by),
    ),
    (
        "ARI private >= ELBO's",
        lambda r: (
            r.get("private_variation", True)
            and "elbo" in r["configs"]
            and "ari_private" in r["configs"]["elbo"]
        ),
        lambda e, r: e.get("ari_private"),
        lambda e, r, by: by["elbo"].get("ari_private"),
    ),
    (
        "common sub-groups: ARI shared >= private",
        lambda r: not r.get("private_variation", True),
        lambda e, r: e.get("ari_shared"),
        lambda e, r, _: e.get("ari_private"),
    ),
    (
        "bio probe >= centred PCA's",
        lambda r: r.get("biology_case", False),
        lambda e, r: e.get("bio_probe_acc_shared"),
        lambda e, r, _: r["baselines"].get("pca_centred_bio_probe_acc"),
    ),
    (
        "pop attrs read better from private",
        lambda r: "attr_n" in next(iter(r["configs"].values()), {}),
        lambda e, r: e.get("attr_private_better"),
        lambda e, r, _: e.get("attr_n"),
    ),
]


def target_table(records, configs):
    """Each target, case and configuration: met (value >= bound) or missed, per seed.

    Bounds written as 'x <= b' are checked as -x >= -b and printed as x."""
    lines = ["\n== targets (value per seed; * = missed; - = not measurable, e.g. no active unit)"]
    width = max(14, *(len(c) for c in configs))
    lines.append(f"{'case':24s}{'target':40s}" + "".join(f"{c:>{width + 2}s}" for c in configs))
    by_case = {}
    for r in records:
        by_case.setdefault(r["case"], []).append(r)
    n_met = n_all = 0
    for case, recs in by_case.items():
        for name, applies, value, bound in TARGETS:
            if not applies(recs[0]):
                continue
            cells = []
            for c in configs:
                parts = []
                for r in recs:
                    e = r["configs"].get(c, {})
                    try:
                        v, b = value(e, r), bound(e, r, r["configs"])
                    except (KeyError, TypeError, AttributeError, StopIteration):
                        v, b = None, None
                    if v is None or b is None:
                        parts.append("-")
                        continue
                    ok = v >= b - 1e-9
                    n_met, n_all = n_met + ok, n_all + 1
                    shown = abs(v) if name.startswith(("leak", "scale")) else v
                    parts.append(f"{shown:.3g}" + ("" if ok else "*"))
                cells.append(",".join(parts))
            lines.append(
                f"{case:24s}{name:40s}" + "".join(f"{cell:>{width + 2}s}" for cell in cells)
            )
    lines.append(f"targets met: {n_met} of {n_all} (case x target x config x seed)")
    return "\n".join(lines)


def environment():
    import sklearn
    import torch

    import sklearn_cpvae

    def git(*args):
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout.strip()
        except Exception:
            return None

    return {
        "sklearn_cpvae": sklearn_cpvae.__version__,
        "sklearn_cpvae_file": sklearn_cpvae.__file__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "commit": git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "shared_data": str(shared_data_dir()),
    }


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def retabulate(path):
    """Recompute a results file's tables from its records: the targets and where they apply
    may change after a run, the measurements do not. Each record's case flags are rebuilt
    from its case's definition (the builders are deterministic in mode and seed)."""
    result = json.loads(path.read_text())
    for r in result["records"]:
        r.update(case_flags(CASES[r["case"]][0](result["mode"], r["seed"])))
    configs = list(result["configs"])
    text = table(result["records"], configs) + "\n" + target_table(result["records"], configs)
    print(text)
    result["table"] = text
    path.write_text(json.dumps(result, indent=1, default=_json_default))
    print(f"rewrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode.add_argument("--full", action="store_const", dest="mode", const="full")
    parser.add_argument("--configs", nargs="+", default=None, choices=sorted(CONFIGS))
    parser.add_argument("--cases", nargs="+", default=None, choices=sorted(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fit (default 1)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="fits run in parallel processes (default: one per core)",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--retabulate",
        type=Path,
        default=None,
        metavar="FILE",
        help="print and rewrite FILE's tables from its records with the current targets",
    )
    args = parser.parse_args(argv)
    if args.retabulate is not None:
        retabulate(args.retabulate)
        return
    mode = args.mode or "quick"
    configs = args.configs or list(DEFAULT_CONFIGS)
    cases = args.cases or [c for c, (_, modes, _) in CASES.items() if mode in modes]
    seeds = args.seeds or ([0] if mode == "quick" else [0, 1, 2])
    out = args.out or RESULTS / f"panel_{mode}.json"

    start = time.perf_counter()
    print(f"quality panel ({mode}): {configs}, seeds {seeds}, jobs {args.jobs}", flush=True)
    records, skipped = run_panel(cases, mode, seeds, configs, args.threads, args.jobs)
    wall = time.perf_counter() - start
    text = table(records, configs) + "\n" + target_table(records, configs)
    print(text)
    print(f"\nwall time {wall:.0f} s")
    result = {
        "mode": mode,
        "configs": {c: CONFIGS[c] for c in configs},
        "cases": cases,
        "seeds": seeds,
        "jobs": args.jobs,
        "skipped": skipped,
        "records": records,
        "wall_s": round(wall, 1),
        "environment": environment(),
        "argv": sys.argv[1:],
        "table": text,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=_json_default))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
