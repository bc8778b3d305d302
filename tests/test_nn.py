"""Stacked multilayer perceptrons and row grouping (``sklearn_cpvae._nn``)."""

import torch

from sklearn_cpvae._nn import StackedMLP, group_rows, scatter_to_groups


def _manual_mlp(x, weights, biases, k, act):
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        wk = w[:, k, :] if i == 0 else w[k]
        h = h @ wk + b[k, 0]
        if i < len(weights) - 1:
            h = act(h)
    return h


def test_stacked_mlp_matches_separate_networks():
    g = torch.Generator().manual_seed(0)
    net = StackedMLP(3, [5, 7, 6, 2], "tanh", g).double()
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    all_out = net.forward_all(x)
    w = [p.detach() for p in net.weights]
    b = [p.detach() for p in net.biases]
    for k in range(3):
        torch.testing.assert_close(all_out[k], _manual_mlp(x, w, b, k, torch.tanh))
    xg = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    grouped = net.forward_grouped(xg)
    for k in range(3):
        torch.testing.assert_close(grouped[k], _manual_mlp(xg[k], w, b, k, torch.tanh))


def test_group_rows_round_trip():
    pops = torch.tensor([2, 0, 2, 1, 2, 0])
    x = torch.arange(12.0).view(6, 2)
    group, slot, m = group_rows(pops, 3)
    assert m == 3
    block = scatter_to_groups(x, group, slot, 3, m)
    torch.testing.assert_close(block[group, slot], x)
    assert block[1, 1:].abs().sum() == 0  # padding


def test_initial_weights_are_the_generators_uniform_draws():
    """Each layer's weights, then its biases, are U(-1/sqrt(in), 1/sqrt(in)) drawn from the
    generator in that order: the values a fixed random_state has always given."""
    net = StackedMLP(3, [5, 7, 2], "relu", torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    for w, b, n_in in zip(net.weights, net.biases, [5, 7]):
        bound = 1.0 / n_in**0.5
        assert torch.equal(w.detach(), (torch.rand(w.shape, generator=g) * 2 - 1) * bound)
        assert torch.equal(b.detach(), (torch.rand(b.shape, generator=g) * 2 - 1) * bound)
    assert net.weights[0].shape == (5, 3, 7) and net.weights[1].shape == (3, 7, 2)
