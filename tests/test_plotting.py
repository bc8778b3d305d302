"""The Display objects of sklearn_cpvae.plotting: panels, titles, values drawn, errors."""

import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from _data import make_populations
from conftest import CONFIGS

from sklearn_cpvae import CPVAE, VAE, TrainingDivergedError
from sklearn_cpvae.plotting import (
    EmbeddingDisplay,
    PopulationSwapDisplay,
    ReconstructionDisplay,
    TrainingHistoryDisplay,
)

FAST = dict(CONFIGS["small"], max_iter=4)


@pytest.fixture(scope="module")
def images():
    """16 features (4x4 images) in two populations."""
    X, y, sub, _ = make_populations(n_per_pop=30, n_features=16)
    return X, y, sub


@pytest.fixture(scope="module")
def model(images):
    X, y, _ = images
    return CPVAE(**FAST).fit(X, y)


@pytest.fixture(autouse=True)
def figures_closed():
    """Every test closes what it drew: no figure is left open after it."""
    before = set(plt.get_fignums())
    yield
    left_open = set(plt.get_fignums()) - before
    for num in left_open:
        plt.close(num)
    assert not left_open


def _labels(axes):
    return [a.get_ylabel() for a in axes]


def test_history_panels_and_alpha(model):
    disp = TrainingHistoryDisplay.from_estimator(model)
    titles = [a.get_title() for a in disp.ax_]
    assert titles == ["loss", "recon", "kl_shared", "kl_private", "mi", "alpha (mi_weight)"]
    assert len(disp.figure_.axes) == 6
    x, y = disp.ax_[0].lines[0].get_data()
    np.testing.assert_array_equal(x, [r["epoch"] for r in model.history_])
    np.testing.assert_allclose(y, model.loss_curve_)
    _, alpha = disp.ax_[-1].lines[0].get_data()
    np.testing.assert_allclose(alpha, [r["mi_weight"] for r in model.history_])
    plt.close(disp.figure_)


def test_history_marks_early_stopping(images):
    X, y, _ = images
    est = CPVAE(**dict(FAST, max_iter=8), early_stopping=True, n_iter_no_change=2).fit(X, y)
    disp = TrainingHistoryDisplay.from_estimator(est)
    loss_ax = disp.ax_[0]
    labels = [line.get_label() for line in loss_ax.lines]
    assert labels[:2] == ["training", "validation"]
    _, val = loss_ax.lines[1].get_data()
    np.testing.assert_allclose(val, [r["val_loss"] for r in est.history_])
    marks = {line.get_label(): line.get_xdata()[0] for line in loss_ax.lines[2:]}
    best = min(est.history_, key=lambda r: r["val_loss"])["epoch"]
    assert marks == {
        "weights kept (best validation loss)": best,
        "early stopping stopped": est.history_[-1]["epoch"],
    }
    plt.close(disp.figure_)


def test_history_marks_divergence_and_vae(images):
    X, y, _ = images
    vae = VAE(**dict(CONFIGS["vae"], max_iter=3)).fit(X)
    error = TrainingDivergedError("jumped", term="kl", epoch=3, restored_epoch=2)
    disp = TrainingHistoryDisplay.from_estimator(vae, error=error)
    # The VAE records no alpha: no alpha panel.
    assert "alpha (mi_weight)" not in [a.get_title() for a in disp.ax_]
    marks = {line.get_label(): line.get_xdata()[0] for line in disp.ax_[0].lines[1:]}
    assert marks == {"diverged (kl)": 3, "weights restored": 2}
    plt.close(disp.figure_)


def test_history_terms_and_axes(model):
    fig, axes = plt.subplots(1, 3)
    disp = TrainingHistoryDisplay.from_estimator(model, terms=["loss", "mi"], ax=axes)
    assert disp.figure_ is fig
    assert [a.get_title() for a in axes] == ["loss", "mi", "alpha (mi_weight)"]
    with pytest.raises(ValueError, match="ax must hold 3 matplotlib Axes"):
        disp.plot(ax=axes[:2], terms=["loss", "mi"])
    with pytest.raises(ValueError, match=r"terms \['elbo'\] are not in the history"):
        disp.plot(terms=["elbo"])
    plt.close(fig)
    with pytest.raises(ValueError, match="history is empty"):
        TrainingHistoryDisplay([])
    with pytest.raises(TypeError, match="TrainingDivergedError"):
        TrainingHistoryDisplay.from_history(model.history_, error=ValueError("x"))


