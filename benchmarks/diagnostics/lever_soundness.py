"""Is ``predict`` still a sound likelihood classifier under an objective lever?

For each configuration (``LEVERS``: CPVAE keyword arguments), on the two-Gaussian
reproducer of ``benchmarks.diagnostics.defaults_evidence`` (LDA 0.942):

* ``predict`` accuracy, held-out log-likelihood, and the parts of eq. 8's log-weight for
  the right and the wrong population (what the decoder explains, what the private code
  costs), with the default sizes;
* accuracy against training length (10, 100, 1000 epochs, no early stop) with
  n_shared = n_private = 2, where the 0.1 defaults fell from 0.958 to 0.558.

    python -m benchmarks.diagnostics.lever_soundness --levers elbo_mi pkl0.5 \
        --out benchmarks/results/diagnostics/lever_soundness.json
"""

import argparse
import json
import time

import numpy as np
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from benchmarks._common import git_commit, hardware
from benchmarks.diagnostics.defaults_evidence import fit, two_gaussians, weight_parts

LEVERS = {
    "elbo_mi": {"private_kl_weight": 1.0},
    "pkl0.5": {"private_kl_weight": 0.5},
    "pkl0.2": {"private_kl_weight": 0.2},
    "inv10": {"shared_invariance": 10.0},
    "free1": {"private_free_nats": 1.0},
    "free5": {"private_free_nats": 5.0},
    "free20": {"private_free_nats": 20.0},
    "warm0.5": {"private_kl_warmup": 0.5},
    "a3": {"mi_weight": 3.0},
    "adv1": {"shared_adversary": 1.0},
    "adv10": {"shared_adversary": 10.0},
    "adv100": {"shared_adversary": 100.0},
}
EPOCHS = (10, 100, 1000)


def check(params):
    X, y, X_te, y_te = two_gaussians()
    model = fit(X, y, **params)
    own, other = weight_parts(model, X_te, y_te)
    out = {
        "accuracy": float(np.mean(model.predict(X_te) == y_te)),
        "heldout_loglik": float(model.score_samples(X_te, populations=y_te).mean()),
        "eq8_own_population": own,
        "eq8_other_population": other,
        "epochs_fitted": model.n_iter_,
        "accuracy_by_epochs": {},
    }
    for n in EPOCHS:
        m = fit(X, y, n_shared=2, n_private=2, max_iter=n, n_iter_no_change=n, **params)
        out["accuracy_by_epochs"][n] = float(np.mean(m.predict(X_te) == y_te))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    X, y, X_te, y_te = two_gaussians()
    lda = float(np.mean(LinearDiscriminantAnalysis().fit(X, y).predict(X_te) == y_te))
    result = {"lda": lda, "levers": {}}
    t0 = time.perf_counter()
    for name in args.levers:
        r = check(LEVERS[name])
        result["levers"][name] = {"params": LEVERS[name], **r}
        print(
            f"{name:8s} acc {r['accuracy']:.3f} (LDA {lda:.3f}) loglik {r['heldout_loglik']:.2f} "
            f"own recon/rate {r['eq8_own_population']['recon']:.1f}/"
            f"{r['eq8_own_population']['rate']:.2f} other "
            f"{r['eq8_other_population']['recon']:.1f}/{r['eq8_other_population']['rate']:.2f}"
            f" | by epochs {r['accuracy_by_epochs']}",
            flush=True,
        )
    result.update(wall_seconds=time.perf_counter() - t0, commit=git_commit(), hardware=hardware())
    print(f"wall {result['wall_seconds']:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
