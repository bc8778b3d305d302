"""Where each stopping rule would end a quality-panel fit, read from fits that run every epoch.

Fits the default CPVAE on panel cases (data and split of seed 0, quick size) with
several model seeds and ``n_iter_no_change = max_iter``, so that every epoch runs and
its loss is recorded. On each recorded history it then replays two rules with the
defaults ``tol=1e-4`` and a window of 10 epochs:

* ``record``: scikit-learn's MLP rule, stop after 10 epochs in a row that do not beat
  the lowest epoch loss so far by ``tol`` of its size (the rule before the window rule);
* ``window``: the estimator's rule (``sklearn_cpvae._training.plateaued``), stop when
  the mean loss of the last 10 epochs is not below the mean of the 10 before by ``tol``.

For each it prints the stopping epoch and the mean training loss of the five epochs up
to it, beside that of the last five epochs, and the epoch-to-epoch noise of the loss
(standard deviation of its differences over the last 30 epochs, divided by sqrt 2).

    python -m benchmarks.diagnostics.stopping_rule --seeds 0 1 2
"""

import argparse
import math
import time
import warnings

import numpy as np
import torch

from benchmarks import _common as C
from benchmarks.quality.panel import CASES, _split
from sklearn_cpvae import CPVAE
from sklearn_cpvae._training import plateaued

DEFAULT_CASES = (
    "two_gaussian",
    "wine",
    "heart_4sites",
    "mice_genotype",
    "syn_lin_K2_both",
    "syn_nonlin_K2_both",
    "syn_lin_K5_both",
    "syn_lin_K2_mean",
    "syn_lin_K2_subspace",
    "syn_lin_K2_none",
    "syn_lin_K2_unbalanced100",
    "syn_lin_K2_scales1e3",
)


def record_rule(losses, tol, window):
    """First epoch (1-based) at which the best-epoch record rule stops, else None."""
    best, streak = math.inf, 0
    for epoch, value in enumerate(losses, 1):
        streak = 0 if value < best - tol * abs(best) else streak + 1
        best = min(best, value)
        if streak >= window:
            return epoch
    return None


def window_rule(losses, tol, window):
    """First epoch (1-based) at which the window rule stops, else None."""
    for epoch in range(1, len(losses) + 1):
        if plateaued(losses[:epoch], tol, window):
            return epoch
    return None


def history(name, seed):
    case = CASES[name][0]("quick", 0)
    tr, _ = _split(case, 0)
    X, y = np.asarray(case["X"], float), np.asarray(case["y"])
    params = {**case.get("fit_kwargs", {}), "random_state": seed}
    model = CPVAE(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_params(n_iter_no_change=model.max_iter).fit(X[tr], y[tr])
    return [r["loss"] for r in model.history_]


def summarise(losses, tol, window):
    out = {"epochs": len(losses), "loss_last5": float(np.mean(losses[-5:]))}
    out["noise_sd"] = float(np.std(np.diff(losses[-30:])) / math.sqrt(2))
    for rule in (record_rule, window_rule):
        stop = rule(losses, tol, window)
        key = rule.__name__.split("_")[0]
        out[f"{key}_stop"] = stop
        end = stop or len(losses)
        out[f"{key}_loss5"] = float(np.mean(losses[end - 5 : end]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), choices=sorted(CASES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--window", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    runs = {}
    print(f"{'fit':30s} {'record':>6s} {'window':>6s}  loss@record loss@window last5  noise")
    for name in args.cases:
        for seed in args.seeds:
            losses = history(name, seed)
            s = summarise(losses, args.tol, args.window)
            runs[f"{name}:{seed}"] = {**s, "losses": losses}
            print(
                f"{name + ':' + str(seed):30s} {s['record_stop'] or '-':>6} "
                f"{s['window_stop'] or '-':>6}  {s['record_loss5']:11.2f} "
                f"{s['window_loss5']:11.2f} {s['loss_last5']:6.2f}  {s['noise_sd']:.3f}",
                flush=True,
            )
    early = [k for k, s in runs.items() if s["record_stop"]]
    gap = [runs[k]["record_loss5"] - runs[k]["loss_last5"] for k in early]
    print(
        f"record rule stops {len(early)} of {len(runs)} fits, "
        f"{np.median(gap) if gap else 0:.2f} nats per row (median) above the last epochs' loss; "
        f"window rule stops {sum(bool(s['window_stop']) for s in runs.values())}"
    )
    C.write_runs("stopping_rule", args, runs, start)


if __name__ == "__main__":
    main()
