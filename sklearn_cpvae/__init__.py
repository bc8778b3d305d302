"""Cross-population variational autoencoders with a scikit-learn API.

The estimator :class:`CPVAE` implements Davison, Severson & Ghosh, "Cross-population
Variational Autoencoders": shared and population-private latent codes, the mutual
information regularised objective, sub-group discovery and classification by
importance-sampled marginal likelihood.
"""

from sklearn_cpvae._cv import population_cv
from sklearn_cpvae._estimator import CPVAE
from sklearn_cpvae._io import load, load_pipeline, save_pipeline
from sklearn_cpvae._training import TrainingDivergedError
from sklearn_cpvae._version import __version__
from sklearn_cpvae.baselines import VAE
from sklearn_cpvae.metrics import log_likelihood_scorer

__all__ = [
    "CPVAE",
    "VAE",
    "TrainingDivergedError",
    "__version__",
    "load",
    "load_pipeline",
    "log_likelihood_scorer",
    "population_cv",
    "save_pipeline",
]
