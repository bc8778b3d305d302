"""Data-parallel training (``distributed``): 2 CPU processes with the gloo backend against
one process, in the environment ``torchrun`` sets.

The processes are forked from the test process, so they start with torch and the package
already imported (a fresh interpreter per process costs more than the fits themselves).
"""

import multiprocessing
import os
import socket
import warnings

import numpy as np
import pytest
import torch
from _data import make_populations
from conftest import CONFIGS

from sklearn_cpvae import CPVAE

CFG = CONFIGS["distributed"]


def _data():
    X, y, _, _ = make_populations(n_per_pop=60, n_features=8)
    return X, y


def _weights(model):
    return {k: v.numpy().copy() for k, v in model.module_.state_dict().items()}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, queue, options=None):
    """One process of a torchrun launch: the environment is all it is given."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    out = {"rank": rank}
    try:
        X, y = _data()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # max_iter is small on purpose
            model = CPVAE(**CFG, **(options or {})).fit(X, y)
        out["weights"] = _weights(model)
        out["loss"] = list(model.loss_curve_)
        out["proba"] = model.predict_proba(X[:20])
        errors = []
        bad = [
            (dict(mi_samples=4), X, y),
            (dict(shared_invariance=1.0), X, y),
            (dict(shared_adversary=1.0), X, y),
            ({}, X[: len(X) - rank], y[: len(X) - rank]),  # rank 1 drops a row
        ]
        for params, Xb, yb in bad:
            try:
                CPVAE(**{**CFG, **params}).fit(Xb, yb)
            except ValueError as exc:
                errors.append(str(exc))
        out["errors"] = errors
        out["world"] = torch.distributed.get_world_size()
        torch.distributed.destroy_process_group()
    except Exception as exc:  # reported to the test, which fails with it
        out["failure"] = repr(exc)
    queue.put(out)


def _run_distributed(world, options=None):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_worker, args=(r, world, port, queue, options)) for r in range(world)
    ]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return sorted(results, key=lambda r: r["rank"])


@pytest.fixture(scope="module")
def one_and_two():
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = CPVAE(**CFG).fit(X, y)
        other_seed = CPVAE(**{**CFG, "random_state": 1}).fit(X, y)
    return single, other_seed, _run_distributed(2), X


def test_two_processes_match_one(one_and_two):
    """Two gloo processes give every process the same model, that of a one-process fit.

    Both fits use the same global minibatches and noise; they differ only in the order
    of float32 sums (each process sums its half of the rows, then the halves are added).
    One such rounding is ~1e-7 relative; 12 Adam steps leave the weights within 3e-8 of
    each other here, so a tolerance of 1e-5 leaves room for other BLAS kernels, yet it is
    five orders of magnitude below what another seed changes (> 0.1).
    """
    single, other_seed, ranks, X = one_and_two
    assert [r.get("failure") for r in ranks] == [None, None]
    assert [r["world"] for r in ranks] == [2, 2]
    # Every process holds the same fitted model, bit for bit.
    for name, value in ranks[0]["weights"].items():
        np.testing.assert_array_equal(ranks[1]["weights"][name], value, err_msg=name)
    np.testing.assert_array_equal(ranks[1]["proba"], ranks[0]["proba"])
    expected, far = _weights(single), _weights(other_seed)
    for name, value in ranks[0]["weights"].items():
        np.testing.assert_allclose(value, expected[name], rtol=0, atol=1e-5, err_msg=name)
    assert max(np.abs(far[n] - expected[n]).max() for n in expected) > 0.1
    np.testing.assert_allclose(ranks[0]["loss"], single.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(ranks[0]["proba"], single.predict_proba(X[:20]), atol=1e-5)


def test_population_options_shard_like_one_process():
    """The population centres come from the whole X on every process, and the centred
    shared encoder and the aligned MI term read each row's own population; the private
    KL's warm-up reaches every process's step: two processes fit what one does, up to the
    order of float32 sums."""
    X, y = _data()
    options = dict(shared_centering="population", mi_alignment="mean", private_kl_warmup=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = CPVAE(**CFG, **options).fit(X, y)
    ranks = _run_distributed(2, options)
    assert [r.get("failure") for r in ranks] == [None, None]
    expected = _weights(single)
    assert "population_centre" in expected
    for name, value in ranks[0]["weights"].items():
        np.testing.assert_array_equal(ranks[1]["weights"][name], value, err_msg=name)
        np.testing.assert_allclose(value, expected[name], rtol=0, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(ranks[0]["loss"], single.loss_curve_, rtol=1e-5)


def test_distributed_refusals_name_the_option(one_and_two):
    """What cannot be sharded exactly, or different data per process, is an error."""
    errors = one_and_two[2][0]["errors"]
    assert len(errors) == 4
    assert "mi_samples=4" in errors[0] and "distributed" in errors[0]
    assert "shared_invariance" in errors[1]
    assert "shared_adversary=1.0" in errors[2] and "distributed=False" in errors[2]
    assert "same X" in errors[3]
    # Every process raises, so none waits for the others forever.
    assert one_and_two[2][1]["errors"] == errors


def test_distributed_true_needs_a_process_group(populations_data):
    X, y, _, _ = populations_data
    for name in ("WORLD_SIZE", "RANK"):
        assert name not in os.environ
    with pytest.raises(ValueError, match="distributed=True.*torchrun"):
        CPVAE(**{**CFG, "distributed": True}).fit(X, y)
    with pytest.raises(ValueError, match="distributed"):
        CPVAE(**{**CFG, "distributed": "yes"}).fit(X, y)


def test_distributed_and_compile_survive_save_and_load(tmp_path, populations_data):
    from sklearn_cpvae import load

    X, y, _, _ = populations_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**{**CFG, "max_iter": 1, "distributed": False}).fit(X, y)
    model.set_params(compile=True)
    model.save(tmp_path / "m.cpvae")
    loaded = load(tmp_path / "m.cpvae")
    assert loaded.get_params()["distributed"] is False
    assert loaded.get_params()["compile"] is True
    np.testing.assert_array_equal(loaded.predict_proba(X[:5]), model.predict_proba(X[:5]))
