"""Regenerate ``cpvae_format1.safetensors`` and its expected outputs (run from the repo root).

    PYTHONPATH=. python tests/data/make_persistence_fixture.py

Only do so when the file format changes (a new FORMAT_VERSION gets a new file *next to*
the old ones): ``tests/test_persistence.py`` checks that every file here still loads and
predicts what it predicted when it was written.
"""

import os
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def fixture_data():
    rng = np.random.default_rng(2024)
    X = rng.normal(size=(40, 4))
    y = np.repeat(["control", "case"], 20)
    X[y == "case", 0] += 2.5
    return X, y


def main():
    from sklearn_cpvae import CPVAE

    X, y = fixture_data()
    model = CPVAE(
        n_shared=2,
        n_private=1,
        hidden_layer_sizes=(6,),
        max_iter=5,
        batch_size=8,
        n_importance_samples=4,
        device="cpu",
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    model.save(os.path.join(HERE, "cpvae_format1.safetensors"))
    np.savez(
        os.path.join(HERE, "cpvae_format1_expected.npz"),
        X=X,
        y=y,
        predict_proba=model.predict_proba(X),
        transform=model.transform(X, populations=y),
        score_samples=model.score_samples(X),
        inverse_transform=model.inverse_transform(model.transform(X, populations=y), y),
    )


if __name__ == "__main__":
    main()
