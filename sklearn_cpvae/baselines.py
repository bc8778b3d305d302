"""A plain variational autoencoder with the same networks and conventions as :class:`CPVAE`.

The paper compares CPVAE with "a standard VAE" (Table 1, Fig. 3). The fair baseline is
CPVAE's shared half alone: the same :class:`~sklearn_cpvae._nn.StackedMLP` networks
(K = 1), the same likelihoods and variance floor, Adam, and the same stopping rule. It
ignores populations, so it is an ordinary unsupervised transformer.
"""

import copy
import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted
from torch import nn

from sklearn_cpvae._data import start_values
from sklearn_cpvae._module import CPVAEModule
from sklearn_cpvae._nn import ACTIVATIONS, StackedMLP
from sklearn_cpvae._objective import (
    decoder_mean,
    kl_std_normal,
    log_likelihood,
    log_marginal_is,
    log_normal,
)
from sklearn_cpvae._sklearn_compat import (
    Interval,
    StrOptions,
    _check_feature_names_in,
    validate_data,
)
from sklearn_cpvae._torch_utils import derive_seeds, make_generator, resolve_device

# Inference works in chunks of this many rows.
_CHUNK_ROWS = 2048


class _VAEModule(nn.Module):
    """Encoder q(z|x) and decoder f(z) of a one-population model (paper Fig. 1, right)."""

    def __init__(self, n_features, n_components, hidden, activation, likelihood, generator):
        super().__init__()
        self.likelihood = likelihood
        self.enc = StackedMLP(1, [n_features, *hidden, 2 * n_components], activation, generator)
        self.dec = StackedMLP(1, [n_components, *hidden[::-1], n_features], activation, generator)
        self.log_psi = nn.Parameter(torch.zeros(()))

    def encode(self, x):
        # The same variance floor and cap as CPVAE's encoders.
        return CPVAEModule._split(self.enc.forward_single(x))

    def decode(self, z):
        return self.dec.forward_single(z)

    def negative_elbo(self, x, generator):
        """Minibatch average of -ELBO (eq. 3 with a single latent code), and its parts."""
        mu, lv = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * lv) * eps
        recon = log_likelihood(x, self.decode(z), self.likelihood, self.log_psi).mean()
        kl = kl_std_normal(mu, lv).mean()
        return -(recon - kl), recon, kl

    def log_marginal(self, x, eps):
        """Importance-sampled log p(x) with the posterior as proposal; ``eps`` (S, d)."""
        mu, lv = self.encode(x)
        z = mu + torch.exp(0.5 * lv) * eps[:, None, :]  # (S, n, d)
        log_w = (
            log_likelihood(x, self.decode(z), self.likelihood, self.log_psi)
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
    batch_size : int, default=128
        Rows per minibatch. A CPVAE step on K populations sees ``K * batch_size`` rows,
        so ``VAE(batch_size=K * b)`` matches the budget of ``CPVAE(batch_size=b)``.
    learning_rate_init : float, default=1e-3
        Adam step size.
    max_iter : int, default=200
        Maximum number of epochs (passes over the rows).
    tol : float, default=1e-4
        Relative improvement of the epoch loss below which an epoch counts as no
        improvement.
    n_iter_no_change : int, default=10
        Stop after this many epochs without improvement.
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
        Print one line per epoch.

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
        "likelihood": [StrOptions({"gaussian", "bernoulli"})],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
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
        hidden = self._hidden_sizes()
        if self.likelihood == "bernoulli" and (X.min() < 0 or X.max() > 1):
            raise ValueError(
                "likelihood='bernoulli' needs X in [0, 1]; got values in "
                f"[{X.min():.3g}, {X.max():.3g}]. Use likelihood='gaussian' or rescale X."
            )
        seed_init, seed_train, seed_is = derive_seeds(self.random_state, 3)
        device = resolve_device(self.device)
        module = _VAEModule(
            X.shape[1],
            self.n_components,
            hidden,
            self.activation,
            self.likelihood,
            torch.Generator().manual_seed(seed_init),
        )
        # The same data-scale start as CPVAE, so that the comparison is like for like.
        bias, log_psi = start_values(X, self.likelihood)
        with torch.no_grad():
            if log_psi is not None:
                module.log_psi.fill_(log_psi)
            module.dec.biases[-1].add_(torch.as_tensor(bias, dtype=torch.float32))
        module = module.to(device)
        x = torch.from_numpy(np.array(X, dtype=np.float32, order="C")).to(device)
        noise = make_generator(seed_train, device)
        index_gen = noise if device.type == "cpu" else make_generator(seed_train, "cpu")
        optimizer = torch.optim.Adam(module.parameters(), lr=self.learning_rate_init)
        history, converged = self._train(module, optimizer, x, noise, index_gen)
        self.module_ = module.to("cpu").eval()
        self.device_ = str(device)
        self.history_ = history
        self.loss_curve_ = [r["loss"] for r in history]
        self.n_iter_ = len(history)
        self._importance_seed = seed_is
        if not converged:
            warnings.warn(
                f"VAE stopped after max_iter={self.max_iter} epochs without the loss "
                f"improving by less than tol={self.tol} for {self.n_iter_no_change} "
                "epochs; increase max_iter.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _train(self, module, optimizer, x, noise, index_gen):
        """Epochs of shuffled minibatches with CPVAE's stopping rule (relative tol)."""
        n = len(x)
        bs = min(self.batch_size, n)
        n_steps = max(1, -(-n // bs))
        history, best, no_improve = [], math.inf, 0
        module.train()
        for epoch in range(self.max_iter):
            tic = time.perf_counter()
            order = torch.randperm(n, generator=index_gen).to(x.device)
            sums = torch.zeros(3, device=x.device)
            for step in range(n_steps):
                rows = order[step * bs : (step + 1) * bs]
                loss, recon, kl = module.negative_elbo(x[rows], noise)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(module.parameters(), self.max_grad_norm)
                optimizer.step()
                sums += torch.stack([loss.detach(), recon.detach(), kl.detach()])
            loss, recon, kl = (sums / n_steps).tolist()
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"VAE training diverged at epoch {epoch + 1} (loss={loss}); lower "
                    "learning_rate_init, set max_grad_norm, or standardise X."
                )
            record = dict(
                epoch=epoch + 1, loss=loss, recon=recon, kl=kl, time=time.perf_counter() - tic
            )
            history.append(record)
            if self.verbose:
                print(
                    f"epoch {epoch + 1:4d}  loss={loss:.4g}  recon={recon:.4g}  "
                    f"kl={kl:.4g}  ({record['time']:.2f}s)",
                    flush=True,
                )
            if loss < best - self.tol * abs(best):
                best, no_improve = loss, 0
            else:
                best = min(best, loss)
                no_improve += 1
                if no_improve >= self.n_iter_no_change:
                    return history, True
        return history, False

    def _hidden_sizes(self):
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if isinstance(hidden, Integral) else list(hidden)
        if not hidden or any(not isinstance(h, Integral) or h < 1 for h in hidden):
            raise ValueError(
                "hidden_layer_sizes must be a non-empty sequence of positive integers; "
                f"got {self.hidden_layer_sizes!r}."
            )
        return [int(h) for h in hidden]

    def _run(self, X, fn):
        """``fn(module, tensor)`` over row chunks, on the inference device and in X's dtype.

        float64 input runs a float64 copy of the networks, so that a row's output does not
        depend on the other rows of its batch (sklearn's subset-invariance checks).
        """
        device = resolve_device(self.device, fallback_warn=True)
        tdtype = torch.float64 if X.dtype == np.float64 else torch.float32
        module = self.module_
        if device.type != "cpu" or tdtype != torch.float32:
            module = copy.deepcopy(module).to(device=device, dtype=tdtype)
        out = []
        with torch.inference_mode():
            for start in range(0, len(X), _CHUNK_ROWS):
                xb = torch.from_numpy(np.array(X[start : start + _CHUNK_ROWS], order="C"))
                out.append(fn(module, xb.to(device)).cpu().numpy())
        return np.concatenate(out).astype(X.dtype, copy=False)

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
        return self._run(X, lambda m, x: m.encode(x)[0])

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
        return self._run(X, lambda m, z: decoder_mean(m.decode(z), self.likelihood))

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
        out = self._run(X, lambda m, x: m.log_marginal(x, eps.to(x.device, x.dtype)))
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
