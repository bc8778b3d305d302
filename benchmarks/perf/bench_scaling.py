"""Scaling curves: CPVAE training time per epoch against rows, populations and features.

Every point times real training steps (the estimator's step: balanced 800-row minibatch,
fused Adam) on a data matrix of the stated size, calibrates the GEMM rate right before,
and reports time per epoch = median step time x steps per epoch (an epoch of N rows has
ceil(N / 800) steps). Timing whole epochs of 10^6 rows, or of 100 populations with the
exact MI term, would take hours on a shared 2-core machine for the same information:
the step time is what changes with the data. ``--full-epochs`` also fits the estimator
for whole epochs where that is cheap (N <= 10^4) as a check of the extrapolation.

    python -m benchmarks.perf.bench_scaling [--device cuda] [--quick]

Writes benchmarks/results/perf/scaling_<device>.json and docs/scaling_<device>.png.
"""

import argparse
import json
import os
import statistics
import warnings

import numpy as np
import torch

from benchmarks._timing import (
    bare_training_step,
    count_flops,
    gemm_rate,
    machine_info,
    median_time,
)
from sklearn_cpvae import CPVAE

BATCH = 800
warnings.filterwarnings("ignore")


def step_time(n, k, d, mi_samples, device, repeats, hidden=512):
    """Median seconds of one training step on an (n, d) matrix with k populations."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((n, d), dtype=np.float32)).to(torch.device(device))
    m = max(1, BATCH // k)
    n_idx = repeats + 3
    step = bare_training_step(x, torch.arange(n) % k, k, m, n_idx, hidden, mi_samples)
    flops = count_flops(step)
    gemm = gemm_rate(device=device)
    t, times = median_time(step, repeats=repeats, warmup=0, device=device)  # counted = warm-up
    steps = -(-n // (k * m))
    return dict(
        rows=n,
        k=k,
        features=d,
        mi_samples=mi_samples,
        step_s=times,
        epoch_s=t * steps,
        steps_per_epoch=steps,
        flops_per_sample=flops / (k * m),
        gemm_gflops=gemm,
        roofline_fraction=flops / t / 1e9 / gemm,
    )


def full_epoch(n, k, d, device):
    rng = np.random.default_rng(0)
    x = rng.random((n, d), dtype=np.float32)
    y = np.arange(n) % k
    est = CPVAE(
        100,
        25,
        hidden_layer_sizes=(512,),
        batch_size=BATCH // k,
        max_iter=2,
        device=device,
        random_state=0,
    ).fit(x, y)
    return dict(rows=n, k=k, features=d, epoch_s=est.history_[-1]["time"])


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, xlabel in zip(
        axes,
        ("rows", "populations", "features"),
        (
            "rows N (K = 10, 784 features)",
            "populations K (N = 60,000, 784 features)",
            "features D (N = 60,000, K = 10)",
        ),
        strict=True,
    ):
        for ms, style in ((None, "o-"), (results["args"]["mi_samples"], "s--")):
            pts = [r for r in results[key] if r["mi_samples"] == ms]
            if not pts:
                continue
            xs = [
                r["rows"] if key == "rows" else r["k"] if key == "populations" else r["features"]
                for r in pts
            ]
            label = "exact MI" if ms is None else f"mi_samples={ms}"
            ax.plot(xs, [r["epoch_s"] for r in pts], style, label=label)
        if key == "rows" and results.get("full_epochs"):
            fe = results["full_epochs"]
            ax.plot(
                [r["rows"] for r in fe],
                [r["epoch_s"] for r in fe],
                "k^",
                label="whole epoch, estimator",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds per epoch")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    m = results["machine"]
    fig.suptitle(
        f"CPVAE training time per epoch, {m['device']} ({m['cpu']}, "
        f"{m['torch_threads']} threads; shared machine, load average "
        f"{m['load_average'][0]:.0f} at start)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mi-samples", type=int, default=16)
    ap.add_argument("--rows", type=int, nargs="+", default=[10**3, 10**4, 10**5, 10**6])
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 5, 10, 20, 50, 100])
    ap.add_argument("--features", type=int, nargs="+", default=[100, 1000, 5000, 20000])
    ap.add_argument("--full-epochs", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--plot-only", metavar="JSON", help="only redraw the figure from a file")
    ap.add_argument("--png", default=None, help="figure path (default docs/scaling_<device>.png)")
    args = ap.parse_args()
    if args.plot_only:
        with open(args.plot_only) as f:
            plot(json.load(f), args.png or f"docs/scaling_{args.device.split(':')[0]}.png")
        return
    if args.quick:
        args.repeats, args.rows = 2, [10**3, 10**4, 10**5]
        args.ks, args.features = [2, 10, 50], [100, 1000, 5000]
    torch.set_num_threads(args.threads)
    dev = args.device
    res = dict(machine=machine_info(dev), args=vars(args), rows=[], populations=[], features=[])
    print(res["machine"], flush=True)

    def run(key, **kw):
        for ms in (None, args.mi_samples):
            r = step_time(mi_samples=ms, device=dev, repeats=args.repeats, **kw)
            res[key].append(r)
            print(
                f"{key:11s} N={r['rows']:>8d} K={r['k']:>3d} D={r['features']:>6d} "
                f"mi_samples={ms!s:4s} step {statistics.median(r['step_s']) * 1e3:8.1f} ms "
                f"epoch {r['epoch_s']:9.2f} s  ({r['roofline_fraction']:.0%} of "
                f"{r['gemm_gflops']:.0f} GFLOP/s)",
                flush=True,
            )

    for n in args.rows:
        run("rows", n=n, k=10, d=784)
    for k in args.ks:
        run("populations", n=60000, k=k, d=784)
    for d in args.features:
        run("features", n=60000, k=10, d=d)
    if args.full_epochs:
        res["full_epochs"] = [full_epoch(n, 10, 784, dev) for n in args.rows if n <= 10**4]
        print("full epochs:", res["full_epochs"], flush=True)
    name = dev.split(":")[0]
    os.makedirs("benchmarks/results/perf", exist_ok=True)
    with open(f"benchmarks/results/perf/scaling_{name}.json", "w") as f:
        json.dump(res, f, indent=1)
    os.makedirs("docs", exist_ok=True)
    plot(res, args.png or f"docs/scaling_{name}.png")
    print(f"wrote benchmarks/results/perf/scaling_{name}.json and docs/scaling_{name}.png")


if __name__ == "__main__":
    main()
