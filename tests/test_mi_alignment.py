"""``mi_alignment="mean"``: in eq. 4's MI term, private encoder k reads another
population's row moved from that population's mean to population k's."""

import warnings

import numpy as np
import pytest
import torch
from _data import make_populations
from conftest import CONFIGS

from sklearn_cpvae import CPVAE
from sklearn_cpvae._nn import gaussian_head
from sklearn_cpvae.datasets import make_cross_population

CFG = dict(CONFIGS["small"], max_iter=5, mi_alignment="mean")


@pytest.fixture(scope="module")
def module():
    X, y, _, _ = make_populations(n_per_pop=40, n_populations=3, n_features=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**CFG).fit(X, y)
    pops = torch.as_tensor(np.searchsorted(model.classes_, y))
    return model.module_, torch.as_tensor(X, dtype=torch.float32), pops


def _moved(m, x, pops):
    """Encoder k's input for every row, moved explicitly: (K, n, D)."""
    h = m.encoder_input(x)
    c = m.population_centre
    return (h - c[pops])[None] + c[:, None]


def test_every_encoder_reads_rows_moved_to_its_mean(module):
    m, x, pops = module
    mu, lv = m.encode_private_all(x, populations=pops)
    mu_ref, lv_ref = gaussian_head(m.enc_private.forward_grouped(_moved(m, x, pops)))
    torch.testing.assert_close(mu, mu_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lv, lv_ref, rtol=1e-4, atol=1e-5)
    # Its own rows are read as they are.
    own_mu, _ = m.encode_private(x, pops)
    torch.testing.assert_close(mu[pops, torch.arange(len(x))], own_mu, rtol=1e-4, atol=1e-5)
    # Without populations the encoders read the rows unmoved, as transform does.
    plain, _ = m.encode_private_all(x)
    ref, _ = gaussian_head(m.enc_private.forward_all(m.encoder_input(x)))
    torch.testing.assert_close(plain, ref)


def test_grouped_rows_move_to_their_block_encoder(module):
    """The sub-sampled MI term's layout: block k holds rows of any population."""
    m, x, pops = module
    rows = torch.stack([torch.arange(0, 10), torch.arange(30, 40), torch.arange(100, 110)])
    mu, _ = m.encode_private_grouped(x[rows], populations=pops[rows])
    moved = _moved(m, x, pops)
    ref = torch.stack([moved[k, rows[k]] for k in range(3)])
    mu_ref, _ = gaussian_head(m.enc_private.forward_grouped(ref))
    torch.testing.assert_close(mu, mu_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_objectives_without_the_mi_term_ignore_it():
    X, y, _, _ = make_populations(n_per_pop=30, n_features=6)
    plain = CPVAE(**{**CFG, "mi_alignment": "none"}, objective="elbo").fit(X, y)
    aligned = CPVAE(**CFG, objective="elbo").fit(X, y)
    assert not aligned.module_.mi_alignment
    assert plain.loss_curve_ == aligned.loss_curve_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sub_sampled_mi_term_runs_aligned():
    X, y, _, _ = make_populations(n_per_pop=30, n_features=6)
    model = CPVAE(**CFG, mi_samples=4).fit(X, y)
    assert np.isfinite(model.loss_curve_).all()


def test_a_mean_offset_no_longer_lets_the_private_encoders_gate():
    """Populations that differ by a mean offset and their own private structure, with
    the default networks: each private encoder can tell the other population's rows by
    the offset and send them to the prior, the MI term then charges nothing, and the
    private codes model the shared factors too, leaving the shared space empty. With the
    rows moved to each encoder's mean the shared space is used."""
    d = make_cross_population(n_samples=400, random_state=0)
    kl_shared = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for alignment in ("none", "mean"):
            model = CPVAE(random_state=0, mi_alignment=alignment).fit(d.data, d.populations)
            kl_shared[alignment] = model.history_[-1]["kl_shared"]
    assert kl_shared["none"] < 0.1
    assert kl_shared["mean"] > 1.0
