"""Whether ``predict`` trails LDA on a quality-panel case beyond what the split alone does.

For each split seed the panel's data and split of that seed are rebuilt, each
configuration of ``benchmarks.quality.panel.CONFIGS`` is fitted (``random_state`` = the
seed), and next to its accuracy the script prints LDA's, QDA's and logistic regression's
on the same rows, the paired difference to LDA, and the held-out density each
classifier's rule is built on: the mean of log p(x | own population) under the CPVAE
(importance-sampled, eq. 7-8), under LDA's Gaussians (class means, pooled covariance)
and under QDA's (one covariance per population). A gap that the split explains has a
mean paired difference within about two standard errors of zero; a gap that the density
explains shows the CPVAE's held-out log-likelihood below the Gaussian of the baseline it
trails.

    python -m benchmarks.diagnostics.predict_gap --case heart_4sites --seeds 0 1 2 3 4 5
"""

import argparse
import time
import warnings

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy.stats import multivariate_normal

from benchmarks import _common as C
from benchmarks.quality.panel import CASES, CONFIGS, _split, baselines
from sklearn_cpvae import CPVAE


def gaussian_loglik(Xtr, ytr, Xte, yte, pooled, reg_param=0.0):
    """Mean held-out log N(x; mean_k, Sigma) of each row under its own population;
    ``reg_param`` shrinks each covariance as scikit-learn's QDA does."""
    classes = np.unique(ytr)
    means = {c: Xtr[ytr == c].mean(0) for c in classes}
    d = Xtr.shape[1]
    if pooled:
        centred = Xtr - np.array([means[c] for c in ytr])
        cov = np.cov(centred, rowvar=False)
        # features in very different units (wine's density against its sulphur dioxide)
        # leave the pooled covariance so ill-conditioned that scipy's singular cut sends
        # held-out rows to -inf; a ridge of 1e-6 of its mean variance keeps them finite
        cov += 1e-6 * np.mean(np.diag(cov)) * np.eye(d)
        covs = dict.fromkeys(classes, cov)
    else:
        covs = {
            c: (1 - reg_param) * np.cov(Xtr[ytr == c], rowvar=False) + reg_param * np.eye(d)
            for c in classes
        }
    ll = np.empty(len(yte))
    for c in classes:
        r = yte == c
        if r.any():
            ll[r] = multivariate_normal(means[c], covs[c], allow_singular=True).logpdf(Xte[r])
    return float(ll.mean())


def one_split(name, mode, seed, configs, threads=1):
    torch.set_num_threads(threads)
    case = CASES[name][0](mode, seed)
    X, y = np.asarray(case["X"], float), np.asarray(case["y"])
    tr, te = _split(case, seed)
    out = {"seed": seed, "n_test": int(len(te))}
    out.update(baselines(X[tr], y[tr], X[te], y[te]))
    out["lda_gauss_loglik"] = gaussian_loglik(X[tr], y[tr], X[te], y[te], pooled=True)
    # the covariances of the QDA that was scored (regularised where one was singular)
    reg = (out["qda_params"] or {}).get("reg_param", 0.0)
    out["qda_gauss_loglik"] = gaussian_loglik(X[tr], y[tr], X[te], y[te], False, reg)
    out["configs"] = {}
    for cname in configs:
        params = {**CONFIGS[cname], **case.get("fit_kwargs", {}), "random_state": seed}
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = CPVAE(**params).fit(X[tr], y[tr])
        out["configs"][cname] = {
            "acc": float(model.score(X[te], y[te])),
            "loglik": float(model.score_samples(X[te], populations=y[te]).mean()),
            "n_iter": int(model.n_iter_),
            "fit_s": time.perf_counter() - t0,
        }
    return out


BASELINES = (("LDA", "lda_acc"), ("QDA", "qda_acc"), ("logreg", "logreg_acc"))


def summarise(name, records, configs):
    print(f"\n{name}: {len(records)} splits, {records[0]['n_test']} held-out rows each")
    print("held-out log p(x | own population), mean over splits:")
    print(f"  LDA Gaussians {np.mean([r['lda_gauss_loglik'] for r in records]):9.2f}")
    print(f"  QDA Gaussians {np.mean([r['qda_gauss_loglik'] for r in records]):9.2f}")
    for c in configs:
        print(f"  {c:13s} {np.mean([r['configs'][c]['loglik'] for r in records]):9.2f}")
    lda = np.array([r["lda_acc"] for r in records])
    print("accuracy, per split, then mean and the paired difference to LDA (mean +- s.e.):")
    rows = [(label, [r[key] for r in records]) for label, key in BASELINES]
    rows += [(c, [r["configs"][c]["acc"] for r in records]) for c in configs]
    for label, acc in rows:
        a = np.array(acc)
        d = a - lda
        print(
            f"  {label:13s} {' '.join(f'{v:.3f}' for v in a)}   mean {a.mean():.3f}   "
            f"{d.mean():+.3f} +- {d.std(ddof=1) / np.sqrt(len(d)):.3f}"
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", nargs="+", default=["heart_4sites"], choices=sorted(CASES))
    p.add_argument("--mode", default="quick", choices=("quick", "full"))
    p.add_argument("--configs", nargs="+", default=["new_defaults"], choices=sorted(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(6)))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="splits fitted in parallel")
    args = p.parse_args()
    start = time.perf_counter()
    runs = {}
    for name in args.case:
        runs[name] = Parallel(n_jobs=args.jobs)(
            delayed(one_split)(name, args.mode, s, args.configs, args.threads) for s in args.seeds
        )
        summarise(name, runs[name], args.configs)
    print(f"\n{time.perf_counter() - start:.0f} s")
    C.write_runs(f"predict_gap_{args.mode}_{'_'.join(args.case)}", args, runs, start)


if __name__ == "__main__":
    main()
