"""The quality panel's plumbing: parallel jobs give the records of a serial run."""

import json

import numpy as np
import pytest

panel = pytest.importorskip("benchmarks.quality.panel")


def _without_timings(record):
    out = dict(record, configs={})
    for name, entry in record["configs"].items():
        out["configs"][name] = {k: v for k, v in entry.items() if not k.endswith("_s")}
    return out


def test_parallel_jobs_give_the_serial_records(monkeypatch, tmp_path):
    # Two short configurations keep this fast; the records must not depend on the
    # number of worker processes, since each fit is seeded by its case alone.
    configs = {"short": {"max_iter": 3}, "short_elbo": {"max_iter": 3, "objective": "elbo"}}
    monkeypatch.setattr(panel, "CONFIGS", {**panel.CONFIGS, **configs})
    args = (["syn_lin_K2_none", "two_gaussian"], "quick", [0], list(configs))
    serial, skipped = panel.run_panel(*args, jobs=1)
    parallel, _ = panel.run_panel(*args, jobs=2)
    assert skipped == {}
    assert [r["case"] for r in serial] == ["syn_lin_K2_none", "two_gaussian"]
    for a, b in zip(serial, parallel):
        assert list(a["configs"]) == list(configs)
        assert _without_timings(a) == _without_timings(b)
    # The scale check ran for the case that has one, under every configuration.
    assert set(serial[1]["configs"]["short"]["scale_check_acc"]) == {"x1", *panel.QUICK_SCALES}
    text = panel.table(serial, list(configs)) + "\n" + panel.target_table(serial, list(configs))
    assert "== syn_lin_K2_none" in text and "targets met:" in text
    assert np.isfinite(serial[0]["configs"]["short"]["heldout_loglik"])
    # Identically distributed populations: their sub-groups belong to the shared codes.
    none_rows = [line for line in text.splitlines() if line.startswith("syn_lin_K2_none ")]
    assert any("common sub-groups" in line for line in none_rows)
    assert not any("both spaces" in line or "ARI private" in line for line in none_rows)

    # --retabulate rebuilds the tables (and the case flags) from a file's records.
    path = tmp_path / "panel.json"
    stale = [dict(r, private_variation=True) for r in serial]
    path.write_text(json.dumps({"mode": "quick", "configs": configs, "records": stale}))
    panel.retabulate(path)
    assert json.loads(path.read_text())["table"] == text
