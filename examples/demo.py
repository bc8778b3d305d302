"""The main demo: CPVAE against a plain VAE on digits hidden in structured backgrounds.

A miniature Grassy-MNIST built from data that ships with scikit-learn: each 8x8 digit of
``load_digits`` is added to a random oriented grating (the "grass"), so pixels
are dominated by a background that every population shares. The two populations are
digits 0-4 and 5-9 (as in the paper). The script prints, on held-out rows:

* sub-group discovery (paper Table 1): KMeans(5) on each population's private codes,
  adjusted Rand index against the digit, next to KMeans on a plain VAE's codes;
* population classification (paper Table 2): CPVAE's importance-sampled likelihood
  rule, next to a likelihood classifier made of one plain VAE per population;

* where the digit and the grating went: the R2 of the private-only and shared-only
  reconstructions with the true digit and grating images each row was made of;

and writes, with :mod:`sklearn_cpvae.plotting`, a reconstruction grid (paper Fig. 2:
original, full, private and shared parts, with the numbers above beside it), the
training history, and the private and shared codes of digits 0-4 coloured by digit.

The grid shows the private code decoded on the prior mean of the shared code,
``decode(z=0, t)``, and the change the row's shared code makes, ``decode(z, t) -
decode(z=0, t)``. The parts ``inverse_transform(part="shared")`` and ``part="private"``
return put the training mean image in the shared part; that mean is the average digit,
so drawn as they are the shared row showed a digit-like blob in every column and the
private row a signed deviation from it (``docs/model.md``, "Private-only and
shared-only pictures"). The R2 values do not depend on that choice.

Measured with seed 0 (1 thread, 2-core machine), CPVAE with 10 shared and 5 private
dimensions against a 15-dimensional VAE:

===================================  =================  ==========  ==================
version                              ARI private / VAE  ARI shared  accuracy CPVAE / VAE
===================================  =================  ==========  ==================
Psi started at 1 (before the fix)    0.494 / 0.521      0.009       0.874 / 0.894
Psi started at the data's variance   0.751 / 0.547      0.015       0.963 / 0.943
current defaults                     0.611 / 0.486      0.011       0.974 / 0.941
===================================  =================  ==========  ==================

With the current defaults the private part explains R2 = 0.591 of the digit images and
0.000 of the gratings; the shared part 0.873 of the gratings and 0.033 of the digits.
Before the data-scale start (``docs/reproduction.md``, Finding 1) CPVAE was no better
than the VAE; a 4/8 split then looked like a fix (0.613 / 0.380), but it was compensating
for an undertrained model, so the demo keeps the 10/5 split it was designed with. After
200 epochs the loss is still falling, so each fit warns (``ConvergenceWarning``);
``--max-iter`` trains longer.

Run: ``python examples/demo.py [--out DIR] [--seed N]`` (about 3 minutes on 2 shared CPU
cores).
"""

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import train_test_split

from sklearn_cpvae import CPVAE, VAE


