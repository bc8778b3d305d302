"""Grassy-MNIST: MNIST digits faintly superimposed on natural grass photos."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.utils import Bunch

from ._base import get_data_home, load_shared_npz

DIGIT_POPULATIONS = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
_SIDE = 28
# The ImageNet photos are preprocessed to 100x100; texture tiles get the same size so
# that a crop sees as much of one "photo" either way.
_TILE = 100
BACKGROUND_SOURCES = ("auto", "imagenet", "textures")


def _check_rng(random_state):
    """Return a ``np.random.Generator`` that never draws from numpy's global state.

    ``sklearn.utils.check_random_state(None)`` would hand back the global
    RandomState, so None maps to a fresh, OS-seeded Generator instead.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        # Seed from the caller's own RandomState so that sharing one object
        # across calls keeps producing different, reproducible draws.
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    return np.random.default_rng(random_state)


def population_names(populations=DIGIT_POPULATIONS):
    """Readable names for digit populations, e.g. ``('0-4', '5-9')``.

    Parameters
    ----------
    populations : sequence of sequences of int
        Digit labels of each population.

    Returns
    -------
    names : tuple of str
        ``"a-b"`` for a run of consecutive digits, else the digits joined by ``","``.

    Examples
    --------
    >>> from sklearn_cpvae.datasets import population_names
    >>> population_names()
    ('0-4', '5-9')
    >>> population_names([(1, 3), (7,)])
    ('1,3', '7')
    """
    names = []
    for digits in populations:
        d = sorted(int(v) for v in digits)
        consecutive = len(d) > 2 and d == list(range(d[0], d[-1] + 1))
        names.append(f"{d[0]}-{d[-1]}" if consecutive else ",".join(map(str, d)))
    return tuple(names)


def _random_crops(images, n, rng):
    """Draw ``n`` random 28x28 crops (photo chosen uniformly, then offset)."""
    m, height, width = images.shape
    which = rng.integers(m, size=n)
    top = rng.integers(height - _SIDE + 1, size=n)
    left = rng.integers(width - _SIDE + 1, size=n)
    offsets = np.arange(_SIDE)
    rows = (top[:, None] + offsets)[:, :, None]
    cols = (left[:, None] + offsets)[:, None, :]
    return images[which[:, None, None], rows, cols]


def _as_float(images):
    return (np.asarray(images, dtype=np.float32) / np.float32(255)).reshape(len(images), -1)


