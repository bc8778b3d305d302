"""The CPVAE objective: minibatch estimates of eq. 3/4/10 and the eq. 7-8 importance terms.

Equation numbers refer to Davison, Severson & Ghosh, "Cross-population Variational
Autoencoders" (:doc:`/model` maps every symbol to code). Everything the loss is made
of lives here: the per-row densities and weights, :func:`cpvae_terms` (the estimate from
per-row terms), :func:`batch_terms` (the estimate on a minibatch, running the networks of
a :class:`~sklearn_cpvae._module.CPVAEModule`), the sub-sampled MI estimate
(:func:`draw_off_population`), the alpha schedule and the importance-sampled
log-likelihood of eq. 7-8. Nothing here knows about devices, numpy or sklearn.

Sub-sampled MI term
-------------------
The exact minibatch estimate of the last sum of eq. 4 runs every private encoder on every
row of the minibatch, so one training row costs O(K) encoder passes. With ``mi_samples=m``
each private encoder k instead sees ``m`` rows drawn from the minibatch's *other*
populations, with probabilities proportional to the exact estimate's weights
(:func:`mi_weights`: eq. 4's ``1 / (N - n_k)`` times the ``n_j / m_j`` that a balanced
minibatch row stands for). With those probabilities and the scale ``W_k / m`` (``W_k``
the sum of encoder k's weights),

    E[ (W_k / m) sum_s KL_k(x_{i_s}) ] = sum_i w_ki KL_k(x_i),

the exact minibatch estimate, which is itself unbiased for eq. 4. So the sub-sampled term
is unbiased for eq. 4 at a cost of ``K * m`` encoder rows per step, independent of the
number of rows in the step.
"""

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sklearn_cpvae._nn import group_rows, scatter_to_groups, upcast

LOG_2PI = math.log(2 * math.pi)


def kl_std_normal(mu, logvar):
    """KL( N(mu, exp(logvar)) || N(0, I) ), summed over the last axis (eq. 3, 4)."""
    return 0.5 * torch.sum(torch.exp(logvar) + mu * mu - 1.0 - logvar, dim=-1)


def log_normal(x, mu, logvar):
    """log N(x; mu, diag(exp(logvar))), summed over the last axis."""
    return -0.5 * torch.sum(LOG_2PI + logvar + (x - mu) ** 2 * torch.exp(-logvar), dim=-1)


def mmd_rbf_groups(codes, populations, n_groups, bandwidth=None, scales=(1.0,)):
    """Sum over groups k of MMD^2 between group k's codes and all codes (RBF kernel).

    An invariance penalty on the shared codes: it is zero when every population's
    codes follow the same distribution as the pooled codes. ``bandwidth`` defaults to
    the median pairwise squared distance (detached). ``scales`` multiplies it: the
    kernel is the mean of ``exp(-d^2 / (bandwidth * c))`` over ``c`` in ``scales`` (a
    multi-scale kernel; the default ``(1.0,)`` is the single median-bandwidth kernel
    that ``CPVAE(shared_invariance=...)`` uses). The estimate is the plug-in (V-statistic)
    one, diagonal included. One (n, n) kernel and a (K, n) membership matrix, so no
    loop over populations.

    Examples
    --------
    >>> import torch
    >>> codes = torch.tensor([[0.0], [0.1], [2.0], [2.1]])
    >>> pops = torch.tensor([0, 0, 1, 1])
    >>> same = mmd_rbf_groups(codes, torch.tensor([0, 1, 0, 1]), 2)
    >>> apart = mmd_rbf_groups(codes, pops, 2, scales=(0.25, 1.0, 4.0))
    >>> bool(apart > same)
    True
    """
    if not scales or any(c <= 0 for c in scales):
        raise ValueError(f"mmd_rbf_groups: scales must be positive numbers, got {scales!r}.")
    n = codes.shape[0]
    d2 = torch.cdist(codes, codes).pow(2)
    if bandwidth is None:
        bandwidth = d2.detach().median().clamp_min(1e-6)
    kern = sum(torch.exp(-d2 / (bandwidth * c)) for c in scales) / len(scales)
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


