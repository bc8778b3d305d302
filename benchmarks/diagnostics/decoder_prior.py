"""What the decoders' weight prior (``decoder_weight_decay``) takes from the likelihood classifier.

Fits the defaults on one quality-panel case (quick size, data, split and model seed
``--seed``) at each ``--decays`` value and prints the squared norm of the shared and
the private decoders' weights, the last epoch's terms (nats per row), and on the
held-out rows the margin of eq. 8's log-likelihood of a row's own population over the
best other one (median, nats) with the ``predict`` accuracy it gives (equal priors).

    python -m benchmarks.diagnostics.decoder_prior --case mnist_10 --decays 0 0.1
"""

import argparse
import time
import warnings

import numpy as np
import torch

from benchmarks import _common as C
from benchmarks.quality.panel import CASES, prepare_case
from sklearn_cpvae import CPVAE
from sklearn_cpvae._training import decoder_weights


def squared_norm(module, prefix):
    chosen = {id(p) for p in decoder_weights(module)}
    return sum(
        float(p.detach().square().sum())
        for name, p in module.named_parameters()
        if name.startswith(prefix) and id(p) in chosen
    )


def one_fit(data, decay, seed):
    params = {**data["fit_kwargs"], "random_state": seed, "decoder_weight_decay": decay}
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CPVAE(**params).fit(data["Xtr"], data["ytr"])
    fit_s = time.perf_counter() - t
    ll = model._log_likelihoods(np.asarray(data["Xte"], dtype=np.float32))
    rows = np.arange(len(ll))
    own_idx = np.searchsorted(model.classes_, data["yte"])
    own = ll[rows, own_idx]
    others = ll.copy()
    others[rows, own_idx] = -np.inf
    margin = own - others.max(axis=1)
    last = model.history_[-1]
    return {
        "decay": decay,
        "fit_s": round(fit_s, 1),
        "n_iter": model.n_iter_,
        "dec_shared_sq_norm": squared_norm(model.module_, "dec_shared."),
        "dec_private_sq_norm": squared_norm(model.module_, "dec_private."),
        "last_epoch": {k: last[k] for k in ("recon", "kl_shared", "kl_private", "mi")},
        "margin_median": float(np.median(margin)),
        "accuracy_equal_priors": float((margin > 0).mean()),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="mnist_10", choices=sorted(CASES))
    p.add_argument("--decays", nargs="+", type=float, default=[0.0, 0.1])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    _, data = prepare_case(args.case, "quick", args.seed)
    runs = []
    for decay in args.decays:
        r = one_fit(data, decay, args.seed)
        runs.append(r)
        t = r["last_epoch"]
        print(
            f"decay {decay:g}: |W shared dec|^2 {r['dec_shared_sq_norm']:.1f}, "
            f"|W private dec|^2 {r['dec_private_sq_norm']:.1f}; recon {t['recon']:.1f} "
            f"kl_shared {t['kl_shared']:.1f} kl_private {t['kl_private']:.1f}; own-population "
            f"margin median {r['margin_median']:.2f} nats, "
            f"accuracy {r['accuracy_equal_priors']:.3f} ({r['fit_s']} s)",
            flush=True,
        )
    C.write_runs(f"decoder_prior_{args.case}", args, runs, start)


if __name__ == "__main__":
    main()