def make_grassy_mnist(
    digits,
    digit_labels,
    backgrounds,
    *,
    n_samples=None,
    n_background=None,
    digit_scale=0.25,
    populations=DIGIT_POPULATIONS,
    return_background=False,
    random_state=None,
):
    """Superimpose digits on random crops of grass photos (Grassy-MNIST).

    Follows the contrastive-PCA recipe (Abid et al., 2018): the photos are
    split at random into two halves; each target image is a random 28x28 crop
    of a first-half photo scaled to [0, 1] plus ``digit_scale * digit / 255``
    (not clipped, so values can exceed 1); each background image is a random
    28x28 crop of a second-half photo, so targets and backgrounds share no
    photo.

    Parameters
    ----------
    digits : array-like of shape (n_digits, 28, 28) or (n_digits, 784)
        Digit images with values in [0, 255] (e.g. MNIST uint8).
    digit_labels : array-like of shape (n_digits,)
        Digit class of each image.
    backgrounds : array-like of shape (n_photos, height, width)
        Greyscale photos with values in [0, 255], ``height, width >= 28``,
        ``n_photos >= 2``: the ImageNet grass photos of the benchmark, or the CC0
        texture tiles, as :func:`load_grass_backgrounds` returns them (the tiles
        make an easier data set; its Notes give the measured difference).
    n_samples : int, default=None
        Number of target images, drawn without replacement among the digits
        belonging to a population and kept in their input order. None uses
        all of them.
    n_background : int, default=None
        Number of background images; None means as many as target images.
        Only used when ``return_background=True``.
    digit_scale : float, default=0.25
        Weight of the digit relative to the grass.
    populations : sequence of sequences of int, default=((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
        Disjoint groups of digit labels. Digits in ``populations[k]`` get
        population label ``k``; digits in no group are dropped.
    return_background : bool, default=False
        Also return the background (grass only) images.
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None, default=None
        Controls the photo split, the subsample and the crops. An int gives
        bitwise-identical output across calls. numpy's global random state is
        never used.

    Returns
    -------
    X : ndarray of shape (n_samples, 784), dtype float32
        Target images, flattened row-major.
    y : ndarray of shape (n_samples,), dtype int64
        Population index of each row (see :func:`population_names`).
    digit : ndarray of shape (n_samples,), dtype int64
        Digit label of each row.
    X_background : ndarray of shape (n_background, 784), dtype float32
        Background images; only returned when ``return_background=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cpvae.datasets import make_grassy_mnist
    >>> rng = np.random.default_rng(0)
    >>> digits = rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    >>> photos = rng.integers(0, 256, size=(4, 40, 40), dtype=np.uint8)
    >>> X, y, digit, X_bg = make_grassy_mnist(
    ...     digits, np.arange(10), photos, return_background=True, random_state=0)
    >>> X.shape, X.dtype, y.tolist(), X_bg.shape
    ((10, 784), dtype('float32'), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1], (10, 784))
    """
    digits = np.asarray(digits)
    if digits.ndim == 2 and digits.shape[1] == _SIDE * _SIDE:
        digits = digits.reshape(-1, _SIDE, _SIDE)
    if digits.ndim != 3 or digits.shape[1:] != (_SIDE, _SIDE):
        raise ValueError(f"digits must have shape (n, 28, 28) or (n, 784), got {digits.shape}")
    digit_labels = np.asarray(digit_labels).ravel()
    if digit_labels.shape[0] != digits.shape[0]:
        raise ValueError(f"{digits.shape[0]} digits but {digit_labels.shape[0]} labels")
    backgrounds = np.asarray(backgrounds)
    if backgrounds.ndim != 3 or min(backgrounds.shape[1:]) < _SIDE:
        raise ValueError(
            f"backgrounds must have shape (n_photos, height, width) with sides >= 28, "
            f"got {backgrounds.shape}"
        )
    if backgrounds.shape[0] < 2:
        raise ValueError("at least 2 background photos are needed to split them in halves")
    groups = [np.unique(np.asarray(p, dtype=np.int64).ravel()) for p in populations]
    merged = np.concatenate(groups) if groups else np.array([], dtype=np.int64)
    if len(groups) == 0 or len(np.unique(merged)) != len(merged):
        raise ValueError(f"populations must be non-empty, disjoint groups, got {populations}")

    population = np.full(digit_labels.shape[0], -1, dtype=np.int64)
    for k, group in enumerate(groups):
        population[np.isin(digit_labels, group)] = k
    eligible = np.flatnonzero(population >= 0)

    rng = _check_rng(random_state)
    order = rng.permutation(backgrounds.shape[0])
    half = (backgrounds.shape[0] + 1) // 2
    target_photos, background_photos = backgrounds[order[:half]], backgrounds[order[half:]]

    if n_samples is not None:
        if not isinstance(n_samples, numbers.Integral) or not 0 < n_samples <= len(eligible):
            raise ValueError(
                f"n_samples must be an int in [1, {len(eligible)}] (the digits in "
                f"the populations), got {n_samples!r}"
            )
        eligible = np.sort(rng.choice(eligible, size=n_samples, replace=False))

    crops = _random_crops(target_photos, len(eligible), rng)
    X = _as_float(crops) + np.float32(digit_scale) * _as_float(digits[eligible])
    y = population[eligible]
    digit = digit_labels[eligible].astype(np.int64)
    if not return_background:
        return X, y, digit
    n_background = len(eligible) if n_background is None else n_background
    if not isinstance(n_background, numbers.Integral) or n_background < 0:
        raise ValueError(f"n_background must be a non-negative int, got {n_background!r}")
    X_background = _as_float(_random_crops(background_photos, n_background, rng))
    return X, y, digit, X_background


def _load_mnist(data_home, subset):
    """MNIST images and labels from any local copy :func:`fetch_mnist` reads; no download."""
    from ._images import fetch_mnist

    try:
        bunch = fetch_mnist(data_home, subset=subset, download_if_missing=False)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"MNIST not found under {data_home}: expected mnist/mnist.npz (packaged "
            f"layout), the original IDX files in mnist/raw/, or the cache written by "
            f"fetch_mnist(data_home)."
        ) from None
    return bunch.images, bunch.target


