"""Training and inference on a float32 matrix on disk, memory-mapped, never loaded whole.

    python -m benchmarks.perf.out_of_core [--rows 1000000] [--cols 5000] [--path FILE]
        [--steps 20] [--batch-size 512] [--subset 20000] [--infer-rows 50000]

Generates ``--path`` (default ``/tmp/sklearn_cpvae_out_of_core/X_<rows>x<cols>.npy``,
1M x 5k float32 = 20 GB) once, block by block (kept for later runs), with two populations
that differ in a few columns. Then, in this process: ``CPVAE.fit`` on
``np.load(path, mmap_mode="r")`` for ``--steps`` minibatch steps (one epoch, its length
bounded by replacing ``steps_per_epoch``; validation, standardisation moments and the
aggregate private posterior still read every row), ``transform`` and ``predict_proba``
on ``--infer-rows`` rows of the map, and the same bounded fit on ``--subset`` rows
loaded in memory. A sampling thread records the peak of the resident set split into
anonymous memory (``RssAnon``: what the process allocated) and file pages (``RssFile``:
mapped pages of X, which the kernel can drop at any time) every 50 ms; the kernel's
``VmHWM`` (their sum's peak) is recorded too. Writes
``benchmarks/results/perf/speed_out_of_core.json``.
"""

import argparse
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np

import sklearn_cpvae._training as training
from benchmarks._common import hardware, write_result
from sklearn_cpvae import CPVAE

MB = 2**20


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


class PeakRss:
    """Peaks of RssAnon, RssFile and VmRSS sampled by a thread while the block runs."""

    def __init__(self, interval=0.05):
        self.interval = interval

    def __enter__(self):
        self.peak = {k: v for k, v in status().items() if k != "VmHWM"}
        self.start = dict(self.peak)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            for k, v in status().items():
                if k in self.peak:
                    self.peak[k] = max(self.peak[k], v)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.result = {
            "peak_MB": {k: v / MB for k, v in self.peak.items()},
            "start_MB": {k: v / MB for k, v in self.start.items()},
        }


def generate(path, rows, cols, block_rows=20_000):
    """Write the matrix block by block (two populations, shifted in 5 columns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(rows, cols))
    rng = np.random.default_rng(0)
    tic = time.perf_counter()
    for start in range(0, rows, block_rows):
        stop = min(rows, start + block_rows)
        block = rng.standard_normal((stop - start, cols), dtype=np.float32)
        block[(np.arange(start, stop) % 2 == 1), :5] += 2.0
        out[start:stop] = block
    out.flush()
    del out
    os.replace(partial, path)
    return time.perf_counter() - tic


def model(args):
    return CPVAE(
        n_shared=10,
        n_private=5,
        hidden_layer_sizes=(args.hidden,),
        batch_size=args.batch_size,
        max_iter=1,
        n_importance_samples=4,
        device="cpu",
        random_state=0,
    )


def timed_fit(X, y, args):
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one bounded epoch: no convergence
        est = model(args).fit(X, y)
    wall = time.perf_counter() - tic
    epoch = est.history_[0]["time"]
    rows = args.steps * 2 * args.batch_size
    return est, dict(
        wall_s=wall, epoch_s=epoch, train_rows_per_s=rows / epoch, loss=est.loss_curve_
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--cols", type=int, default=5000)
    p.add_argument("--path", type=Path, default=None)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--subset", type=int, default=20_000)
    p.add_argument("--infer-rows", type=int, default=50_000)
    p.add_argument("--tag", default=None)
    args = p.parse_args()
    start = time.perf_counter()
    path = args.path or Path(f"/tmp/sklearn_cpvae_out_of_core/X_{args.rows}x{args.cols}.npy")
    gen_s = None
    if not path.exists():
        gen_s = generate(path, args.rows, args.cols)
        print(f"generated {path} in {gen_s:.0f} s", flush=True)
    X = np.load(path, mmap_mode="r")
    assert X.shape == (args.rows, args.cols) and X.dtype == np.float32
    y = np.arange(args.rows) % 2
    # A bounded number of steps: the epoch length is the only thing replaced.
    training.steps_per_epoch = lambda *a: args.steps
    result = dict(
        args={k: str(v) for k, v in vars(args).items()},
        file_GB=path.stat().st_size / 1e9,
        generation_s=gen_s,
    )
    with PeakRss() as fit_rss:
        est, fit = timed_fit(X, y, args)
    result["memmap_fit"] = {**fit, **fit_rss.result}
    print("memmap fit", result["memmap_fit"], flush=True)
    rows = X[: args.infer_rows]
    with PeakRss() as inf_rss:
        tic = time.perf_counter()
        est.transform(rows, y[: args.infer_rows])
        t_transform = time.perf_counter() - tic
        tic = time.perf_counter()
        est.predict_proba(rows)
        t_proba = time.perf_counter() - tic
    result["memmap_inference"] = dict(
        rows=args.infer_rows,
        transform_rows_per_s=args.infer_rows / t_transform,
        predict_proba_rows_per_s=args.infer_rows / t_proba,
        **inf_rss.result,
    )
    print("memmap inference", result["memmap_inference"], flush=True)
    subset = np.array(X[: args.subset])
    with PeakRss() as mem_rss:
        _, fit_mem = timed_fit(subset, y[: args.subset], args)
    result["in_memory_subset_fit"] = {**fit_mem, "rows": args.subset, **mem_rss.result}
    print("in-memory subset fit", result["in_memory_subset_fit"], flush=True)
    result["memmap_over_in_memory_train_rate"] = (
        fit["train_rows_per_s"] / fit_mem["train_rows_per_s"]
    )
    result["VmHWM_MB"] = status()["VmHWM"] / MB
    result["hardware"] = hardware()
    result["load_average_at_end"] = list(os.getloadavg())
    result["wall_seconds"] = time.perf_counter() - start
    write_result("speed_out_of_core", result, tag=args.tag)


if __name__ == "__main__":
    main()
