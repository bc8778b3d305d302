"""CUDA paths: training and inference on the GPU, and GPU-fitted models on the CPU."""

import pickle
import warnings

import numpy as np
import pytest
from _data import SMALL
from sklearn.exceptions import ConvergenceWarning

from sklearn_cpvae import CPVAE

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