class _ReverseGradient(torch.autograd.Function):
    """The autograd function behind :func:`reverse_gradient`."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * -ctx.weight, None


def reverse_gradient(x, weight):
    """``x`` unchanged forward; backward, the gradient times ``-weight`` (a gradient-reversal
    layer, Ganin & Lempitsky 2015).

    What reads ``reverse_gradient(z, weight)`` is trained by the plain gradient of its
    loss, while everything upstream of ``z`` is trained by ``-weight`` times it: one loss
    and one backward pass play the classifier's minimisation and the encoder's
    maximisation of the same cross-entropy.

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> (3.0 * reverse_gradient(z, 0.5)).sum().backward()
    >>> z.grad
    tensor([-1.5000, -1.5000])
    """
    return _ReverseGradient.apply(x, float(weight))


def adversary_cross_entropy(logits, populations, batch_counts):
    """Population-balanced cross-entropy (nats) of the population classifier.

    Row i of population k weighs ``1 / (K m_k)``: the mean over populations of each
    population's mean ``-log softmax(logits_i)[k]``. On a balanced minibatch (Algorithm
    1, ``m_k = M``) this is the plain mean, and a classifier that cannot tell the
    populations apart scores ``log K``; on unbalanced rows (validation) the weights keep
    that chance value, where a plain mean would reward learning the population sizes.

    Examples
    --------
    >>> import math, torch
    >>> logits = torch.zeros(4, 2)  # no information
    >>> ce = adversary_cross_entropy(logits, torch.tensor([0, 0, 0, 1]), torch.tensor([3.0, 1.0]))
    >>> math.isclose(float(ce), math.log(2), rel_tol=1e-6)
    True
    """
    k = logits.shape[-1]
    nll = F.cross_entropy(upcast(logits), populations, reduction="none")
    return torch.sum(nll / (k * batch_counts[populations]))


def adversary_penalty(ce):
    """The adversary's part of the loss: value 0, gradient that of ``ce``.

    ``ce`` was computed through :func:`reverse_gradient`, so this gradient trains the
    classifier to descend ``ce`` and the shared encoder to descend ``-weight * ce``: it
    charges the encoder ``weight`` nats per nat of ``log K - ce``, the classifier's lower
    bound on I(z; population) under balanced sampling (``H(population) = log K`` and
    ``ce >= H(population | z)``), which eq. 1's z ~ N(0, I), independent of the
    population, says is 0.

    The value is 0 so that the recorded loss, which the stopping rules and the best
    epoch read, stays the objective's: ``weight * (log K - ce)`` is the value of a game,
    not of a bound, and is unbounded below. An encoder that overtakes its classifier
    pushes ``ce`` above log K (a classifier confidently wrong), which would count as an
    improvement of the loss (measured in :doc:`the quality panel </quality>`, "The
    population adversary").

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor(0.4, requires_grad=True)
    >>> out = adversary_penalty(2.0 * x)
    >>> out.backward()
    >>> float(out.detach()), float(x.grad)
    (0.0, 2.0)
    """
    return ce - ce.detach()


@dataclass(frozen=True)
class LossTerms:
    """One minibatch estimate of each term; ``loss`` is what the optimiser minimises.

    All terms are per-data-point scales: ``recon``, ``kl_shared`` and ``kl_private`` are
    estimates of (1/N) sum over the data; ``mi`` is the last sum of eq. 4 (one average
    per private encoder, summed over encoders), without the weight alpha. ``adversary``
    is the population classifier's cross-entropy (:func:`adversary_cross_entropy`), None
    without ``shared_adversary``.
    """

    loss: torch.Tensor
    recon: torch.Tensor
    kl_shared: torch.Tensor
    kl_private: torch.Tensor
    mi: torch.Tensor
    adversary: torch.Tensor | None = None

    def as_floats(self):
        return {k: float(v) for k, v in self.__dict__.items() if v is not None}


OBJECTIVES = ("elbo_mi", "paper", "elbo")


def has_mi(objective):
    """Whether ``objective`` has eq. 4's MI term (every one but the plain ELBO)."""
    return objective != "elbo"


def has_own_kl(objective):
    """Whether ``objective`` keeps eq. 3's KL on each row's own private code, so that the
    N(0, I) prior of t is part of training (every one but the paper's literal eq. 4)."""
    return objective != "paper"


def own_kl_weight(objective, private_kl_weight=1.0):
    """Weight of KL(q_k(t|x) || N(0, I)) on each row's own private code in the loss.

    eq. 3 and ``"elbo_mi"`` weigh it 1, eq. 4 (``"paper"``) 0. A weight ``beta`` in
    between charges a private code ``beta`` nats per nat of information on its own rows,
    while the shared code pays 1: the loss is then a bound on the log-likelihood only
    at ``beta = 1`` (for ``beta < 1`` it is the ELBO plus ``(1 - beta)`` times the own
    private rate, as in a beta-VAE with beta < 1 on t alone).
    """
    if not has_own_kl(objective):
        return 0.0
    return private_kl_weight


def free_nats(kl, floor):
    """``max(kl, floor)`` per row: free bits (Kingma et al., 2016) on a whole code.

    A rate below ``floor`` nats is charged as ``floor``, so its gradient is 0 and the
    encoder may spend up to ``floor`` nats per row at no cost; above it the KL is
    charged as is. Applied per row, the charge stays a sum over rows, so minibatch
    chunks and ranks add up as they do for the KL itself.
    """
    return torch.clamp(kl, min=floor)


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
    private_kl_weight=1.0,
    private_free_nats=0.0,
):
    """Minibatch estimate of the training objective from per-row terms, as :class:`LossTerms`.

    Parameters
    ----------
    recon_ll, kl_z : tensor (n,)
        ``log p(x|z,t)`` (one reparameterised sample) and ``KL(q(z|x) || p(z))`` per row.
    populations : long tensor (n,)
        Population index of each row.
    batch_counts, pop_sizes : tensor (K,)
        Rows of each population in this minibatch (``m_k``) and in the data (``n_k``).
    objective : {"elbo_mi", "paper", "elbo"}
        ``"elbo_mi"``: the ELBO of eq. 3 minus alpha times the MI bound of eq. 6, i.e.
        eq. 10 with eq. 3's ``KL(q_k(t|x) || p(t))`` on each row's own private code kept.
        ``"paper"``: eq. 10 as published, ``J = A - alpha * MI``, with no KL on a row's own
        private code. ``"elbo"``: eq. 3 (the "No MI" ablation). All scaled by 1/N.
    mi_weight : float
        alpha of eq. 10.
    kl_t_own : tensor (n,), required unless ``"paper"``
        ``KL(q_k(t|x_i) || N(0, I))`` of each row's own private encoder.
    kl_t_others : tensor (K, n'), required unless ``"elbo"``
        ``KL(q_k(t|x_i) || N(0, I))`` of encoder k on row i.
    others_weight : tensor (K, n')
        Weights of ``kl_t_others`` (:func:`mi_weights` for the exact term).
    private_kl_weight : float
        Weight of the own-population private KL (:func:`own_kl_weight`); 1 is eq. 3.
        ``LossTerms.kl_private`` stays the unweighted KL.
    private_free_nats : float
        Free bits on the own private code (:func:`free_nats`): each row is charged
        ``max(KL, private_free_nats)``, so the first nats of its private rate cost nothing.
        0 is eq. 3.
    """
    w = row_weights(populations, batch_counts, pop_sizes)
    recon = torch.sum(w * recon_ll)
    kl_shared = torch.sum(w * kl_z)
    zero = recon.new_zeros(())
    kl_private = torch.sum(w * kl_t_own) if has_own_kl(objective) else zero
    mi = torch.sum(others_weight * kl_t_others) if has_mi(objective) else zero
    if has_own_kl(objective) and private_free_nats > 0:
        charged = torch.sum(w * free_nats(kl_t_own, private_free_nats))
    else:
        charged = kl_private
    own = own_kl_weight(objective, private_kl_weight) * charged
    loss = -(recon - kl_shared - own - (mi_weight * mi if has_mi(objective) else zero))
    return LossTerms(loss, recon, kl_shared, kl_private, mi)


