"""The CPVAE networks (paper eq. 1-2) and the two computations that use all of them.

``CPVAEModule`` holds the shared encoder q(z|x) and decoder f_s, the K stacked private
encoders q_k(t|x) and decoders f_k, and the Gaussian noise level Psi. It has no sklearn,
numpy or device logic: tensors arrive on the right device and dtype.
"""

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from sklearn_cpvae._mi_sampling import draw_off_population
from sklearn_cpvae._nn import StackedMLP, group_rows, scatter_to_groups
from sklearn_cpvae._objective import (
    VAR_EPS,
    cpvae_terms,
    kl_std_normal,
    log_likelihood,
    log_marginal_is,
    log_normal,
    mi_weights,
    mmd_rbf_groups,
)

COUNT_LIKELIHOODS = ("poisson", "nb")

LOG_VAR_EPS = math.log(VAR_EPS)
# Ceiling of every encoder log-variance. The priors have unit variance, so a posterior
# variance of e^20 (std 2e4) already means "no information"; without a ceiling, rows far
# from the scale of the training data (unstandardised counts, outliers at predict time)
# drive the log-variance past 88, where exp overflows float32 and the objective or the
# likelihood becomes NaN. Trained encoders stay far below it, so results are unchanged.
LOG_VAR_MAX = 20.0


