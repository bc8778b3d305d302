"""AnnData wherever X goes, and the ``sklearn_cpvae.anndata`` helpers."""

import importlib
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from _data import make_populations
from conftest import CONFIGS

from sklearn_cpvae import CPVAE

ad = pytest.importorskip("anndata")
pd = pytest.importorskip("pandas")

FAST = dict(CONFIGS["persistence"], max_iter=2)


def _adata(sparse=False):
    X, y, sub, _ = make_populations(n_per_pop=30, n_features=6)
    counts = np.random.default_rng(0).poisson(3.0, size=X.shape).astype(np.float32)
    adata = ad.AnnData(
        sp.csr_matrix(X.astype(np.float32)) if sparse else X.astype(np.float32),
        obs=pd.DataFrame(
            {"batch": y, "cell_type": sub.astype(str)},
            index=[f"cell{i}" for i in range(len(y))],
        ),
        var=pd.DataFrame(index=[f"gene{j}" for j in range(X.shape[1])]),
    )
    adata.layers["counts"] = counts
    return adata


def _fit(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(*args, **kwargs)


def test_fit_reads_obs_column_and_matches_array_fit():
    adata = _adata()
    model = _fit(CPVAE(population_column="batch", **FAST), adata)
    ref = _fit(CPVAE(**FAST), adata.X, np.asarray(adata.obs["batch"]))
    np.testing.assert_array_equal(model.classes_, ["pop0", "pop1"])
    np.testing.assert_array_equal(model.feature_names_in_, adata.var_names)
    np.testing.assert_array_equal(
        model.transform(adata), ref.transform(adata.X, adata.obs["batch"])
    )
    np.testing.assert_array_equal(model.predict_proba(adata), ref.predict_proba(adata.X))
    assert model.score(adata) == ref.score(adata.X, adata.obs["batch"])


def test_layer_picks_raw_counts_over_X():
    adata = _adata()
    model = _fit(
        CPVAE(population_column="batch", layer="counts", likelihood="poisson", **FAST), adata
    )
    ref = _fit(CPVAE(likelihood="poisson", **FAST), adata.layers["counts"], adata.obs["batch"])
    np.testing.assert_array_equal(
        model.score_samples(adata), ref.score_samples(adata.layers["counts"])
    )
    with pytest.raises(ValueError, match="layer='spliced'.*layers"):
        CPVAE(population_column="batch", layer="spliced", **FAST).fit(adata)
    with pytest.raises(ValueError, match="layer='counts'.*not an AnnData"):
        model.transform(adata.layers["counts"])


def test_sparse_X_stays_sparse(monkeypatch):
    adata = _adata(sparse=True)
    seen = []
    import sklearn_cpvae._training as training

    original = training.rows_source
    monkeypatch.setattr(
        training,
        "rows_source",
        lambda X, *a, **k: seen.append(sp.issparse(X)) or original(X, *a, **k),
    )
    model = _fit(CPVAE(population_column="batch", **FAST), adata)
    assert seen and all(seen)
    dense = _fit(CPVAE(population_column="batch", **FAST), _adata())
    np.testing.assert_allclose(
        model.transform(adata), dense.transform(_adata()), rtol=1e-5, atol=1e-6
    )


def test_pandas_output_keeps_obs_names_and_dataframe_index():
    adata = _adata()
    model = _fit(CPVAE(population_column="batch", **FAST), adata).set_output(transform="pandas")
    codes = model.transform(adata)
    assert list(codes.index) == list(adata.obs_names)
    assert list(codes.columns) == list(model.get_feature_names_out())
    df = adata.to_df()
    df["batch"] = adata.obs["batch"]
    df.index = [f"row{i}" for i in range(len(df))]
    from_df = model.transform(df)
    assert list(from_df.index) == list(df.index)
    rec = model.inverse_transform(from_df, populations=df["batch"])
    assert list(rec.index) == list(df.index) and list(rec.columns) == list(adata.var_names)


def test_var_names_must_match_the_fit():
    adata = _adata()
    model = _fit(CPVAE(population_column="batch", **FAST), adata)
    with pytest.raises(ValueError, match="var_names differ"):
        model.transform(adata[:, ::-1])
    with pytest.raises(ValueError, match="not a column of the AnnData's .obs"):
        CPVAE(population_column="donor", **FAST).fit(adata)


def test_helpers_write_obsm_and_layers():
    from sklearn_cpvae.anndata import write_codes, write_expression

    adata = _adata()
    model = _fit(CPVAE(population_column="batch", **FAST), adata)
    write_codes(model, adata)
    np.testing.assert_array_equal(
        adata.obsm["X_cpvae_shared"], model.get_latent_representation(adata)
    )
    both = model.transform(adata)
    np.testing.assert_array_equal(adata.obsm["X_cpvae_private"], both[:, model.n_shared :])
    write_expression(model, adata)
    np.testing.assert_array_equal(
        adata.layers["cpvae_expression"], model.inverse_transform(both, adata.obs["batch"])
    )
    write_expression(model, adata, population="pop1", layer="as_pop1", random_state=0)
    np.testing.assert_array_equal(
        adata.layers["as_pop1"],
        model.get_normalized_expression(adata, "pop1", random_state=0),
    )
    with pytest.raises(TypeError, match="AnnData"):
        write_codes(model, adata.X)


def test_missing_anndata_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "anndata", None)
    monkeypatch.delitem(sys.modules, "sklearn_cpvae.anndata", raising=False)
    with pytest.raises(ImportError, match=r"sklearn-cpvae\[anndata\]"):
        importlib.import_module("sklearn_cpvae.anndata")


def test_layer_survives_save_and_load(tmp_path):
    from sklearn_cpvae import load

    adata = _adata()
    model = _fit(
        CPVAE(population_column="batch", layer="counts", likelihood="poisson", **FAST), adata
    )
    model.save(tmp_path / "m.safetensors")
    loaded = load(tmp_path / "m.safetensors")
    assert loaded.layer == "counts"
    np.testing.assert_array_equal(loaded.transform(adata), model.transform(adata))
