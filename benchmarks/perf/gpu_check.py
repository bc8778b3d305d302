"""Throughput, epoch time, compile and peak memory on one GPU, in one run (< 8 minutes).

    python -m benchmarks.perf.gpu_check [--out FILE] [--cpu-mode]

Called by ``benchmarks/perf/gpu_check.sh`` (which runs ``tests/test_gpu.py`` first).
On CUDA, for K = 2, 10, 50 in float32 and bf16 (``precision``): training samples/s
(MNIST-shaped rows, 784 features, one hidden layer of 512, n_shared = 100, n_private = 25,
800-row steps, i.e. ``batch_size = 800 // K``, ``--steps`` steps per epoch, the first epoch
a warm-up), ``predict_proba`` (S = 50) and ``transform`` rows/s, and the peak GPU memory
of each (``torch.cuda.max_memory_allocated``); one 60,000-row MNIST-shaped epoch at
K = 10 (synthetic rows, 75 steps); and the K = 10 epoch with ``compile=True`` against
eager (compilation time apart). Without CUDA (or with ``--cpu-mode``) it says so, runs the
throughput grid at tiny sizes on the CPU so that the script itself is checked, and
records the GPU-only parts (60k epoch, compile) as skipped.
"""

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import sklearn_cpvae._training as training
from benchmarks._common import git_commit, hardware
from sklearn_cpvae import CPVAE


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_memory(device):
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device):
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d), dtype=np.float32)
    y = np.arange(n) % k
    X[y % 2 == 1, : d // 8] += 0.5
    return X, y


def estimator(size, k, device, precision, max_iter, **extra):
    return CPVAE(
        n_shared=size["n_shared"],
        n_private=size["n_private"],
        hidden_layer_sizes=(size["hidden"],),
        batch_size=max(1, size["step_rows"] // k),
        max_iter=max_iter,
        n_importance_samples=50,
        device=device,
        precision=precision,
        random_state=0,
        **extra,
    )


def fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tic = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - tic


def throughput(size, k, device, precision, steps, epochs):
    n = steps * k * max(1, size["step_rows"] // k)
    X, y = data(n, size["features"], k)
    reset_memory(device)
    est = estimator(size, k, device, precision, epochs)
    fit(est, X, y)
    train_peak = peak_memory_mb(device)
    epoch_s = [r["time"] for r in est.history_]
    rows = min(len(X), size["infer_rows"])
    reset_memory(device)
    tic = time.perf_counter()
    est.predict_proba(X[:rows])
    sync(device)
    proba_s = time.perf_counter() - tic
    tic = time.perf_counter()
    est.transform(X[:rows], y[:rows])
    sync(device)
    transform_s = time.perf_counter() - tic
    return dict(
        K=k,
        precision=precision,
        rows_per_epoch=n,
        epoch_s=epoch_s,
        train_samples_per_s=n / statistics.median(epoch_s[1:]),
        predict_proba_rows_per_s=rows / proba_s,
        transform_rows_per_s=rows / transform_s,
        peak_gpu_memory_train_MB=train_peak,
        peak_gpu_memory_inference_MB=peak_memory_mb(device),
        final_loss=est.loss_curve_[-1],
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--cpu-mode", action="store_true", help="tiny sizes on the CPU")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--ks", type=int, nargs="+", default=[2, 10, 50])
    args = p.parse_args()
    start = time.perf_counter()
    cuda = torch.cuda.is_available() and not args.cpu_mode
    if cuda:
        device = "cuda"
        size = dict(features=784, hidden=512, n_shared=100, n_private=25, step_rows=800)
        size["infer_rows"] = 10_000
    else:
        print(
            "gpu_check: no CUDA device (or --cpu-mode): GPU parts are SKIPPED; the "
            "throughput grid runs at tiny sizes on the CPU only to check this script. "
            "No number of this run is a GPU figure.",
            flush=True,
        )
        device = "cpu"
        size = dict(features=32, hidden=32, n_shared=4, n_private=2, step_rows=200)
        size["infer_rows"] = 500
        args.steps, args.epochs = min(args.steps, 3), min(args.epochs, 2)
    out = dict(
        mode="cuda" if cuda else "cpu (GPU parts skipped)",
        device=torch.cuda.get_device_name(0) if cuda else "cpu",
        size=size,
        args={k: str(v) for k, v in vars(args).items()},
        commit=git_commit(),
        hardware=hardware(),
        throughput=[],
    )
    for k in args.ks:
        for precision in ("float32", "bf16"):
            row = throughput(size, k, device, precision, args.steps, args.epochs)
            out["throughput"].append(row)
            print(
                f"K={k:3d} {precision:8s} train {row['train_samples_per_s']:10.0f} samples/s  "
                f"predict_proba {row['predict_proba_rows_per_s']:9.0f} rows/s  "
                f"transform {row['transform_rows_per_s']:9.0f} rows/s  "
                f"peak GPU memory {row['peak_gpu_memory_train_MB']} MB",
                flush=True,
            )
    if cuda:
        X, y = data(60_000, 784, 10)
        reset_memory(device)
        est = estimator(size, 10, device, "float32", 2)
        wall = fit(est, X, y)
        out["mnist_epoch_K10"] = dict(
            rows=60_000,
            steps_per_epoch=training.steps_per_epoch(60_000, 10, 80),
            epoch_s=[r["time"] for r in est.history_],
            fit_wall_s=wall,
            peak_gpu_memory_MB=peak_memory_mb(device),
        )
        print("60k-row MNIST-shaped epoch, K=10:", out["mnist_epoch_K10"], flush=True)
        X, y = data(args.steps * 10 * 80, 784, 10)
        runs = {}
        for name, flag in (("eager", False), ("compiled", True), ("eager_again", False)):
            est = estimator(size, 10, device, "float32", args.epochs + 1, compile=flag)
            fit(est, X, y)
            times = [r["time"] for r in est.history_]
            runs[name] = dict(epoch_s=times, median_after_first_s=statistics.median(times[1:]))
        eager = statistics.mean(
            [runs["eager"]["median_after_first_s"], runs["eager_again"]["median_after_first_s"]]
        )
        runs["compiled_over_eager"] = runs["compiled"]["median_after_first_s"] / eager
        runs["compile_first_epoch_extra_s"] = (
            runs["compiled"]["epoch_s"][0] - runs["eager"]["epoch_s"][0]
        )
        out["compile_K10"] = runs
        print("compile at K=10:", runs, flush=True)
    else:
        out["mnist_epoch_K10"] = "skipped: no CUDA device"
        out["compile_K10"] = (
            "skipped: no CUDA device (CPU compile: benchmarks/perf/compile_speed.py)"
        )
    out["wall_seconds"] = time.perf_counter() - start
    out["load_average_at_end"] = list(os.getloadavg())
    path = args.out or Path(
        f"benchmarks/results/perf/speed_gpu_check_{'cuda' if cuda else 'cpu_mode'}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
