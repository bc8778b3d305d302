"""CelebA population swap (the paper's Fig. 4), drawn and measured with the defaults.

Fits ``CPVAE`` with its default parameters (``max_iter`` aside) on the quality panel's
CelebA case (``benchmarks.quality.panel.celeba``: 4,000 faces, male / non-male, 32 x 32
RGB in [0, 1], 30 % held out), decodes held-out faces through every population's private
encoder and decoder (``PopulationSwapDisplay``), and measures what the swap does:

* **traits change**: a standardised logistic regression trained on the training pixels
  (male / non-male) classifies the swapped reconstructions; the share classified as the
  population they were decoded as, against the same share for the reconstructions in
  the faces' own populations;
* **the person stays**: for each swapped reconstruction, the rank of its source face
  among all held-out faces by pixel distance (top-1 and top-5 share, chance 1 / n_test
  and 5 / n_test), against the same for the own-population reconstructions.

    python -m benchmarks.paper.celeba_swap [--max-iter 100] [--seed 0]

writes ``benchmarks/results/paper/celeba_swap.json`` and ``docs/figures/fig4_celeba_swap.png``.
"""

import argparse
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks import _common as C
from benchmarks.quality.panel import _split, celeba
from sklearn_cpvae import CPVAE
from sklearn_cpvae.plotting import PopulationSwapDisplay

N_SHOW = 8  # faces in the figure, half from each population


def swapped(model, X, population):
    """``X`` autoencoded through ``population``'s private encoder and decoder."""
    as_k = np.full(len(X), population)
    return model.inverse_transform(model.transform(X, populations=as_k), populations=as_k)


def source_rank(recon, originals, source):
    """Rank (0 = nearest) of each reconstruction's source among ``originals``."""
    d = ((recon[:, None, :] - originals[None, :, :]) ** 2).sum(-1)
    return (d < d[np.arange(len(recon)), source][:, None]).sum(1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    case = celeba("full", args.seed)
    X, y = case["X"], case["y"]
    tr, te = _split(case, args.seed)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = CPVAE(max_iter=args.max_iter, random_state=args.seed).fit(X[tr], y[tr])
    fit_s = time.perf_counter() - start
    Xte, yte = X[te], y[te]
    judge = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(X[tr], y[tr])

    out = {
        "fit_s": round(fit_s, 1),
        "n_iter": int(model.n_iter_),
        "warnings": sorted({type(w.message).__name__ for w in caught}),
        "n_test": int(len(te)),
        "predict_acc": float(np.mean(model.predict(Xte) == yte)),
        "judge_acc_on_originals": float(judge.score(Xte, yte)),
        "per_source_population": {},
    }
    for source in model.classes_:
        rows = np.flatnonzero(yte == source)
        entry = {}
        for target in model.classes_:
            rec = np.clip(swapped(model, Xte[rows], target), 0, 1)
            rank = source_rank(rec, Xte, rows)
            entry[f"as {target}"] = {
                "judged_as_target": float(np.mean(judge.predict(rec) == target)),
                "source_top1": float(np.mean(rank == 0)),
                "source_top5": float(np.mean(rank < 5)),
            }
        out["per_source_population"][str(source)] = entry
    out["chance_top1"] = 1 / len(te)
    out["chance_top5"] = 5 / len(te)

    rng = np.random.default_rng(args.seed)
    idx = np.concatenate(
        [rng.choice(np.flatnonzero(yte == k), N_SHOW // 2, replace=False) for k in model.classes_]
    )
    disp = PopulationSwapDisplay.from_estimator(
        model,
        Xte[idx],
        yte[idx],
        n_images=N_SHOW,
        image_shape=(32, 32, 3),
        inverse_func=lambda a: np.clip(a, 0, 1),
        title="CelebA, held-out faces (own population above each column) decoded "
        "through each population's private encoder and decoder",
    )
    C.FIGURES.mkdir(parents=True, exist_ok=True)
    disp.figure_.savefig(C.FIGURES / "fig4_celeba_swap.png", dpi=110, bbox_inches="tight")
    plt.close(disp.figure_)

    path = C.write_result("celeba_swap", {"args": vars(args), "results": out})
    for source, entry in out["per_source_population"].items():
        for target, v in entry.items():
            print(
                f"{source:>9s} {target:>12s}: judged as target {v['judged_as_target']:.3f}, "
                f"source top-1 {v['source_top1']:.3f}, top-5 {v['source_top5']:.3f}"
            )
    print(
        f"predict {out['predict_acc']:.3f}; "
        f"judge on originals {out['judge_acc_on_originals']:.3f}; "
        f"chance top-1 {out['chance_top1']:.4f}; fit {fit_s:.0f} s; wrote {path}"
    )


if __name__ == "__main__":
    main()
