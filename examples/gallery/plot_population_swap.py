"""
Population swap
===============

A row's codes can be decoded with *another* population's private decoder
(:meth:`~sklearn_cpvae.CPVAE.inverse_transform` with other ``populations``): the shared
part of the row is kept, and the private part is rendered the way the other population
would express it, as in the paper's Fig. 4. Here the two populations differ by a mean
shift of every feature, so a swap should move the rows of population 0 onto the mean of
population 1 while keeping their shared factors.
"""

# %%
# Data and model
# --------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

from sklearn_cpvae import CPVAE
from sklearn_cpvae.datasets import make_cross_population

data = make_cross_population(
    n_samples=600, n_populations=2, n_features=20, population_effect="mean", random_state=0
)
X, populations = data.data, data.populations

model = CPVAE(
    n_shared=2,
    n_private=2,
    hidden_layer_sizes=(32,),
    max_iter=200,
    n_importance_samples=16,
    random_state=0,
)
# 200 epochs are a fixed budget for this example.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    model.fit(X, populations)

# %%
# Reconstruct, then swap
# ----------------------
# The rows of population 0, encoded with their own private encoder, decoded once with
# their own private decoder and once with population 1's.
rows = populations == 0
codes = model.transform(X[rows], populations=populations[rows])
own = model.inverse_transform(codes, populations=np.zeros(rows.sum(), dtype=int))
swapped = model.inverse_transform(codes, populations=np.ones(rows.sum(), dtype=int))

for name, R in (("data", X[rows]), ("reconstructed", own), ("swapped", swapped)):
    mean = R.mean(axis=0)
    d0, d1 = (np.linalg.norm(mean - m) for m in data.population_means)
    print(f"{name:13s}: distance of the mean to m_0 {d0:6.2f}, to m_1 {d1:6.2f}")

# %%
# The model's own classifier agrees: it assigns the swapped rows to population 1.
print("populations predicted for the swapped rows:", np.bincount(model.predict(swapped)))

# %%
# The swap keeps what the populations share: the shared codes of the swapped rows,
# encoded again, follow those of the original rows.
shared_again = model.transform(swapped, populations=np.ones(rows.sum(), dtype=int))[:, :2]
for j in range(2):
    r = np.corrcoef(codes[:, j], shared_again[:, j])[0, 1]
    print(f"correlation of shared code {j} before and after the swap: {r:.3f}")

# %%
# The first two principal components of the data: population 0, population 1, and
# population 0 swapped into population 1.
pca = PCA(2).fit(X)
fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
ax.scatter(*pca.transform(X[rows]).T, s=8, alpha=0.5, label="population 0")
ax.scatter(*pca.transform(X[~rows]).T, s=8, alpha=0.5, label="population 1")
ax.scatter(*pca.transform(swapped).T, s=8, alpha=0.5, marker="x", label="population 0, swapped")
ax.set(xlabel="PC 1", ylabel="PC 2")
ax.legend()
plt.show()
