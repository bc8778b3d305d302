"""Table 1's full-size alpha = 1 fit, with every epoch's terms and the codes' scale at the end.

Seed 2 of this fit diverges at epoch 98 with one torch thread (docs/reproduction.md). This
script refits it verbosely and prints, at the weights the estimator keeps, the noise
variance Psi and the size of the codes on the first 20,000 training rows: eq. 4 puts no KL
on a population's own private code, so nothing bounds its mean or keeps its variance off
the floor.

    OMP_NUM_THREADS=1 python -m benchmarks.diagnostics.diagnose_divergence --seeds 2 --threads 1

``--table2-epochs E [E ...]`` measures Table 2's full-size Grassy-MNIST alpha = 1 fit (one
population per digit) instead, stopped after each E epochs: on CPU a fit with
``max_iter=E`` holds exactly the weights of epoch E of a longer one, so epochs before and
after the MI term's breakdown can be compared.
"""

import warnings

import torch
from sklearn.exceptions import ConvergenceWarning

from benchmarks import _common as C
from benchmarks.paper import table1_subgroups as T1
from benchmarks.paper import table2_classification as T2
from sklearn_cpvae import TrainingDivergedError


def code_scale(model, X, pops):
    """Norms of the posterior means and the smallest log-variances of the codes."""
    module = model.module_
    x = torch.as_tensor(X, dtype=torch.float32)
    with torch.inference_mode():
        mu_t, lv_t = module.encode_private_all(x)
        mu_z, _ = module.encode_shared(x)
    p = torch.as_tensor(pops)
    own = mu_t[p, torch.arange(len(p))].norm(dim=1)
    out = {
        "log_psi": float(module.log_psi.detach()),
        "own_private_norm": {
            "median": float(own.median()),
            "p99": float(own.quantile(0.99)),
            "max": float(own.max()),
        },
        "private_logvar": {"min": float(lv_t.min()), "median": float(lv_t.median())},
        "shared_norm": {"median": float(mu_z.norm(dim=1).median())},
    }
    for k in range(mu_t.shape[0]):
        other = mu_t[k][p != k].norm(dim=1)
        out[f"encoder_{k}_on_others_norm"] = {
            "median": float(other.median()),
            "max": float(other.max()),
        }
    return out


def main():
    args = C.parse_args(
        __doc__.splitlines()[0],
        lambda p: p.add_argument(
            "--table2-epochs",
            type=int,
            nargs="+",
            default=None,
            help="Table 2's Grassy-MNIST alpha = 1 fit, stopped after each of these epochs",
        ),
    )
    if args.table2_epochs:
        cfg = dict(T2.FULL)
        X, y, _, _, _ = T2.load("grassy_mnist", cfg)
        train, config = (X, y), cfg
        fits = [(seed, e) for seed in args.seeds for e in args.table2_epochs]
    else:
        train, _, _ = T1.prepare(T1.FULL)
        config = T1.FULL
        fits = [(seed, None) for seed in args.seeds]
    rows = []
    for seed, epochs in fits:
        if epochs is None:
            model = T1.make_models(T1.FULL, seed, args.device, names=("alpha1",))["alpha1"]
        else:
            model = T2.make_cpvae("alpha1", "gaussian", config, seed, args.device, max_iter=epochs)
        model.set_params(verbose=2)  # one log line per epoch
        rec = {"seed": seed, "epochs": epochs, "diverged": None}
        with C.Timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                model.fit(train[0], train[1])
            except TrainingDivergedError as exc:
                rec["diverged"] = {"term": exc.term, "epoch": exc.epoch, "message": str(exc)}
        rec.update(
            fit_seconds=t.seconds,
            history=model.history_,
            **code_scale(model, train[0][:20000], train[1][:20000]),
        )
        print({k: v for k, v in rec.items() if k != "history"}, flush=True)
        rows.append(rec)
    C.write_result(
        "diagnose_divergence", {"config": config, "rows": rows, "hardware": C.hardware()}, args.tag
    )


if __name__ == "__main__":
    main()
