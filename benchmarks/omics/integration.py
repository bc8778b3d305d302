"""Integration benchmark: CPVAE's shared codes against scVI, Harmony and PCA (scib-metrics).

    python -m benchmarks.omics.integration --quick      # about 10 min on one core
    python -m benchmarks.omics.integration --full
    python -m benchmarks.omics.integration --quick --datasets scrna synthetic

Every method is fitted in this script on the same matrix of each data set, with the
batch (lab, site, plate) as the population to integrate over and a biological label
that no method sees:

* ``CPVAE gaussian``: ``CPVAE`` with its defaults (shared codes, ``blocks="shared"``) on
  the log-normalised or log-scale values (``missing="mask"`` where the table has NaN);
* ``CPVAE nb``: the same with ``likelihood="nb"`` on raw counts (count data only);
* ``scVI``: scvi-tools' ``SCVI`` with ``batch_key`` = batch (negative binomial on
  counts; on non-negative log-scale tables the ``gene_likelihood="normal"`` that
  scvi-tools offers; skipped, with the reason recorded, elsewhere);
* ``Harmony``: harmonypy on the PCA scores;
* ``centred PCA``: PCA after subtracting each batch's mean;
* ``PCA``: uncorrected.

Scores (scib-metrics, exact 15-nearest-neighbour graph): batch removal = ASW batch
(``silhouette_batch``, 1 = mixed), iLISI (scaled to [0, 1]), kBET acceptance rate,
graph connectivity; biology = KMeans NMI / ARI (plus Leiden in ``--full``) and the
label silhouette (``silhouette_label``, rescaled to [0, 1]). ``batch_score`` and
``bio_score`` are the means of those groups and ``total`` is scib's 0.4 / 0.6 blend
(unscaled: scib's Benchmarker min-max scales over the methods of a table). The
library's leakage probe (:func:`sklearn_cpvae.diagnostics.linear_probe`: balanced
accuracy of a linear classifier predicting the batch from the embedding, chance
1 / n_batches) is reported for every embedding.

A peer that is not installed is skipped and the reason is written to the table and the
JSON file. Results: ``benchmarks/results/omics/integration_{quick,full}.json``;
``docs/omics.md`` reports them (``python -m benchmarks.omics.integration --report``).
"""

import argparse
import contextlib
import importlib.metadata
import io
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from benchmarks._common import git_commit, hardware
from sklearn_cpvae import CPVAE
from sklearn_cpvae.datasets import make_cross_population
from sklearn_cpvae.diagnostics import leakage_report, linear_probe

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "omics"
FIGURES = ROOT / "docs" / "figures"

DATASETS = ("scrna", "ecoli", "quartet", "heart", "mice", "synthetic")
METHODS = ("CPVAE gaussian", "CPVAE nb", "scVI", "Harmony", "centred PCA", "PCA")
BATCH_METRICS = ("asw_batch", "ilisi", "kbet", "graph_connectivity")
BIO_METRICS = ("kmeans_nmi", "kmeans_ari", "leiden_nmi", "leiden_ari", "asw_label")
N_NEIGHBORS = 15

# Sizes and training lengths of the two modes. Quick subsamples rows (stratified by
# batch) so that the whole run stays near 10 minutes on one core.
MODES = {
    "quick": dict(
        max_rows=400,
        scrna_genes=1000,
        synthetic_rows=400,
        cpvae_max_iter=60,
        scvi_max_epochs=150,
        leiden=False,
    ),
    "full": dict(
        max_rows=None,
        scrna_genes=2000,
        synthetic_rows=1000,
        cpvae_max_iter=200,
        # None: scvi-tools' own rule, min(400, round(20000 / n_cells * 400)) epochs.
        scvi_max_epochs=None,
        leiden=True,
    ),
}


class Skip(Exception):
    """A method that cannot run on a data set (peer not installed, wrong data type)."""


