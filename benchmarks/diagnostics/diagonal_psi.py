"""A per-feature Psi for the Gaussian likelihood: would it earn a parameter?

Eq. 1's Psi is isotropic, sigma^2 I; with ``standardize=True`` that is one variance for
every standardised feature. A diagonal Psi (one learned variance per feature, floored at
the encoders' ``VAR_EPS`` so that a feature the decoder fits exactly cannot make the
density unbounded) lets the model trust predictable features more than noisy ones. This
script measures what that changes before any code is written for it: it swaps the
module's isotropic ``log_psi`` for a (D,) one and the Gaussian log-density for the
diagonal one while it runs, then

* ``--part panel``: runs the quality panel's quick cases with the defaults under the
  swap (config ``diagonal_psi``); compare with ``new_defaults`` of
  ``benchmarks/results/quality/panel_quick.json``;
* ``--part table2``: Table 2's quick set-up (1,000 training rows, the default objective)
  on the Gaussian image sets, isotropic and diagonal, No MI and alpha = 1.

    python -m benchmarks.diagnostics.diagonal_psi --part panel
    python -m benchmarks.diagnostics.diagonal_psi --part table2

Writes ``benchmarks/results/diagnostics/diagonal_psi_{panel,table2}.json``.
"""

import argparse
import contextlib
import time

import torch
from torch import nn

import sklearn_cpvae._likelihoods as likelihoods
import sklearn_cpvae._module as module_lib
from benchmarks._common import RESULTS, write_result
from sklearn_cpvae._nn import LOG_VAR_EPS


def _diagonal_log_prob(
    self, x, out, log_psi=None, *, mask=None, log_theta=None, log_offset=None, inplace=False
):
    lp = LOG_VAR_EPS + nn.functional.softplus(log_psi - LOG_VAR_EPS)
    sq = out.sub_(x).square_() if inplace else (x - out) ** 2
    terms = sq * torch.exp(-lp) + (likelihoods.LOG_2PI + lp)
    if mask is not None:
        terms = terms * mask
    return -0.5 * terms.sum(-1)


@contextlib.contextmanager
def diagonal_psi():
    """While active, every new CPVAEModule has a (D,) Psi and the Gaussian likelihood
    uses it; the start value (the mean feature variance) fills every entry."""
    init, log_prob = module_lib.CPVAEModule.__init__, likelihoods.Gaussian.log_prob

    def patched_init(self, n_features, *args, **kwargs):
        init(self, n_features, *args, **kwargs)
        self.log_psi = nn.Parameter(torch.zeros(n_features))

    module_lib.CPVAEModule.__init__ = patched_init
    likelihoods.Gaussian.log_prob = _diagonal_log_prob
    try:
        yield
    finally:
        module_lib.CPVAEModule.__init__ = init
        likelihoods.Gaussian.log_prob = log_prob


def run_panel(seeds):
    from benchmarks.quality import panel

    panel.CONFIGS["diagonal_psi"] = {}
    out = RESULTS / "diagnostics" / "diagonal_psi_panel.json"
    # One job: the patch lives in this process, not in worker processes.
    argv = ["--quick", "--configs", "diagonal_psi", "--jobs", "1", "--out", str(out), "--seeds"]
    with diagonal_psi():
        panel.main(argv + [str(s) for s in seeds])


def run_table2(seeds):
    from benchmarks.paper import table2_classification as t2

    cfg = dict(t2.QUICK, objective="elbo_mi")
    rows = []
    for name in ("mnist", "fashion_mnist", "grassy_mnist"):
        data = t2.load(name, cfg)
        for psi in ("isotropic", "diagonal"):
            with diagonal_psi() if psi == "diagonal" else contextlib.nullcontext():
                for seed in seeds:
                    for variant in ("no_mi", "alpha1"):
                        res = t2.cpvae_accuracy(data, variant, "gaussian", cfg, seed, "cpu", ())
                        res.pop("history", None)
                        rows.append(dict(data=name, psi=psi, seed=seed, variant=variant, **res))
                        acc = {k: v for k, v in res.items() if "acc" in k}
                        print(name, psi, seed, variant, acc, flush=True)
    write_result("diagonal_psi_table2", dict(config=cfg, rows=rows))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("panel", "table2"), required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = p.parse_args()
    torch.set_num_threads(1)
    tic = time.perf_counter()
    (run_panel if args.part == "panel" else run_table2)(args.seeds)
    print(f"wall time {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
