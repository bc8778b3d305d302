"""Mistakes that must not pass silently: each gets an error (or a warning) that names
the cause and the option involved."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CONFIGS
from sklearn.exceptions import ConvergenceWarning

from sklearn_cpvae import CPVAE

TINY = {**CONFIGS["persistence"], "max_iter": 1}


def _data(n=24, d=4):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)), np.repeat(["a", "b"], n // 2)


def _quiet(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(*args, **kwargs)


@pytest.mark.parametrize("with_y", [False, True])
def test_population_column_not_in_the_dataframe(with_y):
    X, y = _data()
    df = pd.DataFrame(X, columns=["f0", "f1", "f2", "f3"]).assign(batch=y)
    est = CPVAE(**TINY, population_column="study")
    with pytest.raises(ValueError, match=r"population_column='study' is not a column") as info:
        _quiet(est, df, y if with_y else None)
    message = str(info.value)
    assert "['f0', 'f1', 'f2', 'f3', 'batch']" in message and "requires y" not in message
    assert ("population_column=None" in message) == with_y


@pytest.mark.parametrize("missing", [None, np.nan])
@pytest.mark.parametrize("where", ["y", "populations", "population_column"])
def test_missing_population_labels(missing, where):
    X, y = _data()
    labels = y.astype(object)
    labels[5] = missing
    est = CPVAE(**TINY)
    if where == "y":
        args, kwargs, name = (X, labels), {}, "of y"
    elif where == "populations":
        args, kwargs, name = (X,), {"populations": labels}, "of populations"
    else:
        df = pd.DataFrame(X).rename(columns=str).assign(pop=labels)
        est.set_params(population_column="pop")
        args, kwargs, name = (df,), {}, "of the population_column 'pop'"
    with pytest.raises(ValueError, match="populations contain missing labels") as info:
        _quiet(est, *args, **kwargs)
    assert name in str(info.value) and "[5]" in str(info.value)


def test_float_labels_with_nan_name_the_populations():
    X, _ = _data()
    y = np.repeat([0.0, 1.0], 12)
    y[0] = np.nan
    with pytest.raises(ValueError, match="populations contain missing labels .* of y"):
        _quiet(CPVAE(**TINY), X, y)


@pytest.mark.parametrize(
    "device, available",
    [
        ("mps", torch.backends.mps.is_available()),
        ("cuda", torch.cuda.is_available()),
        ("xla", False),
    ],
)
def test_unavailable_device_is_a_value_error_naming_device(device, available):
    if available:
        pytest.skip(f"{device} is available on this machine")
    X, y = _data()
    est = CPVAE(**{**TINY, "device": device})
    with pytest.raises(ValueError, match=rf"device='{device}' was requested") as info:
        _quiet(est, X, y)
    assert "available on this machine are ['cpu'" in str(info.value)


def test_missing_cuda_index_is_named():
    X, y = _data()
    index = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=rf"device='cuda:{index}'"):
        _quiet(CPVAE(**{**TINY, "device": f"cuda:{index}"}), X, y)


@pytest.mark.parametrize(
    "sizes, fraction, fragment",
    [
        (
            (37, 3),
            0.1,
            "smallest population 'b' has 3 rows: population 'b' (3 rows) would "
            "get 3 training and 0 validation rows",
        ),
        ((20, 20), 0.02, "the split is impossible"),
        ((40, 2), 0.8, "lower validation_fraction"),
    ],
)
def test_early_stopping_with_too_small_populations(sizes, fraction, fragment):
    X, _ = _data(n=sum(sizes))
    y = np.repeat(["a", "b"], sizes)
    est = CPVAE(**TINY, early_stopping=True, validation_fraction=fraction)
    with pytest.raises(ValueError, match="early_stopping=True") as info:
        _quiet(est, X, y)
    message = str(info.value)
    assert f"validation_fraction={fraction:g}" in message and fragment in message
    # A split that fits is accepted.
    _quiet(est.set_params(validation_fraction=0.5), X, y)


def test_convergence_warning_says_what_happened_and_what_to_change():
    X, y = _data()
    with pytest.warns(ConvergenceWarning) as record:
        CPVAE(**{**TINY, "max_iter": 2}).fit(X, y)
    message = str(record[0].message)
    assert "ran all max_iter=2 epochs" in message and "still improving" in message
    assert "Raise max_iter" in message and "warm_start=True" in message
    assert "without" not in message and "less than" not in message


def test_latent_sizes_above_the_number_of_features_warn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 13))
    y = np.repeat(["a", "b"], 12)
    with pytest.warns(
        UserWarning, match=r"n_shared \+ n_private = 100 \+ 25 = 125 .* 13 features"
    ):
        CPVAE(max_iter=1, n_importance_samples=2, device="cpu", random_state=0).fit(X, y)
    # At most one latent dimension per feature: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        CPVAE(**{**TINY, "n_shared": 10, "n_private": 3}).fit(X, y)


def test_save_into_a_missing_folder_names_the_folder(tmp_path):
    X, y = _data()
    est = _quiet(CPVAE(**TINY), X, y)
    target = tmp_path / "no" / "such" / "model.cpvae"
    with pytest.raises(FileNotFoundError, match="the folder .* does not exist") as info:
        est.save(target)
    assert str(target.parent) in str(info.value) and ".tmp" not in str(info.value)
    assert not (tmp_path / "no").exists()


def _fit_recording(X, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = CPVAE(random_state=0).fit(X, y)
    empty = [w for w in caught if "No unit of the shared code is active" in str(w.message)]
    return model, empty


@pytest.mark.parametrize("effect", ["both", "subspace"])
def test_an_empty_shared_space_beside_used_private_codes_warns(effect):
    from sklearn_cpvae.datasets import make_cross_population

    d = make_cross_population(
        n_samples=400, n_populations=2, population_effect=effect, random_state=1
    )
    model, empty = _fit_recording(d.data, d.populations)
    # The masks against their definition, on the training rows.
    shared = model.transform(d.data)[:, : model.n_shared]
    np.testing.assert_array_equal(model.active_shared_, shared.var(axis=0) > 0.01)
    private = model.transform(d.data, populations=d.populations)[:, model.n_shared :]
    for k, name in enumerate(model.classes_):
        rows = d.populations == name
        np.testing.assert_array_equal(model.active_private_[k], private[rows].var(axis=0) > 0.01)
    in_use = model.active_private_.any(axis=1).sum()
    assert bool(empty) == (not model.active_shared_.any() and in_use >= 2)
    if effect == "both":
        # Populations told apart by an offset: the defaults leave the shared space empty
        # (docs/quality.md, "What is still open"), and fit says so.
        assert len(empty) == 1 and "2 populations are in use" in str(empty[0].message)
        assert "decoder_weight_decay" in str(empty[0].message)
    else:
        # Populations that differ only by private factors: both spaces are in use.
        assert model.active_shared_.any() and not empty
