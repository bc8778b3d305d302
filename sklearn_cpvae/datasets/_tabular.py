"""Fetchers for the tabular benchmarks: Mice Protein, Heart Disease (4 sites), Wine Quality."""

from __future__ import annotations

import csv

import numpy as np
from sklearn.utils import Bunch

from ._base import RemoteFile, _fetch_remote, _load_or_build_cache, get_data_home

# UCI publishes no checksums and none could be verified offline, so these
# downloads are not checksum-verified (RemoteFile.sha256 = None).
_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/"

# UCI distributes this table only as an .xls (which would need an Excel
# reader); the contrastive-PCA authors' CSV export of the same 1080 rows is
# the file their benchmark used, so it is fetched from a pinned commit.
_MICE_REMOTE = RemoteFile(
    "Data_Cortex_Nuclear.csv",
    (
        "https://raw.githubusercontent.com/abidlabs/contrastive/"
        "f0d3c330009cfdc76675f95859e70dc96adc3689/experiments/datasets/Data_Cortex_Nuclear.csv",
    ),
)
HEART_DISEASE_SITES = ("cleveland", "hungarian", "switzerland", "va")
HEART_DISEASE_FEATURES = (
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
    "thalach", "exang", "oldpeak", "slope", "ca", "thal",
)  # fmt: skip
WINE_COLORS = ("red", "white")


def _float(field):
    field = field.strip()
    return np.nan if field in ("", "?") else float(field)


def _fetch_table(folder, remotes, parse, data_home, download_if_missing):
    raw_dir = get_data_home(data_home) / folder / "raw"

    def build():
        return parse(
            [_fetch_remote(r, raw_dir, download_if_missing=download_if_missing) for r in remotes]
        )

    return _load_or_build_cache(raw_dir.parent / f"{folder}_parsed.npz", build)


def _parse_mice_csv(paths):
    with open(paths[0], newline="", encoding="utf-8") as f:
        header, *rows = [r for r in csv.reader(f) if r]
    # Layout: MouseID, one column per protein, then Genotype, Treatment, Behavior, class.
    if header[0] != "MouseID" or header[-4:] != ["Genotype", "Treatment", "Behavior", "class"]:
        raise ValueError(f"unexpected Mice Protein header: {header[:2]} ... {header[-4:]}")
    if any(len(r) != len(header) for r in rows):
        raise ValueError(f"{paths[0]}: rows do not all have {len(header)} fields")
    columns = list(zip(*rows, strict=True))
    measurement_id = np.array(columns[0])
    return {
        "data": np.array([[_float(v) for v in r[1:-4]] for r in rows], dtype=np.float32),
        "feature_names": np.array(header[1:-4]),
        "measurement_id": measurement_id,
        # "309_7" is the 7th replicate measurement of mouse 309.
        "mouse_id": np.array([m.rsplit("_", 1)[0] for m in measurement_id]),
        "genotype": np.array(columns[-4]),
        "treatment": np.array(columns[-3]),
        "behavior": np.array(columns[-2]),
        "class_label": np.array(columns[-1]),
    }


def fetch_mice_protein(data_home=None, *, download_if_missing=True, return_X_y=False):
    """Load the Mice Protein Expression table (the contrastive-PCA benchmark).

    The CSV is downloaded into ``<data_home>/mice_protein/raw/`` and parsed
    into ``<data_home>/mice_protein/mice_protein_parsed.npz``. It is the UCI
    table (1080 measurements of 77 proteins, 15 replicates for each of 72
    mice) as exported by the contrastive-PCA authors, fetched from a pinned
    commit of their repository; UCI itself only offers an ``.xls``. No
    checksum is verified (none is published).

    Parameters
    ----------
    data_home : str or path-like, default=None
        Cache folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        If False, raise ``FileNotFoundError`` instead of downloading.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` (1080, 77) float32 with NaN for missing values,
        ``feature_names``, ``target`` (1080,) class label such as ``"c-CS-m"``
        (genotype, behaviour, treatment), ``target_names``, and per-row
        ``genotype``, ``treatment``, ``behavior``, ``mouse_id``,
        ``measurement_id``; ``DESCR``.
    (data, target) : tuple
        If ``return_X_y=True``.

    Notes
    -----
    The cPCA set-up: target = ``(behavior == "S/C") & (treatment == "Saline")``
    (both genotypes), background = ``(behavior == "C/S") & (treatment ==
    "Saline") & (genotype == "Control")``. Replicates of one mouse are not
    independent: split train/test by ``mouse_id``.
    """
    t = _fetch_table(
        "mice_protein", [_MICE_REMOTE], _parse_mice_csv, data_home, download_if_missing
    )
    if return_X_y:
        return t["data"], t["class_label"]
    return Bunch(
        data=t["data"],
        target=t["class_label"],
        target_names=np.unique(t["class_label"]),
        feature_names=t["feature_names"],
        **{k: t[k] for k in ("genotype", "treatment", "behavior", "mouse_id", "measurement_id")},
        DESCR=(
            "Mice Protein Expression (Higuera, Gardiner & Cios, 2015, UCI ML Repository): "
            "77 protein levels in the cortex nuclear fraction of control and Ts65Dn "
            "(Down syndrome model) mice, with/without memantine, with/without learning. "
            "License: CC BY 4.0."
        ),
    )


