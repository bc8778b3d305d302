"""Training and inference speed of CPVAE against the machine's matrix-multiply roofline.

One run measures, for K = 2, 10, 50, 100 populations of MNIST-sized rows (784 features,
hidden 512, n_shared = 100, n_private = 25, 800-row minibatches as in the
performance targets' reference figures):

* training samples/s of the estimator (exact MI term and ``mi_samples=m``), of a bare
  torch loop doing the same work (the sklearn layer's overhead), of a plain VAE of the
  same size, and of that VAE wrapped in a skorch ``NeuralNet`` (what users would write);
* predict_proba rows/s with S = 50 importance samples;
* each as a fraction of the GEMM rate calibrated in the same process right before it;
* peak memory of training, and of transform / predict_proba / score_samples /
  inverse_transform against the number of rows (up to 10^6);
* thread use of ``GridSearchCV(n_jobs=2)`` workers and a search on a local Dask cluster.

    python -m benchmarks.perf.bench_speed            # everything (CPU)
    python -m benchmarks.perf.bench_speed --quick    # fewer repeats and rows
    python -m benchmarks.perf.bench_speed --device cuda --precision bf16

Results go to ``benchmarks/results/perf/speed_<device>.json`` (machine-readable: every
repeat, medians, thread count, hardware, load average).
"""

import argparse
import json
import os
import statistics
import time
import warnings

import numpy as np
import torch
from torch import nn

from benchmarks._timing import (
    bare_training_step,
    count_flops,
    gemm_rate,
    machine_info,
    median_time,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
)
from sklearn_cpvae import CPVAE
from sklearn_cpvae._module import CPVAEModule

D, HIDDEN, N_SHARED, N_PRIVATE, BATCH = 784, 512, 100, 25, 800
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", message=".*max_iter.*")


def log(msg):
    print(msg, flush=True)


def make_data(n, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, D), dtype=np.float32)
    y = np.arange(n) % k
    return x, y


# ----------------------------------------------------------------------- CPVAE estimator
def estimator_train(k, n_steps, repeats, device, mi_samples, precision):
    x, y = make_data(BATCH * n_steps, k)
    est = CPVAE(
        N_SHARED,
        N_PRIVATE,
        hidden_layer_sizes=(HIDDEN,),
        batch_size=BATCH // k,
        max_iter=1 + repeats,
        tol=0.0,
        n_iter_no_change=10**6,
        device=device,
        random_state=0,
        mi_samples=mi_samples,
        precision=precision,
    )
    rate0 = gemm_rate(device=device)
    reset_peak_rss()
    rss0 = rss_bytes()
    tic = time.perf_counter()
    est.fit(x, y)
    wall = time.perf_counter() - tic
    peak = peak_rss_bytes() - rss0
    rate1 = gemm_rate(device=device)
    epochs = [h["time"] for h in est.history_[1:]]  # the first epoch is the warm-up
    return est, dict(
        epoch_s=epochs,
        samples_per_s=len(x) / statistics.median(epochs),
        # The whole fit (validation, set-up, every epoch, the post-fit pass) per row seen.
        fit_wall_s=wall,
        fit_samples_per_s=len(x) * est.n_iter_ / wall,
        gemm_gflops=[rate0, rate1],
        train_peak_rss_mb=peak / 2**20,
    )


def bare_loop(k, n_steps, device, mi_samples, precision, flops_only=False):
    """The estimator's step in a plain loop: same module, batches, optimiser, no sklearn."""
    x_np, y_np = make_data(BATCH * n_steps, k)
    x = torch.from_numpy(x_np).to(torch.device(device))
    m = BATCH // k
    step = bare_training_step(
        x,
        torch.from_numpy(y_np),
        k,
        m,
        n_steps,
        HIDDEN,
        mi_samples,
        precision,
        N_SHARED,
        N_PRIVATE,
    )
    flops = count_flops(step) / (k * m)
    if flops_only:
        return flops
    t, times = median_time(step, repeats=n_steps, warmup=0, device=device)  # counted = warm-up
    return flops, dict(step_s=times, samples_per_s=k * m / t)