def digits_on_gratings(random_state=0, digit_scale=1.0, return_parts=False):
    """Digits (scaled to [0, digit_scale]) on smooth random gratings in [0, 1]; 64 features.

    Returns ``X, population, digit``, and with ``return_parts`` also the two true
    components of every row, ``grating`` and ``digit_image`` (``X`` is their sum).

    The gratings are slow (0.05-0.15 cycles per pixel: under 1.2 cycles across the 8-pixel
    image) and as bright as the digits, so that a person can still see the digit: faster or
    brighter gratings hide 8x8 digits from the eye as well as from the model.
    """
    rng = np.random.default_rng(random_state)
    digits = load_digits()
    n = len(digits.target)
    u, v = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    theta = rng.uniform(0, np.pi, size=(n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    freq = rng.uniform(0.05, 0.15, size=(n, 1, 1))
    grating = 0.5 + 0.5 * np.sin(
        2 * np.pi * freq * (u * np.cos(theta) + v * np.sin(theta)) + phase
    )
    grating = grating.reshape(n, 64)
    digit_image = digit_scale * digits.data / 16.0
    population = np.where(digits.target < 5, "digits 0-4", "digits 5-9")
    if return_parts:
        return grating + digit_image, population, digits.target, grating, digit_image
    return grating + digit_image, population, digits.target


def explained(part, component):
    """Squared correlation of a partial reconstruction with a true component over all
    pixels, after removing each pixel's mean: 1 when the part reproduces the component.
    A constant added to a part does not change it."""
    a = part - part.mean(0)
    b = component - component.mean(0)
    return float(np.sum(a * b) ** 2 / (np.sum(a * a) * np.sum(b * b)))


def subgroup_ari(codes_of, X, pops, digits, seed):
    """Mean over populations of ARI(KMeans(5) on that population's codes, digit)."""
    scores = []
    for pop in np.unique(pops):
        rows = pops == pop
        labels = KMeans(5, n_init=10, random_state=seed).fit_predict(codes_of(X[rows], pop))
        scores.append(adjusted_rand_score(digits[rows], labels))
    return float(np.mean(scores))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output", help="folder for the figures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-iter", type=int, default=200)
    args = parser.parse_args(argv)

    X, pops, digits, grating, digit_image = digits_on_gratings(args.seed, return_parts=True)
    X_tr, X_te, p_tr, p_te, d_tr, d_te, _, g_te, _, di_te = train_test_split(
        X,
        pops,
        digits,
        grating,
        digit_image,
        test_size=0.3,
        stratify=digits,
        random_state=args.seed,
    )
    common = dict(hidden_layer_sizes=(128,), max_iter=args.max_iter, random_state=args.seed)
    tic = time.perf_counter()
    cpvae = CPVAE(n_shared=10, n_private=5, batch_size=32, **common).fit(X_tr, p_tr)
    t_cpvae = time.perf_counter() - tic
    tic = time.perf_counter()
    vae = VAE(n_components=15, batch_size=64, **common).fit(X_tr)
    # The generative classifier a plain VAE offers: one VAE per population, argmax likelihood.
    per_pop = {
        p: VAE(n_components=15, batch_size=64, **common).fit(X_tr[p_tr == p])
        for p in cpvae.classes_
    }
    t_vae = time.perf_counter() - tic

    ari_private = subgroup_ari(
        lambda x, p: cpvae.set_params(blocks="private").transform(x, np.full(len(x), p)),
        X_te,
        p_te,
        d_te,
        args.seed,
    )
    ari_shared = subgroup_ari(
        lambda x, p: cpvae.set_params(blocks="shared").transform(x), X_te, p_te, d_te, args.seed
    )
    cpvae.set_params(blocks="both")
    ari_vae = subgroup_ari(lambda x, p: vae.transform(x), X_te, p_te, d_te, args.seed)

    acc_cpvae = float(np.mean(cpvae.predict(X_te) == p_te))
    log_joint = np.column_stack([per_pop[p].score_samples(X_te) for p in cpvae.classes_])
    log_joint += np.log(cpvae.priors_)
    acc_vae = float(np.mean(cpvae.classes_[np.argmax(log_joint, axis=1)] == p_te))

    # Where the digit and the grating went: each part of the held-out reconstructions
    # against the true components the data were made of.
    codes = cpvae.transform(X_te, populations=p_te)
    private = cpvae.inverse_transform(codes, p_te, part="private")
    shared = cpvae.inverse_transform(codes, part="shared")
    r2 = {
        "digit in private part": explained(private, di_te),
        "digit in shared part": explained(shared, di_te),
        "grating in shared part": explained(shared, g_te),
        "grating in private part": explained(private, g_te),
    }

    print(f"digits on gratings: {len(X_tr)} training / {len(X_te)} held-out rows, 64 features")
    print(f"{'':38s}{'CPVAE':>8s}{'VAE':>8s}")
    print(f"{'sub-group ARI, private codes (KMeans 5)':38s}{ari_private:8.3f}{ari_vae:8.3f}")
    print(f"{'sub-group ARI, shared codes':38s}{ari_shared:8.3f}{'':>8s}")
    print(f"{'population accuracy (likelihood)':38s}{acc_cpvae:8.3f}{acc_vae:8.3f}")
    for name, value in r2.items():
        print(f"{'R2, ' + name:38s}{value:8.3f}")
    print(
        f"fit time: CPVAE {t_cpvae:.1f} s ({cpvae.n_iter_} epochs), "
        f"VAEs {t_vae:.1f} s; device {cpvae.device_}"
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    numbers = (
        f"held-out rows ({len(X_te)})\n\n"
        f"sub-group ARI (KMeans 5)\n  private codes  {ari_private:.3f}\n"
        f"  shared codes   {ari_shared:.3f}\n  plain VAE      {ari_vae:.3f}\n\n"
        "R2 of each part with the\ntrue components\n"
        + "".join(f"  {name}  {value:.3f}\n" for name, value in r2.items())
        + "\nprivate (z = 0): the private code\ndecoded with the shared code at\n"
        "its prior mean; shared (change):\nfull minus that"
    )
    for path in write_figures(cpvae, X_te, p_te, d_te, numbers, out):
        print(f"wrote {path}")


def write_figures(model, X, pops, digits, numbers, out):
    """The reconstruction grid (paper Fig. 2) with the numbers beside it, the training
    history, and the codes of the held-out rows coloured by digit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sklearn_cpvae.plotting import (
        EmbeddingDisplay,
        ReconstructionDisplay,
        TrainingHistoryDisplay,
    )

    # Four rows of each population, so that both private decoders appear.
    show = np.concatenate([np.flatnonzero(pops == p)[:4] for p in model.classes_])
    disp = ReconstructionDisplay.from_estimator(
        model,
        X[show],
        pops[show],
        title="CPVAE reconstructions of held-out digits on gratings",
    )
    right = disp.ax_[0, -1].get_position().x1
    disp.figure_.text(right + 0.02, 0.5, numbers, family="monospace", fontsize=7, va="center")
    paths = [out / "demo_reconstructions.png"]
    disp.figure_.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(disp.figure_)

    disp = TrainingHistoryDisplay.from_estimator(model)
    disp.figure_.tight_layout()
    paths.append(out / "demo_history.png")
    disp.figure_.savefig(paths[-1], dpi=100)
    plt.close(disp.figure_)

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    rows = pops == model.classes_[0]
    for ax, space in zip(axes, ("private", "shared")):
        EmbeddingDisplay.from_estimator(
            model,
            X[rows],
            pops[rows],
            space=space,
            labels=digits[rows],
            title=f"{space} codes of {model.classes_[0]} (PCA), by digit",
            ax=ax,
        )
    fig.tight_layout()
    paths.append(out / "demo_codes.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


if __name__ == "__main__":
    main()
