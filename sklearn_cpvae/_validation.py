"""Checks shared by the estimators: parameters, labels, value ranges, finite outputs.

Everything here raises ``ValueError`` with a message that names the problem; nothing
here trains or runs a network.
"""

import math
import warnings
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d

from sklearn_cpvae._data import DiskRows, on_disk, row_blocks
from sklearn_cpvae._sklearn_compat import validate_data

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(X):
    """Reject X whose squared residuals would overflow the float32 arithmetic of training.

    The Gaussian log-likelihood sums ``(x - f(z, t))**2`` over the D features in float32,
    so training is impossible once ``D * max|x|**2`` nears the float32 maximum (3.4e38).
    A factor 16 of margin covers decoder outputs of the same magnitude as ``x``.
    """
    limit = math.sqrt(_FLOAT32_MAX / (16 * max(1, X.shape[1])))
    peak = _abs_max(X) if X.size else 0.0
    if peak > limit:
        raise ValueError(
            f"X has values of magnitude up to {peak:.3g}; training runs in float32, where "
            f"squared residuals of {X.shape[1]} features overflow beyond {limit:.3g}. "
            "Standardise X (e.g. sklearn.preprocessing.StandardScaler) before fitting."
        )


def _abs_max(X, block_rows=8192):
    """max |X|, dense X in row blocks: no full-size temporary (X may be a memory map),
    and no |block| either (its fresh pages cost more than the two reductions)."""
    if sp.issparse(X):
        return float(np.max(np.abs(X)))
    return float(np.max([np.maximum(b.max(), -b.min()) for b in row_blocks(X, block_rows)]))


def check_finite_output(out, what, dtype):
    """Raise ``ValueError`` naming the rows whose ``out`` is not finite.

    Rows far outside the scale of the training data can overflow the networks' arithmetic
    at inference; returning NaN silently would be worse than a clear error.
    """
    bad = ~np.isfinite(out).reshape(len(out), -1).all(axis=1)
    if np.any(bad):
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{what} is not finite for {len(rows)} row(s) (first: {rows[:5].tolist()}): "
            f"their values are too far from the scale of the training data for {dtype} "
            "arithmetic. Preprocess them as the training data (e.g. with the same scaler)."
        )
    return out


def hidden_sizes(value):
    """``hidden_layer_sizes`` as a list of positive ints (an int is one layer)."""
    hidden = [value] if isinstance(value, Integral) else list(value)
    if not hidden or any(not isinstance(h, Integral) or h < 1 for h in hidden):
        raise ValueError(
            f"hidden_layer_sizes must be a non-empty sequence of positive integers; got {value!r}."
        )
    return [int(h) for h in hidden]


def image_layout(image_shape, conv_channels, n_features):
    """``(image_shape, conv_channels)`` as ``((height, width, channels), [c_1, ...])``,
    or ``None`` without ``image_shape`` (MLP networks).

    Each of the ``len(conv_channels)`` stride-2 convolutions halves the height and the
    width, and the transposed convolutions double them back, so both must be divisible
    by 2 to that power for the decoders to return images of the input's size."""
    if image_shape is None:
        return None
    shape = [image_shape] if isinstance(image_shape, Integral) else list(image_shape)
    if len(shape) == 2:
        shape.append(1)
    if len(shape) != 3 or any(not isinstance(s, Integral) or s < 1 for s in shape):
        raise ValueError(
            "image_shape must be (height, width) or (height, width, channels) of "
            f"positive integers; got {image_shape!r}."
        )
    height, width, channels = (int(s) for s in shape)
    if height * width * channels != n_features:
        raise ValueError(
            f"image_shape={tuple(image_shape)!r} holds {height * width * channels} values "
            f"per row, but X has {n_features} features; rows must be images flattened in "
            "height, width, channel order."
        )
    convs = [conv_channels] if isinstance(conv_channels, Integral) else list(conv_channels)
    if not convs or any(not isinstance(c, Integral) or c < 1 for c in convs):
        raise ValueError(
            "conv_channels must be a non-empty sequence of positive integers; got "
            f"{conv_channels!r}."
        )
    step = 2 ** len(convs)
    if height % step or width % step:
        raise ValueError(
            f"image_shape={tuple(image_shape)!r}: with {len(convs)} stride-2 convolutions "
            f"(conv_channels={tuple(convs)!r}) the height and width must be multiples of "
            f"{step}; use fewer conv_channels or pad the images."
        )
    return (height, width, channels), [int(c) for c in convs]


def finite_mode(missing):
    """``ensure_all_finite`` of sklearn's validation for the ``missing`` parameter."""
    return "allow-nan" if missing == "mask" else True


