"""The benchmark helpers in ``benchmarks/paper``: runs made in pieces are joined correctly
(``table1_merge.py`` for Table 1 seeds, ``table2_merge.py`` for Table 2 variants), and
Table 2's Bernoulli Grassy-MNIST rows are its pixels in [0, 1].
"""

import numpy as np
import pytest
from _data import DATA_DIR

from benchmarks.paper import report, table1_merge, table2_merge


def _scores(ari):
    return {m: ari for m in ("ari", "nmi", "silhouette")}


def _model(shared, private=None):
    out = {
        "shared": _scores(shared),
        "au_shared": 100,
        "grass_r2_shared_only": 0.5,
        "digit_r2_private_only": None,
        "digit_r2_full": 0.1,
    }
    if private is not None:
        out.update(private=_scores(private), au_private=25.0, digit_r2_private_only=0.1)
    return out


def _result(seed, models, schedule=(3.0, 0.5), offset=0.0):
    run = {
        "seed": seed,
        "fit_seconds": {m: 1.0 for m in models},
        "pixels": _model(0.0),
        "pca": _model(0.0),
    }
    for m in models:
        run[m] = _model(0.3, None) if m == "vae" else _model(0.01, 0.2 + offset)
    return {
        "config": {"max_iter": 100},
        "runs": [run],
        "anneal_schedule": list(schedule),
        "wall_seconds": 10.0,
        "hardware": {},
        "device": "cpu",
    }


def test_later_file_replaces_the_same_seed_and_model():
    old = _result(0, ["vae", "no_mi", "alpha1", "anneal"])
    new = _result(0, ["anneal"], schedule=(1.5, 0.5), offset=0.1)
    merged = table1_merge.merge([old, new], ["old.json", "new.json"])
    (run,) = merged["runs"]
    assert run["anneal"]["private"]["ari"] == pytest.approx(0.3)
    assert run["alpha1"]["private"]["ari"] == pytest.approx(0.2)
    assert run["source"]["anneal"] == {
        "file": "new.json",
        "device": "cpu",
        "anneal_schedule": [1.5, 0.5],
    }
    assert run["source"]["vae"]["file"] == "old.json"


def test_seeds_from_several_files_are_summarised_together():
    files = [_result(s, ["vae", "no_mi", "alpha1", "anneal"], offset=0.01 * s) for s in range(3)]
    merged = table1_merge.merge(files, ["a", "b", "c"])
    assert merged["seeds"] == [0, 1, 2]
    assert merged["summary"]["alpha1"]["private"]["ari"]["values"] == pytest.approx(
        [0.2, 0.21, 0.22]
    )


def test_a_missing_model_or_a_config_mismatch_is_an_error():
    with pytest.raises(ValueError, match="no result"):
        table1_merge.merge([_result(0, ["vae", "no_mi"])], ["a"])
    other = _result(1, ["vae", "no_mi", "alpha1", "anneal"])
    other["config"] = {"max_iter": 15}
    with pytest.raises(ValueError, match="different configurations"):
        table1_merge.merge([_result(0, ["vae", "no_mi", "alpha1", "anneal"]), other], ["a", "b"])


def test_a_diverged_model_is_kept_but_left_out_of_the_mean():
    runs = [_result(s, ["vae", "no_mi", "alpha1", "anneal"], offset=0.1 * s) for s in range(3)]
    runs[2]["runs"][0]["diverged"] = {"alpha1": {"term": "recon", "epoch": 98}}
    merged = table1_merge.merge(runs, ["a", "b", "c"])
    alpha1 = merged["summary"]["alpha1"]
    assert alpha1["n_seeds"] == 2
    assert alpha1["private"]["ari"]["values"] == pytest.approx([0.2, 0.3])
    assert merged["summary"]["no_mi"]["n_seeds"] == 3
    assert merged["runs"][2]["diverged"]["alpha1"]["epoch"] == 98
    # ... and counted, with its restored weights' scores, in a separate all-seed mean.
    every = alpha1["incl_diverged"]
    assert every["n_seeds"] == 3
    assert every["private_ari"]["values"] == pytest.approx([0.2, 0.3, 0.4])
    assert "incl_diverged" not in merged["summary"]["no_mi"]


