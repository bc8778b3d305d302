"""The observation models p(x | z, t) of eq. 1, one small object per likelihood.

Each likelihood knows everything that depends on it: what the encoders see
(:meth:`~Likelihood.encoder_input`), the log-density of the rows given the decoder
output (:meth:`~Likelihood.log_prob`), the mean of p(x | z, t) (:meth:`~Likelihood.mean`),
the values X may take (:meth:`~Likelihood.check_support`) and the decoder's start
values (:meth:`~Likelihood.start_values`). Every other module asks
:func:`get_likelihood` for the object; none compares likelihood names.
"""

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from sklearn_cpvae._data import column_moments, row_blocks
from sklearn_cpvae._sparse import row_totals

LOG_2PI = math.log(2 * math.pi)


def _value_range(X):
    """``(min, max)`` of X, NaN skipped, without densifying a sparse X."""
    if sp.issparse(X):
        vals = X.data[~np.isnan(X.data)]
        lo = min(vals.min(initial=0.0), 0.0) if X.nnz < np.prod(X.shape) else vals.min()
        hi = max(vals.max(initial=0.0), 0.0)
        return lo, hi
    if not isinstance(X, np.ndarray):
        # Rows on disk: one block at a time.
        ranges = [(np.nanmin(b), np.nanmax(b)) for b in row_blocks(X)]
        return min(r[0] for r in ranges), max(r[1] for r in ranges)
    return np.nanmin(X), np.nanmax(X)


class Likelihood:
    """Base of the observation models; ``name`` is the ``likelihood`` parameter's value.

    ``counts``: the model is for raw non-negative counts (library size, log1p encoder
    input). ``uses_psi``: the model has the learned isotropic variance Psi.
    ``identity_mean``: the decoder output is the mean itself, in the units of X.
    """

    name = None
    counts = False
    uses_psi = False
    identity_mean = False

    def encoder_input(self, x):
        """What the encoders see of the rows ``x`` (NaN already replaced)."""
        return x

    def log_prob(
        self, x, out, log_psi=None, *, mask=None, log_theta=None, log_offset=None, inplace=False
    ):
        """log p(x | z, t) summed over features, for decoder output ``out``.

        ``mask`` (same shape as ``x``, 1 = observed) drops entries from the sum: the
        likelihood of the observed part of a row (``x`` must then hold a finite stand-in
        where ``mask`` is 0). ``x`` broadcasts against ``out``. ``log_offset`` (rows,
        broadcasting as ``out[..., :1]``) is the log library-size factor of the count
        models; ``log_theta`` (D,) the NB log inverse dispersion. ``inplace`` (inference
        only) lets the computation overwrite ``out``.
        """
        ll = self.log_prob_entries(x, out, log_theta=log_theta, log_offset=log_offset)
        if mask is not None:
            ll = ll * mask
        return ll.sum(-1)

    def log_prob_entries(self, x, out, *, log_theta=None, log_offset=None):
        raise NotImplementedError

    def mean(self, out):
        """E[x | z, t] from the decoder output ``out``."""
        return out

    def check_support(self, X):
        """Raise ``ValueError`` when X holds values the model cannot generate."""

    def start_values(self, X, *, library_size):
        """``(bias, log_psi, library_size_ref)``: the best model that explains nothing.

        ``bias`` (D,) is added to f_s's output bias, ``log_psi`` (or None) is Psi's start,
        ``library_size_ref`` the reference library size (1.0 when unused).
        """
        raise NotImplementedError


# Where standardisation stops: a training value this many standard deviations from its
# feature's mean is no Gaussian's (a sample of 1e9 rows reaches about 6), and a
# population of 0.25 % of the rows sits about 20 from the pooled mean. Rare values of a
# near-constant feature (a pixel of an image's border) reach sqrt(n): 245 on MNIST's
# 60,000 rows, where the isotropic Psi then charges thousands of nats for one pixel.
EXTREME_STANDARDIZED = 20.0


