"""Join Table 2 results files written by separate runs (datasets, seeds or variants).

A 60,000-row dataset takes over an hour per seed on two CPU cores, so it may be run in
pieces (``table2_classification.py --datasets grassy_mnist --variants alpha1
--no-references``) and joined here. Files are read in the order given; a later file's
entry for the same dataset, seed and model (a variant, ``cnn`` or ``logreg``) replaces an
earlier one. Every entry records the file and commit it came from.

    python -m benchmarks.paper.table2_merge benchmarks/results/paper/table2_full_mnist.json \\
        ... --tag full_merged
"""

from benchmarks import _common as C
from benchmarks.paper import table2_classification as T2

MODELS = (*T2.VARIANTS, "cnn", "logreg")


def merge(results, names):
    """One results dict from several; ``names`` labels each source in the provenance."""
    C.check_same_config(results)
    datasets = {}
    for res, name in zip(results, names, strict=True):
        for dataset, entry in res["results"].items():
            out = datasets.setdefault(
                dataset, {k: entry[k] for k in ("n_train", "n_test", "likelihood")} | {"runs": {}}
            )
            if (out["n_train"], out["n_test"]) != (entry["n_train"], entry["n_test"]):
                raise ValueError(f"{dataset}: the files used different numbers of rows")
            for run in entry["runs"]:
                rec = out["runs"].setdefault(run["seed"], {"seed": run["seed"], "source": {}})
                for model in MODELS:
                    if model in run:
                        rec[model] = run[model]
                        rec["source"][model] = {
                            "file": name,
                            "commit": res.get("commit"),
                            "anneal_schedule": res.get("anneal_schedule"),
                        }
    merged = {}
    for dataset, out in datasets.items():
        runs = [out["runs"][s] for s in sorted(out["runs"])]
        missing = [(r["seed"], v) for r in runs for v in T2.VARIANTS if v not in r]
        if missing:
            raise ValueError(f"{dataset}: no result for (seed, variant): {missing}")
        merged[dataset] = out | {"runs": runs, "summary": T2.summarise(runs)}
    return {
        "config": results[0]["config"],
        "results": merged,
        "paper": T2.PAPER,
        "mode": "merged",
        "seeds": sorted({s for e in merged.values() for s in (r["seed"] for r in e["runs"])}),
        **C.merge_provenance(results, names),
    }


def main():
    C.merge_cli(__doc__, merge, "table2")


if __name__ == "__main__":
    main()