class CPVAEModule(nn.Module):
    """Shared and K private encoder/decoder pairs with additive aggregation g(a, b) = a + b."""

    def __init__(
        self,
        n_features,
        n_populations,
        n_shared,
        n_private,
        hidden_layer_sizes,
        activation,
        likelihood,
        generator,
        *,
        mask_missing=False,
        library_size=False,
        private_gate=None,
        shared_invariance=0.0,
    ):
        super().__init__()
        hidden = list(hidden_layer_sizes)
        dec_hidden = hidden[::-1]
        self.n_populations = n_populations
        self.n_shared = n_shared
        self.n_private = n_private
        self.likelihood = likelihood
        mk = StackedMLP
        self.enc_shared = mk(1, [n_features, *hidden, 2 * n_shared], activation, generator)
        self.dec_shared = mk(1, [n_shared, *dec_hidden, n_features], activation, generator)
        self.enc_private = mk(
            n_populations, [n_features, *hidden, 2 * n_private], activation, generator
        )
        self.dec_private = mk(
            n_populations, [n_private, *dec_hidden, n_features], activation, generator
        )
        # log of the isotropic variance Psi (eq. 1); unused by the Bernoulli likelihood.
        self.log_psi = nn.Parameter(torch.zeros(()))
        # Per-feature NB inverse dispersion theta = exp(log_theta); unused otherwise.
        self.log_theta = nn.Parameter(torch.zeros(n_features))
        # log of the reference library size: count likelihoods add log(l_i) - this.
        self.register_buffer("log_library_ref", torch.zeros(()))
        # 1 for populations with a private space, 0 for those without (their f_k is 0).
        gate = (
            torch.ones(n_populations)
            if private_gate is None
            else torch.as_tensor(private_gate, dtype=torch.float32)
        )
        self.register_buffer("private_gate", gate)
        self.has_gate = bool((gate == 0).any())
        self.mask_missing = bool(mask_missing)
        self.library_size = bool(library_size) and likelihood in COUNT_LIKELIHOODS
        self.shared_invariance = float(shared_invariance)

    def encoder_input(self, x):
        """What the encoders see: NaN (masked entries) as 0; counts as log1p(counts)."""
        if self.mask_missing:
            x = torch.nan_to_num(x, nan=0.0)
        if self.likelihood in COUNT_LIKELIHOODS:
            x = torch.log1p(x.clamp_min(0))
        return x

    def recon_log_likelihood(self, x, out, inplace=False):
        """log p(x | z, t) per row for rows ``x`` (n, D) and decoder outputs ``out``
        (..., n, D): masks NaN entries and adds the library-size offset of count models."""
        mask = None
        if self.mask_missing:
            mask = (~torch.isnan(x)).to(x.dtype)
            x = torch.nan_to_num(x, nan=0.0)
        log_offset = None
        if self.library_size:
            total = x.sum(-1, keepdim=True)
            if mask is not None:
                # Scale the observed total up to the whole row.
                n_obs = mask.sum(-1, keepdim=True)
                total = total * x.shape[-1] / n_obs.clamp_min(1.0)
            log_offset = torch.log(total.clamp_min(1.0)) - self.log_library_ref
        return log_likelihood(
            x,
            out,
            self.likelihood,
            self.log_psi,
            mask=mask,
            log_theta=self.log_theta,
            log_offset=log_offset,
            inplace=inplace,
        )

    @staticmethod
    def _split(out):
        mu, raw = _upcast(out).chunk(2, dim=-1)
        # Floors the variance at VAR_EPS smoothly: log(exp(raw) + VAR_EPS), written with
        # softplus (one fused op and a one-op backward, unlike logaddexp against a
        # constant); the cap keeps exp(logvar) finite in float32 on unscaled data.
        return mu, (LOG_VAR_EPS + F.softplus(raw - LOG_VAR_EPS)).clamp(max=LOG_VAR_MAX)

    def encode_shared(self, x):
        """q(z|x): ``x`` (n, D) -> mean, log-variance (n, n_shared)."""
        return self._split(self.enc_shared.forward_single(self.encoder_input(x)))

    def encode_private_all(self, x):
        """Every q_k(t|x) on every row: (n, D) -> mean, log-variance (K, n, n_private)."""
        return self._split(self.enc_private.forward_all(self.encoder_input(x)))

    def encode_private_grouped(self, xg):
        """q_k(t|x) on population k's rows: (K, m, D) -> (K, m, n_private) each."""
        return self._split(self.enc_private.forward_grouped(self.encoder_input(xg)))

    def decode_shared(self, z):
        """f_s(z): (..., n_shared) -> (..., D)."""
        return self.dec_shared.forward_single(z)

    def decode_private_grouped(self, tg):
        """f_k(t) on population k's codes: (K, m, n_private) -> (K, m, D).

        Populations without a private space decode to 0 (``private_gate``)."""
        out = self.dec_private.forward_grouped(tg)
        if self.has_gate:
            out = out * self.private_gate.to(out.dtype)[:, None, None]
        return out

    def decode_private(self, t, populations):
        """f_k(t) with each row's own k: ``t`` (n, n_private) -> (n, D)."""
        group, slot, m = group_rows(populations, self.n_populations)
        out = self.decode_private_grouped(scatter_to_groups(t, group, slot, self.n_populations, m))
        return out[group, slot]

    def encode_private(self, x, populations):
        """q_k(t|x) with each row's own k: (n, D) -> mean, log-variance (n, n_private)."""
        group, slot, m = group_rows(populations, self.n_populations)
        mu, lv = self.encode_private_grouped(
            scatter_to_groups(x, group, slot, self.n_populations, m)
        )
        return mu[group, slot], lv[group, slot]


def _upcast(out):
    """float32 for bf16/fp16 autocast outputs: the KL and log-densities sum many terms."""
    return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out


