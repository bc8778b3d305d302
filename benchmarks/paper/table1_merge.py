"""Join Table 1 results files written by separate runs (seeds, or subsets of models).

A full-size seed takes about half an hour per model set on two CPU cores, so the full
table is run in pieces (``table1_subgroups.py --seeds 1 --models vae no_mi alpha1``) and
joined here. Files are read in the order given; a later file's entry for the same seed and
model replaces an earlier one, which is how a re-chosen annealing schedule replaces the
annealed row of an earlier run. Every (seed, model) records the file it came from.

    python -m benchmarks.paper.table1_merge benchmarks/results/paper/table1_full_seed0.json \\
        benchmarks/results/paper/table1_full_seed1.json ... --tag merged
"""

from benchmarks import _common as C
from benchmarks.paper import table1_subgroups as T1

MODELS = ("vae", *T1.VARIANTS)
BASELINES = ("pixels", "pca")


def merge(results, names):
    """One results dict from several; ``names`` labels each source in the provenance."""
    C.check_same_config(results)
    by_seed = {}
    for res, name in zip(results, names, strict=True):
        # Files from before the option was recorded hold None: their schedule was then
        # the module's default of the day, not necessarily today's.
        schedule = res.get("anneal_schedule")
        for run in res["runs"]:
            rec = by_seed.setdefault(
                run["seed"], {"seed": run["seed"], "fit_seconds": {}, "source": {}}
            )
            for model in (*MODELS, *BASELINES):
                if model in run:
                    rec[model] = run[model]
                    rec["source"][model] = {
                        "file": name,
                        "device": res.get("device"),
                        "anneal_schedule": schedule,
                    }
                    if model in run["fit_seconds"]:
                        rec["fit_seconds"][model] = run["fit_seconds"][model]
                    if model in run.get("diverged", {}):
                        rec.setdefault("diverged", {})[model] = run["diverged"][model]
                    elif model in rec.get("diverged", {}):
                        del rec["diverged"][model]
    runs = [by_seed[s] for s in sorted(by_seed)]
    missing = [(r["seed"], m) for r in runs for m in (*MODELS, *BASELINES) if m not in r]
    if missing:
        raise ValueError(f"no result for (seed, model): {missing}")
    summary = T1.summarise(runs)
    return {
        "config": results[0]["config"],
        "seeds": sorted(by_seed),
        "runs": runs,
        "summary": summary,
        "orderings": T1.check_orderings(summary),
        "mode": "merged",
        **C.merge_provenance(results, names),
    }


def main():
    merged = C.merge_cli(__doc__, merge, "table1_full")
    print("orderings:", merged["orderings"])


if __name__ == "__main__":
    main()
