"""Plumbing shared by the dataset loaders: data directory, downloads, caches."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

DATA_HOME_ENV = "SKLEARN_CPVAE_DATA"

# Per socket operation, not for the whole transfer: large files stream in chunks.
_TIMEOUT_S = 60


def get_data_home(data_home=None):
    """Return the directory where datasets are looked up and cached.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Directory to use. If None, the ``SKLEARN_CPVAE_DATA`` environment
        variable is used when set, else ``~/sklearn_cpvae_data``.

    Returns
    -------
    data_home : pathlib.Path
        The resolved directory. It is not created: loaders create the
        sub-folders they write to.

    Examples
    --------
    >>> from sklearn_cpvae.datasets import get_data_home
    >>> get_data_home("/tmp/my_data").as_posix()
    '/tmp/my_data'
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or Path.home() / "sklearn_cpvae_data"
    return Path(data_home).expanduser()


@dataclass(frozen=True)
class RemoteFile:
    """A file to download: local name, URLs tried in order, optional SHA-256."""

    filename: str
    urls: tuple
    sha256: str | None = None


def _download(url, path):
    """Stream ``url`` into ``path``.

    Kept minimal and looked up at call time by :func:`_fetch_remote`, so tests
    can replace it (or use ``file://`` URLs) without any network.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "sklearn_cpvae"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        with open(path, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_remote(remote, directory, *, download_if_missing=True):
    """Return the local path of ``remote``, downloading it into ``directory`` if needed.

    The checksum is verified once, right after the download; a file already in
    the cache is trusted, as in scikit-learn's own fetchers.
    """
    path = Path(directory) / remote.filename
    if path.exists():
        return path
    if not download_if_missing:
        raise FileNotFoundError(
            f"{path} is not in the cache and download_if_missing=False. "
            f"Call again with download_if_missing=True, or place the original "
            f"file there (source: {remote.urls[0]})."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Download next to the target and rename at the end, so an interrupted
    # transfer never leaves a truncated file that looks cached.
    partial = path.with_name(path.name + ".part")
    errors = []
    for url in remote.urls:
        try:
            _download(url, partial)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{url}: {exc}")
            continue
        digest = _sha256(partial)
        if remote.sha256 is not None and digest != remote.sha256:
            errors.append(f"{url}: SHA-256 {digest} does not match expected {remote.sha256}")
            continue
        os.replace(partial, path)
        return path
    partial.unlink(missing_ok=True)
    raise OSError(f"could not download {remote.filename}:\n  " + "\n  ".join(errors))


def _load_or_build_cache(cache_path, build):
    """Return the arrays cached in ``cache_path``; if absent, ``build()`` and save them."""
    cache_path = Path(cache_path)
    if cache_path.exists():
        with np.load(cache_path) as f:
            return {key: f[key] for key in f.files}
    arrays = build()
    partial = cache_path.with_name(cache_path.name + ".part")
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(partial, cache_path)
    except OSError:
        # A read-only data folder holding the original files is still a valid copy:
        # the arrays are returned, only the shortcut for the next call is lost.
        partial.unlink(missing_ok=True)
    return arrays


def _check_subset(subset):
    if subset not in ("train", "test", "all"):
        raise ValueError(f"subset must be 'train', 'test' or 'all', got {subset!r}")
    return subset


def _select_subset(arrays, subset, keys):
    """Pick ``<key>_train``/``<key>_test`` arrays, or concatenate both for 'all'."""
    if subset == "all":
        return [np.concatenate([arrays[f"{k}_train"], arrays[f"{k}_test"]]) for k in keys]
    return [arrays[f"{k}_{subset}"] for k in keys]


def load_shared_npz(name, data_home=None):
    """Load one of the project's shared ``.npz`` datasets into memory.

    The shared data folder holds one sub-folder per dataset, each with a
    ``<name>/<name>.npz`` file (images as uint8, tables as float32, strings as
    fixed-width unicode) and a README describing the keys.

    Parameters
    ----------
    name : str
        Dataset folder name, e.g. ``"mnist"``, ``"grass_imagenet"``,
        ``"mice_protein"``, ``"heart_disease_multisite"``.
    data_home : str or path-like, default=None
        Folder holding the dataset folders; see :func:`get_data_home`.

    Returns
    -------
    data : sklearn.utils.Bunch
        One entry per array in the file, keyed by the file's own key names.

    Raises
    ------
    FileNotFoundError
        If ``<data_home>/<name>/<name>.npz`` does not exist.
    """
    path = get_data_home(data_home) / name / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found. Point data_home (or the {DATA_HOME_ENV} "
            f"environment variable) at the folder that contains '{name}/'."
        )
    with np.load(path) as f:
        return Bunch(**{key: f[key] for key in f.files})


def _raw_files_present(remotes, directory):
    return all((Path(directory) / r.filename).exists() for r in remotes)


def _resolve_local_or_remote(folder, remotes, parse, packaged, data_home, download_if_missing):
    """Arrays of one dataset, from the first source found under ``data_home``.

    Looked up in this order, so that an exact local copy always wins and the network
    is the last resort:

    1. ``<folder>/<folder>_parsed.npz``, the cache written by an earlier call;
    2. the original files in ``<folder>/raw/`` (parsed, then cached);
    3. the packaged copy ``<name>/<name>.npz`` (the layout of :func:`load_shared_npz`),
       read as is and never cached, since it is already a parsed ``.npz``;
    4. a download of the original files into ``<folder>/raw/`` (parsed, then cached).

    Parameters
    ----------
    folder : str
        Cache folder of the fetcher, e.g. ``"mnist"``.
    remotes : list of RemoteFile
        The original files.
    parse : callable
        ``parse(paths) -> dict of arrays``, paths in the order of ``remotes``.
    packaged : tuple of (str, callable) or None
        Folder name of the packaged copy and ``convert(bunch) -> dict of arrays`` with
        the keys ``parse`` returns.
    data_home, download_if_missing
        As in the fetchers.

    Returns
    -------
    arrays : dict of ndarray
    source : {"cache", "raw", "packaged", "download"}
    """
    home = get_data_home(data_home)
    raw_dir = home / folder / "raw"
    cache_path = home / folder / f"{folder}_parsed.npz"
    if cache_path.exists():
        return _load_or_build_cache(cache_path, build=None), "cache"
    if _raw_files_present(remotes, raw_dir):
        paths = [raw_dir / r.filename for r in remotes]
        return _load_or_build_cache(cache_path, lambda: parse(paths)), "raw"
    if packaged is not None:
        name, convert = packaged
        if (home / name / f"{name}.npz").exists():
            return convert(load_shared_npz(name, home)), "packaged"
    if not download_if_missing:
        where = f" or the packaged copy {home / packaged[0] / packaged[0]}.npz" if packaged else ""
        raise FileNotFoundError(
            f"No local copy of {folder} under {home} and download_if_missing=False: "
            f"expected the original files {[r.filename for r in remotes]} in {raw_dir}"
            f"{where}. Call again with download_if_missing=True, or point "
            f"data_home (or {DATA_HOME_ENV}) at a folder holding one of them."
        )

    def build():
        return parse([_fetch_remote(r, raw_dir) for r in remotes])

    return _load_or_build_cache(cache_path, build), "download"


def _check_fetch_options(as_frame, return_X_y):
    for name, value in (("as_frame", as_frame), ("return_X_y", return_X_y)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")


def _fetch_bunch(
    *,
    data,
    target,
    populations,
    population_names,
    feature_names,
    descr,
    as_frame=False,
    return_X_y=False,
    target_names=None,
    **extra,
):
    """The uniform return value of every ``fetch_*`` (keys documented in the package)."""
    feature_names = np.asarray(feature_names).astype(str)
    frame = None
    if as_frame:
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "as_frame=True needs pandas: pip install pandas (it is in the "
                "'examples' extra of sklearn-cpvae)."
            ) from exc
        data = pd.DataFrame(data, columns=feature_names)
        target = pd.Series(target, name="target")
        populations = pd.Series(populations, name="population")
        frame = pd.concat([data, target, populations], axis=1)
    if return_X_y:
        return data, target
    bunch = Bunch(
        data=data,
        target=target,
        populations=populations,
        population_names=np.asarray(population_names),
        feature_names=feature_names,
        frame=frame,
        DESCR=descr,
        **extra,
    )
    if target_names is not None:
        bunch["target_names"] = np.asarray(target_names)
    return bunch
