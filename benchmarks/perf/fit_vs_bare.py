"""The estimator's whole ``fit`` against a hand-written plain-torch loop, interleaved.

For each K, rounds alternate (ABBA order) between

* ``CPVAE(...).fit(X, y)``: validation, set-up, ``--epochs`` epochs and the post-fit pass
  over the training rows, timed from the call to its return;
* the plain loop of ``benchmarks._timing.bare_training_step``: the same module, balanced
  minibatches and fused Adam, built and run for the same number of steps, computing what
  the estimator's fit computes with its defaults (its ``objective`` with the exact MI term
  and its ``standardize``), no sklearn,

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

# The plain loop computes the estimator's default objective on standardised rows, as the
# timed fit does: the ratio is then the cost of the estimator, not of different work.
_DEFAULTS = CPVAE().get_params()
SAME_WORK = dict(objective=_DEFAULTS["objective"], standardize=_DEFAULTS["standardize"])


def time_fit(x, y, k, epochs, mi_samples=None, random_state=0):
    """Seconds of the whole ``CPVAE.fit``, and the fitted estimator."""
    est = CPVAE(
        N_SHARED,
        N_PRIVATE,
        hidden_layer_sizes=(HIDDEN,),
        batch_size=BATCH // k,
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=10**6,
        device="cpu",
        random_state=random_state,
        mi_samples=mi_samples,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tic = time.perf_counter()
        est.fit(x, y)
        return time.perf_counter() - tic, est


def time_bare(x, y, k, n_steps, mi_samples=None):
    tic = time.perf_counter()
    step = bare_training_step(
        torch.from_numpy(x), torch.from_numpy(y), k, BATCH // k, n_steps, HIDDEN, mi_samples,
        n_shared=N_SHARED, n_private=N_PRIVATE, **SAME_WORK,
    )  # fmt: skip
    for _ in range(n_steps):
        step()
    return time.perf_counter() - tic


def flops_per_sample(x, y, k, mi_samples=None):
    """Matrix-product FLOPs per training row of one plain-loop step, the roofline's numerator."""
    probe = bare_training_step(
        torch.from_numpy(x), torch.from_numpy(y), k, BATCH // k, 1, HIDDEN, mi_samples,
        n_shared=N_SHARED, n_private=N_PRIVATE, **SAME_WORK,
    )  # fmt: skip
    return count_flops(probe) / BATCH


def compare(k, steps, epochs, rounds, mi_samples=None):
    """ABBA rounds of the whole fit against the plain loop at K = ``k``.

    Returns the summary (every round, medians, roofline fractions) and the estimator of
    the last fit. One epoch of each side runs first, unmeasured. ``epoch_roofline`` is
    the estimator's training epochs alone (the median over epochs after the first)
    against the same GEMM rate.
    """
    x, y = make_data(BATCH * steps, k)
    n_steps = epochs * steps_per_epoch(len(x), k, BATCH // k)
    flops = flops_per_sample(x, y, k, mi_samples)
    # ABBA order cancels a drift of the machine's speed, not the one-time costs of the
    # first run of new shapes (kernel selection, the allocator's first pages), which
    # would all land on round 0's first side: one short unmeasured run of each first.
    time_fit(x, y, k, 1, mi_samples)
    time_bare(x, y, k, n_steps // epochs, mi_samples)
    out, epoch_s = [], []
    for r in range(rounds):
        order = ("fit", "bare") if r % 2 == 0 else ("bare", "fit")
        rec = {}
        for what in order:
            rec[f"gemm_{what}"] = gemm_rate()
            if what == "fit":
                rec["fit_s"], est = time_fit(x, y, k, epochs, mi_samples)
                rec["epoch_s"] = [h["time"] for h in est.history_]
                epoch_s.extend(rec["epoch_s"][1:])  # the first epoch is the warm-up
            else:
                rec["bare_s"] = time_bare(x, y, k, n_steps, mi_samples)
        rec["ratio"] = rec["bare_s"] / rec["fit_s"]
        out.append(rec)
        print(
            f"K={k:3d} mi_samples={mi_samples} round {r}: fit {rec['fit_s']:.2f} s, plain "
            f"loop {rec['bare_s']:.2f} s -> fit at {rec['ratio']:.2f}x the plain loop",
            flush=True,
        )
    rows = n_steps * BATCH
    fit_s = statistics.median(rd["fit_s"] for rd in out)
    bare_s = statistics.median(rd["bare_s"] for rd in out)
    gemm = statistics.median(rd[g] for rd in out for g in ("gemm_fit", "gemm_bare"))
    summary = dict(
        k=k,
        mi_samples=mi_samples,
        steps=n_steps,
        flops_per_sample=flops,
        rounds=out,
        ratio_median=statistics.median(rd["ratio"] for rd in out),
        fit_roofline=flops * rows / fit_s / 1e9 / gemm,
        bare_roofline=flops * rows / bare_s / 1e9 / gemm,
        epoch_roofline=flops * len(x) / statistics.median(epoch_s) / 1e9 / gemm,
        gemm_gflops_median=gemm,
    )
    print(
        f"K={k:3d} mi_samples={mi_samples}: fit at {summary['ratio_median']:.2f}x the plain "
        f"loop (median of {rounds} rounds); whole fit {summary['fit_roofline']:.0%}, its "
        f"epochs {summary['epoch_roofline']:.0%} and plain loop {summary['bare_roofline']:.0%} "
        f"of {gemm:.0f} GFLOP/s",
        flush=True,
    )
    return summary, est


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 10, 50])
    ap.add_argument("--steps", type=int, default=6, help="800-row steps per epoch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mi-samples", type=int, default=None, help="default: the exact MI term")
    ap.add_argument("--out", default="benchmarks/results/perf/fit_vs_bare.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = dict(machine=machine_info("cpu"), args=vars(args), runs=[])
    print(f"machine: {results['machine']}", flush=True)
    for k in args.ks:
        summary, _ = compare(k, args.steps, args.epochs, args.rounds, args.mi_samples)
        results["runs"].append(summary)
    results["load_average_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"load average after: {results['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
