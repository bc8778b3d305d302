"""Stacked convolutional encoders and decoders for rows that are flattened images.

With ``image_shape`` every encoder reads a row as an image: 4 x 4 convolutions of stride
2 (one per entry of ``conv_channels``, each halving the height and width), then the
dense layers of ``hidden_layer_sizes`` and the Gaussian head. Every decoder mirrors it:
dense layers, then 4 x 4 transposed convolutions of stride 2 back to the image, plus a
bias per pixel (so that, as with the MLP decoders, the start values of the likelihood
set every feature's offset). This is the encoder/decoder family of the convolutional
VAE literature (e.g. the beta-VAE networks), which models local image structure that an
MLP must learn pixel by pixel.

The K private networks run as one computation, as :class:`~sklearn_cpvae._nn.StackedMLP`
does: their channels are stacked and each layer is one grouped convolution
(``groups=K``). Every convolution weight is stored with the networks on axis 0,
``(K, out, in, 4, 4)`` (``(K, in, out, 4, 4)`` for transposed convolutions), so that
the weights of population k are slice k of every parameter of a conv part. A first
layer that reads the same rows for all K networks is one convolution with K times the
output channels, the analogue of StackedMLP's single large GEMM.

Rows are images flattened in height, width, channel order, the layout of the
library's image loaders (:func:`~sklearn_cpvae.datasets.fetch_celeba_subset`).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from sklearn_cpvae._nn import ACTIVATIONS, StackedMLP

KERNEL = 4
STRIDE = 2
PADDING = 1


def _uniform(shape, fan_in, generator):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's default for Conv2d and Linear."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.rand(shape, generator=generator).mul_(2).sub_(1).mul_(bound)


def feature_map_shape(image_shape, n_layers):
    """``(height, width)`` after ``n_layers`` stride-2 layers of an (H, W, C) image."""
    height, width, _ = image_shape
    return height >> n_layers, width >> n_layers


def layer_width(hidden, image=None):
    """The widest hidden activation of one network on one row: a dense layer's width,
    or a feature map's channels x height x width (for sizing inference chunks)."""
    widths = list(hidden)
    if image is not None:
        image_shape, channels = image
        for i, c in enumerate(channels, start=1):
            height, width = feature_map_shape(image_shape, i)
            widths.append(c * height * width)
    return max(widths)


def _to_images(x, image_shape):
    """Rows ``x`` (K, m, H*W*C) -> (m, K*C, H, W), network k's rows in channels k*C.."""
    height, width, channels = image_shape
    k, m = x.shape[0], x.shape[1]
    x = x.reshape(k, m, height, width, channels).permute(1, 0, 4, 2, 3)
    return x.reshape(m, k * channels, height, width)


def _to_rows(h, n_stack, image_shape):
    """(m, K*C, H, W) -> rows (K, m, H*W*C) in height, width, channel order."""
    height, width, channels = image_shape
    m = h.shape[0]
    h = h.reshape(m, n_stack, channels, height, width).permute(1, 0, 3, 4, 2)
    return h.reshape(n_stack, m, height * width * channels)


class _ConvStack(nn.Module):
    """K convolutional networks with a dense StackedMLP part ``self.dense``."""

    def _set_shape(self, n_stack, image_shape, channels, activation):
        self.n_stack = n_stack
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channels = [int(c) for c in channels]
        self.activation = activation
        self._act = ACTIVATIONS[activation]

    def stack_axes(self):
        """``{parameter name: axis that stacks the K networks}`` (``add_populations``
        merges stacks along them): axis 0 for every convolution parameter."""
        axes = {name: 0 for name, _ in self.named_parameters()}
        axes.update({f"dense.{n}": axis for n, axis in self.dense.stack_axes().items()})
        return axes


class StackedConvEncoder(_ConvStack):
    """``n_stack`` convolutional encoders of one shape, evaluated together.

    Parameters
    ----------
    n_stack : int
        Number of networks K.
    image_shape : tuple of int
        ``(height, width, channels)`` of the images the rows hold.
    channels : sequence of int
        Output channels of each stride-2 convolution.
    dense_sizes : sequence of int
        ``[hidden_1, ..., n_out]``: the dense layers after the flattened feature maps.
    activation : str
        Key of :data:`~sklearn_cpvae._nn.ACTIVATIONS`, after every layer but the last.
    generator : torch.Generator
        Source of the initial weights.
    """

    def __init__(self, n_stack, image_shape, channels, dense_sizes, activation, generator):
        super().__init__()
        self._set_shape(n_stack, image_shape, channels, activation)
        self.conv_weights = nn.ParameterList()
        self.conv_biases = nn.ParameterList()
        c_in = self.image_shape[2]
        for c_out in self.channels:
            fan_in = c_in * KERNEL * KERNEL
            self.conv_weights.append(
                nn.Parameter(_uniform((n_stack, c_out, c_in, KERNEL, KERNEL), fan_in, generator))
            )
            self.conv_biases.append(nn.Parameter(_uniform((n_stack, c_out), fan_in, generator)))
            c_in = c_out
        height, width = feature_map_shape(self.image_shape, len(self.channels))
        self.dense = StackedMLP(
            n_stack, [c_in * height * width, *dense_sizes], activation, generator
        )

    @property
    def hidden_sizes(self):
        return self.dense.hidden_sizes

    def _conv(self, h, i, groups):
        w = self.conv_weights[i]
        k, c_out = w.shape[0], w.shape[1]
        w = w.reshape(k * c_out, *w.shape[2:])
        return F.conv2d(
            h, w, self.conv_biases[i].reshape(-1), stride=STRIDE, padding=PADDING, groups=groups
        )

    def _tail(self, h, start):
        """Convolutions ``start``.. on per-network channels, then the dense layers:
        (m, K*c, h, w) -> (K, m, n_out)."""
        for i in range(start, len(self.channels)):
            h = self._conv(self._act(h) if i > 0 else h, i, self.n_stack)
        h = self._act(h)
        m = h.shape[0]
        h = h.reshape(m, self.n_stack, -1).transpose(0, 1)
        return self.dense.forward_grouped(h)

    def forward_all(self, x, shift=None):
        """Every network on every row: ``x`` (n, H*W*C) -> (K, n, out)."""
        if shift is not None:
            raise ValueError("convolutional encoders take no first-layer shifts (mi_alignment)")
        h = _to_images(x[None], self.image_shape)
        return self._tail(self._conv(h, 0, 1), 1)

    def forward_grouped(self, x, shift=None):
        """Network k on its own rows: ``x`` (K, m, H*W*C) -> (K, m, out)."""
        if shift is not None:
            raise ValueError("convolutional encoders take no first-layer shifts (mi_alignment)")
        return self._tail(_to_images(x, self.image_shape), 0)

    def forward_single(self, x):
        """For ``n_stack == 1``: ``x`` (..., H*W*C) -> (..., out)."""
        lead = x.shape[:-1]
        out = self.forward_all(x.reshape(-1, x.shape[-1]))[0]
        return out.reshape(*lead, out.shape[-1])


