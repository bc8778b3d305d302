"""Shared helpers of the benchmark scripts: GEMM calibration, FLOP counting, memory, metadata."""

import os
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from sklearn_cpvae._module import CPVAEModule
from sklearn_cpvae._objective import batch_terms
from sklearn_cpvae._training import balanced_batches


def gemm_rate(rows=800, inner=784, cols=2048, repeats=7, device="cpu"):
    """Median GFLOP/s of a float32 (rows, inner) @ (inner, cols) product, measured now.

    Called immediately before every measurement: the machine may be shared, and a
    roofline fraction is only meaningful against the rate available at that moment.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=gen).to(device)
    b = torch.randn(inner, cols, generator=gen).to(device)
    n = max(1, int(2e9 // (2 * rows * inner * cols)))  # about 2 GFLOP per timing
    a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        tic = time.perf_counter()
        for _ in range(n):
            a @ b
        sync(device)
        times.append(time.perf_counter() - tic)
    return 2 * rows * inner * cols * n / statistics.median(times) / 1e9


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def count_flops(fn):
    """FLOPs of the matrix products run by ``fn()`` (forward and backward), by torch's counter."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def median_time(fn, repeats, warmup=1, device="cpu"):
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        tic = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - tic)
    return statistics.median(times), times


def rss_bytes():
    """Current resident set size (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss():
    """Reset the kernel's high-water mark of this process's RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_info(device="cpu"):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = dict(
        cpu=cpu,
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        device=str(device),
        load_average=os.getloadavg(),
    )
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_comparison(path, args, results, **extra):
    """Write the results of a comparison script with the machine, its arguments, any
    ``extra`` records and the load average at the end."""
    import json

    res = dict(machine=machine_info("cpu"), args=vars(args), **extra, results=results)
    res["load_average_after"] = os.getloadavg()
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {path}")


def bare_training_step(
    x,
    y,
    k,
    m,
    n_batches,
    hidden,
    mi_samples,
    precision="float32",
    n_shared=100,
    n_private=25,
    objective="paper",
    standardize=False,
):
    """The estimator's training step in a plain closure: same module, balanced batches
    (M = ``m`` rows per population), exact or sub-sampled MI term and fused Adam, no sklearn.
    ``objective`` and ``standardize`` are those of :func:`batch_terms` and
    :class:`CPVAEModule`; pass the estimator's to time the same computation as its ``fit``.

    ``x`` (n, d) lives on the device; ``y`` (n,) are CPU population indices. Each call
    runs the next of ``n_batches`` pre-drawn minibatches, cycling.
    """
    dev = x.device
    gen = torch.Generator(device=dev).manual_seed(0)
    module = CPVAEModule(
        x.shape[1],
        k,
        n_shared,
        n_private,
        [hidden],
        "relu",
        "gaussian",
        torch.Generator().manual_seed(0),
        standardize=standardize,
    ).to(dev)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, fused=True)
    members = [torch.nonzero(y == j).flatten() for j in range(k)]
    idx = balanced_batches(members, m, n_batches, torch.Generator().manual_seed(0)).to(dev)
    pops = torch.arange(k, device=dev).repeat_interleave(m)
    counts = torch.full((k,), float(m), device=dev)
    sizes = torch.bincount(y, minlength=k).float().to(dev)
    auto = (
        torch.autocast(dev.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else torch.autocast(dev.type, enabled=False)
    )
    state = {"i": 0}

    def step():
        rows = idx[state["i"] % n_batches].reshape(-1)
        state["i"] += 1
        with auto:
            terms = batch_terms(
                module,
                x.index_select(0, rows),
                pops,
                counts,
                sizes,
                objective=objective,
                mi_weight=1.0,
                generator=gen,
                balanced=True,
                mi_samples=mi_samples,
            )
        opt.zero_grad(set_to_none=True)
        terms.loss.backward()
        opt.step()

    return step
