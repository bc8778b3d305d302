"""The training loop (``sklearn_cpvae._training``): early stopping, warm start, alpha
annealing, warnings, divergence (non-finite or exploding terms), gradient clipping and
KeyboardInterrupt."""

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from _data import make_offset_populations
from conftest import CONFIGS, SMALL
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from sklearn_cpvae import CPVAE, TrainingDivergedError, _training

# 24 rows, 2 populations, batch_size=8: 2 steps per epoch.
TINY = CONFIGS["divergence"]
STEPS = 2


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 4))
    y = np.repeat(["a", "b"], 12)
    return X, y


def _quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def _weights(est):
    return {k: v.clone() for k, v in est.module_.state_dict().items()}


def _assert_same_weights(a, b):
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _usable(est, X, y):
    check_is_fitted(est)
    assert np.all(np.isfinite(est.predict_proba(X)))
    assert np.all(np.isfinite(est.transform(X, populations=y)))
    assert np.all(np.isfinite(est.score_samples(X)))
    assert set(est.predict(X)) <= set(est.classes_)


def _inject(monkeypatch, from_call, edit):
    """Replace the training loop's minibatch objective from the ``from_call``-th step on."""
    real = _training.batch_terms
    calls = {"n": 0}

    def fake(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        return edit(terms) if calls["n"] > from_call else terms

    monkeypatch.setattr(_training, "batch_terms", fake)
    return calls


def test_absurd_learning_rate_raises_and_leaves_a_usable_estimator():
    X, y = _data()
    est = CPVAE(learning_rate_init=1e4, max_iter=20, **TINY)
    with pytest.raises(TrainingDivergedError, match=r"the '\w+' term .* at epoch \d+") as info:
        _quiet_fit(est, X, y)
    exc = info.value
    assert isinstance(exc, FloatingPointError)
    assert exc.term in _training.TERMS and exc.epoch >= 1
    # History holds only good epochs; the restored weights are one of them, or the
    # initial ones when the first epoch diverged.
    assert est.n_iter_ == exc.epoch - 1 == len(est.history_)
    assert 0 <= exc.restored_epoch <= est.n_iter_
    assert f"epoch {exc.restored_epoch}" in str(exc) or "initial weights" in str(exc)
    _usable(est, X, y)
    assert est._optimizer_state is None  # Adam's moments may hold NaN: dropped
    assert "standardise X" in str(exc) and "learning_rate_init" in str(exc)


def test_nan_restores_the_last_good_epoch_exactly(monkeypatch):
    """A NaN in epoch 3 leaves exactly the weights of a clean 2-epoch fit."""
    X, y = _data()
    clean = _quiet_fit(CPVAE(max_iter=2, **TINY), X, y)
    _inject(monkeypatch, 2 * STEPS, lambda t: dataclasses.replace(t, loss=t.loss * math.nan))
    est = CPVAE(max_iter=10, **TINY)
    with pytest.raises(TrainingDivergedError, match="term .* became nan at epoch 3") as info:
        _quiet_fit(est, X, y)
    assert est.n_iter_ == 2 and len(est.history_) == 2
    # Two epochs of a tiny fit still improve every epoch: the lowest loss is the last.
    assert info.value.restored_epoch == 2 and "epoch 2 (lowest loss)" in str(info.value)
    _assert_same_weights(_weights(est), _weights(clean))
    assert_array_equal(est.predict_proba(X), clean.predict_proba(X))


def test_exploding_term_is_named(monkeypatch):
    X, y = _data()
    _inject(monkeypatch, 3 * STEPS, lambda t: dataclasses.replace(t, kl_shared=t.kl_shared * 1e9))
    est = CPVAE(max_iter=10, **TINY)
    with pytest.raises(TrainingDivergedError, match="'kl_shared' term .* exploded .* epoch 4"):
        _quiet_fit(est, X, y)
    assert est.n_iter_ == 3
    _usable(est, X, y)


def test_divergence_with_early_stopping_restores_best_epoch(monkeypatch):
    X, y = _data()
    _inject(monkeypatch, 4 * 1, lambda t: dataclasses.replace(t, loss=t.loss * math.inf))
    est = CPVAE(
        max_iter=10, early_stopping=True, validation_fraction=0.25, **{**TINY, "batch_size": 4}
    )
    with pytest.raises(TrainingDivergedError):
        _quiet_fit(est, X, y)
    _usable(est, X, y)


def test_warm_start_continues_after_divergence(monkeypatch):
    X, y = _data()
    _inject(monkeypatch, 2 * STEPS, lambda t: dataclasses.replace(t, loss=t.loss * math.nan))
    est = CPVAE(max_iter=3, warm_start=True, **TINY)
    with pytest.raises(TrainingDivergedError):
        _quiet_fit(est, X, y)
    monkeypatch.undo()
    _quiet_fit(est.set_params(learning_rate_init=1e-4), X, y)
    assert est.n_iter_ == 5
    _usable(est, X, y)


def test_explosion_rule():
    ok = dict.fromkeys(_training.TERMS, 1.0)
    _training._check_diverged(ok, 0, scale=2.0)
    _training._check_diverged({**ok, "mi": 0.99 * _training.EXPLODE_FACTOR * 2}, 0, 2.0)
    with pytest.raises(TrainingDivergedError, match="'mi' term .* exploded") as info:
        _training._check_diverged({**ok, "mi": -1.01 * _training.EXPLODE_FACTOR * 2}, 4, 2.0)
    assert (info.value.term, info.value.epoch) == ("mi", 5)
    with pytest.raises(TrainingDivergedError, match="'recon' term .* became -inf"):
        _training._check_diverged({**ok, "recon": -math.inf}, 0, None)
    # A part and the sum both beyond the bound: the error names the part.
    big = 2 * _training.EXPLODE_FACTOR * 2
    with pytest.raises(TrainingDivergedError, match="'kl_private' term .* exploded"):
        _training._check_diverged({**ok, "kl_private": big, "loss": big}, 0, 2.0)


def test_divergence_names_the_adversary_term():
    ok = {**dict.fromkeys(_training.TERMS, 1.0), "adversary": 0.7}
    names = (*_training.TERMS, "adversary")
    _training._check_diverged(ok, 0, 2.0, names=names)
    with pytest.raises(TrainingDivergedError, match="'adversary' term .* became nan") as info:
        _training._check_diverged(
            {**ok, "adversary": math.nan, "loss": math.nan}, 2, 2.0, names=names
        )
    assert (info.value.term, info.value.epoch) == ("adversary", 3)


def test_warm_start_may_change_a_nonzero_adversary_weight(populations_data):
    X, y, _, _ = populations_data
    model = CPVAE(**{**SMALL, "max_iter": 1}, warm_start=True, shared_adversary=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        model.set_params(shared_adversary=10.0).fit(X, y)
        with pytest.raises(ValueError, match="configuration changed.*shared_adversary"):
            model.set_params(shared_adversary=0.0).fit(X, y)
    assert model.n_iter_ == 2 and all("adversary" in h for h in model.history_)


def test_jump_rule():
    ok = dict.fromkeys(_training.TERMS, 1.0)
    bound = _training.JUMP_FACTOR * 2.0
    _training._check_diverged({**ok, "recon": 1.0 - 0.99 * bound}, 0, 2.0, previous=ok)
    with pytest.raises(TrainingDivergedError, match="'recon' term .* jumped from 1 to") as info:
        _training._check_diverged({**ok, "recon": 1.0 - 1.01 * bound}, 6, 2.0, previous=ok)
    assert (info.value.term, info.value.epoch) == ("recon", 7)
    # Without a previous epoch (the first of a fit) only the absolute bound applies.
    _training._check_diverged({**ok, "recon": 1.01 * bound}, 0, 2.0, previous=None)
    # A part and the sum both jumped: the error names the part.
    with pytest.raises(TrainingDivergedError, match="'mi' term .* jumped"):
        _training._check_diverged({**ok, "mi": 2 * bound, "loss": 2 * bound}, 0, 2.0, ok)
    # While alpha is annealed the loss moves by design: only its parts are tested.
    ramp = {**ok, "mi_weight": 1.0}
    _training._check_diverged({**ramp, "mi_weight": 50.0, "loss": 2 * bound}, 0, 2.0, ramp)
    with pytest.raises(TrainingDivergedError, match="'loss' term .* jumped"):
        _training._check_diverged({**ramp, "loss": 2 * bound}, 0, 2.0, ramp)


def _scale_of_clean_fit(monkeypatch, est, X, y):
    seen = []
    real = _training._check_diverged

    def spy(record, epoch, scale, previous=None, names=_training.TERMS):
        seen.append(scale)
        return real(record, epoch, scale, previous, names)

    monkeypatch.setattr(_training, "_check_diverged", spy)
    _quiet_fit(est, X, y)
    monkeypatch.undo()
    return seen[0]


def test_spike_below_the_explosion_bound_restores_the_lowest_loss_epoch(monkeypatch):
    """Epochs 6-7 lose a little (no jump), epoch 8 jumps: epoch <= 5 comes back.

    The added constants leave the gradients, hence the weights, those of a clean fit.
    """
    X, y = _data()
    scale = _scale_of_clean_fit(monkeypatch, CPVAE(max_iter=1, **TINY), X, y)
    real = _training.batch_terms
    calls = {"n": 0}

    def spiky(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        epoch = (calls["n"] - 1) // STEPS + 1
        add = {6: 2 * scale, 7: 2 * scale, 8: 2 * scale + 3 * _training.JUMP_FACTOR * scale}
        c = add.get(epoch, 0.0)
        return dataclasses.replace(terms, mi=terms.mi + c, loss=terms.loss + c)

    monkeypatch.setattr(_training, "batch_terms", spiky)
    est = CPVAE(max_iter=20, **TINY)
    with pytest.raises(TrainingDivergedError, match="'mi' term .* jumped .* epoch 8") as info:
        _quiet_fit(est, X, y)
    monkeypatch.undo()
    exc = info.value
    assert abs(exc.value) < _training.EXPLODE_FACTOR * scale  # below the old bound
    assert est.n_iter_ == 7 and len(est.history_) == 7
    losses = [r["loss"] for r in est.history_]
    assert exc.restored_epoch == 1 + int(np.argmin(losses)) <= 5
    assert f"the weights of epoch {exc.restored_epoch} (lowest loss)" in str(exc)
    clean = _quiet_fit(CPVAE(max_iter=exc.restored_epoch, **TINY), X, y)
    _assert_same_weights(_weights(est), _weights(clean))
    _usable(est, X, y)


def test_unstandardised_data_trains():
    """Counts in the thousands used to overflow exp(log-variance) at the first step."""
    X, y = _data()
    est = _quiet_fit(CPVAE(max_iter=2, **TINY), np.abs(X) * 5000, y)
    _usable(est, np.abs(X) * 5000, y)


def test_max_grad_norm_clips_every_step(monkeypatch):
    X, y = _data()
    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        seen.append(max_norm)
        norm = real(params, max_norm, *args, **kwargs)
        total = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None])
        )
        assert total <= max_norm * (1 + 1e-4)
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    _quiet_fit(CPVAE(max_iter=2, max_grad_norm=0.5, **TINY), X, y)
    assert seen == [0.5] * (2 * STEPS)


