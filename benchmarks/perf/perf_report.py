"""Markdown tables from the JSON results of the benchmark scripts (for docs/performance.md).

python -m benchmarks.perf.perf_report > docs/performance_results.md
"""

import json
import os
import statistics

RES = "benchmarks/results/perf"


def load(name):
    path = os.path.join(RES, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def speed(r):
    m = r["machine"]
    print(
        f"### Speed ({m['device']}, {m['cpu']}, {m['torch_threads']} threads, torch "
        f"{m['torch']}; load average {m['load_average'][0]:.1f} at start, "
        f"{r['machine_after']['load_average'][0]:.1f} at end)\n"
    )
    if not r["train"]:
        return
    print(
        "GEMM = float32 (800 x 784) @ (784 x 2048) rate measured in the same process just "
        "before and after each measurement (median); fraction = FLOPs counted by "
        "`torch.utils.flop_counter` x rate / GEMM.\n"
    )
    print(
        "| K | MI term | MFLOP/sample | estimator samples/s | of roofline | bare loop "
        "samples/s | of roofline | sklearn overhead | GEMM GFLOP/s | train peak +MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in r["train"]:
        e, b = t["estimator"], t["bare"]
        mi = "exact" if t["mi_samples"] is None else f"m={t['mi_samples']}"
        print(
            f"| {t['k']} | {mi} | {t['flops_per_sample'] / 1e6:.1f} | "
            f"{e['samples_per_s']:.0f} | {t['roofline_fraction']:.0%} | "
            f"{b['samples_per_s']:.0f} | {t['bare_roofline_fraction']:.0%} | "
            f"{t['sklearn_overhead']:+.1%} | {statistics.median(e['gemm_gflops']):.0f} | "
            f"{e['train_peak_rss_mb']:.0f} |"
        )
    print()
    if r["predict"]:
        print(
            "| K | predict_proba S=50 MFLOP/row | rows timed | rows/s | of roofline | "
            "GEMM GFLOP/s |"
        )
        print("|---|---|---|---|---|---|")
        for p in r["predict"]:
            print(
                f"| {p['k']} | {p['flops_per_row'] / 1e6:.0f} | {p['rows']} | "
                f"{p['rows_per_s']:.1f} | {p['roofline_fraction']:.0%} | "
                f"{statistics.median(p['gemm_gflops']):.0f} |"
            )
        print()
    if "vae_bare" in r:
        v = r["vae_bare"]
        print(
            f"Plain VAE of the same size (bare loop): {v['flops_per_sample'] / 1e6:.1f} "
            f"MFLOP/sample, {v['samples_per_s']:.0f} samples/s "
            f"({v['roofline_fraction']:.0%} of roofline)."
        )
        if "vae_skorch" in r:
            s = r["vae_skorch"]
            print(
                f"Same VAE in a skorch `NeuralNet` (default DataLoader): "
                f"{s['samples_per_s']:.0f} samples/s ({s['roofline_fraction']:.0%}), "
                f"{s['slowdown_vs_bare']:+.0%} time vs the bare loop."
            )
        print()
    if "memory" in r:
        print("| method | rows | input MB | output MB | extra peak RSS MB | time s |")
        print("|---|---|---|---|---|---|")
        for mrec in r["memory"]:
            print(
                f"| {mrec['method']} | {mrec['rows']:,} | {mrec['input_mb']:.0f} | "
                f"{mrec['output_mb']:.1f} | {mrec['extra_peak_mb']:.1f} | "
                f"{mrec['time_s']:.1f} |"
            )
        print()
    if "parallel" in r:
        items = [
            f"{k} = {round(v, 1) if isinstance(v, float) else v}" for k, v in r["parallel"].items()
        ]
        print("Parallel search: " + ", ".join(items))
        print()


def optimizer(r):
    rows = r.get("optimizer")
    if not rows:
        return
    print(
        "| K | weights (M) | fused Adam ms/step | foreach Adam ms/step | exact-MI step GEMMs "
        "at calibrated rate, ms | GEMM GFLOP/s |"
    )
    print("|---|---|---|---|---|---|")
    for o in rows:
        print(
            f"| {o['k']} | {o['n_params'] / 1e6:.1f} | {o['adam_fused_s'] * 1e3:.0f} | "
            f"{o['adam_foreach_s'] * 1e3:.0f} | {o['step_gemm_s_at_rate'] * 1e3:.0f} | "
            f"{o['gemm_gflops']:.0f} |"
        )
    print()


def quality(q):
    print(
        f"### MI estimator quality (MNIST, K = 10, {q['meta']['n_train']} train / "
        f"{q['meta']['n_test']} test rows, {q['meta']['epochs']} epochs)\n"
    )
    print(
        "| seed | precision | MI term | test accuracy | shared-space ARI | final loss | "
        "final MI | median epoch s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in q["rows"]:
        mi = "exact" if r["mi_samples"] is None else f"m={r['mi_samples']}"
        print(
            f"| {r['seed']} | {r.get('precision', 'float32')} | {mi} | {r['accuracy']:.3f} | "
            f"{r['shared_ari']:.3f} | {r['final_loss']:.1f} | {r['final_mi']:.2f} | "
            f"{r['median_epoch_s']:.1f} |"
        )
    print()


def scaling(s):
    m = s["machine"]
    print(
        f"### Scaling ({m['device']}, {m['torch_threads']} threads; epoch time = median "
        "step time x steps per epoch)\n"
    )
    print("| curve | N | K | D | MI term | MFLOP/sample | step ms | epoch s | of roofline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in ("rows", "populations", "features"):
        for r in s[key]:
            mi = "exact" if r["mi_samples"] is None else f"m={r['mi_samples']}"
            print(
                f"| {key} | {r['rows']:,} | {r['k']} | {r['features']} | {mi} | "
                f"{r['flops_per_sample'] / 1e6:.1f} | "
                f"{statistics.median(r['step_s']) * 1e3:.0f} | {r['epoch_s']:.1f} | "
                f"{r['roofline_fraction']:.0%} |"
            )
    print()


def main():
    for name, fn in (
        ("speed_cpu.json", speed),
        ("speed_cpu_run3_train.json", speed),
        ("speed_cpu_run4_passive_train.json", speed),
        ("speed_cpu_loaded.json", speed),
        ("speed_cuda.json", speed),
        ("speed_cpu_optimizer_loaded.json", optimizer),
        ("mi_quality.json", quality),
        ("mi_quality_quick_f32.json", quality),
        ("mi_quality_bf16.json", quality),
        ("scaling_cpu.json", scaling),
        ("scaling_cpu_loaded.json", scaling),
        ("scaling_cuda.json", scaling),
    ):
        data = load(name)
        if data is not None:
            print(f"<!-- from benchmarks/results/perf/{name} -->\n")
            fn(data)


if __name__ == "__main__":
    main()