def mi_weight_schedule(epoch, final, anneal_epochs):
    """alpha at (fractional) ``epoch``: linear from 1 to ``final`` over ``anneal_epochs``.

    Appendix A: begin with alpha = 1 and anneal it during training. ``anneal_epochs=0``
    holds alpha at ``final`` from the first step (eq. 10 with a constant weight).
    """
    if anneal_epochs <= 0:
        return float(final)
    frac = min(1.0, max(0.0, epoch / anneal_epochs))
    return 1.0 + (final - 1.0) * frac


def own_kl_warmup(epoch, warmup_epochs, start=0.0):
    """Scale of the own private KL at (fractional) ``epoch``: ``start`` to 1, then 1.

    A KL schedule on the private code alone. With ``start=0`` it is a warm-up (Bowman
    et al., 2016; Sonderby et al., 2016): the weight of eq. 3's KL(q_k(t|x) || N(0, I))
    on a row's own private code rises linearly from 0. With ``start > 1`` it falls from
    ``start``: early in training a private nat costs more than a shared one, so what
    every population shares is modelled in the shared code first. Either way the scale
    stays at 1 from ``warmup_epochs`` on, so that training ends on the objective itself.
    ``warmup_epochs=0`` is 1 from the first step.
    """
    if warmup_epochs <= 0:
        return 1.0
    done = min(1.0, max(0.0, epoch / warmup_epochs))
    return start + (1.0 - start) * done


