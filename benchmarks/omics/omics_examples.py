"""Worked multi-study examples on real data: CPVAE against what omics users run today.

    python -m benchmarks.omics.omics_examples [quartet|mice|heart|all] [--quick]

Data: ``$SKLEARN_CPVAE_DATA`` or ``<repo>/../shared/data`` (skips cleanly when absent).
Writes ``benchmarks/results/omics/omics_<name>.json`` and ``docs/figures/omics_<name>.png``;
``docs/omics.md`` reports them.

For each data set every method is fitted in this script on the same rows:
PCA, PCA after centring each study ("centred PCA", the simplest batch correction),
FactorAnalysis, a plain VAE (the same networks as CPVAE with no private space for any
population), contrastive PCA where it applies (the ``contrastive`` package), and CPVAE
(shared codes; for the contrastive set-up the target's private codes), with and without
the optional ``shared_invariance`` penalty. Reported: ARI / NMI of k-means on the codes
against the biology, silhouette of the biology, a linear probe of the biology and the
leakage probe (the study predicted from the codes; chance = 1 / n_studies).
"""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.model_selection import GroupKFold, StratifiedKFold

from sklearn_cpvae import CPVAE
from sklearn_cpvae.diagnostics import leakage_report, linear_probe, variance_explained

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "omics"
FIGURES = ROOT / "docs" / "figures"


