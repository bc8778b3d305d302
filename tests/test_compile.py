"""``CPVAE(compile=True)``: the objective compiled by torch.compile, and its failure.

Compiling takes minutes on a loaded 2-core machine, so the fits that really compile are
marked slow; ``benchmarks/perf/compile_speed.py`` measures speed and reproducibility.
"""

import warnings

import numpy as np
import pytest
import torch
from conftest import CONFIGS

import sklearn_cpvae._training as training
from sklearn_cpvae import CPVAE

CFG = {**CONFIGS["distributed"], "max_iter": 2}


def _fit(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CPVAE(**{**CFG, **params}).fit(X, y)


def test_compile_failure_names_the_option(populations_data, monkeypatch):
    """Where torch.compile cannot build its kernels, fit says so and names compile=."""

    def failing_compile(fn):
        def call(*args, **kwargs):
            raise RuntimeError("C++ compile error\nno compiler found")

        return call

    monkeypatch.setattr(training.torch, "compile", failing_compile)
    X, y, _, _ = populations_data
    with pytest.raises(RuntimeError, match="compile=True.*no compiler|compile=False") as info:
        _fit(X, y, compile=True)
    assert "C++ compile error" in str(info.value) and "compile=False" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_compile_is_a_validated_parameter(populations_data):
    X, y, _, _ = populations_data
    with pytest.raises(ValueError, match="compile"):
        CPVAE(**{**CFG, "compile": "yes"}).fit(X, y)


@pytest.mark.slow
def test_compiled_fit_is_reproducible_and_close_to_eager(populations_data):
    X, y, _, _ = populations_data
    eager = _fit(X, y)
    first = _fit(X, y, compile=True)
    second = _fit(X, y, compile=True)
    assert first.loss_curve_ == second.loss_curve_
    for a, b in zip(first.module_.parameters(), second.module_.parameters()):
        assert torch.equal(a, b)
    # Fused kernels sum in another order: close to eager, not equal.
    np.testing.assert_allclose(first.loss_curve_, eager.loss_curve_, rtol=1e-4)


@pytest.mark.slow
def test_missing_compiler_raises_the_named_error(populations_data, monkeypatch):
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("/nonexistent/c++",))
    torch._dynamo.reset()
    X, y, _, _ = populations_data
    try:
        with pytest.raises(RuntimeError, match="compile=True"):
            _fit(X, y, compile=True)
    finally:
        torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_fit_with_the_population_adversary(populations_data):
    """The gradient-reversal function compiles with the rest of the objective."""
    X, y, _, _ = populations_data
    eager = _fit(X, y, shared_adversary=1.0)
    compiled = _fit(X, y, shared_adversary=1.0, compile=True)
    assert [h["adversary"] for h in compiled.history_] == pytest.approx(
        [h["adversary"] for h in eager.history_], rel=1e-4
    )
    np.testing.assert_allclose(compiled.loss_curve_, eager.loss_curve_, rtol=1e-4)