def log_marginal_is(log_w):
    """log of the importance-sampling estimate of eq. 8 from log weights ``(S, ...)``.

    ``log (1/S) sum_s w_s`` computed stably; with ``S`` samples its expectation lower
    bounds log p(x) (Burda et al.'s IWAE bound) and tightens as S grows.
    """
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def draw_off_population(populations, batch_counts, pop_sizes, m, generator):
    """Rows of the minibatch for each private encoder's MI term, and their weights.

    Parameters
    ----------
    populations : long tensor (n,)
        Population of each minibatch row.
    batch_counts, pop_sizes : float tensor (K,)
        Rows of each population in the minibatch (``m_k``) and in the data (``n_k``).
    m : int
        Draws per private encoder (with replacement).
    generator : torch.Generator
        On the device of ``populations``.

    Returns
    -------
    rows : long tensor (K, m)
        Minibatch positions; row ``rows[k, s]`` is never of population k.
    weight : tensor (K, m)
        ``W_k / m`` for every draw of encoder k: ``sum(weight * KL_k(x[rows]))`` is an
        unbiased estimate of ``sum(mi_weights(...) * KL)`` (see the module docstring).
    """
    w = mi_weights(populations, batch_counts, pop_sizes)  # (K, n), zero on own rows
    total = w.sum(1, keepdim=True)  # W_k
    # Inverse-CDF sampling: one cumsum and a binary search, no per-k Python work.
    cdf = torch.cumsum(w, 1) / total
    u = torch.rand((w.shape[0], m), generator=generator, device=w.device, dtype=w.dtype)
    rows = torch.searchsorted(cdf, u, right=True).clamp_(max=w.shape[1] - 1)
    # Rounding can leave the cdf's last entries just under 1 with a zero-weight row at the
    # end (a row of population k itself); a draw landing there would get weight 0 in the
    # exact sum, so it is moved to the last row that has weight.
    last = (w > 0).to(w.dtype).cumsum(1).argmax(1, keepdim=True)
    rows = torch.minimum(rows, last)
    return rows, (total / m).expand(-1, m)