def data_dir():
    env = os.environ.get("SKLEARN_CPVAE_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def load(name):
    path = data_dir() / name / f"{name}.npz"
    if not path.exists():
        print(f"SKIP {name}: {path} not found (set SKLEARN_CPVAE_DATA)")
        return None
    return np.load(path)


# ------------------------------------------------------------------ preprocessing
def standardise(x_tr, x_te):
    """Train-set z-scores (NaN ignored); features constant on train are dropped."""
    mu, sd = np.nanmean(x_tr, 0), np.nanstd(x_tr, 0)
    keep = np.isfinite(sd) & (sd > 1e-8)
    return (x_tr[:, keep] - mu[keep]) / sd[keep], (x_te[:, keep] - mu[keep]) / sd[keep]


def mean_impute(x):
    """Standardised data: NaN -> 0, the training mean (what the baselines need)."""
    return np.nan_to_num(x, nan=0.0)


# ------------------------------------------------------------------ baselines
def pca_codes(x_tr, p_tr, x_te, p_te, n, seed):
    m = PCA(n, random_state=seed).fit(mean_impute(x_tr))
    return m.transform(mean_impute(x_te))


def centred_pca_codes(x_tr, p_tr, x_te, p_te, n, seed):
    """Subtract each study's training mean, then PCA."""
    x_tr, x_te = mean_impute(x_tr).copy(), mean_impute(x_te).copy()
    means = {p: x_tr[p_tr == p].mean(0) for p in np.unique(p_tr)}
    for p, mu in means.items():
        x_te[p_te == p] -= mu
        x_tr[p_tr == p] -= mu
    m = PCA(n, random_state=seed).fit(x_tr)
    return m.transform(x_te)


def fa_codes(x_tr, p_tr, x_te, p_te, n, seed):
    m = FactorAnalysis(n, random_state=seed).fit(mean_impute(x_tr))
    return m.transform(mean_impute(x_te))


def cpvae_codes(params, block="shared", missing="mask"):
    def fit(x_tr, p_tr, x_te, p_te, n, seed):
        kw = dict(params)
        if block == "vae":
            kw["no_private_populations"] = list(np.unique(p_tr))
        model = CPVAE(n_shared=n, missing=missing, random_state=seed, device="cpu", **kw)
        model.fit(x_tr, p_tr)
        fit.model = model
        blocks = "private" if block == "private" else "shared"
        return model.set_params(blocks=blocks).transform(x_te, p_te)

    return fit


# ------------------------------------------------------------------ metrics
def shared_code_methods(params, study_word, invariance):
    """The baselines and CPVAE variants compared on shared codes, by display name."""
    methods = {
        "PCA": pca_codes,
        f"centred PCA (per {study_word})": centred_pca_codes,
        "FactorAnalysis": fa_codes,
        "VAE (no private space)": cpvae_codes(params, "vae"),
        "CPVAE shared": cpvae_codes(params),
        "CPVAE shared, objective=elbo": cpvae_codes({**params, "objective": "elbo"}),
    }
    for lam in invariance:
        methods[f"CPVAE shared, invariance={lam:g}"] = cpvae_codes(
            {**params, "shared_invariance": lam}
        )
    return methods


def biology_metrics(codes, bio, study=None, groups=None, seed=0):
    n_bio = len(np.unique(bio))
    km = KMeans(n_bio, n_init=10, random_state=seed).fit_predict(codes)
    out = {
        "ari": float(adjusted_rand_score(bio, km)),
        "nmi": float(normalized_mutual_info_score(bio, km)),
        "silhouette": float(silhouette_score(codes, bio)),
        "bio_probe": linear_probe(codes, bio, groups=groups, random_state=seed),
    }
    if study is not None and len(np.unique(study)) > 1:
        out["study_probe"] = linear_probe(codes, study, groups=groups, random_state=seed)
    return out


def summarise(per_fold):
    """{method: [metrics per fold]} -> {method: {metric: [mean, sd]}}."""
    out = {}
    for method, folds in per_fold.items():
        keys = folds[0].keys()
        out[method] = {
            k: [float(np.mean([f[k] for f in folds])), float(np.std([f[k] for f in folds]))]
            for k in keys
        }
    return out


def scatter_grid(panels, bio, study, title, path, bio_name, study_name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.1 * rows), squeeze=False)
    markers = "osD^v<>P*X"
    bios, studies = np.unique(bio), np.unique(study)
    cmap = plt.get_cmap("tab10")
    for ax, (name, codes) in zip(axes.flat, panels.items(), strict=False):
        xy = codes[:, :2] if codes.shape[1] <= 2 else PCA(2).fit_transform(codes)
        if xy.shape[1] == 1:
            xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
        for i, b in enumerate(bios):
            for j, s in enumerate(studies):
                sel = (bio == b) & (study == s)
                ax.scatter(
                    xy[sel, 0],
                    xy[sel, 1],
                    s=12,
                    color=cmap(i % 10),
                    marker=markers[j % len(markers)],
                    alpha=0.75,
                    linewidths=0,
                )
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[n:]:
        ax.axis("off")
    handles = [
        plt.Line2D([], [], color=cmap(i % 10), marker="o", ls="", label=f"{b}")
        for i, b in enumerate(bios)
    ]
    handles += [
        plt.Line2D([], [], color="grey", marker=markers[j % len(markers)], ls="", label=f"{s}")
        for j, s in enumerate(studies)
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(8, len(handles)),
        fontsize=7,
        title=f"colour: {bio_name}; marker: {study_name}",
        title_fontsize=8,
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08 + 0.03 * (len(handles) > 8), 1, 0.95))
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(name, payload):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"omics_{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=_jsonable))
    print(f"wrote {path}")


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(type(v))


def table(summary, keys):
    head = f"{'method':46s}" + "".join(f"{k:>17s}" for k in keys)
    lines = [head]
    for method, metrics in summary.items():
        cells = []
        for k in keys:
            if k in metrics:
                m, s = metrics[k]
                cells.append(f"{m:9.3f} ± {s:5.3f}")
            else:
                cells.append(f"{'-':>15s}")
        lines.append(f"{method:46s}" + "".join(f"{c:>17s}" for c in cells))
    return "\n".join(lines)


