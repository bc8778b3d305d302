"""What ``fit`` prints (``verbose``): the progress bar and summary at 1, one line per epoch
with the terms of the objective at 2, nothing at 0."""

import dataclasses
import math
import re
import warnings

import numpy as np
import pytest
from conftest import CONFIGS

from sklearn_cpvae import CPVAE, VAE, TrainingDivergedError, _training

TINY = CONFIGS["divergence"]


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 4))
    y = np.repeat(["a", "b"], 12)
    return X, y


def _fit(capsys, **params):
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**{**TINY, "max_iter": 3, **params}).fit(X, y)
    captured = capsys.readouterr()
    return model, captured.out, captured.err


def _values(line):
    return {k: float(v) for k, v in re.findall(r"(\w+)=(-?[\d.e+-]+)", line)}


def test_verbose_0_prints_nothing(capsys):
    _, out, err = _fit(capsys, verbose=0)
    assert out == "" and err == ""


def test_verbose_1_shows_a_bar_on_stderr_and_a_summary(capsys):
    model, out, err = _fit(capsys, verbose=1)
    # The bar: epoch i/N, the current loss and the device.
    assert "3/3" in err and "epoch" in err and "device=cpu" in err
    assert f"loss={model.loss_curve_[-1]:.4g}" in err
    lines = out.splitlines()
    assert len(lines) == 1
    best = int(np.argmin(model.loss_curve_)) + 1
    assert re.fullmatch(
        rf"fit: 3 epochs in [\d.]+s on cpu; best epoch {best} \(loss [\d.]+\); "
        r"stopped by max_iter \(all 3 epochs run\)",
        lines[0],
    )


@pytest.mark.parametrize(
    "objective, present, absent",
    [
        ("elbo_mi", ["nll", "kl_shared", "kl_private", "mi", "alpha"], []),
        ("paper", ["nll", "kl_shared", "mi", "alpha"], ["kl_private"]),
        ("elbo", ["nll", "kl_shared", "kl_private"], ["mi", "alpha"]),
    ],
)
def test_verbose_2_prints_only_the_terms_of_the_objective(capsys, objective, present, absent):
    model, out, err = _fit(capsys, verbose=2, objective=objective)
    assert err == ""  # no bar at verbose=2
    lines = out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("epoch 1/3")
    for line, record in zip(lines[:3], model.history_):
        values = _values(line)
        assert all(name in values for name in present)
        assert not any(name in values for name in absent) and "val_loss" not in values
        # Every term is printed with its sign in the loss, so the parts add up to it.
        total = values["nll"] + values["kl_shared"] + values.get("kl_private", 0.0)
        total += values.get("alpha", 0.0) * values.get("mi", 0.0)
        assert total == pytest.approx(values["loss"], rel=2e-3, abs=2e-3)
        assert values["nll"] == pytest.approx(-record["recon"], rel=1e-3)


def test_verbose_2_shows_the_validation_loss_with_early_stopping(capsys):
    model, out, _ = _fit(capsys, verbose=2, early_stopping=True, validation_fraction=0.25)
    lines = out.splitlines()
    assert all("val_loss=" in line for line in lines[:-1])
    assert _values(lines[0])["val_loss"] == pytest.approx(model.history_[0]["val_loss"], 1e-3)
    assert "(validation loss" in lines[-1]


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"tol": 10.0, "n_iter_no_change": 2, "max_iter": 20}, r"stopped by tol \(the loss"),
        (
            {
                "tol": 10.0,
                "n_iter_no_change": 2,
                "max_iter": 20,
                "early_stopping": True,
                "validation_fraction": 0.25,
            },
            r"stopped by early stopping \(the validation loss",
        ),
    ],
)
def test_summary_names_the_stopping_rule(capsys, params, reason):
    model, out, _ = _fit(capsys, verbose=1, **params)
    # No epoch improves the loss by tol=10 times its size: training stops long before max_iter.
    assert model.n_iter_ < 20
    assert re.search(rf"fit: {model.n_iter_} epochs? in .*; {reason}", out)


def test_summary_after_divergence_and_interrupt(capsys, monkeypatch):
    X, y = _data()
    real = _training.batch_terms
    calls = {"n": 0}

    def nan_from_epoch_3(*args, **kwargs):
        calls["n"] += 1
        terms = real(*args, **kwargs)
        return dataclasses.replace(terms, loss=terms.loss * math.nan) if calls["n"] > 4 else terms

    monkeypatch.setattr(_training, "batch_terms", nan_from_epoch_3)
    with pytest.raises(TrainingDivergedError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CPVAE(**{**TINY, "max_iter": 10}, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "fit: 2 epochs" in out
    assert re.search(
        r"stopped by divergence \(the '\w+' term at epoch 3; the weights of epoch 2", out
    )

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_training, "batch_terms", interrupt)
    with pytest.warns(UserWarning, match="interrupted"):
        CPVAE(**{**TINY, "max_iter": 10}, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "fit: 0 epochs" in out and "stopped by interrupt (KeyboardInterrupt)" in out


def test_verbose_2_prints_the_adversary_cross_entropy(capsys):
    model, out, _ = _fit(capsys, verbose=2, shared_adversary=1.0)
    lines = out.splitlines()
    for line, record in zip(lines[:3], model.history_):
        values = _values(line)
        assert values["adversary"] == pytest.approx(record["adversary"], rel=1e-3)
        # The cross-entropy shapes the gradient, not the loss's value.
        total = values["nll"] + values["kl_shared"] + values["kl_private"]
        total += values["alpha"] * values["mi"]
        assert total == pytest.approx(values["loss"], rel=2e-3, abs=2e-3)


def test_vae_baseline_prints_its_own_terms(capsys):
    X, _ = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        VAE(**{**CONFIGS["vae"], "max_iter": 2}, verbose=2).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "nll=" in lines[0] and "kl=" in lines[0] and "mi=" not in lines[0]