def _variant(acc, diverged=False):
    out = {
        "accuracy_standard": acc,
        "accuracy_aggregate": acc + 0.01,
        "fit_seconds": 1.0,
        "history": [],
    }
    if diverged:
        out["diverged"] = {"term": "recon", "epoch": 36, "restored_epoch": 35}
    return out


def _table2_result(variants, acc=0.5, refs=True, n_train=600, commit="abc", diverged=False):
    run = {"seed": 0} | {v: _variant(acc, diverged) for v in variants}
    if refs:
        run.update(cnn=0.9, logreg=0.8)
    entry = {"n_train": n_train, "n_test": 100, "likelihood": "gaussian", "runs": [run]}
    return {
        "config": {"max_iter": 100},
        "results": {"grassy_mnist": entry},
        "anneal_schedule": [1.5, 0.5],
        "wall_seconds": 5.0,
        "hardware": {},
        "device": "cpu",
        "commit": commit,
    }


def test_a_later_variant_replaces_the_earlier_one_and_keeps_the_rest():
    full = _table2_result(["anneal", "alpha1", "no_mi"], diverged=True)
    rerun = _table2_result(["alpha1"], acc=0.7, refs=False, commit="def")
    merged = table2_merge.merge([full, rerun], ["full.json", "rerun.json"])
    (run,) = merged["results"]["grassy_mnist"]["runs"]
    assert run["alpha1"]["accuracy_standard"] == 0.7 and "diverged" not in run["alpha1"]
    assert run["anneal"]["accuracy_standard"] == 0.5 and run["cnn"] == 0.9
    assert run["source"]["alpha1"]["commit"] == "def"
    assert run["source"]["anneal"] == {
        "file": "full.json",
        "commit": "abc",
        "anneal_schedule": [1.5, 0.5],
    }
    summary = merged["results"]["grassy_mnist"]["summary"]
    assert summary["alpha1_aggregate"]["mean"] == pytest.approx(0.71)
    assert summary["cnn"]["mean"] == pytest.approx(0.9)
    # The anneal fit is still the diverged one from the first file: the report marks it.
    row = report.table2(merged).splitlines()[-1]
    assert "50.0 / 51.0 †" in row and "70.0 / 71.0 |" in row


def test_missing_variant_or_mismatched_rows_is_an_error():
    with pytest.raises(ValueError, match="no result"):
        table2_merge.merge([_table2_result(["anneal", "no_mi"])], ["a"])
    with pytest.raises(ValueError, match="different numbers of rows"):
        table2_merge.merge(
            [
                _table2_result(["anneal", "alpha1", "no_mi"]),
                _table2_result(["alpha1"], n_train=60),
            ],
            ["a", "b"],
        )


@pytest.mark.skipif(
    not (DATA_DIR / "mnist" / "mnist.npz").exists()
    or not (DATA_DIR / "grass_imagenet" / "grass_imagenet.npz").exists(),
    reason="needs shared/data (MNIST and the grass photos)",
)
def test_bernoulli_grassy_rows_are_the_pixels_scaled_into_the_unit_interval():
    from benchmarks.paper import table2_classification as T2

    cfg = dict(T2.QUICK, n_train_per_class=3, n_test_per_class=2)
    raw = T2._load_raw("grassy_mnist", cfg)
    X, y, Xt, yt, shape = T2.load("grassy_mnist_bernoulli", cfg)
    assert raw[0].max() > 1.0  # grass plus a quarter-bright digit exceeds 1
    assert 0.0 <= X.min() and X.max() <= 1.0 and 0.0 <= Xt.min() and Xt.max() <= 1.0
    np.testing.assert_allclose(X * T2.GRASSY_CEILING, raw[0], rtol=1e-6)
    np.testing.assert_array_equal(y, raw[1])
    assert shape == (1, 28, 28)