def _parse_heart_files(paths):
    blocks = []
    for path in paths:
        with open(path, encoding="latin-1") as f:
            rows = [[_float(v) for v in line.split(",")] for line in f if line.strip()]
        if any(len(r) != 14 for r in rows):
            raise ValueError(f"{path}: expected 14 comma-separated fields per line")
        blocks.append(np.array(rows, dtype=np.float64).reshape(-1, 14))
    table = np.concatenate(blocks)
    return {
        "data": table[:, :13].astype(np.float32),
        "num": table[:, 13].astype(np.int64),
        "site": np.repeat(np.arange(len(blocks)), [len(b) for b in blocks]),
    }


def fetch_heart_disease(data_home=None, *, download_if_missing=True, return_X_y=False):
    """Load the UCI Heart Disease data of all four hospitals (920 x 13).

    Downloads the four ``processed.<site>.data`` files from the UCI ML
    Repository into ``<data_home>/heart_disease/raw/`` (no checksum is
    published, so none is verified) and caches them parsed.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Cache folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        If False, raise ``FileNotFoundError`` instead of downloading.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` (920, 13) float32 with NaN for ``?``; ``feature_names``;
        ``target`` (920,) int64 diagnosis 0 (none) to 4; ``site`` (920,)
        int64 index into ``site_names`` (cleveland, hungarian, switzerland,
        va); ``DESCR``.
    (data, target) : tuple
        If ``return_X_y=True``.

    Notes
    -----
    ``chol == 0`` at the Swiss and VA sites is an undeclared missing value,
    kept as is. Missingness differs strongly between sites.
    """
    remotes = [
        RemoteFile(f"processed.{s}.data", (f"{_UCI}heart-disease/processed.{s}.data",))
        for s in HEART_DISEASE_SITES
    ]
    t = _fetch_table("heart_disease", remotes, _parse_heart_files, data_home, download_if_missing)
    if return_X_y:
        return t["data"], t["num"]
    return Bunch(
        data=t["data"],
        target=t["num"],
        feature_names=np.array(HEART_DISEASE_FEATURES),
        site=t["site"],
        site_names=np.array(HEART_DISEASE_SITES),
        DESCR=(
            "Heart Disease (Janosi, Steinbrunn, Pfisterer & Detrano, 1988, UCI ML Repository): "
            "the 13 commonly used attributes from Cleveland, Budapest, Zurich and Long Beach VA; "
            "target 0 = no disease, 1-4 = disease. License: CC BY 4.0."
        ),
    )


def _parse_wine_files(paths):
    tables = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            header, *rows = [r for r in csv.reader(f, delimiter=";") if r]
        if header[-1] != "quality" or len(header) != 12:
            raise ValueError(f"{path}: unexpected Wine Quality header {header}")
        tables.append(
            np.array([[float(v) for v in r] for r in rows], dtype=np.float64).reshape(-1, 12)
        )
    table = np.concatenate(tables)
    return {
        "data": table[:, :11].astype(np.float32),
        "quality": table[:, 11].astype(np.int64),
        "color": np.repeat(np.arange(len(tables)), [len(t) for t in tables]),
        "feature_names": np.array(header[:11]),
    }


def fetch_wine_quality(data_home=None, *, download_if_missing=True, return_X_y=False):
    """Load the UCI Wine Quality data, red and white wines together (6497 x 11).

    Downloads ``winequality-red.csv`` and ``winequality-white.csv`` from the
    UCI ML Repository into ``<data_home>/wine_quality/raw/`` (no checksum is
    published, so none is verified) and caches them parsed.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Cache folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        If False, raise ``FileNotFoundError`` instead of downloading.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` (6497, 11) float32 physico-chemical features,
        ``feature_names``, ``target`` (6497,) int64 quality score,
        ``color`` (6497,) int64 with 0 = red (first 1599 rows) and 1 = white,
        ``color_names``, ``DESCR``.
    (data, target) : tuple
        If ``return_X_y=True``.
    """
    remotes = [
        RemoteFile(f"winequality-{c}.csv", (f"{_UCI}wine-quality/winequality-{c}.csv",))
        for c in WINE_COLORS
    ]
    t = _fetch_table("wine_quality", remotes, _parse_wine_files, data_home, download_if_missing)
    if return_X_y:
        return t["data"], t["quality"]
    return Bunch(
        data=t["data"],
        target=t["quality"],
        feature_names=t["feature_names"],
        color=t["color"],
        color_names=np.array(WINE_COLORS),
        DESCR=(
            "Wine Quality (Cortez, Cerdeira, Almeida, Matos & Reis, 2009, UCI ML Repository): "
            "physico-chemical tests of red and white Vinho Verde wines with a sensory quality "
            "score. License: CC BY 4.0."
        ),
    )
