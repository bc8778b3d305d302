"""Write a fitted CPVAE's codes and expression into an :class:`anndata.AnnData`.

Every method of :class:`~sklearn_cpvae.CPVAE` takes an AnnData wherever it takes X
(``population_column`` is read from ``.obs``, ``layer`` picks ``.layers[layer]`` over
``.X``). The helpers here store the results where scanpy and scvi-tools users look for
them: codes in ``.obsm`` (so that ``sc.pp.neighbors(adata, use_rep="X_cpvae_shared")``
works) and expression in ``.layers``.

anndata is an optional dependency (``pip install "sklearn-cpvae[anndata]"``).
"""

try:
    import anndata
except ImportError as exc:  # pragma: no cover - exercised by simulating the absence
    raise ImportError(
        "sklearn_cpvae.anndata needs the optional dependency anndata; install it with "
        'pip install "sklearn-cpvae[anndata]".'
    ) from exc

import numpy as np

from sklearn_cpvae import _inference
from sklearn_cpvae._validation import population_index

__all__ = ["write_codes", "write_expression"]


def _check_adata(adata):
    if not isinstance(adata, anndata.AnnData):
        raise TypeError(f"adata must be an anndata.AnnData; got {type(adata).__name__}.")


def write_codes(model, adata, populations=None, *, key="X_cpvae"):
    """Store the shared codes in ``.obsm[key + "_shared"]`` and the private ones in
    ``.obsm[key + "_private"]``.

    Parameters
    ----------
    model : fitted CPVAE
    adata : anndata.AnnData
        Rows to encode (``model.layer`` and ``model.population_column`` apply).
    populations : array-like of shape (n_obs,), default=None
        Population of each row for the private codes; None reads
        ``model.population_column`` from ``.obs``, else uses the predicted population.
    key : str, default="X_cpvae"
        Prefix of the two ``.obsm`` keys.

    Returns
    -------
    adata : anndata.AnnData
        The same object, modified in place.

    Examples
    --------
    >>> import anndata as ad
    >>> import numpy as np
    >>> from sklearn_cpvae import CPVAE
    >>> from sklearn_cpvae.anndata import write_codes
    >>> rng = np.random.default_rng(0)
    >>> adata = ad.AnnData(rng.normal(size=(40, 4)).astype(np.float32))
    >>> adata.obs["batch"] = np.repeat(["a", "b"], 20)
    >>> model = CPVAE(n_shared=2, n_private=1, hidden_layer_sizes=(8,), max_iter=2,
    ...               n_importance_samples=4, population_column="batch",
    ...               random_state=0).fit(adata)
    >>> write_codes(model, adata).obsm["X_cpvae_shared"].shape
    (40, 2)
    """
    _check_adata(adata)
    adata.obsm[f"{key}_shared"] = model.get_latent_representation(adata, blocks="shared")
    adata.obsm[f"{key}_private"] = model.get_latent_representation(
        adata, populations, blocks="private"
    )
    return adata


def write_expression(
    model,
    adata,
    populations=None,
    *,
    population=None,
    library_size=None,
    n_samples=25,
    random_state=0,
    layer="cpvae_expression",
):
    """Store the model's denoised or counterfactual expression in ``.layers[layer]``.

    Without ``population``, each row is decoded from its own posterior means of z and t
    with its own population's decoder (:meth:`CPVAE.inverse_transform`). With
    ``population``, every row's shared state is decoded in that population
    (:meth:`CPVAE.get_normalized_expression`): "these cells in study k".

    Parameters
    ----------
    model : fitted CPVAE
    adata : anndata.AnnData
    populations : array-like of shape (n_obs,), default=None
        The rows' own populations, as in :func:`write_codes` (unused with ``population``).
    population : label, default=None
        Decode every row with this population's decoder instead.
    library_size : float or array-like of shape (n_obs,), default=None
        Count likelihoods: mean counts for rows of this library size; None gives them at
        ``model.library_size_ref_``.
    n_samples : int, default=25
        Posterior draws with ``population``.
    random_state : int, RandomState instance or None, default=0
        Seeds the draws with ``population``.
    layer : str, default="cpvae_expression"
        Name of the layer written.

    Returns
    -------
    adata : anndata.AnnData
        The same object, modified in place.
    """
    _check_adata(adata)
    if population is not None:
        adata.layers[layer] = model.get_normalized_expression(
            adata,
            population,
            library_size=library_size,
            n_samples=n_samples,
            random_state=random_state,
        )
        return adata
    if populations is None:
        column = model.population_column
        if column is not None and column in adata.obs.columns:
            populations = np.asarray(adata.obs[column])
        else:
            populations = model.predict(adata)
    codes = model.get_latent_representation(adata, populations, blocks="both")
    idx = population_index(model.classes_, populations, adata.n_obs)
    n_shared = model.n_shared
    expression = _inference.decode(
        model.module_,
        model.device,
        codes,
        z_cols=slice(0, n_shared),
        t_cols=slice(n_shared, None),
        populations=idx,
    )
    adata.layers[layer] = model._at_library_size(expression, library_size)
    return adata
