"""Fetchers for image datasets: MNIST, Fashion-MNIST (IDX files) and CIFAR-10 (python tarball)."""

from __future__ import annotations

import codecs
import gzip
import pickle
import struct
import tarfile

import numpy as np

from ._base import (
    RemoteFile,
    _check_fetch_options,
    _check_subset,
    _fetch_bunch,
    _resolve_local_or_remote,
    _select_subset,
)


def _sha256_table(text):
    """Parse ``sha256sum``-style lines into ``{filename: digest}``."""
    return {name: digest for digest, name in (line.split() for line in text.strip().splitlines())}


# SHA-256 sums of the original files, as published alongside many independent
# loaders (TensorFlow/Keras, torchvision); mirrors are safe because of them.
_MNIST_SHA256 = _sha256_table("""
440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  train-images-idx3-ubyte.gz
3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  train-labels-idx1-ubyte.gz
8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte.gz
f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte.gz
""")
# The original site often refuses automated downloads nowadays, hence the
# byte-identical mirror used by torchvision as a fallback.
_MNIST_BASE_URLS = (
    "http://yann.lecun.com/exdb/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
_FASHION_SHA256 = _sha256_table("""
3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84  train-images-idx3-ubyte.gz
a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845  train-labels-idx1-ubyte.gz
346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073  t10k-images-idx3-ubyte.gz
67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5  t10k-labels-idx1-ubyte.gz
""")
_FASHION_BASE_URLS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/"
    "b2617bb6d3ffa2e429640350f613e3291e10b141/data/fashion/",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_CIFAR10_REMOTE = RemoteFile(
    "cifar-10-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
)

_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_idx(path):
    """Parse an IDX file (optionally gzipped), the format of the MNIST-family files."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    if len(raw) - header != dtype.itemsize * int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the payload size differs")
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _idx_remotes(base_urls, checksums):
    return [
        RemoteFile(name, tuple(b + name for b in base_urls), sha)
        for name, sha in checksums.items()
    ]


def _parse_idx_files(paths):
    images_train, labels_train, images_test, labels_test = (_read_idx(p) for p in paths)
    return {
        "images_train": images_train,
        "labels_train": labels_train,
        "images_test": images_test,
        "labels_test": labels_test,
    }


def _from_packaged_images(shared):
    """The packaged image layout (``X_train``, ``y_train``, ...) as the parsed-cache keys."""
    arrays = {
        f"{'images' if k[0] == 'X' else 'labels'}{k[1:]}": shared[k]
        for k in ("X_train", "y_train", "X_test", "y_test")
    }
    if "class_names" in shared:
        arrays["class_names"] = shared["class_names"]
    return arrays


def _pixel_names(shape):
    """``pixel_<row>_<col>`` (plus ``_R``/``_G``/``_B`` for colour), in ``data``'s column order."""
    names = np.array([f"pixel_{r}_{c}" for r in range(shape[0]) for c in range(shape[1])])
    if len(shape) == 3:
        names = np.array([f"{n}_{ch}" for n in names for ch in "RGB"[: shape[2]]])
    return names


def _image_bunch(images, target, target_names, descr, *, as_frame, return_X_y):
    """Image data set as the uniform Bunch, one population per class (paper Table 2)."""
    target = target.astype(np.int64)
    return _fetch_bunch(
        data=images.reshape(len(images), -1),
        target=target,
        populations=target.copy(),
        population_names=np.asarray(target_names),
        feature_names=_pixel_names(images.shape[1:]),
        descr=descr,
        as_frame=as_frame,
        return_X_y=return_X_y,
        target_names=target_names,
        images=images,
    )


def _packaged_note(source, note):
    return f" Read from the packaged copy: {note}" if source == "packaged" else ""


def fetch_mnist(
    data_home=None, *, subset="train", download_if_missing=True, return_X_y=False, as_frame=False
):
    """Load MNIST from a local copy, else from the original IDX files (downloaded).

    Sources, first found wins: the parsed cache ``<data_home>/mnist/mnist_parsed.npz``;
    the four original ``*-idx?-ubyte.gz`` files in ``<data_home>/mnist/raw/``; the
    packaged copy ``<data_home>/mnist/mnist.npz`` (keys ``X_train``, ``y_train``,
    ``X_test``, ``y_test``); a download of the original files into
    ``<data_home>/mnist/raw/`` (SHA-256 verified, then parsed and cached).

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    subset : {"train", "test", "all"}, default="train"
        60,000 training images, 10,000 test images, or both (train first).
    download_if_missing : bool, default=True
        If False, raise ``FileNotFoundError`` instead of downloading.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return ``data`` as a DataFrame, ``target`` and ``populations`` as Series,
        and ``frame`` as all three side by side (needs pandas).

    Returns
    -------
    data : sklearn.utils.Bunch
        The keys of every fetcher (see :mod:`sklearn_cpvae.datasets`): ``data``
        (n, 784) uint8 (0 = background, 255 = ink), ``target`` (n,) int64 digit,
        ``populations`` = ``target`` (one population per class, the paper's
        classification protocol; ``target >= 5`` gives its 0-4 vs 5-9 split),
        ``population_names``, ``feature_names`` (``pixel_<row>_<col>``), ``frame``,
        ``DESCR``; plus ``images`` (n, 28, 28) uint8 and ``target_names``.
    (data, target) : tuple
        If ``return_X_y=True``.

    Notes
    -----
    The packaged copy holds all 70,000 images, but training rows 10,000-59,999
    are within one grey level of the originals (its ``train_exact`` key); the
    ``DESCR`` says so whenever that copy was read.
    """
    _check_fetch_options(as_frame, return_X_y)
    subset = _check_subset(subset)
    arrays, source = _resolve_local_or_remote(
        "mnist",
        _idx_remotes(_MNIST_BASE_URLS, _MNIST_SHA256),
        _parse_idx_files,
        ("mnist", _from_packaged_images),
        data_home,
        download_if_missing,
    )
    images, target = _select_subset(arrays, subset, ("images", "labels"))
    descr = (
        "MNIST handwritten digits (LeCun, Cortes & Burges), 28x28 greyscale, 60,000 train / "
        "10,000 test. License: CC BY-SA 3.0. The CPVAE paper uses digits 0-4 vs 5-9 as two "
        "populations, and one population per digit for classification."
        + _packaged_note(
            source,
            "training images 10,000-59,999 differ from the originals by at most one grey "
            "level (test images and the first 10,000 training images are exact).",
        )
    )
    return _image_bunch(
        images,
        target,
        [str(d) for d in range(10)],
        descr,
        as_frame=as_frame,
        return_X_y=return_X_y,
    )


def fetch_fashion_mnist(
    data_home=None, *, subset="train", download_if_missing=True, return_X_y=False, as_frame=False
):
    """Load Fashion-MNIST from a local copy, else from the original IDX files (downloaded).

    Sources, first found wins: the parsed cache
    ``<data_home>/fashion_mnist/fashion_mnist_parsed.npz``; the original IDX files in
    ``<data_home>/fashion_mnist/raw/``; the packaged copy
    ``<data_home>/fashion_mnist/fashion_mnist.npz``; a download of the original
    files (SHA-256 verified, then parsed and cached).

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    subset : {"train", "test", "all"}, default="train"
        60,000 training images, 10,000 test images, or both (train first).
    download_if_missing : bool, default=True
        If False, raise ``FileNotFoundError`` instead of downloading.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects; see :func:`fetch_mnist`.

    Returns
    -------
    data : sklearn.utils.Bunch
        The keys of every fetcher: ``data`` (n, 784) uint8, ``target`` (n,) int64
        class, ``populations`` = ``target``, ``population_names`` and
        ``target_names`` (``"T-shirt/top"``, ...), ``feature_names``, ``frame``,
        ``DESCR``; plus ``images`` (n, 28, 28) uint8.
    (data, target) : tuple
        If ``return_X_y=True``.

    Notes
    -----
    The packaged copy holds only the first 10,000 training images (and the full
    test set); the ``DESCR`` says so whenever it was read.
    """
    _check_fetch_options(as_frame, return_X_y)
    subset = _check_subset(subset)
    arrays, source = _resolve_local_or_remote(
        "fashion_mnist",
        _idx_remotes(_FASHION_BASE_URLS, _FASHION_SHA256),
        _parse_idx_files,
        ("fashion_mnist", _from_packaged_images),
        data_home,
        download_if_missing,
    )
    images, target = _select_subset(arrays, subset, ("images", "labels"))
    descr = (
        "Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017, Zalando Research): 28x28 greyscale "
        "clothing images in 10 classes, 60,000 train / 10,000 test. License: MIT."
        + _packaged_note(
            source,
            f"{len(arrays['images_train'])} training images (the first ones, in the "
            f"original order) and {len(arrays['images_test'])} test images.",
        )
    )
    return _image_bunch(
        images, target, FASHION_MNIST_CLASSES, descr, as_frame=as_frame, return_X_y=return_X_y
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    The CIFAR-10 batches are pickles; refusing every other global means a
    tampered archive cannot run code when it is read.
    """

    _reconstruct = np.empty(0).__reduce__()[0]

    def find_class(self, module, name):
        if name == "_reconstruct" and module in (
            "numpy.core.multiarray",
            "numpy._core.multiarray",
        ):
            return self._reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):
            # Python 3 writes bytes this way at pickle protocol 2 (the CIFAR files' protocol).
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a CIFAR-10 batch")


def _item(mapping, key):
    # Batches pickled by Python 2 have bytes keys once read with encoding="bytes".
    return mapping[key] if key in mapping else mapping[key.encode()]


def _parse_cifar10_tarball(path):
    with tarfile.open(path, "r:gz") as tar:

        def load(name):
            with tar.extractfile(f"cifar-10-batches-py/{name}") as f:
                return _ArrayUnpickler(f, encoding="bytes").load()

        def images_labels(names):
            batches = [load(n) for n in names]
            data = np.concatenate([np.asarray(_item(b, "data"), dtype=np.uint8) for b in batches])
            labels = np.concatenate(
                [np.asarray(_item(b, "labels"), dtype=np.int64) for b in batches]
            )
            # Rows are stored channel-major (R plane, G plane, B plane); convert to HWC.
            return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels

        images_train, labels_train = images_labels([f"data_batch_{i}" for i in range(1, 6)])
        images_test, labels_test = images_labels(["test_batch"])
        names = [
            n.decode() if isinstance(n, bytes) else str(n)
            for n in _item(load("batches.meta"), "label_names")
        ]
    return {
        "images_train": images_train,
        "labels_train": labels_train,
        "images_test": images_test,
        "labels_test": labels_test,
        "class_names": np.array(names),
    }


def fetch_cifar10(
    data_home=None, *, subset="train", download_if_missing=True, return_X_y=False, as_frame=False
):
    """Load CIFAR-10 from a local copy, else from the original python tarball (downloaded).

    Sources, first found wins: the parsed cache ``<data_home>/cifar10/cifar10_parsed.npz``;
    the original ``cifar-10-python.tar.gz`` in ``<data_home>/cifar10/raw/``; the
    packaged copy ``<data_home>/cifar10_jpeg/cifar10_jpeg.npz`` (a lossy subset, see
    Notes); a download of the tarball (163 MiB, SHA-256 verified). The batches are read
    straight from the archive with an unpickler restricted to numpy arrays.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    subset : {"train", "test", "all"}, default="train"
        50,000 training images, 10,000 test images, or both (train first).
    download_if_missing : bool, default=True
        If False, raise ``FileNotFoundError`` instead of downloading.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Return pandas objects; see :func:`fetch_mnist`.

    Returns
    -------
    data : sklearn.utils.Bunch
        The keys of every fetcher: ``data`` (n, 3072) uint8, each row an ``images``
        entry flattened in height, width, channel order (``feature_names``
        ``pixel_<row>_<col>_<R|G|B>``); ``target`` (n,) int64; ``populations`` =
        ``target`` (one population per class, the paper's Table 2 protocol);
        ``population_names`` and ``target_names`` (``"airplane"``, ...); ``frame``;
        ``DESCR``; plus ``images`` (n, 32, 32, 3) uint8 RGB.
    (data, target) : tuple
        If ``return_X_y=True``.

    Notes
    -----
    The packaged copy has 500 images per class of each split, decoded from JPEG at
    quality 75: pixels differ from the original batches by JPEG artefacts, so
    numbers are not comparable with published CIFAR-10 results. The ``DESCR`` says
    so whenever that copy was read.
    """
    _check_fetch_options(as_frame, return_X_y)
    subset = _check_subset(subset)
    arrays, source = _resolve_local_or_remote(
        "cifar10",
        [_CIFAR10_REMOTE],
        lambda paths: _parse_cifar10_tarball(paths[0]),
        ("cifar10_jpeg", _from_packaged_images),
        data_home,
        download_if_missing,
    )
    images, target = _select_subset(arrays, subset, ("images", "labels"))
    descr = (
        "CIFAR-10 (Krizhevsky, 2009, 'Learning Multiple Layers of Features from Tiny Images'): "
        "32x32 RGB images in 10 classes, 50,000 train / 10,000 test. No formal license; cite "
        "the technical report."
        + _packaged_note(
            source,
            f"{len(arrays['images_train'])} training and {len(arrays['images_test'])} test "
            "images decoded from JPEG at quality 75 (lossy: not the original pixels).",
        )
    )
    return _image_bunch(
        images, target, arrays["class_names"], descr, as_frame=as_frame, return_X_y=return_X_y
    )