def split_population_column(X, column, *, required=False, has_y=False):
    """``(X without the population column, the column as ndarray or None)``.

    ``required`` (fit, and score without ``y``): a missing column is an error that names
    it and lists the columns X has. ``has_y``: a ``y`` was passed but is not the
    populations (population_column is set), which the message then says.
    """
    if column is None:
        return X, None
    if not hasattr(X, "columns") or column not in X.columns:
        if required:
            if hasattr(X, "columns"):
                names = list(map(str, X.columns))
                more = f" and {len(names) - 20} more" if len(names) > 20 else ""
                where = f"X has the columns {names[:20]}{more}"
            else:
                where = "X is not a DataFrame"
            fix = (
                "set population_column=None to take the populations from y"
                if has_y
                else "pass the populations as y"
            )
            raise ValueError(
                f"population_column={column!r} is not a column of X ({where}): name the "
                f"DataFrame column that holds the populations, or {fix}."
            )
        return X, None
    return X.drop(columns=[column]), np.asarray(X[column])


def check_no_missing_labels(labels, where):
    """Refuse population labels that are missing (None, NaN, NaT, pd.NA): a row without
    a population cannot be trained on. ``where`` names the argument that carried them."""
    values = np.asarray(labels)
    if values.dtype.kind == "f":
        missing = np.isnan(values)
    elif values.dtype.kind == "O":
        missing = np.array([_is_missing(v) for v in values.ravel().tolist()], dtype=bool)
    else:
        return
    if np.any(missing):
        rows = np.flatnonzero(missing.ravel())
        raise ValueError(
            f"the populations contain missing labels (None or NaN) in {len(rows)} row(s) "
            f"(first: {rows[:5].tolist()}) of {where}: every row needs a population. Drop "
            "those rows, or give them a population label of their own."
        )


def _is_missing(value):
    if value is None:
        return True
    try:
        # NaN, NaT and pd.NA are the values not equal to themselves (pd.NA: undecidable).
        return bool(value != value)
    except TypeError:
        return True


def check_validation_split(classes, y_idx, validation_fraction, seed):
    """With ``early_stopping``, every population must keep a training row and get a
    validation row from the stratified split that training uses, or the split fails (or
    the validation loss ignores a population)."""
    from sklearn.model_selection import train_test_split

    labels = classes.tolist()
    counts = np.bincount(y_idx, minlength=len(classes))
    smallest = int(np.argmin(counts))
    n = len(y_idx)
    hint = (
        f"early_stopping=True holds out validation_fraction={validation_fraction:g} of the "
        f"{n} rows, stratified by population, and the smallest population "
        f"{labels[smallest]!r} has {counts[smallest]} rows: "
    )
    need = "every population needs at least one training and one validation row."
    try:
        rows_tr, rows_val = train_test_split(
            np.arange(n), test_size=validation_fraction, stratify=y_idx, random_state=seed
        )
    except ValueError as exc:
        raise ValueError(
            f"{hint}the split is impossible ({exc}); {need} Change validation_fraction, "
            "add rows, or set early_stopping=False."
        ) from None
    n_tr = np.bincount(y_idx[rows_tr], minlength=len(classes))
    n_val = np.bincount(y_idx[rows_val], minlength=len(classes))
    short = np.flatnonzero((n_tr == 0) | (n_val == 0))
    if short.size:
        k = int(short[0])
        direction = (
            f"raise validation_fraction (to about {min(0.5, 1.5 / counts[k]):.2g})"
            if n_val[k] == 0
            else "lower validation_fraction"
        )
        raise ValueError(
            f"{hint}population {labels[k]!r} ({counts[k]} rows) would get {n_tr[k]} "
            f"training and {n_val[k]} validation rows, but {need} Either {direction}, "
            "add rows, or set early_stopping=False."
        )


def check_latent_sizes(n_shared, n_private, n_features):
    """Warn when the latent codes have more dimensions than a row has features.

    A row of D features carries at most D dimensions of information, so the shared and
    private codes together (what a row of one population is generated from) need no
    more: the dimensions beyond D stay at the prior and only cost time and memory.
    """
    import warnings

    total = n_shared + n_private
    if total > n_features:
        warnings.warn(
            f"n_shared + n_private = {n_shared} + {n_private} = {total} latent dimensions "
            f"for {n_features} features: a row cannot fill more than {n_features}, so the "
            "extra ones only cost time. Lower n_shared and n_private so that their sum is "
            f"at most {n_features} (see 'Latent sizes' in the training guide).",
            UserWarning,
            stacklevel=4,
        )


