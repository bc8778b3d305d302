"""Time (and optionally profile) one CPVAE training step in isolation.

    python -m benchmarks.perf.profile_step 10         # exact MI, M = 800 // K
    M=64 MS=16 T=1 python -m benchmarks.perf.profile_step 2   # 64/pop, m=16, 1 thread
    python -m benchmarks.perf.profile_step 50 p       # + torch.profiler table

Environment: M rows per population (default 800 // K), MS = mi_samples (default exact),
T = torch threads (default 2). Prints the mean step time over 10 steps and
samples/s; the GEMM rate printed is a (800 x 784) @ (784 x 512) product measured just
before. Used for the thread-stall measurement in docs/performance.md.
"""

import os
import sys
import time

import torch

from sklearn_cpvae._module import CPVAEModule
from sklearn_cpvae._objective import batch_terms

torch.set_num_threads(int(os.environ.get("T", 2)))
K = int(sys.argv[1])
M = int(os.environ.get("M", 800 // K))
MS = int(os.environ["MS"]) if "MS" in os.environ else None
D = 784
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
