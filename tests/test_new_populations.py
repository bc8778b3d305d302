"""Rows of studies never seen in fit, and add_populations (new private networks, the rest
frozen)."""

import warnings

import numpy as np
import pytest
import torch
from _data import make_populations
from conftest import CONFIGS

from sklearn_cpvae import CPVAE, load

CFG = dict(CONFIGS["small"], max_iter=30)


def _three_studies():
    X, y, _, _ = make_populations(n_per_pop=60, n_populations=3, n_features=8)
    # "b" sorts between the fitted "a" and "c", so the private slices must be reordered.
    labels = np.select([y == "pop0", y == "pop1"], ["a", "c"], "b")
    return X, labels


@pytest.fixture(scope="module")
def before_after():
    X, y = _three_studies()
    old, new = y != "b", y == "b"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**CFG).fit(X[old], y[old])
        before = {
            "codes": model.transform(X[old], populations=y[old]),
            "ll": model.score_samples(X[old], populations=y[old]),
            "rec": model.inverse_transform(model.transform(X[old], y[old]), y[old]),
            "sample": model.sample(5, population="c", random_state=0)[0],
            "shared_new": model.get_latent_representation(X[new]),
            "proba_new": model.predict_proba(X[new]),
            "weights": {k: v.clone() for k, v in model.module_.state_dict().items()},
        }
        model.add_populations(X[new], y[new])
    return model, before, X, y


def test_unseen_study_without_adding_it(before_after):
    _, before, X, y = before_after
    assert before["shared_new"].shape == ((y == "b").sum(), 2)
    assert np.all(np.isfinite(before["shared_new"]))
    np.testing.assert_allclose(before["proba_new"].sum(1), 1.0)


def test_old_populations_are_bitwise_unchanged(before_after):
    model, before, X, y = before_after
    old = y != "b"
    np.testing.assert_array_equal(model.classes_, ["a", "b", "c"])
    np.testing.assert_array_equal(model.transform(X[old], populations=y[old]), before["codes"])
    np.testing.assert_array_equal(model.score_samples(X[old], populations=y[old]), before["ll"])
    rec = model.inverse_transform(model.transform(X[old], y[old]), y[old])
    np.testing.assert_array_equal(rec, before["rec"])
    np.testing.assert_array_equal(
        model.sample(5, population="c", random_state=0)[0], before["sample"]
    )
    np.testing.assert_array_equal(
        model.get_latent_representation(X[y == "b"]), before["shared_new"]
    )
    state = model.module_.state_dict()
    for name, value in before["weights"].items():
        if name.startswith(("enc_private.weights.0", "dec_private.weights.0")):
            # (in, K, out): old slices a, c at positions 0 and 2.
            torch.testing.assert_close(state[name][:, [0, 2]], value, rtol=0, atol=0)
        elif name.startswith(("enc_private", "dec_private", "private_gate")):
            torch.testing.assert_close(state[name][[0, 2]], value, rtol=0, atol=0)
        else:
            torch.testing.assert_close(state[name], value, rtol=0, atol=0)


def test_new_population_is_modelled(before_after):
    model, _, X, y = before_after
    new = y == "b"
    assert model.population_counts_.tolist() == [60, 60, 60]
    assert model.has_private_.tolist() == [True, True, True]
    # The new population's active private units, in the sorted order of classes_.
    codes = model.transform(X[new], populations=y[new])[:, model.n_shared :]
    np.testing.assert_array_equal(model.active_private_[1], codes.var(axis=0) > 0.01)
    assert model.active_private_.shape == (3, model.n_private)
    ll = model.score_samples(X[new], populations=y[new])
    assert np.all(np.isfinite(ll))
    # Its own private networks explain its rows better than the old ones do.
    per_pop = np.column_stack(
        [model.score_samples(X[new], populations=np.full(new.sum(), k)) for k in "abc"]
    )
    # Chance is 1/3; 30 epochs of the tiny configuration give 0.85.
    assert np.mean(np.argmax(per_pop, 1) == 1) > 0.75
    assert per_pop[:, 1].mean() > max(per_pop[:, 0].mean(), per_pop[:, 2].mean())
    # Over all three populations (chance 1/3); the tiny configuration gives 0.73.
    assert np.mean(model.predict(X) == y) > 0.6


def test_added_model_saves_and_loads(before_after, tmp_path):
    model = before_after[0]
    X = before_after[2]
    model.save(tmp_path / "m.safetensors")
    loaded = load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_add_populations_refusals(before_after):
    model, _, X, y = before_after
    with pytest.raises(ValueError, match=r"already fitted on"):
        model.add_populations(X[:4], y[:4])
    with pytest.raises(ValueError, match="at least 2 rows"):
        model.add_populations(X[:1], ["d"])
    with pytest.raises(ValueError, match="max_iter"):
        model.add_populations(X[:4], ["d"] * 4, max_iter=0)
    fixed = CPVAE(**dict(CFG, max_iter=1), priors=[0.5, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed.fit(X[:40], np.repeat(["a", "c"], 20))
    with pytest.raises(ValueError, match="priors"):
        fixed.add_populations(X[40:50], ["d"] * 10)


def test_add_populations_trains_under_the_fitted_objective_options(monkeypatch):
    # The new private networks get the same training options as fit (private_kl_weight,
    # precision, ...), not the defaults of the training configuration.
    from sklearn_cpvae import _new_populations

    X, y = _three_studies()
    old, new = y != "b", y == "b"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**{**CFG, "max_iter": 2}, private_kl_weight=0.5).fit(X[old], y[old])
        seen = []
        real = _new_populations.fit_module

        def spy(module, data, cfg, **kwargs):
            seen.append(cfg)
            return real(module, data, cfg, **kwargs)

        monkeypatch.setattr(_new_populations, "fit_module", spy)
        model.add_populations(X[new], y[new], max_iter=2)
    assert [c.private_kl_weight for c in seen] == [0.5]
    assert seen[0].objective == "elbo" and seen[0].max_iter == 2


def test_add_populations_keeps_the_adversary_of_the_old_populations():
    """The population classifier gets one output unit per population: the old ones keep
    theirs (moved to their sorted places), the new one starts fresh, and the frozen
    shared encoder means no adversary is trained while adding."""
    X, y = _three_studies()
    old, new = y != "b", y == "b"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**{**CFG, "max_iter": 2}, shared_adversary=1.0).fit(X[old], y[old])
        before = {k: v.clone() for k, v in model.module_.adversary.state_dict().items()}
        model.add_populations(X[new], y[new], max_iter=2)
    after = model.module_.adversary.state_dict()
    assert after["weights.1"].shape[-1] == 3 and after["biases.1"].shape[-1] == 3
    for name in ("weights.0", "biases.0"):
        assert torch.equal(after[name], before[name])
    # Fitted on ["a", "c"]; after the addition "c" is the third population.
    for name in ("weights.1", "biases.1"):
        assert torch.equal(after[name][..., [0, 2]], before[name])
    # A warm start trains on with the classifier of all three populations.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_params(warm_start=True, max_iter=1).fit(X, y)
    assert "adversary" in model.history_[-1]