def is_anndata(X):
    """True for an :class:`anndata.AnnData` (checked by type, so anndata is not imported)."""
    return any(
        cls.__name__ == "AnnData" and cls.__module__.split(".")[0] == "anndata"
        for cls in type(X).__mro__
    )


def anndata_rows(adata, layer, column, *, required=False):
    """``(matrix, population labels or None)`` of an AnnData: ``.layers[layer]`` (raw
    counts, say) or ``.X``, kept sparse when stored sparse, and ``.obs[column]``."""
    if layer is None:
        matrix = adata.X
    elif layer in adata.layers:
        matrix = adata.layers[layer]
    else:
        raise ValueError(
            f"layer={layer!r} is not a layer of the AnnData (its layers: "
            f"{list(adata.layers.keys())}); name one of them, or layer=None for .X."
        )
    if matrix is None:
        raise ValueError("the AnnData has no .X; name the layer that holds the rows (layer=).")
    labels = None
    if column is not None:
        if column in adata.obs.columns:
            labels = np.asarray(adata.obs[column])
        elif required:
            raise ValueError(
                f"population_column={column!r} is not a column of the AnnData's .obs (its "
                f"columns: {list(map(str, adata.obs.columns))[:20]}), and y is None: pass the "
                "populations as y, or name the .obs column that holds them."
            )
    return matrix, labels


