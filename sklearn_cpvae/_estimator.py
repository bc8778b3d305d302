"""The scikit-learn estimator: validation, fitted attributes and the numpy/torch boundary."""

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from sklearn_cpvae._data import training_tensor
from sklearn_cpvae._module import CPVAEModule, log_likelihood_per_population
from sklearn_cpvae._nn import ACTIVATIONS
from sklearn_cpvae._objective import decoder_mean
from sklearn_cpvae._sklearn_compat import (
    Interval,
    StrOptions,
    _check_feature_names_in,
    validate_data,
)
from sklearn_cpvae._torch_utils import derive_seeds, make_generator, resolve_device
from sklearn_cpvae._training import TrainConfig, train

# Inference works in chunks whose temporaries stay under this many bytes.
_CHUNK_BYTES = 256 * 2**20


class CPVAE(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Cross-population variational autoencoder (Davison, Severson & Ghosh).

    Each row ``x`` of population ``k`` is generated from a shared latent code ``z``
    and a private code ``t`` as ``x ~ p(f_s(z) + f_k(t))`` (paper eq. 1). The shared
    networks see every population; population k's private networks model what is
    unique to it. Training maximises the mutual-information regularised objective of
    eq. 4 (weighted by alpha as in eq. 10), which pushes every private encoder to map
    the *other* populations to the uninformative prior; ``objective="elbo"`` maximises
    the plain ELBO of eq. 3 instead.

    The estimator is a transformer (codes), a classifier (the population of a row by
    importance-sampled marginal likelihood, eq. 7-8) and a generative model
    (:meth:`score_samples`, :meth:`sample`, :meth:`inverse_transform`).

    Population labels are passed as ``y``, so that :class:`~sklearn.pipeline.Pipeline`
    and :class:`~sklearn.model_selection.GridSearchCV` route them like class labels.

    Parameters
    ----------
    n_shared : int, default=100
        Dimension of the shared latent code z.
    n_private : int, default=25
        Dimension of each population's private latent code t.
    likelihood : {"gaussian", "bernoulli"}, default="gaussian"
        ``"gaussian"``: mean ``f_s(z) + f_k(t)`` and a learned isotropic variance Psi
        (eq. 1). ``"bernoulli"``: ``f_s(z) + f_k(t)`` are logits; X must lie in [0, 1].
    hidden_layer_sizes : tuple of int, default=(256,)
        Hidden layers of every encoder; decoders mirror them.
    activation : {"relu", "tanh", "elu", "gelu", "softplus", "leaky_relu"}, default="relu"
        Hidden-layer nonlinearity.
    objective : {"mi", "elbo"}, default="mi"
        ``"mi"``: eq. 10, which has no KL term on a population's own private code and
        penalises ``alpha * KL(q_k(t|x_j) || N(0, I))`` for rows of every other
        population j. ``"elbo"``: eq. 3 (the paper's "No MI" ablation).
    mi_weight : float, default=1.0
        alpha of eq. 10, the weight of the mutual-information term (reached at the end
        of annealing). Ignored when ``objective="elbo"``.
    mi_anneal_epochs : int, default=0
        alpha rises (or falls) linearly from 1 to ``mi_weight`` over this many epochs
        (appendix A: "beginning with alpha = 1 and gradually annealing"). 0 holds alpha
        at ``mi_weight`` throughout. A schedule longer than ``max_iter`` warns.
    priors : None, "uniform" or array-like of shape (n_populations,), default=None
        Prior probabilities of the populations for :meth:`predict_proba`. None uses the
        training frequencies; ``"uniform"`` gives the paper's argmax-likelihood rule.
    private_prior : {"standard", "aggregate"}, default="standard"
        Density of t used by :meth:`sample` and by the importance-sampled likelihood.
        ``"standard"`` is the N(0, I) of eq. 1 and 7. Eq. 4 never ties a population's
        own private posterior to N(0, I), so ``"aggregate"`` instead uses a diagonal
        Gaussian fitted to population k's training codes (see ``docs/model.md``).
    blocks : {"both", "shared", "private"}, default="both"
        Which codes :meth:`transform` returns: ``[shared | private]``, or one block.
    batch_size : int, default=64
        Rows drawn from *every* population for each minibatch (M of Algorithm 1), so a
        step sees ``K * batch_size`` rows. An epoch has ``ceil(N / (K * batch_size))``
        steps; smaller populations are recycled rather than starved.
    learning_rate_init : float, default=1e-3
        Adam step size.
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float, default=1e-4
        Relative improvement of the loss (validation loss with ``early_stopping``)
        below which an epoch counts as no improvement.
    n_iter_no_change : int, default=10
        Stop after this many epochs without improvement (counted once annealing ends).
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the rows, stop on its loss,
        and restore the weights of the best validation epoch.
    validation_fraction : float, default=0.1
        Held-out share of the rows when ``early_stopping``.
    max_grad_norm : float or None, default=None
        Clip the gradient's global norm to this value; None disables clipping.
    n_importance_samples : int, default=50
        S, the number of importance samples per row and population in eq. 8.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU; or any torch device string.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, minibatches, reparameterisation noise and the
        importance samples. Global RNGs (numpy, torch, random) are never touched.
    verbose : int, default=0
        Print one line per epoch with each term of the objective.
    warm_start : bool, default=False
        Continue training the fitted networks (and optimiser state) for another
        ``max_iter`` epochs instead of starting afresh.
    mi_samples : int or None, default=None
        How the MI term of eq. 4 is estimated on each minibatch. None: exactly, running
        every private encoder on every row, so a training row costs O(K) encoder passes.
        An int m: each private encoder sees m rows drawn from the minibatch's other
        populations, weighted so that the estimate stays unbiased; a step then costs
        ``K * m`` encoder rows whatever its size, and the cost per row stops growing
        with K (see ``docs/performance.md`` for its effect on fit quality).
    precision : {"float32", "bf16"}, default="float32"
        ``"bf16"`` runs the training forward pass under bfloat16 autocast (matrix
        products in bf16, losses and weights in float32); meant for GPUs with bf16
        tensor cores. Inference always runs in float32 (or float64 for float64 input).

    Attributes
    ----------
    classes_ : ndarray of shape (n_populations,)
        Population labels.
    population_counts_ : ndarray of shape (n_populations,)
        Training rows per population.
    priors_ : ndarray of shape (n_populations,)
        Population priors used by :meth:`predict_proba`.
    n_features_in_ : int
        Number of features seen during :term:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X` has feature
        names that are all strings.
    module_ : torch.nn.Module
        The fitted networks (kept on the CPU, in float32).
    history_ : list of dict
        One record per epoch: ``loss`` (-J), ``recon``, ``kl_shared``, ``kl_private``,
        ``mi`` (minibatch averages, per data point), ``mi_weight``, ``time`` and, with
        early stopping, the same terms on the validation rows prefixed ``val_``.
    loss_curve_ : list of float
        ``loss`` of each epoch.
    best_loss_ : float
        Lowest loss (validation loss with early stopping) after annealing.
    n_iter_ : int
        Number of epochs run (summed over warm starts).
    device_ : str
        Device the networks were trained on.
    private_code_mean_ : ndarray of shape (n_populations, n_private)
        Mean of population k's private codes on its training rows (aggregate posterior).
    private_code_var_ : ndarray of shape (n_populations, n_private)
        Variance of the aggregate posterior of t for each population.

    See Also
    --------
    sklearn.decomposition.FactorAnalysis : Linear Gaussian latent model of one population.
    sklearn.discriminant_analysis.LinearDiscriminantAnalysis : Linear generative classifier.

    References
    ----------
    J. Davison, K. A. Severson and S. Ghosh, "Cross-population Variational Autoencoders".

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_cpvae import CPVAE
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 6))
    >>> y = np.repeat(["case", "control"], 100)
    >>> X[y == "case", :2] += 3.0
    >>> model = CPVAE(n_shared=2, n_private=1, hidden_layer_sizes=(16,), max_iter=30,
    ...               n_importance_samples=8, random_state=0).fit(X, y)
    >>> model.transform(X[:3], populations=y[:3]).shape
    (3, 3)
    >>> model.predict(X[:2])
    array(['case', 'case'], dtype='<U7')
    """

    _parameter_constraints: dict = {
        "n_shared": [Interval(Integral, 1, None, closed="left")],
        "n_private": [Interval(Integral, 1, None, closed="left")],
        "likelihood": [StrOptions({"gaussian", "bernoulli"})],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "objective": [StrOptions({"mi", "elbo"})],
        "mi_weight": [Interval(Real, 0, None, closed="left")],
        "mi_anneal_epochs": [Interval(Integral, 0, None, closed="left")],
        "priors": [None, StrOptions({"uniform"}), "array-like"],
        "private_prior": [StrOptions({"standard", "aggregate"})],
        "blocks": [StrOptions({"both", "shared", "private"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "max_grad_norm": [None, Interval(Real, 0, None, closed="neither")],
        "n_importance_samples": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "mi_samples": [None, Interval(Integral, 1, None, closed="left")],
        "precision": [StrOptions({"float32", "bf16"})],
    }

    def __init__(
        self,
        n_shared=100,
        n_private=25,
        *,
        likelihood="gaussian",
        hidden_layer_sizes=(256,),
        activation="relu",
        objective="mi",
        mi_weight=1.0,
        mi_anneal_epochs=0,
        priors=None,
        private_prior="standard",
        blocks="both",
        batch_size=64,
        learning_rate_init=1e-3,
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        max_grad_norm=None,
        n_importance_samples=50,
        device="auto",
        random_state=None,
        verbose=0,
        warm_start=False,
        mi_samples=None,
        precision="float32",
    ):
        self.n_shared = n_shared
        self.n_private = n_private
        self.likelihood = likelihood
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.objective = objective
        self.mi_weight = mi_weight
        self.mi_anneal_epochs = mi_anneal_epochs
        self.priors = priors
        self.private_prior = private_prior
        self.blocks = blocks
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.max_grad_norm = max_grad_norm
        self.n_importance_samples = n_importance_samples
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.mi_samples = mi_samples
        self.precision = precision

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y):
        """Fit the networks to rows ``X`` of populations ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : array-like of shape (n_samples,)
            Population of each row (strings or integers); at least two populations,
            each with at least two rows.

        Returns
        -------
        self : CPVAE
            The fitted estimator.
        """
        self._validate_params()
        X, y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], ensure_min_samples=2,
            reset=not self._continuing(),
        )
        check_classification_targets(y)
        hidden = self._hidden_sizes()
        classes, y_idx = np.unique(y, return_inverse=True)
        self._check_populations(classes, y_idx)
        if self.likelihood == "bernoulli" and (X.min() < 0 or X.max() > 1):
            raise ValueError(
                "likelihood='bernoulli' needs X in [0, 1]; got values in "
                f"[{X.min():.3g}, {X.max():.3g}]. Use likelihood='gaussian' or rescale X."
            )
        if self.objective == "mi" and self.mi_anneal_epochs > self.max_iter:
            warnings.warn(
                f"mi_anneal_epochs={self.mi_anneal_epochs} is longer than max_iter="
                f"{self.max_iter}: alpha will not reach mi_weight={self.mi_weight}.",
                UserWarning,
                stacklevel=2,
            )

        seed_init, seed_train, seed_split, seed_val, seed_is = derive_seeds(
            self.random_state, 5
        )
        device = resolve_device(self.device)
        continuing = self._continuing()
        if continuing and not np.array_equal(classes, self.classes_):
            raise ValueError(
                f"warm_start=True but y has populations {classes.tolist()}, "
                f"while the model was fitted on {self.classes_.tolist()}."
            )
        if not continuing:
            self.classes_ = classes
            self.n_iter_ = 0
            self.history_ = []
            self.module_ = CPVAEModule(
                X.shape[1], len(classes), self.n_shared, self.n_private, hidden,
                self.activation, self.likelihood, torch.Generator().manual_seed(seed_init),
            )
            self._optimizer_state = None
        self.population_counts_ = np.bincount(y_idx, minlength=len(classes))

        rows_tr, idx_tr, val = None, y_idx, None
        if self.early_stopping:
            rows_tr, rows_val = train_test_split(
                np.arange(len(X)), test_size=self.validation_fraction, stratify=y_idx,
                random_state=seed_split,
            )
            idx_tr = y_idx[rows_tr]
            x_val = training_tensor(X, device, rows_val)
            val = (x_val, torch.as_tensor(y_idx[rows_val], device=x_val.device))
        # One float32 copy of the rows at most (none for float32 input on the CPU).
        x_t = training_tensor(X, device, rows_tr)
        pops = torch.as_tensor(idx_tr, device=x_t.device)
        pop_sizes = torch.as_tensor(
            np.bincount(idx_tr, minlength=len(classes)), dtype=torch.float32, device=device
        )

        module = self.module_.to(device)
        # The fused kernel updates every parameter in one pass; with K private networks
        # the optimiser touches O(K) weights per step, so this matters as much as the GEMMs.
        fused = device.type in ("cpu", "cuda")
        optimizer = torch.optim.Adam(
            module.parameters(), lr=self.learning_rate_init, fused=fused
        )
        if continuing and self._optimizer_state is not None:
            optimizer.load_state_dict(self._optimizer_state)
        cfg = TrainConfig(
            objective=self.objective, mi_weight=float(self.mi_weight),
            mi_anneal_epochs=self.mi_anneal_epochs, batch_size=self.batch_size,
            max_iter=self.n_iter_ + self.max_iter, tol=self.tol,
            n_iter_no_change=self.n_iter_no_change, early_stopping=self.early_stopping,
            max_grad_norm=self.max_grad_norm, verbose=self.verbose,
            mi_samples=self.mi_samples, precision=self.precision,
        )
        generator = make_generator(seed_train, device)
        index_generator = generator if device.type == "cpu" else make_generator(seed_train, "cpu")
        try:
            result = train(
                module, optimizer, (x_t, pops, pop_sizes), cfg, generator,
                index_generator=index_generator, start_epoch=self.n_iter_, val=val,
                val_seed=seed_val,
            )
        finally:
            self.module_ = module.to("cpu").eval()
        self._optimizer_state = _state_to_cpu(optimizer.state_dict())
        self.device_ = str(device)
        self.history_ = self.history_ + result.history
        self.loss_curve_ = [r["loss"] for r in self.history_]
        self.best_loss_ = result.best_loss
        self.n_iter_ = result.n_iter
        self._importance_seed = seed_is
        self.priors_ = self._resolve_priors()
        self._fit_private_aggregate(X, y_idx)
        if result.interrupted:
            warnings.warn(
                f"Training interrupted by the user at epoch {result.n_iter + 1}; the "
                "weights of the last completed epoch were kept.",
                UserWarning,
                stacklevel=2,
            )
        elif not result.converged and not self.early_stopping:
            warnings.warn(
                f"CPVAE stopped after max_iter={self.max_iter} epochs without the loss "
                f"improving by less than tol={self.tol} for {self.n_iter_no_change} "
                "epochs; increase max_iter.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _continuing(self):
        return self.warm_start and hasattr(self, "module_")

    def _hidden_sizes(self):
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if isinstance(hidden, Integral) else list(hidden)
        if not hidden or any(not isinstance(h, Integral) or h < 1 for h in hidden):
            raise ValueError(
                "hidden_layer_sizes must be a non-empty sequence of positive integers; "
                f"got {self.hidden_layer_sizes!r}."
            )
        return [int(h) for h in hidden]

    @staticmethod
    def _check_populations(classes, y_idx):
        if len(classes) < 2:
            raise ValueError(
                "CPVAE needs at least 2 populations (classes) in y; got 1 class: "
                f"{classes.tolist()}."
            )
        counts = np.bincount(y_idx, minlength=len(classes))
        small = [str(c) for c, n in zip(classes, counts) if n < 2]
        if small:
            raise ValueError(
                f"every population needs at least 2 rows; population(s) {small} have 1."
            )

    def _resolve_priors(self):
        k = len(self.classes_)
        if self.priors is None:
            return self.population_counts_ / self.population_counts_.sum()
        if isinstance(self.priors, str):
            return np.full(k, 1.0 / k)
        priors = np.asarray(self.priors, dtype=np.float64)
        if priors.shape != (k,) or np.any(priors < 0) or not np.isclose(priors.sum(), 1):
            raise ValueError(
                f"priors must be {k} non-negative numbers summing to 1; got {self.priors!r}."
            )
        return priors

    def _fit_private_aggregate(self, X, y_idx):
        """Moments of each population's aggregate private posterior q_k(t) on its rows."""
        mu, var = self._encode(X, y_idx, private_var=True)
        k = len(self.classes_)
        self.private_code_mean_ = np.stack([mu[y_idx == j].mean(0) for j in range(k)])
        self.private_code_var_ = np.stack(
            [mu[y_idx == j].var(0) + var[y_idx == j].mean(0) for j in range(k)]
        )

    # --------------------------------------------------------------- inference
    @staticmethod
    def _to_tensor(X, device, dtype=np.float32):
        # np.array copies, so torch never aliases a caller's (possibly read-only) array.
        return torch.from_numpy(np.array(X, dtype=dtype, order="C")).to(device)

    def _inference_module(self, dtype):
        """The fitted networks on the inference device, in ``dtype`` (float32/float64).

        float64 input runs a float64 copy: float32 GEMMs round differently with the
        number of rows, which would make a row's output depend on its batch.
        """
        device = resolve_device(self.device, fallback_warn=True)
        tdtype = torch.float64 if dtype == np.float64 else torch.float32
        if device.type == "cpu" and tdtype == torch.float32:
            return self.module_, device, tdtype
        return copy.deepcopy(self.module_).to(device=device, dtype=tdtype), device, tdtype

    def _chunks(self, n, bytes_per_row):
        size = max(1, int(_CHUNK_BYTES // max(1, bytes_per_row)))
        return [slice(i, i + size) for i in range(0, n, size)]

    def _encode(self, X, y_idx=None, private_var=False):
        """Posterior means of z (and of t for populations ``y_idx``), as numpy."""
        module, device, tdtype = self._inference_module(X.dtype)
        width = max(self._hidden_sizes() + [X.shape[1]])
        per_row = 8 * width * (2 + (y_idx is not None) * len(self.classes_))
        shared, private, pvar = [], [], []
        with torch.inference_mode():
            for sl in self._chunks(len(X), per_row):
                xb = self._to_tensor(X[sl], device, X.dtype)
                if y_idx is None:
                    shared.append(module.encode_shared(xb)[0].cpu().numpy())
                    continue
                mu, lv = module.encode_private(xb, torch.as_tensor(y_idx[sl], device=device))
                private.append(mu.cpu().numpy())
                pvar.append(torch.exp(lv).cpu().numpy())
        if y_idx is None:
            return np.concatenate(shared).astype(X.dtype, copy=False)
        if private_var:
            return np.concatenate(private), np.concatenate(pvar)
        return np.concatenate(private).astype(X.dtype, copy=False)

    def _log_likelihoods(self, X):
        """log p(x | k) for every row and population, shape (n, K) (eq. 7-8)."""
        module, device, tdtype = self._inference_module(X.dtype)
        s, k = self.n_importance_samples, len(self.classes_)
        gen = torch.Generator().manual_seed(self._importance_seed)
        eps = torch.randn((s, self.n_shared + self.n_private), generator=gen, dtype=torch.float64)
        eps = eps.to(device=device, dtype=tdtype)
        eps_z, eps_t = eps[:, : self.n_shared], eps[:, self.n_shared :]
        if self.private_prior == "aggregate":
            p_mean = torch.as_tensor(self.private_code_mean_, device=device, dtype=tdtype)
            p_logvar = torch.as_tensor(np.log(self.private_code_var_), device=device, dtype=tdtype)
        else:
            p_mean = torch.zeros((k, self.n_private), device=device, dtype=tdtype)
            p_logvar = torch.zeros_like(p_mean)
        width = max(self._hidden_sizes() + [X.shape[1]])
        per_row = 4 * X.itemsize * s * (k + 1) * (X.shape[1] + width + self.n_private)
        out = []
        with torch.inference_mode():
            for sl in self._chunks(len(X), per_row):
                xb = self._to_tensor(X[sl], device, X.dtype)
                out.append(
                    log_likelihood_per_population(module, xb, eps_z, eps_t, p_mean, p_logvar)
                    .cpu()
                    .numpy()
                )
        return np.concatenate(out).astype(np.float64)

    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)

    def _population_index(self, populations, n_rows, name="populations"):
        populations = np.asarray(populations)
        if populations.ndim != 1 or len(populations) != n_rows:
            raise ValueError(
                f"{name} must be 1-D with one label per row ({n_rows}); got shape "
                f"{populations.shape}."
            )
        idx = np.searchsorted(self.classes_, populations)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != populations
        if np.any(unknown):
            raise ValueError(
                f"unknown population label(s) {np.unique(populations[unknown]).tolist()} in "
                f"{name}; the model was fitted on {self.classes_.tolist()}."
            )
        return idx

    def predict_log_proba(self, X):
        """Log posterior over populations: log prior + importance-sampled log p(x | k).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_populations)
            Columns follow ``classes_``.
        """
        X = self._check_X(X)
        with np.errstate(divide="ignore"):
            joint = self._log_likelihoods(X) + np.log(self.priors_)
        return joint - logsumexp(joint, axis=1, keepdims=True)

    def predict_proba(self, X):
        """Posterior probability of each population (eq. 7-8 with the priors ``priors_``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_populations)
            Columns follow ``classes_``.
        """
        check_is_fitted(self)
        return np.exp(self.predict_log_proba(X))

    def predict(self, X):
        """Most probable population of each row (paper §4.3 with ``priors="uniform"``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Population labels.
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_log_proba(X), axis=1)]

    def score_samples(self, X, populations=None):
        """Importance-sampled log-likelihood of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.
        populations : array-like of shape (n_samples,), default=None
            Known population of each row: returns ``log p(x | k)``. None returns the
            mixture ``log sum_k priors_[k] p(x | k)``.

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
        """
        X = self._check_X(X)
        ll = self._log_likelihoods(X)
        if populations is not None:
            idx = self._population_index(populations, len(X))
            return ll[np.arange(len(X)), idx]
        with np.errstate(divide="ignore"):
            return logsumexp(ll + np.log(self.priors_), axis=1)

    def transform(self, X, populations=None):
        """Posterior means of the codes: ``[E q(z|x) | E q_k(t|x)]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to encode.
        populations : array-like of shape (n_samples,), default=None
            Population k of each row, whose private encoder gives t. None uses the
            predicted population (:meth:`predict`). Unused when ``blocks="shared"``.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_codes)
            ``n_shared + n_private`` columns for ``blocks="both"``, else one block.
        """
        X = self._check_X(X)
        parts = []
        if self.blocks in ("both", "shared"):
            parts.append(self._encode(X))
        if self.blocks in ("both", "private"):
            if populations is None:
                idx = np.argmax(self._log_likelihoods(X) + np.log(self.priors_), axis=1)
            else:
                idx = self._population_index(populations, len(X))
            parts.append(self._encode(X, idx))
        return np.hstack(parts)

    def inverse_transform(self, X, populations=None, *, part="auto"):
        """Decode codes back to feature space: full, shared-only, private-only or swapped.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_codes)
            Codes laid out as :meth:`transform` returns them for the current ``blocks``.
        populations : array-like of shape (n_samples,), default=None
            Private decoder f_k for each row. Passing another population than the row
            came from gives the population swap of the paper's Fig. 4.
        part : {"auto", "full", "shared", "private"}, default="auto"
            ``"full"``: ``f_s(z) + f_k(t)``; ``"shared"``: ``f_s(z)`` alone (the
            "background" of Fig. 2, bottom row); ``"private"``: ``f_k(t)`` alone (Fig. 2,
            third row). ``"auto"`` is ``"full"`` when ``populations`` is given (or
            ``"private"`` for ``blocks="private"``), else ``"shared"``.

        Returns
        -------
        X_rec : ndarray of shape (n_samples, n_features_in_)
            Mean of p(x | z, t) (probabilities for the Bernoulli likelihood).
        """
        check_is_fitted(self)
        X = check_array(X, dtype=[np.float64, np.float32])
        widths = {"both": self.n_shared + self.n_private, "shared": self.n_shared,
                  "private": self.n_private}
        if X.shape[1] != widths[self.blocks]:
            raise ValueError(
                f"X has {X.shape[1]} columns, but codes of blocks={self.blocks!r} have "
                f"{widths[self.blocks]}."
            )
        if part == "auto":
            if populations is None:
                part = "shared"
            else:
                part = "private" if self.blocks == "private" else "full"
        if part not in ("full", "shared", "private"):
            raise ValueError(f"part must be 'auto', 'full', 'shared' or 'private'; got {part!r}.")
        if part in ("full", "shared") and self.blocks == "private":
            raise ValueError(f"part={part!r} needs the shared block, but blocks='private'.")
        if part in ("full", "private"):
            if self.blocks == "shared":
                raise ValueError(f"part={part!r} needs the private block, but blocks='shared'.")
            if populations is None:
                raise ValueError(f"part={part!r} needs populations to choose the private decoder.")
            idx = self._population_index(populations, len(X))
        module, device, tdtype = self._inference_module(X.dtype)
        z_cols = slice(0, self.n_shared) if self.blocks == "both" else slice(0, X.shape[1])
        t_cols = slice(self.n_shared, None) if self.blocks == "both" else slice(0, X.shape[1])
        per_row = 8 * X.itemsize * (self.n_features_in_ + max(self._hidden_sizes()))
        out = []
        with torch.inference_mode():
            for sl in self._chunks(len(X), per_row):
                codes = self._to_tensor(X[sl], device, X.dtype)
                dec = 0
                if part in ("full", "shared"):
                    dec = dec + module.decode_shared(codes[:, z_cols])
                if part in ("full", "private"):
                    pops = torch.as_tensor(idx[sl], device=device)
                    dec = dec + module.decode_private(codes[:, t_cols], pops)
                out.append(decoder_mean(dec, self.likelihood).cpu().numpy())
        return np.concatenate(out).astype(X.dtype, copy=False)

    def sample(self, n_samples=1, population=None, *, random_state=None):
        """Generate rows from the fitted model (eq. 1).

        z is drawn from N(0, I); t from the density chosen by ``private_prior`` (eq. 4
        leaves a population's own private posterior free, so its codes need not look like
        N(0, I): ``private_prior="aggregate"`` usually gives more faithful samples).

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows.
        population : label or None, default=None
            Population of every row; None draws populations from ``priors_``.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws; global RNG state is not used.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_)
            Mean of p(x | z, t) for each draw.
        y : ndarray of shape (n_samples,)
            Population of each row.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        rng = np.random.default_rng(derive_seeds(random_state, 1)[0])
        k = len(self.classes_)
        if population is None:
            idx = rng.choice(k, size=n_samples, p=self.priors_)
        else:
            idx = np.full(n_samples, self._population_index([population], 1, "population")[0])
        z = rng.standard_normal((n_samples, self.n_shared))
        t = rng.standard_normal((n_samples, self.n_private))
        if self.private_prior == "aggregate":
            t = self.private_code_mean_[idx] + np.sqrt(self.private_code_var_[idx]) * t
        module = self.module_
        with torch.inference_mode():
            zt = torch.as_tensor(z, dtype=torch.float32)
            tt = torch.as_tensor(t, dtype=torch.float32)
            out = module.decode_shared(zt) + module.decode_private(tt, torch.as_tensor(idx))
            X = decoder_mean(out, self.likelihood).numpy().astype(np.float64)
        return X, self.classes_[idx]

    def get_feature_names_out(self, input_features=None):
        """Names of the columns of :meth:`transform`: ``shared0..`` then ``private0..``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Checked against ``feature_names_in_``; not used to build the names.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features)
        names = []
        if self.blocks in ("both", "shared"):
            names += [f"shared{i}" for i in range(self.n_shared)]
        if self.blocks in ("both", "private"):
            names += [f"private{i}" for i in range(self.n_private)]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.non_deterministic = self.device != "cpu" and torch.cuda.is_available()
        return tags


def _state_to_cpu(state):
    """Optimizer state with every tensor on the CPU, so the estimator pickles anywhere."""
    def move(v):
        if isinstance(v, torch.Tensor):
            return v.detach().to("cpu")
        if isinstance(v, dict):
            return {k: move(x) for k, x in v.items()}
        if isinstance(v, list):
            return [move(x) for x in v]
        return v

    return move(state)
