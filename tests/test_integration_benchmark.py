"""The integration benchmark's code path (``benchmarks/omics/integration.py``) on tiny
synthetic counts: methods, skips of missing peers, the leakage probe, the results file.
scib-metrics takes about 12 s to import, so the test that scores with it is marked slow.
"""

import json
import sys

import numpy as np
import pytest

from benchmarks.omics import integration
from sklearn_cpvae.datasets import make_cross_population

TINY = dict(
    max_rows=None,
    scrna_genes=50,
    synthetic_rows=60,
    cpvae_max_iter=2,
    scvi_max_epochs=2,
    leiden=False,
)


def _tiny_counts(n=60, seed=0):
    d = make_cross_population(
        n,
        3,
        n_features=12,
        population_effect="mean",
        effect_size=2.0,
        likelihood="poisson",
        random_state=seed,
    )
    return integration._dataset(
        "tiny",
        integration.log_normalise(d.data),
        d.populations,
        d.subgroups,
        counts=d.data,
        population="batch",
        biology="sub-group",
    )


def test_missing_peer_is_skipped_and_the_probe_separates_corrected_codes(monkeypatch):
    # A None entry in sys.modules makes "import scvi" raise ImportError.
    monkeypatch.setitem(sys.modules, "scvi", None)
    ds = _tiny_counts()
    methods = ["CPVAE nb", "scVI", "centred PCA", "PCA"]
    res = integration.run_dataset(ds, methods, TINY, seed=0, score=None)
    rows = res["methods"]
    assert "not installed" in rows["scVI"]["skipped"]
    assert rows["CPVAE nb"]["dim"] == 100 and rows["CPVAE nb"]["epochs_run"] == 2
    assert rows["CPVAE nb"]["params"]["likelihood"] == "nb"
    assert len(rows["CPVAE nb"]["private_kl_own"]) == 3
    # A batch shift of 2 sd per feature: PCA codes give the batch away, centring hides it.
    assert rows["PCA"]["metrics"]["batch_probe"] > 0.9
    assert rows["centred PCA"]["metrics"]["batch_probe"] < 0.6
    assert rows["PCA"]["metrics"]["batch_chance"] == pytest.approx(1 / 3)
    assert res["input_probes"]["raw"]["batch_probe"] > 0.9


def test_count_only_method_skips_a_continuous_table():
    ds = _tiny_counts()
    ds["counts"] = None
    ds["values"][0, 0] = np.nan
    res = integration.run_dataset(ds, ["CPVAE nb", "CPVAE gaussian"], TINY, seed=0, score=None)
    assert res["methods"]["CPVAE nb"]["skipped"] == "not count data"
    # NaN in the table: CPVAE masks it instead of failing.
    assert res["methods"]["CPVAE gaussian"]["params"]["missing"] == "mask"


def test_scvi_refuses_negative_continuous_values():
    ds = _tiny_counts()
    ds["counts"] = None
    ds["values"] = ds["values"] - 5.0
    with pytest.raises(integration.Skip, match="non-negative"):
        integration.scvi_codes(ds, 0, TINY)


def test_subsample_keeps_every_batch_in_proportion():
    batch = np.repeat(["a", "b", "c"], [600, 300, 100])
    rows = integration.subsample(batch, 200, seed=0)
    counts = dict(zip(*np.unique(batch[rows], return_counts=True), strict=True))
    assert counts == {"a": 120, "b": 60, "c": 20}
    np.testing.assert_array_equal(integration.subsample(batch, None, 0), np.arange(1000))


def test_aggregate_is_the_scib_blend():
    m = dict(asw_batch=1.0, ilisi=0.0, kbet=0.5, graph_connectivity=0.5)
    m.update(kmeans_nmi=1.0, kmeans_ari=0.0, asw_label=0.5)
    out = integration.aggregate(m)
    assert out["batch_score"] == pytest.approx(0.5) and out["bio_score"] == pytest.approx(0.5)
    assert out["total"] == pytest.approx(0.5)
    assert integration.aggregate({"batch_probe": 0.3}) == {}


def test_run_writes_a_results_file_and_a_report(monkeypatch, tmp_path):
    monkeypatch.setitem(integration.MODES, "tiny", TINY)
    out = tmp_path / "integration_tiny.json"
    integration.run(["synthetic"], "tiny", 0, methods=["PCA", "centred PCA"], out=out, score=None)
    payload = json.loads(out.read_text())
    res = payload["datasets"]["synthetic"]
    assert payload["seed"] == 0 and payload["versions"]["numpy"] == np.__version__
    assert res["shape"] == [60, 200] and sum(res["batch_sizes"].values()) == 60
    assert res["methods"]["PCA"]["fit_seconds"] >= 0
    table = integration.markdown_report(payload)
    assert "| PCA |" in table and "| centred PCA |" in table


def test_against_best_peer_picks_the_highest_peer():
    def row(score):
        return {"metrics": {"batch_score": score}}

    payload = {
        "datasets": {
            "a": {"methods": {"CPVAE nb": row(0.5), "PCA": row(0.2), "Harmony": row(0.7)}},
            "b": {"skipped": "absent"},
        }
    }
    out = integration.against_best_peer(payload)
    assert list(out) == [("a", "CPVAE nb")]
    mine, best, theirs, diff = out[("a", "CPVAE nb")]
    assert best == "Harmony" and diff == pytest.approx(-0.2)


@pytest.mark.slow
def test_scib_scores_rank_a_mixed_embedding_above_a_split_one():
    pytest.importorskip("scib_metrics")
    rng = np.random.default_rng(0)
    label = np.repeat(["x", "y"], 60)
    batch = np.tile(["a", "b"], 60)
    centre = np.where(label == "x", 0.0, 6.0)[:, None]
    mixed = centre + rng.normal(size=(120, 3))
    split = mixed + np.where(batch == "a", 0.0, 20.0)[:, None]
    good = integration.scib_scores(mixed, batch, label, leiden=False, seed=0)
    bad = integration.scib_scores(split, batch, label, leiden=False, seed=0)
    for key in ("asw_batch", "ilisi", "kbet"):
        assert good[key] > bad[key] + 0.3, key
    assert good["kmeans_ari"] > 0.9