def check_anndata_features(estimator, adata):
    """An AnnData at inference must have the fitted features, in order (``var_names``)."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and not np.array_equal(np.asarray(adata.var_names), names):
        missing = [n for n in names if n not in set(adata.var_names)][:5]
        raise ValueError(
            "the AnnData's var_names differ from the feature names seen in fit "
            f"(first missing: {missing}); subset it as adata[:, model.feature_names_in_]."
        )
    if adata.n_vars != estimator.n_features_in_:
        raise ValueError(
            f"the AnnData has {adata.n_vars} features, but {type(estimator).__name__} was "
            f"fitted with {estimator.n_features_in_}."
        )


def check_populations(classes, y_idx):
    """At least two populations, each with at least two rows."""
    if len(classes) < 2:
        raise ValueError(
            f"CPVAE needs at least 2 populations (classes) in y; got 1 class: {classes.tolist()}."
        )
    counts = np.bincount(y_idx, minlength=len(classes))
    small = [str(c) for c, n in zip(classes, counts) if n < 2]
    if small:
        raise ValueError(f"every population needs at least 2 rows; population(s) {small} have 1.")


def private_gate(no_private_populations, classes):
    """1.0 for populations with a private space, 0.0 for ``no_private_populations``."""
    gate = np.ones(len(classes))
    if no_private_populations is None:
        return gate
    listed = np.asarray(no_private_populations)
    if listed.ndim != 1:
        raise ValueError("no_private_populations must be a 1-D list of population labels.")
    unknown = [v for v in listed.tolist() if v not in classes.tolist()]
    if unknown:
        raise ValueError(
            f"no_private_populations has label(s) {unknown} that are not populations "
            f"of y {classes.tolist()}."
        )
    gate[np.isin(classes, listed)] = 0.0
    return gate


def resolve_priors(priors, population_counts):
    """The population priors: training frequencies (None), uniform, or given."""
    k = len(population_counts)
    if priors is None:
        return population_counts / population_counts.sum()
    if isinstance(priors, str):
        return np.full(k, 1.0 / k)
    values = np.asarray(priors, dtype=np.float64)
    if values.shape != (k,) or np.any(values < 0) or not np.isclose(values.sum(), 1):
        raise ValueError(f"priors must be {k} non-negative numbers summing to 1; got {priors!r}.")
    return values


def population_index(classes, populations, n_rows, name="populations"):
    """Index into ``classes`` of every label of ``populations`` (one per row)."""
    populations = np.asarray(populations)
    if populations.ndim != 1 or len(populations) != n_rows:
        raise ValueError(
            f"{name} must be 1-D with one label per row ({n_rows}); got shape {populations.shape}."
        )
    try:
        idx = np.searchsorted(classes, populations)
    except TypeError:
        # Labels of another type than classes (e.g. numbers mixed with strings).
        raise ValueError(
            f"{name} holds labels of types "
            f"{sorted({type(p).__name__ for p in populations.ravel().tolist()})} that "
            f"cannot be compared with the fitted populations {classes.tolist()}."
        ) from None
    idx = np.clip(idx, 0, len(classes) - 1)
    unknown = classes[idx] != populations
    if np.any(unknown):
        raise ValueError(
            f"unknown population label(s) {np.unique(populations[unknown]).tolist()} in "
            f"{name}; the model was fitted on {classes.tolist()}."
        )
    return idx


def validate_on_disk(estimator, X, y=None, *, reset, ensure_all_finite, check_names=True):
    """``validate_data`` for an h5py Dataset or zarr array ``X``, one block of rows at a
    time: the same checks (2-D, at least 2 rows for a fit, numeric and finite values, the
    number of features) without loading X. Returns :class:`~sklearn_cpvae._data.DiskRows`
    (and ``y`` as a 1-D array when given). ``check_names=False`` compares only the number
    of features (an AnnData's var_names were compared already)."""
    if len(X.shape) != 2:
        raise ValueError(f"Expected a 2-D array of rows, got an on-disk array of shape {X.shape}.")
    if not (np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.bool_)):
        raise ValueError(f"X must hold numbers; the on-disk array has dtype {X.dtype}.")
    rows = DiskRows(X)
    if check_names:
        validate_data(estimator, rows, reset=reset, skip_check_array=True)
    elif not reset and rows.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {rows.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    if reset and rows.shape[0] < 2:
        raise ValueError(
            f"Found array with {rows.shape[0]} sample(s); a minimum of 2 is required."
        )
    for block in row_blocks(rows):
        check_array(block, dtype=rows.dtype, ensure_all_finite=ensure_all_finite)
    if y is None:
        return rows
    y = column_or_1d(y, warn=True)
    check_consistent_length(rows, y)
    return rows, y


def check_fitted_X(estimator, X, *, return_column=False):
    """X for a fitted CPVAE's inference methods: validated, CSR if sparse, column split."""
    check_is_fitted(estimator)
    column_name = getattr(estimator, "population_column", None)
    checks = dict(
        dtype=[np.float64, np.float32],
        accept_sparse=("csr", "csc"),
        ensure_all_finite=finite_mode(estimator.missing),
    )
    if is_anndata(X):
        check_anndata_features(estimator, X)
        X, column = anndata_rows(X, getattr(estimator, "layer", None), column_name)
        # The names were compared above; sklearn's check would only see an unnamed matrix.
        if on_disk(X):
            X = validate_on_disk(
                estimator,
                X,
                reset=False,
                ensure_all_finite=checks["ensure_all_finite"],
                check_names=False,
            )
        else:
            X = check_array(X, **checks)
    else:
        check_layer_unused(estimator)
        X, column = split_population_column(X, column_name)
        if on_disk(X):
            X = validate_on_disk(
                estimator, X, reset=False, ensure_all_finite=checks["ensure_all_finite"]
            )
        else:
            X = validate_data(estimator, X, reset=False, **checks)
    if sp.issparse(X):
        X = X.tocsr()
    return (X, column) if return_column else X


def check_layer_unused(estimator):
    """``layer`` selects a layer of an AnnData; with any other X it would be ignored."""
    layer = getattr(estimator, "layer", None)
    if layer is not None:
        raise ValueError(
            f"layer={layer!r} picks a layer of an AnnData, but X is not an AnnData; pass "
            "the AnnData, or set layer=None."
        )


def warn_non_integer_counts(X, likelihood, counts, stacklevel=3):
    """Warn when a count likelihood receives non-integer values (NaN skipped): the
    density then still evaluates (lgamma interpolates) but models the wrong data, e.g.
    log-normalised or scaled expression passed where raw counts belong."""
    if not counts:
        return
    n_fractional, example = 0, None
    for values in [X.data] if sp.issparse(X) else row_blocks(X):
        values = values[np.isfinite(values)]
        fractional = values[values != np.round(values)]
        n_fractional += fractional.size
        if example is None and fractional.size:
            example = float(fractional[0])
    if n_fractional:
        warnings.warn(
            f"likelihood={likelihood!r} models raw integer counts, but X has "
            f"{n_fractional} non-integer value(s) (e.g. {example:.4g}): "
            "normalised, log-transformed or scaled data are not counts. Pass the raw "
            "counts (with an AnnData, layer= names the layer holding them), or use "
            "likelihood='gaussian'.",
            UserWarning,
            stacklevel=stacklevel,
        )


def check_same_networks(fitted, wanted):
    """With ``warm_start``, the parameters that shape the networks must not change:
    training would otherwise go on with the old networks and ignore the new values."""
    changed = sorted(k for k in wanted if wanted[k] != fitted[k])
    if changed:
        raise ValueError(
            f"warm_start=True but the networks' configuration changed since the last "
            f"fit ({', '.join(changed)}); a warm start continues the fitted networks and "
            "cannot honour that change. Set warm_start=False to fit afresh, or set those "
            "parameters back."
        )
