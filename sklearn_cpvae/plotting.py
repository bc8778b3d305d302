"""Figures of a fitted CPVAE, as scikit-learn style Display objects.

Each display is built with ``from_estimator`` (or ``from_history`` / ``from_codes`` from
precomputed values), draws itself with ``plot(ax=...)`` and keeps the matplotlib objects
it drew on as ``figure_`` and ``ax_``, like :class:`sklearn.metrics.ConfusionMatrixDisplay`.

* :class:`TrainingHistoryDisplay`: every recorded loss term over the epochs, the
  validation loss, the alpha schedule of eq. 10, and where a divergence restored weights
  or early stopping stopped.
* :class:`ReconstructionDisplay`: original, full, private-only and shared-only
  reconstructions of image rows (the paper's Fig. 2).
* :class:`PopulationSwapDisplay`: rows decoded under every population (the paper's Fig. 4).
* :class:`EmbeddingDisplay`: a 2-D view (PCA or t-SNE) of the shared or private codes.

matplotlib is an optional dependency (``pip install "sklearn-cpvae[plot]"``); this module
imports without it and raises an ``ImportError`` naming the extra when a figure is drawn.

**Private-only and shared-only images.** The aggregation ``g(a, b) = a + b`` does not say
which part holds a constant: ``f_s + c`` and ``f_k - c`` are the same model. The average
image (for digits on gratings: the mean digit) is such a constant. ``inverse_transform``
gives ``f_s(z)`` its offset (``part="shared"``), so a shared-only image drawn from it
shows the average digit in every column, and the private part alone is a signed
deviation from that average. :class:`ReconstructionDisplay` therefore shows, by default
(``baseline="prior"``), the private code decoded on the prior mean of the shared code,
``decode(z=0, t)``, and the change the row's own shared code makes,
``decode(z, t) - decode(z=0, t)``; the two add up to the full reconstruction, for every
likelihood (see "Private-only and shared-only pictures" in :doc:`the model guide </model>`).
"""

import copy
import math
from numbers import Integral

import numpy as np
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from sklearn_cpvae._estimator import CPVAE

__all__ = [
    "EmbeddingDisplay",
    "PopulationSwapDisplay",
    "ReconstructionDisplay",
    "TrainingHistoryDisplay",
]

# Keys of a history record that are not objective terms.
_NOT_TERMS = ("epoch", "time", "mi_weight")