def test_reconstruction_grid(model, images):
    X, y, _ = images
    rows = np.r_[0, 1, 40, 41]
    model.set_params(blocks="private")
    disp = ReconstructionDisplay.from_estimator(model, X[rows], y[rows], title="t")
    # The estimator's own blocks setting is left as it was.
    assert model.blocks == "private"
    model.set_params(blocks="both")
    assert disp.ax_.shape == (4, 4)
    assert disp.image_shape == (4, 4)
    assert _labels(disp.ax_[:, 0]) == ["original", "full", "private (z = 0)", "shared (change)"]
    assert [a.get_title() for a in disp.ax_[0]] == list(y[rows])
    assert disp.figure_._suptitle.get_text() == "t"
    imgs = disp.images
    codes = model.transform(X[rows], populations=y[rows])
    np.testing.assert_allclose(imgs["full"], model.inverse_transform(codes, y[rows]))
    # The private row is the private code on z = 0; the two parts add up to the full one.
    at_prior = codes.copy()
    at_prior[:, :2] = 0.0
    np.testing.assert_allclose(imgs["private (z = 0)"], model.inverse_transform(at_prior, y[rows]))
    np.testing.assert_allclose(imgs["private (z = 0)"] + imgs["shared (change)"], imgs["full"])
    np.testing.assert_allclose(disp.ax_[0, 2].images[0].get_array(), X[40].reshape(4, 4))
    plt.close(disp.figure_)


def test_reconstruction_without_baseline(model, images):
    X, y, _ = images
    disp = ReconstructionDisplay.from_estimator(model, X, y, n_images=3, baseline="none")
    assert disp.ax_.shape == (4, 3)
    codes = model.transform(X[:3], populations=y[:3])
    np.testing.assert_allclose(
        disp.images["shared only"], model.inverse_transform(codes, part="shared")
    )
    np.testing.assert_allclose(
        disp.images["private only"], model.inverse_transform(codes, y[:3], part="private")
    )
    plt.close(disp.figure_)


def test_reconstruction_rgb_and_image_shape():
    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(24, 48)), np.repeat(["a", "b"], 12)
    est = CPVAE(**dict(FAST, max_iter=2)).fit(X, y)
    disp = ReconstructionDisplay.from_estimator(est, X, y, n_images=2, scale="image")
    assert disp.image_shape == (4, 4, 3)
    assert disp.ax_[0, 0].images[0].get_array().shape == (4, 4, 3)
    plt.close(disp.figure_)
    disp = ReconstructionDisplay.from_estimator(est, X, y, n_images=2, image_shape=(4, 12))
    assert disp.ax_[0, 0].images[0].get_array().shape == (4, 12)
    plt.close(disp.figure_)
    with pytest.raises(ValueError, match=r"image_shape=\(5, 5\) holds 25 values"):
        ReconstructionDisplay.from_estimator(est, X, y, image_shape=(5, 5))
    with pytest.raises(ValueError, match="channels last"):
        ReconstructionDisplay.from_estimator(est, X, y, image_shape=(4, 2, 6))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(populations=None), ValueError, "populations is required"),
        (dict(populations=np.full(60, "zzz")), ValueError, "not fitted on: \\['zzz'\\]"),
        (dict(populations=np.full(3, "pop0")), ValueError, "one label per row of X"),
        (dict(baseline="mean"), ValueError, "baseline must be 'prior' or 'none'"),
        (dict(n_images=0), ValueError, "n_images must be a positive integer"),
        (dict(scale="all"), ValueError, "scale must be 'row' or 'image'"),
    ],
)
def test_reconstruction_bad_arguments(model, images, kwargs, error, match):
    X, y, _ = images
    args = dict(populations=y)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ReconstructionDisplay.from_estimator(model, X, **args)
    plt.close("all")


def test_image_shape_not_inferable_and_not_a_cpvae(images):
    X, y, _ = images
    est = CPVAE(**dict(FAST, max_iter=1)).fit(X[:, :10], y)
    with pytest.raises(ValueError, match="pass image_shape="):
        ReconstructionDisplay.from_estimator(est, X[:, :10], y)
    with pytest.raises(TypeError, match="must be a fitted sklearn_cpvae.CPVAE"):
        ReconstructionDisplay.from_estimator(VAE(), X, y)


