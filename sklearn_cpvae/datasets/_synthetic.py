"""Synthetic cross-population data with known shared and private factors."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import Bunch, check_random_state

_DECODERS = ("linear", "nonlinear")
_EFFECTS = ("mean", "subspace", "both", "none")
_LIKELIHOODS = ("gaussian", "poisson", "nb")
# exp(30) is about 1e13 counts: beyond it a feature is no longer a count anyone measures,
# and Poisson draws overflow int64 soon after.
_MAX_LOG_RATE = 30.0

_DESCR = """Synthetic cross-population data (sklearn_cpvae.datasets.make_cross_population).

Each row i of population k is generated as

    x_i = s * (f(z_i) + g_k(h_i) - mean_k[g_k(h)] + m_k + noise * e_i)

z_i ~ N(0, I): shared factors, decoded by one decoder f common to every population.
h_i: private factors, the centre of the row's private sub-group plus N(0, I) scatter,
decoded by population k's decoder g_k (centred over the population's rows, so that it
adds no mean shift). m_k: the population's mean shift. e_i ~ N(0, I); s: feature scales.

population_effect:
  "mean"     m_k != 0; g_k and the sub-group centres are the same for every population,
             so populations differ only by their means.
  "subspace" m_k = 0; each population has its own g_k and sub-group centres (a private
             subspace of variation) and no mean shift.
  "both"     both of the above.
  "none"     m_k = 0 and one g_k for all: the populations are identically distributed.

