"""Fig. 2, 3 and 4 of the paper (Grassy-MNIST, digits 0-4 vs 5-9), drawn with
:mod:`sklearn_cpvae.plotting`.

* Fig. 2: original / full / private / shared reconstructions of held-out rows
  (``ReconstructionDisplay``: the private code decoded on the shared prior mean, and the
  change the row's shared code makes; ``docs/model.md``, "Private-only and shared-only
  pictures").
* Fig. 3: t-SNE of the private codes of population 0-4 next to the plain VAE's codes of
  the same rows, coloured by digit (``EmbeddingDisplay``).
* Fig. 4 (population swap): each row autoencoded through every population's private
  encoder and decoder (``PopulationSwapDisplay``; the paper's CelebA Fig. 4 protocol).

``benchmarks/paper/table1_subgroups.py`` draws them from its first seed's models; to fit
only those models (Table 1's configuration, one seed) and draw the figures:

    python -m benchmarks.paper.table1_subgroups --figures-only --quick [--device cuda]
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from benchmarks import _common as C
from sklearn_cpvae.plotting import EmbeddingDisplay, PopulationSwapDisplay, ReconstructionDisplay

N_SHOW = 10  # images per grid (half from each population)
SHAPE = (28, 28)


def _pick(pops, digits, seed=0):
    """N_SHOW held-out rows: one per digit, so that both populations appear."""
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(np.flatnonzero(digits == d)) for d in range(N_SHOW)])


def _unstandardise(norm):
    """The benchmark's ``(X - mean) / scale`` undone, for display in pixel values."""
    mean, scale = norm
    return lambda a: a * scale + mean


def _save(fig, name):
    C.FIGURES.mkdir(parents=True, exist_ok=True)
    path = C.FIGURES / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def fig2_reconstructions(model, test, norm, name="fig2_reconstructions.png"):
    X, pops, digits = test[:3]
    idx = _pick(pops, digits)
    disp = ReconstructionDisplay.from_estimator(
        model,
        X[idx],
        pops[idx],
        n_images=N_SHOW,
        image_shape=SHAPE,
        inverse_func=_unstandardise(norm),
        title="Grassy-MNIST, held-out rows (population above each column): CPVAE "
        "reconstructions; each row on its own grey scale",
    )
    return _save(disp.figure_, name)


def fig4_swap(model, test, norm, name="fig4_population_swap.png"):
    X, pops, digits = test[:3]
    idx = _pick(pops, digits, seed=1)
    disp = PopulationSwapDisplay.from_estimator(
        model,
        X[idx],
        pops[idx],
        n_images=N_SHOW,
        image_shape=SHAPE,
        inverse_func=_unstandardise(norm),
        title="Population swap: rows (own population above each column) reconstructed "
        "through each population's private encoder and decoder",
    )
    return _save(disp.figure_, name)


def fig3_tsne(model, vae, test, name="fig3_tsne.png", seed=0, n_max=1000):
    X, pops, digits = test[:3]
    rows = np.flatnonzero(pops == 0)[:n_max]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    EmbeddingDisplay.from_estimator(
        model,
        X[rows],
        pops[rows],
        space="private",
        labels=digits[rows],
        method="tsne",
        random_state=seed,
        title="CPVAE private space (population 0-4)",
        ax=axes[0],
    )
    EmbeddingDisplay.from_codes(
        vae.transform(X[rows]),
        digits[rows],
        method="tsne",
        random_state=seed,
        title="plain VAE latent space (same rows)",
        ax=axes[1],
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].get_legend().set_title("digit")
    fig.tight_layout()
    return _save(fig, name)


def draw_all(models, test, norm, variant="anneal", log=print):
    """Fig. 2-4 from fitted models; ``norm = (mean, scale)`` maps codes' decodings back."""
    model = models[variant]
    for path in (
        fig2_reconstructions(model, test, norm),
        fig4_swap(model, test, norm),
        fig3_tsne(model, models["vae"], test),
    ):
        log(f"wrote {path.relative_to(C.ROOT)}")