class Gaussian(Likelihood):
    """Mean ``out`` and isotropic covariance ``exp(log_psi) I`` (the paper's Psi)."""

    name = "gaussian"
    uses_psi = True
    identity_mean = True

    def log_prob(
        self, x, out, log_psi=None, *, mask=None, log_theta=None, log_offset=None, inplace=False
    ):
        # inplace (inference only): the residual overwrites ``out``, saving two passes
        # and two allocations the size of ``out``.
        sq = out.sub_(x).square_() if inplace else (x - out) ** 2
        if mask is None:
            n_obs = out.shape[-1]
        else:
            sq = sq * mask
            n_obs = mask.sum(-1)
        return -0.5 * (sq.sum(-1) * torch.exp(-log_psi) + n_obs * (LOG_2PI + log_psi))

    def start_values(self, X, *, library_size):
        # Each feature's mean, and Psi at the mean feature variance. Starting Psi at 1
        # instead, on data of variance ~0.05 (raw pixels), makes the reconstruction term
        # ~20x too weak against the KL terms for thousands of Adam steps, and codes
        # collapse (docs/reproduction.md, Finding 1).
        mean, var = column_moments(X)
        return mean, float(np.log(max(np.mean(var), 1e-6))), 1.0

    def standardization(self, X):
        """``(loc, scale, bias, log_psi)``: each feature's mean and standard deviation
        (1 for a constant feature, as :class:`~sklearn.preprocessing.StandardScaler`
        does), and the start values of f_s's bias and of Psi in standardised units.
        A feature whose training values reach more than :data:`EXTREME_STANDARDIZED`
        standard deviations from its mean gets the larger scale that puts its furthest
        value at that distance."""
        mean, var, lo, hi = column_moments(X, with_range=True)
        std = np.sqrt(np.maximum(var, 0.0))
        # A constant column (up to float32 round-off of its values) keeps scale 1.
        constant = ~(std > 1e-6 * np.maximum(np.abs(mean), 1e-30))
        scale = np.where(constant | ~np.isfinite(std), 1.0, std)
        with np.errstate(invalid="ignore"):
            reach = np.fmax(np.abs(hi - mean), np.abs(lo - mean)) / scale
        scale = scale * np.where(constant, 1.0, np.maximum(1.0, reach / EXTREME_STANDARDIZED))
        var_std = np.where(constant, 0.0, var / scale**2)
        return mean, scale, np.zeros_like(mean), float(np.log(max(np.mean(var_std), 1e-6)))


class Bernoulli(Likelihood):
    """``out`` are logits, for data in [0, 1] such as images."""

    name = "bernoulli"

    def log_prob_entries(self, x, out, *, log_theta=None, log_offset=None):
        return -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none")

    def mean(self, out):
        return torch.sigmoid(out)

    def check_support(self, X):
        lo, hi = _value_range(X)
        if lo < 0 or hi > 1:
            raise ValueError(
                "likelihood='bernoulli' needs X in [0, 1]; got values in "
                f"[{lo:.3g}, {hi:.3g}]. Use likelihood='gaussian' or rescale X."
            )

    def start_values(self, X, *, library_size):
        # The logit of each feature's mean; no Psi.
        mean, _ = column_moments(X)
        p = np.clip(mean, 1e-3, 1 - 1e-3)
        return np.log(p) - np.log1p(-p), None, 1.0


