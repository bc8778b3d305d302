"""Shared plumbing of the reproduction scripts: arguments, data, metrics, results files.

Benchmarks read the project's preprocessed data directly (``../shared/data`` next to the
repository, or ``$SKLEARN_CPVAE_DATA``); users build the same arrays with
:mod:`sklearn_cpvae.datasets`.
"""

import argparse
import functools
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from sklearn_cpvae.datasets import load_shared_npz, make_grassy_mnist

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SKLEARN_CPVAE_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures"

# The annealed variant (appendix A: "begin with alpha = 1 and gradually anneal"): alpha
# rises linearly from 1 to ANNEAL_FINAL over the first ANNEAL_FRACTION of the epochs.
# Chosen by benchmarks/diagnostics/anneal_sweep.py at full size on a validation split,
# by population accuracy (docs/reproduction.md); the quick-size sweep's choice, 3, fails
# at full size.
ANNEAL_FINAL = 1.5
ANNEAL_FRACTION = 0.5

DIGIT_HALVES = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
ONE_PER_DIGIT = tuple((d,) for d in range(10))


def parse_args(description, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="reduced sizes (the whole set runs in about 15 min on 2 cores)",
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:0, ...")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--tag", default=None, help="suffix of the results file")
    parser.add_argument(
        "--anneal-final",
        type=float,
        default=ANNEAL_FINAL,
        help="final alpha of the annealed variant",
    )
    parser.add_argument(
        "--anneal-fraction",
        type=float,
        default=ANNEAL_FRACTION,
        help="share of the epochs over which alpha rises from 1",
    )
    parser.add_argument(
        "--objective",
        choices=("paper", "elbo_mi"),
        default="paper",
        help="objective of the MI variants: eq. 4/10 as published, or the library default",
    )
    parser.add_argument(
        "--as-given",
        action="store_true",
        help="model X in its own units (standardize=False) with either objective",
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def variant_params(
    variant,
    max_iter,
    final=ANNEAL_FINAL,
    fraction=ANNEAL_FRACTION,
    objective="paper",
    as_given=False,
):
    """CPVAE keyword arguments of the paper's three variants (Tables 1-2).

    ``objective="paper"``: the variants as published (eq. 4/10 for the MI variants) with
    Gaussian X modelled in its own units, the settings of the recorded reproductions.
    ``objective="elbo_mi"``: the same three variants with the library's default objective
    (eq. 3's own-population KL kept) and its default standardisation; ``as_given=True``
    models X in its own units (``standardize=False``) with either objective.
    """
    if objective not in ("paper", "elbo_mi"):
        raise ValueError(objective)
    extra = dict(standardize=False) if objective == "paper" or as_given else {}
    if variant == "no_mi":
        return dict(objective="elbo", **extra)
    if variant == "alpha1":
        return dict(objective=objective, mi_weight=1.0, **extra)
    if variant == "anneal":
        return dict(
            objective=objective,
            mi_weight=final,
            mi_anneal_epochs=max(1, int(round(fraction * max_iter))),
            **extra,
        )
    raise ValueError(variant)


def git_commit():
    """The checkout's commit (with "+dirty" if it has uncommitted changes), or None."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty.strip() else "")


def check_same_config(results):
    """Results files joined by a merge script must come from one configuration."""
    configs = {json.dumps(r["config"], sort_keys=True) for r in results}
    if len(configs) != 1:
        raise ValueError(f"the files were run with different configurations: {configs}")


def merge_provenance(results, names):
    """Where a merged table came from: each file's wall time, hardware, device, commit."""
    return {
        "sources": {
            n: {
                "wall_seconds": r["wall_seconds"],
                "hardware": r["hardware"],
                "device": r.get("device"),
                "commit": r.get("commit"),
            }
            for r, n in zip(results, names, strict=True)
        },
        "wall_seconds": sum(r["wall_seconds"] for r in results),
    }


def merge_cli(doc, merge, name):
    """Command line of the merge scripts: files in order, ``--tag``; writes ``name_<tag>``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--tag", default="merged")
    args = p.parse_args()
    merged = merge([json.loads(f.read_text()) for f in args.files], [f.name for f in args.files])
    write_result(name, merged, args.tag)
    return merged


def hardware():
    return dict(
        machine=platform.machine(),
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        load_average_at_start=list(os.getloadavg()),
        cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    )


def result_dir(name):
    """``benchmarks/results/<suite>``: where the results of the script writing ``name`` go."""
    if name.startswith(("table1", "table2", "celeba")):
        suite = "paper"
    elif name.startswith(("speed", "scaling", "sparse_memory", "mi_quality")):
        suite = "perf"
    elif name.startswith("omics"):
        suite = "omics"
    else:
        suite = "diagnostics"
    return RESULTS / suite


def write_result(name, payload, tag=None):
    out = result_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}{'_' + tag if tag else ''}.json"
    path.write_text(json.dumps(payload, indent=1, default=_jsonable))
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def write_runs(name, args, runs, start):
    """``write_result`` of a diagnostic's ``runs``, with its arguments, the wall time
    since ``start`` (``time.perf_counter()``), the hardware and the commit."""
    payload = {
        "args": vars(args),
        "runs": runs,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "hardware": hardware(),
        "commit": git_commit(),
    }
    return write_result(name, payload)


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(type(v))


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0

    def elapsed(self):
        return time.perf_counter() - self.t0


@functools.cache
def mnist_arrays():
    d = load_shared_npz("mnist", DATA_DIR)
    return d.X_train, d.y_train, d.X_test, d.y_test


@functools.cache
def grassy(subset, n_samples, populations=DIGIT_HALVES, random_state=0):
    """Grassy-MNIST rows plus their two additive components (grass, 0.25 * digit).

    The grass component is the same build with ``digit_scale=0``: the random draws of
    :func:`make_grassy_mnist` do not depend on the scale, so the crops are identical.
    """
    X_tr, y_tr, X_te, y_te = mnist_arrays()
    digits, labels = (X_tr, y_tr) if subset == "train" else (X_te, y_te)
    grass_photos = load_shared_npz("grass_imagenet", DATA_DIR)["X_gray100"]
    kw = dict(n_samples=n_samples, populations=populations, random_state=random_state)
    X, pop, digit = make_grassy_mnist(digits, labels, grass_photos, **kw)
    G, _, _ = make_grassy_mnist(digits, labels, grass_photos, digit_scale=0.0, **kw)
    return X, pop, digit, G


def standardiser(X_train):
    """``(mean, scale)`` of the global standardisation ``(X - mean) / scale``.

    The Gaussian likelihood's noise variance Psi starts at 1 and is learned with the same
    Adam step as every weight (1e-3 per step in log space). On raw Grassy-MNIST pixels
    (variance about 0.05) Psi would need thousands of steps to reach the data's scale, and
    until then the reconstruction term is ~20 times too weak against the KL terms, which
    collapses the codes. One scalar scale keeps every pixel's relative weight
    (per-pixel standardising would blow up MNIST's constant border pixels); the per-pixel
    mean removes the average image. Reconstructions are mapped back with
    ``rec * scale + mean`` for display.
    """
    mean = X_train.mean(0, dtype=np.float64).astype(np.float32)
    scale = np.float32((X_train - mean).std(dtype=np.float64))
    return mean, scale


def stratified_subset(y, n_per_class, seed):
    """Indices of the first ``n_per_class`` rows of every class after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    keep = np.concatenate([order[y[order] == c][:n_per_class] for c in np.unique(y)])
    return np.sort(keep)


def active_units(codes, threshold=0.01):
    """Latent dimensions whose posterior mean varies across rows (Burda et al., 2016)."""
    return int(np.sum(np.var(codes, axis=0) > threshold))


def cluster_scores(codes, labels, n_clusters, seed):
    """KMeans on ``codes``: ARI and NMI against ``labels``; silhouette of the labels."""
    pred = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(codes)
    sub = np.random.default_rng(seed).permutation(len(codes))[:2000]
    return dict(
        ari=adjusted_rand_score(labels, pred),
        nmi=normalized_mutual_info_score(labels, pred),
        silhouette=float(silhouette_score(codes[sub], labels[sub])),
    )


def explained(rec, component):
    """Squared correlation between a partial reconstruction and a true component,
    over all pixels after removing each pixel's mean (1 = the part reproduces it)."""
    a = rec - rec.mean(0)
    b = component - component.mean(0)
    denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float((np.sum(a * b) / denom) ** 2) if denom > 0 else 0.0


def mean_sd(values):
    v = np.asarray(values, dtype=float)
    return dict(
        mean=float(v.mean()), sd=float(v.std(ddof=1)) if len(v) > 1 else 0.0, values=v.tolist()
    )


def make_populations(
    n_per_pop=150, n_populations=2, n_features=12, n_subgroups=3, noise=0.3, random_state=0
):
    """Rows from a linear CPVAE: a 2-D shared factor seen by every population, plus
    ``n_subgroups`` clusters that exist only in each population's own directions.

    Returns ``X, populations, subgroups, shared_factor``.
    """
    rng = np.random.default_rng(random_state)
    w_shared = rng.normal(size=(2, n_features))
    xs, pops, subs, zs = [], [], [], []
    for k in range(n_populations):
        w_private = rng.normal(size=(n_subgroups, n_features)) * 2.0
        z = rng.normal(size=(n_per_pop, 2))
        sub = rng.integers(n_subgroups, size=n_per_pop)
        x = z @ w_shared + w_private[sub] + noise * rng.normal(size=(n_per_pop, n_features))
        xs.append(x)
        pops.append(np.full(n_per_pop, f"pop{k}"))
        subs.append(sub)
        zs.append(z)
    return (np.vstack(xs), np.concatenate(pops), np.concatenate(subs), np.vstack(zs))
