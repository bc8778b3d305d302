"""Table 1 of the paper at reduced size: the qualitative orderings, not the numbers.

Runs ``benchmarks/paper/table1_subgroups.py``'s experiment on real Grassy-MNIST (skipped
without ``shared/data``); marked slow (several minutes on 2 cores).
"""

import pytest
from _data import DATA_DIR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DATA_DIR / "mnist" / "mnist.npz").exists()
        or not (DATA_DIR / "grass_imagenet" / "grass_imagenet.npz").exists(),
        reason="needs shared/data (MNIST and the grass photos)",
    ),
]


def _table1():
    from benchmarks.paper import table1_subgroups

    return table1_subgroups


def test_table1_orderings_quick():
    t1 = _table1()
    cfg = dict(t1.QUICK, n_train=1500, n_test=600)
    result = t1.run(cfg, seeds=[0, 1], device="cpu", log=lambda *a: None)
    s = result["summary"]
    # Both spaces are in use, otherwise a low shared ARI is trivial.
    for v in t1.VARIANTS:
        assert s[v]["au_shared"]["mean"] > 0 and s[v]["au_private"]["mean"] > 0
    orderings = t1.check_orderings(s)
    for name in ORDERINGS_ASSERTED:
        assert orderings[name], (name, orderings, s)


# The orderings that held in the committed quick runs (docs/reproduction.md).
# Shared-space orderings compare ARIs at chance level (see the docs) and are not asserted.
ORDERINGS_ASSERTED = (
    "private_ari_alpha1_gt_no_mi",
    "private_ari_alpha1_gt_vae_shared",
    "private_ari_anneal_ge_alpha1",
    "private_gt_shared_ari_alpha1",
)
