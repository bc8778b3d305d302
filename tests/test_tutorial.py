"""docs/tutorial_anndata.md runs: its Python blocks, in order, in one namespace."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("anndata")
pytest.importorskip("matplotlib")

TUTORIAL = Path(__file__).parents[1] / "docs" / "tutorial_anndata.md"


def test_tutorial_runs_and_finds_the_structure(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    ns = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:
            exec(compile(block, str(TUTORIAL), "exec"), ns)
    assert (tmp_path / "shared_embedding.png").exists()
    adata = ns["adata"]
    assert adata.obsm["X_cpvae_shared"].shape == (300, 2)
    assert adata.layers["as_study_a"].shape == (300, 30)
    # What the text claims of the simulated data.
    assert ns["cell_type_probe"] > 0.8
    assert ns["stimulation_ari"] > 0.5
    top = set(ns["table"].index[:5])
    assert len(top & {f"gene{j}" for j in range(20, 25)}) >= 4, ns["table"].head(8)
    assert np.all(np.isfinite(ns["scores"]))
