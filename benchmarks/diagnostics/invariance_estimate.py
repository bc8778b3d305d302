"""What the ``shared_invariance`` penalty sees on the shared codes, and what it should see.

On the panel's synthetic cases (``syn_lin_K2_subspace``: populations differ only by
private factors; ``_both``, ``_mean``) and E. coli (5 labs), quick size, split (and for
E. coli standardised) as in ``benchmarks.quality.panel``, for each configuration in
``CONFIGS`` this fits CPVAE and reports on the held-out rows:

* the panel's population probe (standardised logistic regression, cross-validated) from
  the shared posterior means: from all units, from the active ones (variance of the
  means > 0.01), from the collapsed ones, and from one draw z ~ q(z|x); the shared-factor
  R^2 (ridge probe, as in the panel) and ``predict`` accuracy;
* the size of the penalty against the loss terms: the last epoch's per-data-point
  ``recon`` and ``kl_shared``, and MMD^2 of the shared posterior means on training
  minibatches of the fit's size (also with the population labels permuted: the
  estimate's floor) and on the held-out rows, with the single
  median-bandwidth kernel and with the mean of RBF kernels at median x {1/4, 1/2, 1, 2,
  4} (:func:`sklearn_cpvae._objective.mmd_rbf_groups`);
* which directions separate the populations: the Fisher (LDA) direction's share of the
  shared codes' total variance and the populations' standardised distance along it.

Configurations ``*_multiscale`` and ``*_standardised`` fit with a candidate estimate of
the penalty swapped in for CPVAE's (:func:`penalty_estimate`).

    python -m benchmarks.diagnostics.invariance_estimate --seeds 0 1 \
        --cases syn_lin_K2_subspace syn_lin_K2_both syn_lin_K2_mean \
        --out benchmarks/results/diagnostics/invariance_estimate.json
"""

import argparse
import contextlib
import json
import time

import numpy as np
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.preprocessing import StandardScaler

from benchmarks._common import git_commit, hardware
from benchmarks.quality.panel import CASES, _class_probe, _r2_probe, _split
from sklearn_cpvae import CPVAE
from sklearn_cpvae import _objective as objective_module
from sklearn_cpvae._objective import mmd_rbf_groups

# Config name -> (CPVAE keyword arguments, estimate of the penalty during the fit).
# "median" is the estimate CPVAE uses; "multiscale" and "standardised" are candidates
# swapped in for the fit only (see ``ESTIMATES``), to measure them before adopting one.
CONFIGS = {
    "default": ({}, "median"),
    "inv10": ({"shared_invariance": 10.0}, "median"),
    "inv100": ({"shared_invariance": 100.0}, "median"),
    "inv10_multiscale": ({"shared_invariance": 10.0}, "multiscale"),
    "inv10_standardised": ({"shared_invariance": 10.0}, "standardised"),
    "inv100_standardised": ({"shared_invariance": 100.0}, "standardised"),
    "adv1": ({"shared_adversary": 1.0}, "median"),
    "adv10": ({"shared_adversary": 10.0}, "median"),
    "adv100": ({"shared_adversary": 100.0}, "median"),
}
CASE_NAMES = ("syn_lin_K2_subspace", "syn_lin_K2_both", "syn_lin_K2_mean", "ecoli_5labs")
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def _multiscale(codes, populations, n_groups):
    return mmd_rbf_groups(codes, populations, n_groups, scales=SCALES)


def _standardised(codes, populations, n_groups):
    # Each unit divided by its minibatch standard deviation (detached), so a unit whose
    # posterior means barely vary weighs as much in the distances as an active one.
    return mmd_rbf_groups(codes / codes.detach().std(0).clamp_min(1e-4), populations, n_groups)


ESTIMATES = {"median": mmd_rbf_groups, "multiscale": _multiscale, "standardised": _standardised}


