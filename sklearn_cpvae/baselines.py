"""A plain variational autoencoder with the same networks and conventions as :class:`CPVAE`.

The paper compares CPVAE with "a standard VAE" (Table 1, Fig. 3). The fair baseline is
CPVAE's shared half alone: the same :class:`~sklearn_cpvae._nn.StackedMLP` networks
(K = 1), the same likelihoods, variance floor and start values, and the same training
core (:func:`~sklearn_cpvae._training.fit_module`: fused Adam, the stopping rule, the
divergence guard and interrupt handling). It ignores populations, so it is an ordinary
unsupervised transformer.
"""

import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted
from torch import nn

from sklearn_cpvae import _inference
from sklearn_cpvae._conv import decoder, encoder, layer_width
from sklearn_cpvae._likelihoods import LIKELIHOODS, get_likelihood
from sklearn_cpvae._nn import ACTIVATIONS, gaussian_head
from sklearn_cpvae._objective import kl_std_normal, log_marginal_is, log_normal
from sklearn_cpvae._sklearn_compat import (
    Interval,
    StrOptions,
    _check_feature_names_in,
    validate_data,
)
from sklearn_cpvae._torch_utils import derive_seeds, resolve_device
from sklearn_cpvae._training import TrainConfig, fit_module, rows_source
from sklearn_cpvae._validation import hidden_sizes, image_layout

# The terms of the VAE's objective recorded each epoch; ``loss`` (-ELBO) is minimised.
VAE_TERMS = ("loss", "recon", "kl")


