"""One seed fitted on one process and on two gloo processes: throughput and agreement.

    python -m benchmarks.perf.distributed_fit [--k 2] [--steps 6] [--epochs 3]

MNIST-shaped rows (784 features, hidden 512, n_shared 100, n_private 25, 800-row global
steps, exact MI term), the whole ``fit`` in fresh processes started the way ``torchrun``
starts them (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` in the
environment, one torch thread each): once alone, once as two ranks sharing every
minibatch, once alone on the same rows moved by one float32 ulp each, and once alone with
another seed. The two ranks sum each gradient in another order than one process does (two
half-minibatch sums, then the all-reduce), a change of float32 rounding only; the one-ulp
fit shows how far training carries a change of that size. The two-rank fit should be as
close to the one-rank fit as the one-ulp fit is, and far closer than a change of seed.
Writes ``benchmarks/results/perf/speed_distributed.json``.
"""

import argparse
import multiprocessing
import os
import socket
import statistics
import time

import numpy as np

from benchmarks._common import hardware, write_result


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, k, steps, epochs, seed, queue, ulp=False):
    """One process of the launch: only the environment tells it about the others."""
    if world > 1:
        os.environ.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
    import torch

    from benchmarks.perf.bench_speed import BATCH, make_data
    from benchmarks.perf.fit_vs_bare import time_fit

    torch.set_num_threads(1)
    out = {"rank": rank}
    try:
        x, y = make_data(BATCH * steps, k)
        if ulp:
            x = np.nextafter(x, np.float32(np.inf))
        out["fit_s"], est = time_fit(x, y, k, epochs, random_state=seed)
        out["epoch_s"] = [h["time"] for h in est.history_]
        out["rows_per_epoch"] = len(x)
        out["weights"] = {n: v.numpy().copy() for n, v in est.module_.state_dict().items()}
        out["loss"] = list(est.loss_curve_)
        out["proba"] = est.predict_proba(x[:200])
        out["world"] = torch.distributed.get_world_size() if world > 1 else 1
        if world > 1:
            torch.distributed.destroy_process_group()
    except Exception as exc:  # reported to the parent, which raises it
        out["failure"] = repr(exc)
    queue.put(out)


def launch(world, k, steps, epochs, seed=0, timeout=600, ulp=False):
    """Run the fit on ``world`` fresh processes; their results, by rank. ``ulp`` moves
    every entry of X one float32 ulp up."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_worker, args=(r, world, port, k, steps, epochs, seed, queue, ulp))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    failures = [r["failure"] for r in results if "failure" in r]
    if failures:
        raise RuntimeError(f"the {world}-process fit failed: {failures}")
    return sorted(results, key=lambda r: r["rank"])


def _max_diff(a, b):
    return max(float(np.abs(a[n] - b[n]).max()) for n in a)


def _median_diff(a, b):
    return float(np.median(np.concatenate([np.abs(a[n] - b[n]).ravel() for n in a])))


def _rate(r):
    return r["rows_per_epoch"] / statistics.median(r["epoch_s"][1:])


def measure(k=2, steps=6, epochs=3):
    """Throughput of 1 and 2 processes and how far the 2-process fit is from the 1-process
    one (weights, losses, ``predict_proba``), next to the distances that moving X by one
    ulp and another seed make."""
    (one,) = launch(1, k, steps, epochs)
    two = launch(2, k, steps, epochs)
    (one_ulp,) = launch(1, k, steps, epochs, ulp=True)
    (other_seed,) = launch(1, k, steps, epochs, seed=1)
    w1, w2 = one["weights"], two[0]["weights"]
    return dict(
        k=k,
        steps_per_epoch=steps,
        epochs=epochs,
        one_rank=dict(fit_s=one["fit_s"], epoch_s=one["epoch_s"], rows_per_s=_rate(one)),
        two_ranks=[dict(fit_s=r["fit_s"], epoch_s=r["epoch_s"], rows_per_s=_rate(r)) for r in two],
        two_over_one_rate=_rate(two[0]) / _rate(one),
        two_over_one_fit_time=two[0]["fit_s"] / one["fit_s"],
        ranks_bitwise_equal=all(
            np.array_equal(two[1]["weights"][n], v) for n, v in two[0]["weights"].items()
        ),
        max_weight_diff_1_vs_2=_max_diff(w1, w2),
        max_weight_diff_1_vs_ulp=_max_diff(w1, one_ulp["weights"]),
        median_weight_diff_1_vs_2=_median_diff(w1, w2),
        median_weight_diff_1_vs_ulp=_median_diff(w1, one_ulp["weights"]),
        max_loss_rel_diff_1_vs_ulp=max(
            abs(a - b) / abs(b) for a, b in zip(one_ulp["loss"], one["loss"], strict=True)
        ),
        max_weight_diff_seed_0_vs_1=_max_diff(w1, other_seed["weights"]),
        max_loss_rel_diff_1_vs_2=max(
            abs(a - b) / abs(b) for a, b in zip(two[0]["loss"], one["loss"], strict=True)
        ),
        max_proba_diff_1_vs_2=float(np.abs(two[0]["proba"] - one["proba"]).max()),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--steps", type=int, default=6, help="800-row global steps per epoch")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--tag", default=None)
    args = p.parse_args()
    start = time.perf_counter()
    load0 = list(os.getloadavg())
    res = measure(args.k, args.steps, args.epochs)
    print(
        f"K={args.k}: 1 process {res['one_rank']['rows_per_s']:.0f} rows/s, 2 processes "
        f"{res['two_ranks'][0]['rows_per_s']:.0f} rows/s ({res['two_over_one_rate']:.2f}x); "
        f"max |w_2 - w_1| {res['max_weight_diff_1_vs_2']:.2g} against "
        f"{res['max_weight_diff_1_vs_ulp']:.2g} for X moved by one ulp and "
        f"{res['max_weight_diff_seed_0_vs_1']:.2g} for another seed; ranks bitwise equal "
        f"{res['ranks_bitwise_equal']}",
        flush=True,
    )
    write_result(
        "speed_distributed",
        dict(
            args=vars(args),
            result=res,
            hardware={**hardware(), "load_average_at_start": load0},
            load_average_at_end=list(os.getloadavg()),
            wall_seconds=time.perf_counter() - start,
        ),
        tag=args.tag,
    )


if __name__ == "__main__":
    main()
