"""Divergence and gradient clipping: the measurements behind EXPLODE_FACTOR and max_grad_norm.

For each dataset, learning rate and clipping threshold, fits a small CPVAE with the
explosion and jump rules switched off (non-finite terms still stop training) and records:

* the per-step global gradient norm (before clipping): median, 99th percentile, max;
* the largest ratio ``max|term| / scale`` over the epochs, where ``scale`` is the
  reference of the explosion rule (largest |term| at the first step, at least 1), and
  the largest epoch-to-epoch move ``max|term - previous term| / scale`` (the jump rule);
* whether and at which epoch a term became non-finite; the final loss.

Usage: ``python -m benchmarks.diagnostics.divergence [--quick]``; writes a JSON table
to ``benchmarks/results/diagnostics/divergence.json`` and prints it. Real data (wine
quality, sklearn digits) are read from the shared data folder (``../shared/data`` or
``$SKLEARN_CPVAE_DATA``, as in every benchmark) when present, else skipped.
"""

import argparse
import json
import math
import os
import time
import warnings

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from benchmarks._common import DATA_DIR
from sklearn_cpvae import CPVAE, TrainingDivergedError, _training
from sklearn_cpvae.datasets import load_shared_npz


def _shared(name):
    try:
        return load_shared_npz(name, DATA_DIR)
    except FileNotFoundError:
        return None


def datasets():
    rng = np.random.default_rng(0)
    n, d = 1000, 20
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, d))
    X[y == 1, :3] += 2.0
    yield "synthetic", X, y, "gaussian"
    if (wine := _shared("wine_quality")) is not None:
        idx = np.random.default_rng(0).permutation(len(wine.X))[:2000]
        yield "wine", StandardScaler().fit_transform(wine.X[idx]), wine.color[idx], "gaussian"
    if (digits := _shared("sklearn_digits")) is not None:
        Xd, yd = digits.X, digits.y
        Xd = Xd.reshape(len(Xd), -1).astype(np.float64) / 16.0
        yield "digits", Xd, (yd >= 5).astype(int), "bernoulli"


def run(name, X, y, likelihood, lr, clip, epochs):
    norms, ratios, jumps = [], [], []
    real_clip = torch.nn.utils.clip_grad_norm_

    def spy_clip(params, max_norm, *a, **k):
        norm = real_clip(params, max_norm, *a, **k)
        norms.append(float(norm))
        return norm

    def spy_check(record, epoch, scale, previous=None, names=_training.TERMS):
        terms = _training.TERMS
        ratios.append(max(abs(record[t]) for t in terms) / scale if scale else math.nan)
        if previous is not None and scale:
            jumps.append(max(abs(record[t] - previous[t]) for t in terms) / scale)
        _training_check(record, epoch, None)  # non-finite only

    torch.nn.utils.clip_grad_norm_ = spy_clip
    _training._check_diverged = spy_check
    est = CPVAE(
        n_shared=8,
        n_private=4,
        hidden_layer_sizes=(64,),
        likelihood=likelihood,
        # 1e30: measure the norm, never clip.
        learning_rate_init=lr,
        max_grad_norm=clip if clip is not None else 1e30,
        max_iter=epochs,
        n_iter_no_change=epochs,
        batch_size=64,
        device="cpu",
        random_state=0,
        n_importance_samples=4,
    )
    tic = time.perf_counter()
    nan_epoch = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    except TrainingDivergedError as exc:
        nan_epoch = exc.epoch
    finally:
        torch.nn.utils.clip_grad_norm_ = real_clip
        _training._check_diverged = _training_check
    finite = [r for r in ratios if math.isfinite(r)]
    finite_jumps = [r for r in jumps if math.isfinite(r)]
    return {
        "data": name,
        "lr": lr,
        "max_grad_norm": clip,
        "grad_norm_median": float(np.median(norms)) if norms else None,
        "grad_norm_p99": float(np.percentile(norms, 99)) if norms else None,
        "grad_norm_max": float(np.max(norms)) if norms else None,
        "max_term_ratio": max(finite) if finite else None,
        "max_jump_ratio": max(finite_jumps) if finite_jumps else None,
        "nonfinite_epoch": nan_epoch,
        "final_loss": est.loss_curve_[-1] if est.loss_curve_ else None,
        "seconds": round(time.perf_counter() - tic, 1),
    }


_training_check = _training._check_diverged


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--data", nargs="*", help="subset of: synthetic wine digits")
    parser.add_argument("--lrs", nargs="*", type=float)
    parser.add_argument("--clips", nargs="*", type=float, help="0 means no clipping")
    parser.add_argument("--out", default="benchmarks/results/diagnostics/divergence.json")
    args = parser.parse_args()
    lrs = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    clips = [None, 1.0, 10.0, 100.0]
    if args.quick:
        lrs, clips = [1e-3, 1.0], [None, 10.0]
    lrs = args.lrs or lrs
    clips = [c or None for c in args.clips] if args.clips else clips
    rows = []
    for name, X, y, lik in datasets():
        if args.data and name not in args.data:
            continue
        for lr in lrs:
            for clip in clips:
                row = run(name, X, y, lik, lr, clip, args.epochs)
                print(json.dumps(row), flush=True)
                rows.append(row)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"torch": torch.__version__, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