@dataclass(frozen=True)
class ELBOTerms:
    """Minibatch averages per row: ``loss`` = -(``recon`` - ``kl``)."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


class _VAEModule(nn.Module):
    """Encoder q(z|x) and decoder f(z) of a one-population model (paper Fig. 1, right)."""

    def __init__(
        self, n_features, n_components, hidden, activation, likelihood, generator, image=None
    ):
        super().__init__()
        self.likelihood = likelihood
        self.lik = get_likelihood(likelihood)
        self.hidden_layer_sizes = list(hidden)
        # The widest activation per row, for sizing inference chunks.
        self.layer_width = layer_width(hidden, image)
        d, h = n_features, list(hidden)
        self.enc = encoder(1, d, h, 2 * n_components, activation, generator, image)
        self.dec = decoder(1, n_components, h[::-1], d, activation, generator, image)
        self.log_psi = nn.Parameter(torch.zeros(()))

    def encode(self, x):
        # The same variance floor and cap as CPVAE's encoders.
        return gaussian_head(self.enc.forward_single(x))

    def decode(self, z):
        return self.dec.forward_single(z)

    def negative_elbo(self, x, generator):
        """Minibatch average of -ELBO (eq. 3 with a single latent code), and its parts."""
        mu, lv = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * lv) * eps
        recon = self.lik.log_prob(x, self.decode(z), self.log_psi).mean()
        kl = kl_std_normal(mu, lv).mean()
        return ELBOTerms(-(recon - kl), recon, kl)

    def log_marginal(self, x, eps):
        """Importance-sampled log p(x) with the posterior as proposal; ``eps`` (S, d)."""
        mu, lv = self.encode(x)
        z = mu + torch.exp(0.5 * lv) * eps[:, None, :]  # (S, n, d)
        log_w = (
            self.lik.log_prob(x, self.decode(z), self.log_psi)
            + log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
            - log_normal(z, mu, lv)
        )
        return log_marginal_is(log_w)


class VAE(TransformerMixin, BaseEstimator):
    """Variational autoencoder (Kingma & Welling) built like CPVAE's shared half.

    The baseline of the CPVAE paper's Table 1 and Fig. 3: one encoder q(z|x) and one
    decoder f(z) with the :class:`CPVAE` network shapes, likelihoods and training
    conventions, trained on the ELBO. It takes no population labels.

    Parameters
    ----------
    n_components : int, default=100
        Dimension of the latent code z.
    likelihood : {"gaussian", "bernoulli"}, default="gaussian"
        ``"gaussian"``: mean ``f(z)`` and a learned isotropic variance. ``"bernoulli"``:
        ``f(z)`` are logits; X must lie in [0, 1].
    hidden_layer_sizes : tuple of int, default=(256,)
        Hidden layers of the encoder; the decoder mirrors them.
    activation : {"relu", "tanh", "elu", "gelu", "softplus", "leaky_relu"}, default="relu"
        Hidden-layer nonlinearity.
    image_shape : None or tuple of int, default=None
        ``(height, width)`` or ``(height, width, channels)`` of the images the rows
        hold: convolutional encoder and decoder, as in :class:`CPVAE`.
    conv_channels : tuple of int, default=(32, 64)
        Channels of the stride-2 convolutions, as in :class:`CPVAE`; only with
        ``image_shape``.
    batch_size : int, default=128
        Rows per minibatch. A CPVAE step on K populations sees ``K * batch_size`` rows,
        so ``VAE(batch_size=K * b)`` matches the budget of ``CPVAE(batch_size=b)``.
    learning_rate_init : float, default=1e-3
        Adam step size.
    max_iter : int, default=200
        Maximum number of epochs (passes over the rows).
    tol : float, default=1e-4
        Training stops when the mean loss of the last ``n_iter_no_change`` epochs is
        not lower than the mean of the ``n_iter_no_change`` epochs before them by
        ``tol`` times its size (as in :class:`~sklearn_cpvae.CPVAE`).
    n_iter_no_change : int, default=10
        The window of epochs whose mean losses ``tol`` compares.
    max_grad_norm : float or None, default=None
        Clip the gradient's global norm to this value; None disables clipping.
    n_importance_samples : int, default=50
        Importance samples per row in :meth:`score_samples`.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU; or any torch device string.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, minibatches, noise and importance samples. Global RNGs
        are never touched.
    verbose : int, default=0
        1: a progress bar and a summary line; 2: one line per epoch and the summary.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during :term:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X` has feature
        names that are all strings.
    module_ : torch.nn.Module
        The fitted networks (on the CPU, in float32).
    history_ : list of dict
        Per epoch: ``loss`` (-ELBO per row), ``recon``, ``kl``, ``time``.
    loss_curve_ : list of float
        ``loss`` of each epoch.
    n_iter_ : int
        Number of epochs run.
    device_ : str
        Device the networks were trained on.

    See Also
    --------
    CPVAE : The cross-population model whose shared half this is.
    sklearn.decomposition.PCA : The linear counterpart.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cpvae.baselines import VAE
    >>> X = np.random.default_rng(0).normal(size=(100, 5))
    >>> vae = VAE(n_components=2, hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    >>> vae.fit(X).transform(X[:3]).shape
    (3, 2)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "likelihood": [StrOptions({n for n, lik in LIKELIHOODS.items() if not lik.counts})],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "image_shape": [None, "array-like"],
        "conv_channels": ["array-like"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "max_grad_norm": [None, Interval(Real, 0, None, closed="neither")],
        "n_importance_samples": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=100,
        *,
        likelihood="gaussian",
        hidden_layer_sizes=(256,),
        activation="relu",
        image_shape=None,
        conv_channels=(32, 64),
        batch_size=128,
        learning_rate_init=1e-3,
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=10,
        max_grad_norm=None,
        n_importance_samples=50,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.likelihood = likelihood
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.image_shape = image_shape
        self.conv_channels = conv_channels
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.max_grad_norm = max_grad_norm
        self.n_importance_samples = n_importance_samples
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Fit the encoder and decoder to the rows of ``X`` by maximising the ELBO.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : VAE
            The fitted estimator.
        """
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        hidden = hidden_sizes(self.hidden_layer_sizes)
        lik = get_likelihood(self.likelihood)
        lik.check_support(X)
        seed_init, seed_train, seed_is = derive_seeds(self.random_state, 3)
        device = resolve_device(self.device)
        module = _VAEModule(
            X.shape[1],
            self.n_components,
            hidden,
            self.activation,
            self.likelihood,
            torch.Generator().manual_seed(seed_init),
            image_layout(self.image_shape, self.conv_channels, X.shape[1]),
        )
        # The same data-scale start as CPVAE, so that the comparison is like for like.
        bias, log_psi, _ = lik.start_values(X, library_size=False)
        with torch.no_grad():
            if log_psi is not None:
                module.log_psi.fill_(log_psi)
            module.dec.output_bias.add_(torch.as_tensor(bias, dtype=torch.float32))
        # One population: every minibatch is ``batch_size`` rows of X (Algorithm 1, K = 1).
        x = rows_source(X, device)
        data = (
            x,
            torch.zeros(len(X), dtype=torch.long, device=x.device),
            torch.tensor([float(len(X))], device=device),
        )
        cfg = TrainConfig(
            objective="elbo",
            mi_weight=1.0,
            mi_anneal_epochs=0,
            batch_size=min(self.batch_size, len(X)),
            max_iter=self.max_iter,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=False,
            max_grad_norm=self.max_grad_norm,
            verbose=self.verbose,
            terms=VAE_TERMS,
            record_alpha=False,
        )

        def make_step(generator):
            def step(xb, populations, batch_counts, pop_sizes, alpha):
                return module.negative_elbo(xb, generator)

            return step

        outcome = fit_module(
            module,
            data,
            cfg,
            device=device,
            learning_rate=self.learning_rate_init,
            seed=seed_train,
            make_step=make_step,
        )
        result = outcome.result
        self.module_ = module
        self.device_ = str(device)
        self.history_ = result.history
        self.loss_curve_ = [r["loss"] for r in self.history_]
        self.n_iter_ = result.n_iter
        self._importance_seed = seed_is
        if outcome.diverged is not None:
            raise outcome.diverged
        if result.interrupted:
            warnings.warn(
                f"Training interrupted by the user at epoch {result.n_iter + 1}; the "
                "weights of the last completed epoch were kept.",
                UserWarning,
                stacklevel=2,
            )
        elif not result.converged:
            warnings.warn(
                f"VAE ran all max_iter={self.max_iter} epochs and the loss was still "
                f"improving (by tol={self.tol}, relative, between means over windows of "
                f"n_iter_no_change={self.n_iter_no_change} epochs), so it may be "
                "under-trained. Raise max_iter; a larger tol stops sooner.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _run(self, X, fn, per_row):
        """``fn(module, tensor)`` over row chunks of ``per_row`` bytes of temporaries, on
        the inference device and in X's dtype (:mod:`~sklearn_cpvae._inference`)."""
        module, device, _ = _inference.inference_module(self.module_, self.device, X.dtype)
        out = []
        with torch.inference_mode():
            for sl in _inference.chunks(len(X), per_row):
                xb = _inference.to_tensor(X[sl], device, X.dtype)
                out.append(fn(module, xb).cpu().numpy())
        return np.concatenate(out).astype(X.dtype, copy=False)

    def _row_bytes(self, X, n_samples=1):
        width = max(self.module_.layer_width, self.n_features_in_)
        return 8 * X.itemsize * n_samples * width

    def transform(self, X):
        """Posterior means E q(z|x).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to encode.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return self._run(X, lambda m, x: m.encode(x)[0], self._row_bytes(X))

    def inverse_transform(self, X):
        """Decode codes to the mean of p(x | z) (probabilities for Bernoulli).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent codes.

        Returns
        -------
        X_rec : ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self)
        X = check_array(X, dtype=[np.float64, np.float32])
        if X.shape[1] != self.n_components:
            raise ValueError(
                f"X has {X.shape[1]} columns, but the codes have {self.n_components}."
            )
        return self._run(X, lambda m, z: m.lik.mean(m.decode(z)), self._row_bytes(X))

    def score_samples(self, X):
        """Importance-sampled log-likelihood log p(x) of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        gen = torch.Generator().manual_seed(self._importance_seed)
        eps = torch.randn(
            (self.n_importance_samples, self.n_components), generator=gen, dtype=torch.float64
        )
        out = self._run(
            X,
            lambda m, x: m.log_marginal(x, eps.to(x.device, x.dtype)),
            self._row_bytes(X, self.n_importance_samples),
        )
        return out.astype(np.float64)

    def score(self, X, y=None):
        """Mean importance-sampled log-likelihood of the rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, *, random_state=None):
        """Draw rows: z ~ N(0, I), returning the mean of p(x | z).

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws; global RNG state is not used.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        rng = np.random.default_rng(derive_seeds(random_state, 1)[0])
        z = rng.standard_normal((n_samples, self.n_components))
        return self.inverse_transform(z)

    def get_feature_names_out(self, input_features=None):
        """Names of the code columns: ``vae0, vae1, ...``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored beyond validation.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features)
        return np.asarray([f"vae{i}" for i in range(self.n_components)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.non_deterministic = self.device != "cpu" and torch.cuda.is_available()
        return tags