def _pyplot():
    """matplotlib.pyplot, or an ImportError that names the ``plot`` extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "sklearn_cpvae.plotting needs matplotlib, which is not installed: "
            'pip install "sklearn-cpvae[plot]" (or pip install matplotlib).'
        ) from exc
    return plt


def _axes_grid(ax, shape, figsize):
    """``(figure, axes of ``shape``)``: new ones when ``ax`` is None, else ``ax`` checked."""
    plt = _pyplot()
    if ax is None:
        fig, axes = plt.subplots(*shape, figsize=figsize, squeeze=False)
        return fig, axes.reshape(shape)
    axes = np.asarray(ax, dtype=object)
    if axes.size != math.prod(shape):
        raise ValueError(
            f"ax must hold {math.prod(shape)} matplotlib Axes (a grid of shape {shape}) for "
            f"this figure; got {axes.size}. Pass ax=None to create them."
        )
    axes = axes.reshape(shape)
    return axes.flat[0].figure, axes


def _check_cpvae(estimator):
    if not isinstance(estimator, CPVAE):
        raise TypeError(
            f"estimator must be a fitted sklearn_cpvae.CPVAE; got {type(estimator).__name__}. "
            "For a Pipeline, pass its CPVAE step and the data as that step receives it."
        )
    check_is_fitted(estimator)
    # A shallow copy with both code blocks: the caller's ``blocks`` is left as it was.
    both = copy.copy(estimator)
    both.blocks = "both"
    return both


def _check_populations(estimator, X, populations, name="populations"):
    if populations is None:
        raise ValueError(
            f"{name} is required: the population of each row of X chooses its private "
            "encoder and decoder (model.predict(X) gives the predicted ones)."
        )
    populations = np.asarray(populations)
    if populations.ndim == 0:
        populations = np.full(X.shape[0], populations.item())
    if populations.shape != (X.shape[0],):
        raise ValueError(
            f"{name} must have one label per row of X ({X.shape[0]}); got shape "
            f"{populations.shape}."
        )
    unknown = np.setdiff1d(populations, estimator.classes_)
    if unknown.size:
        raise ValueError(
            f"{name} holds labels the model was not fitted on: {unknown[:5].tolist()}; "
            f"known populations: {estimator.classes_.tolist()}."
        )
    return populations


def _check_rows(X, n_images):
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    if not (isinstance(n_images, Integral) and n_images >= 1):
        raise ValueError(f"n_images must be a positive integer; got {n_images!r}.")
    return X, min(int(n_images), X.shape[0])


def _image_shape(n_features, image_shape):
    """The shape each row is drawn in: given, or inferred from a square number of features
    (grey) or three times one (RGB, channels last)."""
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (3, 4)):
            raise ValueError(
                "image_shape must be (height, width) or (height, width, 3 or 4) with the "
                f"channels last; got {image_shape!r}."
            )
        if math.prod(shape) != n_features:
            raise ValueError(
                f"image_shape={shape} holds {math.prod(shape)} values, but rows have "
                f"{n_features} features."
            )
        return shape
    side = math.isqrt(n_features)
    if side * side == n_features:
        return (side, side)
    side = math.isqrt(n_features // 3)
    if n_features % 3 == 0 and side * side * 3 == n_features:
        return (side, side, 3)
    raise ValueError(
        f"Cannot infer an image shape from {n_features} features (neither a square number "
        "nor three times one); pass image_shape=(height, width) or (height, width, 3)."
    )


def _codes(model, X, populations):
    return np.asarray(model.transform(X, populations=populations), dtype=float)


def _decode(model, codes, populations, part="full"):
    return np.asarray(model.inverse_transform(codes, populations, part=part), dtype=float)


def _unmap(inverse_func, images, offsets=()):
    """``inverse_func`` applied to each row of images; rows named in ``offsets`` are
    differences, mapped as ``inverse_func(d) - inverse_func(0)``."""
    out = {}
    for name, rows in images.items():
        mapped = np.asarray(inverse_func(rows), dtype=float)
        if mapped.shape != rows.shape:
            raise ValueError(
                f"inverse_func must return an array of the shape it is given {rows.shape}; "
                f"got {mapped.shape}."
            )
        if name in offsets:
            mapped = mapped - np.asarray(inverse_func(np.zeros_like(rows)), dtype=float)
        out[name] = mapped
    return out


class _ImageGridDisplay:
    """A grid of images: one row per named set of images, one column per data row."""

    def __init__(self, images, *, image_shape=None, column_labels=None, title=None):
        self.images = dict(images)
        if not self.images:
            raise ValueError("images must hold at least one row of images.")
        widths = {np.shape(v)[1] for v in self.images.values()}
        counts = {np.shape(v)[0] for v in self.images.values()}
        if len(widths) != 1 or len(counts) != 1:
            raise ValueError(
                "every row of images must have the same number of images and features; got "
                f"shapes {[np.shape(v) for v in self.images.values()]}."
            )
        self.image_shape = _image_shape(widths.pop(), image_shape)
        self.column_labels = None if column_labels is None else list(column_labels)
        self.title = title

    def plot(self, ax=None, *, cmap="gray", scale="row"):
        """Draw the grid.

        Parameters
        ----------
        ax : array of matplotlib Axes of shape (n_rows, n_images), default=None
            Axes to draw on; a new figure when None.
        cmap : str, default="gray"
            Colour map of grey images (RGB images are drawn as they are).
        scale : {"row", "image"}, default="row"
            ``"row"``: the images of a row share one value range, so that columns compare;
            ``"image"``: each image is stretched to its own range.

        Returns
        -------
        display : the display, with ``figure_`` and ``ax_`` set.
        """
        if scale not in ("row", "image"):
            raise ValueError(f"scale must be 'row' or 'image'; got {scale!r}.")
        names = list(self.images)
        n_cols = np.shape(self.images[names[0]])[0]
        size = (n_cols * 1.05 + 1.0, len(names) * 1.05 + 0.4)
        self.figure_, self.ax_ = _axes_grid(ax, (len(names), n_cols), size)
        rgb = len(self.image_shape) == 3
        for r, name in enumerate(names):
            row = np.asarray(self.images[name], dtype=float)
            for c in range(n_cols):
                a = self.ax_[r, c]
                values = row if scale == "row" else row[c]
                lo, hi = float(np.min(values)), float(np.max(values))
                img = row[c].reshape(self.image_shape)
                if rgb:
                    a.imshow(np.clip((img - lo) / max(hi - lo, 1e-12), 0.0, 1.0))
                else:
                    a.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
                a.set_xticks([])
                a.set_yticks([])
                if c == 0:
                    a.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
                if r == 0 and self.column_labels is not None:
                    a.set_title(str(self.column_labels[c]), fontsize=7)
        if self.title is not None:
            self.figure_.suptitle(self.title, fontsize=9)
        return self


class ReconstructionDisplay(_ImageGridDisplay):
    """Original, full, private-only and shared-only reconstructions of image rows (Fig. 2).

    Build it with :meth:`from_estimator`; the constructor takes precomputed images.

    Parameters
    ----------
    images : dict of str to array of shape (n_images, n_features)
        One row of the grid per entry, in order.
    image_shape : tuple, default=None
        ``(height, width)`` or ``(height, width, 3)`` (channels last); inferred from a
        square number of features (or three times one) when None.
    column_labels : list of str, default=None
        A title above each column (the population of each row).
    title : str, default=None
        The figure's title.

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : ndarray of matplotlib Axes, shape (n_rows, n_images)

    See Also
    --------
    PopulationSwapDisplay : The same rows decoded under every population.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_cpvae import CPVAE
    >>> from sklearn_cpvae.plotting import ReconstructionDisplay
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(40, 16)), np.repeat(["a", "b"], 20)
    >>> model = CPVAE(n_shared=2, n_private=2, hidden_layer_sizes=(8,), max_iter=2,
    ...               random_state=0).fit(X, y)
    >>> disp = ReconstructionDisplay.from_estimator(model, X, y, n_images=4)
    >>> disp.ax_.shape, disp.image_shape
    ((4, 4), (4, 4))
    >>> [a.get_ylabel() for a in disp.ax_[:, 0]]
    ['original', 'full', 'private (z = 0)', 'shared (change)']
    """

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        populations,
        *,
        n_images=8,
        image_shape=None,
        baseline="prior",
        inverse_func=None,
        ax=None,
        cmap="gray",
        scale="row",
        title=None,
    ):
        """Reconstruct the first ``n_images`` rows of ``X`` and draw them.

        Parameters
        ----------
        estimator : fitted CPVAE
        X : array-like of shape (n_samples, n_features)
            Image rows (flattened, channels last for RGB).
        populations : array-like of shape (n_samples,) or a single label
            Population of each row: its private encoder and decoder.
        n_images : int, default=8
            Columns: the first ``n_images`` rows of ``X``.
        image_shape : tuple, default=None
            See the class parameters.
        baseline : {"prior", "none"}, default="prior"
            ``"prior"``: the private row is ``decode(z=0, t)``, the row's private code on
            the decoding of the shared prior mean, and the shared row is the change the
            row's shared code makes, ``decode(z, t) - decode(z=0, t)`` (a signed image);
            the two add up to the full reconstruction. ``"none"``: the parts as
            :meth:`CPVAE.inverse_transform` gives them (``part="private"``, an offset
            without the feature means, and ``part="shared"``, which holds the average
            image). See the module docstring for why they differ.
        inverse_func : callable, default=None
            An affine map from the units of X back to pixel values, for data transformed
            before ``fit`` (``lambda a: a * scale + mean``); applied to every row in the
            units of X, and as ``inverse_func(d) - inverse_func(0)`` to the rows that are
            differences (the shared change; the private offset of ``baseline="none"``).
        ax, cmap, scale
            See :meth:`plot`.
        title : str, default=None
            The figure's title.

        Returns
        -------
        display : ReconstructionDisplay
        """
        model = _check_cpvae(estimator)
        X, n = _check_rows(X, n_images)
        if baseline not in ("prior", "none"):
            raise ValueError(f"baseline must be 'prior' or 'none'; got {baseline!r}.")
        pops = _check_populations(model, X, populations)[:n]
        x = X[:n]
        codes = _codes(model, x, pops)
        full = _decode(model, codes, pops)
        if baseline == "prior":
            at_prior = codes.copy()
            at_prior[:, : model.n_shared] = 0.0
            private = _decode(model, at_prior, pops)
            shared = full - private
            names = ("private (z = 0)", "shared (change)")
        else:
            private = _decode(model, codes, pops, part="private")
            shared = _decode(model, codes, pops, part="shared")
            names = ("private only", "shared only")
        images = {"original": x, "full": full, names[0]: private, names[1]: shared}
        if inverse_func is not None:
            # The shared change, or the private offset of baseline="none", is a difference.
            offset = names[1] if baseline == "prior" else names[0]
            images = _unmap(inverse_func, images, offsets=(offset,))
        display = cls(images, image_shape=image_shape, column_labels=pops, title=title)
        return display.plot(ax=ax, cmap=cmap, scale=scale)


class PopulationSwapDisplay(_ImageGridDisplay):
    """Rows autoencoded through every population's private encoder and decoder (Fig. 4).

    Row "as k" shows ``decode(z, t_k)`` with ``t_k`` the code of population k's encoder
    and k's decoder: the rows as population k would have them. Build it with
    :meth:`from_estimator`; parameters and attributes are those of
    :class:`ReconstructionDisplay`.

    Parameters
    ----------
    images : dict of str to array of shape (n_images, n_features)
    image_shape : tuple, default=None
    column_labels : list of str, default=None
    title : str, default=None

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : ndarray of matplotlib Axes, shape (1 + n_populations, n_images)

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_cpvae import CPVAE
    >>> from sklearn_cpvae.plotting import PopulationSwapDisplay
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(40, 16)), np.repeat(["a", "b"], 20)
    >>> model = CPVAE(n_shared=2, n_private=2, hidden_layer_sizes=(8,), max_iter=2,
    ...               random_state=0).fit(X, y)
    >>> disp = PopulationSwapDisplay.from_estimator(model, X, y, n_images=3)
    >>> [a.get_ylabel() for a in disp.ax_[:, 0]]
    ['original', 'as a', 'as b']
    """

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        populations=None,
        *,
        n_images=8,
        image_shape=None,
        inverse_func=None,
        ax=None,
        cmap="gray",
        scale="row",
        title=None,
    ):
        """Decode the first ``n_images`` rows of ``X`` under each population and draw them.

        Parameters
        ----------
        estimator : fitted CPVAE
        X : array-like of shape (n_samples, n_features)
        populations : array-like of shape (n_samples,), default=None
            The rows' own populations, shown above the columns (not used to decode).
        n_images, image_shape, inverse_func, ax, cmap, scale, title
            See :meth:`ReconstructionDisplay.from_estimator`.

        Returns
        -------
        display : PopulationSwapDisplay
        """
        model = _check_cpvae(estimator)
        X, n = _check_rows(X, n_images)
        labels = None
        if populations is not None:
            labels = _check_populations(model, X, populations)[:n]
        x = X[:n]
        images = {"original": x}
        # A population-centred shared encoder centres each row by its own population
        # (given, else predicted), whichever population it is shown as.
        shared = model.get_latent_representation(x, labels, blocks="shared")
        for k in model.classes_:
            as_k = np.full(n, k)
            codes = _codes(model, x, as_k)
            codes[:, : model.n_shared] = shared
            images[f"as {k}"] = _decode(model, codes, as_k)
        if inverse_func is not None:
            images = _unmap(inverse_func, images)
        display = cls(images, image_shape=image_shape, column_labels=labels, title=title)
        return display.plot(ax=ax, cmap=cmap, scale=scale)


class TrainingHistoryDisplay:
    """Every recorded term of the objective over the epochs, one panel each.

    A panel per term of ``history_`` (``loss``, ``recon``, ``kl_shared``, ``kl_private``,
    ``mi`` for a CPVAE), with the validation value (``val_<term>``, recorded with
    ``early_stopping=True``) beside the training one, and a panel for the alpha schedule
    (``mi_weight``, eq. 10) when it was recorded. Vertical lines mark events.

    Parameters
    ----------
    history : list of dict
        Records as in ``CPVAE.history_``.
    marks : list of (int, str), default=None
        ``(epoch, label)`` pairs drawn as vertical lines on every panel.

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : ndarray of matplotlib Axes, one per panel

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_cpvae.plotting import TrainingHistoryDisplay
    >>> history = [{"loss": 3.0 - e, "recon": e - 2.0, "mi_weight": 1.0, "epoch": e}
    ...            for e in (1, 2)]
    >>> disp = TrainingHistoryDisplay.from_history(history)
    >>> [a.get_title() for a in disp.ax_]
    ['loss', 'recon', 'alpha (mi_weight)']
    """

    def __init__(self, history, *, marks=None):
        if len(history) == 0:
            raise ValueError("history is empty: the estimator has no recorded epoch.")
        self.history = list(history)
        self.marks = [] if marks is None else [(int(e), str(lab)) for e, lab in marks]

    @classmethod
    def from_estimator(cls, estimator, *, error=None, ax=None, terms=None):
        """Draw the history of a fitted estimator (CPVAE or VAE).

        Parameters
        ----------
        estimator : fitted estimator with ``history_``
        error : TrainingDivergedError, default=None
            The error ``fit`` raised, if it diverged: its epoch and the epoch whose
            weights were restored are marked.
        ax, terms
            See :meth:`plot`.

        Returns
        -------
        display : TrainingHistoryDisplay
        """
        check_is_fitted(estimator, "history_")
        history = estimator.history_
        marks = []
        if getattr(estimator, "early_stopping", False):
            best = _best_validation_epoch(history, getattr(estimator, "mi_anneal_epochs", 0))
            if best is not None:
                marks.append((best, "weights kept (best validation loss)"))
            marks.append((history[-1]["epoch"], "early stopping stopped"))
        return cls.from_history(history, error=error, marks=marks, ax=ax, terms=terms)

    @classmethod
    def from_history(cls, history, *, error=None, marks=None, ax=None, terms=None):
        """Draw a list of history records (``history_``).

        Parameters
        ----------
        history : list of dict
        error : TrainingDivergedError, default=None
            Marks the epoch that diverged and the epoch whose weights were restored.
        marks : list of (int, str), default=None
            Further ``(epoch, label)`` marks.
        ax, terms
            See :meth:`plot`.

        Returns
        -------
        display : TrainingHistoryDisplay
        """
        marks = list(marks or [])
        if error is not None:
            epoch = getattr(error, "epoch", None)
            restored = getattr(error, "restored_epoch", None)
            if epoch is None and restored is None:
                raise TypeError(
                    "error must be the TrainingDivergedError that fit raised; got "
                    f"{type(error).__name__} without epoch or restored_epoch."
                )
            if epoch is not None:
                marks.append((epoch, f"diverged ({getattr(error, 'term', None)})"))
            if restored is not None:
                marks.append((restored, "weights restored"))
        return cls(history, marks=marks).plot(ax=ax, terms=terms)

    def _terms(self, terms):
        recorded = [
            key for key in self.history[0] if key not in _NOT_TERMS and not key.startswith("val_")
        ]
        if terms is None:
            return recorded
        missing = [t for t in terms if t not in recorded]
        if missing:
            raise ValueError(f"terms {missing} are not in the history; recorded: {recorded}.")
        return list(terms)

    def plot(self, ax=None, *, terms=None):
        """Draw the panels.

        Parameters
        ----------
        ax : array of matplotlib Axes, default=None
            One Axes per panel (each term, then alpha when recorded); a new figure when
            None.
        terms : list of str, default=None
            The terms to draw; every recorded one when None.

        Returns
        -------
        display : TrainingHistoryDisplay
        """
        names = self._terms(terms)
        with_alpha = "mi_weight" in self.history[0]
        n_panels = len(names) + with_alpha
        cols = min(3, n_panels)
        rows = math.ceil(n_panels / cols)
        if ax is None:
            fig, grid = _axes_grid(None, (rows, cols), (4.0 * cols, 2.8 * rows))
            for extra in grid.flat[n_panels:]:
                extra.remove()
            axes = np.asarray(grid.flat[:n_panels], dtype=object)
        else:
            fig, axes = _axes_grid(ax, (n_panels,), None)
        self.figure_, self.ax_ = fig, axes
        epochs = np.array([r.get("epoch", i + 1) for i, r in enumerate(self.history)])
        panels = [(n, n) for n in names] + ([("mi_weight", "alpha (mi_weight)")] * with_alpha)
        for a, (key, title) in zip(self.ax_, panels):
            a.plot(epochs, [r[key] for r in self.history], label="training")
            if f"val_{key}" in self.history[0]:
                a.plot(epochs, [r[f"val_{key}"] for r in self.history], label="validation")
            for i, (epoch, label) in enumerate(self.marks):
                a.axvline(epoch, color=f"C{i + 2}", linestyle="--", linewidth=1, label=label)
            a.set_title(title, fontsize=9)
            a.set_xlabel("epoch", fontsize=8)
        if len(self.ax_) and (self.marks or any(k.startswith("val_") for k in self.history[0])):
            self.ax_[0].legend(fontsize=7)
        return self


def _best_validation_epoch(history, anneal_epochs):
    """The epoch whose weights early stopping keeps: the first lowest validation loss
    once annealing has ended (the rule of ``_training.train``)."""
    rows = [r for r in history if "val_loss" in r and r["epoch"] >= anneal_epochs]
    if not rows:
        return None
    return min(rows, key=lambda r: r["val_loss"])["epoch"]


class EmbeddingDisplay:
    """A 2-D view of codes, coloured by population or by a label.

    Parameters
    ----------
    embedding : array of shape (n_samples, 2)
    labels : array-like of shape (n_samples,), default=None
        One colour per distinct label; one colour for all when None.
    title : str, default=None
    axis_labels : (str, str), default=("1", "2")

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_cpvae.plotting import EmbeddingDisplay
    >>> codes = np.random.default_rng(0).normal(size=(30, 4))
    >>> disp = EmbeddingDisplay.from_codes(codes, labels=np.repeat([0, 1, 2], 10))
    >>> disp.embedding.shape, len(disp.ax_.get_legend().get_texts())
    ((30, 2), 3)
    """

    def __init__(self, embedding, labels=None, *, title=None, axis_labels=("1", "2")):
        embedding = np.asarray(embedding, dtype=float)
        if embedding.ndim != 2 or embedding.shape[1] != 2:
            raise ValueError(f"embedding must have shape (n_samples, 2); got {embedding.shape}.")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (len(embedding),):
                raise ValueError(
                    f"labels must have one entry per row ({len(embedding)}); got shape "
                    f"{labels.shape}."
                )
        self.embedding = embedding
        self.labels = labels
        self.title = title
        self.axis_labels = tuple(axis_labels)

    @classmethod
    def from_codes(
        cls, codes, labels=None, *, method="pca", random_state=None, title=None, ax=None, **kwargs
    ):
        """Project codes to 2-D with PCA or t-SNE and draw them.

        Parameters
        ----------
        codes : array-like of shape (n_samples, n_codes)
            Any codes (a CPVAE block, a VAE's ``transform``).
        labels : array-like of shape (n_samples,), default=None
        method : {"pca", "tsne"}, default="pca"
            :class:`sklearn.decomposition.PCA` (codes of two dimensions are drawn as they
            are) or :class:`sklearn.manifold.TSNE` (PCA start; perplexity 30, lowered
            for small samples).
        random_state : int, RandomState or None, default=None
            Seed of t-SNE (and of randomised PCA solvers).
        title : str, default=None
        ax : matplotlib Axes, default=None
        **kwargs
            Passed to :meth:`plot` (matplotlib ``scatter`` options).

        Returns
        -------
        display : EmbeddingDisplay
        """
        codes = np.asarray(codes, dtype=float)
        if codes.ndim != 2 or codes.shape[1] < 2:
            raise ValueError(
                f"codes must be 2-D with at least 2 columns to draw in 2-D; got shape "
                f"{codes.shape}."
            )
        if method == "pca":
            if codes.shape[1] == 2:
                emb, axis = codes, ("code 1", "code 2")
            else:
                emb = PCA(n_components=2, random_state=random_state).fit_transform(codes)
                axis = ("PC 1", "PC 2")
        elif method == "tsne":
            from sklearn.manifold import TSNE

            if len(codes) < 4:
                raise ValueError(f"method='tsne' needs at least 4 rows; got {len(codes)}.")
            perplexity = min(30.0, (len(codes) - 1) / 3)
            emb = TSNE(
                n_components=2, init="pca", perplexity=perplexity, random_state=random_state
            ).fit_transform(codes)
            axis = ("t-SNE 1", "t-SNE 2")
        else:
            raise ValueError(f"method must be 'pca' or 'tsne'; got {method!r}.")
        return cls(emb, labels, title=title, axis_labels=axis).plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        populations=None,
        *,
        space="shared",
        labels=None,
        method="pca",
        random_state=None,
        title=None,
        ax=None,
        **kwargs,
    ):
        """Draw the shared or private codes of ``X``.

        Parameters
        ----------
        estimator : fitted CPVAE
        X : array-like of shape (n_samples, n_features)
        populations : array-like of shape (n_samples,), default=None
            Population of each row. Required for ``space="private"`` (each row's own
            private encoder); the default colours.
        space : {"shared", "private"}, default="shared"
            Which code block. Each population's private code lives in its own space, so
            with several populations, compare private codes within one population
            (pass its rows only) or read the colours by population.
        labels : array-like of shape (n_samples,), default=None
            Colours (a sub-group label such as the digit); ``populations`` when None.
        method, random_state, title, ax, **kwargs
            See :meth:`from_codes`.

        Returns
        -------
        display : EmbeddingDisplay
        """
        model = _check_cpvae(estimator)
        if space not in ("shared", "private"):
            raise ValueError(f"space must be 'shared' or 'private'; got {space!r}.")
        X = np.asarray(X) if not hasattr(X, "iloc") else X
        pops = None
        if populations is not None or space == "private":
            pops = _check_populations(model, np.empty((len(X), 0)), populations)
        model.blocks = space
        codes = np.asarray(model.transform(X, populations=pops), dtype=float)
        if codes.shape[1] < 2:
            size = "n_shared" if space == "shared" else "n_private"
            raise ValueError(
                f"space={space!r} has {codes.shape[1]} dimension ({size}={codes.shape[1]}); "
                "a 2-D view needs at least 2."
            )
        if title is None:
            title = f"{space} codes ({method.upper() if method == 'pca' else 't-SNE'})"
        return cls.from_codes(
            codes,
            pops if labels is None else labels,
            method=method,
            random_state=random_state,
            title=title,
            ax=ax,
            **kwargs,
        )

    def plot(self, ax=None, **kwargs):
        """Draw the scatter plot.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
        **kwargs
            matplotlib ``scatter`` options (default ``s=6``).

        Returns
        -------
        display : EmbeddingDisplay
        """
        if ax is None:
            self.figure_, axes = _axes_grid(None, (1, 1), (4.5, 4.0))
            self.ax_ = axes.flat[0]
        else:
            self.figure_, self.ax_ = ax.figure, ax
        kwargs.setdefault("s", 6)
        if self.labels is None:
            self.ax_.scatter(self.embedding[:, 0], self.embedding[:, 1], **kwargs)
        else:
            for label in np.unique(self.labels):
                rows = self.labels == label
                self.ax_.scatter(
                    self.embedding[rows, 0], self.embedding[rows, 1], label=str(label), **kwargs
                )
            self.ax_.legend(fontsize=7, markerscale=2)
        self.ax_.set_xlabel(self.axis_labels[0], fontsize=8)
        self.ax_.set_ylabel(self.axis_labels[1], fontsize=8)
        if self.title is not None:
            self.ax_.set_title(self.title, fontsize=9)
        return self