def _texture_tiles(texture, tile=_TILE):
    """Cut one large texture into disjoint ``tile x tile`` pieces, row-major.

    Disjoint pieces stand in for separate photos: the target and background halves of
    :func:`make_grassy_mnist` then share no pixel.
    """
    rows, cols = texture.shape[0] // tile, texture.shape[1] // tile
    trimmed = texture[: rows * tile, : cols * tile]
    return np.ascontiguousarray(
        trimmed.reshape(rows, tile, cols, tile).transpose(0, 2, 1, 3).reshape(-1, tile, tile)
    )


def _grass_texture(home):
    """The CC0 grass texture: the packaged copy, else the one inside scikit-image."""
    try:
        return load_shared_npz("skimage_textures", home)["grass"]
    except FileNotFoundError:
        pass
    try:
        from skimage import data as skimage_data
    except ImportError:
        raise FileNotFoundError(
            f"background='textures' needs the CC0 grass texture: "
            f"{home / 'skimage_textures' / 'skimage_textures.npz'} is absent and "
            f"scikit-image is not installed (pip install scikit-image, or the 'textures' "
            f"extra of sklearn-cpvae)."
        ) from None
    return np.asarray(skimage_data.grass(), dtype=np.uint8)


def load_grass_backgrounds(data_home=None, *, background="auto"):
    """Greyscale background photos for :func:`make_grassy_mnist`.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder holding ``grass_imagenet/`` or ``skimage_textures/``; see
        :func:`get_data_home`.
    background : {"auto", "imagenet", "textures"}, default="auto"
        ``"imagenet"``: the 766 ImageNet grass photos of the contrastive-PCA
        benchmark, ``<data_home>/grass_imagenet/grass_imagenet.npz`` (key
        ``X_gray100``; non-commercial research use only, not downloadable by this
        package). ``"textures"``: the CC0 grass texture of scikit-image (512x512,
        ``<data_home>/skimage_textures/skimage_textures.npz`` key ``grass``, else
        ``skimage.data.grass()``) cut into 25 disjoint 100x100 tiles. ``"auto"``:
        the ImageNet photos when present, else the texture tiles with a
        ``UserWarning``.

    Returns
    -------
    photos : ndarray of shape (n_photos, 100, 100), dtype uint8
    source : {"imagenet", "textures"}
        Which background was read.

    Notes
    -----
    The texture tiles are 25 pieces of one photograph of one lawn: less varied
    and less contrasted than 766 ImageNet photos, so Grassy-MNIST built on them
    is easier and its scores are not comparable with the benchmark's. Measured
    by ``python -m benchmarks.diagnostics.grass_backgrounds --seeds 0 1
    --threads 1`` (Table 1's quick set-up: 1,500 training and 600 held-out rows,
    digit_scale 0.25; 2 seeds; 269 s on a 2-core x86-64 CPU shared with other
    jobs), ImageNet photos vs texture tiles:

    * the digit's share of the held-out pixel variance: 0.079 vs 0.156 (grass
      pixel sd 0.223 vs 0.152);
    * KMeans ARI of the digits within a population on raw pixels: 0.000 vs
      0.033; on 100 PCA codes: -0.001 vs 0.027; on a plain VAE's codes: -0.002
      vs 0.041. The benchmark's property that linear methods and a VAE find the
      digits at chance is lost;
    * CPVAE private-space ARI: ELBO 0.002 vs 0.041, alpha = 1 0.049 vs 0.100,
      annealed alpha 0.077 vs 0.093. The MI variants still beat the ELBO and
      the shared space, but the margins over the baselines shrink.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cpvae.datasets import load_grass_backgrounds
    >>> home = getfixture("tmp_path")
    >>> (home / "skimage_textures").mkdir()
    >>> np.savez(home / "skimage_textures" / "skimage_textures.npz",
    ...          grass=np.zeros((512, 512), np.uint8))
    >>> photos, source = load_grass_backgrounds(home, background="textures")
    >>> photos.shape, source
    ((25, 100, 100), 'textures')
    """
    if background not in BACKGROUND_SOURCES:
        raise ValueError(f"background must be one of {BACKGROUND_SOURCES}, got {background!r}")
    home = get_data_home(data_home)
    if background in ("auto", "imagenet"):
        try:
            return load_shared_npz("grass_imagenet", home)["X_gray100"], "imagenet"
        except FileNotFoundError:
            if background == "imagenet":
                raise FileNotFoundError(
                    f"background='imagenet' needs "
                    f"{home / 'grass_imagenet' / 'grass_imagenet.npz'} (ImageNet photos, "
                    f"not downloadable); pass background='textures' for the CC0 texture."
                ) from None
        photos = _texture_tiles(_grass_texture(home))
        warnings.warn(
            f"The ImageNet grass photos are not under {home} (grass_imagenet/): using "
            f"{len(photos)} tiles of the CC0 scikit-image grass texture instead, which makes "
            "an easier Grassy-MNIST than the benchmark. Pass background='textures' to "
            "choose it explicitly, or background='imagenet' to require the photos.",
            UserWarning,
            stacklevel=2,
        )
        return photos, "textures"
    return _texture_tiles(_grass_texture(home)), "textures"


