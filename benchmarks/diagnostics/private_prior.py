"""Why ``private_prior="aggregate"`` is the default: the evidence, on data with known truth.

Eq. 4 puts no KL term on a population's own private posterior, so q_k(t | x) of population
k's rows drifts away from N(0, I) while the MI term pins other populations' rows to it.
The importance-sampled likelihood of eq. 7-8 with the N(0, I) prior then charges the
*correct* population about KL(q_k(t|x) || N(0, I)) nats. This script measures that gap
and the accuracy of `predict` under both priors, for the MI objective and the ELBO.

Run: ``python -m benchmarks.diagnostics.private_prior`` (about a minute on 2 CPU cores).
"""

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from benchmarks._common import make_populations
from sklearn_cpvae import CPVAE


def own_and_other_kl(model, X, idx):
    with torch.no_grad():
        mu, lv = model.module_.encode_private_all(torch.as_tensor(X, dtype=torch.float32))
    kl = (0.5 * (lv.exp() + mu**2 - 1 - lv).sum(-1)).numpy()
    k = len(model.classes_)
    own = np.mean([kl[j, idx == j].mean() for j in range(k)])
    other = np.mean([kl[j, idx != j].mean() for j in range(k)])
    return float(own), float(other)


def main():
    warnings.simplefilter("ignore")
    rows = []
    for seed in range(3):
        X, y, _, _ = make_populations(n_per_pop=600, random_state=seed)
        X, X_test, y, y_test = train_test_split(X, y, test_size=0.5, stratify=y, random_state=seed)
        scaler = StandardScaler().fit(X)
        X, X_test = scaler.transform(X), scaler.transform(X_test)
        idx = (y_test == "pop1").astype(int)
        for objective in ("paper", "elbo"):
            model = CPVAE(
                n_shared=2,
                n_private=2,
                hidden_layer_sizes=(32,),
                max_iter=60,
                batch_size=32,
                n_importance_samples=16,
                objective=objective,
                device="cpu",
                random_state=seed,
            ).fit(X, y)
            acc = {}
            for prior in ("standard", "aggregate"):
                acc[prior] = float(model.set_params(private_prior=prior).score(X_test, y_test))
            own, other = own_and_other_kl(model, X_test, idx)
            rows.append(
                dict(
                    seed=seed,
                    objective=objective,
                    kl_own=own,
                    kl_other=other,
                    acc_standard=acc["standard"],
                    acc_aggregate=acc["aggregate"],
                )
            )
            print(
                f"seed {seed} {objective:4s}  KL(q_k||N(0,I)) own {own:6.2f}  other {other:5.2f}"
                f"  accuracy: standard {acc['standard']:.3f}  aggregate {acc['aggregate']:.3f}"
            )
    out = Path(__file__).resolve().parents[1] / "results" / "diagnostics" / "private_prior.json"
    out.write_text(
        json.dumps(
            dict(rows=rows, torch=torch.__version__, date=time.strftime("%Y-%m-%d")), indent=1
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