# ------------------------------------------------------------------ quartet
def run_quartet(args):
    d = load("quartet_multiomics")
    if d is None:
        return None
    payload = {
        "data": "quartet_multiomics",
        "populations": "batch (4 per omics)",
        "biology": "donor (D5, D6, F7, M8)",
        "omics": {},
    }
    epochs = 150 if args.quick else 400
    params = dict(
        n_private=2,
        hidden_layer_sizes=(64,),
        batch_size=12,
        max_iter=epochs,
        n_iter_no_change=epochs,
        n_importance_samples=16,
        learning_rate_init=1e-3,
    )
    for omic in ("prot", "meta"):
        x = d[f"{omic}_X"].astype(np.float64)
        bio, study = d[f"{omic}_donor"], d[f"{omic}_batch"]
        x, _ = standardise(x, x)
        methods = shared_code_methods(params, "batch", args.invariance)
        per, panels, extra = {}, {}, {}
        for name, fn in methods.items():
            folds = []
            for seed in range(args.seeds):
                tic = time.perf_counter()
                codes = fn(x, study, x, study, 3, seed)
                m = biology_metrics(codes, bio, study, seed=seed)
                m["seconds"] = time.perf_counter() - tic
                folds.append(m)
                if seed == 0:
                    panels[name] = codes
                    if name == "CPVAE shared":
                        rep = leakage_report(fn.model, x, study)
                        ve = variance_explained(fn.model, x, study)
                        extra = {
                            "leakage_report": rep,
                            "variance_explained_overall": {
                                **ve["overall"],
                                "classes": ve["classes"],
                            },
                        }
            per[name] = folds
        summary = summarise(per)
        print(
            f"\nquartet {omic}: {x.shape}, populations = batch, biology = donor "
            f"(mean ± sd over {args.seeds} seeds)"
        )
        print(table(summary, ["ari", "nmi", "silhouette", "bio_probe", "study_probe"]))
        payload["omics"][omic] = {
            "shape": list(x.shape),
            "summary": summary,
            "per_seed": per,
            **extra,
        }
        scatter_grid(
            panels,
            bio,
            study,
            f"Quartet {omic}: 3-d codes (2 PCs shown), all {len(x)} samples",
            FIGURES / f"omics_quartet_{omic}.png",
            "donor",
            "batch",
        )
    write("quartet", payload)
    return payload