# ------------------------------------------------------------------ data
def data_dir():
    env = os.environ.get("SKLEARN_CPVAE_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def _npz(name):
    path = data_dir() / name / f"{name}.npz"
    if not path.exists():
        raise Skip(f"{path} not found (set SKLEARN_CPVAE_DATA)")
    return np.load(path)


def subsample(batch, max_rows, seed):
    """Row indices: all rows, or ``max_rows`` drawn in proportion to each batch."""
    n = len(batch)
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keep = []
    for b in np.unique(batch):
        rows = np.flatnonzero(batch == b)
        k = max(2, int(round(max_rows * len(rows) / n)))
        keep.append(rng.choice(rows, size=min(k, len(rows)), replace=False))
    return np.sort(np.concatenate(keep))


def log_normalise(counts):
    """log1p of counts per 10,000 (scanpy's ``normalize_total`` + ``log1p``)."""
    totals = counts.sum(1, keepdims=True)
    return np.log1p(counts / np.maximum(totals, 1.0) * 1e4)


def _dataset(name, values, batch, label, counts=None, **info):
    return dict(
        name=name,
        values=np.asarray(values, dtype=np.float64),
        counts=None if counts is None else np.asarray(counts, dtype=np.float64),
        batch=np.asarray(batch).astype(str),
        label=np.asarray(label).astype(str),
        **info,
    )


def load_scrna(mode, seed):
    d = _npz("scrna_multibatch")
    batch = d["batch"]
    rows = subsample(batch, mode["max_rows"], seed)
    counts = d["X"][rows][:, d["gene_in_all_batches"]].astype(np.float64)
    counts = counts[:, counts.sum(0) > 0]
    logn = log_normalise(counts)
    # Highly variable genes: the top genes by variance of the log-normalised values.
    genes = np.sort(np.argsort(-logn.var(0))[: mode["scrna_genes"]])
    return _dataset(
        "scrna_multibatch",
        logn[:, genes],
        batch[rows],
        d["cell_type"][rows],
        counts=counts[:, genes],
        values_are="log1p(counts per 10k) of the highly variable genes",
        population="batch (5: 4 CEL-seq2 plates, 1 Drop-seq)",
        biology="cell line (demuxlet)",
    )


def load_ecoli(mode, seed):
    d = _npz("ecoli_proteomics_5labs")
    rows = subsample(d["lab"], mode["max_rows"], seed)
    return _dataset(
        "ecoli_proteomics_5labs",
        d["X"][rows],
        d["lab"][rows],
        d["condition"][rows],
        values_are="log2 protein intensities, NaN kept (14 %)",
        population="lab (5)",
        biology="growth medium (glucose / pyruvate)",
    )


def load_quartet(mode, seed):
    d = _npz("quartet_multiomics")
    rows = subsample(d["prot_batch"], mode["max_rows"], seed)
    return _dataset(
        "quartet_proteomics",
        d["prot_X"][rows],
        d["prot_batch"][rows],
        d["prot_donor"][rows],
        values_are="proteomics values as shipped",
        population="batch (4)",
        biology="donor (4)",
    )


def load_heart(mode, seed):
    d = _npz("heart_disease_multisite")
    x = d["X"].astype(np.float64)
    names = list(d["feature_names"])
    # chol == 0 is a coded missing value in the Swiss and VA files.
    x[x[:, names.index("chol")] == 0, names.index("chol")] = np.nan
    site = d["site_names"][d["site"]]
    rows = subsample(site, mode["max_rows"], seed)
    return _dataset(
        "heart_disease_multisite",
        x[rows],
        site[rows],
        np.where(d["num"][rows] > 0, "disease", "no disease"),
        values_are="clinical variables, chol == 0 set to NaN",
        population="hospital (4)",
        biology="disease (num > 0); prevalence differs by site",
    )


def load_mice(mode, seed):
    d = _npz("mice_protein")
    # No technical batch exists here: the four treatment x behaviour groups play the
    # batches, each holding both genotypes, and the genotype is the biology to keep.
    group = np.char.add(np.char.add(d["treatment"], "|"), d["behavior"])
    rows = subsample(group, mode["max_rows"], seed)
    return _dataset(
        "mice_protein",
        d["X"][rows],
        group[rows],
        d["genotype"][rows],
        values_are="protein expression levels, NaN kept",
        population="treatment x behaviour (4; a constructed integration task)",
        biology="genotype (Control / Ts65Dn)",
    )


def load_synthetic(mode, seed):
    d = make_cross_population(
        n_samples=mode["synthetic_rows"],
        n_populations=5,
        n_features=200,
        n_shared_factors=0,
        n_private_factors=4,
        n_subgroups=4,
        population_effect="mean",
        effect_size=1.0,
        subgroup_separation=4.0,
        noise=0.1,
        likelihood="nb",
        base_count=10.0,
        nb_theta=5.0,
        random_state=seed,
    )
    # population_effect="mean": the sub-groups (one private decoder shared by all) are
    # the same cell types in every batch, and m_k is a per-gene fold change by batch.
    # No continuous shared factor: it would take as much variance as the cell types and
    # make k-means split along it, so that no method could score the biology.
    return _dataset(
        "synthetic_nb",
        log_normalise(d.data),
        np.char.add("batch", d.populations.astype(str)),
        np.char.add("group", d.subgroups.astype(str)),
        counts=d.data,
        values_are="log1p(counts per 10k)",
        population="batch (5), a per-gene fold change exp(m_k)",
        biology="sub-group (4, shared by every batch)",
        generator=dict(
            function="make_cross_population",
            n_populations=5,
            n_features=200,
            n_shared_factors=0,
            n_private_factors=4,
            n_subgroups=4,
            population_effect="mean",
            effect_size=1.0,
            subgroup_separation=4.0,
            noise=0.1,
            likelihood="nb",
            base_count=10.0,
            nb_theta=5.0,
        ),
    )


LOADERS = dict(
    scrna=load_scrna,
    ecoli=load_ecoli,
    quartet=load_quartet,
    heart=load_heart,
    mice=load_mice,
    synthetic=load_synthetic,
)


# ------------------------------------------------------------------ methods
def standardised(values):
    """Per-feature z-scores, NaN set to 0 (the feature mean); constant features dropped."""
    mu, sd = np.nanmean(values, 0), np.nanstd(values, 0)
    keep = np.isfinite(sd) & (sd > 1e-8)
    return np.nan_to_num((values[:, keep] - mu[keep]) / sd[keep], nan=0.0)


def n_components(x):
    return int(min(30, x.shape[0] - 1, x.shape[1]))


def pca(ds, seed, cfg):
    x = standardised(ds["values"])
    return PCA(n_components(x), random_state=seed).fit_transform(x), {}


def centred_pca(ds, seed, cfg):
    x = standardised(ds["values"])
    for b in np.unique(ds["batch"]):
        x[ds["batch"] == b] -= x[ds["batch"] == b].mean(0)
    return PCA(n_components(x), random_state=seed).fit_transform(x), {}


def harmony(ds, seed, cfg):
    try:
        import harmonypy
    except ImportError as exc:
        raise Skip(f"harmonypy not installed ({exc})") from None
    x = standardised(ds["values"])
    pcs = PCA(n_components(x), random_state=seed).fit_transform(x)
    meta = {"batch": ds["batch"]}
    with _quiet():
        out = harmonypy.run_harmony(pcs, meta, ["batch"], random_state=seed, verbose=False)
    z = np.asarray(out.Z_corr)
    if z.shape[0] != len(pcs):  # harmonypy < 0.1 returns components x cells
        z = z.T
    return z, {"n_pcs": pcs.shape[1]}


def scvi_codes(ds, seed, cfg):
    if ds["counts"] is not None:
        x, likelihood = ds["counts"], "nb"
    else:
        x = ds["values"].copy()
        if np.nanmin(x) < 0:
            raise Skip(
                "not count data, and scvi-tools' only continuous likelihood "
                "(gene_likelihood='normal') scales a softmax composition by the row total, "
                "which needs non-negative values; this table has negative ones"
            )
        # The normal likelihood cannot mask NaN: fill with the feature mean.
        x = np.where(np.isnan(x), np.nanmean(x, 0), x)
        x = x[:, np.nanstd(x, 0) > 0]
        likelihood = "normal"
    try:
        import anndata
        import scvi
    except ImportError as exc:
        raise Skip(f"scvi-tools not installed ({exc})") from None
    import torch

    adata = anndata.AnnData(x.astype(np.float32))
    adata.obs["batch"] = ds["batch"]
    scvi.settings.seed = seed
    with _quiet():
        scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
        model = scvi.model.SCVI(adata, gene_likelihood=likelihood)
        threads = torch.get_num_threads()
        model.train(
            max_epochs=cfg["scvi_max_epochs"],
            accelerator="cpu",
            enable_progress_bar=False,
        )
        torch.set_num_threads(threads)
        z = model.get_latent_representation()
    return z, {
        "gene_likelihood": likelihood,
        "max_epochs": cfg["scvi_max_epochs"],
        "n_latent": int(z.shape[1]),
    }


def _cpvae(likelihood, **extra):
    def fit(ds, seed, cfg):
        if likelihood == "gaussian":
            x = ds["values"]
            x = x[:, np.nanstd(x, 0) > 0]
        else:
            if ds["counts"] is None:
                raise Skip("not count data")
            x = ds["counts"]
        params = dict(
            likelihood=likelihood,
            max_iter=cfg["cpvae_max_iter"],
            missing="mask" if np.isnan(x).any() else "error",
            device="cpu",
            random_state=seed,
            **extra,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = CPVAE(**params).fit(x, ds["batch"])
        z = model.set_params(blocks="shared").transform(x, ds["batch"])
        rep = leakage_report(model, x, ds["batch"], random_state=seed)
        info = {
            "params": {k: v for k, v in params.items() if k != "random_state"},
            "n_shared": model.n_shared,
            "epochs_run": int(model.n_iter_),
            "private_kl_own": rep["private_kl_own"],
            "private_kl_off": rep["private_kl_off"],
            "classes": rep["classes"],
        }
        return z, info

    return fit


METHOD_FUNCS = {
    "CPVAE gaussian": _cpvae("gaussian"),
    "CPVAE nb": _cpvae("nb"),
    # Not a default: the optional MMD penalty on the shared code (off in CPVAE's
    # objective), run with --methods to see how much of the leakage it removes.
    "CPVAE gaussian, shared_invariance=10": _cpvae("gaussian", shared_invariance=10.0),
    # Not a default: the shared encoder reads each row minus its batch's mean.
    "CPVAE gaussian, shared_centering": _cpvae("gaussian", shared_centering="population"),
    "CPVAE nb, shared_centering": _cpvae("nb", shared_centering="population"),
    # Not a default: the MI term reads other batches' rows moved to each encoder's mean.
    "CPVAE gaussian, mi_alignment": _cpvae("gaussian", mi_alignment="mean"),
    "CPVAE gaussian, shared_centering + mi_alignment": _cpvae(
        "gaussian", shared_centering="population", mi_alignment="mean"
    ),
    "scVI": scvi_codes,
    "Harmony": harmony,
    "centred PCA": centred_pca,
    "PCA": pca,
}


@contextlib.contextmanager
def _quiet():
    """Silence the peers' progress output and logging (the table is the output)."""
    loggers = [logging.getLogger(n) for n in ("scvi", "lightning", "lightning.pytorch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# ------------------------------------------------------------------ metrics
def neighbours(codes, k=N_NEIGHBORS):
    """Exact k-nearest-neighbour graph (the rows themselves excluded) for scib-metrics."""
    from scib_metrics.nearest_neighbors import NeighborsResults

    k = min(k, len(codes) - 1)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(codes).kneighbors(codes)
    return NeighborsResults(indices=idx[:, 1:], distances=dist[:, 1:])


def scib_scores(codes, batch, label, *, leiden, seed):
    """The scib-metrics batch-removal and biology scores of one embedding."""
    try:
        import scib_metrics as sm
    except ImportError as exc:
        raise ImportError(
            "the integration benchmark scores embeddings with scib-metrics; install the "
            "'integration' extra: pip install 'sklearn-cpvae[integration]'"
        ) from exc
    codes = np.asarray(codes, dtype=np.float32)
    nn = neighbours(codes)
    with _quiet():
        out = {
            "asw_batch": float(sm.silhouette_batch(codes, label, batch)),
            "ilisi": float(sm.ilisi_knn(nn, batch)),
            "kbet": float(sm.kbet(nn, batch)[0]),
            "graph_connectivity": float(sm.graph_connectivity(nn, label)),
            "asw_label": float(sm.silhouette_label(codes, label)),
        }
        km = sm.nmi_ari_cluster_labels_kmeans(codes, label)
        out["kmeans_nmi"], out["kmeans_ari"] = float(km["nmi"]), float(km["ari"])
        if leiden:
            ld = sm.nmi_ari_cluster_labels_leiden(nn, label, seed=seed)
            out["leiden_nmi"], out["leiden_ari"] = float(ld["nmi"]), float(ld["ari"])
    return out


def leakage_scores(codes, batch, label, *, seed):
    """The library's probes: batch (leakage, chance 1/K) and biology from the codes."""
    return {
        "batch_probe": linear_probe(codes, batch, random_state=seed),
        "batch_chance": 1.0 / len(np.unique(batch)),
        "label_probe": linear_probe(codes, label, random_state=seed),
    }


def aggregate(m):
    """scib's groups: batch and biology means, total = 0.4 batch + 0.6 biology."""
    batch = [m[k] for k in BATCH_METRICS if k in m]
    bio = [m[k] for k in BIO_METRICS if k in m]
    if not batch or not bio:
        return {}
    out = {"batch_score": float(np.mean(batch)), "bio_score": float(np.mean(bio))}
    out["total"] = 0.4 * out["batch_score"] + 0.6 * out["bio_score"]
    return out


# ------------------------------------------------------------------ driver
def run_dataset(ds, methods, cfg, seed, score=scib_scores):
    """Fit every method on ``ds`` and score its embedding; skips are recorded."""
    batch, label = ds["batch"], ds["label"]
    rows = {}
    inputs = {"raw": leakage_scores(standardised(ds["values"]), batch, label, seed=seed)}
    for name in methods:
        tic = time.perf_counter()
        try:
            codes, info = METHOD_FUNCS[name](ds, seed, cfg)
        except Skip as exc:
            rows[name] = {"skipped": str(exc)}
            print(f"  {name:15s} skipped: {exc}")
            continue
        fit_s = time.perf_counter() - tic
        tic = time.perf_counter()
        m = {} if score is None else score(codes, batch, label, leiden=cfg["leiden"], seed=seed)
        m.update(leakage_scores(codes, batch, label, seed=seed))
        m.update(aggregate(m))
        rows[name] = {
            "metrics": m,
            "dim": int(codes.shape[1]),
            "fit_seconds": fit_s,
            "score_seconds": time.perf_counter() - tic,
            **info,
        }
        print(f"  {name:15s} fit {fit_s:6.1f} s  " + _cells(m))
    return {"methods": rows, "input_probes": inputs}


def _cells(m):
    keys = ("batch_score", "bio_score", "asw_batch", "ilisi", "kmeans_ari", "batch_probe")
    return "  ".join(f"{k}={m[k]:.3f}" for k in keys if k in m)


def versions():
    out = {}
    for dist in (
        "sklearn-cpvae",
        "torch",
        "scikit-learn",
        "numpy",
        "scvi-tools",
        "harmonypy",
        "scib-metrics",
        "jax",
        "anndata",
    ):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(type(v))


def run(which, mode_name, seed, methods=METHODS, out=None, score=scib_scores):
    cfg = MODES[mode_name]
    hw = hardware()
    payload = {
        "mode": mode_name,
        "seed": seed,
        "config": cfg,
        "n_neighbors": N_NEIGHBORS,
        "versions": versions(),
        "hardware": hw,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "commit": git_commit(),
        "datasets": {},
    }
    t0 = time.perf_counter()
    for key in which:
        tic = time.perf_counter()
        try:
            ds = LOADERS[key](cfg, seed)
        except Skip as exc:
            payload["datasets"][key] = {"skipped": str(exc)}
            print(f"SKIP {key}: {exc}")
            continue
        shape = ds["values"].shape
        print(
            f"\n{ds['name']}: {shape[0]} rows x {shape[1]} features, "
            f"population = {ds['population']}"
        )
        res = run_dataset(ds, methods, cfg, seed, score=score)
        res.update(
            {k: v for k, v in ds.items() if k not in ("values", "counts", "batch", "label")},
            shape=list(shape),
            batch_sizes=dict(zip(*np.unique(ds["batch"], return_counts=True), strict=True)),
            label_sizes=dict(zip(*np.unique(ds["label"], return_counts=True), strict=True)),
            wall_seconds=time.perf_counter() - tic,
        )
        payload["datasets"][key] = res
    payload["wall_seconds"] = time.perf_counter() - t0
    path = out or RESULTS / f"integration_{mode_name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=_jsonable))
    print(f"\nwrote {path} ({payload['wall_seconds']:.0f} s)")
    return payload


# ------------------------------------------------------------------ report
REPORT_KEYS = (
    "batch_score",
    "asw_batch",
    "ilisi",
    "kbet",
    "graph_connectivity",
    "bio_score",
    "kmeans_ari",
    "kmeans_nmi",
    "asw_label",
    "batch_probe",
    "label_probe",
)


PEERS = ("scVI", "Harmony", "centred PCA", "PCA")


def against_best_peer(payload, key="batch_score"):
    """Per data set and CPVAE variant: its score, the best peer's, and the difference."""
    out = {}
    for name, res in payload["datasets"].items():
        rows = res.get("methods", {})
        scores = {
            m: row["metrics"][key] for m, row in rows.items() if key in row.get("metrics", {})
        }
        peers = {p: scores[p] for p in PEERS if p in scores}
        if not peers:
            continue
        best = max(peers, key=peers.get)
        for method, mine in scores.items():
            if method.startswith("CPVAE"):
                out[(name, method)] = (mine, best, peers[best], mine - peers[best])
    return out


def markdown_report(payload):
    """Markdown tables of a results file (what ``docs/omics.md`` shows)."""
    lines = ["| data set | CPVAE | batch_score | best peer | its batch_score | difference |"]
    lines.append("|---|---|---:|---|---:|---:|")
    for (name, method), (mine, best, theirs, diff) in against_best_peer(payload).items():
        lines.append(f"| {name} | {method} | {mine:.2f} | {best} | {theirs:.2f} | {diff:+.2f} |")
    for key, res in payload["datasets"].items():
        if "skipped" in res:
            lines.append(f"\n**{key}**: skipped ({res['skipped']})\n")
            continue
        chance = 1.0 / len(res["batch_sizes"])
        raw = res["input_probes"]["raw"]["batch_probe"]
        lines.append(
            f"\n**{res['name']}** ({res['shape'][0]} x {res['shape'][1]}; population = "
            f"{res['population']}; biology = {res['biology']}; batch-probe chance "
            f"{chance:.2f}, on the standardised input {raw:.2f})\n"
        )
        lines.append("| method | dim | fit s | " + " | ".join(REPORT_KEYS) + " |")
        lines.append("|---|---:|---:|" + "---:|" * len(REPORT_KEYS))
        skipped = []
        for name, row in res["methods"].items():
            if "skipped" in row:
                skipped.append(f"- {name} skipped: {row['skipped']}")
                continue
            m = row["metrics"]
            cells = [f"{m[k]:.2f}" if k in m else "–" for k in REPORT_KEYS]
            lines.append(
                f"| {name} | {row['dim']} | {row['fit_seconds']:.0f} | " + " | ".join(cells) + " |"
            )
        if skipped:
            lines.append("")
            lines.extend(skipped)
    return "\n".join(lines)


def plot(payload, path):
    """Batch score against biology score, one panel per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [(k, r) for k, r in payload["datasets"].items() if "methods" in r]
    fig, axes = plt.subplots(1, len(sets), figsize=(3.0 * len(sets), 3.2), squeeze=False)
    markers = dict(zip(METHOD_FUNCS, "osX^vPD", strict=True))
    colours = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(METHOD_FUNCS)}
    for ax, (key, res) in zip(axes[0], sets, strict=True):
        for name, row in res["methods"].items():
            if "metrics" not in row:
                continue
            m = row["metrics"]
            ax.scatter(
                m["batch_score"],
                m["bio_score"],
                marker=markers[name],
                color=colours[name],
                label=name,
            )
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("batch removal", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("biology", fontsize=8)
    handles = [
        plt.Line2D([], [], marker=markers[n], color=colours[n], ls="", label=n)
        for n in METHOD_FUNCS
        if any(n in r["methods"] and "metrics" in r["methods"][n] for _, r in sets)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="subsampled rows, short training")
    group.add_argument("--full", action="store_true", help="all rows, full training")
    ap.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    ap.add_argument("--methods", nargs="+", choices=list(METHOD_FUNCS), default=list(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--cpvae-max-iter", type=int, default=None, help="override the mode's CPVAE epochs"
    )
    ap.add_argument("--tag", default=None, help="suffix of the results file")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--report", action="store_true", help="print the tables of a saved run")
    args = ap.parse_args(argv)
    mode = "full" if args.full else "quick"
    path = RESULTS / f"integration_{mode}{'_' + args.tag if args.tag else ''}.json"
    if args.report:
        payload = json.loads(path.read_text())
        print(markdown_report(payload))
        plot(payload, FIGURES / f"{path.stem}.png")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    if args.cpvae_max_iter is not None:
        MODES[mode] = {**MODES[mode], "cpvae_max_iter": args.cpvae_max_iter}
    run(args.datasets, mode, args.seed, methods=args.methods, out=path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