def load_grassy_mnist(
    data_home=None,
    *,
    subset="train",
    n_samples=None,
    n_background=None,
    digit_scale=0.25,
    populations=DIGIT_POPULATIONS,
    return_background=False,
    return_X_y=False,
    random_state=0,
    background="auto",
):
    """Build Grassy-MNIST from MNIST and grass photos on disk.

    Reads MNIST from any local copy :func:`fetch_mnist` finds (never
    downloading it) and the backgrounds of :func:`load_grass_backgrounds`, then
    calls :func:`make_grassy_mnist`. The benchmark's grass photos are ImageNet
    images (non-commercial research use only) and cannot be downloaded by this
    package; without them the CC0 scikit-image grass texture is used.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder holding ``mnist/`` and ``grass_imagenet/`` (or
        ``skimage_textures/``); see :func:`get_data_home`.
    subset : {"train", "test", "all"}, default="train"
        MNIST split to draw digits from.
    n_samples, n_background, digit_scale, populations, return_background
        See :func:`make_grassy_mnist`.
    return_X_y : bool, default=False
        Return ``(X, y)`` (plus ``X_background`` if requested) instead of a Bunch.
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None, default=0
        See :func:`make_grassy_mnist`. Fixed by default so that the dataset is
        the same in every session.
    background : {"auto", "imagenet", "textures"}, default="auto"
        Background photos; see :func:`load_grass_backgrounds`. ``"auto"`` takes
        the ImageNet photos when present, else the CC0 texture with a warning.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``data`` (n, 784) float32, ``target`` (n,) population index,
        ``target_names`` population names such as ``"0-4"``, ``digit`` (n,)
        digit labels, ``background`` (n_background, 784) float32 or None, and
        ``DESCR``.
    (X, y) or (X, y, X_background) : tuple
        If ``return_X_y=True``.
    """
    home = get_data_home(data_home)
    if subset not in ("train", "test", "all"):
        raise ValueError(f"subset must be 'train', 'test' or 'all', got {subset!r}")
    if background not in BACKGROUND_SOURCES:
        raise ValueError(f"background must be one of {BACKGROUND_SOURCES}, got {background!r}")
    digits, labels = _load_mnist(home, subset)
    grass, source = load_grass_backgrounds(home, background=background)
    out = make_grassy_mnist(
        digits,
        labels,
        grass,
        n_samples=n_samples,
        n_background=n_background,
        digit_scale=digit_scale,
        populations=populations,
        return_background=return_background,
        random_state=random_state,
    )
    X, y, digit = out[:3]
    X_background = out[3] if return_background else None
    if return_X_y:
        return (X, y, X_background) if return_background else (X, y)
    photos = (
        "ImageNet grass photos (non-commercial research use only)"
        if source == "imagenet"
        else f"{len(grass)} 100x100 tiles of the CC0 scikit-image grass texture (an easier "
        "variant than the benchmark's ImageNet photos)"
    )
    return Bunch(
        data=X,
        target=y,
        target_names=np.array(population_names(populations)),
        digit=digit,
        background=X_background,
        background_source=source,
        DESCR=(
            f"Grassy-MNIST ({subset} digits): MNIST digit/255 * {digit_scale} added to "
            f"random 28x28 crops of {photos}, cPCA recipe (Abid et al. 2018). "
            "target = population index, digit = digit label."
        ),
    )