@contextlib.contextmanager
def penalty_estimate(name):
    """Fit with the penalty estimated by ``ESTIMATES[name]`` instead of CPVAE's own."""
    saved = objective_module.mmd_rbf_groups
    objective_module.mmd_rbf_groups = ESTIMATES[name]
    try:
        yield
    finally:
        objective_module.mmd_rbf_groups = saved


def minibatch_mmd(module, X, y, batch, scales, n_batches, seed):
    """Mean over random minibatches (the fit's: ``batch`` rows of each population) of
    MMD^2 on the shared posterior means, and the same with the population labels
    permuted within each minibatch: the estimate's value when the groups are identically
    distributed, which is not 0 (the plug-in estimate is biased upwards)."""
    rng = np.random.default_rng(seed)
    k = int(y.max()) + 1
    vals, floor = [], []
    with torch.no_grad():
        for _ in range(n_batches):
            rows = np.concatenate(
                [
                    rng.choice(idx, min(batch, len(idx)), replace=False)
                    for idx in (np.flatnonzero(y == j) for j in range(k))
                ]
            )
            x = torch.as_tensor(X[rows], dtype=torch.float32)
            mu, _ = module.encode_shared(x)
            pops = torch.as_tensor(y[rows])
            vals.append(float(mmd_rbf_groups(mu, pops, k, scales=scales)))
            shuffled = torch.as_tensor(rng.permutation(y[rows]))
            floor.append(float(mmd_rbf_groups(mu, shuffled, k, scales=scales)))
    return float(np.mean(vals)), float(np.mean(floor))


def separation(S, y):
    """Which directions of the shared codes separate the populations.

    The Fisher (LDA) first direction's share of the codes' total variance and the
    standardised mean difference of the populations along it; for two populations also
    the standardised mean difference of each active unit.
    """
    w = LinearDiscriminantAnalysis().fit(S, y).scalings_[:, 0]
    w = w / np.linalg.norm(w)
    proj = S @ w
    groups = [proj[y == j] for j in np.unique(y)]
    spread = np.sqrt(np.mean([g.var() for g in groups]))
    out = {
        "fisher_direction_variance_share": float(proj.var() / S.var(0).sum()),
        "fisher_direction_std_mean_diff": float(np.ptp([g.mean() for g in groups]) / spread),
    }
    active = S.var(0) > 0.01
    if len(groups) == 2:
        a, b = S[y == 0], S[y == 1]
        d = (a.mean(0) - b.mean(0)) / (np.sqrt(0.5 * (a.var(0) + b.var(0))) + 1e-12)
        out["std_mean_diff_active_units"] = [round(float(v), 3) for v in d[active]]
    return out


def probes(mu, logvar, y, seed):
    """Population probes from all shared units, the active ones, the collapsed ones, and
    from one draw of z ~ q(z|x) (what the model itself says a code carries)."""
    active = mu.var(0) > 0.01
    z = mu + np.exp(0.5 * logvar) * np.random.default_rng(seed).standard_normal(mu.shape)
    nan = float("nan")
    return {
        "pop_probe_acc_shared": _class_probe(mu, y)[0],
        "pop_probe_acc_active_units": _class_probe(mu[:, active], y)[0] if active.any() else nan,
        "pop_probe_acc_collapsed_units": _class_probe(mu[:, ~active], y)[0]
        if (~active).any()
        else nan,
        "pop_probe_acc_sampled_z": _class_probe(z, y)[0],
        "pop_chance": _class_probe(mu, y)[1],
        "active_shared": int(active.sum()),
        "collapsed_median_var_of_means": float(np.median(mu.var(0)[~active]))
        if (~active).any()
        else nan,
        "collapsed_median_posterior_var": float(np.median(np.exp(logvar[:, ~active])))
        if (~active).any()
        else nan,
    }


