"""Print the markdown tables of ``docs/reproduction.md`` from ``benchmarks/results/paper/*.json``.

python -m benchmarks.paper.report [--suffix _full_merged _mnist_1000 ...]
"""

import argparse
import json

from benchmarks import _common as C

PAPER_T1 = {
    "vae": (".1881", "—"),
    "no_mi": (".0306", ".1926"),
    "alpha1": (".0031", ".2281"),
    "anneal": ("—", "—"),
    "pca": ("≈ .003 (cPCA paper)", "—"),
    "pixels": ("—", "—"),
}
NAMES = {
    "pixels": "KMeans on raw pixels",
    "pca": "KMeans on PCA (100)",
    "vae": "VAE",
    "no_mi": "CPVAE, No MI",
    "alpha1": "CPVAE, α = 1",
    "anneal": "CPVAE, α annealed",
}


def ms(d, fmt=".4f"):
    return f"{d['mean']:{fmt}} ± {d['sd']:{fmt}}"


def table1(res):
    s = res["summary"]
    lines = [
        "| model | shared ARI | private ARI | paper shared / private ARI | shared NMI | "
        "private NMI | shared sil. | private sil. | AU shared / private | grass R² of "
        "shared-only | digit R² of private-only | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("pixels", "pca", "vae", "no_mi", "alpha1", "anneal"):
        if name not in s:  # a file of a run with --models
            continue
        e = s[name]
        priv = e.get("private")
        au = (
            f"{e['au_shared']['mean']:.1f} / "
            + (f"{e['au_private']['mean']:.1f}" if "au_private" in e else "—")
            if "au_shared" in e
            else "—"
        )
        label = NAMES[name]
        if e.get("n_seeds", len(res["seeds"])) < len(res["seeds"]):
            label += f" ({e['n_seeds']} of {len(res['seeds'])} seeds)"
        lines.append(
            f"| {label} | {ms(e['shared']['ari'])} | "
            f"{ms(priv['ari']) if priv else '—'} | {' / '.join(PAPER_T1[name])} | "
            f"{ms(e['shared']['nmi'], '.3f')} | {ms(priv['nmi'], '.3f') if priv else '—'} | "
            f"{ms(e['shared']['silhouette'], '.3f')} | "
            f"{ms(priv['silhouette'], '.3f') if priv else '—'} | {au} | "
            + (
                f"{ms(e['grass_r2_shared_only'], '.3f')} | "
                if "grass_r2_shared_only" in e
                else "— | "
            )
            + (
                f"{ms(e['digit_r2_private_only'], '.3f')} | "
                if "digit_r2_private_only" in e
                else "— | "
            )
            + (f"{e['fit_seconds']['mean']:.0f} |" if "fit_seconds" in e else "— |")
        )
        if "incl_diverged" in e:
            d = e["incl_diverged"]
            lines.append(
                f"| {NAMES[name]}, all {d['n_seeds']} seeds (diverged fits scored with "
                f"their restored weights) | {ms(d['shared_ari'])} | {ms(d['private_ari'])} | "
                + ("— | " * 9).rstrip()
            )
    return "\n".join(lines)


def table2(res):
    lines = [
        "| dataset | likelihood | n train / test | annealed α (std / agg) | α = 1 (std / agg) | "
        "No MI (std / agg) | paper (anneal / α=1 / No MI / ResNet-50) | CNN (skorch) | "
        "LogisticRegression |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in res["results"].items():
        s = e["summary"]

        def pair(v, s=s, runs=e["runs"]):
            if f"{v}_standard" not in s:  # a file of a run with --variants
                return "—"
            a, b = s[f"{v}_standard"], s[f"{v}_aggregate"]
            # †: stopped by the divergence guard, scored with the weights it restored.
            mark = " †" if any("diverged" in r[v] for r in runs) else ""
            return f"{100 * a['mean']:.1f} / {100 * b['mean']:.1f}{mark}"

        paper = res["paper"].get(name.replace("_bernoulli", "") if "bern" not in name else "")
        label = name + (" (lossy JPEG)" if name.startswith("cifar") else "")
        lines.append(
            f"| {label} | {e['likelihood']} | {e['n_train']} / {e['n_test']} | "
            f"{pair('anneal')} | {pair('alpha1')} | {pair('no_mi')} | "
            f"{' / '.join(map(str, paper)) if paper else '—'} | "
            + (
                f"{100 * s['cnn']['mean']:.1f} | {100 * s['logreg']['mean']:.1f} |"
                if "cnn" in s
                else "— | — |"
            )
        )
    return "\n".join(lines)


def sweep(res):
    lines = [
        "| final α | ramp epochs | val. accuracy (std / agg) | shared ARI | private ARI | "
        "AU shared / private | grass R² shared-only |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(res["rows"], key=lambda r: (r["alpha_final"], r["ramp_epochs"])):
        lines.append(
            f"| {r['alpha_final']:g} | {r['ramp_epochs'] if r['alpha_final'] != 1 else 0} | "
            f"{100 * r['val_accuracy_standard']:.1f} / {100 * r['val_accuracy_aggregate']:.1f} | "
            f"{r['shared']['ari']:.4f} | {r['private']['ari']:.4f} | "
            f"{r['au_shared']} / {r['au_private']:.1f} | {r['grass_r2_shared_only']:.3f} |"
        )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument(
        "--suffix", nargs="+", default=["_quick"], help="results files named <table><suffix>*.json"
    )
    args = p.parse_args()
    for name, fn in (("anneal_sweep", sweep), ("table1", table1), ("table2", table2)):
        paths = {
            q for suffix in args.suffix for q in C.result_dir(name).glob(f"{name}{suffix}*.json")
        }
        for path in sorted(paths):
            res = json.loads(path.read_text())
            print(f"\n### {path.name}  (wall {res['wall_seconds']:.0f} s)\n")
            if res.get("orderings") is not None:
                print("orderings:", res["orderings"], "\n")
            print(fn(res))


if __name__ == "__main__":
    main()
