"""The CPVAE objective and the importance-sampled likelihood as small pure functions.

Equation numbers refer to Davison, Severson & Ghosh, "Cross-population Variational
Autoencoders" (``docs/model.md`` maps every symbol to code). Nothing here knows about
networks, devices or sklearn: inputs are per-row tensors, outputs are tensors.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)

# Every variance produced by an encoder is exp(raw) + VAR_EPS. Eq. 4 places no KL on a
# population's own private posterior, so nothing else stops its variance from collapsing
# towards zero, which would make log q(t|x) (eq. 8) overflow. scvi-tools uses the same floor.
VAR_EPS = 1e-4


def kl_std_normal(mu, logvar):
    """KL( N(mu, exp(logvar)) || N(0, I) ), summed over the last axis (eq. 3, 4)."""
    return 0.5 * torch.sum(torch.exp(logvar) + mu * mu - 1.0 - logvar, dim=-1)


def log_normal(x, mu, logvar):
    """log N(x; mu, diag(exp(logvar))), summed over the last axis."""
    return -0.5 * torch.sum(LOG_2PI + logvar + (x - mu) ** 2 * torch.exp(-logvar), dim=-1)


def log_likelihood(
    x, out, likelihood, log_psi=None, *, mask=None, log_theta=None, log_offset=None, inplace=False
):
    """log p(x | z, t) of eq. 1 for decoder output ``out = g(f_s(z), f_k(t))``.

    ``"gaussian"``: mean ``out`` and isotropic covariance ``exp(log_psi) I`` (the paper's
    Psi). ``"bernoulli"``: ``out`` are logits, for data in [0, 1] such as images.
    ``"poisson"``: ``out`` is the log-rate of counts ``x``. ``"nb"``: negative binomial
    with log-mean ``out`` and per-feature inverse dispersion ``exp(log_theta)`` (D,), so
    that ``Var = mu + mu**2 / theta``. For the count likelihoods ``log_offset`` (rows,
    broadcasting as ``out[..., :1]``) is added to the log-rate: the log library-size
    factor of each row.

    ``mask`` (same shape as ``x``, 1 = observed) drops entries from the sum: the
    likelihood of the observed part of a row with missing values (``x`` must then hold a
    finite stand-in value where ``mask`` is 0). ``x`` broadcasts against ``out``; the sum
    runs over features.
    """
    if likelihood == "gaussian":
        # inplace (inference only): the residual overwrites ``out``, saving two passes
        # and two allocations the size of ``out``.
        sq = out.sub_(x).square_() if inplace else (x - out) ** 2
        if mask is None:
            n_obs = out.shape[-1]
        else:
            sq = sq * mask
            n_obs = mask.sum(-1)
        return -0.5 * (sq.sum(-1) * torch.exp(-log_psi) + n_obs * (LOG_2PI + log_psi))
    if likelihood == "bernoulli":
        ll = -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none")
    elif likelihood in ("poisson", "nb"):
        log_mu = out if log_offset is None else out + log_offset
        ll = count_log_prob(x, log_mu, likelihood, log_theta)
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    if mask is not None:
        ll = ll * mask
    return ll.sum(-1)


def count_log_prob(x, log_mu, likelihood, log_theta=None):
    """Elementwise log Poisson(x; mu) or log NB(x; mu, theta), mean ``mu = exp(log_mu)``.

    NB in the mean / inverse-dispersion form used by scVI:
    ``log Gamma(x + theta) - log Gamma(theta) - log Gamma(x + 1)
    + theta log(theta / (theta + mu)) + x log(mu / (theta + mu))``.
    """
    if likelihood == "poisson":
        return x * log_mu - torch.exp(log_mu) - torch.lgamma(x + 1)
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


def decoder_mean(out, likelihood):
    """E[x | z, t] from the decoder output: identity (Gaussian), sigmoid (Bernoulli),
    exp (Poisson / NB: mean counts at the reference library size, see ``CPVAE``)."""
    if likelihood == "bernoulli":
        return torch.sigmoid(out)
    if likelihood in ("poisson", "nb"):
        return torch.exp(out)
    return out


def mmd_rbf_groups(codes, populations, n_groups, bandwidth=None):
    """Sum over groups k of MMD^2 between group k's codes and all codes (RBF kernel).

    An invariance penalty on the shared codes: it is zero when every population's
    codes follow the same distribution as the pooled codes. ``bandwidth`` defaults to
    the median pairwise squared distance (detached). One (n, n) kernel and a (K, n)
    membership matrix, so no loop over populations.
    """
    n = codes.shape[0]
    d2 = torch.cdist(codes, codes).pow(2)
    if bandwidth is None:
        bandwidth = d2.detach().median().clamp_min(1e-6)
    kern = torch.exp(-d2 / bandwidth)
    member = populations[None, :] == torch.arange(n_groups, device=codes.device)[:, None]
    member = member.to(codes.dtype)
    counts = member.sum(1).clamp_min(1.0)
    a = member / counts[:, None]  # (K, n): mean over group k
    b = codes.new_full((n,), 1.0 / n)  # mean over all rows
    kb = kern @ b
    within = torch.einsum("kn,nm,km->k", a, kern, a)
    cross = a @ kb
    total = b @ kb
    present = (member.sum(1) > 0).to(codes.dtype)
    return torch.sum(present * (within - 2 * cross + total))


@dataclass(frozen=True)
class LossTerms:
    """One minibatch estimate of each term; ``loss`` is what the optimiser minimises.

    All terms are per-data-point scales: ``recon``, ``kl_shared`` and ``kl_private`` are
    estimates of (1/N) sum over the data; ``mi`` is the last sum of eq. 4 (one average
    per private encoder, summed over encoders), without the weight alpha.
    """

    loss: torch.Tensor
    recon: torch.Tensor
    kl_shared: torch.Tensor
    kl_private: torch.Tensor
    mi: torch.Tensor

    def as_floats(self):
        return {k: float(v) for k, v in self.__dict__.items()}


def row_weights(populations, batch_counts, pop_sizes):
    """Weight of each row in the minibatch estimate of (1/N) sum_k sum_{i in k}.

    A balanced minibatch (Algorithm 1) holds ``m_k`` rows of population k drawn
    uniformly from its ``n_k`` rows, so each stands for ``n_k / m_k`` rows of the full
    data; dividing by N gives the 1/N of eq. 4. The estimate is unbiased.
    """
    n_total = pop_sizes.sum()
    return (pop_sizes / (n_total * batch_counts))[populations]


def mi_weights(populations, batch_counts, pop_sizes):
    """Weights ``(K, n)`` of KL_k(row) in the minibatch estimate of eq. 4's last term.

    Row i of population j != k stands for ``n_j / m_j`` rows of x_{-k}, normalised by
    ``1 / (N - n_k)``; rows of population k itself get weight 0 (eq. 4 puts no KL on a
    population's own private code).
    """
    n_total = pop_sizes.sum()
    k = torch.arange(len(pop_sizes), device=populations.device)
    per_row = (pop_sizes / batch_counts)[populations]  # n_j / m_j
    off = (populations[None, :] != k[:, None]).to(per_row.dtype)
    return off * per_row[None, :] / (n_total - pop_sizes)[:, None]


def cpvae_terms(
    recon_ll,
    kl_z,
    populations,
    batch_counts,
    pop_sizes,
    *,
    objective,
    mi_weight=1.0,
    kl_t_own=None,
    kl_t_others=None,
    others_weight=None,
):
    """Minibatch estimate of J (eq. 4 / 10) or of the ELBO (eq. 3), as :class:`LossTerms`.

    Parameters
    ----------
    recon_ll, kl_z : tensor (n,)
        ``log p(x|z,t)`` (one reparameterised sample) and ``KL(q(z|x) || p(z))`` per row.
    populations : long tensor (n,)
        Population index of each row.
    batch_counts, pop_sizes : tensor (K,)
        Rows of each population in this minibatch (``m_k``) and in the data (``n_k``).
    objective : {"mi", "elbo"}
        ``"mi"``: eq. 10, ``J = A - alpha * MI``. ``"elbo"``: eq. 3 scaled by 1/N, which
        adds ``KL(q_k(t|x) || p(t))`` for each row's own population (the "No MI" ablation).
    mi_weight : float
        alpha of eq. 10.
    kl_t_own : tensor (n,), required for ``"elbo"``
    kl_t_others : tensor (K, n'), required for ``"mi"``
        ``KL(q_k(t|x_i) || N(0, I))`` of encoder k on row i.
    others_weight : tensor (K, n')
        Weights of ``kl_t_others`` (:func:`mi_weights` for the exact term).
    """
    w = row_weights(populations, batch_counts, pop_sizes)
    recon = torch.sum(w * recon_ll)
    kl_shared = torch.sum(w * kl_z)
    zero = recon.new_zeros(())
    if objective == "elbo":
        kl_private = torch.sum(w * kl_t_own)
        return LossTerms(-(recon - kl_shared - kl_private), recon, kl_shared, kl_private, zero)
    mi = torch.sum(others_weight * kl_t_others)
    return LossTerms(-(recon - kl_shared - mi_weight * mi), recon, kl_shared, zero, mi)


def mi_weight_schedule(epoch, final, anneal_epochs):
    """alpha at (fractional) ``epoch``: linear from 1 to ``final`` over ``anneal_epochs``.

    Appendix A: begin with alpha = 1 and anneal it during training. ``anneal_epochs=0``
    holds alpha at ``final`` from the first step (eq. 10 with a constant weight).
    """
    if anneal_epochs <= 0:
        return float(final)
    frac = min(1.0, max(0.0, epoch / anneal_epochs))
    return 1.0 + (final - 1.0) * frac


def log_marginal_is(log_w):
    """log of the importance-sampling estimate of eq. 8 from log weights ``(S, ...)``.

    ``log (1/S) sum_s w_s`` computed stably; with ``S`` samples its expectation lower
    bounds log p(x) (Burda et al.'s IWAE bound) and tightens as S grows.
    """
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