class StackedConvDecoder(_ConvStack):
    """``n_stack`` convolutional decoders of one shape, evaluated together: dense layers
    ``[n_in, *hidden]`` then to the smallest feature map, transposed convolutions
    through ``channels`` (reversed encoder channels) to the image, and a bias per pixel.

    Parameters are those of :class:`StackedConvEncoder`, with ``n_in`` the code size and
    ``hidden`` the decoder's dense hidden layers."""

    def __init__(self, n_stack, n_in, hidden, channels, image_shape, activation, generator):
        super().__init__()
        self._set_shape(n_stack, image_shape, channels, activation)
        height, width = feature_map_shape(self.image_shape, len(self.channels))
        self._map = (self.channels[0], height, width)
        self.dense = StackedMLP(
            n_stack, [n_in, *hidden, self.channels[0] * height * width], activation, generator
        )
        self.deconv_weights = nn.ParameterList()
        self.deconv_biases = nn.ParameterList()
        outs = [*self.channels[1:], self.image_shape[2]]
        for i, (c_in, c_out) in enumerate(zip(self.channels, outs)):
            # torch's ConvTranspose2d reads its fan-in off the output channels.
            fan_in = c_out * KERNEL * KERNEL
            self.deconv_weights.append(
                nn.Parameter(_uniform((n_stack, c_in, c_out, KERNEL, KERNEL), fan_in, generator))
            )
            if i < len(outs) - 1:
                self.deconv_biases.append(
                    nn.Parameter(_uniform((n_stack, c_out), fan_in, generator))
                )
        n_features = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        # A bias per pixel in place of the last layer's per-channel one.
        self.out_bias = nn.Parameter(torch.zeros(n_stack, 1, n_features))

    @property
    def output_bias(self):
        """(K, 1, n_features): the offset of every output feature."""
        return self.out_bias

    def forward_grouped(self, t):
        """Network k on its own codes: ``t`` (K, m, n_in) -> (K, m, H*W*C)."""
        k, m = t.shape[0], t.shape[1]
        h = self._act(self.dense.forward_grouped(t))
        h = (
            h.reshape(k, m, *self._map)
            .transpose(0, 1)
            .reshape(m, k * self._map[0], *self._map[1:])
        )
        last = len(self.deconv_weights) - 1
        for i, w in enumerate(self.deconv_weights):
            w = w.reshape(k * w.shape[1], *w.shape[2:])
            bias = self.deconv_biases[i].reshape(-1) if i < last else None
            h = F.conv_transpose2d(h, w, bias, stride=STRIDE, padding=PADDING, groups=k)
            if i < last:
                h = self._act(h)
        return _to_rows(h, k, self.image_shape) + self.out_bias

    def forward_single(self, z):
        """For ``n_stack == 1``: ``z`` (..., n_in) -> (..., H*W*C)."""
        lead = z.shape[:-1]
        out = self.forward_grouped(z.reshape(1, -1, z.shape[-1]))[0]
        return out.reshape(*lead, out.shape[-1])


def encoder(n_stack, n_in, hidden, n_out, activation, generator, image=None):
    """K encoders ``n_in -> hidden -> n_out``: MLPs, or convolutional networks when
    ``image`` is ``(image_shape, channels)``."""
    if image is None:
        return StackedMLP(n_stack, [n_in, *hidden, n_out], activation, generator)
    image_shape, channels = image
    return StackedConvEncoder(
        n_stack, image_shape, channels, [*hidden, n_out], activation, generator
    )


def decoder(n_stack, n_in, hidden, n_out, activation, generator, image=None):
    """K decoders ``n_in -> hidden -> n_out`` (``hidden`` in decoder order), mirroring
    :func:`encoder`: the transposed convolutions run the channels in reverse."""
    if image is None:
        return StackedMLP(n_stack, [n_in, *hidden, n_out], activation, generator)
    image_shape, channels = image
    return StackedConvDecoder(
        n_stack, n_in, hidden, list(channels)[::-1], image_shape, activation, generator
    )