# ------------------------------------------------------------------ interruption
def test_keyboard_interrupt_keeps_last_completed_epoch(monkeypatch):
    X, y = _data()
    clean = _quiet_fit(CPVAE(max_iter=2, **TINY), X, y)

    def interrupt(terms):
        raise KeyboardInterrupt

    _inject(monkeypatch, 2 * STEPS + 1, interrupt)  # in the middle of epoch 3
    est = CPVAE(max_iter=10, **TINY)
    with pytest.warns(UserWarning, match="interrupted by the user at epoch 3"):
        assert est.fit(X, y) is est
    assert est.n_iter_ == 2 and len(est.history_) == 2
    _assert_same_weights(_weights(est), _weights(clean))
    assert_array_equal(est.predict(X), clean.predict(X))
    _usable(est, X, y)


def test_keyboard_interrupt_in_first_epoch_leaves_initial_weights(monkeypatch):
    X, y = _data()

    def interrupt(terms):
        raise KeyboardInterrupt

    _inject(monkeypatch, 0, interrupt)
    est = CPVAE(max_iter=10, **TINY)
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, y)
    assert est.n_iter_ == 0 and est.history_ == []
    _usable(est, X, y)


def test_early_stopping_restores_best(populations_data):
    X, y, _, _ = populations_data
    model = CPVAE(
        **{**SMALL, "max_iter": 200}, early_stopping=True, n_iter_no_change=3, tol=1e-2
    ).fit(X, y)
    val = [r["val_loss"] for r in model.history_]
    assert model.n_iter_ < 200 and model.best_loss_ == pytest.approx(min(val))
    assert "val_mi" in model.history_[0]