def run(case_name, params, estimate, seed):
    case = CASES[case_name][0]("quick", seed)
    X, y_raw = np.asarray(case["X"], float), np.asarray(case["y"])
    tr, te = _split(case, seed)
    if case.get("standardise"):
        X = StandardScaler().fit(X[tr]).transform(X)
    model = CPVAE(**{**params, **case.get("fit_kwargs", {})}, random_state=seed)
    with penalty_estimate(estimate):
        model.fit(X[tr], y_raw[tr])
    y = np.searchsorted(model.classes_, y_raw)
    k = len(model.classes_)
    module = model.module_.eval()
    with torch.no_grad():
        mu, lv = module.encode_shared(torch.as_tensor(X[te], dtype=torch.float32))
    mu, lv = mu.numpy().astype(float), lv.numpy().astype(float)
    last = model.history_[-1]
    out = {
        "fit_epochs": int(model.n_iter_),
        **probes(mu, lv, y[te], seed),
        "last_epoch_terms": {
            t: last.get(t) for t in ("loss", "recon", "kl_shared", "kl_private", "mi", "adversary")
        },
        "predict_acc": float(np.mean(model.predict(X[te]) == y_raw[te])),
    }
    if "shared_factors" in case:
        out["r2_shared_from_shared"] = _r2_probe(mu, np.asarray(case["shared_factors"])[te])
    for label, scales in (("median", (1.0,)), ("multiscale", SCALES)):
        observed, permuted = minibatch_mmd(
            module, X[tr], y[tr], model.batch_size, scales, 20, seed
        )
        out[f"mmd2_train_minibatch_{label}"] = observed
        out[f"mmd2_train_minibatch_{label}_permuted"] = permuted
        out[f"mmd2_heldout_{label}"] = float(
            mmd_rbf_groups(
                torch.as_tensor(mu, dtype=torch.float32), torch.as_tensor(y[te]), k, scales=scales
            )
        )
    out.update(separation(mu, y[te]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=list(CASE_NAMES), choices=list(CASES))
    p.add_argument(
        "--configs", nargs="+", default=["default", "inv10", "inv100"], choices=list(CONFIGS)
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = {
        "scales": SCALES,
        "configs": {c: {"params": CONFIGS[c][0], "estimate": CONFIGS[c][1]} for c in args.configs},
        "runs": [],
    }
    for case_name in args.cases:
        for seed in args.seeds:
            for cname in args.configs:
                r = run(case_name, *CONFIGS[cname], seed)
                result["runs"].append({"case": case_name, "seed": seed, "config": cname, **r})
                t = r["last_epoch_terms"]
                print(
                    f"{case_name} s{seed} {cname:7s} probe all/active/collapsed/sampled "
                    f"{r['pop_probe_acc_shared']:.2f}/{r['pop_probe_acc_active_units']:.2f}/"
                    f"{r['pop_probe_acc_collapsed_units']:.2f}/{r['pop_probe_acc_sampled_z']:.2f} "
                    f"(chance {r['pop_chance']:.2f}) active {r['active_shared']} "
                    f"R2 {r.get('r2_shared_from_shared', float('nan')):.2f} "
                    f"pred {r['predict_acc']:.2f} recon {t['recon']:.2f} "
                    f"kl_z {t['kl_shared']:.2f} MMD2 median/multiscale train "
                    f"{r['mmd2_train_minibatch_median']:.4f}/"
                    f"{r['mmd2_train_minibatch_multiscale']:.4f} (permuted labels "
                    f"{r['mmd2_train_minibatch_median_permuted']:.4f}/"
                    f"{r['mmd2_train_minibatch_multiscale_permuted']:.4f}) held-out "
                    f"{r['mmd2_heldout_median']:.4f}/{r['mmd2_heldout_multiscale']:.4f} "
                    f"Fisher dir var share {r['fisher_direction_variance_share']:.1e} "
                    f"d {r['fisher_direction_std_mean_diff']:.1f}",
                    flush=True,
                )
                if args.out:  # after every fit, so an interrupted run keeps its results
                    with open(args.out, "w") as f:
                        json.dump(result, f, indent=1)
    result.update(wall_seconds=time.perf_counter() - t0, commit=git_commit(), hardware=hardware())
    print(f"wall {result['wall_seconds']:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
