"""Raw (unstandardised) MNIST pixels: does CPVAE train without preprocessing?

Psi (the Gaussian noise variance) used to start at 1 while raw pixels have variance
~0.1, and codes collapsed within short budgets (docs/reproduction.md, Finding 1). Since
``fit`` starts Psi at the mean feature variance and f_s at the feature means, raw and
standardised inputs should train alike. Prints held-out accuracy for both inputs.

Run: ``python -m benchmarks.diagnostics.raw_scale_check [--epochs 10]`` (a few minutes on 2 cores).
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks._common import DATA_DIR
from sklearn_cpvae import CPVAE


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=2000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    path = DATA_DIR / "mnist" / "mnist.npz"
    if not path.exists():
        print(f"SKIP: {path} not found")
        return
    d = np.load(path)
    X = d["X_train"][: args.n_train].reshape(args.n_train, -1) / 255.0
    y = d["y_train"][: args.n_train]
    X_te = d["X_test"][:1000].reshape(1000, -1) / 255.0
    y_te = d["y_test"][:1000]
    mean, scale = X.mean(0), X.std()
    rows = []
    for name, (a, b) in {
        "raw": (X, X_te),
        "standardised": ((X - mean) / scale, (X_te - mean) / scale),
    }.items():
        for objective, alpha in (("elbo", 1.0), ("paper", 1.0)):
            tic = time.perf_counter()
            model = CPVAE(
                n_shared=100,
                n_private=25,
                hidden_layer_sizes=(256,),
                objective=objective,
                mi_weight=alpha,
                max_iter=args.epochs,
                batch_size=16,
                n_importance_samples=16,
                random_state=0,
            ).fit(a, y)
            acc = float(model.score(b, y_te))
            rows.append(
                dict(
                    input=name,
                    objective=objective,
                    accuracy=acc,
                    psi=float(np.exp(model.module_.log_psi.item())),
                    seconds=time.perf_counter() - tic,
                )
            )
            print(
                f"{name:13s} {objective:4s} accuracy {acc:.3f}  psi {rows[-1]['psi']:.4f}"
                f"  ({rows[-1]['seconds']:.0f} s)",
                flush=True,
            )
    out = Path(__file__).resolve().parents[1] / "results" / "diagnostics" / "raw_scale_check.json"
    out.write_text(json.dumps(dict(epochs=args.epochs, n_train=args.n_train, rows=rows), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
