"""The scikit-learn estimator: validation, fitted attributes and the numpy/torch boundary."""

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from sklearn_cpvae._checks import check_finite_output, check_float32_range, fit_info
from sklearn_cpvae._data import start_values, training_tensor
from sklearn_cpvae._module import COUNT_LIKELIHOODS, CPVAEModule, log_likelihood_per_population
from sklearn_cpvae._nn import ACTIVATIONS
from sklearn_cpvae._objective import decoder_mean
from sklearn_cpvae._sklearn_compat import (
    Interval,
    StrOptions,
    _check_feature_names_in,
    _get_output_config,
    validate_data,
)
from sklearn_cpvae._sparse import SparseRows, row_totals
from sklearn_cpvae._torch_utils import derive_seeds, make_generator, resolve_device
from sklearn_cpvae._training import TrainConfig, TrainingDivergedError, train

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
    likelihood : {"gaussian", "bernoulli", "poisson", "nb"}, default="gaussian"
        ``"gaussian"``: mean ``f_s(z) + f_k(t)`` and a learned isotropic variance Psi
        (eq. 1). ``"bernoulli"``: ``f_s(z) + f_k(t)`` are logits; X must lie in [0, 1].
        ``"poisson"`` and ``"nb"`` (negative binomial with a learned inverse dispersion
        per feature, ``module_.log_theta``) model raw non-negative counts:
        ``f_s(z) + f_k(t)`` is the log mean count at the reference library size, the
        encoders see ``log1p(X)``, and ``library_size`` adds each row's log size
        factor. See ``docs/omics.md`` for when to use which.
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
    private_prior : {"aggregate", "standard"}, default="aggregate"
        Density of population k's private code t used by :meth:`sample` and by the
        importance-sampled likelihood (eq. 7-8). ``"standard"`` is the N(0, I) of eq. 1,
        the paper's literal rule. Eq. 4 never ties a population's own private posterior to
        N(0, I), so its codes drift away from it and the N(0, I) prior then penalises the
        *correct* population; ``"aggregate"`` uses a diagonal Gaussian fitted to
        population k's own training codes instead (measured in ``docs/model.md``).
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
        and restore the weights of the epoch with the lowest validation loss (counted
        once annealing ends).
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
        ``max_iter`` epochs instead of starting afresh. Parameters that shape the
        networks (sizes, activation, likelihood, ``missing``, ``library_size``,
        ``shared_invariance``, ``no_private_populations``) must then be unchanged, or
        ``fit`` raises a ValueError; the training parameters may change.
    missing : {"error", "mask"}, default="error"
        ``"error"``: NaN in X raises a ValueError. ``"mask"``: NaN entries are left out
        of the reconstruction log-likelihood (the likelihood of the observed part of
        each row) instead of being imputed; the encoders see them as 0 (standardise X
        first so that 0 is the feature mean). :meth:`transform`, :meth:`predict`,
        :meth:`score_samples` then accept rows with NaN too.
    library_size : bool, default=True
        For ``likelihood="poisson"`` or ``"nb"``: add ``log(l_i / l_ref)`` to each
        row's log-rate, where ``l_i`` is the row's total count (scaled up from its
        observed entries) and ``l_ref`` (``library_size_ref_``) the median training
        total, so that sequencing depth is not modelled by the latent codes. Ignored
        for other likelihoods.
    no_private_populations : None or array-like of labels, default=None
        Populations without a private latent space: their private decoder contributes
        0, so their rows are generated from the shared code alone and their private
        encoder is unused (no MI term). The MI term of the other populations still runs
        on their rows. With a background population listed here, CPVAE becomes a
        contrastive VAE: the shared code models what target and background share and
        the target's private code what is specific to it. Classification stays well
        defined: for such a population ``log p(x | k)`` integrates over z only. Their
        private codes from :meth:`transform` are 0. Listing every population gives a
        plain VAE with a population label.
    shared_invariance : float, default=0.0
        Weight of an optional penalty, not part of the paper's objective, added to the
        loss: the sum over populations of the MMD (RBF kernel, median bandwidth) between
        the population's shared posterior means and those of the whole minibatch. It
        discourages the shared code from encoding the population itself (see
        :func:`sklearn_cpvae.diagnostics.leakage_report`). 0 is eq. 4 as published.
    population_column : None or str, default=None
        Name of a column of a pandas DataFrame ``X`` that holds the population of each
        row. When set, :meth:`fit` takes the population from that column (``y`` may be
        omitted; if given it must agree), the column is not a feature, and the other
        methods drop it from X; :meth:`transform` uses it as ``populations`` when that
        argument is not given. Passing ``y`` instead keeps working in every
        :class:`~sklearn.pipeline.Pipeline` and search.
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
    has_private_ : ndarray of bool of shape (n_populations,)
        False for the populations of ``no_private_populations``.
    library_size_ref_ : float
        Reference library size (median training row total) of the count likelihoods;
        1.0 when unused.
    fit_info_ : dict
        What reproduces the fit: library, torch, sklearn, numpy and python versions,
        platform, device, CUDA version, torch thread count, the integer ``random_state``
        (None otherwise) and the integer seeds derived from it.

    Notes
    -----
    If a term of the objective becomes non-finite, explodes or jumps between epochs (see
    ``docs/persistence.md#divergence``), ``fit`` restores the weights of the epoch with
    the lowest loss once annealing is over (before that, of the last good epoch),
    completes every fitted attribute, and raises
    :class:`~sklearn_cpvae.TrainingDivergedError` naming the term, the epoch and the
    restored epoch: the estimator is then fitted and usable. A ``KeyboardInterrupt``
    keeps the weights of the last completed epoch and warns, as
    :class:`~sklearn.neural_network.MLPClassifier` does. Pickles execute code when
    loaded; :meth:`save` and :func:`sklearn_cpvae.load` use a format that does not.

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
        "likelihood": [StrOptions({"gaussian", "bernoulli", "poisson", "nb"})],
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
        "missing": [StrOptions({"error", "mask"})],
        "library_size": ["boolean"],
        "no_private_populations": [None, "array-like"],
        "shared_invariance": [Interval(Real, 0, None, closed="left")],
        "population_column": [None, str],
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
        private_prior="aggregate",
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
        missing="error",
        library_size=True,
        no_private_populations=None,
        shared_invariance=0.0,
        population_column=None,
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
        self.missing = missing
        self.library_size = library_size
        self.no_private_populations = no_private_populations
        self.shared_invariance = shared_invariance
        self.population_column = population_column
        self.mi_samples = mi_samples
        self.precision = precision

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Fit the networks to rows ``X`` of populations ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training rows. CSR/CSC matrices are densified one minibatch at a time.
        y : array-like of shape (n_samples,), default=None
            Population of each row (strings or integers); at least two populations,
            each with at least two rows. May be None only with ``population_column``.

        Returns
        -------
        self : CPVAE
            The fitted estimator.
        """
        self._validate_params()
        X, classes, y_idx, gate = self._validated_fit_data(X, y)

        seeds = derive_seeds(self.random_state, 5)
        seed_init, seed_train, seed_split, seed_val, seed_is = seeds
        device = resolve_device(self.device)
        continuing = self._continuing()
        if continuing and not np.array_equal(classes, self.classes_):
            raise ValueError(
                f"warm_start=True but y has populations {classes.tolist()}, "
                f"while the model was fitted on {self.classes_.tolist()}."
            )
        if continuing:
            self._check_same_networks(gate)
        if not continuing:
            self.classes_ = classes
            self.n_iter_ = 0
            self.history_ = []
            self._optimizer_state = None
            self._init_networks(X, gate, seed_init)
        self.has_private_ = gate.astype(bool)
        self.population_counts_ = np.bincount(y_idx, minlength=len(classes))

        rows_tr, idx_tr, val = None, y_idx, None
        if self.early_stopping:
            rows_tr, rows_val = train_test_split(
                np.arange(X.shape[0]),
                test_size=self.validation_fraction,
                stratify=y_idx,
                random_state=seed_split,
            )
            idx_tr = y_idx[rows_tr]
            x_val = self._rows_source(X, device, rows_val)
            val = (x_val, torch.as_tensor(y_idx[rows_val], device=x_val.device))
        # One float32 copy of the rows at most (none for float32 input on the CPU);
        # a sparse X stays sparse and is densified one minibatch at a time.
        x_t = self._rows_source(X, device, rows_tr)
        pops = torch.as_tensor(idx_tr, device=x_t.device)
        pop_sizes = torch.as_tensor(
            np.bincount(idx_tr, minlength=len(classes)), dtype=torch.float32, device=device
        )

        module = self.module_.to(device)
        # The fused kernel updates every parameter in one pass; with K private networks
        # the optimiser touches O(K) weights per step, so this matters as much as the GEMMs.
        fused = device.type in ("cpu", "cuda")
        optimizer = torch.optim.Adam(module.parameters(), lr=self.learning_rate_init, fused=fused)
        if continuing and self._optimizer_state is not None:
            optimizer.load_state_dict(self._optimizer_state)
        cfg = TrainConfig(
            objective=self.objective,
            mi_weight=float(self.mi_weight),
            mi_anneal_epochs=self.mi_anneal_epochs,
            batch_size=self.batch_size,
            max_iter=self.n_iter_ + self.max_iter,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=self.early_stopping,
            max_grad_norm=self.max_grad_norm,
            verbose=self.verbose,
            mi_samples=self.mi_samples,
            precision=self.precision,
        )
        generator = make_generator(seed_train, device)
        index_generator = generator if device.type == "cpu" else make_generator(seed_train, "cpu")
        diverged = None
        try:
            result = train(
                module,
                optimizer,
                (x_t, pops, pop_sizes),
                cfg,
                generator,
                index_generator=index_generator,
                start_epoch=self.n_iter_,
                val=val,
                val_seed=seed_val,
            )
        except TrainingDivergedError as exc:
            # Good weights are restored: finish fitting, then raise (see
            # docs/persistence.md#divergence). Adam's moments may hold NaN: drop them.
            diverged, result = exc, exc.result
        finally:
            self.module_ = module.to("cpu").eval()
        self._optimizer_state = (
            None if diverged is not None else _state_to_cpu(optimizer.state_dict())
        )
        self.device_ = str(device)
        self.history_ = self.history_ + result.history
        self.loss_curve_ = [r["loss"] for r in self.history_]
        self.best_loss_ = result.best_loss
        self.n_iter_ = result.n_iter
        self._importance_seed = seed_is
        self.priors_ = self._resolve_priors()
        self._fit_private_aggregate(X, y_idx)
        self.fit_info_ = fit_info(device, seeds, self.random_state)
        if diverged is not None:
            raise diverged
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

    def _validated_fit_data(self, X, y):
        """Validated X (CSR if sparse), population labels and indices, private gates."""
        X, column = self._pop_population_column(X)
        if column is not None:
            if y is not None and not np.array_equal(np.asarray(y), column):
                raise ValueError(
                    f"y disagrees with the population_column {self.population_column!r} "
                    "of X; pass one of them."
                )
            y = column
        if y is None:
            raise ValueError(
                "CPVAE requires y to be passed, but the target y is None: pass the "
                "population of each row, or X as a DataFrame holding the column named "
                "by population_column."
            )
        X, y = validate_data(
            self,
            X,
            y,
            dtype=[np.float64, np.float32],
            ensure_min_samples=2,
            reset=not self._continuing(),
            accept_sparse=("csr", "csc"),
            ensure_all_finite=self._finite_mode(),
        )
        if sp.issparse(X):
            X = X.tocsr()
        check_classification_targets(y)
        check_float32_range(X)
        self._hidden_sizes()  # validate before any work
        classes, y_idx = np.unique(y, return_inverse=True)
        self._check_populations(classes, y_idx)
        self._check_support(X)
        gate = self._private_gate(classes)
        if self.objective == "mi" and self.mi_anneal_epochs > self.max_iter:
            warnings.warn(
                f"mi_anneal_epochs={self.mi_anneal_epochs} is longer than max_iter="
                f"{self.max_iter}: alpha will not reach mi_weight={self.mi_weight}.",
                UserWarning,
                stacklevel=3,
            )
        return X, classes, y_idx, gate

    def _init_networks(self, X, gate, seed_init):
        """Build the networks and start the decoder (and Psi) at the data's scale."""
        self.module_ = self._build_module(X.shape[1], gate, seed_init)
        self.library_size_ref_ = 1.0
        if self.likelihood in COUNT_LIKELIHOODS and self.library_size:
            self.library_size_ref_ = float(max(1.0, np.median(row_totals(X))))
            self.module_.log_library_ref.fill_(np.log(self.library_size_ref_))
        if self.likelihood in COUNT_LIKELIHOODS:
            # Start f_s at the log mean count of each feature (at the reference
            # library size) rather than at log-rate 0, which is far from typical
            # counts and costs many epochs to climb.
            with torch.no_grad():
                self.module_.dec_shared.biases[-1].add_(
                    torch.as_tensor(self._log_mean_counts(X), dtype=torch.float32)
                )
        else:
            self._init_to_data_scale(X)

    def _finite_mode(self):
        return "allow-nan" if self.missing == "mask" else True

    def _pop_population_column(self, X):
        """``(X without the population column, the column as ndarray or None)``."""
        col = self.population_column
        if col is None:
            return X, None
        if not hasattr(X, "columns") or col not in X.columns:
            return X, None
        return X.drop(columns=[col]), np.asarray(X[col])

    @staticmethod
    def _rows_source(X, device, rows=None):
        """Rows ``rows`` of X for training: a float32 tensor, or densify-on-demand rows."""
        if sp.issparse(X):
            return SparseRows(X if rows is None else X[rows], device)
        return training_tensor(X, device, rows)

    def _check_support(self, X):
        """Value ranges the likelihood needs, checked without densifying a sparse X."""
        if self.likelihood not in ("bernoulli", *COUNT_LIKELIHOODS):
            return
        if sp.issparse(X):
            vals = X.data[~np.isnan(X.data)]
            lo = min(vals.min(initial=0.0), 0.0) if X.nnz < np.prod(X.shape) else vals.min()
            hi = max(vals.max(initial=0.0), 0.0)
        else:
            lo, hi = np.nanmin(X), np.nanmax(X)
        if self.likelihood == "bernoulli" and (lo < 0 or hi > 1):
            raise ValueError(
                "likelihood='bernoulli' needs X in [0, 1]; got values in "
                f"[{lo:.3g}, {hi:.3g}]. Use likelihood='gaussian' or rescale X."
            )
        if self.likelihood in COUNT_LIKELIHOODS and lo < 0:
            raise ValueError(
                f"likelihood={self.likelihood!r} models non-negative counts; X has a "
                f"negative value ({lo:.3g}). Pass raw counts, or use likelihood='gaussian' "
                "for log-transformed or standardised data."
            )

    def _init_to_data_scale(self, X):
        """Start f_s's output at the feature means and Psi at their variance (see
        :func:`~sklearn_cpvae._data.start_values`), whatever the data's scale."""
        bias, log_psi = start_values(X, self.likelihood)
        with torch.no_grad():
            if log_psi is not None:
                self.module_.log_psi.fill_(log_psi)
            self.module_.dec_shared.biases[-1].add_(torch.as_tensor(bias, dtype=torch.float32))

    def _log_mean_counts(self, X):
        """log of each feature's mean count, rows rescaled to ``library_size_ref_``."""
        scale = np.ones(X.shape[0])
        if self.library_size:
            scale = self.library_size_ref_ / np.maximum(row_totals(X), 1.0)
        if sp.issparse(X):
            X = X.copy()
            X.data = np.nan_to_num(X.data)
            sums = np.asarray(X.T @ scale).ravel()
            n_obs = X.shape[0]
        else:
            obs = ~np.isnan(X)
            sums = np.nan_to_num(X).T @ scale
            n_obs = np.maximum(obs.sum(0), 1)
        return np.log(np.maximum(sums / n_obs, 1e-3))

    def _private_gate(self, classes):
        """1.0 for populations with a private space, 0.0 for ``no_private_populations``."""
        gate = np.ones(len(classes))
        if self.no_private_populations is None:
            return gate
        listed = np.asarray(self.no_private_populations)
        if listed.ndim != 1:
            raise ValueError("no_private_populations must be a 1-D list of population labels.")
        unknown = [v for v in listed.tolist() if v not in classes.tolist()]
        if unknown:
            raise ValueError(
                f"no_private_populations has label(s) {unknown} that are not populations "
                f"of y {classes.tolist()}."
            )
        gate[np.isin(classes, listed)] = 0.0
        return gate

    def _build_module(self, n_features, private_gate, seed):
        """The networks for this configuration; ``fit`` and :func:`load` both build here."""
        return CPVAEModule(
            n_features,
            len(private_gate),
            self.n_shared,
            self.n_private,
            self._hidden_sizes(),
            self.activation,
            self.likelihood,
            torch.Generator().manual_seed(seed),
            mask_missing=self.missing == "mask",
            library_size=self.library_size,
            private_gate=private_gate,
            shared_invariance=self.shared_invariance,
        )

    def _continuing(self):
        return self.warm_start and hasattr(self, "module_")

    def _check_same_networks(self, gate):
        """With ``warm_start``, the parameters that shape the networks must not change:
        training would otherwise go on with the old networks and ignore the new values."""
        fitted = _network_signature(self.module_)
        # From the parameters, without building (and allocating) a second set of networks.
        wanted = {
            "n_shared": self.n_shared,
            "n_private": self.n_private,
            "hidden_layer_sizes": self._hidden_sizes(),
            "activation": self.activation,
            "likelihood": self.likelihood,
            "missing": self.missing == "mask",
            "library_size": bool(self.library_size) and self.likelihood in COUNT_LIKELIHOODS,
            "shared_invariance": float(self.shared_invariance),
            "no_private_populations": [float(g) for g in gate],
        }
        changed = sorted(k for k in wanted if wanted[k] != fitted[k])
        if changed:
            raise ValueError(
                f"warm_start=True but the networks' configuration changed since the last "
                f"fit ({', '.join(changed)}); set warm_start=False to fit afresh, or set "
                "those parameters back."
            )

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
        # Without a private space t is unused: its density stays the N(0, I) prior.
        self.private_code_mean_[~self.has_private_] = 0.0
        self.private_code_var_[~self.has_private_] = 1.0

    # --------------------------------------------------------------- inference
    @staticmethod
    def _to_tensor(X, device, dtype=np.float32):
        if sp.issparse(X):
            # One inference chunk or minibatch at a time, never the whole matrix.
            X = X.toarray()
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
            for sl in self._chunks(X.shape[0], per_row):
                xb = self._to_tensor(X[sl], device, X.dtype)
                if y_idx is None:
                    shared.append(module.encode_shared(xb)[0].cpu().numpy())
                    continue
                mu, lv = module.encode_private(xb, torch.as_tensor(y_idx[sl], device=device))
                mu = (
                    mu
                    * torch.as_tensor(self.has_private_[y_idx[sl]], dtype=mu.dtype, device=device)[
                        :, None
                    ]
                )
                private.append(mu.cpu().numpy())
                pvar.append(torch.exp(lv).cpu().numpy())
        if y_idx is None:
            codes = np.concatenate(shared).astype(X.dtype, copy=False)
            return check_finite_output(codes, "the shared code", tdtype)
        private = check_finite_output(np.concatenate(private), "the private code", tdtype)
        if private_var:
            return private, np.concatenate(pvar)
        return private.astype(X.dtype, copy=False)

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
        per_row = 4 * X.dtype.itemsize * s * (k + 1) * (X.shape[1] + width + self.n_private)
        out = []
        with torch.inference_mode():
            for sl in self._chunks(X.shape[0], per_row):
                xb = self._to_tensor(X[sl], device, X.dtype)
                out.append(
                    log_likelihood_per_population(module, xb, eps_z, eps_t, p_mean, p_logvar)
                    .cpu()
                    .numpy()
                )
        ll = np.concatenate(out).astype(np.float64)
        return check_finite_output(ll, "log p(x | population)", tdtype)

    def _check_X(self, X, return_column=False):
        check_is_fitted(self)
        X, column = self._pop_population_column(X)
        X = validate_data(
            self,
            X,
            dtype=[np.float64, np.float32],
            reset=False,
            accept_sparse=("csr", "csc"),
            ensure_all_finite=self._finite_mode(),
        )
        if sp.issparse(X):
            X = X.tocsr()
        return (X, column) if return_column else X

    def _population_index(self, populations, n_rows, name="populations"):
        populations = np.asarray(populations)
        if populations.ndim != 1 or len(populations) != n_rows:
            raise ValueError(
                f"{name} must be 1-D with one label per row ({n_rows}); got shape "
                f"{populations.shape}."
            )
        try:
            idx = np.searchsorted(self.classes_, populations)
        except TypeError:
            # Labels of another type than classes_ (e.g. numbers mixed with strings).
            raise ValueError(
                f"{name} holds labels of types "
                f"{sorted({type(p).__name__ for p in populations.ravel().tolist()})} that "
                f"cannot be compared with the fitted populations {self.classes_.tolist()}."
            ) from None
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != populations
        if np.any(unknown):
            raise ValueError(
                f"unknown population label(s) {np.unique(populations[unknown]).tolist()} in "
                f"{name}; the model was fitted on {self.classes_.tolist()}."
            )
        return idx

    def score(self, X, y=None, sample_weight=None):
        """Mean accuracy of :meth:`predict` against the populations.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows to classify.
        y : array-like of shape (n_samples,), default=None
            True populations. None takes them from ``population_column`` of X, so that
            a search over a DataFrame with that column needs no ``y``.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        if y is None:
            _, y = self._pop_population_column(X)
            if y is None:
                raise ValueError("score needs y, or X as a DataFrame holding population_column.")
        return super().score(X, y, sample_weight=sample_weight)

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
            idx = self._population_index(populations, X.shape[0])
            return ll[np.arange(X.shape[0]), idx]
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
        X, column = self._check_X(X, return_column=True)
        if populations is None:
            populations = column
        parts = []
        if self.blocks in ("both", "shared"):
            parts.append(self._encode(X))
        if self.blocks in ("both", "private"):
            if populations is None:
                idx = np.argmax(self._log_likelihoods(X) + np.log(self.priors_), axis=1)
            else:
                idx = self._population_index(populations, X.shape[0])
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
        X_rec : ndarray or DataFrame of shape (n_samples, n_features_in_)
            Mean of p(x | z, t) (probabilities for the Bernoulli likelihood, mean counts
            at ``library_size_ref_`` for the count likelihoods). A DataFrame with the
            input feature names when ``set_output(transform="pandas")`` is active.
        """
        check_is_fitted(self)
        X = check_array(X, dtype=[np.float64, np.float32])
        widths = {
            "both": self.n_shared + self.n_private,
            "shared": self.n_shared,
            "private": self.n_private,
        }
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
        X_rec = np.concatenate(out).astype(X.dtype, copy=False)
        X_rec = check_finite_output(X_rec, "the decoded X", tdtype)
        if _get_output_config("transform", self)["dense"] == "pandas":
            import pandas as pd

            names = getattr(self, "feature_names_in_", None)
            if names is None:
                names = [f"x{i}" for i in range(self.n_features_in_)]
            return pd.DataFrame(X_rec, columns=list(names))
        return X_rec

    def sample(self, n_samples=1, population=None, *, random_state=None):
        """Generate rows from the fitted model (eq. 1).

        z is drawn from N(0, I); t from the density chosen by ``private_prior`` (eq. 4
        leaves a population's own private posterior free, so its codes need not look like
        N(0, I): the default ``"aggregate"`` draws t where the decoder was trained).

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
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
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

    def save(self, path):
        """Save the fitted estimator to ``path`` in a format that runs no code on load.

        The file (safetensors: raw arrays plus a JSON header) holds the weights, the
        parameters, every fitted attribute, the optimiser state (for ``warm_start``),
        the library and format versions and a SHA-256 digest. Read it back with
        :func:`sklearn_cpvae.load`, which refuses truncated, modified or incompatible
        files. Pickle and joblib also work but execute code when loaded: open those
        only from trusted sources (see ``docs/persistence.md``).

        Parameters
        ----------
        path : str or path-like
            Destination; written atomically (a failed save never leaves a partial file).

        Returns
        -------
        self : CPVAE
            The estimator, unchanged.
        """
        from sklearn_cpvae._persistence import save

        save(self, path)
        return self

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
        if input_features is not None and np.ndim(input_features) != 1:
            raise ValueError(
                "input_features must be None or a 1-D array-like of feature names; got "
                f"{input_features!r}."
            )
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
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = self.missing == "mask"
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


def _network_signature(module):
    """The parameters a fitted :class:`CPVAEModule` was built with, read off the module."""
    return {
        "n_shared": module.n_shared,
        "n_private": module.n_private,
        "hidden_layer_sizes": [w.shape[-1] for w in module.enc_shared.weights[:-1]],
        "activation": module.enc_shared.activation,
        "likelihood": module.likelihood,
        "missing": module.mask_missing,
        "library_size": module.library_size,
        "shared_invariance": module.shared_invariance,
        "no_private_populations": module.private_gate.tolist(),
    }