def _reparameterise(mu, logvar, generator):
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def batch_terms(
    module,
    x,
    populations,
    batch_counts,
    pop_sizes,
    *,
    objective,
    mi_weight,
    generator,
    balanced=False,
    mi_samples=None,
):
    """Minibatch estimate of eq. 4/10 (or eq. 3) as :class:`~sklearn_cpvae._objective.LossTerms`.

    ``x`` (n, D) holds rows of populations ``populations`` (n,), ``batch_counts[k]`` of
    them from population k, drawn from ``pop_sizes[k]`` rows. ``balanced=True`` declares
    the layout of Algorithm 1's minibatch: M rows of every population, population-major,
    so that the per-population blocks are views rather than scattered copies.
    ``mi_samples=None`` computes eq. 4's MI term exactly on the minibatch (every private
    encoder on every row); an int ``m`` uses the unbiased sub-sampled estimate of
    :func:`~sklearn_cpvae._mi_sampling.draw_off_population` (m rows per encoder).
    """
    n, d = x.shape
    k = module.n_populations
    dtype = torch.float32 if x.dtype == torch.bfloat16 else x.dtype
    batch_counts = batch_counts.to(dtype)
    pop_sizes = pop_sizes.to(dtype)
    if balanced:
        m = n // k
    else:
        group, slot, m = group_rows(populations, k)

    def to_groups(rows):
        if balanced:
            return rows.view(k, m, -1)
        return scatter_to_groups(rows, group, slot, k, m)

    def from_groups(block):
        if balanced:
            return block.reshape(n, -1)
        return block[group, slot]

    mu_z, lv_z = module.encode_shared(x)
    kl_others = weights = None
    if objective == "mi" and mi_samples is None:
        # The exact MI term: encoder k on every row; each row's own code is one slice.
        mu_all, lv_all = module.encode_private_all(x)
        if balanced:
            # Rows of population k are block k: own codes are the block diagonal.
            def own(a):
                return a.view(k, k, m, -1).diagonal(dim1=0, dim2=1).permute(2, 0, 1)

            mu_t, lv_t = own(mu_all).reshape(n, -1), own(lv_all).reshape(n, -1)
        else:
            rows = torch.arange(n, device=x.device)
            mu_t, lv_t = mu_all[populations, rows], lv_all[populations, rows]
        kl_others = kl_std_normal(mu_all, lv_all)
        weights = mi_weights(populations, batch_counts, pop_sizes)
    elif objective == "mi":
        # Sub-sampled MI term: encoder k's own rows and its m drawn rows of other
        # populations go through ONE grouped pass, so the (in, K, out) first-layer weight
        # is re-laid out for bmm once per step, not twice.
        drawn, weights = draw_off_population(
            populations, batch_counts, pop_sizes, mi_samples, generator
        )
        own_rows = to_groups(x)
        mu_b, lv_b = module.encode_private_grouped(torch.cat([own_rows, x[drawn]], dim=1))
        m_own = own_rows.shape[1]
        mu_t, lv_t = from_groups(mu_b[:, :m_own]), from_groups(lv_b[:, :m_own])
        kl_others = kl_std_normal(mu_b[:, m_own:], lv_b[:, m_own:])
    else:
        mu_t, lv_t = module.encode_private_grouped(to_groups(x))
        mu_t, lv_t = from_groups(mu_t), from_groups(lv_t)

    z = _reparameterise(mu_z, lv_z, generator)
    t = _reparameterise(mu_t, lv_t, generator)
    out = module.decode_shared(z) + from_groups(module.decode_private_grouped(to_groups(t)))
    recon = module.recon_log_likelihood(x, _upcast(out))
    kl_z = kl_std_normal(mu_z, lv_z)
    terms = _terms(
        module,
        populations,
        recon,
        kl_z,
        batch_counts,
        pop_sizes,
        objective,
        mi_weight,
        mu_t,
        lv_t,
        kl_others,
        weights,
    )
    if module.shared_invariance > 0:
        # Optional invariance penalty on the shared codes (not part of eq. 4).
        mmd = mmd_rbf_groups(mu_z, populations, k)
        terms = dataclasses.replace(terms, loss=terms.loss + module.shared_invariance * mmd)
    return terms


