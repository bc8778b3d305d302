"""What serving large temporaries from a retained heap buys (``sklearn_cpvae._memory``).

For each K, ABBA rounds of the estimator with the retained heap on (the library's
behaviour) and off (glibc's defaults: a fresh mmap for every temporary above its
adaptive threshold, 32 MiB at most). Each measurement runs in a child process of its
own, since the library's exit from the scope leaves glibc's thresholds set, and an "off"
run in the same process would inherit them. A child measures, after one unmeasured
one-epoch fit:

* the whole ``fit`` (``--epochs`` epochs of ``--steps`` 800-row steps, the settings of
  ``fit_vs_bare.py``) and its training epochs alone, as fractions of the GEMM roofline
  measured before the timing;
* ``predict_proba`` with S = 50 importance samples, the same way (``bench_speed.predict``);
* a digest of the fitted weights and loss curve: both sides must agree bitwise, since
  only where the tensors live changes.

    python -m benchmarks.perf.allocator --ks 2 10 50

Writes ``benchmarks/results/perf/allocator.json``.
"""

import argparse
import hashlib
import json
import statistics
import subprocess
import sys

import torch

from benchmarks._timing import gemm_rate, write_comparison
from benchmarks.perf.bench_speed import BATCH, make_data, predict
from benchmarks.perf.fit_vs_bare import flops_per_sample, time_fit
from sklearn_cpvae import _memory
from sklearn_cpvae._training import steps_per_epoch


def measure(k, enabled, steps, epochs, predict_gflop):
    """One side in this process: roofline fractions and the digest of the fit."""
    _memory.ENABLED = enabled
    x, y = make_data(BATCH * steps, k)
    flops = flops_per_sample(x, y, k)
    rows = epochs * steps_per_epoch(len(x), k, BATCH // k) * BATCH
    time_fit(x, y, k, 1)  # the first run of new shapes, unmeasured
    gemm = gemm_rate()
    t, est = time_fit(x, y, k, epochs)
    per_epoch = statistics.median(h["time"] for h in est.history_[1:])
    p = predict(est, k, 3, "cpu", predict_gflop * 1e9)
    digest = hashlib.sha256(json.dumps(est.loss_curve_).encode())
    for w in est.module_.state_dict().values():
        digest.update(w.numpy().tobytes())
    return dict(
        fit=flops * rows / t / 1e9 / gemm,
        epoch=flops * rows / epochs / per_epoch / 1e9 / gemm,
        predict_proba=p["roofline_fraction"],
        gemm_gflops=gemm,
        digest=digest.hexdigest(),
    )


def compare(k, args):
    runs = {True: [], False: []}
    for r in range(args.rounds):
        for enabled in (True, False) if r % 2 == 0 else (False, True):
            cmd = [
                sys.executable, "-m", "benchmarks.perf.allocator", "--child",
                "--ks", str(k), "--steps", str(args.steps), "--epochs", str(args.epochs),
                "--predict-gflop", str(args.predict_gflop), "--threads", str(args.threads),
                "--retained", str(int(enabled)),
            ]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[enabled].append(json.loads(out.strip().splitlines()[-1]))
    med = {
        e: {m: statistics.median(r[m] for r in runs[e]) for m in ("fit", "epoch", "predict_proba")}
        for e in runs
    }
    same = len({r["digest"] for e in runs for r in runs[e]}) == 1
    print(
        f"K={k:3d}, % of the GEMM roofline with the retained heap / without: training "
        f"epochs {med[True]['epoch']:.0%} / {med[False]['epoch']:.0%}, whole fit "
        f"{med[True]['fit']:.0%} / {med[False]['fit']:.0%}, predict_proba "
        f"{med[True]['predict_proba']:.0%} / {med[False]['predict_proba']:.0%}; "
        f"bitwise equal fits: {same}",
        flush=True,
    )
    return dict(
        k=k,
        retained=runs[True],
        glibc_default=runs[False],
        median_retained=med[True],
        median_glibc_default=med[False],
        bitwise_equal=same,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 10, 50])
    ap.add_argument("--steps", type=int, default=6, help="800-row steps per epoch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--predict-gflop", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/perf/allocator.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--retained", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        res = measure(args.ks[0], bool(args.retained), args.steps, args.epochs, args.predict_gflop)
        print(json.dumps(res))
        return
    write_comparison(args.out, args, [compare(k, args) for k in args.ks])


if __name__ == "__main__":
    main()
