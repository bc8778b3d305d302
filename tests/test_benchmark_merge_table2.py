"""``benchmarks/paper/table2_merge.py``: Table 2 runs made in pieces are joined correctly."""

import pytest

from benchmarks.paper import report, table2_merge


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


def _result(variants, acc=0.5, refs=True, n_train=600, commit="abc", diverged=False):
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
    full = _result(["anneal", "alpha1", "no_mi"], diverged=True)
    rerun = _result(["alpha1"], acc=0.7, refs=False, commit="def")
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
        table2_merge.merge([_result(["anneal", "no_mi"])], ["a"])
    with pytest.raises(ValueError, match="different numbers of rows"):
        table2_merge.merge(
            [_result(["anneal", "alpha1", "no_mi"]), _result(["alpha1"], n_train=60)], ["a", "b"]
        )
