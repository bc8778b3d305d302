"""Why the 0.1 defaults failed on easy data, and what each 0.2 default changes.

Three measurements, each on data whose answer a linear baseline gets right:

1. ``reproducer``: two Gaussian populations (10 features, mean shift 1). For each
   objective: ``predict`` accuracy, held-out log-likelihood, the median variance of a
   population's own private posterior, and the two parts of eq. 8's log-weight that
   differ between the right and the wrong population (what the decoder explains and
   what the private code costs).
2. ``epochs``: accuracy against training length (no early stop) with
   n_shared = n_private = 2, as the likelihood classifier is used after a long fit.
3. ``units``: three populations with feature variances 3.7 to 114, refitted after
   multiplying X by 1e-3 ... 1e6 or adding 100.

Run: ``python -m benchmarks.diagnostics.defaults_evidence`` (about 1.5 to 3 minutes on
one core); writes ``benchmarks/results/diagnostics/defaults_evidence.json``.
"""

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import ConvergenceWarning

from benchmarks._common import git_commit, hardware
from benchmarks.quality.panel import two_gaussian
from sklearn_cpvae import CPVAE, _inference
from sklearn_cpvae._objective import importance_terms, proposal

CONFIGS = {
    "old_defaults": dict(objective="paper", private_prior="aggregate", standardize=False),
    "paper_literal": dict(objective="paper", private_prior="standard", standardize=False),
    "elbo": dict(objective="elbo", standardize=False),
    "new_defaults": {},
}


def two_gaussians():
    """The panel's two-Gaussian reproducer, as ``X, y, X_test, y_test``."""
    case = two_gaussian("quick", 0)
    tr, te = case["split"]
    return case["X"][tr], case["y"][tr], case["X"][te], case["y"][te]


def unequal_scales():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 200)
    scales = np.sqrt(np.geomspace(3.7, 114, 20))
    X = (rng.normal(size=(600, 20)) + 0.7 * rng.normal(size=(3, 20))[y]) * scales
    te = rng.permutation(600)[:180]
    tr = np.setdiff1d(np.arange(600), te)
    return X[tr], y[tr], X[te], y[te]


def fit(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return CPVAE(random_state=0, **params).fit(X, y)


def weight_parts(model, X, y):
    """Mean over rows of eq. 8's recon and private-rate parts, own vs other population."""
    idx = np.searchsorted(model.classes_, y)
    gen = torch.Generator().manual_seed(0)
    s = model.n_importance_samples
    eps = torch.randn((s, model.n_shared + model.n_private), generator=gen)
    mean = model.private_code_mean_ if model._private_prior() == "aggregate" else None
    k = len(model.classes_)
    pm = torch.zeros((k, model.n_private)) if mean is None else torch.as_tensor(mean).float()
    plv = (
        torch.zeros_like(pm)
        if mean is None
        else torch.log(torch.as_tensor(model.private_code_var_)).float()
    )
    with torch.inference_mode():
        recon, _, log_pt_qt = importance_terms(
            model.module_,
            proposal(model.module_, torch.as_tensor(X, dtype=torch.float32)),
            eps[:, : model.n_shared],
            eps[:, model.n_shared :],
            pm,
            plv,
        )
    recon, rate = recon.mean(1).numpy(), -log_pt_qt.mean(1).numpy()  # (K, n)
    rows = np.arange(len(y))
    own = {"recon": float(recon[idx, rows].mean()), "rate": float(rate[idx, rows].mean())}
    other = {
        "recon": float(recon[1 - idx, rows].mean()),
        "rate": float(rate[1 - idx, rows].mean()),
    }
    return own, other


def reproducer():
    X, y, X_te, y_te = two_gaussians()
    out = {"lda": float(np.mean(LinearDiscriminantAnalysis().fit(X, y).predict(X_te) == y_te))}
    for name, params in CONFIGS.items():
        model = fit(X, y, **params)
        idx = np.searchsorted(model.classes_, y)
        _, var = _inference.encode(
            model.module_, "cpu", X, idx, has_private=model.has_private_, private_var=True
        )
        own, other = weight_parts(model, X_te, y_te)
        out[name] = {
            "accuracy": float(np.mean(model.predict(X_te) == y_te)),
            "heldout_loglik": float(model.score_samples(X_te, populations=y_te).mean()),
            "own_private_var_median": float(np.median(var)),
            "eq8_own_population": own,
            "eq8_other_population": other,
            "epochs": model.n_iter_,
        }
        print("reproducer", name, out[name], flush=True)
    return out


def epochs():
    X, y, X_te, y_te = two_gaussians()
    out = {}
    for name in ("old_defaults", "new_defaults"):
        out[name] = {}
        for n in (10, 50, 100, 200, 400, 1000):
            model = fit(
                X, y, n_shared=2, n_private=2, max_iter=n, n_iter_no_change=n, **CONFIGS[name]
            )
            out[name][n] = float(np.mean(model.predict(X_te) == y_te))
        print("epochs", name, out[name], flush=True)
    return out


def units():
    X, y, X_te, y_te = unequal_scales()
    out = {"lda": float(np.mean(LinearDiscriminantAnalysis().fit(X, y).predict(X_te) == y_te))}
    moves = {"x1": (1, 0), "x1e-3": (1e-3, 0), "x10": (10, 0), "x1e6": (1e6, 0), "+100": (1, 100)}
    for name in ("old_defaults", "new_defaults"):
        out[name] = {}
        for label, (c, a) in moves.items():
            model = fit(X * c + a, y, **CONFIGS[name])
            out[name][label] = float(np.mean(model.predict(X_te * c + a) == y_te))
        print("units", name, out[name], flush=True)
    return out


def main():
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = {"reproducer": reproducer(), "epochs": epochs(), "units": units()}
    result.update(
        configs=CONFIGS,
        wall_seconds=time.perf_counter() - t0,
        commit=git_commit(),
        hardware=hardware(),
    )
    out = Path(__file__).resolve().parents[1] / "results" / "diagnostics"
    out.mkdir(parents=True, exist_ok=True)
    (out / "defaults_evidence.json").write_text(json.dumps(result, indent=1))
    print(f"wall {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