likelihood "poisson" or "nb": the value above is a log fold change of a mean count,
mu_i = base_count * exp(x_i), and the returned data are counts drawn from Poisson(mu_i)
or from a negative binomial with mean mu_i and inverse dispersion nb_theta
(Var = mu + mu^2 / nb_theta, drawn as a gamma-Poisson mixture). The mean shift m_k is
then a multiplicative batch effect per feature, as in multi-batch sequencing data.
"""


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _allocate(n_samples, weights):
    """Split n_samples in proportion to weights (largest remainder), every part >= 1."""
    share = n_samples * weights / weights.sum()
    counts = np.floor(share).astype(int)
    rest = n_samples - counts.sum()
    if rest:
        counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    if counts.min() < 1:
        raise ValueError(
            f"n_samples={n_samples} is too small for population_weights={weights.tolist()}: "
            f"population {int(np.argmin(counts))} would get no row"
        )
    return counts


def _random_decoder(n_in, n_features, kind, rng):
    """A random map R^n_in -> R^n_features whose output has about unit variance."""
    if n_in == 0:
        return lambda u: np.zeros((u.shape[0], n_features))
    if kind == "linear":
        W = rng.normal(size=(n_in, n_features)) / np.sqrt(n_in)
        return lambda u: u @ W
    hidden = max(16, 2 * n_in)
    W1 = rng.normal(size=(n_in, hidden)) * (1.5 / np.sqrt(n_in))
    b1 = rng.normal(size=hidden) * 0.5
    W2 = rng.normal(size=(hidden, n_features)) / np.sqrt(hidden * 0.4)
    return lambda u: np.tanh(u @ W1 + b1) @ W2


def make_cross_population(
    n_samples=1000,
    n_populations=2,
    *,
    n_features=20,
    n_shared_factors=2,
    n_private_factors=2,
    n_subgroups=3,
    decoder="linear",
    population_effect="both",
    population_weights=None,
    feature_scales=None,
    noise=0.1,
    effect_size=2.0,
    subgroup_separation=3.0,
    likelihood="gaussian",
    base_count=5.0,
    nb_theta=5.0,
    random_state=None,
):
    """Generate populations with shared and population-private latent structure.

    Every row has continuous shared factors, common to all populations and mapped
    through one shared decoder, and private factors of its own population: a discrete
    private sub-group (``n_subgroups`` clusters per population) plus continuous
    scatter, mapped through the population's private decoder. The decoders' outputs
    are added, as in the CPVAE generative model ``x = f_s(z) + f_k(t) + noise``. See
    ``DESCR`` of the returned Bunch for the exact recipe.

    Parameters
    ----------
    n_samples : int, default=1000
        Total number of rows, split among the populations by ``population_weights``.
    n_populations : int, default=2
        Number of populations K.
    n_features : int, default=20
        Number of features.
    n_shared_factors : int, default=2
        Number of continuous shared factors (standard normal).
    n_private_factors : int, default=2
        Dimension of each population's private factor space (sub-group centre plus
        standard normal scatter). 0 is allowed only with ``n_subgroups=1``.
    n_subgroups : int, default=3
        Number of private sub-groups per population, drawn with equal probability.
    decoder : {"linear", "nonlinear"}, default="linear"
        ``"linear"``: random linear maps. ``"nonlinear"``: random one-hidden-layer
        tanh networks.
    population_effect : {"mean", "subspace", "both", "none"}, default="both"
        How populations differ. ``"mean"``: only by a mean shift (the private decoder
        and sub-group centres are common to all populations). ``"subspace"``: each
        population has its own private decoder and sub-group centres, with no mean
        shift. ``"both"``: both. ``"none"``: identically distributed populations (a
        null case).
    population_weights : array-like of shape (n_populations,), default=None
        Relative population sizes, e.g. ``[100, 1]`` for a 100:1 imbalance. Row
        counts are allocated exactly in proportion (largest remainder). None gives
        equal sizes.
    feature_scales : None, (low, high) or array-like of shape (n_features,), default=None
        Per-feature multiplicative scales applied last. A pair ``(low, high)`` gives
        ``np.geomspace(low, high, n_features)``. None leaves every scale at 1.
    noise : float, default=0.1
        Standard deviation of the isotropic Gaussian noise (before scaling).
    effect_size : float, default=2.0
        Standard deviation of each feature's population mean shift ``m_k`` (used when
        ``population_effect`` is ``"mean"`` or ``"both"``).
    subgroup_separation : float, default=3.0
        Standard deviation of the sub-group centres in the private factor space.
    likelihood : {"gaussian", "poisson", "nb"}, default="gaussian"
        ``"gaussian"``: the continuous values described above. ``"poisson"`` and
        ``"nb"``: those values are log fold changes of a mean count
        ``rates = base_count * exp(x)``, and ``data`` holds counts drawn from a Poisson
        or a negative binomial with that mean (what ``CPVAE(likelihood="poisson")`` and
        ``"nb"`` model). The count draws come after every other draw, so the rates are
        ``base_count * exp`` of the Gaussian data of the same ``random_state``.
    base_count : float, default=5.0
        Mean count of a feature whose log fold change is 0 (count likelihoods only).
    nb_theta : float, default=5.0
        Inverse dispersion of the negative binomial, ``Var = mu + mu**2 / nb_theta``
        (``likelihood="nb"`` only).
    random_state : int, RandomState instance or None, default=None
        Seed of every random draw; an int gives identical output across calls.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (n_samples, n_features) float64; ``populations`` (n_samples,) int
        population index, rows grouped by population; ``target`` (same array);
        ``shared_factors`` (n_samples, n_shared_factors); ``private_factors``
        (n_samples, n_private_factors), in the row's own population's space;
        ``subgroups`` (n_samples,) sub-group index within the population;
        ``population_means`` (n_populations, n_features), the mean shifts ``m_k``
        after scaling; ``feature_scales`` (n_features,); ``population_effect``,
        ``decoder``; ``DESCR``.

    Examples
    --------
    >>> from sklearn_cpvae.datasets import make_cross_population
    >>> d = make_cross_population(n_samples=303, n_populations=2, population_weights=[100, 1],
    ...                           feature_scales=(1, 1000), random_state=0)
    >>> d.data.shape, d.shared_factors.shape, d.private_factors.shape
    ((303, 20), (303, 2), (303, 2))
    >>> import numpy as np
    >>> np.bincount(d.populations).tolist()
    [300, 3]
    >>> c = make_cross_population(n_samples=200, likelihood="nb", random_state=0)
    >>> bool(np.all(c.data == np.round(c.data))), bool(c.data.min() >= 0)
    (True, True)
    """
    n_samples = _check_int(n_samples, "n_samples", 1)
    n_populations = _check_int(n_populations, "n_populations", 1)
    n_features = _check_int(n_features, "n_features", 1)
    n_shared_factors = _check_int(n_shared_factors, "n_shared_factors", 0)
    n_private_factors = _check_int(n_private_factors, "n_private_factors", 0)
    n_subgroups = _check_int(n_subgroups, "n_subgroups", 1)
    if n_subgroups > 1 and n_private_factors == 0:
        raise ValueError("n_subgroups > 1 needs n_private_factors >= 1 to place the sub-groups")
    if decoder not in _DECODERS:
        raise ValueError(f"decoder must be one of {_DECODERS}, got {decoder!r}")
    if population_effect not in _EFFECTS:
        raise ValueError(f"population_effect must be one of {_EFFECTS}, got {population_effect!r}")
    if likelihood not in _LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
    for name, value in (("noise", noise), ("effect_size", effect_size),
                        ("subgroup_separation", subgroup_separation)):  # fmt: skip
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not (np.isfinite(value) and value >= 0)
        ):
            raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")
    for name, value in (("base_count", base_count), ("nb_theta", nb_theta)):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not (np.isfinite(value) and value > 0)
        ):
            raise ValueError(f"{name} must be a finite float > 0, got {value!r}")

    if population_weights is None:
        weights = np.ones(n_populations)
    else:
        weights = np.asarray(population_weights, dtype=float).ravel()
        if weights.shape != (n_populations,):
            raise ValueError(
                f"population_weights must have {n_populations} entries (n_populations), "
                f"got {weights.shape[0]}"
            )
        if not (np.all(np.isfinite(weights)) and np.all(weights > 0)):
            raise ValueError(
                f"population_weights must be positive and finite, got {weights.tolist()}"
            )
    counts = _allocate(n_samples, weights)

    if feature_scales is None:
        scales = np.ones(n_features)
    else:
        fs = np.asarray(feature_scales, dtype=float).ravel()
        if fs.shape == (2,) and n_features != 2:
            scales = np.geomspace(fs[0], fs[1], n_features) if np.all(fs > 0) else fs
        elif fs.shape == (n_features,):
            scales = fs
        else:
            raise ValueError(
                f"feature_scales must be None, a pair (low, high) or {n_features} values "
                f"(n_features), got shape {fs.shape}"
            )
        if not (np.all(np.isfinite(scales)) and np.all(scales > 0)):
            raise ValueError(f"feature_scales must be positive and finite, got {fs.tolist()}")

    rng = check_random_state(random_state)
    populations = np.repeat(np.arange(n_populations), counts)
    specific = population_effect in ("subspace", "both")
    shifted = population_effect in ("mean", "both")

    shared_decoder = _random_decoder(n_shared_factors, n_features, decoder, rng)
    n_specific = n_populations if specific else 1
    private_decoders = [
        _random_decoder(n_private_factors, n_features, decoder, rng) for _ in range(n_specific)
    ]
    centres = rng.normal(size=(n_specific, n_subgroups, n_private_factors)) * subgroup_separation
    centres -= centres.mean(axis=1, keepdims=True)
    shifts = (
        rng.normal(size=(n_populations, n_features)) * effect_size
        if shifted
        else np.zeros((n_populations, n_features))
    )
    if shifted and n_populations > 1:
        shifts -= shifts.mean(axis=0)

    shared = rng.normal(size=(n_samples, n_shared_factors))
    subgroups = rng.randint(0, n_subgroups, size=n_samples)
    private = rng.normal(size=(n_samples, n_private_factors))
    X = shared_decoder(shared) + noise * rng.normal(size=(n_samples, n_features))
    # unit-variance private inputs: the decoder sees the factors scaled by their spread
    spread = np.sqrt(subgroup_separation**2 * (n_subgroups > 1) + 1.0)
    for k in range(n_populations):
        rows = populations == k
        j = k if specific else 0
        private[rows] += centres[j][subgroups[rows]]
        term = private_decoders[j](private[rows] / spread)
        X[rows] += term - term.mean(axis=0) + shifts[k]
    X *= scales

    rates = None
    if likelihood != "gaussian":
        log_rates = np.log(base_count) + X
        if log_rates.max() > _MAX_LOG_RATE:
            raise ValueError(
                f"likelihood={likelihood!r} reads the values as log fold changes, and their "
                f"largest mean count base_count * exp(x) = exp({log_rates.max():.1f}) is too "
                "large to draw; lower feature_scales, effect_size or base_count"
            )
        rates = np.exp(log_rates)
        mean = rng.gamma(nb_theta, rates / nb_theta) if likelihood == "nb" else rates
        X = rng.poisson(mean).astype(np.float64)

    return Bunch(
        data=X,
        populations=populations,
        target=populations,
        shared_factors=shared,
        private_factors=private,
        subgroups=subgroups,
        population_means=shifts * scales,
        feature_scales=scales,
        population_effect=population_effect,
        decoder=decoder,
        likelihood=likelihood,
        rates=rates,
        DESCR=_DESCR,
    )
