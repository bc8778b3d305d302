"""Convolutional encoders and decoders (``image_shape``): the stacked grouped convolutions
against one torch convolution network per population, and the estimator around them."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning

from sklearn_cpvae import CPVAE, load
from sklearn_cpvae._conv import StackedConvDecoder, StackedConvEncoder, layer_width
from sklearn_cpvae.baselines import VAE

SHAPE = (8, 4, 3)  # height, width, channels: not square, so a swapped axis shows


def _images(x):
    """Rows in height, width, channel order -> (n, C, H, W)."""
    return x.reshape(len(x), *SHAPE).permute(0, 3, 1, 2)


def _manual_encoder(net, x, k):
    h = _images(x)
    for w, b in zip(net.conv_weights, net.conv_biases):
        h = torch.tanh(F.conv2d(h, w[k], b[k], stride=2, padding=1))
    h = h.reshape(len(x), -1)
    dense = net.dense
    for i, (w, b) in enumerate(zip(dense.weights, dense.biases)):
        h = h @ (w[:, k] if i == 0 else w[k]) + b[k, 0]
        if i < len(dense.weights) - 1:
            h = torch.tanh(h)
    return h


def _manual_decoder(net, t, k):
    h = t
    for i, (w, b) in enumerate(zip(net.dense.weights, net.dense.biases)):
        h = torch.tanh(h @ (w[:, k] if i == 0 else w[k]) + b[k, 0])
    h = h.reshape(len(t), *net._map)
    last = len(net.deconv_weights) - 1
    for i, w in enumerate(net.deconv_weights):
        bias = net.deconv_biases[i][k] if i < last else None
        h = F.conv_transpose2d(h, w[k], bias, stride=2, padding=1)
        if i < last:
            h = torch.tanh(h)
    return h.permute(0, 2, 3, 1).reshape(len(t), -1) + net.out_bias[k, 0]


def test_stacked_conv_encoder_matches_one_network_per_population():
    g = torch.Generator().manual_seed(0)
    net = StackedConvEncoder(3, SHAPE, [4, 5], [6, 2], "tanh", g).double()
    x = torch.randn(7, 96, generator=g, dtype=torch.float64)
    xg = torch.randn(3, 7, 96, generator=g, dtype=torch.float64)
    with torch.no_grad():
        every = net.forward_all(x)
        grouped = net.forward_grouped(xg)
        for k in range(3):
            torch.testing.assert_close(every[k], _manual_encoder(net, x, k))
            torch.testing.assert_close(grouped[k], _manual_encoder(net, xg[k], k))
    assert every.shape == (3, 7, 2)


def test_stacked_conv_decoder_matches_one_network_per_population():
    g = torch.Generator().manual_seed(1)
    net = StackedConvDecoder(3, 2, [6], [5, 4], SHAPE, "tanh", g).double()
    with torch.no_grad():
        net.out_bias.normal_(generator=g)
    t = torch.randn(3, 7, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = net.forward_grouped(t)
        for k in range(3):
            torch.testing.assert_close(out[k], _manual_decoder(net, t[k], k))
        single = StackedConvDecoder(1, 2, [6], [5, 4], SHAPE, "tanh", g).double()
        z = torch.randn(4, 5, 2, generator=g, dtype=torch.float64)
        assert single.forward_single(z).shape == (4, 5, 96)


def test_layer_width_counts_feature_maps():
    assert layer_width([16]) == 16
    # 8 x 4 halves to 4 x 2 (4 channels: 32 values), then 2 x 1 (5 channels: 10 values).
    assert layer_width([16], (SHAPE, [4, 5])) == 32
    assert layer_width([64], (SHAPE, [4, 5])) == 64


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(["a", "b"], n // 2)
    X = rng.random((n, 96)).astype(np.float32)
    # Population b: a bright 2 x 2 patch in the red channel of the top-left corner.
    img = X.reshape(n, *SHAPE)
    img[y == "b", :2, :2, 0] += 2.0
    return X, y


SMALL_CONV = dict(
    n_shared=3,
    n_private=2,
    hidden_layer_sizes=(16,),
    image_shape=SHAPE,
    conv_channels=(4, 8),
    max_iter=40,
    batch_size=16,
    random_state=0,
)


@pytest.fixture(scope="module")
def conv_model():
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return CPVAE(**SMALL_CONV).fit(X, y), X, y


def test_conv_cpvae_fits_classifies_and_reconstructs(conv_model):
    model, X, y = conv_model
    Xt, yt = _data(seed=1)
    assert (model.predict(Xt) == yt).mean() >= 0.95
    codes = model.transform(Xt, populations=yt)
    assert codes.shape == (len(Xt), 5)
    recon = model.inverse_transform(codes, populations=yt)
    assert recon.shape == Xt.shape
    # The decoders put the patch where the rows have it (height, width, channel order).
    patch = recon.reshape(len(Xt), *SHAPE)[:, :2, :2, 0].mean(axis=(1, 2))
    assert patch[yt == "b"].mean() > patch[yt == "a"].mean() + 1.0


def test_conv_cpvae_is_reproducible_and_survives_save_load(conv_model, tmp_path):
    model, X, y = conv_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        again = CPVAE(**SMALL_CONV).fit(X, y)
    for a, b in zip(model.module_.state_dict().values(), again.module_.state_dict().values()):
        assert torch.equal(a, b)
    path = tmp_path / "conv.cpvae"
    model.save(path)
    loaded = load(path)
    assert loaded.image_shape == SHAPE
    np.testing.assert_array_equal(loaded.score_samples(X[:10]), model.score_samples(X[:10]))


def test_conv_add_populations_keeps_the_old_populations(conv_model):
    model, X, y = conv_model
    import copy

    grown = copy.deepcopy(model)
    rng = np.random.default_rng(5)
    new = rng.random((40, 96)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grown.add_populations(new, np.repeat("c", 40), max_iter=2)
    assert list(grown.classes_) == ["a", "b", "c"]
    np.testing.assert_array_equal(
        grown._log_likelihoods(X[:10])[:, :2], model._log_likelihoods(X[:10])
    )


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(image_shape=(8, 8, 3)), "holds 192 values per row, but X has 96 features"),
        (dict(image_shape=(8, 4, 3, 1)), r"\(height, width\) or \(height, width, channels\)"),
        (dict(image_shape=SHAPE, conv_channels=(4, 4, 4)), "multiples of 8"),
        (dict(image_shape=SHAPE, conv_channels=()), "conv_channels must be a non-empty"),
        (dict(image_shape=SHAPE, mi_alignment="mean"), 'mi_alignment="mean" cannot be combined'),
    ],
)
def test_bad_image_options_name_the_option(params, match):
    X, y = _data(40)
    with pytest.raises(ValueError, match=match):
        CPVAE(n_shared=3, n_private=2, max_iter=1, **params).fit(X, y)


def test_warm_start_refuses_other_convolutions(conv_model):
    _, X, y = conv_model
    model = CPVAE(**dict(SMALL_CONV, max_iter=1, warm_start=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    model.set_params(conv_channels=(4, 4))
    with pytest.raises(ValueError, match="conv_channels"):
        model.fit(X, y)


def test_conv_vae_baseline():
    X, _ = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae = VAE(
            n_components=3,
            hidden_layer_sizes=(16,),
            image_shape=SHAPE,
            conv_channels=(4,),
            max_iter=5,
            random_state=0,
        ).fit(X)
    assert vae.transform(X[:4]).shape == (4, 3)
    assert np.isfinite(vae.score_samples(X[:4])).all()
