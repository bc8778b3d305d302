"""Fit quality of the sub-sampled MI estimator (``mi_samples=m``) against the exact term.

MNIST with one population per digit (K = 10, the paper's Table 2 setting): test accuracy
of ``predict`` (Table 2's metric, uniform priors) and the adjusted Rand index of k-means
on the *shared* codes against the digit (Table 1's shared-space column: lower means less
population information leaks into the shared space). Same seeds for every variant.

    python -m benchmarks.perf.mi_quality [--quick]

Needs /work/shared/data/mnist (or ``--data``); writes benchmarks/results/perf/mi_quality.json.
"""

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

from sklearn_cpvae import CPVAE


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/mnist/mnist.npz")
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", default="exact,64,16,4")
    ap.add_argument("--quick", action="store_true", help="2000 rows, 5 epochs, one seed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "bf16"],
        help="training precision (bf16: autocast; measures its effect on fit)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results/perf/mi_quality.json")
    args = ap.parse_args()
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.seeds = 2000, 1000, 5, [0]
    torch.set_num_threads(args.threads)
    d = np.load(args.data)
    x_tr = d["X_train"][: args.n_train].reshape(args.n_train, -1).astype(np.float32) / 255
    y_tr = d["y_train"][: args.n_train]
    x_te = d["X_test"][: args.n_test].reshape(args.n_test, -1).astype(np.float32) / 255
    y_te = d["y_test"][: args.n_test]
    rows = []
    for seed in args.seeds:
        for variant in args.variants.split(","):
            m = None if variant == "exact" else int(variant)
            est = CPVAE(
                n_shared=32,
                n_private=8,
                hidden_layer_sizes=(256,),
                likelihood="bernoulli",
                batch_size=64,
                max_iter=args.epochs,
                n_importance_samples=20,
                priors="uniform",
                device=args.device,
                random_state=seed,
                mi_samples=m,
                precision=args.precision,
            )
            tic = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est.fit(x_tr, y_tr)
            fit_s = time.perf_counter() - tic
            acc = float(np.mean(est.predict(x_te) == y_te))
            shared = est.set_params(blocks="shared").transform(x_te)
            labels = KMeans(10, n_init=4, random_state=0).fit_predict(shared)
            ari = float(adjusted_rand_score(y_te, labels))
            epoch_s = float(np.median([h["time"] for h in est.history_]))
            row = dict(
                seed=seed,
                mi_samples=m,
                precision=args.precision,
                accuracy=acc,
                shared_ari=ari,
                final_loss=est.loss_curve_[-1],
                final_mi=est.history_[-1]["mi"],
                fit_s=fit_s,
                median_epoch_s=epoch_s,
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = dict(
        n_train=args.n_train,
        n_test=args.n_test,
        epochs=args.epochs,
        threads=torch.get_num_threads(),
        machine=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
        note="shared 2-core machine; times are indicative only",
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
