"""Reading and writing fitted estimators: :func:`load`, :func:`save_pipeline` and
:func:`load_pipeline`, the public face of the file format of
:mod:`~sklearn_cpvae._persistence` (:meth:`CPVAE.save` writes a single estimator)."""

from sklearn_cpvae import _persistence
from sklearn_cpvae._estimator import CPVAE


def _module_for_loading(est):
    """Validated parameters, and the networks a saved CPVAE's weights are loaded into."""
    est._validate_params()
    return est._build_module(est.n_features_in_, est.has_private_.astype(float), 0)


def load(path):
    """Load a :class:`~sklearn_cpvae.CPVAE` written by :meth:`CPVAE.save`.

    Unlike :func:`pickle.load` and :func:`joblib.load`, this never executes code from
    the file: it parses JSON and copies numeric buffers. Tensors are loaded on the CPU,
    so a model fitted on a GPU loads on a CPU-only machine; its ``device`` parameter is
    kept, and inference falls back to the CPU with a warning when that device is absent
    (``set_params(device="cpu")`` silences it).

    Parameters
    ----------
    path : str or path-like
        File written by :meth:`CPVAE.save`.

    Returns
    -------
    estimator : CPVAE
        The fitted estimator; its predictions equal the saved one's bit for bit on the
        same platform.

    Raises
    ------
    ValueError
        If the file is truncated, corrupted or modified (SHA-256 mismatch), is not a
        CPVAE file, has a format version this release does not read, or holds
        parameters this release does not know.
    """
    return _load(path)


def _load(path, raw=None):
    return _persistence.load(
        path,
        estimator_class=CPVAE,
        build_module=_module_for_loading,
        # Releases before 0.2 modelled Gaussian X in its own units.
        added_params={"standardize": False},
        raw=raw,
    )


def save_pipeline(pipeline, path):
    """Save a fitted :class:`~sklearn.pipeline.Pipeline` holding CPVAE steps, without pickle.

    The CPVAE steps (also those of nested Pipelines) are stored in the format of
    :meth:`CPVAE.save`, the other steps with `skops <https://skops.readthedocs.io>`_,
    whose format, like this one, runs no code on load. Needs the ``persistence`` extra
    (``pip install 'sklearn-cpvae[persistence]'``). Read the file back with
    :func:`load_pipeline`.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        A fitted Pipeline. A CPVAE inside another kind of step (a ColumnTransformer, a
        meta-estimator) is refused with a ValueError.
    path : str or path-like
        Destination file (a zip archive), written atomically.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_cpvae import CPVAE, load_pipeline, save_pipeline
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 4))
    >>> y = np.repeat(["a", "b"], 30)
    >>> pipe = make_pipeline(
    ...     StandardScaler(),
    ...     CPVAE(n_shared=2, n_private=1, hidden_layer_sizes=(8,), max_iter=3,
    ...           n_importance_samples=4, random_state=0),
    ...     LogisticRegression(),
    ... )
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     pipe = pipe.fit(X, y)
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "pipe.cpvae.zip")
    >>> save_pipeline(pipe, path)
    >>> again = load_pipeline(path)
    >>> bool((again.predict_proba(X) == pipe.predict_proba(X)).all())
    True
    """
    _persistence.save_pipeline(pipeline, path, cpvae_class=CPVAE)


def load_pipeline(path, *, trusted=None):
    """Load a Pipeline written by :func:`save_pipeline`; no code from the file is run.

    Parameters
    ----------
    path : str or path-like
        File written by :func:`save_pipeline`.
    trusted : list of str or None, default=None
        Types beyond those skops trusts by default (scikit-learn's, numpy's...) that the
        non-CPVAE steps may hold, e.g. ``["mypackage.MyTransformer"]``. A file holding
        any other type is refused with a ValueError that lists them: only add types
        whose code you trust, since loading them runs it.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        The fitted Pipeline; its predictions equal the saved one's bit for bit on the
        same platform.
    """
    return _persistence.load_pipeline(path, trusted=trusted, load_cpvae=_load)