# ------------------------------------------------------------------ mice protein
def run_mice(args):
    d = load("mice_protein")
    if d is None:
        return None
    sal = d["treatment"] == "Saline"
    target = sal & (d["behavior"] == "S/C")
    background = sal & (d["behavior"] == "C/S") & (d["genotype"] == "Control")
    rows = target | background
    x_all = d["X"][rows].astype(np.float64)
    pop = np.where(target[rows], "target", "background")
    geno = d["genotype"][rows]
    mouse = d["mouse_id"][rows]
    epochs = 60 if args.quick else 200
    params = dict(
        n_private=2,
        hidden_layer_sizes=(64,),
        batch_size=32,
        max_iter=epochs,
        n_iter_no_change=epochs,
        n_importance_samples=16,
    )
    methods = {
        "PCA (target)": "pca",
        "centred PCA (per population)": "cpca_centre",
        "FactorAnalysis (target)": "fa",
        "VAE (no private space)": "vae",
        "cPCA (contrastive pkg, best of auto alphas)": "cpca",
        "CPVAE contrastive: target private codes": "cvae",
        "CPVAE contrastive, NaN imputed by 0": "cvae_imputed",
    }
    per = {m: [] for m in methods}
    panels, cpca_alphas = {}, []
    folds = GroupKFold(n_splits=3).split(x_all, geno, groups=mouse)
    for fold, (tr, te) in enumerate(folds):
        x_tr, x_te = standardise(x_all[tr], x_all[te])
        p_tr, p_te = pop[tr], pop[te]
        te_t = p_te == "target"
        for name, kind in methods.items():
            tic = time.perf_counter()
            tgt = p_tr == "target"
            if kind == "pca":
                codes = pca_codes(x_tr[tgt], None, x_te[te_t], None, 2, fold)
            elif kind == "fa":
                codes = fa_codes(x_tr[tgt], None, x_te[te_t], None, 2, fold)
            elif kind == "cpca_centre":
                codes = centred_pca_codes(x_tr, p_tr, x_te, p_te, 2, fold)[te_t]
            elif kind == "vae":
                codes = cpvae_codes(params, "vae")(x_tr, p_tr, x_te, p_te, 2, fold)[te_t]
            elif kind == "cpca":
                codes, alpha = contrastive_pca(x_tr[tgt], x_tr[~tgt], x_te[te_t], geno[te][te_t])
                cpca_alphas.append(alpha)
            else:
                fn = cpvae_codes(
                    {**params, "no_private_populations": ["background"]},
                    "private",
                    missing="mask" if kind == "cvae" else "error",
                )
                xt, xe = (x_tr, x_te) if kind == "cvae" else (mean_impute(x_tr), mean_impute(x_te))
                codes = fn(xt, p_tr, xe, p_te, 2, fold)[te_t]
            m = biology_metrics(codes, geno[te][te_t], groups=mouse[te][te_t], seed=fold)
            m["seconds"] = time.perf_counter() - tic
            per[name].append(m)
            if fold == 0:
                panels[name] = codes
        if fold == 0:
            fold0 = (geno[te][te_t], pop[te][te_t])
    summary = summarise(per)
    print(
        "\nmice protein, contrastive set-up (target: S/C saline, both genotypes; "
        "background: C/S saline controls); metrics of genotype on held-out mice "
        "(3 folds by mouse_id)"
    )
    print(table(summary, ["ari", "nmi", "silhouette", "bio_probe"]))
    write(
        "mice",
        {
            "data": "mice_protein",
            "setup": "cPCA notebook target/background",
            "split": "GroupKFold(3) by mouse_id; metrics on held-out target rows",
            "summary": summary,
            "per_fold": per,
            "cpca_alpha_chosen": cpca_alphas,
        },
    )
    scatter_grid(
        panels,
        fold0[0],
        fold0[1],
        "Mice protein: held-out target mice (fold 1), genotype recovery",
        FIGURES / "omics_mice.png",
        "genotype",
        "population",
    )
    return summary


def contrastive_pca(fg, bg, x_eval, labels):
    """cPCA from the ``contrastive`` package (closed form if it is not installed).

    The package proposes a few alphas without labels (spectral clustering of the
    subspaces); a user picks one by eye. Here the one whose held-out ARI is highest is
    kept, which favours cPCA: the reported numbers are an upper bound for it.
    """
    fg, bg, x_eval = mean_impute(fg), mean_impute(bg), mean_impute(x_eval)
    try:
        from contrastive import CPCA

        model = CPCA(n_components=2, standardize=False)
        model.fit(fg, bg)
        alphas, _, _, _ = model.find_spectral_alphas(40, 3, 4)

        def project(a):
            return np.real(model.cpca_alpha(x_eval, alpha=a))
    except ImportError:  # closed form: top eigenvectors of C_fg - alpha C_bg
        c_fg, c_bg = np.cov(fg.T), np.cov(bg.T)
        alphas = np.logspace(-1, 3, 4)

        def project(a):
            w, v = np.linalg.eigh(c_fg - a * c_bg)
            return x_eval @ v[:, np.argsort(-w)[:2]]

    best = max(
        alphas,
        key=lambda a: adjusted_rand_score(
            labels, KMeans(2, n_init=10, random_state=0).fit_predict(project(a))
        ),
    )
    return project(best), float(best)


