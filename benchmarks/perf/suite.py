"""Every performance figure of docs/performance.md in one run, against its target.

    python -m benchmarks.perf.suite --quick     # about 6 minutes on one core
    python -m benchmarks.perf.suite             # more rounds and steps, larger files

One process tree, one torch thread, CPU. In this order:

1. the estimator's whole ``fit`` against the plain-torch loop (same module, balanced
   minibatches, fused Adam) at K = 2, 10, 50, in interleaved ABBA rounds with the GEMM
   rate calibrated before each timing (:func:`benchmarks.perf.fit_vs_bare.compare`),
   with the exact MI term and with ``mi_samples=16``; the training epochs' fraction of
   the GEMM roofline;
2. ``predict_proba`` and ``score_samples`` with S = 50 on the estimator fitted in 1,
   as a fraction of the GEMM rate measured around them
   (:func:`benchmarks.perf.bench_speed.predict`);
3. ``compile=True`` against eager, fitted eager / compiled / compiled / eager
   (:func:`benchmarks.perf.compile_speed.compare`);
4. a fit on a memory-mapped ``.npy`` file against the same bounded fit in memory, with
   the peak resident memory (``benchmarks/perf/out_of_core.py`` in a child process on a
   file generated into a temporary directory and deleted after); the full mode also
   lists the separately measured 20 GB run from its result file;
5. the 2-process gloo fit against the 1-process fit of the same seed, next to a 1-process
   fit on X moved by one float32 ulp (how far training carries a rounding-sized change)
   and one with another seed (:func:`benchmarks.perf.distributed_fit.measure`).

Prints one table (figure, measured, target, met) and writes it, every measurement behind
it, the load average before and after and the hardware record to
``benchmarks/results/perf/suite[_quick].json``. Timings on a shared machine move with its
load: read the ratios of interleaved rounds, and compare runs at similar load only.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import RESULTS, ROOT, hardware
from benchmarks.perf import compile_speed, distributed_fit, fit_vs_bare
from benchmarks.perf.bench_speed import BATCH, make_data, predict

KS = (2, 10, 50)
MI_SAMPLES = 16
# 800-row steps per epoch (3 epochs): fewer at large K, where one step costs most.
STEPS = {"quick": {2: 6, 10: 4, 50: 2}, "full": {2: 6, 10: 6, 50: 6}}
SETTINGS = {
    "quick": dict(
        rounds=2,
        predict_gflop=20.0,
        predict_repeats=2,
        compile_ks=(2,),
        compile_steps=3,
        oc_rows=60_000,
        oc_cols=2_500,
        oc_subset=20_000,
        oc_infer_rows=5_000,
        dist_steps=3,
    ),
    "full": dict(
        rounds=4,
        predict_gflop=100.0,
        predict_repeats=3,
        compile_ks=(2, 10),
        compile_steps=4,
        oc_rows=200_000,
        oc_cols=2_500,
        oc_subset=20_000,
        oc_infer_rows=20_000,
        dist_steps=6,
    ),
}
SEPARATE_OUT_OF_CORE = RESULTS / "perf" / "speed_out_of_core_1m.json"


def row(figure, value, shown, target, met):
    """One line of the table; ``met`` is True, False or None (no target: reported)."""
    return dict(figure=figure, value=value, measured=shown, target=target, met=met)


def training(ks, steps, rounds):
    out, rows, fitted = [], [], {}
    for mi in (None, MI_SAMPLES):
        for k in ks:
            summary, est = fit_vs_bare.compare(k, steps[k], 3, rounds, mi)
            out.append(summary)
            if mi is None:
                fitted[k] = est
            name = "exact MI" if mi is None else f"mi_samples={mi}"
            ratio = summary["ratio_median"]
            spread = ", ".join(f"{r['ratio']:.2f}" for r in summary["rounds"])
            rows.append(
                row(
                    f"whole fit / plain loop, {name}, K={k}",
                    ratio,
                    f"{ratio:.2f}x ({spread})",
                    ">= 0.95x",
                    ratio >= 0.95,
                )
            )
            frac = summary["epoch_roofline"]
            rows.append(
                row(
                    f"training epochs, {name}, K={k}, % of GEMM roofline",
                    frac,
                    f"{frac:.0%} (whole fit {summary['fit_roofline']:.0%}, plain loop "
                    f"{summary['bare_roofline']:.0%}; {summary['gemm_gflops_median']:.0f} "
                    "GFLOP/s)",
                    ">= 80 %" if mi is None else "-",
                    frac >= 0.8 if mi is None else None,
                )
            )
    return out, rows, fitted


def inference(fitted, gflop, repeats):
    out, rows = [], []
    for k, est in fitted.items():
        for method in ("predict_proba", "score_samples"):
            p = predict(est, k, repeats, "cpu", gflop * 1e9, method=method)
            p.update(k=k, method=method)
            out.append(p)
            frac = p["roofline_fraction"]
            rows.append(
                row(
                    f"{method}, S=50, K={k}, % of GEMM roofline",
                    frac,
                    f"{frac:.0%} ({p['rows_per_s']:.0f} rows/s, "
                    f"{statistics.median(p['gemm_gflops']):.0f} GFLOP/s)",
                    ">= 80 %",
                    frac >= 0.8,
                )
            )
            print(f"{method} K={k}: {frac:.0%} of the GEMM rate", flush=True)
    return out, rows


def compiled(ks, steps):
    out, rows = {}, []
    args = argparse.Namespace(hidden=512, epochs=3, device="cpu")
    for k in ks:
        x, y = make_data(steps * BATCH, k)
        r = compile_speed.compare(x, y, k, args)
        out[str(k)] = r
        ratio = r["compiled_over_eager"]
        each = ", ".join(f"{v:.2f}" for v in r["compiled_over_eager_each"])
        rows.append(
            row(
                f"compile=True epoch / eager epoch, K={k}",
                ratio,
                f"{ratio:.2f}x ({each}); compilation {r['compile_overhead_s']:.0f} s",
                "<= 1.00x",
                ratio <= 1.0,
            )
        )
        rows.append(
            row(
                f"compile=True fit repeats bitwise, K={k}",
                r["compiled_bitwise_reproducible"],
                str(r["compiled_bitwise_reproducible"]),
                "True",
                r["compiled_bitwise_reproducible"],
            )
        )
        print(f"compile K={k}: {ratio:.2f}x eager", flush=True)
    return out, rows


def out_of_core_rows(res, source):
    fit = res["memmap_fit"]
    grown = fit["peak_MB"]["RssAnon"] - fit["start_MB"]["RssAnon"]
    file_mb = res["file_GB"] * 1e9 / 2**20
    ratio = res["memmap_over_in_memory_train_rate"]
    return [
        row(
            f"memmap fit / in-memory fit, training rows/s ({source})",
            ratio,
            f"{ratio:.2f}x ({fit['train_rows_per_s']:.0f} vs "
            f"{res['in_memory_subset_fit']['train_rows_per_s']:.0f} rows/s)",
            "-",
            None,
        ),
        row(
            f"memmap fit, allocated memory growth ({source})",
            grown,
            f"{grown:.0f} MB for a {file_mb:.0f} MB X (peak RssAnon "
            f"{fit['peak_MB']['RssAnon']:.0f} MB)",
            "< size of X; peak <= 2 GB",
            grown < file_mb and fit["peak_MB"]["RssAnon"] <= 2048,
        ),
    ]


def out_of_core(s, mode):
    """The out-of-core script in a child process, so that its resident memory is its own."""
    with tempfile.TemporaryDirectory(prefix="cpvae_suite_") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.perf.out_of_core",
            "--rows", str(s["oc_rows"]),
            "--cols", str(s["oc_cols"]),
            "--subset", str(s["oc_subset"]),
            "--infer-rows", str(s["oc_infer_rows"]),
            "--path", str(Path(tmp) / "X.npy"),
            "--tag", f"suite_{mode}",
        ]  # fmt: skip
        subprocess.run(cmd, cwd=ROOT, check=True)
    live = json.loads((RESULTS / "perf" / f"speed_out_of_core_suite_{mode}.json").read_text())
    shape = f"{s['oc_rows']:,} x {s['oc_cols']:,}, this run"
    out, rows = {"this_run": live}, out_of_core_rows(live, shape)
    if mode == "full" and SEPARATE_OUT_OF_CORE.exists():
        separate = json.loads(SEPARATE_OUT_OF_CORE.read_text())
        out["separate_20GB"] = dict(file=str(SEPARATE_OUT_OF_CORE.relative_to(ROOT)))
        rows += out_of_core_rows(separate, f"1M x 5k = 20 GB, from {SEPARATE_OUT_OF_CORE.name}")
    return out, rows


def distributed(steps):
    res = distributed_fit.measure(2, steps, 3)
    # "The same result up to floating-point reduction order": the two ranks' fit is no
    # farther from one process's than a one-ulp change of X carries the weights, to
    # within an order of magnitude.
    same = res["max_weight_diff_1_vs_2"] <= 10 * res["max_weight_diff_1_vs_ulp"]
    rate = res["two_over_one_rate"]
    return res, [
        row(
            "2 gloo processes / 1 process, training rows/s, K=2",
            rate,
            f"{rate:.2f}x ({res['two_ranks'][0]['rows_per_s']:.0f} vs "
            f"{res['one_rank']['rows_per_s']:.0f} rows/s)",
            "-",
            None,
        ),
        row(
            "2 processes vs 1, same seed: largest weight difference",
            res["max_weight_diff_1_vs_2"],
            f"{res['max_weight_diff_1_vs_2']:.1e} (X one ulp up: "
            f"{res['max_weight_diff_1_vs_ulp']:.1e}; another seed: "
            f"{res['max_weight_diff_seed_0_vs_1']:.2f}; ranks equal bitwise: "
            f"{res['ranks_bitwise_equal']})",
            "<= 10 x the one-ulp fit's",
            bool(same and res["ranks_bitwise_equal"]),
        ),
    ]


def table(rows):
    lines = ["| figure | measured | target | met |", "|---|---|---|---|"]
    for r in rows:
        met = {True: "met", False: "**missed**", None: "reported"}[r["met"]]
        lines.append(f"| {r['figure']} | {r['measured']} | {r['target']} | {met} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ks", type=int, nargs="+", default=list(KS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["training", "inference", "compile", "out_of_core", "distributed"],
    )
    args = ap.parse_args()
    mode = "quick" if args.quick else "full"
    s = SETTINGS[mode]
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    load0 = list(os.getloadavg())
    machine = hardware()
    results, rows, fitted = dict(mode=mode, settings=s, args=vars(args)), [], {}
    if "training" not in args.skip or "inference" not in args.skip:
        results["training"], r, fitted = training(args.ks, STEPS[mode], s["rounds"])
        rows += r if "training" not in args.skip else []
    if "inference" not in args.skip:
        results["inference"], r = inference(fitted, s["predict_gflop"], s["predict_repeats"])
        rows += r
    if "compile" not in args.skip:
        results["compile"], r = compiled(s["compile_ks"], s["compile_steps"])
        rows += r
    if "out_of_core" not in args.skip:
        results["out_of_core"], r = out_of_core(s, mode)
        rows += r
    if "distributed" not in args.skip:
        results["distributed"], r = distributed(s["dist_steps"])
        rows += r
    load1 = list(os.getloadavg())
    wall = time.perf_counter() - start
    text = table(rows)
    print(f"\nload average before {load0}, after {load1}; {wall:.0f} s; {args.threads} thread")
    print(text)
    results.update(
        table=rows,
        table_markdown=text,
        hardware=machine,
        load_average_before=load0,
        load_average_after=load1,
        wall_seconds=wall,
    )
    out = RESULTS / "perf" / f"suite{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
