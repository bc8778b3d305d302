"""CUDA paths: training and inference on the GPU, and GPU-fitted models on the CPU."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _data import make_offset_populations
from conftest import CONFIGS, SMALL
from sklearn.exceptions import ConvergenceWarning

from sklearn_cpvae import CPVAE
from sklearn_cpvae._data import training_tensor

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_model(populations_data):
    X, y, _, _ = populations_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return CPVAE(**{**SMALL, "device": "cuda"}).fit(X, y)


def test_fit_on_gpu_keeps_module_on_cpu(gpu_model):
    assert gpu_model.device_.startswith("cuda")
    assert all(p.device.type == "cpu" for p in gpu_model.module_.parameters())


def test_gpu_and_cpu_inference_agree(gpu_model, populations_data):
    X, y, _, _ = populations_data
    on_gpu = gpu_model.predict_proba(X)
    cpu = pickle.loads(pickle.dumps(gpu_model)).set_params(device="cpu")
    np.testing.assert_allclose(cpu.predict_proba(X), on_gpu, atol=1e-6)
    np.testing.assert_allclose(
        cpu.transform(X, populations=y), gpu_model.transform(X, populations=y), atol=1e-6
    )


def test_auto_device_uses_cuda(populations_data):
    X, y, _, _ = populations_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = CPVAE(**{**SMALL, "device": "auto", "max_iter": 2}).fit(X, y)
    assert model.device_.startswith("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_cuda_fit_and_predict(precision):
    X, y = make_offset_populations(n=300)
    params = {**CONFIGS["scaling"], "device": "cuda"}
    est = CPVAE(random_state=0, precision=precision, mi_samples=4, **params).fit(X, y)
    assert est.device_.startswith("cuda")
    assert np.isfinite(est.loss_curve_).all()
    assert est.predict_proba(X).shape == (300, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cuda_streams_data_that_does_not_fit(monkeypatch):
    """With no room on the GPU the rows stay in pinned host memory and are streamed."""
    import sklearn_cpvae._data as data_mod

    monkeypatch.setattr(data_mod, "_GPU_SHARE", 0.0)
    X, y = make_offset_populations(n=300)
    t = training_tensor(X, torch.device("cuda"))
    assert t.device.type == "cpu" and t.is_pinned()
    est = CPVAE(random_state=0, **{**CONFIGS["scaling"], "device": "cuda"}).fit(X, y)
    assert np.isfinite(est.loss_curve_).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_sparse_counts_missing_and_gate():
    # Not run in development (no GPU there): sparse rows are densified on the host and
    # moved per minibatch; masks, library offsets and the gate live on the device.
    rng = np.random.default_rng(0)
    C = rng.poisson(3.0, size=(200, 10)).astype(float)
    y = np.repeat(["bg", "tg"], 100)
    params = {**CONFIGS["counts"], "device": "cuda"}
    m = CPVAE(likelihood="nb", no_private_populations=["bg"], max_iter=3, **params)
    m.fit(sp.csr_matrix(C), y)
    assert np.isfinite(m.predict_proba(sp.csr_matrix(C))).all()
    Xn = rng.normal(size=(200, 10))
    Xn[rng.random(Xn.shape) < 0.2] = np.nan
    mm = CPVAE(missing="mask", shared_invariance=1.0, max_iter=3, **params).fit(Xn, y)
    assert np.isfinite(mm.transform(Xn, y)).all()
