"""How much a quality-panel case's sub-group and factor metrics move with the model seed alone.

Fits each configuration of ``benchmarks.quality.panel.CONFIGS`` on one panel case (data and
split of seed 0) with several ``random_state`` values, and prints per fit the private and
shared sub-group ARI and the shared factors' R^2 from each space (each population with at
least 10 held-out rows), and the last epoch's KL and MI terms (nats per row): whether a
difference between two configurations in a one-seed panel run exceeds what the seed
alone does.

    python -m benchmarks.diagnostics.seed_spread --case syn_lin_K2_unbalanced100 \\
        --configs elbo_std new_defaults --seeds 0 1 2 3
"""

import argparse
import time
import warnings

import numpy as np
import torch

from benchmarks import _common as C
from benchmarks.quality.panel import CASES, CONFIGS, _ari, _r2_probe, _split
from sklearn_cpvae import CPVAE


def one_fit(case, tr, te, params, seed):
    X, y = np.asarray(case["X"], float), np.asarray(case["y"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**{**params, **case.get("fit_kwargs", {}), "random_state": seed})
        model.fit(X[tr], y[tr])
    codes = model.transform(X[te], populations=y[te])
    S, P = codes[:, : model.n_shared], codes[:, model.n_shared :]
    sg, sf, g = np.asarray(case["subgroups"])[te], np.asarray(case["shared_factors"])[te], 3
    out = {"seed": seed, "per_population": {}}
    for k in np.unique(y):
        r = y[te] == k
        if r.sum() < 10:
            continue
        out["per_population"][str(k)] = {
            "ari_private": _ari(P[r], sg[r], g),
            "ari_shared": _ari(S[r], sg[r], g),
            "r2_shared_from_shared": _r2_probe(S[r], sf[r]),
            "r2_shared_from_private": _r2_probe(P[r], sf[r]),
        }
    last = model.history_[-1]
    out["last_epoch"] = {t: last.get(t) for t in ("kl_shared", "kl_private", "mi", "recon")}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="syn_lin_K2_unbalanced100", choices=sorted(CASES))
    p.add_argument("--configs", nargs="+", default=["elbo_std", "new_defaults"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    case = CASES[args.case][0]("quick", 0)
    tr, te = _split(case, 0)
    start = time.perf_counter()
    runs = {}
    for name in args.configs:
        runs[name] = []
        for seed in args.seeds:
            r = one_fit(case, tr, te, CONFIGS[name], seed)
            runs[name].append(r)
            pops = "; ".join(
                f"pop {k}: ARI private {v['ari_private']:.3f} shared {v['ari_shared']:.3f}, "
                f"R2 shared factors <- shared {v['r2_shared_from_shared']:.2f} "
                f"<- private {v['r2_shared_from_private']:.2f}"
                for k, v in r["per_population"].items()
            )
            t = r["last_epoch"]
            print(
                f"{name} seed {seed} | {pops} | kl_shared {t['kl_shared']:.2f} "
                f"kl_private {t['kl_private']:.2f} mi {t['mi']:.2f}",
                flush=True,
            )
    wall = time.perf_counter() - start
    for name, rs in runs.items():
        for k in rs[0]["per_population"]:
            a = [r["per_population"][k]["ari_private"] for r in rs]
            print(
                f"{name} pop {k}: private ARI mean {np.mean(a):.3f}, "
                f"range {min(a):.3f}-{max(a):.3f}"
            )
    C.write_result(
        f"seed_spread_{args.case}_{'_'.join(args.configs)}",
        {
            "args": vars(args),
            "runs": runs,
            "wall_seconds": round(wall, 1),
            "hardware": C.hardware(),
        },
    )


if __name__ == "__main__":
    main()