def optimizer_cost(k, device, repeats):
    """Seconds of one Adam step over the CPVAE's weights, fused vs foreach, next to the GEMM
    time of one 800-row step at the calibrated rate: Adam touches every private network's
    weights every step, so its share grows with K when the step's rows do not."""
    dev = torch.device(device)
    module = CPVAEModule(
        D, k, N_SHARED, N_PRIVATE, [HIDDEN], "relu", "gaussian", torch.Generator().manual_seed(0)
    ).to(dev)
    for p in module.parameters():
        p.grad = torch.full_like(p, 1e-3)
    res = dict(k=k, n_params=sum(p.numel() for p in module.parameters()))
    for name, kw in (("fused", dict(fused=True)), ("foreach", dict(foreach=True))):
        opt = torch.optim.Adam(module.parameters(), lr=1e-6, **kw)
        t, _ = median_time(opt.step, repeats=repeats, warmup=1, device=device)
        res[f"adam_{name}_s"] = t
    gemm = gemm_rate(device=device)
    res["gemm_gflops"] = gemm
    res["step_gemm_s_at_rate"] = BATCH * (7.4e6 + 1.8e6 * k) / gemm / 1e9
    return res


# --------------------------------------------------------------------------- plain VAE
class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(D, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * N_SHARED))
        self.dec = nn.Sequential(nn.Linear(N_SHARED, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, D))

    def forward(self, x):
        mu, lv = self.enc(x).chunk(2, -1)
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        return self.dec(z), mu, lv


def vae_loss(x, out, mu, lv):
    kl = 0.5 * (lv.exp() + mu * mu - 1 - lv).sum(-1)
    return (0.5 * ((x - out) ** 2).sum(-1) + kl).mean()


def vae_bare(n_steps, device):
    dev = torch.device(device)
    torch.manual_seed(0)
    vae = VAE().to(dev)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=True)
    x = torch.from_numpy(make_data(BATCH * n_steps, 2)[0]).to(dev)
    perm = torch.randperm(len(x), device=dev)
    state = {"step": 0}

    def step():
        i = state["step"] % n_steps
        state["step"] += 1
        xb = x.index_select(0, perm[i * BATCH : (i + 1) * BATCH])
        loss = vae_loss(xb, *vae(xb))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    flops = count_flops(step) / BATCH
    t, times = median_time(step, repeats=n_steps, warmup=0, device=device)  # counted = warm-up
    return flops, dict(step_s=times, samples_per_s=BATCH / t)


def vae_skorch(n_steps, repeats, device):
    try:
        from skorch import NeuralNet
    except ImportError:
        return None

    class VAENet(NeuralNet):
        def get_loss(self, y_pred, y_true, X=None, training=False):
            return vae_loss(X, *y_pred)

    torch.manual_seed(0)
    x = make_data(BATCH * n_steps, 2)[0]
    net = VAENet(
        VAE,
        criterion=nn.MSELoss,
        optimizer=torch.optim.Adam,
        optimizer__fused=True,
        lr=1e-3,
        batch_size=BATCH,
        max_epochs=1 + repeats,
        train_split=None,
        iterator_train__shuffle=True,
        device=device,
        verbose=0,
    )
    net.fit(x, None)
    epochs = list(net.history[1:, "dur"])
    return dict(epoch_s=epochs, samples_per_s=len(x) / statistics.median(epochs))


# --------------------------------------------------------------------------- inference
def predict(est, k, repeats, device, target_flops, method="predict_proba"):
    """Rows/s of ``est.<method>`` against the GEMM rate measured before and after it."""
    call = getattr(est, method)
    x = make_data(64, k, seed=1)[0]
    per_row = count_flops(lambda: call(x[:8])) / 8
    n = int(np.clip(target_flops / per_row, 16, 10000))
    x = make_data(n, k, seed=1)[0]
    rate0 = gemm_rate(device=device)
    t, times = median_time(lambda: call(x), repeats=repeats, warmup=1, device=device)
    rate1 = gemm_rate(device=device)
    return dict(
        rows=n,
        flops_per_row=per_row,
        time_s=times,
        rows_per_s=n / t,
        gemm_gflops=[rate0, rate1],
        roofline_fraction=per_row * n / t / 1e9 / statistics.median([rate0, rate1]),
    )