def test_stopping_compares_two_windows_of_epochs(populations_data):
    # With a tol no window can meet, training stops as soon as there are two windows
    # of n_iter_no_change epochs to compare, as the parameter says.
    X, y, _, _ = populations_data
    model = CPVAE(**{**SMALL, "max_iter": 50}, n_iter_no_change=3, tol=10.0).fit(X, y)
    assert model.n_iter_ == 6


def test_window_rule_keeps_a_noisy_slowly_improving_fit_and_stops_a_flat_one():
    """A loss that falls by 0.02 an epoch under epoch-to-epoch noise of 0.1 (what the
    quality panel's synthetic fits record) is not stopped by the window rule, whereas
    the best-epoch record stops most such fits early; a flat noisy loss is stopped."""
    record_rule = pytest.importorskip("benchmarks.diagnostics.stopping_rule").record_rule
    rng = np.random.default_rng(0)
    epochs = np.arange(200)
    stopped_early = 0
    for _ in range(20):
        improving = (25.0 - 0.02 * epochs + rng.normal(scale=0.1, size=200)).tolist()
        windowed = [_training.plateaued(improving[:e], 1e-4, 10) for e in range(1, 201)]
        assert not any(windowed)
        stopped_early += record_rule(improving, 1e-4, 10) is not None
    assert stopped_early >= 10
    flat = (20.0 + rng.normal(scale=0.1, size=200)).tolist()
    first = next(e for e in range(1, 201) if _training.plateaued(flat[:e], 1e-4, 10))
    assert first <= 60
    # The rule is the comparison of the two window means, computed directly.
    for e in range(20, 201):
        cur, before = np.mean(flat[e - 10 : e]), np.mean(flat[e - 20 : e - 10])
        assert _training.plateaued(flat[:e], 1e-4, 10) == (not cur < before - 1e-4 * abs(before))


