"""What the population adversary's encoder target does to the population in the shared codes.

``CPVAE(shared_adversary=...)`` trains the encoder through a gradient-reversal layer: the
encoder ascends the classifier's cross-entropy (DANN). That target is unbounded: an
encoder can raise the cross-entropy above its chance value log K by making the classifier
confidently wrong, which needs the population in the codes, flipped. The alternative
measured here, for the fit only, is the "confusion" target (Tzeng et al. 2015): the
encoder descends the cross-entropy of the classifier's output against the uniform
distribution over populations, whose minimum is a classifier at chance. The classifier
is trained alike in both (its cross-entropy with the true populations).

For each configuration it reports the probes of
``benchmarks.diagnostics.invariance_estimate`` (population from all shared units, the
active ones, the collapsed ones, one draw of z; quick-mode cases of the quality panel):

    python -m benchmarks.diagnostics.adversary_target --seeds 0 \
        --out benchmarks/results/diagnostics/adversary_target.json
"""

import argparse
import contextlib
import json
import time

import torch
import torch.nn.functional as F

from benchmarks._common import git_commit, hardware
from benchmarks.diagnostics.invariance_estimate import CASE_NAMES, run
from sklearn_cpvae import _objective as objective_module
from sklearn_cpvae._module import CPVAEModule
from sklearn_cpvae._nn import ACTIVATIONS

# Config name -> (CPVAE keyword arguments, encoder target of the adversary).
CONFIGS = {
    "default": ({}, "reversal"),
    "adv1": ({"shared_adversary": 1.0}, "reversal"),
    "adv10": ({"shared_adversary": 10.0}, "reversal"),
    "adv1_confusion": ({"shared_adversary": 1.0}, "confusion"),
    "adv10_confusion": ({"shared_adversary": 10.0}, "confusion"),
    "adv1_confusion_std": ({"shared_adversary": 1.0}, "confusion_std"),
    "adv10_confusion_std": ({"shared_adversary": 10.0}, "confusion_std"),
}


def _logits_frozen(classifier, z):
    """The classifier's logits on ``z`` with its weights detached (one hidden layer)."""
    (w0, w1), (b0, b1) = classifier.weights, classifier.biases
    act = ACTIVATIONS[classifier.activation]
    return act(z @ w0.detach()[:, 0] + b0.detach()[0]) @ w1.detach()[0] + b1.detach()[0]


@contextlib.contextmanager
def confusion_target(standardize=False):
    """Fit with the confusion target in place of the reversed gradient.

    ``standardize=True`` gives classifier and encoder target each unit of the codes
    divided by its minibatch standard deviation (statistics detached), the scale on
    which the panel's probe reads them, so that units whose means move by a few
    hundredths weigh as much as active ones.

    ``batch_terms`` calls ``reverse_gradient(mu_z, weight)``, then
    ``module.population_logits`` and ``adversary_cross_entropy`` on the result. Here the
    first passes ``mu_z`` on unchanged and remembers it, and the last returns a tensor
    whose value is the classifier's cross-entropy (recorded as ``adversary``) and whose
    gradient is that of the classifier's cross-entropy on detached codes (classifier
    only) plus ``weight`` times the confusion cross-entropy through the frozen
    classifier (encoder only)."""
    saved = objective_module.reverse_gradient, objective_module.adversary_cross_entropy
    saved_logits = CPVAEModule.population_logits
    seen = {}

    def identity(z, weight):
        if standardize:
            z = (z - z.mean(0).detach()) / (z.std(0).detach() + 1e-8)
        seen["z"], seen["weight"] = z, float(weight)
        return z.detach()

    def population_logits(module, z):
        seen["module"] = module
        return saved_logits(module, z)

    def cross_entropy(logits, populations, batch_counts):
        ce = saved[1](logits, populations, batch_counts)
        logits_enc = _logits_frozen(seen["module"].adversary, seen["z"])
        w = 1.0 / (logits.shape[-1] * batch_counts[populations])
        confusion = torch.sum(w * -F.log_softmax(logits_enc, -1).mean(-1))
        return ce + seen["weight"] * (confusion - confusion.detach())

    objective_module.reverse_gradient = identity
    objective_module.adversary_cross_entropy = cross_entropy
    CPVAEModule.population_logits = population_logits
    try:
        yield
    finally:
        objective_module.reverse_gradient, objective_module.adversary_cross_entropy = saved
        CPVAEModule.population_logits = saved_logits


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=list(CASE_NAMES[:3]))
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = {"configs": {c: CONFIGS[c] for c in args.configs}, "runs": []}
    for seed in args.seeds:
        for case in args.cases:
            for name in args.configs:
                params, target = CONFIGS[name]
                ctx = (
                    confusion_target(standardize=target == "confusion_std")
                    if target.startswith("confusion")
                    else contextlib.nullcontext()
                )
                with ctx:
                    out = run(case, params, "median", seed)
                result["runs"].append({"case": case, "config": name, "seed": seed, **out})
                print(
                    f"{case:20s} {name:16s} seed {seed}: pop probe all "
                    f"{out['pop_probe_acc_shared']:.3f} active "
                    f"{out['pop_probe_acc_active_units']:.3f} collapsed "
                    f"{out['pop_probe_acc_collapsed_units']:.3f} draw "
                    f"{out['pop_probe_acc_sampled_z']:.3f} (chance {out['pop_chance']:.3f}), "
                    f"{out['active_shared']} active; adversary CE "
                    f"{out['last_epoch_terms']['adversary']}; predict {out['predict_acc']:.3f}",
                    flush=True,
                )
    result.update(wall_seconds=time.perf_counter() - t0, commit=git_commit(), hardware=hardware())
    print(f"wall {result['wall_seconds']:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()
