"""What the MI objective does to classification: the rate of the own private code.

Eq. 4 drops KL(q_k(t|x) || p(t)) for a population's own rows, so nothing limits how much
information (rate) the own private code carries; the importance-sampled log p(x | k) of
eq. 7-8 then charges that rate, ``E_q[log p(t) - log q_k(t|x)]``, to the *true* population,
while the other encoders, pushed to the prior by the MI term, are charged ~0. This script
fits Table 2's configuration (quick, or full with ``--train-per-class``) and prints, on
test rows, for the true population and for the others: the KL of q_k(t|x) to N(0, I) and
to the aggregate prior, and the posterior standard deviation of t. It then splits the
classification margin, ELBO of the true population minus the best other population's,
into what the decoder explains (``recon``) and what the private code costs (``rate``,
under the aggregate prior); the shared part is the same for every population and cancels.

    python -m benchmarks.diagnostics.diagnose_classification --seeds 0
    python -m benchmarks.diagnostics.diagnose_classification --dataset grassy_mnist \
        --train-per-class 1000 --n-test 2000 --tag grassy_1000
"""

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from benchmarks import _common as C
from benchmarks.paper import table2_classification as T2
from sklearn_cpvae import CPVAE
from sklearn_cpvae._objective import importance_terms, proposal


def kl_diag(mu, lv, pm, plv):
    """KL(N(mu, e^lv) || N(pm, e^plv)) summed over the last axis."""
    return 0.5 * torch.sum(plv - lv + (torch.exp(lv) + (mu - pm) ** 2) / torch.exp(plv) - 1, -1)


def margin_split(model, Xt, yt, n_samples=50, seed=0):
    """Mean over rows of the true-minus-best-other ELBO margin and of its two parts."""
    m = model.module_
    gen = torch.Generator().manual_seed(seed)
    eps_z = torch.randn(n_samples, m.n_shared, generator=gen)
    eps_t = torch.randn(n_samples, m.n_private, generator=gen)
    pm = torch.as_tensor(model.private_code_mean_, dtype=torch.float32)
    plv = torch.log(torch.as_tensor(model.private_code_var_, dtype=torch.float32))
    recon, rate = [], []
    with torch.inference_mode():
        for sl in np.array_split(np.arange(len(Xt)), max(1, len(Xt) // 250)):
            q = proposal(m, torch.from_numpy(Xt[sl]))
            r, _, pt = importance_terms(m, q, eps_z, eps_t, pm, plv)
            recon.append(r.mean(1).T)  # (n, K)
            rate.append(-pt.mean(1).T)
    recon, rate = torch.cat(recon).double(), torch.cat(rate).double()
    elbo = recon - rate
    rows = torch.arange(len(yt))
    true = torch.as_tensor(yt)
    masked = elbo.clone()
    masked[rows, true] = -torch.inf
    rival = masked.argmax(1)
    # recon_accuracy: what the decoders alone would classify, were the rate free.
    return {
        "elbo_accuracy": float((elbo.argmax(1) == true).double().mean()),
        "recon_accuracy": float((recon.argmax(1) == true).double().mean()),
        "margin": float((elbo[rows, true] - elbo[rows, rival]).mean()),
        "recon_margin": float((recon[rows, true] - recon[rows, rival]).mean()),
        "rate_margin": float((rate[rows, true] - rate[rows, rival]).mean()),
    }


def main():
    def extra(p):
        p.add_argument("--dataset", default="mnist", choices=T2.DATASETS)
        p.add_argument(
            "--train-per-class",
            type=int,
            default=None,
            help="full configuration with this many training rows per class",
        )
        p.add_argument("--n-test", type=int, default=None, help="first test rows scored")

    args = C.parse_args(__doc__.splitlines()[0], extra)
    cfg = (
        T2.QUICK
        if args.train_per_class is None
        else dict(T2.FULL, n_train_per_class=args.train_per_class)
    )
    X, y, Xt, yt, _ = T2.load(args.dataset, cfg)
    if args.n_test is not None:
        keep = C.stratified_subset(yt, args.n_test // 10, 2)
        Xt, yt = Xt[keep], yt[keep]
    rows = []
    for variant in ("no_mi", "alpha1"):
        model = CPVAE(
            T2.N_SHARED,
            T2.N_PRIVATE,
            hidden_layer_sizes=cfg["hidden"],
            max_iter=cfg["max_iter"],
            tol=0.0,
            n_iter_no_change=cfg["max_iter"],
            batch_size=cfg["batch_size"],
            priors="uniform",
            n_importance_samples=cfg["n_importance_samples"],
            device=args.device,
            random_state=args.seeds[0],
            **C.variant_params(variant, cfg["max_iter"]),
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
        rec = {"variant": variant, "accuracy_standard": float(np.mean(model.predict(Xt) == yt))}
        for name, v in (
            ("kl_to_standard", kl_std),
            ("kl_to_aggregate", kl_agg),
            ("posterior_sd", sd),
        ):
            rec[f"{name}_own"] = float(v[own].mean())
            rec[f"{name}_others"] = float(v[~own].mean())
        rec.update(margin_split(model, Xt, yt, cfg["n_importance_samples"], args.seeds[0]))
        rows.append(rec)
        print(
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items()}, flush=True
        )
    C.write_result(
        "diagnose_classification",
        {
            "config": cfg,
            "dataset": args.dataset,
            "n_test": len(yt),
            "rows": rows,
            "hardware": C.hardware(),
        },
        args.tag,
    )


if __name__ == "__main__":
    main()