def test_warm_start_continues(populations_data):
    X, y, _, _ = populations_data
    model = CPVAE(**{**SMALL, "max_iter": 3}, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        first = [p.detach().clone() for p in model.module_.parameters()]
        model.fit(X, y)
    assert model.n_iter_ == 6 and len(model.history_) == 6
    assert any(not torch.equal(a, b) for a, b in zip(first, model.module_.parameters()))
    with pytest.raises(ValueError, match="warm_start"):
        model.fit(X, np.where(y == "pop0", "a", "b"))


@pytest.mark.parametrize(
    "change",
    [
        {"n_private": 3},
        {"hidden_layer_sizes": (8,)},
        {"activation": "tanh"},
        {"likelihood": "bernoulli"},
        {"missing": "mask"},
        {"shared_invariance": 1.0},
        {"shared_adversary": 1.0},
        {"no_private_populations": ["pop0"]},
        {"standardize": False},
        {"n_shared": 3},
    ],
)
def test_warm_start_refuses_changed_networks(populations_data, change):
    X, y, _, _ = populations_data
    X = np.clip(X, 0, 1) if "likelihood" in change else X
    model = CPVAE(**{**SMALL, "max_iter": 1}, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        before = [p.detach().clone() for p in model.module_.parameters()]
        with pytest.raises(ValueError, match=f"configuration changed.*{next(iter(change))}"):
            model.set_params(**change).fit(X, y)
        assert all(torch.equal(a, b) for a, b in zip(before, model.module_.parameters()))
        # What only the training loop reads may change between warm-started fits.
        model.set_params(**{k: SMALL.get(k, CPVAE().get_params()[k]) for k in change})
        model.set_params(mi_weight=2.0, learning_rate_init=1e-4).fit(X, y)
    assert model.n_iter_ == 2


def test_warm_start_refuses_a_changed_library_size(populations_data):
    X, y, _, _ = populations_data
    counts = np.random.default_rng(0).poisson(3.0, size=X.shape).astype(float)
    model = CPVAE(**{**SMALL, "max_iter": 1}, likelihood="poisson", warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(counts, y)
    with pytest.raises(ValueError, match="configuration changed.*library_size"):
        model.set_params(library_size=False).fit(counts, y)


def test_warm_start_uses_the_new_learning_rate(populations_data):
    """Adam's saved state holds the old step size; the new learning_rate_init wins."""
    X, y, _, _ = populations_data
    model = CPVAE(**{**SMALL, "max_iter": 1}, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        assert model._optimizer_state["param_groups"][0]["lr"] == 1e-3
        model.set_params(learning_rate_init=0.25).fit(X, y)
    assert all(g["lr"] == 0.25 for g in model._optimizer_state["param_groups"])


def test_convergence_and_anneal_warnings(populations_data):
    X, y, _, _ = populations_data
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        CPVAE(**{**SMALL, "max_iter": 2}).fit(X, y)
    with pytest.warns(UserWarning, match="mi_anneal_epochs=5 is longer than max_iter=2"):
        CPVAE(**{**SMALL, "max_iter": 2}, mi_weight=3.0, mi_anneal_epochs=5).fit(X, y)


def test_annealing_is_recorded(populations_data):
    X, y, _, _ = populations_data
    model = CPVAE(**{**SMALL, "max_iter": 4}, mi_weight=5.0, mi_anneal_epochs=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    alphas = [r["mi_weight"] for r in model.history_]
    assert alphas == sorted(alphas) and 1.0 < alphas[0] < alphas[-1] <= 5.0


def test_verbose_prints_each_term(populations_data, capsys):
    X, y, _, _ = populations_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        CPVAE(**{**SMALL, "max_iter": 2}, verbose=2).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    # One line per epoch, then the summary.
    assert len(out) == 3 and all(t in out[0] for t in ("nll=", "kl_shared=", "mi="))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "params", [dict(mi_samples=3), dict(precision="bf16"), dict(mi_samples=2, early_stopping=True)]
)
def test_fit_options_are_deterministic(params):
    X, y = make_offset_populations(n=60)
    a = CPVAE(random_state=0, **CONFIGS["scaling"], **params).fit(X, y)
    b = CPVAE(random_state=0, **CONFIGS["scaling"], **params).fit(X.astype(np.float32), y)
    assert np.isfinite(a.loss_curve_).all()
    # float32 and float64 input give the same float32 training tensor.
    for p, q in zip(a.module_.parameters(), b.module_.parameters(), strict=True):
        assert torch.equal(p, q)


def test_early_stopping_restores_the_best_epoch_exactly():
    """The kept copies of the weights are refilled epoch after epoch; the best epoch's
    copy must survive them: the restored weights are those of a fit that ended there."""
    X, y = _data()
    params = {**TINY, "early_stopping": True, "validation_fraction": 0.25, "tol": 0.0}
    # A large step makes the validation loss go up and down, so the best epoch moves
    # several times and is followed by epochs that refill the other copies.
    params.update(n_iter_no_change=100, learning_rate_init=0.1)
    est = _quiet_fit(CPVAE(**{**params, "max_iter": 12}), X, y)
    val = [r["val_loss"] for r in est.history_]
    best = 1 + int(np.argmin(val))
    assert est.n_iter_ == 12 and est.best_loss_ == min(val) and best < 12
    clean = _quiet_fit(CPVAE(**{**params, "max_iter": best}), X, y)
    _assert_same_weights(_weights(est), _weights(clean))


def test_decoder_weights_are_the_decoders_weight_tensors():
    X = np.random.default_rng(0).random((40, 64))
    y = np.repeat([0, 1], 20)
    for extra in ({}, {"image_shape": (8, 8), "conv_channels": (4,)}):
        model = CPVAE(**{**TINY, "max_iter": 1, "likelihood": "bernoulli", **extra})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        names = {n for n, p in model.module_.named_parameters()}
        chosen = {id(p) for p in _training.decoder_weights(model.module_)}
        picked = {n for n, p in model.module_.named_parameters() if id(p) in chosen}
        assert picked == {n for n in names if n.startswith("dec_") and "bias" not in n}
        assert len(picked) >= 4


def test_decoder_weight_decay_goes_to_the_decoders_only(populations_data):
    X, y, _, _ = populations_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        module = CPVAE(**{**SMALL, "max_iter": 1}).fit(X, y).module_
    plain = _training.make_optimizer(module, 1e-3, torch.device("cpu"))
    assert len(plain.param_groups) == 1 and plain.param_groups[0]["weight_decay"] == 0
    opt = _training.make_optimizer(module, 1e-3, torch.device("cpu"), 0.5)
    rest, decayed = opt.param_groups
    assert decayed["weight_decay"] == 0.5 and rest["weight_decay"] == 0
    assert {id(p) for p in decayed["params"]} == {id(p) for p in _training.decoder_weights(module)}
    assert len(rest["params"]) + len(decayed["params"]) == len(list(module.parameters()))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_decoder_weight_decay_shrinks_the_decoders(populations_data):
    X, y, _, _ = populations_data
    norms = {}
    for wd in (0.0, 1.0):
        model = CPVAE(**{**SMALL, "max_iter": 20}, decoder_weight_decay=wd).fit(X, y)
        dec = _training.decoder_weights(model.module_)
        enc = [p for n, p in model.module_.named_parameters() if n.startswith("enc_shared.")]
        norms[wd] = (sum(float(p.detach().square().sum()) for p in dec), enc[0].detach().clone())
    assert norms[1.0][0] < 0.6 * norms[0.0][0]
    # Zero decay is the plain optimiser: the same fit, bitwise, as the default.
    default = CPVAE(**{**SMALL, "max_iter": 20}).fit(X, y)
    enc0 = [p for n, p in default.module_.named_parameters() if n.startswith("enc_shared.")]
    assert torch.equal(enc0[0], norms[0.0][1])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_refuses_to_switch_decoder_weight_decay(populations_data):
    X, y, _, _ = populations_data
    model = CPVAE(**{**SMALL, "max_iter": 2}, warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="decoder_weight_decay=0.1 cannot switch"):
        model.set_params(decoder_weight_decay=0.1).fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_uses_the_decoder_weight_decay_it_is_given(populations_data, monkeypatch):
    X, y, _, _ = populations_data
    model = CPVAE(**{**SMALL, "max_iter": 2}, warm_start=True, decoder_weight_decay=0.1)
    model.fit(X, y)
    seen = []
    train = _training.train

    def spy(step, module, optimizer, *args, **kwargs):
        seen.append([g["weight_decay"] for g in optimizer.param_groups])
        return train(step, module, optimizer, *args, **kwargs)

    monkeypatch.setattr(_training, "train", spy)
    model.set_params(decoder_weight_decay=0.5, max_iter=4).fit(X, y)
    assert seen == [[0.0, 0.5]]
