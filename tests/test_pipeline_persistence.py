"""set_output survives save/load, and a whole Pipeline holding CPVAE steps round-trips
through save_pipeline/load_pipeline without pickle."""

import os
import pickle
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import CONFIGS
from numpy.testing import assert_array_equal
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import sklearn_cpvae
from sklearn_cpvae import CPVAE, load, load_pipeline, save_pipeline

TINY = CONFIGS["persistence"]


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)) * [1.0, 10.0, 0.1, 3.0]
    y = np.repeat(["a", "b"], 20)
    X[y == "a", 0] += 2.0
    return X, y


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def test_load_restores_set_output(tmp_path):
    X, y = _data()
    df = pd.DataFrame(X, columns=["w", "x", "y", "z"])
    model = _quiet(CPVAE(**TINY).set_output(transform="pandas").fit, df, y)
    model.save(tmp_path / "m.cpvae")
    again = load(tmp_path / "m.cpvae")
    out = again.transform(df, populations=y)
    assert isinstance(out, pd.DataFrame)
    pd.testing.assert_frame_equal(out, model.transform(df, populations=y))
    assert isinstance(again.inverse_transform(out.to_numpy(), populations=y), pd.DataFrame)
    # Without set_output the loaded model returns arrays, as before.
    plain = _quiet(CPVAE(**TINY).fit, X, y)
    plain.save(tmp_path / "p.cpvae")
    assert isinstance(load(tmp_path / "p.cpvae").transform(X, populations=y), np.ndarray)


def test_load_refuses_an_unknown_output_config(tmp_path, monkeypatch):
    X, y = _data()
    model = _quiet(CPVAE(**TINY).fit, X, y)
    model._sklearn_output_config = {"transform": "spreadsheet"}
    model.save(tmp_path / "m.cpvae")
    with pytest.raises(ValueError, match="set_output configuration"):
        load(tmp_path / "m.cpvae")


def _pipeline():
    return make_pipeline(StandardScaler(), CPVAE(**TINY), LogisticRegression())


def test_pipeline_round_trip_gives_identical_predictions(tmp_path, monkeypatch):
    X, y = _data()
    pipe = _quiet(_pipeline().fit, X, y)
    path = tmp_path / "pipe.zip"
    save_pipeline(pipe, path)
    assert pipe.steps[1][1].__class__ is CPVAE  # the saved pipeline is left as it was
    # Loading never unpickles.
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load"))
    again = load_pipeline(path)
    assert [name for name, _ in again.steps] == [name for name, _ in pipe.steps]
    assert isinstance(again.steps[1][1], CPVAE)
    assert_array_equal(again.predict(X), pipe.predict(X))
    assert_array_equal(again.predict_proba(X), pipe.predict_proba(X))
    assert_array_equal(again[:-1].transform(X), pipe[:-1].transform(X))
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["cpvae/1.cpvae", "manifest.json", "pipeline.skops"]


def test_nested_pipelines_and_a_final_cpvae(tmp_path):
    X, y = _data()
    inner = Pipeline([("scale", StandardScaler()), ("cpvae", CPVAE(**TINY))])
    pipe = _quiet(Pipeline([("pre", inner), ("last", CPVAE(**TINY))]).fit, X, y)
    save_pipeline(pipe, tmp_path / "nested.zip")
    again = load_pipeline(tmp_path / "nested.zip")
    assert isinstance(again.steps[0][1].steps[1][1], CPVAE)
    assert_array_equal(again.predict_proba(X), pipe.predict_proba(X))


def test_cpvae_outside_a_pipeline_step_is_refused(tmp_path):
    X, y = _data()
    ct = ColumnTransformer([("cpvae", CPVAE(**TINY), [0, 1, 2, 3])])
    pipe = _quiet(Pipeline([("ct", ct), ("clf", LogisticRegression())]).fit, X, y)
    with pytest.raises(ValueError, match="only as a step of a Pipeline"):
        save_pipeline(pipe, tmp_path / "ct.zip")
    assert not os.path.exists(tmp_path / "ct.zip")
    with pytest.raises(TypeError, match="saves a sklearn.pipeline.Pipeline"):
        save_pipeline(pipe.steps[1][1], tmp_path / "x.zip")


def _double(X):
    return 2 * X


def test_untrusted_step_types_are_refused_unless_listed(tmp_path):
    X, y = _data()
    pipe = _quiet(
        make_pipeline(FunctionTransformer(_double), CPVAE(**TINY), LogisticRegression()).fit,
        X,
        y,
    )
    save_pipeline(pipe, tmp_path / "f.zip")
    with pytest.raises(ValueError, match="does not trust by default.*_double") as info:
        load_pipeline(tmp_path / "f.zip")
    assert "trusted=" in str(info.value)
    name = f"{__name__}._double"
    again = load_pipeline(tmp_path / "f.zip", trusted=[name])
    assert_array_equal(again.predict(X), pipe.predict(X))


def test_not_a_pipeline_file(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a sklearn_cpvae pipeline file"):
        load_pipeline(tmp_path / "junk.zip")


def test_missing_skops_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_skops(name, *args, **kwargs):
        if name.startswith("skops"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_skops)
    with pytest.raises(ImportError, match=r"sklearn-cpvae\[persistence\]"):
        sklearn_cpvae.save_pipeline(_pipeline(), tmp_path / "p.zip")
