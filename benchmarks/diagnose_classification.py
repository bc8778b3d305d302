"""What the MI objective does to classification: the rate of the own private code.

Eq. 4 drops KL(q_k(t|x) || p(t)) for a population's own rows, so nothing limits how much
information (rate) the own private code carries; the importance-sampled log p(x | k) of
eq. 7-8 then charges that rate, ``E_q[log p(t) - log q_k(t|x)]``, to the *true* population,
while the other encoders, pushed to the prior by the MI term, are charged ~0. This script
fits Table 2's MNIST quick configuration and prints, on test rows, for the true population
and for the others: the KL of q_k(t|x) to N(0, I) and to the aggregate prior, and the
posterior standard deviation of t.

    PYTHONPATH=. python benchmarks/diagnose_classification.py --seeds 0
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import table2_classification as T2  # noqa: E402

from sklearn_cpvae import CPVAE  # noqa: E402


def kl_diag(mu, lv, pm, plv):
    """KL(N(mu, e^lv) || N(pm, e^plv)) summed over the last axis."""
    return 0.5 * torch.sum(plv - lv + (torch.exp(lv) + (mu - pm) ** 2) / torch.exp(plv) - 1, -1)


def main():
    args = C.parse_args(__doc__.splitlines()[0])
    cfg = T2.QUICK
    X, y, Xt, yt, _ = T2.load("mnist", cfg)
    rows = []
    for variant in ("no_mi", "alpha1"):
        model = CPVAE(
            T2.N_SHARED, T2.N_PRIVATE, hidden_layer_sizes=cfg["hidden"], max_iter=cfg["max_iter"],
            tol=0.0, n_iter_no_change=cfg["max_iter"], batch_size=cfg["batch_size"],
            priors="uniform", n_importance_samples=cfg["n_importance_samples"],
            device=args.device, random_state=args.seeds[0], **C.variant_params(variant, 30),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        with torch.inference_mode():
            mu, lv = model.module_.encode_private_all(torch.from_numpy(Xt))  # (K, n, d)
        k_idx = torch.as_tensor(yt)
        own = torch.zeros(mu.shape[:2], dtype=torch.bool)
        own[k_idx, torch.arange(len(yt))] = True
        pm = torch.as_tensor(model.private_code_mean_, dtype=mu.dtype)[:, None]
        plv = torch.log(torch.as_tensor(model.private_code_var_, dtype=mu.dtype))[:, None]
        kl_std = kl_diag(mu, lv, torch.zeros_like(mu), torch.zeros_like(lv))
        kl_agg = kl_diag(mu, lv, pm, plv)
        sd = torch.exp(0.5 * lv).mean(-1)
        rec = {"variant": variant,
               "accuracy_standard": float(np.mean(model.predict(Xt) == yt))}
        for name, v in (("kl_to_standard", kl_std), ("kl_to_aggregate", kl_agg),
                        ("posterior_sd", sd)):
            rec[f"{name}_own"] = float(v[own].mean())
            rec[f"{name}_others"] = float(v[~own].mean())
        rows.append(rec)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items()},
              flush=True)
    C.write_result("diagnose_classification", {"config": cfg, "rows": rows,
                                               "hardware": C.hardware()})


if __name__ == "__main__":
    main()
