"""Where Table 1's digits go (shared z or private t), and what each term charges for it.

Fits the alpha = 1 CPVAE of Table 1 (``benchmarks.paper.table1_subgroups``) on a
Grassy-MNIST subset under several configurations (``LEVERS``: keyword arguments added to
the variant's), and reports for each: shared / private ARI of the digits (KMeans on
each population's held-out codes), active units, and the per-data-point value of every
term of the objective on the held-out rows, in nats, measured on the fitted networks with
the exact MI term: ``kl_z`` = KL(q(z|x) || N(0, I)), ``kl_t_own`` = KL(q_k(t|x) || N(0, I))
of each row's own encoder, ``mi`` = the last sum of eq. 4 (other populations' encoders on
the row), ``recon`` = E_q log p(x | z, t) (one sample; in the model's units, so it
compares across configurations with the same ``standardize`` only); and ``mmd2_test``,
the populations' MMD^2 on the held-out shared posterior means with the median and the
multi-scale kernel (:func:`shared_mmd`); ``probe_test``, the population leakage: the
cross-validated balanced accuracy of a linear probe of the population on the held-out
shared posterior means (:func:`~sklearn_cpvae.diagnostics.linear_probe`, chance 0.5),
from every unit and from the active ones (:func:`shared_probe`).

``--cross`` also scores every fitted model under the ``elbo_mi`` and ``paper`` objectives
(``loss_elbo_mi`` / ``loss_paper``): whether a solution the optimiser did not reach is
better or worse under the objective that did not reach it.

    python -m benchmarks.diagnostics.table1_levers --n-train 10000 --epochs 40 \
        --levers paper elbo_mi --seeds 0 --out benchmarks/results/diagnostics/table1_levers.json
"""

import argparse
import json
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from benchmarks import _common as C
from benchmarks.paper import table1_subgroups as T1
from sklearn_cpvae import CPVAE
from sklearn_cpvae._objective import batch_terms, mmd_rbf_groups
from sklearn_cpvae.diagnostics import linear_probe

# Lever name -> (objective of the alpha = 1 variant, extra CPVAE keyword arguments).
LEVERS = {
    "paper": ("paper", {}),
    "paper_std": ("paper", {"standardize": True}),
    "elbo_mi": ("elbo_mi", {}),
    "elbo_mi_nostd": ("elbo_mi", {"standardize": False}),
    "elbo_mi_a3": ("elbo_mi", {"mi_weight": 3.0}),
    "elbo_mi_a10": ("elbo_mi", {"mi_weight": 10.0}),
    # the annealed variant of Tables 1-2: alpha rising from 1 to ANNEAL_FINAL over the
    # first ANNEAL_FRACTION of the epochs
    "elbo_mi_anneal": ("elbo_mi", {}, "anneal"),
    "elbo_mi_inv10": ("elbo_mi", {"shared_invariance": 10.0}),
    "elbo_mi_inv100": ("elbo_mi", {"shared_invariance": 100.0}),
    "pkl0.5": ("elbo_mi", {"private_kl_weight": 0.5}),
    "pkl0.2": ("elbo_mi", {"private_kl_weight": 0.2}),
    "pkl0.1": ("elbo_mi", {"private_kl_weight": 0.1}),
    "free20": ("elbo_mi", {"private_free_nats": 20.0}),
    "free50": ("elbo_mi", {"private_free_nats": 50.0}),
    # the own private KL's weight rising from 0 to 1 over the first half of the epochs
    "warm0.5": ("elbo_mi", {"private_kl_warmup": 0.5}),
    "elbo_mi_adv1": ("elbo_mi", {"shared_adversary": 1.0}),
    "elbo_mi_adv10": ("elbo_mi", {"shared_adversary": 10.0}),
    "elbo_mi_adv100": ("elbo_mi", {"shared_adversary": 100.0}),
    "elbo_mi_aligned": ("elbo_mi", {"mi_alignment": "mean"}),
    # an L2 prior on the decoders' weights
    "elbo_mi_dec_wd0.01": ("elbo_mi", {"decoder_weight_decay": 0.01}),
    "elbo_mi_dec_wd0.1": ("elbo_mi", {"decoder_weight_decay": 0.1}),
    # The own private KL's weight falling from 10 to 1 over the first quarter ("shared first").
    "elbo_mi_shared_first10": (
        "elbo_mi",
        {"private_kl_warmup": 0.25, "private_kl_warmup_start": 10.0},
    ),
    "elbo_mi_centred_aligned": (
        "elbo_mi",
        {"shared_centering": "population", "mi_alignment": "mean"},
    ),
}


def model_terms(model, X, pops, objective, chunk=1000):
    """Per-data-point terms of ``objective`` on (X, pops) with the exact MI term."""
    module = model.module_
    x = torch.as_tensor(X, dtype=torch.float32)
    p = torch.as_tensor(model.classes_.searchsorted(pops), dtype=torch.long)
    k = module.n_populations
    counts = torch.bincount(p, minlength=k).to(torch.float32)
    gen = torch.Generator().manual_seed(0)
    sums = dict.fromkeys(("loss", "recon", "kl_z", "kl_t_own", "mi"), 0.0)
    with torch.no_grad():
        for s in range(0, len(x), chunk):
            t = batch_terms(
                module,
                x[s : s + chunk],
                p[s : s + chunk],
                counts,
                counts,
                objective=objective,
                mi_weight=1.0,
                generator=gen,
            )
            for key, val in (
                ("loss", t.loss),
                ("recon", t.recon),
                ("kl_z", t.kl_shared),
                ("kl_t_own", t.kl_private),
                ("mi", t.mi),
            ):
                sums[key] += float(val)
    return sums


