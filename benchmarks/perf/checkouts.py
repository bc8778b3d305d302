"""Inference of two checkouts of the library against each other, alternated.

A change to the inference path is measured by running the same measurement on the
library before and after it: ``--checkouts`` names two source trees (e.g. this one and a
``git worktree`` of an earlier commit), and rounds alternate between them in ABBA order,
each measurement in a child process of its own that imports ``sklearn_cpvae`` (and the
benchmark helpers) from its tree. A child fits the MNIST-shaped model of
``bench_speed.py`` for one epoch at K populations, then times ``predict_proba`` and
``score_samples`` with S = 50 importance samples (``bench_speed.predict``: rows/s and
the fraction of the GEMM rate calibrated before and after), and returns a digest of the
probabilities, so that the two trees' results can be compared too.

    git worktree add /tmp/before <commit>
    python -m benchmarks.perf.checkouts --checkouts . /tmp/before --ks 50 10

Writes ``benchmarks/results/perf/checkouts.json``.
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

METHODS = ("predict_proba", "score_samples")


def measure(k, predict_gflop, repeats):
    """One side, in a child whose ``sys.path`` starts with the tree under test."""
    import sklearn_cpvae
    from benchmarks.perf.bench_speed import BATCH, HIDDEN, N_PRIVATE, N_SHARED, make_data, predict
    from sklearn_cpvae import CPVAE

    x, y = make_data(BATCH * 2, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = CPVAE(
            N_SHARED,
            N_PRIVATE,
            hidden_layer_sizes=(HIDDEN,),
            batch_size=BATCH // k,
            max_iter=1,
            random_state=0,
        ).fit(x, y)
    out = {"library": sklearn_cpvae.__file__}
    for method in METHODS:
        out[method] = predict(est, k, repeats, "cpu", predict_gflop * 1e9, method=method)
    probe = est.predict_proba(make_data(64, k, seed=1)[0])
    out["digest"] = hashlib.sha256(probe.tobytes()).hexdigest()
    return out


def compare(k, trees, args):
    runs = {t: [] for t in trees}
    for r in range(args.rounds):
        for tree in trees if r % 2 == 0 else trees[::-1]:
            cmd = [
                sys.executable, str(Path(__file__).resolve()), "--child", "--library", tree,
                "--ks", str(k), "--predict-gflop", str(args.predict_gflop),
                "--repeats", str(args.repeats), "--threads", str(args.threads),
            ]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[tree].append(json.loads(out.strip().splitlines()[-1]))
    med = {
        t: {
            m: {
                q: statistics.median(x[m][q] for x in runs[t])
                for q in ("rows_per_s", "roofline_fraction")
            }
            for m in METHODS
        }
        for t in trees
    }
    same = len({x["digest"] for t in trees for x in runs[t]}) == 1
    a, b = trees
    for m in METHODS:
        print(
            f"K={k:3d} {m}: {a} {med[a][m]['rows_per_s']:.1f} rows/s "
            f"({med[a][m]['roofline_fraction']:.0%} of the GEMM rate), {b} "
            f"{med[b][m]['rows_per_s']:.1f} rows/s ({med[b][m]['roofline_fraction']:.0%}); "
            f"ratio {med[a][m]['rows_per_s'] / med[b][m]['rows_per_s']:.2f}",
            flush=True,
        )
    print(f"K={k:3d}: predict_proba bitwise equal across the trees: {same}", flush=True)
    return dict(k=k, runs=runs, medians=med, bitwise_equal=same)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkouts", nargs=2, default=None, metavar="TREE")
    ap.add_argument("--ks", type=int, nargs="+", default=[50, 10, 2])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--predict-gflop", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/perf/checkouts.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--library", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, str(Path(args.library).resolve()))
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.ks[0], args.predict_gflop, args.repeats)))
        return
    if args.checkouts is None:
        ap.error("--checkouts needs two source trees")
    from benchmarks._timing import write_comparison

    trees = [str(Path(t).resolve()) for t in args.checkouts]
    load_before = os.getloadavg()
    results = [compare(k, trees, args) for k in args.ks]
    write_comparison(args.out, args, results, load_average_before=load_before)


if __name__ == "__main__":
    main()
