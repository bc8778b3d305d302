"""Table 2 of the paper: classification by marginal likelihood, one population per class.

For each dataset CPVAE is fitted with one population per class and ``predict`` (argmax
of the importance-sampled log p(x | k), eq. 7-8, uniform priors) is scored on held-out
test rows, for the three variants (annealed alpha, alpha = 1, No MI) and both private
priors of the likelihood (``"standard"``: the paper's N(0, I); ``"aggregate"``: a
Gaussian fitted to each population's own private codes). Discriminative references on
the same rows: a 2-conv-layer CNN trained through skorch's ``NeuralNetClassifier`` and
sklearn's ``LogisticRegression``.

CIFAR-10 here is a 5k/5k subset decoded from JPEG (quality 75): lossy, so its numbers
are not directly comparable with published CIFAR-10 results.

    python -m benchmarks.paper.table2_classification --quick [--device cuda]
"""

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import nn

from benchmarks import _common as C
from sklearn_cpvae import CPVAE, TrainingDivergedError
from sklearn_cpvae.datasets import load_shared_npz

QUICK = dict(
    n_train_per_class=100,
    n_test_per_class=50,
    hidden=(128,),
    max_iter=30,
    batch_size=16,
    lr=1e-3,
    n_importance_samples=10,
    cnn_epochs=15,
)
# Full size: M = 64 rows per population per step as in Table 1 (the quick mode's 16 suits
# its 100 rows per class; at 6,000 per class it would only multiply the steps by four).
FULL = dict(
    n_train_per_class=None,
    n_test_per_class=None,
    hidden=(256,),
    max_iter=100,
    batch_size=64,
    lr=1e-3,
    n_importance_samples=50,
    cnn_epochs=50,
)
N_SHARED, N_PRIVATE = 100, 25
GRASSY_CEILING = 1.25  # grass in [0, 1] plus make_grassy_mnist's digit_scale=0.25
VARIANTS = ("anneal", "alpha1", "no_mi")
DATASETS = (
    "mnist",
    "grassy_mnist",
    "cifar10_jpeg",
    "fashion_mnist",
    "mnist_bernoulli",
    "grassy_mnist_bernoulli",
)
PAPER = {
    "mnist": (99.5, 98.2, 97.3, 99.6),
    "grassy_mnist": (77.5, 75.1, 70.5, 85.7),
    "cifar10_jpeg": (76.2, 47.9, 42.2, 84.1),
}


def _subset(X, y, n_per_class, seed):
    if n_per_class is None:
        return X, y
    idx = C.stratified_subset(y, n_per_class, seed)
    return X[idx], y[idx]


def load(name, cfg):
    """``(X_train, y_train, X_test, y_test, image_shape)``.

    Pixels in [0, 1] (Grassy-MNIST: up to 1.25); for the Gaussian likelihood they are then
    standardised with the training rows' per-pixel mean and one global scale (see
    :func:`_common.standardiser`); the Bernoulli likelihood needs them in [0, 1]: as they
    are, and Grassy-MNIST divided by its ceiling 1.25 (grass in [0, 1] plus 0.25 x digit).
    """
    X, y, Xt, yt, shape = _load_raw(name, cfg)
    if name == "grassy_mnist_bernoulli":
        X, Xt = X / np.float32(GRASSY_CEILING), Xt / np.float32(GRASSY_CEILING)
    if not name.endswith("_bernoulli") and cfg.get("standardise", True):
        mean, scale = C.standardiser(X)
        X, Xt = (X - mean) / scale, (Xt - mean) / scale
    return X, y, Xt, yt, shape


