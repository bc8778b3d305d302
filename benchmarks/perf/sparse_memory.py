"""Peak memory of CPVAE on a sparse count matrix whose dense form does not fit the budget.

    python -m benchmarks.perf.sparse_memory [--rows 200000] [--cols 20000]
        [--density 0.01] [--budget-gib 4] [--epochs 1]

Builds a CSR count matrix (default 200k x 20k at 1% density: 40M non-zeros, 0.3 GiB in
CSR, 14.9 GiB dense float32), fits ``CPVAE(likelihood="poisson")`` on it, then runs
``transform`` and ``predict`` on 20k rows. The peak resident memory of the process
(``VmHWM``, reset before the fit where the kernel allows) is compared with the budget
and with the dense size. Writes ``benchmarks/results/perf/sparse_memory.json``.
"""

import argparse
import json
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sklearn_cpvae import CPVAE

GIB = 2**30


def peak_rss_bytes():
    """Peak resident set size of this process (Linux VmHWM, else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def random_counts(n, d, density, seed):
    """CSR float32 counts, ``density * d`` non-zeros per row, built without a dense copy."""
    rng = np.random.default_rng(seed)
    per_row = max(1, int(round(density * d)))
    indptr = np.arange(n + 1, dtype=np.int64) * per_row
    cols = np.empty(n * per_row, dtype=np.int32)
    step = 10_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = rng.integers(0, d, size=(stop - start, per_row), dtype=np.int32)
        block.sort(axis=1)
        cols[start * per_row : stop * per_row] = block.ravel()
    data = (1 + rng.poisson(1.0, size=n * per_row)).astype(np.float32)
    X = sp.csr_matrix((data, cols, indptr), shape=(n, d))
    X.sum_duplicates()
    return X


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cols", type=int, default=20_000)
    ap.add_argument("--density", type=float, default=0.01)
    ap.add_argument("--budget-gib", type=float, default=4.0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--populations", type=int, default=2)
    args = ap.parse_args(argv)

    tic = time.perf_counter()
    X = random_counts(args.rows, args.cols, args.density, seed=0)
    y = np.arange(args.rows) % args.populations
    csr_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    dense_bytes = args.rows * args.cols * 4
    build_s = time.perf_counter() - tic
    before = current_rss_bytes()
    can_reset = reset_peak()

    model = CPVAE(
        n_shared=10,
        n_private=5,
        likelihood="poisson",
        hidden_layer_sizes=(32,),
        batch_size=64,
        max_iter=args.epochs,
        n_importance_samples=4,
        device="cpu",
        random_state=0,
    )
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    fit_s = time.perf_counter() - tic
    tic = time.perf_counter()
    sub = X[:20_000]
    codes = model.transform(sub, y[:20_000])
    pred = model.predict(sub)
    infer_s = time.perf_counter() - tic
    peak = peak_rss_bytes()

    result = {
        "rows": args.rows,
        "cols": args.cols,
        "density": args.density,
        "nnz": int(X.nnz),
        "csr_gib": csr_bytes / GIB,
        "dense_float32_gib": dense_bytes / GIB,
        "budget_gib": args.budget_gib,
        "rss_before_fit_gib": before / GIB,
        "peak_rss_gib": peak / GIB,
        "peak_reset_before_fit": can_reset,
        "peak_over_before_fit_gib": (peak - before) / GIB,
        "epochs": model.n_iter_,
        "build_s": build_s,
        "fit_s": fit_s,
        "transform_predict_20k_s": infer_s,
        "codes_shape": list(codes.shape),
        "predicted_fraction_pop0": float(np.mean(pred == 0)),
        "within_budget": peak / GIB <= args.budget_gib,
    }
    out = Path(__file__).resolve().parents[1] / "results" / "perf" / "sparse_memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(
        f"sparse {args.rows} x {args.cols} at {args.density:.0%} density: nnz={X.nnz:,}, "
        f"CSR {csr_bytes / GIB:.2f} GiB, dense float32 would be {dense_bytes / GIB:.1f} GiB "
        f"(budget {args.budget_gib:.1f} GiB)\n"
        f"peak RSS {peak / GIB:.2f} GiB (RSS before fit {before / GIB:.2f} GiB; peak "
        f"{'reset' if can_reset else 'NOT reset'} before fit) -> "
        f"{'within' if result['within_budget'] else 'OVER'} budget\n"
        f"fit {model.n_iter_} epoch(s) {fit_s:.0f} s; transform+predict of 20k rows "
        f"{infer_s:.0f} s\nwrote {out}"
    )
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
