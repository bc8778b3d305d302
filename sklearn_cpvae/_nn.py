"""Stacked multilayer perceptrons: K networks of one shape evaluated as one computation.

CPVAE has K private encoders and K private decoders (paper eq. 1-2). The mutual
information term of eq. 4 runs *every* private encoder on *every* point of the
minibatch, so a Python loop over populations would launch K small GEMMs per layer.
Instead the K networks' weights are stacked and each layer is one batched GEMM.

The first layer's weight is stored as ``(in, K, out)``: viewed as ``(in, K * out)`` it
applies all K first layers to a common input with a single large GEMM, and permuted to
``(K, in, out)`` it serves ``torch.bmm`` when each network has its own input. Deeper
layers are stored as ``(K, in, out)`` because their inputs are always per network.
The shared networks are the same class with K = 1.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

# Every variance produced by an encoder is exp(raw) + VAR_EPS. Eq. 4 places no KL on a
# population's own private posterior, so nothing else stops its variance from collapsing
# towards zero, which would make log q(t|x) (eq. 8) overflow. scvi-tools uses the same floor.
VAR_EPS = 1e-4
LOG_VAR_EPS = math.log(VAR_EPS)
# Ceiling of every encoder log-variance. The priors have unit variance, so a posterior
# variance of e^20 (std 2e4) already means "no information"; without a ceiling, rows far
# from the scale of the training data (unstandardised counts, outliers at predict time)
# drive the log-variance past 88, where exp overflows float32 and the objective or the
# likelihood becomes NaN. Trained encoders stay far below it.
LOG_VAR_MAX = 20.0

ACTIVATIONS = {
    "relu": nn.functional.relu,
    "tanh": torch.tanh,
    "elu": nn.functional.elu,
    "gelu": nn.functional.gelu,
    "softplus": nn.functional.softplus,
    "leaky_relu": nn.functional.leaky_relu,
}


class StackedMLP(nn.Module):
    """``n_stack`` MLPs with identical layer sizes, evaluated together.

    Parameters
    ----------
    n_stack : int
        Number of networks K.
    sizes : sequence of int
        ``[n_in, hidden_1, ..., n_out]``.
    activation : str
        Key of :data:`ACTIVATIONS`, applied after every layer but the last.
    generator : torch.Generator
        Source of the initial weights, so that construction never reads the global
        torch RNG (thread safety and ``random_state`` reproducibility).
    """

    def __init__(self, n_stack, sizes, activation, generator):
        super().__init__()
        self.n_stack = n_stack
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            # Same distribution as torch.nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)).
            # In place: with K networks a layer holds O(K) weights, and two temporaries of
            # that size would cost more (fresh pages) than drawing the numbers.
            bound = 1.0 / math.sqrt(n_in)
            shape = (n_in, n_stack, n_out) if i == 0 else (n_stack, n_in, n_out)
            w = torch.rand(shape, generator=generator).mul_(2).sub_(1).mul_(bound)
            b = torch.rand((n_stack, 1, n_out), generator=generator).mul_(2).sub_(1).mul_(bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def _tail(self, h):
        """Layers 1.. on per-network inputs ``h`` of shape (K, n, hidden_1)."""
        n_layers = len(self.weights)
        for i in range(1, n_layers):
            h = self._act(h)
            h = torch.baddbmm(self.biases[i], h, self.weights[i])
        return h

    def forward_all(self, x, shift=None):
        """Every network on every row: ``x`` (n, in) -> (K, n, out).

        ``shift`` (K, n, hidden_1) is added to the first layer's output: network k reads
        row i as ``x[i] + d`` when ``shift[k, i] = d @ W0_k``, a first layer being linear."""
        w0 = self.weights[0]
        n_in, k, n_out = w0.shape
        h = x @ w0.reshape(n_in, k * n_out)
        h = h.reshape(-1, k, n_out).transpose(0, 1) + self.biases[0]
        if shift is not None:
            h = h + shift
        return self._tail(h)

    def forward_grouped(self, x, shift=None):
        """Network k on its own rows: ``x`` (K, m, in) -> (K, m, out); ``shift`` (K, m,
        hidden_1) as in :meth:`forward_all`."""
        w0 = self.weights[0].permute(1, 0, 2)
        h = torch.baddbmm(self.biases[0], x, w0)
        if shift is not None:
            h = h + shift
        return self._tail(h)

    def first_layer_shifts(self, offsets):
        """``offsets`` (K, J, in) -> (K, J, hidden_1): ``offsets[k, j] @ W0_k``."""
        return torch.einsum("kjd,dkh->kjh", offsets, self.weights[0])

    @property
    def hidden_sizes(self):
        """Widths of the hidden layers."""
        return [w.shape[-1] for w in self.weights[:-1]]

    @property
    def output_bias(self):
        """(K, 1, out): the last layer's bias, the offset of every output."""
        return self.biases[-1]

    def stack_axes(self):
        """``{parameter name: axis that stacks the K networks}`` (``add_populations``
        merges stacks along them): axis 1 for the first layer's weight, else 0."""
        return {name: int(name == "weights.0") for name, _ in self.named_parameters()}

    def forward_single(self, x):
        """For ``n_stack == 1``: ``x`` (..., in) -> (..., out)."""
        lead = x.shape[:-1]
        out = self.forward_all(x.reshape(-1, x.shape[-1]))[0]
        return out.reshape(*lead, out.shape[-1])


def group_rows(populations, n_groups):
    """Positions that lay rows out as a padded ``(K, m, ...)`` block, one slab per population.

    Inference receives rows in any order and mix of populations; grouping them lets
    :meth:`StackedMLP.forward_grouped` run each population's network on its rows in one
    batched call. Returns ``(group, slot, m)``: row ``i`` goes to ``[group[i], slot[i]]``
    of a block with ``m`` slots per population.
    """
    populations = populations.long()
    counts = torch.bincount(populations, minlength=n_groups)
    order = torch.argsort(populations, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(populations)
    slot[order] = (
        torch.arange(len(populations), device=populations.device) - starts[populations[order]]
    )
    m = int(counts.max().item()) if len(populations) else 0
    return populations, slot, m


def scatter_to_groups(x, group, slot, n_groups, m):
    """Place rows ``x`` (n, d) into a zero-padded block (K, m, d) at ``[group, slot]``."""
    block = x.new_zeros((n_groups, m) + tuple(x.shape[1:]))
    block[group, slot] = x
    return block


def upcast(out):
    """float32 for bf16/fp16 autocast outputs: the KL and log-densities sum many terms."""
    return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out


def gaussian_head(out):
    """Split an encoder output ``(..., 2 d)`` into the mean and log-variance of q.

    The variance is floored at VAR_EPS smoothly, ``log(exp(raw) + VAR_EPS)`` written with
    softplus (one fused op and a one-op backward, unlike logaddexp against a constant),
    and capped at ``exp(LOG_VAR_MAX)`` so that it stays finite in float32 on unscaled data.
    """
    mu, raw = upcast(out).chunk(2, dim=-1)
    return mu, (LOG_VAR_EPS + F.softplus(raw - LOG_VAR_EPS)).clamp(max=LOG_VAR_MAX)
