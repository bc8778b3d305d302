"""The objective (``sklearn_cpvae._objective``): eq. 1-10 against brute-force versions on
tiny data, the sub-sampled MI term, the balanced layout, the MMD invariance penalty and the
population adversary."""

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import CONFIGS
from torch.distributions import Bernoulli, Normal

from sklearn_cpvae import CPVAE
from sklearn_cpvae._likelihoods import log_likelihood
from sklearn_cpvae._module import CPVAEModule
from sklearn_cpvae._objective import (
    adversary_cross_entropy,
    adversary_penalty,
    batch_terms,
    cpvae_terms,
    draw_off_population,
    kl_std_normal,
    log_likelihood_per_population,
    log_marginal_is,
    log_normal,
    mi_weight_schedule,
    mi_weights,
    mmd_rbf_groups,
    own_kl_warmup,
    reverse_gradient,
)
from sklearn_cpvae.diagnostics import linear_probe

POPS = np.array([0, 0, 1, 1, 1, 2, 2])  # n_k = 2, 3, 2 ; N = 7


def _tiny_terms(seed=0):
    g = torch.Generator().manual_seed(seed)
    n, k = len(POPS), 3
    return (
        torch.randn(n, generator=g, dtype=torch.float64),
        torch.rand(n, generator=g, dtype=torch.float64),
        torch.rand(k, n, generator=g, dtype=torch.float64),
    )


def _brute_force_j(recon, kl_z, kl_all, alpha, objective="paper"):
    """Eq. 10 written as in the paper, with explicit loops over populations and rows;
    ``"elbo_mi"`` also subtracts eq. 3's KL of each row's own private code."""
    n_total = len(POPS)
    sizes = np.bincount(POPS)
    data = sum(recon[i] - kl_z[i] for i in range(n_total)) / n_total
    if objective == "elbo_mi":
        data -= sum(kl_all[POPS[i], i] for i in range(n_total)) / n_total
    mi = 0.0
    for k in range(len(sizes)):
        inner = sum(kl_all[k, i] for i in range(n_total) if POPS[i] != k)
        mi += inner / (n_total - sizes[k])
    return float(data - alpha * mi), float(mi)


def _estimate(recon, kl_z, kl_all, rows, alpha, objective="paper"):
    pops = torch.as_tensor(POPS[rows])
    sizes = torch.as_tensor(np.bincount(POPS), dtype=torch.float64)
    counts = torch.as_tensor(np.bincount(POPS[rows], minlength=3), dtype=torch.float64)
    rows = torch.as_tensor(rows)
    return cpvae_terms(
        recon[rows],
        kl_z[rows],
        pops,
        counts,
        sizes,
        objective=objective,
        mi_weight=alpha,
        kl_t_own=kl_all[pops, rows],
        kl_t_others=kl_all[:, rows],
        others_weight=mi_weights(pops, counts, sizes),
    )


@pytest.mark.parametrize("objective", ["paper", "elbo_mi"])
def test_full_batch_estimate_equals_brute_force(objective):
    recon, kl_z, kl_all = _tiny_terms()
    terms = _estimate(recon, kl_z, kl_all, np.arange(len(POPS)), 2.5, objective)
    expected_j, expected_mi = _brute_force_j(recon, kl_z, kl_all, 2.5, objective)
    assert float(-terms.loss) == pytest.approx(expected_j, rel=1e-12)
    assert float(terms.mi) == pytest.approx(expected_mi, rel=1e-12)
    own = float(terms.kl_private)
    assert (own > 0) if objective == "elbo_mi" else (own == 0.0)


@pytest.mark.parametrize("objective", ["paper", "elbo_mi"])
@pytest.mark.parametrize("m", [1, 2])
def test_balanced_minibatch_estimate_is_unbiased(m, objective):
    """Averaged over every balanced minibatch of M rows per population (Algorithm 1),
    the estimate equals the full-data objective: the 1/N and 1/(N - n_k) are right."""
    recon, kl_z, kl_all = _tiny_terms(1)
    members = [np.flatnonzero(POPS == k) for k in range(3)]
    estimates = []
    for choice in itertools.product(*(itertools.combinations(mem, m) for mem in members)):
        rows = np.concatenate([np.array(c) for c in choice])
        estimates.append(float(-_estimate(recon, kl_z, kl_all, rows, 1.0, objective).loss))
    expected = _brute_force_j(recon, kl_z, kl_all, 1.0, objective)[0]
    assert np.mean(estimates) == pytest.approx(expected)


