"""How hard is Grassy-MNIST? KMeans on raw pixels and on PCA codes vs the digit weight.

The contrastive-PCA recipe adds 0.25 x digit to the grass; at that weight KMeans finds
the digits at chance. This rebuilds Table 1's held-out rows with heavier digits (same
crops: the random draws do not depend on the weight) to show how the difficulty moves.

    python -m benchmarks.diagnostics.difficulty --quick
"""

import numpy as np
from sklearn.decomposition import PCA

from benchmarks import _common as C
from benchmarks.paper import table1_subgroups as T1
from sklearn_cpvae.datasets import make_grassy_mnist


def main():
    args = C.parse_args(__doc__.splitlines()[0])
    cfg = T1.QUICK if args.quick else T1.FULL
    X_tr, y_tr, X_te, y_te = C.mnist_arrays()
    grass = C.load_shared_npz("grass_imagenet", C.DATA_DIR)["X_gray100"]
    rows = []
    for scale in (0.25, 0.5, 1.0):
        tr = make_grassy_mnist(
            X_tr, y_tr, grass, n_samples=cfg["n_train"], digit_scale=scale, random_state=0
        )
        te = make_grassy_mnist(
            X_te, y_te, grass, n_samples=cfg["n_test"], digit_scale=scale, random_state=0
        )
        pca = PCA(n_components=T1.N_SHARED, random_state=0).fit(tr[0])
        rec = {"digit_scale": scale}
        for name, codes in (("pixels", te[0]), ("pca", pca.transform(te[0]))):
            rec[name] = {
                m: float(
                    np.mean(
                        [
                            C.cluster_scores(codes[te[1] == k], te[2][te[1] == k], 5, seed)[m]
                            for k in (0, 1)
                            for seed in args.seeds
                        ]
                    )
                )
                for m in ("ari", "nmi")
            }
        rows.append(rec)
        print(
            f"digit_scale {scale}: pixels ARI {rec['pixels']['ari']:.4f}  "
            f"PCA ARI {rec['pca']['ari']:.4f}",
            flush=True,
        )
    C.write_result(
        "difficulty" + ("_quick" if args.quick else ""),
        {"rows": rows, "config": cfg, "hardware": C.hardware()},
        args.tag,
    )


if __name__ == "__main__":
    main()