def _terms(
    module,
    populations,
    recon,
    kl_z,
    batch_counts,
    pop_sizes,
    objective,
    mi_weight,
    mu_t,
    lv_t,
    kl_others,
    weights,
):
    gate = module.private_gate.to(recon.dtype)
    if objective == "mi":
        if module.has_gate:
            # An encoder without a private space has no MI term to pay.
            kl_others = kl_others * gate[:, None]
        return cpvae_terms(
            recon,
            kl_z,
            populations,
            batch_counts,
            pop_sizes,
            objective="mi",
            mi_weight=mi_weight,
            kl_t_others=kl_others,
            others_weight=weights,
        )
    return cpvae_terms(
        recon,
        kl_z,
        populations,
        batch_counts,
        pop_sizes,
        objective="elbo",
        kl_t_own=kl_std_normal(mu_t, lv_t) * gate[populations],
    )


def log_likelihood_per_population(module, x, eps_z, eps_t, prior_t_mean, prior_t_logvar):
    """Importance-sampled log p(x | theta_s, theta_k) for every population k (eq. 7-8).

    The proposal is the amortised posterior q(z|x) q_k(t|x); ``eps_z`` (S, n_shared) and
    ``eps_t`` (S, n_private) are fixed standard-normal draws shared by every row and every
    population (common random numbers), so a row's estimate does not depend on the other
    rows of its batch and differences between populations have low variance.
    The prior on t is ``N(prior_t_mean[k], exp(prior_t_logvar[k]))``: the standard normal
    of eq. 1, or the aggregate posterior (see ``CPVAE(private_prior=...)``).

    Returns a tensor ``(n, K)``.
    """
    recon, log_pz_qz, log_pt_qt = importance_terms(
        module, x, eps_z, eps_t, prior_t_mean, prior_t_logvar
    )
    log_w = recon + log_pz_qz[None] + log_pt_qt  # (K, S, n)
    return log_marginal_is(log_w.transpose(0, 1)).T  # (n, K)


def importance_terms(module, x, eps_z, eps_t, prior_t_mean, prior_t_logvar):
    """The three parts of eq. 8's log-weights, per population and sample.

    ``recon`` (K, S, n): log p(x | z_s, t_ks, k); ``log_pz_qz`` (S, n): log p(z_s) -
    log q(z_s | x), the same for every k; ``log_pt_qt`` (K, S, n): log p(t_ks) -
    log q_k(t_ks | x), whose mean over samples is minus the rate KL(q_k(t|x) || p(t)).
    Their mean over samples is each population's ELBO, split into what its decoder
    explains and what its private code costs.
    """
    mu_z, lv_z = module.encode_shared(x)  # (n, dz)
    z = mu_z + torch.exp(0.5 * lv_z) * eps_z[:, None, :]  # (S, n, dz)
    log_pz_qz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)) - log_normal(
        z, mu_z, lv_z
    )  # (S, n)
    f_s = module.decode_shared(z)  # (S, n, D)

    mu_t, lv_t = module.encode_private_all(x)  # (K, n, dt)
    k, n, dt = mu_t.shape
    s = eps_t.shape[0]
    t = mu_t[:, None] + torch.exp(0.5 * lv_t[:, None]) * eps_t[None, :, None, :]  # (K,S,n,dt)
    pm = prior_t_mean[:, None, None, :]
    plv = prior_t_logvar[:, None, None, :]
    log_pt_qt = log_normal(t, pm, plv) - log_normal(t, mu_t[:, None], lv_t[:, None])
    if module.has_gate:
        # t does not enter p(x | z, t) without a private space: integrate it out exactly.
        log_pt_qt = log_pt_qt * module.private_gate.to(log_pt_qt.dtype)[:, None, None]
    f_k = module.decode_private_grouped(t.reshape(k, s * n, dt)).view(k, s, n, -1)
    if torch.is_grad_enabled():
        out = f_s[None] + f_k
    else:
        # (K, S, n, D) is by far the largest tensor of inference: reuse f_k's memory.
        out = f_k.add_(f_s)
    recon = module.recon_log_likelihood(x, out, inplace=not torch.is_grad_enabled())
    return recon, log_pz_qz, log_pt_qt