def memory_curve(rows_list, device):
    """Extra peak RSS of each inference method against the number of rows."""
    # A small model keeps 10^6 rows affordable on 2 cores; the chunking under test does
    # not depend on the network's size (chunks are sized from it).
    d = 20
    rng = np.random.default_rng(0)
    x_fit = rng.normal(size=(2000, d)).astype(np.float32)
    y_fit = np.arange(2000) % 2
    est = CPVAE(
        4,
        2,
        hidden_layer_sizes=(16,),
        max_iter=1,
        n_importance_samples=2,
        device=device,
        random_state=0,
    ).fit(x_fit, y_fit)
    out = []
    for n in rows_list:
        x = rng.normal(size=(n, d)).astype(np.float32)
        y = np.arange(n) % 2
        codes = est.transform(x[:10], populations=y[:10])
        codes = np.tile(codes, (n // 10 + 1, 1))[:n]
        calls = {
            "transform": lambda x, y, c: est.transform(x, populations=y),
            "predict_proba": lambda x, y, c: est.predict_proba(x),
            "score_samples": lambda x, y, c: est.score_samples(x),
            "inverse_transform": lambda x, y, c: est.inverse_transform(c, populations=y),
        }
        for name, fn in calls.items():
            reset_peak_rss()
            rss0 = rss_bytes()
            tic = time.perf_counter()
            res = fn(x, y, codes)
            dt = time.perf_counter() - tic
            extra = peak_rss_bytes() - rss0
            rec = dict(
                method=name,
                rows=n,
                input_mb=x.nbytes / 2**20,
                output_mb=res.nbytes / 2**20,
                extra_peak_mb=extra / 2**20,
                extra_minus_output_mb=(extra - res.nbytes) / 2**20,
                time_s=dt,
            )
            out.append(rec)
            log(
                f"  memory {name:17s} rows={n:>8d}  extra peak {extra / 2**20:8.1f} MB "
                f"(output {res.nbytes / 2**20:7.1f} MB)  {dt:6.2f}s"
            )
            del res
        del x, codes
    return out


def parallel_threads():
    """Torch threads in joblib's loky workers and a 4-candidate search, n_jobs 1 vs 2."""
    from joblib import Parallel, delayed
    from sklearn.model_selection import GridSearchCV

    def threads():
        import torch as t

        return t.get_num_threads()

    loky = Parallel(n_jobs=2)(delayed(threads)() for _ in range(2))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 50)).astype(np.float32)
    y = np.arange(4000) % 4
    base = CPVAE(
        8,
        4,
        hidden_layer_sizes=(128,),
        max_iter=3,
        batch_size=64,
        n_importance_samples=8,
        device="cpu",
        random_state=0,
    )
    grid = {"mi_weight": [0.5, 1.0], "mi_samples": [None, 8]}
    res = dict(loky_worker_torch_threads=loky, parent_torch_threads=torch.get_num_threads())
    for n_jobs in (1, 2):
        tic = time.perf_counter()
        GridSearchCV(base, grid, cv=2, n_jobs=n_jobs).fit(x, y)
        res[f"search_s_n_jobs_{n_jobs}"] = time.perf_counter() - tic
    try:
        import distributed
        from joblib import parallel_backend

        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            with distributed.Client(cluster) as client:
                res["dask_worker_torch_threads"] = list(client.run(threads).values())
                tic = time.perf_counter()
                with parallel_backend("dask"):
                    GridSearchCV(base, grid, cv=2, n_jobs=-1).fit(x, y)
                res["search_s_dask_2_workers"] = time.perf_counter() - tic
    except ImportError:
        pass
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="float32", choices=["float32", "bf16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 10, 50, 100])
    ap.add_argument(
        "--mi-samples",
        type=int,
        default=16,
        help="m of the sub-sampled MI estimator measured next to the exact one",
    )
    ap.add_argument("--steps", type=int, default=6, help="800-row steps per epoch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-rows", type=int, nargs="*", default=[10**4, 10**5, 10**6])
    ap.add_argument(
        "--predict-gflop",
        type=float,
        default=200.0,
        help="GFLOP per predict_proba timing (sets the number of rows)",
    )
    ap.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["train", "baselines", "predict", "memory", "parallel", "optimizer"],
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.repeats, args.predict_gflop = 3, 2, 50.0
        args.memory_rows = [10**4, 10**5]
    torch.set_num_threads(args.threads)
    device = args.device
    results = dict(machine=machine_info(device), args=vars(args), train=[], predict=[])
    log(f"machine: {results['machine']}")
    if "train" not in args.skip or "predict" not in args.skip:
        for k in args.ks:
            for ms in (None, args.mi_samples):
                if ms is not None and "train" in args.skip:
                    continue
                flops, bare = bare_loop(k, args.steps, device, ms, args.precision)
                est, fit = estimator_train(k, args.steps, args.repeats, device, ms, args.precision)
                gemm = statistics.median(fit["gemm_gflops"])
                rec = dict(
                    k=k,
                    mi_samples=ms,
                    flops_per_sample=flops,
                    flops_per_sample_issue_formula=(7.4e6 + 1.8e6 * k) if ms is None else None,
                    estimator=fit,
                    bare=bare,
                    roofline_fraction=flops * fit["samples_per_s"] / 1e9 / gemm,
                    bare_roofline_fraction=flops * bare["samples_per_s"] / 1e9 / gemm,
                    sklearn_overhead=bare["samples_per_s"] / fit["samples_per_s"] - 1,
                    epoch_vs_bare=fit["samples_per_s"] / bare["samples_per_s"],
                    fit_vs_bare=fit["fit_samples_per_s"] / bare["samples_per_s"],
                )
                results["train"].append(rec)
                log(
                    f"train K={k:3d} mi_samples={ms!s:4s} {flops / 1e6:6.1f} MFLOP/sample  "
                    f"estimator {fit['samples_per_s']:8.0f} samples/s "
                    f"({rec['roofline_fraction']:.0%} of {gemm:.0f} GFLOP/s)  bare loop "
                    f"{bare['samples_per_s']:8.0f} ({rec['bare_roofline_fraction']:.0%})  "
                    f"overhead {rec['sklearn_overhead']:+.1%}  epochs/bare "
                    f"{rec['epoch_vs_bare']:.2f}x  whole fit/bare {rec['fit_vs_bare']:.2f}x  "
                    "peak +"
                    f"{fit['train_peak_rss_mb']:.0f} MB"
                )
                if ms is None and "predict" not in args.skip:
                    p = predict(est, k, args.repeats, device, args.predict_gflop * 1e9)
                    p["k"] = k
                    results["predict"].append(p)
                    log(
                        f"predict_proba K={k:3d} S=50 {p['flops_per_row'] / 1e6:7.1f} MFLOP/row "
                        f"{p['rows_per_s']:8.1f} rows/s ({p['roofline_fraction']:.0%} of "
                        f"{statistics.median(p['gemm_gflops']):.0f} GFLOP/s)"
                    )
    if "optimizer" not in args.skip:
        results["optimizer"] = []
        for k in args.ks:
            r = optimizer_cost(k, device, max(3, args.repeats))
            results["optimizer"].append(r)
            log(
                f"Adam K={k:3d} {r['n_params'] / 1e6:6.1f} M weights: fused "
                f"{r['adam_fused_s'] * 1e3:7.1f} ms, foreach {r['adam_foreach_s'] * 1e3:7.1f} "
                f"ms per step; the exact-MI 800-row step's GEMMs take "
                f"{r['step_gemm_s_at_rate'] * 1e3:7.1f} ms at {r['gemm_gflops']:.0f} GFLOP/s"
            )
    if "baselines" not in args.skip:
        gemm0 = gemm_rate(device=device)
        flops, vae = vae_bare(args.steps, device)
        gemm1 = gemm_rate(device=device)
        gemm = statistics.median([gemm0, gemm1])
        vae.update(
            flops_per_sample=flops,
            gemm_gflops=[gemm0, gemm1],
            roofline_fraction=flops * vae["samples_per_s"] / 1e9 / gemm,
        )
        results["vae_bare"] = vae
        log(
            f"plain VAE (bare loop) {flops / 1e6:.1f} MFLOP/sample {vae['samples_per_s']:8.0f} "
            f"samples/s ({vae['roofline_fraction']:.0%} of {gemm:.0f} GFLOP/s); "
            f"60k rows/epoch = {60000 / vae['samples_per_s']:.2f} s"
        )
        sk = vae_skorch(args.steps, args.repeats, device)
        if sk is not None:
            sk["roofline_fraction"] = flops * sk["samples_per_s"] / 1e9 / gemm
            sk["slowdown_vs_bare"] = vae["samples_per_s"] / sk["samples_per_s"] - 1
            results["vae_skorch"] = sk
            log(
                f"plain VAE in skorch NeuralNet {sk['samples_per_s']:8.0f} samples/s "
                f"({sk['roofline_fraction']:.0%}); {sk['slowdown_vs_bare']:+.0%} vs bare loop"
            )
        elastic = [r for r in results["train"] if r["k"] == 2 and r["mi_samples"] is None]
        if elastic:
            r = elastic[0]
            log(
                f"CPVAE K=2 vs VAE: {r['flops_per_sample'] / flops:.2f}x the FLOPs, "
                f"{vae['samples_per_s'] / r['estimator']['samples_per_s']:.2f}x the time "
                "per sample"
            )
    if "memory" not in args.skip and args.memory_rows:
        results["memory"] = memory_curve(args.memory_rows, device)
    if "parallel" not in args.skip and device == "cpu":
        results["parallel"] = par = parallel_threads()
        log(f"parallel: {par}")
    results["machine_after"] = dict(load_average=os.getloadavg())
    out = args.out or f"benchmarks/results/perf/speed_{device.split(':')[0]}.json"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
