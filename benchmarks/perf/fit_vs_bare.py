"""The estimator's whole ``fit`` against a hand-written plain-torch loop, interleaved.

For each K, rounds alternate (ABBA order) between

* ``CPVAE(...).fit(X, y)``: validation, set-up, ``--epochs`` epochs and the post-fit pass
  over the training rows, timed from the call to its return;
* the plain loop of ``benchmarks._timing.bare_training_step``: the same module, balanced
  minibatches and fused Adam, built and run for the same number of steps (eq. 4 with the
  exact MI term, no sklearn),

with the GEMM rate calibrated in the same process before each timing. MNIST-shaped rows
(784 features), hidden 512, n_shared 100, n_private 25, 800-row steps. Interleaving is
what makes the ratio meaningful on a shared machine: both sides see the same load.

    python -m benchmarks.perf.fit_vs_bare --ks 2 10 50 --rounds 4

Writes ``benchmarks/results/perf/fit_vs_bare.json`` (every round, medians, load average).
"""

import argparse
import json
import os
import statistics
import time
import warnings

import torch

from benchmarks._timing import bare_training_step, count_flops, gemm_rate, machine_info
from benchmarks.perf.bench_speed import BATCH, HIDDEN, N_PRIVATE, N_SHARED, make_data
from sklearn_cpvae import CPVAE
from sklearn_cpvae._training import steps_per_epoch


def time_fit(x, y, k, epochs):
    est = CPVAE(
        N_SHARED,
        N_PRIVATE,
        hidden_layer_sizes=(HIDDEN,),
        batch_size=BATCH // k,
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=10**6,
        device="cpu",
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tic = time.perf_counter()
        est.fit(x, y)
        return time.perf_counter() - tic


def time_bare(x, y, k, n_steps):
    tic = time.perf_counter()
    step = bare_training_step(
        torch.from_numpy(x), torch.from_numpy(y), k, BATCH // k, n_steps, HIDDEN, None,
        n_shared=N_SHARED, n_private=N_PRIVATE,
    )  # fmt: skip
    for _ in range(n_steps):
        step()
    return time.perf_counter() - tic


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 10, 50])
    ap.add_argument("--steps", type=int, default=6, help="800-row steps per epoch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/perf/fit_vs_bare.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = dict(machine=machine_info("cpu"), args=vars(args), runs=[])
    print(f"machine: {results['machine']}", flush=True)
    for k in args.ks:
        x, y = make_data(BATCH * args.steps, k)
        n_steps = args.epochs * steps_per_epoch(len(x), k, BATCH // k)
        probe = bare_training_step(
            torch.from_numpy(x), torch.from_numpy(y), k, BATCH // k, 1, HIDDEN, None,
            n_shared=N_SHARED, n_private=N_PRIVATE,
        )  # fmt: skip
        flops = count_flops(probe) / BATCH
        rounds = []
        for r in range(args.rounds):
            order = ("fit", "bare") if r % 2 == 0 else ("bare", "fit")
            rec = {}
            for what in order:
                rec[f"gemm_{what}"] = gemm_rate()
                if what == "fit":
                    rec["fit_s"] = time_fit(x, y, k, args.epochs)
                else:
                    rec["bare_s"] = time_bare(x, y, k, n_steps)
            rec["ratio"] = rec["bare_s"] / rec["fit_s"]
            rounds.append(rec)
            print(
                f"K={k:3d} round {r}: fit {rec['fit_s']:.2f} s, plain loop {rec['bare_s']:.2f} s "
                f"-> fit at {rec['ratio']:.2f}x the plain loop",
                flush=True,
            )
        rows = n_steps * BATCH
        fit_s = statistics.median(rd["fit_s"] for rd in rounds)
        bare_s = statistics.median(rd["bare_s"] for rd in rounds)
        gemm = statistics.median(rd[g] for rd in rounds for g in ("gemm_fit", "gemm_bare"))
        summary = dict(
            k=k,
            steps=n_steps,
            flops_per_sample=flops,
            rounds=rounds,
            ratio_median=statistics.median(rd["ratio"] for rd in rounds),
            fit_roofline=flops * rows / fit_s / 1e9 / gemm,
            bare_roofline=flops * rows / bare_s / 1e9 / gemm,
            gemm_gflops_median=gemm,
        )
        results["runs"].append(summary)
        print(
            f"K={k:3d}: fit at {summary['ratio_median']:.2f}x the plain loop (median of "
            f"{args.rounds} rounds); whole fit {summary['fit_roofline']:.0%} and plain loop "
            f"{summary['bare_roofline']:.0%} of {gemm:.0f} GFLOP/s",
            flush=True,
        )
    results["load_average_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"load average after: {results['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