def _reparameterise(mu, logvar, generator, eps=None):
    if eps is None:
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
    noise=None,
    private_kl_weight=1.0,
    private_free_nats=0.0,
    adversary_weight=0.0,
):
    """Minibatch estimate of the ``objective`` (see :func:`cpvae_terms`) as :class:`LossTerms`.

    ``x`` (n, D) holds rows of populations ``populations`` (n,), ``batch_counts[k]`` of
    them from population k, drawn from ``pop_sizes[k]`` rows. ``balanced=True`` declares
    the layout of Algorithm 1's minibatch: M rows of every population, population-major,
    so that the per-population blocks are views rather than scattered copies.
    ``mi_samples=None`` computes eq. 4's MI term exactly on the minibatch (every private
    encoder on every row); an int ``m`` uses the unbiased sub-sampled estimate of
    :func:`draw_off_population` (m rows per encoder). ``noise=(eps_z, eps_t)`` gives the
    standard normal draws of the two reparameterisations (the rows' share of a larger
    minibatch's draws, when that minibatch is split across processes); None draws them
    from ``generator``. ``private_kl_weight`` weighs the
    own-population private KL (:func:`own_kl_weight`) and ``private_free_nats`` floors
    it per row (:func:`free_nats`). ``adversary_weight > 0`` adds the
    population classifier on the shared posterior means (:func:`adversary_penalty`;
    the module must hold one, ``CPVAEModule(shared_adversary=True)``).
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

    # Standardised once for the encoders and the likelihood (the same entries each would make).
    xs = module.standardize_rows(x)
    mu_z, lv_z = module.encode_shared(xs, standardized=True, populations=populations)
    kl_others = weights = None
    if has_mi(objective) and mi_samples is None:
        # The exact MI term: encoder k on every row; each row's own code is one slice.
        mu_all, lv_all = module.encode_private_all(xs, standardized=True, populations=populations)
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
    elif has_mi(objective):
        # Sub-sampled MI term: encoder k's own rows and its m drawn rows of other
        # populations go through ONE grouped pass, so the (in, K, out) first-layer weight
        # is re-laid out for bmm once per step, not twice.
        drawn, weights = draw_off_population(
            populations, batch_counts, pop_sizes, mi_samples, generator
        )
        own_rows = to_groups(xs)
        row_pops = None
        if module.mi_alignment:
            # Own rows read as they are; drawn rows move to encoder k's mean.
            own_pops = torch.arange(k, device=x.device)[:, None].expand(-1, own_rows.shape[1])
            row_pops = torch.cat([own_pops, populations[drawn]], dim=1)
        mu_b, lv_b = module.encode_private_grouped(
            torch.cat([own_rows, xs[drawn]], dim=1), standardized=True, populations=row_pops
        )
        m_own = own_rows.shape[1]
        mu_t, lv_t = from_groups(mu_b[:, :m_own]), from_groups(lv_b[:, :m_own])
        kl_others = kl_std_normal(mu_b[:, m_own:], lv_b[:, m_own:])
    else:
        mu_t, lv_t = module.encode_private_grouped(to_groups(xs), standardized=True)
        mu_t, lv_t = from_groups(mu_t), from_groups(lv_t)

    eps_z, eps_t = (None, None) if noise is None else noise
    z = _reparameterise(mu_z, lv_z, generator, eps_z)
    t = _reparameterise(mu_t, lv_t, generator, eps_t)
    out = module.decode_shared(z) + from_groups(module.decode_private_grouped(to_groups(t)))
    recon = module.recon_log_likelihood(xs, upcast(out), standardized=True)
    kl_z = kl_std_normal(mu_z, lv_z)
    gate = module.private_gate.to(recon.dtype)
    if kl_others is not None and module.has_gate:
        # An encoder without a private space has no MI term to pay.
        kl_others = kl_others * gate[:, None]
    kl_own = kl_std_normal(mu_t, lv_t) * gate[populations] if has_own_kl(objective) else None
    terms = cpvae_terms(
        recon,
        kl_z,
        populations,
        batch_counts,
        pop_sizes,
        objective=objective,
        mi_weight=mi_weight,
        kl_t_own=kl_own,
        kl_t_others=kl_others,
        others_weight=weights,
        private_kl_weight=private_kl_weight,
        private_free_nats=private_free_nats,
    )
    if module.shared_invariance > 0:
        # Optional invariance penalty on the shared codes (not part of eq. 4).
        mmd = mmd_rbf_groups(mu_z, populations, k)
        terms = dataclasses.replace(terms, loss=terms.loss + module.shared_invariance * mmd)
    if adversary_weight > 0:
        # Optional population adversary on the shared posterior means (not part of eq. 4).
        if module.adversary is None:
            raise ValueError(
                f"shared_adversary={adversary_weight} needs networks built with the "
                "population classifier; these were built with shared_adversary=0."
            )
        logits = module.population_logits(reverse_gradient(mu_z, adversary_weight))
        ce = adversary_cross_entropy(logits, populations, batch_counts)
        terms = dataclasses.replace(terms, loss=terms.loss + adversary_penalty(ce), adversary=ce)
    return terms


@dataclass(frozen=True)
class Proposal:
    """The amortised posterior of some rows: eq. 8's proposal, before any sample.

    ``xs`` (n, D) the rows as the encoders and the likelihood see them
    (:meth:`~sklearn_cpvae._module.CPVAEModule.standardize_rows`); ``mu_z``, ``lv_z``
    (K or 1, n, n_shared) the mean and log-variance of q(z|x) (one per population with
    ``shared_centering``); ``mu_t``, ``lv_t`` (K, n, n_private) those of every q_k(t|x).
    Encoding is cheap per row but runs K networks, so inference encodes many rows at
    once and samples from slices of them (:meth:`rows`)."""

    xs: torch.Tensor
    mu_z: torch.Tensor
    lv_z: torch.Tensor
    mu_t: torch.Tensor
    lv_t: torch.Tensor

    def rows(self, sl):
        """The proposal of rows ``sl`` (a slice), as views."""
        return Proposal(
            self.xs[sl], self.mu_z[:, sl], self.lv_z[:, sl], self.mu_t[:, sl], self.lv_t[:, sl]
        )


def proposal(module, x):
    """Encode rows ``x`` (n, D) with the shared and every private encoder (eq. 2)."""
    xs = module.standardize_rows(x)  # once for the encoders and the likelihood
    mu_z, lv_z = module.encode_shared_all(xs, standardized=True)
    mu_t, lv_t = module.encode_private_all(xs, standardized=True)
    return Proposal(xs, mu_z, lv_z, mu_t, lv_t)


def log_likelihood_per_population(module, x, eps_z, eps_t, prior_t_mean, prior_t_logvar):
    """Importance-sampled log p(x | theta_s, theta_k) for every population k (eq. 7-8).

    ``x`` is the rows (n, D) or their :class:`Proposal`. The proposal is the amortised
    posterior q(z|x) q_k(t|x) (q(z|x, k) with ``shared_centering``); ``eps_z``
    (S, n_shared) and ``eps_t`` (S, n_private) are fixed standard-normal draws shared by
    every row and every population (common random numbers), so a row's estimate does not
    depend on the other rows of its batch and differences between populations have low
    variance. The prior on t is ``N(prior_t_mean[k], exp(prior_t_logvar[k]))``: the
    standard normal of eq. 1, or the aggregate posterior (see
    ``CPVAE(private_prior=...)``).

    Returns a tensor ``(n, K)``.
    """
    q = x if isinstance(x, Proposal) else proposal(module, x)
    recon, log_pz_qz, log_pt_qt = importance_terms(
        module, q, eps_z, eps_t, prior_t_mean, prior_t_logvar
    )
    log_w = recon + log_pz_qz + log_pt_qt  # (K, S, n)
    return log_marginal_is(log_w.transpose(0, 1)).T  # (n, K)


def importance_terms(module, q, eps_z, eps_t, prior_t_mean, prior_t_logvar):
    """The three parts of eq. 8's log-weights, per population and sample.

    ``q`` is the rows' :class:`Proposal`. ``recon`` (K, S, n): log p(x | z_s, t_ks, k);
    ``log_pz_qz`` (S, n): log p(z_s) - log q(z_s | x), the same for every k (``(K, S, n)``
    with ``shared_centering``, whose proposal q(z | x, k) centres x by population k's
    mean); ``log_pt_qt`` (K, S, n): log p(t_ks) - log q_k(t_ks | x), whose mean over
    samples is minus the rate KL(q_k(t|x) || p(t)). Their mean over samples is each
    population's ELBO, split into what its decoder explains and what its private code
    costs.
    """
    xs, mu_z, lv_z, mu_t, lv_t = q.xs, q.mu_z, q.lv_z, q.mu_t, q.lv_t
    z = mu_z[:, None] + torch.exp(0.5 * lv_z[:, None]) * eps_z[:, None, :]  # (., S, n, dz)
    log_pz_qz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)) - log_normal(
        z, mu_z[:, None], lv_z[:, None]
    )  # (K or 1, S, n)
    f_s = module.decode_shared(z)  # (K or 1, S, n, D)
    if not module.shared_centering:
        log_pz_qz, f_s = log_pz_qz[0], f_s[0]

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
        out = f_s + f_k
    else:
        # (K, S, n, D) is by far the largest tensor of inference: reuse f_k's memory.
        out = f_k.add_(f_s)
    recon = module.recon_log_likelihood(
        xs, out, inplace=not torch.is_grad_enabled(), standardized=True
    )
    return recon, log_pz_qz, log_pt_qt
