"""save/load: bit-identical round trips, refusal of bad files, GPU -> CPU, old files, pickle."""

import json
import os
import pickle
import struct
import warnings

import numpy as np
import pytest
import torch
from conftest import CONFIGS
from numpy.testing import assert_allclose, assert_array_equal

import sklearn_cpvae
from sklearn_cpvae import CPVAE, _persistence, load

DATA = os.path.join(os.path.dirname(__file__), "data")
TINY = CONFIGS["persistence"]


def _data(labels=("a", "b"), n=24, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.asarray(labels)[np.arange(n) % len(labels)]
    return X, y


def _fit(X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CPVAE(**{**TINY, **kw}).fit(X, y)


def _outputs(model, X, y):
    return {
        "predict_proba": model.predict_proba(X),
        "predict": model.predict(X),
        "transform": model.transform(X, populations=y),
        "score_samples": model.score_samples(X),
        "inverse_transform": model.inverse_transform(model.transform(X, populations=y), y),
        "sample": model.sample(5, random_state=1)[0],
    }


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    return _fit(X, y, priors=np.array([0.25, 0.75])), X, y


def test_round_trip_is_bit_identical(fitted, tmp_path):
    model, X, y = fitted
    path = tmp_path / "model.cpvae"
    assert model.save(path) is model
    loaded = load(path)
    before, after = _outputs(model, X, y), _outputs(loaded, X, y)
    for name in before:
        assert_array_equal(before[name], after[name], err_msg=name)
    # float32 input goes through the float32 module: also identical.
    assert_array_equal(
        model.transform(X.astype(np.float32), y), loaded.transform(X.astype(np.float32), y)
    )
    for key, value in model.get_params().items():
        assert_array_equal(np.asarray(value), np.asarray(loaded.get_params()[key]), key)
    assert loaded.hidden_layer_sizes == (6,)  # tuples stay tuples
    assert loaded.fit_info_ == model.fit_info_
    assert loaded.history_ == model.history_
    assert loaded.classes_.dtype == model.classes_.dtype


@pytest.mark.parametrize(
    "labels",
    [(3, 7), (True, False), (1.0, 2.0), np.array(["x", "yy"], dtype=object)],
    ids=["int", "bool", "float", "object-str"],
)
def test_label_dtypes_survive(labels, tmp_path):
    X, y = _data(labels)
    model = _fit(X, y, max_iter=1)
    model.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.classes_.dtype == model.classes_.dtype
    assert_array_equal(loaded.classes_, model.classes_)
    assert_array_equal(loaded.predict(X), model.predict(X))


def test_feature_names_and_warm_start_after_load(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = _data()
    df = pd.DataFrame(X, columns=[f"gene{i}" for i in range(X.shape[1])])
    model = _fit(df, y, warm_start=True)
    model.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    assert_array_equal(loaded.get_feature_names_out(), model.get_feature_names_out())
    # Continuing training from the file equals continuing the original (optimiser state).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(df, y)
        loaded.fit(df, y)
    assert loaded.n_iter_ == model.n_iter_ == 6
    assert_array_equal(loaded.transform(df, y), model.transform(df, y))


def test_random_state_instance_is_saved_as_none_with_warning(tmp_path):
    X, y = _data()
    model = _fit(X, y, random_state=np.random.RandomState(0), max_iter=1)
    with pytest.warns(UserWarning, match="random_state is a RandomState"):
        model.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.random_state is None
    assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_unfitted_or_unsavable(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CPVAE().save(tmp_path / "m")
    X, y = _data()
    model = _fit(X, y, max_iter=1)
    model.extra_ = object()
    with pytest.raises(TypeError, match="cannot save extra_"):
        model.save(tmp_path / "m")
    assert not os.listdir(tmp_path)  # nothing half-written


def test_gpu_model_loads_on_cpu(fitted, tmp_path):
    """Simulated: a file recording a CUDA fit and device="cuda" loads and predicts on CPU."""
    model, X, y = fitted
    expected = model.predict_proba(X)
    gpu_like = pickle.loads(pickle.dumps(model)).set_params(device="cuda")
    gpu_like.device_ = "cuda:0"
    gpu_like.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.device_ == "cuda:0"
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    if torch.cuda.is_available():
        assert_allclose(loaded.predict_proba(X), expected, rtol=1e-4, atol=1e-6)
    else:
        with pytest.warns(UserWarning, match="not available on this machine"):
            assert_array_equal(loaded.predict_proba(X), expected)
        assert_array_equal(loaded.set_params(device="cpu").predict_proba(X), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_round_trip(tmp_path):
    X, y = _data()
    model = _fit(X, y, device="cuda")
    model.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    cpu = loaded.set_params(device="cpu")
    assert_allclose(cpu.predict_proba(X), model.predict_proba(X), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------- refused files
@pytest.fixture
def saved(fitted, tmp_path):
    path = tmp_path / "model.cpvae"
    fitted[0].save(path)
    return path


@pytest.mark.parametrize("keep", [0, 5, 8, 100, -1])
def test_truncated_file_is_refused(saved, keep):
    raw = saved.read_bytes()
    saved.write_bytes(raw[:keep] if keep >= 0 else raw[:-1])
    with pytest.raises(ValueError, match="truncated|not a sklearn_cpvae"):
        load(saved)


def test_tampered_weights_are_refused(saved):
    raw = bytearray(saved.read_bytes())
    raw[-3] ^= 0x01  # one bit of the last array's data
    saved.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        load(saved)


def test_tampered_header_is_refused(saved):
    raw = saved.read_bytes()
    marker = b'\\"n_importance_samples\\": 4'
    assert marker in raw
    saved.write_bytes(raw.replace(marker, b'\\"n_importance_samples\\": 5'))
    with pytest.raises(ValueError, match="SHA-256"):
        load(saved)


def _rewrite(path, edit):
    """Re-sign a file after ``edit(meta)``: what a file from another release looks like."""
    meta, arrays = _persistence._read(path)
    edit(meta)
    _persistence._write(path, meta, arrays)


@pytest.mark.parametrize(
    "version, match", [(2, "Upgrade sklearn_cpvae"), (0, "Load it with the release")]
)
def test_incompatible_format_version_is_refused(saved, version, match):
    _rewrite(saved, lambda meta: meta.update(format_version=version))
    with pytest.raises(ValueError, match=f"format version {version}.*{match}"):
        load(saved)


def test_unknown_parameter_is_refused(saved):
    _rewrite(saved, lambda meta: meta["params"].update(on_something="x"))
    with pytest.raises(ValueError, match=r"parameters \['on_something'\]"):
        load(saved)


def test_other_files_are_refused(tmp_path):
    from safetensors.numpy import save_file

    other = tmp_path / "weights.safetensors"
    save_file({"w": np.zeros(3, dtype=np.float32)}, str(other))
    with pytest.raises(ValueError, match="not a sklearn_cpvae model file"):
        load(other)
    text = tmp_path / "text"
    text.write_bytes(b"hello world, this is not a model")
    with pytest.raises(ValueError, match="truncated or is not"):
        load(text)
    header = json.dumps(
        {"__metadata__": {"sklearn_cpvae": json.dumps({"format": "x"}), "sha256": ""}}
    ).encode()
    text.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(ValueError, match="not a sklearn_cpvae CPVAE file"):
        load(text)


def test_load_never_unpickles(saved, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("load() must not unpickle")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(np, "load", boom)
    load(saved)


# ------------------------------------------------------- files of past releases
def test_files_of_past_releases_still_load():
    """Every fixture file under tests/data loads and predicts what it did when written."""
    expected = np.load(os.path.join(DATA, "cpvae_format1_expected.npz"))
    model = load(os.path.join(DATA, "cpvae_format1.safetensors"))
    X, y = expected["X"], expected["y"]
    assert_array_equal(model.classes_, ["case", "control"])
    # Same platform and torch: bit-identical; other BLAS builds may differ in the last bits.
    assert_allclose(model.predict_proba(X), expected["predict_proba"], rtol=1e-5, atol=1e-7)
    assert_allclose(model.transform(X, y), expected["transform"], rtol=1e-5, atol=1e-7)
    assert_allclose(model.score_samples(X), expected["score_samples"], rtol=1e-5)
    codes = model.transform(X, y)
    assert_allclose(
        model.inverse_transform(codes, y), expected["inverse_transform"], rtol=1e-5, atol=1e-7
    )


# ---------------------------------------------------------------- pickle/joblib
def test_pickle_and_joblib_round_trip(fitted, tmp_path):
    import joblib

    model, X, y = fitted
    expected = model.predict_proba(X)
    assert_array_equal(pickle.loads(pickle.dumps(model)).predict_proba(X), expected)
    joblib.dump(model, tmp_path / "m.joblib")
    assert_array_equal(joblib.load(tmp_path / "m.joblib").predict_proba(X), expected)


def test_fit_info_records_what_reproduces_the_fit(fitted):
    import sklearn

    model, X, y = fitted
    info = model.fit_info_
    assert info["sklearn_cpvae_version"] == sklearn_cpvae.__version__
    assert info["torch_version"] == torch.__version__
    assert info["sklearn_version"] == sklearn.__version__
    assert info["numpy_version"] == np.__version__
    assert info["device"] == "cpu" and info["random_state"] == 0
    assert set(info["seeds"]) == {"init", "train", "split", "validation", "importance"}
    assert info["torch_num_threads"] >= 1 and info["python_version"]
    # The record reproduces the fit: same random_state, same weights.
    again = _fit(X, y, priors=np.array([0.25, 0.75]))
    assert again.fit_info_["seeds"] == info["seeds"]
    assert_array_equal(again.transform(X, y), model.transform(X, y))


@pytest.mark.parametrize("name", ["predict", "__dict__", "module_", "fit"])
def test_file_cannot_replace_methods(saved, name):
    _rewrite(saved, lambda meta: meta["attributes"].update({name: 1}))
    with pytest.raises(ValueError, match=f"sets the attribute '{name}'"):
        load(saved)


def test_re_signed_invalid_parameter_is_refused(saved):
    from sklearn.utils._param_validation import InvalidParameterError

    _rewrite(saved, lambda meta: meta["params"].update(n_shared=-1))
    with pytest.raises(InvalidParameterError, match="n_shared"):
        load(saved)


def test_failed_save_keeps_the_previous_file(fitted, saved, monkeypatch):
    before = saved.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(_persistence.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        fitted[0].save(saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]  # no temporary file left behind


@pytest.mark.parametrize(
    "options",
    [
        {"likelihood": "nb", "library_size": True},
        {"likelihood": "poisson", "shared_invariance": 1.0},
        {"missing": "mask"},
        {"no_private_populations": ["b"]},
        {"private_kl_weight": 0.5},
        {"shared_adversary": 1.0},
        {"shared_centering": "population", "missing": "mask"},
        {"mi_alignment": "mean", "mi_samples": 3},
    ],
    ids=[
        "nb-library",
        "poisson-invariance",
        "mask",
        "no-private",
        "private-kl-weight",
        "shared-adversary",
        "shared-centering-mask",
        "mi-alignment",
    ],
)
def test_round_trip_keeps_every_model_option(options, tmp_path):
    """Options that change the networks (masking, library size, private gates) survive."""
    rng = np.random.default_rng(0)
    X = rng.poisson(3, size=(60, 5)).astype(float)
    y = np.repeat(["a", "b"], 30)
    X[y == "a", :2] *= 3
    if options.get("missing") == "mask":
        X[3, 2] = np.nan
    model = CPVAE(**CONFIGS["persistence_options"], **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    model.save(tmp_path / "m.safetensors")
    loaded = load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(
        loaded.transform(X, populations=y), model.transform(X, populations=y)
    )
    # Every network comes back, those that only training reads (the population
    # classifier of shared_adversary) included.
    saved_state, loaded_state = model.module_.state_dict(), loaded.module_.state_dict()
    assert saved_state.keys() == loaded_state.keys()
    for name, value in saved_state.items():
        assert torch.equal(value, loaded_state[name]), name
