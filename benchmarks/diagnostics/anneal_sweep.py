"""Choose the annealed variant's schedule on a validation split (never the test set).

Appendix A only says "begin with alpha = 1 and gradually anneal" (alpha >= 1). With
``mi_anneal_epochs = ANNEAL_FRACTION * max_iter`` fixed, this fits CPVAE on 80 % of the
Grassy-MNIST training rows of Table 1's quick configuration for several final alphas and
scores the other 20 %: population accuracy of ``predict`` (both private priors), private
and shared ARI, and active units.

    python -m benchmarks.diagnostics.anneal_sweep --quick --alphas 1 3 10 30
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from benchmarks import _common as C
from benchmarks.paper import table1_subgroups as T1
from sklearn_cpvae import CPVAE


def extra(parser):
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 3.0, 10.0, 30.0])
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[C.ANNEAL_FRACTION],
        help="shares of the epochs over which alpha rises from 1",
    )


def main():
    args = C.parse_args(__doc__.splitlines()[0], extra)
    cfg = T1.QUICK if args.quick else T1.FULL
    train, _, _ = T1.prepare(cfg)
    X, pops = train[:2]
    idx_tr, idx_va = train_test_split(
        np.arange(len(X)), test_size=0.2, stratify=pops, random_state=0
    )
    val = tuple(a[idx_va] for a in train)
    rows = []
    with C.Timer() as wall:
        grid = [(a, f) for a in args.alphas for f in (args.fractions if a != 1 else [0.0])]
        for alpha, fraction in grid:
            for seed in args.seeds:
                ramp = max(1, int(round(fraction * cfg["max_iter"])))
                model = CPVAE(
                    T1.N_SHARED,
                    T1.N_PRIVATE,
                    hidden_layer_sizes=cfg["hidden"],
                    max_iter=cfg["max_iter"],
                    tol=0.0,
                    n_iter_no_change=cfg["max_iter"],
                    batch_size=cfg["batch_size"],
                    learning_rate_init=cfg["lr"],
                    objective="paper",
                    mi_weight=alpha,
                    mi_anneal_epochs=ramp if alpha != 1 else 0,
                    n_importance_samples=10,
                    priors="uniform",
                    device=args.device,
                    random_state=seed,
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(X[idx_tr], pops[idx_tr])
                rec = {
                    "alpha_final": alpha,
                    "anneal_fraction": fraction,
                    "ramp_epochs": ramp if alpha != 1 else 0,
                    "seed": seed,
                }
                for prior in ("standard", "aggregate"):
                    model.set_params(private_prior=prior)
                    rec[f"val_accuracy_{prior}"] = float(np.mean(model.predict(val[0]) == val[1]))
                rec.update(T1.evaluate("cpvae", model, val))
                rows.append(rec)
                print(
                    f"alpha {alpha:5.2f} ramp {fraction:.2f} seed {seed}: acc std "
                    f"{rec['val_accuracy_standard']:.3f} agg {rec['val_accuracy_aggregate']:.3f}"
                    f"  {T1._line(rec)}",
                    flush=True,
                )
    C.write_result(
        "anneal_sweep" + ("_quick" if args.quick else ""),
        {
            "config": cfg,
            "mode": "quick" if args.quick else "full",
            "device": args.device,
            "rows": rows,
            "wall_seconds": wall.seconds,
            "hardware": C.hardware(),
        },
        args.tag,
    )


if __name__ == "__main__":
    main()
