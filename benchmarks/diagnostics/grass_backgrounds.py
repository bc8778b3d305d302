"""Grassy-MNIST on the ImageNet grass photos vs on the CC0 scikit-image grass texture.

Without the ImageNet photos, :func:`sklearn_cpvae.datasets.load_grass_backgrounds` cuts
the CC0 grass texture into 25 tiles. This rebuilds Table 1's quick set-up (same digits,
sizes, models and budget as ``benchmarks.paper.table1_subgroups --quick``) once per
background and reports how the task's difficulty and the models' scores move.

    python -m benchmarks.diagnostics.grass_backgrounds [--seeds 0] [--threads 1]

Writes ``benchmarks/results/diagnostics/grass_backgrounds.json``.
"""

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from benchmarks import _common as C
from benchmarks.paper import table1_subgroups as T1
from sklearn_cpvae import TrainingDivergedError
from sklearn_cpvae.datasets import load_grass_backgrounds, make_grassy_mnist


def build(photos, cfg):
    """Train/test sets as ``table1_subgroups.prepare`` makes them, on ``photos``."""
    X_tr, y_tr, X_te, y_te = C.mnist_arrays()
    sets = []
    for digits, labels, n in ((X_tr, y_tr, cfg["n_train"]), (X_te, y_te, cfg["n_test"])):
        kw = dict(n_samples=n, populations=C.DIGIT_HALVES, random_state=0)
        X, pop, digit = make_grassy_mnist(digits, labels, photos, **kw)
        G, _, _ = make_grassy_mnist(digits, labels, photos, digit_scale=0.0, **kw)
        sets.append((X, pop, digit, G))
    mean, scale = C.standardiser(sets[0][0])

    def std(d):
        return ((d[0] - mean) / np.float32(scale), d[1], d[2], d[3], d[0] - d[3])

    return std(sets[0]), std(sets[1])


def difficulty(test):
    """How much of the pixel variance is digit: var(digit part) / var(raw row)."""
    _, _, _, G, D = test
    X = G + D
    return {
        "grass_pixel_sd": float(G.std()),
        "digit_share_of_variance": float(D.var(0).sum() / X.var(0).sum()),
    }


def main():
    args = C.parse_args(__doc__.splitlines()[0])
    cfg = T1.QUICK
    out = {"config": cfg, "seeds": args.seeds, "hardware": C.hardware(), "backgrounds": {}}
    t0 = time.perf_counter()
    for source in ("imagenet", "textures"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the source must be the one asked for
            photos, got = load_grass_backgrounds(C.DATA_DIR, background=source)
        train, test = build(photos, cfg)
        rec = {"n_photos": len(photos), **difficulty(test), "runs": []}
        for seed in args.seeds:
            run = {"seed": seed, "fit_seconds": {}, **T1.linear_baselines(train, test, seed)}
            for name, model in T1.make_models(cfg, seed, args.device).items():
                with C.Timer() as t, warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    try:
                        model.fit(train[0]) if name == "vae" else model.fit(train[0], train[1])
                    except TrainingDivergedError as exc:
                        # The estimator restored its best weights: score those, say so.
                        run.setdefault("diverged", {})[name] = str(exc)
                run["fit_seconds"][name] = t.seconds
                run[name] = T1.evaluate(name, model, test)
                print(f"{source} seed {seed} {name} fit {t.seconds:.1f}s", flush=True)
            rec["runs"].append(run)
        rec["summary"] = T1.summarise(rec["runs"])
        out["backgrounds"][got] = rec
        s = rec["summary"]
        print(
            f"{got:8s} photos {len(photos):3d}  digit share {rec['digit_share_of_variance']:.3f}  "
            f"pixels ARI {s['pixels']['shared']['ari']['mean']:.4f}  "
            f"PCA ARI {s['pca']['shared']['ari']['mean']:.4f}  "
            f"VAE ARI {s['vae']['shared']['ari']['mean']:.4f}  "
            + "  ".join(
                f"{v} private ARI {s[v]['private']['ari']['mean']:.4f}" for v in T1.VARIANTS
            ),
            flush=True,
        )
    out["wall_seconds"] = time.perf_counter() - t0
    C.write_result("grass_backgrounds", out, args.tag)


if __name__ == "__main__":
    main()
