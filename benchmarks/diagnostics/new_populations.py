"""Cost and quality of ``CPVAE.add_populations`` against refitting on every population.

Heart-disease registry (4 hospitals, NaN masked): fit on three hospitals' training rows,
add the fourth with ``add_populations``, and compare with one model fitted on all four:
wall time, held-out hospital accuracy (``predict``), held-out log-likelihood of the new
hospital's rows, and whether the old hospitals' held-out outputs stayed bitwise equal.

    python -m benchmarks.diagnostics.new_populations [--quick] [--seeds 0 1 2]
"""

import time
import warnings

import numpy as np
from sklearn.model_selection import train_test_split

from benchmarks._common import DATA_DIR, hardware, parse_args, write_result
from sklearn_cpvae import CPVAE


def run(seed, max_iter, added):
    data = np.load(DATA_DIR / "heart_disease_multisite" / "heart_disease_multisite.npz")
    X = data["X"].astype(np.float64)
    chol = list(data["feature_names"]).index("chol")
    # chol == 0 is a coded missing value at two sites (docs/omics.md).
    X[X[:, chol] == 0, chol] = np.nan
    sites = data["site_names"][data["site"]]
    tr, te = train_test_split(np.arange(len(X)), test_size=0.3, stratify=sites, random_state=seed)
    params = dict(
        n_shared=3,
        n_private=2,
        hidden_layer_sizes=(64,),
        max_iter=max_iter,
        missing="mask",
        n_importance_samples=50,
        device="cpu",
        random_state=seed,
    )
    old_tr, new_tr = tr[sites[tr] != added], tr[sites[tr] == added]
    old_te = te[sites[te] != added]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model = CPVAE(**params).fit(X[old_tr], sites[old_tr])
        fit_old = time.perf_counter() - t0
        epochs_old = model.n_iter_
        before = model.score_samples(X[old_te], populations=sites[old_te])
        codes_before = model.transform(X[old_te], populations=sites[old_te])
        t0 = time.perf_counter()
        model.add_populations(X[new_tr], sites[new_tr])
        add_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = CPVAE(**params).fit(X[tr], sites[tr])
        refit_time = time.perf_counter() - t0
    new_te = te[sites[te] == added]
    return dict(
        seed=seed,
        fit_three_sites_s=fit_old,
        add_population_s=add_time,
        refit_four_sites_s=refit_time,
        epochs_three_sites=epochs_old,
        epochs_refit=full.n_iter_,
        old_outputs_bitwise_equal=bool(
            np.array_equal(before, model.score_samples(X[old_te], populations=sites[old_te]))
            and np.array_equal(codes_before, model.transform(X[old_te], populations=sites[old_te]))
        ),
        accuracy_added=float(np.mean(model.predict(X[te]) == sites[te])),
        accuracy_refit=float(np.mean(full.predict(X[te]) == sites[te])),
        new_site_loglik_added=float(
            model.score_samples(X[new_te], populations=sites[new_te]).mean()
        ),
        new_site_loglik_refit=float(
            full.score_samples(X[new_te], populations=sites[new_te]).mean()
        ),
    )


def main():
    args = parse_args(__doc__.splitlines()[0])
    max_iter = 40 if args.quick else 200
    t0 = time.perf_counter()
    rows = [run(seed, max_iter, "va") for seed in args.seeds]
    for r in rows:
        print(r)
    write_result(
        "new_populations",
        dict(
            max_iter=max_iter,
            added_site="va",
            runs=rows,
            wall_seconds=time.perf_counter() - t0,
            hardware=hardware(),
        ),
        tag="quick" if args.quick else None,
    )


if __name__ == "__main__":
    main()
