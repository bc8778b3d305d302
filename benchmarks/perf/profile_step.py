"""Time (and optionally profile) one CPVAE training step in isolation, or the estimator's
fit against the plain loop op by op.

    python -m benchmarks.perf.profile_step 10         # exact MI, M = 800 // K
    M=64 MS=16 T=1 python -m benchmarks.perf.profile_step 2   # 64/pop, m=16, 1 thread
    python -m benchmarks.perf.profile_step 50 p       # + torch.profiler table
    MS=16 T=1 python -m benchmarks.perf.profile_step 10 fit   # estimator vs plain loop
    T=1 python -m benchmarks.perf.profile_step 50 predict     # predict_proba, by op and shape

Environment: M rows per population (default 800 // K), MS = mi_samples (default exact),
T = torch threads (default 2), STEPS = steps per epoch of the ``fit`` mode (default 4).
Prints the mean step time over 10 steps and samples/s; the GEMM rate printed is a
(800 x 784) @ (784 x 512) product measured just before. Used for the thread-stall
measurement in docs/performance.md.

``fit``: the estimator's whole ``fit`` (3 epochs of STEPS 800-row steps, MNIST-shaped
rows, the settings of ``fit_vs_bare.py``) and the plain loop's same number of steps,
each under ``torch.profiler`` after one unprofiled run of each; prints, per op, the
self CPU time per step of both and their difference, largest difference first.

``predict``: ``predict_proba`` (S = 50) of ROWS rows (default 32) on the MNIST-shaped
estimator of ``bench_speed.py`` after one epoch, under ``torch.profiler``; prints the
self CPU time per op and input shape.
"""

import os
import sys
import time

import torch

from sklearn_cpvae._module import CPVAEModule
from sklearn_cpvae._objective import batch_terms


def single_step(K, M, MS, D=784):
    g = torch.Generator().manual_seed(0)
    mod = CPVAEModule(D, K, 100, 25, [512], "relu", "gaussian", g)
    x = torch.rand(K * 2000, D, generator=g)
    pops = torch.arange(K).repeat_interleave(M)
    sizes = torch.full((K,), 2000.0)
    counts = torch.full((K,), float(M))
    opt = torch.optim.Adam(mod.parameters(), lr=1e-3, fused=True)
    blocks = torch.arange(K * 2000).view(K, 2000)

    def step(i):
        start = (i * M) % (2000 - M)
        rows = blocks[:, start : start + M].reshape(-1)
        t = batch_terms(
            mod,
            x[rows],
            pops,
            counts,
            sizes,
            objective="paper",
            mi_weight=1.0,
            generator=g,
            balanced=True,
            mi_samples=MS,
        )
        opt.zero_grad()
        t.loss.backward()
        opt.step()

    return step


def self_times(prof, n_steps):
    """Self CPU milliseconds per step of every op in a profile."""
    return {e.key: e.self_cpu_time_total / 1e3 / n_steps for e in prof.key_averages()}


def fit_against_plain_loop(K, MS, steps, rows=25):
    from torch.profiler import profile

    from benchmarks.perf.bench_speed import BATCH, make_data
    from benchmarks.perf.fit_vs_bare import time_bare, time_fit
    from sklearn_cpvae._training import steps_per_epoch

    x, y = make_data(BATCH * steps, K)
    n_steps = 3 * steps_per_epoch(len(x), K, BATCH // K)
    time_fit(x, y, K, 3, MS)  # warm-up of both (allocator, first-call costs)
    time_bare(x, y, K, n_steps, MS)
    with profile() as p_fit:
        fit_s, _ = time_fit(x, y, K, 3, MS)
    with profile() as p_bare:
        bare_s = time_bare(x, y, K, n_steps, MS)
    print(
        f"K={K} mi_samples={MS} threads={torch.get_num_threads()} {n_steps} steps: fit "
        f"{fit_s:.2f} s, plain loop {bare_s:.2f} s (both profiled; "
        f"{(fit_s - bare_s) / n_steps * 1e3:+.1f} ms per step)"
    )
    a, b = self_times(p_fit, n_steps), self_times(p_bare, n_steps)
    print(f"{'op':48s} {'fit ms/step':>12s} {'plain ms/step':>14s} {'difference':>11s}")
    for name in sorted(set(a) | set(b), key=lambda n: -abs(a.get(n, 0) - b.get(n, 0)))[:rows]:
        fa, fb = a.get(name, 0.0), b.get(name, 0.0)
        print(f"{name[:48]:48s} {fa:12.2f} {fb:14.2f} {fa - fb:+11.2f}")
    print(f"{'total':48s} {sum(a.values()):12.2f} {sum(b.values()):14.2f}")


def profile_predict(K, rows):
    import warnings

    from torch.profiler import ProfilerActivity, profile

    from benchmarks.perf.bench_speed import BATCH, HIDDEN, N_PRIVATE, N_SHARED, make_data
    from sklearn_cpvae import CPVAE

    x, y = make_data(BATCH * 2, K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = CPVAE(
            N_SHARED, N_PRIVATE, hidden_layer_sizes=(HIDDEN,), batch_size=BATCH // K,
            max_iter=1, random_state=0,
        ).fit(x, y)  # fmt: skip
    xt = make_data(rows, K, seed=1)[0]
    est.predict_proba(xt[:8])
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as p:
        est.predict_proba(xt)
    table = p.key_averages(group_by_input_shape=True)
    print(table.table(sort_by="self_cpu_time_total", row_limit=14, max_shapes_column_width=60))


def main():
    torch.set_num_threads(int(os.environ.get("T", 2)))
    K = int(sys.argv[1])
    M = int(os.environ.get("M", 800 // K))
    MS = int(os.environ["MS"]) if "MS" in os.environ else None
    if sys.argv[2:3] == ["fit"]:
        fit_against_plain_loop(K, MS, int(os.environ.get("STEPS", 4)))
        return
    if sys.argv[2:3] == ["predict"]:
        profile_predict(K, int(os.environ.get("ROWS", 32)))
        return
    step = single_step(K, M, MS)
    for i in range(3):
        step(i)
    a, b = torch.randn(800, 784), torch.randn(784, 512)
    tic = time.perf_counter()
    for _ in range(50):
        a @ b
    gemm = 50 * 2 * 800 * 784 * 512 / (time.perf_counter() - tic) / 1e9
    tic = time.perf_counter()
    for i in range(10):
        step(i)
    dt = (time.perf_counter() - tic) / 10
    print(
        f"K={K} M={M} mi_samples={MS} threads={torch.get_num_threads()} step {dt * 1e3:.1f} ms, "
        f"{K * M / dt:.0f} samples/s, GEMM {gemm:.0f} GFLOP/s"
    )
    if len(sys.argv) > 2:
        from torch.profiler import profile

        with profile() as p:
            for i in range(5):
                step(i)
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