def test_population_swap(model, images):
    X, y, _ = images
    disp = PopulationSwapDisplay.from_estimator(model, X[:3], y[:3])
    assert disp.ax_.shape == (3, 3)
    assert _labels(disp.ax_[:, 0]) == ["original", "as pop0", "as pop1"]
    as_1 = np.full(3, "pop1")
    expected = model.inverse_transform(model.transform(X[:3], populations=as_1), as_1)
    np.testing.assert_allclose(disp.images["as pop1"], expected)
    plt.close(disp.figure_)


def test_embedding_shared_and_private(model, images):
    X, y, sub = images
    disp = EmbeddingDisplay.from_estimator(model, X, y)
    assert [t.get_text() for t in disp.ax_.get_legend().get_texts()] == ["pop0", "pop1"]
    assert disp.ax_.get_title() == "shared codes (PCA)"
    # Two shared dimensions are drawn as they are.
    np.testing.assert_allclose(disp.embedding, model.set_params(blocks="shared").transform(X))
    model.set_params(blocks="both")
    plt.close(disp.figure_)
    rows = y == "pop0"
    disp = EmbeddingDisplay.from_estimator(
        model, X[rows], y[rows], space="private", labels=sub[rows], method="tsne", random_state=0
    )
    assert disp.ax_.get_xlabel() == "t-SNE 1"
    assert len(disp.ax_.collections) == len(np.unique(sub[rows]))
    plt.close(disp.figure_)


def test_embedding_bad_arguments(model, images):
    X, y, _ = images
    with pytest.raises(ValueError, match="populations is required"):
        EmbeddingDisplay.from_estimator(model, X, space="private")
    with pytest.raises(ValueError, match="space must be 'shared' or 'private'"):
        EmbeddingDisplay.from_estimator(model, X, y, space="both")
    with pytest.raises(ValueError, match="method must be 'pca' or 'tsne'"):
        EmbeddingDisplay.from_codes(X, method="umap")
    with pytest.raises(ValueError, match="at least 2 columns"):
        EmbeddingDisplay.from_codes(X[:, :1])
    with pytest.raises(ValueError, match="labels must have one entry per row"):
        EmbeddingDisplay(X[:, :2], labels=y[:3])
    est = CPVAE(**dict(FAST, n_private=1, max_iter=1)).fit(X, y)
    with pytest.raises(ValueError, match="n_private=1"):
        EmbeddingDisplay.from_estimator(est, X, y, space="private")
    plt.close("all")


def test_missing_matplotlib_names_the_extra(model, images, monkeypatch):
    X, y, _ = images
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"sklearn-cpvae\[plot\]"):
        ReconstructionDisplay.from_estimator(model, X, y)
    with pytest.raises(ImportError, match=r"sklearn-cpvae\[plot\]"):
        TrainingHistoryDisplay.from_estimator(model)


def test_inverse_func_maps_rows_and_differences(model, images):
    X, y, _ = images
    shift = np.arange(16.0)
    plain = ReconstructionDisplay.from_estimator(model, X, y, n_images=2)
    mapped = ReconstructionDisplay.from_estimator(
        model, X, y, n_images=2, inverse_func=lambda a: 2.0 * a + shift
    )
    for name in ("original", "full", "private (z = 0)"):
        np.testing.assert_allclose(mapped.images[name], 2.0 * plain.images[name] + shift)
    # A difference is scaled, not shifted.
    np.testing.assert_allclose(
        mapped.images["shared (change)"], 2.0 * plain.images["shared (change)"]
    )
    swap = PopulationSwapDisplay.from_estimator(model, X, n_images=2, inverse_func=lambda a: -a)
    assert swap.column_labels is None
    np.testing.assert_allclose(swap.images["original"], -X[:2])
    with pytest.raises(ValueError, match="inverse_func must return an array of the shape"):
        ReconstructionDisplay.from_estimator(model, X, y, inverse_func=lambda a: a[:, :4])
    for disp in (plain, mapped, swap):
        plt.close(disp.figure_)