def fit_one(name, cfg, seed, train, test, cross):
    objective, extra, *variant = LEVERS[name]
    variant = variant[0] if variant else "alpha1"
    kw = C.variant_params(variant, cfg["max_iter"], objective=objective)
    kw.update(extra)
    model = CPVAE(
        T1.N_SHARED,
        T1.N_PRIVATE,
        batch_size=cfg["batch_size"],
        n_importance_samples=10,
        hidden_layer_sizes=cfg["hidden"],
        max_iter=cfg["max_iter"],
        tol=0.0,
        n_iter_no_change=cfg["max_iter"],
        learning_rate_init=cfg["lr"],
        random_state=seed,
        **kw,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train[0], train[1])
    fit_s = time.perf_counter() - t0
    ev = T1.evaluate("alpha1", model, test)
    rates = model_terms(model, test[0], test[1], "elbo_mi")
    rec = {
        "lever": name,
        "kwargs": kw,
        "seed": seed,
        "fit_seconds": fit_s,
        "shared_ari": ev["shared"]["ari"],
        "private_ari": ev["private"]["ari"],
        "au_shared": ev["au_shared"],
        "au_private": ev["au_private"],
        "grass_r2_shared_only": ev["grass_r2_shared_only"],
        "terms_test": {k: v for k, v in rates.items() if k != "loss"},
        "loss_elbo_mi": rates["loss"],
        "history_last": model.history_[-1],
    }
    if cross:
        rec["loss_paper"] = model_terms(model, test[0], test[1], "paper")["loss"]
    rec["mmd2_test"] = shared_mmd(model, test[0], test[1])
    rec["probe_test"] = shared_probe(model, test[0], test[1])
    return rec


def shared_probe(model, X, pops, active=0.01):
    """Linear-probe balanced accuracy of the population from the shared posterior means
    on (X, pops): from every unit, and from the active units (variance of the means
    above ``active``, the panel's threshold; None when there is none)."""
    mu = model.get_latent_representation(X, pops)
    units = mu.var(0) > active
    return {
        "all": linear_probe(mu, pops),
        "active": linear_probe(mu[:, units], pops) if units.any() else None,
        "n_active": int(units.sum()),
        "chance": 1.0 / len(np.unique(pops)),
    }


def shared_mmd(model, X, pops, seed=0):
    """MMD^2 between the populations' shared posterior means on (X, pops), with the
    single median-bandwidth kernel and with median x {1/4, ..., 4}, and each with the
    population labels permuted (the estimate's value for identical distributions)."""
    p = torch.as_tensor(model.classes_.searchsorted(pops), dtype=torch.long)
    with torch.no_grad():
        x = torch.as_tensor(X, dtype=torch.float32)
        mu, _ = model.module_.encode_shared(x, populations=p)
        perm = p[torch.randperm(len(p), generator=torch.Generator().manual_seed(seed))]
        k = model.module_.n_populations
        out = {}
        for label, scales in (("median", (1.0,)), ("multiscale", (0.25, 0.5, 1.0, 2.0, 4.0))):
            out[label] = float(mmd_rbf_groups(mu, p, k, scales=scales))
            out[f"{label}_permuted"] = float(mmd_rbf_groups(mu, perm, k, scales=scales))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--levers", nargs="+", default=["paper", "elbo_mi"], choices=list(LEVERS))
    p.add_argument("--cross", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dict(
        T1.FULL,
        n_train=args.n_train,
        n_test=args.n_test,
        hidden=(args.hidden,),
        max_iter=args.epochs,
    )
    train, test, _ = T1.prepare(cfg)
    print(f"train {train[0].shape} test {test[0].shape} epochs {args.epochs}", flush=True)
    runs = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        for name in args.levers:
            rec = fit_one(name, cfg, seed, train, test, args.cross)
            runs.append(rec)
            tt = rec["terms_test"]
            line = (
                f"{name:15s} seed {seed} fit {rec['fit_seconds']:6.1f}s  shared ARI "
                f"{rec['shared_ari']:.3f} private ARI {rec['private_ari']:.3f} "
                f"AU {rec['au_shared']}/{rec['au_private']:.1f} | test nats: kl_z "
                f"{tt['kl_z']:.1f} kl_t_own {tt['kl_t_own']:.1f} mi {tt['mi']:.2f} recon "
                f"{tt['recon']:.1f} | loss elbo_mi {rec['loss_elbo_mi']:.1f}"
            )
            if "loss_paper" in rec:
                line += f" paper {rec['loss_paper']:.1f}"
            line += " | MMD2 z (median, multiscale; permuted) " + " ".join(
                f"{v:.4f}" for v in rec["mmd2_test"].values()
            )
            probe = rec["probe_test"]
            active = "-" if probe["active"] is None else f"{probe['active']:.3f}"
            line += f" | probe z all {probe['all']:.3f} active {active}"
            if "adversary" in rec["history_last"]:
                line += f" | adversary CE {rec['history_last']['adversary']:.3f}"
            print(line, flush=True)
    wall = time.perf_counter() - t0
    print(f"wall time {wall:.0f}s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "config": cfg,
                    "runs": runs,
                    "wall_seconds": wall,
                    "threads": args.threads,
                    "hardware": C.hardware(),
                    "commit": C.git_commit(),
                },
                f,
                indent=1,
                default=str,
            )


if __name__ == "__main__":
    main()