class _Counts(Likelihood):
    """Raw non-negative counts: ``out`` is the log mean at the reference library size."""

    counts = True

    def encoder_input(self, x):
        return torch.log1p(x.clamp_min(0))

    def log_prob_entries(self, x, out, *, log_theta=None, log_offset=None):
        log_mu = out if log_offset is None else out + log_offset
        return self.log_prob_counts(x, log_mu, log_theta)

    def log_prob_counts(self, x, log_mu, log_theta=None):
        """Elementwise log-density of counts ``x`` with mean ``exp(log_mu)``."""
        raise NotImplementedError

    def mean(self, out):
        # Mean counts at the reference library size (see CPVAE's ``library_size``).
        return torch.exp(out)

    def check_support(self, X):
        lo, _ = _value_range(X)
        if lo < 0:
            raise ValueError(
                f"likelihood={self.name!r} models non-negative counts; X has a "
                f"negative value ({lo:.3g}). Pass raw counts, or use likelihood='gaussian' "
                "for log-transformed or standardised data."
            )

    def start_values(self, X, *, library_size):
        # f_s starts at the log mean count of each feature (at the reference library
        # size) rather than at log-rate 0, which is far from typical counts and costs
        # many epochs to climb.
        ref = float(max(1.0, np.median(row_totals(X)))) if library_size else 1.0
        scale = np.ones(X.shape[0])
        if library_size:
            scale = ref / np.maximum(row_totals(X), 1.0)
        if sp.issparse(X):
            X = X.copy()
            X.data = np.nan_to_num(X.data)
            sums = np.asarray(X.T @ scale).ravel()
            n_obs = X.shape[0]
        elif not isinstance(X, np.ndarray):
            # Rows on disk: the same sums, one block of rows at a time.
            sums, n_obs, start = 0.0, 0, 0
            for block in row_blocks(X):
                sums = sums + np.nan_to_num(block).T @ scale[start : start + len(block)]
                n_obs = n_obs + (~np.isnan(block)).sum(0)
                start += len(block)
            n_obs = np.maximum(n_obs, 1)
        else:
            obs = ~np.isnan(X)
            sums = np.nan_to_num(X).T @ scale
            n_obs = np.maximum(obs.sum(0), 1)
        return np.log(np.maximum(sums / n_obs, 1e-3)), None, ref


class Poisson(_Counts):
    """Poisson counts with log-rate ``out`` (plus the row's log library-size factor)."""

    name = "poisson"

    def log_prob_counts(self, x, log_mu, log_theta=None):
        return x * log_mu - torch.exp(log_mu) - torch.lgamma(x + 1)


class NegativeBinomial(_Counts):
    """Negative binomial with log-mean ``out`` and per-feature inverse dispersion theta.

    The mean / inverse-dispersion form used by scVI, ``Var = mu + mu**2 / theta``:
    ``log Gamma(x + theta) - log Gamma(theta) - log Gamma(x + 1)
    + theta log(theta / (theta + mu)) + x log(mu / (theta + mu))``.
    """

    name = "nb"

    def log_prob_counts(self, x, log_mu, log_theta=None):
        log_theta = log_theta.to(log_mu.dtype)
        theta = torch.exp(log_theta)
        # log(theta + mu) from logs, so a large log_mu never overflows before the log.
        log_theta_mu = torch.logaddexp(log_theta.expand_as(log_mu), log_mu)
        return (
            torch.lgamma(x + theta)
            - torch.lgamma(theta)
            - torch.lgamma(x + 1)
            + theta * (log_theta - log_theta_mu)
            + x * (log_mu - log_theta_mu)
        )


LIKELIHOODS = {lik.name: lik for lik in (Gaussian(), Bernoulli(), Poisson(), NegativeBinomial())}


def get_likelihood(name):
    """The :class:`Likelihood` of the ``likelihood`` parameter value ``name``."""
    try:
        return LIKELIHOODS[name]
    except KeyError:
        raise ValueError(
            f"unknown likelihood {name!r}; expected one of {sorted(LIKELIHOODS)}."
        ) from None


def log_likelihood(
    x, out, likelihood, log_psi=None, *, mask=None, log_theta=None, log_offset=None, inplace=False
):
    """log p(x | z, t) of eq. 1 for decoder output ``out`` (see :meth:`Likelihood.log_prob`)."""
    return get_likelihood(likelihood).log_prob(
        x,
        out,
        log_psi,
        mask=mask,
        log_theta=log_theta,
        log_offset=log_offset,
        inplace=inplace,
    )


def count_log_prob(x, log_mu, likelihood, log_theta=None):
    """Elementwise log Poisson(x; mu) or log NB(x; mu, theta), mean ``mu = exp(log_mu)``."""
    return get_likelihood(likelihood).log_prob_counts(x, log_mu, log_theta)