# ------------------------------------------------------------------ heart disease
def run_heart(args):
    d = load("heart_disease_multisite")
    if d is None:
        return None
    x_all = d["X"].astype(np.float64)
    names = list(d["feature_names"])
    # chol == 0 is a coded missing value in the Swiss and VA files.
    x_all[x_all[:, names.index("chol")] == 0, names.index("chol")] = np.nan
    site = d["site_names"][d["site"]]
    disease = np.where(d["num"] > 0, "disease", "no disease")
    epochs = 60 if args.quick else 200
    params = dict(
        n_private=2,
        hidden_layer_sizes=(64,),
        batch_size=32,
        max_iter=epochs,
        n_iter_no_change=epochs,
        n_importance_samples=16,
    )
    methods = shared_code_methods(params, "site", args.invariance)
    strata = np.char.add(site.astype(str), disease.astype(str))
    per = {m: [] for m in methods}
    panels, extra = {}, {}
    for fold, (tr, te) in enumerate(
        StratifiedKFold(3, shuffle=True, random_state=0).split(x_all, strata)
    ):
        x_tr, x_te = standardise(x_all[tr], x_all[te])
        for name, fn in methods.items():
            tic = time.perf_counter()
            codes = fn(x_tr, site[tr], x_te, site[te], 3, fold)
            m = biology_metrics(codes, disease[te], site[te], seed=fold)
            m["seconds"] = time.perf_counter() - tic
            per[name].append(m)
            if fold == 0:
                panels[name] = codes
                if name == "CPVAE shared":
                    ve = variance_explained(fn.model, x_te, site[te])
                    ve["features"] = names
                    extra = {
                        "leakage_report": leakage_report(fn.model, x_te, site[te]),
                        "variance_explained": ve,
                    }
        if fold == 0:
            fold0 = (disease[te], site[te])
    summary = summarise(per)
    print(
        "\nheart disease, populations = 4 hospitals, biology = disease (num > 0); "
        "held-out rows of 3 stratified folds"
    )
    print(table(summary, ["ari", "nmi", "silhouette", "bio_probe", "study_probe"]))
    write(
        "heart",
        {
            "data": "heart_disease_multisite",
            "summary": summary,
            "per_fold": per,
            "features": names,
            **extra,
        },
    )
    scatter_grid(
        panels,
        fold0[0],
        fold0[1],
        "Heart disease: held-out rows (fold 1)",
        FIGURES / "omics_heart.png",
        "diagnosis",
        "site",
    )
    return summary


def markdown_report():
    """Markdown tables of the saved results (what ``docs/omics.md`` shows)."""
    keys = ["ari", "nmi", "silhouette", "bio_probe", "study_probe"]
    for name in ("quartet", "mice", "heart"):
        path = RESULTS / f"omics_{name}.json"
        if not path.exists():
            continue
        payload = json.loads(path.read_text())
        blocks = (
            [(f"{name} {o}", v["summary"]) for o, v in payload["omics"].items()]
            if name == "quartet"
            else [(name, payload["summary"])]
        )
        for title, summary in blocks:
            present = [k for k in keys if any(k in m for m in summary.values())]
            print(f"\n**{title}**\n")
            print("| method | " + " | ".join(present) + " |")
            print("|---|" + "---:|" * len(present))
            for method, metrics in summary.items():
                cells = [
                    f"{metrics[k][0]:.2f} ± {metrics[k][1]:.2f}" if k in metrics else "–"
                    for k in present
                ]
                print(f"| {method} | " + " | ".join(cells) + " |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "which", nargs="?", default="all", choices=["all", "quartet", "mice", "heart", "report"]
    )
    ap.add_argument("--quick", action="store_true", help="fewer epochs (smoke run)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds for quartet (no held-out split)")
    ap.add_argument(
        "--invariance",
        type=float,
        nargs="*",
        default=[1.0, 10.0],
        help="shared_invariance weights to compare against 0",
    )
    args = ap.parse_args(argv)
    if args.which == "report":
        markdown_report()
        return 0
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name, fn in (("quartet", run_quartet), ("mice", run_mice), ("heart", run_heart)):
        if args.which in ("all", name):
            tic = time.perf_counter()
            fn(args)
            print(f"[{name}: {time.perf_counter() - tic:.0f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