def test_elbo_estimate_equals_brute_force():
    recon, kl_z, kl_all = _tiny_terms(2)
    kl_own = kl_all[torch.as_tensor(POPS), torch.arange(len(POPS))]
    sizes = torch.as_tensor(np.bincount(POPS), dtype=torch.float64)
    terms = cpvae_terms(
        recon, kl_z, torch.as_tensor(POPS), sizes, sizes, objective="elbo", kl_t_own=kl_own
    )
    expected = sum(recon[i] - kl_z[i] - kl_own[i] for i in range(len(POPS))) / len(POPS)
    assert float(-terms.loss) == pytest.approx(float(expected), rel=1e-12)
    assert float(terms.mi) == 0.0


def test_kl_and_log_densities_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, lv, x = (torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    q = Normal(mu, torch.exp(0.5 * lv))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    kl = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(kl_std_normal(mu, lv), kl)
    torch.testing.assert_close(log_normal(x, mu, lv), q.log_prob(x).sum(-1))
    log_psi = torch.tensor(-0.7, dtype=torch.float64)
    torch.testing.assert_close(
        log_likelihood(x, mu, "gaussian", log_psi),
        Normal(mu, torch.exp(0.5 * log_psi)).log_prob(x).sum(-1),
    )
    xb = torch.rand(5, 4, generator=g, dtype=torch.float64).round()
    torch.testing.assert_close(
        log_likelihood(xb, mu, "bernoulli"), Bernoulli(logits=mu).log_prob(xb).sum(-1)
    )


def test_log_marginal_is_is_log_mean_exp():
    log_w = torch.tensor([[-1.0, -800.0], [-2.0, -801.0], [-3.0, -799.0]], dtype=torch.float64)
    expected = [
        math.log(np.mean(np.exp([-1.0, -2.0, -3.0]))),
        -800.0 + math.log(np.mean(np.exp([0.0, -1.0, 1.0]))),
    ]
    np.testing.assert_allclose(log_marginal_is(log_w).numpy(), expected, rtol=1e-12)


def test_mi_weight_schedule_anneals_from_one():
    assert mi_weight_schedule(0, 10.0, 4) == 1.0
    assert mi_weight_schedule(2, 10.0, 4) == pytest.approx(5.5)
    assert mi_weight_schedule(9, 10.0, 4) == 10.0
    assert mi_weight_schedule(0, 3.0, 0) == 3.0


def _module(k=3, d=5, likelihood="gaussian"):
    g = torch.Generator().manual_seed(0)
    return CPVAEModule(d, k, 2, 3, [6], "tanh", likelihood, g).double()


def test_balanced_layout_matches_general_layout():
    module = _module()
    x = torch.randn(3 * 4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pops = torch.arange(3).repeat_interleave(4)
    sizes = torch.tensor([10.0, 20.0, 30.0], dtype=torch.float64)
    counts = torch.full((3,), 4.0, dtype=torch.float64)
    for objective in ("elbo_mi", "paper", "elbo"):
        a, b = (
            batch_terms(
                module,
                x,
                pops,
                counts,
                sizes,
                objective=objective,
                mi_weight=2.0,
                generator=torch.Generator().manual_seed(5),
                balanced=bal,
            )
            for bal in (True, False)
        )
        for name in ("loss", "recon", "kl_shared", "kl_private", "mi"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name))


def test_mi_gradient_reaches_every_private_encoder_from_other_populations():
    """The MI term makes encoder k learn from rows of populations j != k (eq. 4)."""
    module = _module()
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pops = torch.tensor([0, 0, 1, 1, 2, 2])
    counts = torch.full((3,), 2.0, dtype=torch.float64)
    terms = batch_terms(
        module,
        x,
        pops,
        counts,
        counts,
        objective="paper",
        mi_weight=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    terms.mi.backward()
    grad = module.enc_private.weights[0].grad  # (in, K, out)
    assert torch.all(grad.abs().sum(dim=(0, 2)) > 0)
    assert module.dec_private.weights[0].grad is None  # MI involves encoders only


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_importance_sampled_likelihood_matches_brute_force(likelihood):
    """Eq. 8 written out sample by sample and population by population."""
    module = _module(likelihood=likelihood)
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(4, 5, generator=gen, dtype=torch.float64)
    eps_z = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    eps_t = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    p_mean = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    p_lv = torch.randn(3, 3, generator=gen, dtype=torch.float64) * 0.1
    with torch.no_grad():
        got = log_likelihood_per_population(module, x, eps_z, eps_t, p_mean, p_lv)
        mu_z, lv_z = module.encode_shared(x)
        mu_t, lv_t = module.encode_private_all(x)
        for i in range(4):
            for k in range(3):
                log_w = []
                for s in range(6):
                    z = mu_z[i] + torch.exp(0.5 * lv_z[i]) * eps_z[s]
                    t = mu_t[k, i] + torch.exp(0.5 * lv_t[k, i]) * eps_t[s]
                    out = module.decode_shared(z[None]) + module.decode_private(
                        t[None], torch.tensor([k])
                    )
                    lw = log_likelihood(x[i : i + 1], out, likelihood, module.log_psi)[0]
                    lw = lw + Normal(0.0, 1.0).log_prob(z).sum()
                    lw = lw - Normal(mu_z[i], torch.exp(0.5 * lv_z[i])).log_prob(z).sum()
                    lw = lw + Normal(p_mean[k], torch.exp(0.5 * p_lv[k])).log_prob(t).sum()
                    lw = lw - Normal(mu_t[k, i], torch.exp(0.5 * lv_t[k, i])).log_prob(t).sum()
                    log_w.append(float(lw))
                expected = math.log(np.mean(np.exp(np.array(log_w) - max(log_w)))) + max(log_w)
                assert float(got[i, k]) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("counts", [[3, 3, 3], [2, 5, 1, 4]])
def test_subsampled_mi_is_unbiased(counts):
    """Averaged over many draws, the sub-sampled term equals the exact minibatch term."""
    gen = torch.Generator().manual_seed(0)
    k = len(counts)
    populations = torch.repeat_interleave(torch.arange(k), torch.tensor(counts))
    batch_counts = torch.tensor(counts, dtype=torch.float64)
    pop_sizes = torch.tensor([10.0, 40.0, 7.0, 13.0][:k], dtype=torch.float64)
    kl = torch.rand((k, len(populations)), generator=gen, dtype=torch.float64) * 5
    exact = torch.sum(mi_weights(populations, batch_counts, pop_sizes) * kl)
    # Every draw is independent, so one call with m draws averages m estimates.
    m = 400_000
    rows, weight = draw_off_population(populations, batch_counts, pop_sizes, m, gen)
    assert rows.shape == weight.shape == (k, m)
    # Encoder k never sees its own population.
    assert not torch.any(populations[rows] == torch.arange(k)[:, None])
    estimate = torch.sum(weight * kl.gather(1, rows))
    assert estimate.item() == pytest.approx(exact.item(), rel=5e-3)
    # And a single small draw is an estimate of the same sum, per encoder.
    rows1, w1 = draw_off_population(populations, batch_counts, pop_sizes, 1, gen)
    per_k = mi_weights(populations, batch_counts, pop_sizes).sum(1)
    np.testing.assert_allclose(w1[:, 0].numpy(), per_k.numpy())


def _relu_module(k, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return CPVAEModule(d, k, 2, 3, [8], "relu", "gaussian", g).double()


@pytest.mark.parametrize("objective", ["elbo_mi", "paper", "elbo"])
def test_balanced_layout_matches_general_path(objective):
    """The balanced fast path (views, block diagonal) computes the same loss and grads."""
    k, m, d = 3, 4, 6
    mod = _relu_module(k, d)
    x = torch.randn(k * m, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pops = torch.arange(k).repeat_interleave(m)
    counts = torch.full((k,), float(m), dtype=torch.float64)
    sizes = torch.tensor([20.0, 30.0, 50.0], dtype=torch.float64)
    results = []
    for balanced in (True, False):
        gen = torch.Generator().manual_seed(5)
        terms = batch_terms(
            mod,
            x,
            pops,
            counts,
            sizes,
            objective=objective,
            mi_weight=2.0,
            generator=gen,
            balanced=balanced,
        )
        grads = torch.autograd.grad(terms.loss, list(mod.parameters()), allow_unused=True)
        values = {n: float(v.detach()) for n, v in terms.__dict__.items() if v is not None}
        results.append((values, grads))
    (f1, g1), (f2, g2) = results
    assert f1 == pytest.approx(f2, rel=1e-12)
    for a, b in zip(g1, g2, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b)


def test_subsampled_batch_terms_expectation():
    """batch_terms with mi_samples averages to the exact MI term over the draws."""
    k, m, d = 3, 4, 6
    mod = _relu_module(k, d)
    x = torch.randn(k * m, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pops = torch.arange(k).repeat_interleave(m)
    counts = torch.full((k,), float(m), dtype=torch.float64)
    sizes = torch.tensor([20.0, 30.0, 50.0], dtype=torch.float64)
    common = dict(objective="paper", mi_weight=1.0, balanced=True)
    with torch.no_grad():
        exact = batch_terms(mod, x, pops, counts, sizes, generator=torch.Generator(), **common)
        sub = batch_terms(
            mod,
            x,
            pops,
            counts,
            sizes,
            generator=torch.Generator().manual_seed(2),
            mi_samples=50_000,
            **common,
        )
    assert sub.mi.item() == pytest.approx(exact.mi.item(), rel=1e-2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mmd_rbf_groups_matches_brute_force():
    rng = np.random.default_rng(0)
    codes = torch.as_tensor(rng.normal(size=(12, 3)))
    pops = torch.as_tensor(rng.integers(0, 3, 12))

    def k(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 1.7)

    c = codes.numpy()
    ref = 0.0
    for j in range(3):
        g = c[pops.numpy() == j]
        ref += k(g, g).mean() - 2 * k(g, c).mean() + k(c, c).mean()
    got = mmd_rbf_groups(codes, pops, 3, bandwidth=1.7)
    assert float(got) == pytest.approx(ref, rel=1e-10)


def test_mmd_rbf_groups_multiscale_matches_brute_force():
    # Median bandwidth and a mean of kernels at several multiples of it, against loops.
    rng = np.random.default_rng(1)
    c = rng.normal(size=(9, 2))
    c[4:] += 0.7
    pops = np.array([0, 1, 0, 1, 1, 2, 2, 0, 2])
    scales = (0.25, 1.0, 4.0)
    d2 = np.array([[((a - b) ** 2).sum() for b in c] for a in c])
    h = np.median(d2)
    ref = 0.0
    for j in range(3):
        g = [i for i in range(9) if pops[i] == j]
        for s_ in scales:
            kern = np.exp(-d2 / (h * s_))
            within = sum(kern[a, b] for a in g for b in g) / len(g) ** 2
            cross = sum(kern[a, b] for a in g for b in range(9)) / (9 * len(g))
            total = kern.sum() / 81
            ref += (within - 2 * cross + total) / len(scales)
    got = mmd_rbf_groups(torch.as_tensor(c), torch.as_tensor(pops), 3, scales=scales)
    assert float(got) == pytest.approx(ref, rel=1e-9)
    wide = mmd_rbf_groups(torch.as_tensor(c), torch.as_tensor(pops), 3, scales=(4.0,))
    fixed = mmd_rbf_groups(torch.as_tensor(c), torch.as_tensor(pops), 3, bandwidth=4 * h)
    assert float(wide) == pytest.approx(float(fixed), rel=1e-12)
    with pytest.raises(ValueError, match="scales"):
        mmd_rbf_groups(torch.as_tensor(c), torch.as_tensor(pops), 3, scales=(1.0, 0.0))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_shared_invariance_reduces_study_leakage():
    rng = np.random.default_rng(0)
    n, d = 150, 8
    bio = rng.integers(0, 2, 3 * n)
    y = np.repeat([0, 1, 2], n)
    X = rng.normal(scale=0.5, size=(3 * n, d))
    X[:, :4] += np.where(bio[:, None] == 1, 1.5, -1.5)
    X[:, 4:] += np.array([-2.0, 0.0, 2.0])[y][:, None]  # study effect
    probes = {}
    for lam in (0.0, 20.0):
        m = CPVAE(shared_invariance=lam, max_iter=40, **CONFIGS["counts"]).fit(X, y)
        z = m.set_params(blocks="shared").transform(X)
        probes[lam] = linear_probe(z, y)
        if lam:
            assert linear_probe(z, bio) > 0.9  # the biology survives the penalty
    assert probes[20.0] < probes[0.0]


@pytest.mark.parametrize("objective", ["elbo_mi", "elbo"])
@pytest.mark.parametrize("beta", [1.0, 0.3])
@pytest.mark.parametrize("free", [False, True])
def test_own_kl_options_charge_only_the_own_population_kl(objective, beta, free):
    """``private_kl_weight`` multiplies eq. 3's own-population private KL in the loss and
    ``private_free_nats`` charges each row max(KL_own, floor) instead, and nothing else
    changes; the recorded ``kl_private`` stays the unweighted KL, and rows under the
    floor get no gradient from their own private KL."""
    recon, kl_z, kl_all = _tiny_terms(3)
    pops = torch.as_tensor(POPS)
    rows = torch.arange(len(POPS))
    sizes = torch.as_tensor(np.bincount(POPS), dtype=torch.float64)
    kl_own = kl_all[pops, rows].clone().requires_grad_(True)
    # Between two rows' KL, so that no row sits on the floor's kink.
    floor = float(kl_own.detach().sort().values[2:4].mean()) if free else 0.0
    terms = cpvae_terms(
        recon,
        kl_z,
        pops,
        sizes,
        sizes,
        objective=objective,
        mi_weight=2.0,
        kl_t_own=kl_own,
        kl_t_others=kl_all,
        others_weight=mi_weights(pops, sizes, sizes),
        private_kl_weight=beta,
        private_free_nats=floor,
    )
    n = len(POPS)
    own = [float(kl_all[POPS[i], i]) for i in range(n)]
    charged = sum(max(v, floor) for v in own) / n
    data = sum(float(recon[i] - kl_z[i]) for i in range(n)) / n
    mi = _brute_force_j(recon, kl_z, kl_all, 1.0)[1] if objective == "elbo_mi" else 0.0
    assert float(terms.kl_private) == pytest.approx(sum(own) / n, rel=1e-12)
    assert float(-terms.loss) == pytest.approx(data - beta * charged - 2.0 * mi, rel=1e-12)
    terms.loss.backward()
    expected = [beta / n if v > floor else 0.0 for v in own]
    assert kl_own.grad.tolist() == pytest.approx(expected, rel=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_private_free_nats_buys_private_rate():
    """With free nats the own private rate per row rises towards the floor; at 0 the
    fit is bitwise the default one."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    X = rng.normal(size=(120, 6))
    X[y == 1] += 1.0
    kw = dict(
        n_shared=1,
        n_private=2,
        hidden_layer_sizes=(16,),
        max_iter=40,
        batch_size=16,
        random_state=0,
    )
    base = CPVAE(**kw).fit(X, y)
    same = CPVAE(private_free_nats=0.0, **kw).fit(X, y)
    free = CPVAE(private_free_nats=3.0, **kw).fit(X, y)
    assert np.array_equal(base.score_samples(X), same.score_samples(X))
    rate, free_rate = base.history_[-1]["kl_private"], free.history_[-1]["kl_private"]
    assert free_rate > max(5 * rate, 0.2)


def test_own_kl_warmup_rises_from_zero_to_one():
    assert own_kl_warmup(0, 4) == 0.0
    assert own_kl_warmup(1, 4) == 0.25
    assert own_kl_warmup(4, 4) == 1.0
    assert own_kl_warmup(9.5, 4) == 1.0
    assert own_kl_warmup(0, 0) == 1.0


def test_own_kl_schedule_falls_from_its_start_to_one():
    assert own_kl_warmup(0, 4, start=10.0) == 10.0
    assert own_kl_warmup(2, 4, start=10.0) == 5.5
    assert own_kl_warmup(4, 4, start=10.0) == 1.0
    assert own_kl_warmup(7, 4, start=10.0) == 1.0
    assert own_kl_warmup(3, 0, start=10.0) == 1.0


def _warmup_fit(warmup, **kw):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    X = rng.normal(size=(80, 5))
    X[y == 1, :2] += 1.5
    params = dict(CONFIGS["bad_input"], max_iter=20, tol=0.0, n_iter_no_change=100)
    params.update(kw)
    return CPVAE(private_kl_warmup=warmup, **params).fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_private_kl_warmup_discounts_only_the_own_kl_and_ends_on_the_objective():
    """During the warm-up the minimised loss charges less than the whole own private KL;
    from its end (epoch 10 of 20 at 0.5) the loss is eq. 3 minus alpha MI exactly."""
    model = _warmup_fit(0.5)

    def full(r):
        return -(r["recon"] - r["kl_shared"] - r["kl_private"] - r["mi_weight"] * r["mi"])

    first, *_, last = model.history_
    assert first["kl_private"] > 0
    assert first["loss"] < full(first) - 0.5 * first["kl_private"]
    for r in model.history_[10:]:
        assert r["loss"] == pytest.approx(full(r), rel=1e-5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_shared_first_schedule_charges_more_then_ends_on_the_objective():
    """With private_kl_warmup_start=10 the first epoch charges more than the own private
    KL once; from the schedule's end the loss is eq. 3 minus alpha MI exactly."""
    model = _warmup_fit(0.5, private_kl_warmup_start=10.0)

    def full(r):
        return -(r["recon"] - r["kl_shared"] - r["kl_private"] - r["mi_weight"] * r["mi"])

    first = model.history_[0]
    assert first["kl_private"] > 0
    assert first["loss"] > full(first) + 5 * first["kl_private"]
    for r in model.history_[10:]:
        assert r["loss"] == pytest.approx(full(r), rel=1e-5)


def test_private_kl_warmup_delays_the_stopping_rules():
    """No epoch of the warm-up counts towards n_iter_no_change."""
    plain = _warmup_fit(0.0, tol=1e9, n_iter_no_change=1)
    warm = _warmup_fit(0.5, tol=1e9, n_iter_no_change=1)
    assert plain.n_iter_ == 2
    assert warm.n_iter_ == 11


def test_private_kl_weight_refused_where_there_is_no_own_kl():
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.repeat([0, 1], 10)
    with pytest.raises(ValueError, match="private_kl_weight=0.5 has no effect with objective"):
        CPVAE(objective="paper", private_kl_weight=0.5, **CONFIGS["bad_input"]).fit(X, y)
    with pytest.raises(ValueError, match="private_kl_weight"):
        CPVAE(private_kl_weight=0.0, **CONFIGS["bad_input"]).fit(X, y)
    with pytest.raises(ValueError, match="private_free_nats=2.0 has no effect with objective"):
        CPVAE(objective="paper", private_free_nats=2.0, **CONFIGS["bad_input"]).fit(X, y)
    with pytest.raises(ValueError, match="private_free_nats"):
        CPVAE(private_free_nats=-1.0, **CONFIGS["bad_input"]).fit(X, y)
    with pytest.raises(ValueError, match="private_kl_warmup=0.5 has no effect with objective"):
        CPVAE(objective="paper", private_kl_warmup=0.5, **CONFIGS["bad_input"]).fit(X, y)
    with pytest.raises(ValueError, match="private_kl_warmup"):
        CPVAE(private_kl_warmup=1.0, **CONFIGS["bad_input"]).fit(X, y)
    with pytest.raises(ValueError, match="private_kl_warmup_start=10.0 has no effect with obj"):
        CPVAE(objective="paper", private_kl_warmup_start=10.0, **CONFIGS["bad_input"]).fit(X, y)
    with pytest.raises(ValueError, match="private_kl_warmup_start=10.0 has no effect with pri"):
        CPVAE(private_kl_warmup_start=10.0, **CONFIGS["bad_input"]).fit(X, y)


def _finite_difference(f, x, h=1e-6):
    """Central differences of the scalar ``f`` at every entry of ``x`` (float64)."""
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x).view(-1)
        e[i] = h
        e = e.view_as(x)
        grad.view(-1)[i] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


@pytest.mark.parametrize("weight", [0.5, 3.0])
def test_reversal_gives_the_classifier_the_gradient_and_the_encoder_minus_weight_times_it(
    weight,
):
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(5, 2, generator=g, dtype=torch.float64)
    w0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    pops = torch.tensor([0, 1, 2, 2, 0])
    counts = torch.bincount(pops, minlength=3).to(torch.float64)

    def ce(z, w):
        return adversary_cross_entropy(z @ w, pops, counts)

    z, w = z0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
    ce(reverse_gradient(z, weight), w).backward()
    dz = _finite_difference(lambda v: ce(v, w0), z0)
    dw = _finite_difference(lambda v: ce(z0, v), w0)
    torch.testing.assert_close(w.grad, dw, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(z.grad, -weight * dz, rtol=1e-6, atol=1e-8)


def test_adversary_cross_entropy_is_the_balanced_mean():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -0.5]], dtype=torch.float64)
    pops = torch.tensor([0, 0, 0, 1])
    nll = -torch.log_softmax(logits, 1)[torch.arange(4), pops]
    expected = 0.5 * (nll[:3].mean() + nll[3])
    got = adversary_cross_entropy(logits, pops, torch.tensor([3.0, 1.0], dtype=torch.float64))
    assert float(got) == pytest.approx(float(expected), rel=1e-12)


def test_adversary_penalty_value_and_gradient():
    """The recorded loss is the objective's, while ce is back-propagated (its reversal
    upstream carries the weight to the encoder)."""
    x = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    out = adversary_penalty(2.0 * x + 1.0)
    assert float(out.detach()) == 0.0
    out.backward()
    assert float(x.grad) == pytest.approx(2.0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_adversary_leaves_the_recorded_loss_the_objective():
    X, y = _mean_shift_data(n=30)
    model = CPVAE(**ADV, max_iter=3, shared_adversary=10.0).fit(X, y)
    for h in model.history_:
        parts = -h["recon"] + h["kl_shared"] + h["kl_private"] + h["mi_weight"] * h["mi"]
        assert h["loss"] == pytest.approx(parts, rel=1e-5)


def _mean_shift_data(n=100, seed=0):
    """One shared factor whose mean is +1 in population "a" and -1 in "b": the shared
    code of the likelihood model carries the population unless something charges it."""
    rng = np.random.default_rng(seed)
    y = np.repeat(["a", "b"], n)
    factor = rng.normal(size=(2 * n, 1)) + np.where(y == "a", 1.0, -1.0)[:, None]
    X = rng.normal(scale=0.3, size=(2 * n, 6)) + factor @ (2 * rng.normal(size=(1, 6)))
    return X, y


ADV = dict(
    n_shared=2,
    n_private=1,
    hidden_layer_sizes=(16,),
    batch_size=32,
    n_importance_samples=4,
    device="cpu",
    random_state=0,
)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_shared_adversary_drives_the_classifier_towards_chance():
    """A classifier that barely pushes back (weight 1e-3) learns the population from the
    shared means; at weight 10 the encoder hides it and the cross-entropy stays near log 2."""
    X, y = _mean_shift_data()
    last = {}
    for weight in (1e-3, 10.0):
        model = CPVAE(**ADV, max_iter=40, shared_adversary=weight).fit(X, y)
        last[weight] = np.mean([h["adversary"] for h in model.history_[-5:]])
    assert last[1e-3] < math.log(2) - 0.2
    assert abs(last[10.0] - math.log(2)) < abs(last[1e-3] - math.log(2)) - 0.15


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_shared_adversary_zero_is_the_fit_without_it():
    X, y = _mean_shift_data(n=30)
    plain = CPVAE(**ADV, max_iter=3).fit(X, y)
    zero = CPVAE(**ADV, max_iter=3, shared_adversary=0.0).fit(X, y)
    assert zero.module_.adversary is None and "adversary" not in zero.history_[0]
    assert plain.loss_curve_ == zero.loss_curve_
    for a, b in zip(plain.module_.state_dict().values(), zero.module_.state_dict().values()):
        assert torch.equal(a, b)
    # The classifier is built after every other network, which starts where it does without it.
    on = CPVAE(**ADV, shared_adversary=1.0)._build_module(6, np.ones(2), 0)
    off = CPVAE(**ADV)._build_module(6, np.ones(2), 0)
    for name, value in off.state_dict().items():
        assert torch.equal(value, on.state_dict()[name]), name
    assert sorted(set(on.state_dict()) - set(off.state_dict())) == [
        "adversary.biases.0",
        "adversary.biases.1",
        "adversary.weights.0",
        "adversary.weights.1",
    ]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "params",
    [{"objective": "elbo_mi"}, {"objective": "paper"}, {"objective": "elbo"}, {"mi_samples": 8}],
    ids=["elbo_mi", "paper", "elbo", "mi_samples"],
)
def test_shared_adversary_composes_with_every_objective(params):
    X, y = _mean_shift_data(n=30)
    model = CPVAE(**ADV, max_iter=2, shared_adversary=1.0, **params).fit(X, y)
    assert all(math.isfinite(h["adversary"]) for h in model.history_)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.module_.parameters())
    # The classifier was trained: its weights moved from their initial values.
    seed = model.fit_info_["seeds"]["init"]
    start = model._build_module(6, np.ones(2), seed).adversary
    assert not torch.equal(start.weights[0], model.module_.adversary.weights[0])


def test_shared_adversary_is_validated():
    X, y = _mean_shift_data(n=10)
    with pytest.raises(ValueError, match="shared_adversary"):
        CPVAE(**CONFIGS["bad_input"], shared_adversary=-1.0).fit(X, y)