def _load_raw(name, cfg):
    ntr, nte = cfg["n_train_per_class"], cfg["n_test_per_class"]
    if name.startswith("grassy_mnist"):
        n_tr = None if ntr is None else 10 * ntr
        n_te = None if nte is None else 10 * nte
        X, y, _, _ = C.grassy("train", n_tr, populations=C.ONE_PER_DIGIT)
        Xt, yt, _, _ = C.grassy("test", n_te, populations=C.ONE_PER_DIGIT)
        return X, y, Xt, yt, (1, 28, 28)
    key = name.replace("_bernoulli", "")
    d = load_shared_npz(key, C.DATA_DIR)
    shape = (3, 32, 32) if key == "cifar10_jpeg" else (1, 28, 28)

    def prep(a):
        a = a.astype(np.float32) / np.float32(255)
        if a.ndim == 4:  # (n, H, W, C) -> channels first, flattened
            a = a.transpose(0, 3, 1, 2)
        return a.reshape(len(a), -1)

    X, y = _subset(d.X_train, d.y_train.astype(np.int64), ntr, 0)
    Xt, yt = _subset(d.X_test, d.y_test.astype(np.int64), nte, 1)
    return prep(X), y, prep(Xt), yt, shape


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (16, 32 channels) with max-pooling, then a linear layer."""

    def __init__(self, channels=1, side=28, n_classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (side // 4) ** 2, n_classes),
        )

    def forward(self, x):
        return self.net(x)


def cnn_accuracy(data, cfg, seed, device):
    from skorch import NeuralNetClassifier

    X, y, Xt, yt, shape = data
    # skorch draws initial weights and minibatches from torch's global RNG; seeding it
    # here, in a benchmark script, is what makes the reference reproducible.
    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        SmallCNN,
        module__channels=shape[0],
        module__side=shape[1],
        max_epochs=cfg["cnn_epochs"],
        # The module returns logits: cross-entropy, not skorch's default NLLLoss (which
        # expects probabilities).
        criterion=nn.CrossEntropyLoss,
        lr=1e-3,
        optimizer=torch.optim.Adam,
        batch_size=64,
        train_split=None,
        verbose=0,
        device=device,
        iterator_train__shuffle=True,
    )
    net.fit(X.reshape(-1, *shape), y)
    return float(np.mean(net.predict(Xt.reshape(-1, *shape)) == yt))


def logreg_accuracy(data):
    X, y, Xt, yt, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=300).fit(X, y)
    return float(clf.score(Xt, yt))


def _conv_params(cfg, shape):
    """``image_shape`` and ``conv_channels`` with ``--conv-channels``, else nothing."""
    if not cfg.get("conv_channels"):
        return {}
    channels, height, width = shape
    return dict(image_shape=(height, width, channels), conv_channels=tuple(cfg["conv_channels"]))


def _image_rows(X, shape, cfg):
    """Rows in the library's image layout (height, width, channel) for the convolutional
    networks; the loaders here flatten channel-first, which only matters for colour."""
    if not cfg.get("conv_channels") or shape[0] == 1:
        return X
    return X.reshape(len(X), *shape).transpose(0, 2, 3, 1).reshape(len(X), -1)


def make_cpvae(variant, likelihood, cfg, seed, device, schedule=(), max_iter=None, shape=None):
    """Table 2's CPVAE for one variant; ``max_iter`` stops it early (the schedule and the
    stopping rule stay those of the full ``cfg["max_iter"]`` epochs)."""
    return CPVAE(
        N_SHARED,
        N_PRIVATE,
        likelihood=likelihood,
        hidden_layer_sizes=cfg["hidden"],
        max_iter=max_iter or cfg["max_iter"],
        tol=0.0,
        n_iter_no_change=cfg["max_iter"],
        batch_size=cfg["batch_size"],
        learning_rate_init=cfg["lr"],
        priors="uniform",
        n_importance_samples=cfg["n_importance_samples"],
        device=device,
        random_state=seed,
        **C.variant_params(
            variant,
            cfg["max_iter"],
            *schedule,
            objective=cfg.get("objective", "paper"),
            as_given=cfg.get("as_given", False),
        ),
        **_conv_params(cfg, shape),
        **(
            {"private_kl_warmup": cfg["private_kl_warmup"]} if cfg.get("private_kl_warmup") else {}
        ),
    )


def cpvae_accuracy(data, variant, likelihood, cfg, seed, device, schedule):
    X, y, Xt, yt, shape = data
    X, Xt = _image_rows(X, shape, cfg), _image_rows(Xt, shape, cfg)
    model = make_cpvae(variant, likelihood, cfg, seed, device, schedule, shape=shape)
    out = {}
    with C.Timer() as t, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            model.fit(X, y)
        except TrainingDivergedError as exc:
            # The restored weights are fitted and usable: score them, and say so.
            out["diverged"] = {
                "message": str(exc),
                "term": exc.term,
                "epoch": exc.epoch,
                "restored_epoch": exc.restored_epoch,
            }
            print(f"  {variant}: {exc}", flush=True)
    out["fit_seconds"] = t.seconds
    # Per-epoch terms: what the divergence rules saw, checkable after the fact.
    out["history"] = [
        {k: r[k] for k in ("epoch", "loss", "recon", "kl_shared", "kl_private", "mi", "mi_weight")}
        for r in model.history_
    ]
    for prior in ("standard", "aggregate"):
        model.set_params(private_prior=prior)
        out[f"accuracy_{prior}"] = float(np.mean(model.predict(Xt) == yt))
    return out


def main():
    def extra(p):
        p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
        p.add_argument(
            "--variants",
            nargs="+",
            default=list(VARIANTS),
            choices=VARIANTS,
            help="CPVAE variants to fit (join files with table2_merge.py)",
        )
        p.add_argument(
            "--no-references",
            action="store_true",
            help="skip the CNN and LogisticRegression references",
        )
        p.add_argument(
            "--train-per-class",
            type=int,
            default=None,
            help="training rows per class (a seeded stratified subset), for "
            "sizes between the quick and the full mode",
        )
        p.add_argument(
            "--test-per-class",
            type=int,
            default=None,
            help="test rows per class (a seeded stratified subset)",
        )
        p.add_argument(
            "--conv-channels",
            type=int,
            nargs="+",
            default=None,
            help="convolutional encoders and decoders with these channels (CPVAE's "
            "image_shape and conv_channels); default: MLPs",
        )

        p.add_argument(
            "--private-kl-warmup",
            type=float,
            default=None,
            help="CPVAE's private_kl_warmup (the own private KL's weight rising from 0 "
            "over this fraction of the epochs); default: the estimator's",
        )

    args = C.parse_args(__doc__.splitlines()[0], extra)
    cfg = dict(QUICK if args.quick else FULL, objective=args.objective, as_given=args.as_given)
    if args.train_per_class is not None:
        cfg["n_train_per_class"] = args.train_per_class
    if args.test_per_class is not None:
        cfg["n_test_per_class"] = args.test_per_class
    if args.conv_channels:
        cfg["conv_channels"] = args.conv_channels
    if args.private_kl_warmup is not None:
        cfg["private_kl_warmup"] = args.private_kl_warmup
    results = {}
    with C.Timer() as wall:
        for name in args.datasets:
            data = load(name, cfg)
            likelihood = "bernoulli" if name.endswith("_bernoulli") else "gaussian"
            print(f"{name}: train {data[0].shape}, test {data[2].shape}, {likelihood}", flush=True)
            entry = {
                "n_train": len(data[0]),
                "n_test": len(data[2]),
                "likelihood": likelihood,
                "runs": [],
            }
            for seed in args.seeds:
                run = {"seed": seed}
                for v in args.variants:
                    run[v] = cpvae_accuracy(
                        data,
                        v,
                        likelihood,
                        cfg,
                        seed,
                        args.device,
                        (args.anneal_final, args.anneal_fraction),
                    )
                    print(
                        f"  seed {seed} {v:7s} acc standard {run[v]['accuracy_standard']:.3f}"
                        f"  aggregate {run[v]['accuracy_aggregate']:.3f}"
                        f"  ({run[v]['fit_seconds']:.0f}s)",
                        flush=True,
                    )
                if likelihood == "gaussian" and not args.no_references:
                    with C.Timer() as t:
                        run["cnn"] = cnn_accuracy(data, cfg, seed, args.device)
                    run["logreg"] = logreg_accuracy(data)
                    print(
                        f"  seed {seed} cnn {run['cnn']:.3f} ({t.seconds:.0f}s)  "
                        f"logreg {run['logreg']:.3f}",
                        flush=True,
                    )
                entry["runs"].append(run)
            entry["summary"] = summarise(entry["runs"])
            results[name] = entry
            # Written after every dataset, so that an interrupted run keeps what it did.
            _write(args, cfg, results, wall.elapsed())
    print(f"wall time {wall.seconds:.0f}s")
    _write(args, cfg, results, wall.seconds)


def _write(args, cfg, results, seconds):
    out = {
        "config": cfg,
        "seeds": args.seeds,
        "results": results,
        "paper": PAPER,
        "anneal_schedule": (args.anneal_final, args.anneal_fraction),
        "mode": ("quick" if args.quick else "full")
        + (
            f", {args.train_per_class} training rows per class"
            if args.train_per_class is not None
            else ""
        ),
        "device": args.device,
        "wall_seconds": seconds,
        "hardware": C.hardware(),
        "commit": C.git_commit(),
    }
    C.write_result("table2" + ("_quick" if args.quick else ""), out, args.tag)


def summarise(runs):
    out = {}
    for v in VARIANTS:
        if not all(v in r for r in runs):  # a run with --variants
            continue
        for prior in ("standard", "aggregate"):
            out[f"{v}_{prior}"] = C.mean_sd([r[v][f"accuracy_{prior}"] for r in runs])
    for ref in ("cnn", "logreg"):
        if all(ref in r for r in runs):
            out[ref] = C.mean_sd([r[ref] for r in runs])
    return out


if __name__ == "__main__":
    main()
