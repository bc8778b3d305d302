"""The CPVAE networks (paper eq. 1-2) and their encode / decode contract.

``CPVAEModule`` holds the shared encoder q(z|x) and decoder f_s, the K stacked private
encoders q_k(t|x) and decoders f_k, and the Gaussian noise level Psi. It has no sklearn,
numpy or device logic: tensors arrive on the right device and dtype. The objective
(:mod:`~sklearn_cpvae._objective`) and inference (:mod:`~sklearn_cpvae._inference`) use
it through the methods below.
"""

import torch
from torch import nn

from sklearn_cpvae._conv import decoder, encoder, layer_width
from sklearn_cpvae._likelihoods import get_likelihood
from sklearn_cpvae._nn import StackedMLP, gaussian_head, group_rows, scatter_to_groups

# Width of the population classifier's one hidden layer (``shared_adversary``): it reads
# n_shared posterior means and tells K populations apart, a far smaller task than the
# encoders', so a fixed small width keeps its cost negligible beside theirs.
ADVERSARY_HIDDEN = 32


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
        standardize=False,
        shared_adversary=False,
        shared_centering=False,
        mi_alignment=False,
        image=None,
    ):
        super().__init__()
        hidden = list(hidden_layer_sizes)
        dec_hidden = hidden[::-1]
        self.n_populations = n_populations
        self.n_shared = n_shared
        self.n_private = n_private
        self.hidden_layer_sizes = hidden
        self.n_features = n_features
        self.likelihood = likelihood
        self.lik = get_likelihood(likelihood)
        # ``image``: ((height, width, channels), conv channels) for convolutional
        # networks (``_validation.image_layout``); None, every network is a StackedMLP.
        self.image = image
        d, k = n_features, n_populations
        self.enc_shared = encoder(1, d, hidden, 2 * n_shared, activation, generator, image)
        self.dec_shared = decoder(1, n_shared, dec_hidden, d, activation, generator, image)
        self.enc_private = encoder(k, d, hidden, 2 * n_private, activation, generator, image)
        self.dec_private = decoder(k, n_private, dec_hidden, d, activation, generator, image)
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
        self.library_size = bool(library_size) and self.lik.counts
        self.shared_invariance = float(shared_invariance)
        # Gaussian rows are modelled in standardised units, (x - x_loc) / x_scale, so that
        # neither the encoders' inputs nor the isotropic Psi depend on the units of X;
        # log p(x) adds the log-Jacobian back, and decoded means are mapped back.
        self.standardize = bool(standardize) and self.lik.identity_mean
        if self.standardize:
            self.register_buffer("x_loc", torch.zeros(n_features))
            self.register_buffer("x_scale", torch.ones(n_features))
        # Each population's mean encoder input (``shared_centering="population"``): the
        # shared encoder sees a row minus its population's mean, so a population's mean
        # offset cannot reach z and is left to the private decoders' biases.
        self.shared_centering = bool(shared_centering)
        # ``mi_alignment="mean"``: in eq. 4's MI term encoder k reads another population's
        # row moved from that population's mean to k's, so that a mean offset alone does
        # not let it tell the row apart and send it to the prior at no cost.
        self.mi_alignment = bool(mi_alignment)
        if self.shared_centering or self.mi_alignment:
            self.register_buffer("population_centre", torch.zeros(n_populations, n_features))
        # The population classifier on the shared posterior means (``shared_adversary``),
        # built last so that every other network starts from the weights it has without it.
        self.adversary = None
        if shared_adversary:
            self.adversary = StackedMLP(
                1, [n_shared, ADVERSARY_HIDDEN, n_populations], activation, generator
            )

    @property
    def layer_width(self):
        """The widest hidden activation of one network on one row, for sizing chunks."""
        return layer_width(self.hidden_layer_sizes, self.image)

    def signature(self):
        """The estimator parameters this module was built with, read off the module."""
        return {
            "n_shared": self.n_shared,
            "n_private": self.n_private,
            "hidden_layer_sizes": self.enc_shared.hidden_sizes,
            "activation": self.enc_shared.activation,
            "likelihood": self.likelihood,
            "missing": self.mask_missing,
            "library_size": self.library_size,
            "shared_invariance": self.shared_invariance,
            "no_private_populations": self.private_gate.tolist(),
            "standardize": self.standardize,
            "shared_adversary": self.adversary is not None,
            "shared_centering": self.shared_centering,
            "mi_alignment": self.mi_alignment,
            "image_shape": None if self.image is None else list(self.image[0]),
            "conv_channels": None if self.image is None else list(self.image[1]),
        }

    def _standardized(self, x, inplace=False):
        loc, scale = self.x_loc.to(x.dtype), self.x_scale.to(x.dtype)
        return x.sub_(loc).div_(scale) if inplace else (x - loc) / scale

    def standardize_rows(self, x, inplace=False):
        """Rows ``x`` standardised as the encoders and the likelihood see them (``x``
        itself without ``standardize``). A step that standardises its minibatch once and
        passes ``standardized=True`` to the methods below spares a pass over the rows per
        method; every entry is the same element-wise result either way. ``inplace``
        overwrites ``x`` (a copy the caller owns) instead of allocating two row-sized
        temporaries."""
        return self._standardized(x, inplace) if self.standardize else x

    def encoder_input(self, x, standardized=False):
        """What the encoders see: standardised rows (Gaussian), NaN (masked entries) as 0
        (the feature mean when standardised), counts as log1p(counts)."""
        if self.standardize and not standardized:
            x = self._standardized(x)
        if self.mask_missing:
            x = torch.nan_to_num(x, nan=0.0)
        return self.lik.encoder_input(x)

    def recon_log_likelihood(self, x, out, inplace=False, standardized=False):
        """log p(x | z, t) per row for rows ``x`` (n, D) and decoder outputs ``out``
        (..., n, D): masks NaN entries and adds the library-size offset of count models.

        With ``standardize`` this is the density of the standardised rows, which is what
        training maximises; :meth:`log_jacobian` converts it to the units of X."""
        if self.standardize and not standardized:
            x = self._standardized(x)
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
        return self.lik.log_prob(
            x,
            out,
            self.log_psi,
            mask=mask,
            log_theta=self.log_theta,
            log_offset=log_offset,
            inplace=inplace,
        )

    def log_jacobian(self, x):
        """``log p(x) - log p(x_std)`` per row of ``x`` (n, D): ``-sum_d log x_scale[d]``
        over the observed features with ``standardize``, else 0. A constant of the
        data, so it is left out of the training objective (whose relative stopping
        tolerance would otherwise depend on the units of X)."""
        if not self.standardize:
            return x.new_zeros(x.shape[0])
        log_scale = torch.log(self.x_scale.to(x.dtype))
        if self.mask_missing:
            return -((~torch.isnan(x)).to(x.dtype) @ log_scale)
        return (-log_scale.sum()).expand(x.shape[0])

    def output_mean(self, out, *, offset=True):
        """E[x | z, t] in the units of X from the decoder output ``out``.

        ``offset=False`` leaves out the feature means of standardised data: the units of
        a private part ``f_k(t)`` alone, an offset added to the shared part, so that full
        = shared + private holds for the Gaussian likelihood as it does unstandardised."""
        mean = self.lik.mean(out)
        if self.standardize:
            mean = mean * self.x_scale.to(mean.dtype)
            if offset:
                mean = mean + self.x_loc.to(mean.dtype)
        return mean

    def encode_shared(self, x, standardized=False, populations=None):
        """q(z|x): ``x`` (n, D) -> mean, log-variance (n, n_shared).

        With ``shared_centering`` the encoder reads ``x`` minus the mean of its population
        ``populations`` (n,), and masked entries as that mean."""
        h = self.encoder_input(x, standardized)
        if self.shared_centering:
            if populations is None:
                raise ValueError(
                    "shared_centering='population': the shared encoder needs each row's population"
                )
            h = self._centred(h, x, self.population_centre.to(h.dtype)[populations])
        return gaussian_head(self.enc_shared.forward_single(h))

    def encode_shared_all(self, x, standardized=False):
        """q(z|x) as every population k would centre ``x`` (n, D): mean, log-variance
        (K, n, n_shared); without ``shared_centering`` the one encoding, (1, n, n_shared)."""
        h = self.encoder_input(x, standardized)
        if self.shared_centering:
            h = self._centred(h, x, self.population_centre.to(h.dtype)[:, None])
        else:
            h = h[None]
        return gaussian_head(self.enc_shared.forward_single(h))

    def _centred(self, h, x, centre):
        h = h - centre
        if self.mask_missing:
            # A masked entry reads as its population's mean, as an observed mean would.
            h = h.masked_fill(torch.isnan(x), 0.0)
        return h

    def population_centre_sums(self, x, populations):
        """Per-population sums of the encoder input of rows ``x`` and counts of their
        observed entries, (K, D) each: the parts of ``population_centre``."""
        h = self.encoder_input(x)
        obs = (~torch.isnan(x)).to(h.dtype) if self.mask_missing else torch.ones_like(h)
        sums = h.new_zeros(self.n_populations, h.shape[1]).index_add_(0, populations, h * obs)
        counts = h.new_zeros(self.n_populations, h.shape[1]).index_add_(0, populations, obs)
        return sums, counts

    def population_logits(self, z):
        """The population classifier's logits on shared codes: (n, n_shared) -> (n, K)."""
        return self.adversary.forward_single(z)

    def encode_private_all(self, x, standardized=False, populations=None):
        """Every q_k(t|x) on every row: (n, D) -> mean, log-variance (K, n, n_private).

        With ``mi_alignment`` and the rows' ``populations`` (n,), encoder k reads each row
        moved from its population's mean to population k's (its own rows unmoved)."""
        h = self.encoder_input(x, standardized)
        shift = None
        if self.mi_alignment and populations is not None:
            shift = self.alignment_shifts()[:, populations]
        return gaussian_head(self.enc_private.forward_all(h, shift))

    def encode_private_grouped(self, xg, standardized=False, populations=None):
        """q_k(t|x) on the rows of block k: (K, m, D) -> (K, m, n_private) each.

        ``populations`` (K, m), with ``mi_alignment``: the rows' own populations, each
        row moved from its population's mean to k's as in :meth:`encode_private_all`."""
        h = self.encoder_input(xg, standardized)
        shift = None
        if self.mi_alignment and populations is not None:
            shifts = self.alignment_shifts()  # (K, K, hidden_1)
            k = torch.arange(self.n_populations, device=h.device)[:, None]
            shift = shifts[k, populations]
        return gaussian_head(self.enc_private.forward_grouped(h, shift))

    def alignment_shifts(self):
        """(K, K, hidden_1): entry [k, j] is encoder k's first-layer response to
        ``m_k - m_j``, the move from population j's mean encoder input to k's (0 on
        the diagonal). A masked entry (0) moves with the observed ones."""
        c = self.population_centre
        return self.enc_private.first_layer_shifts(c[:, None, :] - c[None, :, :])

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

    def encode_private(self, x, populations, standardized=False):
        """q_k(t|x) with each row's own k: (n, D) -> mean, log-variance (n, n_private)."""
        group, slot, m = group_rows(populations, self.n_populations)
        mu, lv = self.encode_private_grouped(
            scatter_to_groups(x, group, slot, self.n_populations, m), standardized
        )
        return mu[group, slot], lv[group, slot]
