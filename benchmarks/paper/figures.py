"""Fig. 2, 3 and 4 of the paper (Grassy-MNIST, digits 0-4 vs 5-9).

* Fig. 2: original / full / private-only / shared-only reconstructions of held-out rows.
* Fig. 3: t-SNE of the private codes of population 0-4 next to the plain VAE's codes of
  the same rows, coloured by digit.
* Fig. 4 (population swap): each row autoencoded through its own and through the other
  population's private encoder and decoder (the paper's CelebA Fig. 4 protocol).

``benchmarks/paper/table1_subgroups.py`` draws them from its first seed's models; to fit
only those models (Table 1's configuration, one seed) and draw the figures:

    python -m benchmarks.paper.table1_subgroups --figures-only --quick [--device cuda]
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.manifold import TSNE

from benchmarks import _common as C

N_SHOW = 10  # images per grid (half from each population)


def _pick(pops, digits, seed=0):
    """N_SHOW held-out rows: one per digit, so that both populations appear."""
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(np.flatnonzero(digits == d)) for d in range(N_SHOW)])


def _grid(rows, titles, path, suptitle, scale_rows=()):
    fig, axes = plt.subplots(len(rows), N_SHOW, figsize=(N_SHOW * 0.9, len(rows) * 1.0))
    for r, (imgs, title) in enumerate(zip(rows, titles)):
        for c in range(N_SHOW):
            ax = axes[r, c]
            img = imgs[c].reshape(28, 28)
            if r in scale_rows:  # a part alone: stretch its own range to show its content
                ax.imshow(img, cmap="gray", vmin=img.min(), vmax=img.max())
            else:
                ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.25)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    C.FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig2_reconstructions(model, test, norm, name="fig2_reconstructions.png"):
    X, pops, digits = test[:3]
    mean, scale = norm
    idx = _pick(pops, digits)
    x, p = X[idx], pops[idx]
    codes = model.transform(x, populations=p)
    rows = [
        x * scale + mean,
        model.inverse_transform(codes, p, part="full") * scale + mean,
        model.inverse_transform(codes, p, part="private") * scale,
        model.inverse_transform(codes, part="shared") * scale + mean,
    ]
    path = C.FIGURES / name
    _grid(
        rows,
        ["original", "full", "private\nonly", "shared\nonly"],
        path,
        "Grassy-MNIST, held-out rows (digits 0-4 | 5-9): CPVAE reconstructions "
        "(private-only row: each image on its own grey scale)",
        scale_rows=(2,),
    )
    return path


def fig4_swap(model, test, norm, name="fig4_population_swap.png"):
    X, pops, digits = test[:3]
    mean, scale = norm
    idx = _pick(pops, digits, seed=1)
    x, p = X[idx], pops[idx]
    other = 1 - p
    own = model.transform(x, populations=p)
    swapped = model.transform(x, populations=other)
    rows = [
        x * scale + mean,
        model.inverse_transform(own, p, part="full") * scale + mean,
        model.inverse_transform(swapped, other, part="full") * scale + mean,
        model.inverse_transform(own, part="shared") * scale + mean,
    ]
    path = C.FIGURES / name
    _grid(
        rows,
        ["original", "own\nprivate", "other\nprivate", "shared\nonly"],
        path,
        "Population swap: rows reconstructed through their own population's private "
        "encoder/decoder and through the other population's",
    )
    return path


def fig3_tsne(model, vae, test, name="fig3_tsne.png", seed=0, n_max=1000):
    X, pops, digits = test[:3]
    rows = np.flatnonzero(pops == 0)[:n_max]
    t = model.set_params(blocks="private").transform(X[rows], populations=pops[rows])
    model.set_params(blocks="both")
    v = vae.transform(X[rows])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, codes, title in (
        (axes[0], t, "CPVAE private space (population 0-4)"),
        (axes[1], v, "plain VAE latent space (same rows)"),
    ):
        emb = TSNE(n_components=2, init="pca", random_state=seed, perplexity=30).fit_transform(
            codes
        )
        for d in range(5):
            m = digits[rows] == d
            ax.scatter(emb[m, 0], emb[m, 1], s=4, label=str(d))
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(title="digit", markerscale=3, fontsize=7)
    fig.tight_layout()
    path = C.FIGURES / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(models, test, norm, variant="anneal", log=print):
    """Fig. 2-4 from fitted models; ``norm = (mean, scale)`` maps codes' decodings back."""
    model = models[variant]
    for path in (
        fig2_reconstructions(model, test, norm),
        fig4_swap(model, test, norm),
        fig3_tsne(model, models["vae"], test),
    ):
        log(f"wrote {path.relative_to(C.ROOT)}")
