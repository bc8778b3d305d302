"""``CPVAE(compile=True)`` against eager training, in the same process.

    python -m benchmarks.perf.compile_speed [--ks 2 10] [--features 784] [--hidden 512]
        [--steps 6] [--epochs 4] [--device cpu]

For each K: MNIST-shaped synthetic rows (``--features`` columns, one hidden layer of
``--hidden``, n_shared = 100, n_private = 25, ``batch_size = 800 // K``), ``--steps``
minibatches per epoch. Fits eager, compiled, compiled again (same seed: is it bitwise
reproducible?) and eager again, and reports the median epoch time of each (the first
epoch, which holds the compilation, apart), the compiled/eager ratio against both eager
fits, the compilation time, and how far the compiled losses are from the eager ones.
Writes ``benchmarks/results/perf/speed_compile_<device>.json``.
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from benchmarks._common import hardware, write_result
from sklearn_cpvae import CPVAE


def fit(X, y, k, args, compile):
    model = CPVAE(
        n_shared=100,
        n_private=25,
        hidden_layer_sizes=(args.hidden,),
        batch_size=max(1, 800 // k),
        max_iter=args.epochs,
        n_importance_samples=4,
        device=args.device,
        random_state=0,
        compile=compile,
    )
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    wall = time.perf_counter() - tic
    times = [r["time"] for r in model.history_]
    weights = torch.cat([p.detach().flatten() for p in model.module_.parameters()])
    return dict(
        first_epoch_s=times[0],
        median_epoch_s=statistics.median(times[1:]),
        epoch_s=times,
        wall_s=wall,
        loss=model.loss_curve_,
    ), weights


def compare(X, y, k, args):
    """Eager, compiled, compiled again and eager again on the same rows (``args``:
    ``hidden``, ``epochs``, ``device``): epoch times, their ratios, compilation time,
    whether the compiled fit repeats bitwise and how far it is from the eager one."""
    eager1, w_eager = fit(X, y, k, args, False)
    comp1, w_comp1 = fit(X, y, k, args, True)
    comp2, w_comp2 = fit(X, y, k, args, True)
    eager2, _ = fit(X, y, k, args, False)
    eager = statistics.mean([eager1["median_epoch_s"], eager2["median_epoch_s"]])
    compiled = statistics.mean([comp1["median_epoch_s"], comp2["median_epoch_s"]])
    row = dict(
        eager_first=eager1,
        compiled_first=comp1,
        compiled_second=comp2,
        eager_second=eager2,
        rows_per_epoch=len(X),
        eager_epoch_s=eager,
        compiled_epoch_s=compiled,
        compiled_over_eager=compiled / eager,
        compiled_over_eager_each=[
            c["median_epoch_s"] / e["median_epoch_s"]
            for c in (comp1, comp2)
            for e in (eager1, eager2)
        ],
        compile_overhead_s=comp1["first_epoch_s"] - eager1["first_epoch_s"],
        compiled_bitwise_reproducible=bool(torch.equal(w_comp1, w_comp2)),
        compiled_vs_eager_max_weight_diff=float((w_comp1 - w_eager).abs().max()),
        compiled_vs_eager_max_loss_rel_diff=float(
            max(abs(a - b) / abs(b) for a, b in zip(comp1["loss"], eager1["loss"]))
        ),
    )
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", type=int, nargs="+", default=[2, 10])
    p.add_argument("--features", type=int, default=784)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tag", default=None)
    args = p.parse_args()
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    rows = {}
    for k in args.ks:
        n = args.steps * k * max(1, 800 // k)
        X = rng.normal(size=(n, args.features)).astype(np.float32)
        y = np.arange(n) % k
        row = compare(X, y, k, args)
        rows[str(k)] = row
        print(
            f"K={k}: eager {row['eager_epoch_s']:.3f} s/epoch, compiled "
            f"{row['compiled_epoch_s']:.3f} s/epoch "
            f"(ratio {row['compiled_over_eager']:.2f}; each {row['compiled_over_eager_each']}), "
            f"compilation {row['compile_overhead_s']:.1f} s, bitwise reproducible "
            f"{row['compiled_bitwise_reproducible']}, max |w_compiled - w_eager| "
            f"{row['compiled_vs_eager_max_weight_diff']:.2g}",
            flush=True,
        )
    write_result(
        f"speed_compile_{args.device.split(':')[0]}",
        dict(
            args=vars(args),
            results=rows,
            hardware=hardware(),
            load_average_at_end=list(__import__("os").getloadavg()),
            wall_seconds=time.perf_counter() - start,
        ),
        tag=args.tag,
    )


if __name__ == "__main__":
    main()
