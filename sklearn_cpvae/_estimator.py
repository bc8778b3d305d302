"""The scikit-learn estimator CPVAE: parameters, fit and the public methods.

The numerical work happens elsewhere (:doc:`the architecture page </architecture>`): validation in
:mod:`~sklearn_cpvae._validation`, the likelihoods in :mod:`~sklearn_cpvae._likelihoods`,
the networks in :mod:`~sklearn_cpvae._module`, training in :mod:`~sklearn_cpvae._training`
and inference in :mod:`~sklearn_cpvae._inference`.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from sklearn_cpvae import _inference, _persistence
from sklearn_cpvae._cv import check_known_populations
from sklearn_cpvae._data import on_disk
from sklearn_cpvae._likelihoods import LIKELIHOODS, get_likelihood
from sklearn_cpvae._module import CPVAEModule
from sklearn_cpvae._new_populations import add_populations
from sklearn_cpvae._nn import ACTIVATIONS
from sklearn_cpvae._objective import has_mi
from sklearn_cpvae._sklearn_compat import (
    Hidden,
    Interval,
    StrOptions,
    _check_feature_names_in,
    _get_output_config,
    validate_data,
)
from sklearn_cpvae._torch_utils import derive_seeds, fit_info, resolve_device
from sklearn_cpvae._training import TrainConfig, fit_module, training_data
from sklearn_cpvae._validation import (
    anndata_rows,
    check_anndata_features,
    check_fitted_X,
    check_float32_range,
    check_latent_sizes,
    check_layer_unused,
    check_no_missing_labels,
    check_populations,
    check_same_networks,
    check_validation_split,
    finite_mode,
    hidden_sizes,
    image_layout,
    is_anndata,
    population_index,
    private_gate,
    resolve_priors,
    split_population_column,
    validate_on_disk,
    warn_non_integer_counts,
)
from sklearn_cpvae.diagnostics import active_units


class CPVAE(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Cross-population variational autoencoder (Davison, Severson & Ghosh).

    Each row ``x`` of population ``k`` is generated from a shared latent code ``z``
    and a private code ``t`` as ``x ~ p(f_s(z) + f_k(t))`` (paper eq. 1). The shared
    networks see every population; population k's private networks model what is
    unique to it. Training maximises the ELBO of eq. 3 regularised by the
    mutual-information term of eq. 4 (weighted by alpha as in eq. 10), which pushes
    every private encoder to map the *other* populations to the uninformative prior.
    ``objective="paper"`` maximises eq. 4/10 exactly as published (no KL term on a
    row's own private code), ``objective="elbo"`` the plain ELBO of eq. 3. Gaussian
    data are standardised per feature inside the model (``standardize``), so results do
    not depend on the units of X.

    The estimator is a transformer (codes), a classifier (the population of a row by
    importance-sampled marginal likelihood, eq. 7-8) and a generative model
    (:meth:`score_samples`, :meth:`sample`, :meth:`inverse_transform`).
    :meth:`transform` needs each row's population to pick the private encoder: left out
    (``populations=None`` and no ``population_column``), it runs the classifier first and
    encodes each row with the private encoder of its predicted population
    (:meth:`predict`, at the cost of its importance sampling).

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
        For near-binary images (handwritten strokes) ``"bernoulli"`` classifies better:
        the isotropic Gaussian weighs every pixel's squared error alike (see "MNIST:
        where Table 2's accuracy is lost" in :doc:`the quality panel </quality>`).
        ``"poisson"`` and ``"nb"`` (negative binomial with a learned inverse dispersion
        per feature, ``module_.log_theta``) model raw non-negative counts:
        ``f_s(z) + f_k(t)`` is the log mean count at the reference library size, the
        encoders see ``log1p(X)``, and ``library_size`` adds each row's log size
        factor. See :doc:`the multi-study omics guide </omics>` for when to use which.
    hidden_layer_sizes : tuple of int, default=(256,)
        Hidden layers of every encoder; decoders mirror them.
    activation : {"relu", "tanh", "elu", "gelu", "softplus", "leaky_relu"}, default="relu"
        Hidden-layer nonlinearity.
    image_shape : None or tuple of int, default=None
        ``(height, width)`` or ``(height, width, channels)`` of the images that the rows
        of X hold, flattened in height, width, channel order (the layout of
        :func:`~sklearn_cpvae.datasets.fetch_celeba_subset` and the other image
        loaders). When set, every encoder is convolutional: one 4 x 4 convolution of
        stride 2 per entry of ``conv_channels``, then the dense layers of
        ``hidden_layer_sizes``; every decoder mirrors it with transposed convolutions
        and a bias per pixel. ``None`` keeps multilayer perceptrons. Not combined with
        ``mi_alignment="mean"``, which moves rows in the first layer of an MLP.
        :doc:`The model guide </model>` compares the two on images.
    conv_channels : tuple of int, default=(32, 64)
        Output channels of the encoders' stride-2 convolutions, in order (the decoders
        run them in reverse); each halves the height and the width, which must be
        divisible by ``2 ** len(conv_channels)``. Used only with ``image_shape``.
    objective : {"elbo_mi", "paper", "elbo"}, default="elbo_mi"
        ``"elbo_mi"``: the ELBO of eq. 3 minus ``alpha * KL(q_k(t|x_j) || N(0, I))``
        for the rows of every other population j (the MI bound of eq. 6): eq. 10 with
        eq. 3's KL on each row's own private code kept, so that the N(0, I) prior of t
        that :meth:`predict` and :meth:`score_samples` integrate over is the one the
        model was trained with. ``"paper"``: eq. 4/10 as published, with no KL on a
        row's own private code (its private posteriors are then free to move away from
        the prior; see ``private_prior``). ``"elbo"``: eq. 3 (the paper's "No MI"
        ablation). ``"mi"`` is a deprecated alias of ``"paper"``.
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
    private_prior : {"auto", "standard", "aggregate"}, default="auto"
        Density of population k's private code t used by :meth:`sample` and by the
        importance-sampled likelihood (eq. 7-8). ``"standard"`` is the N(0, I) of eq. 1.
        ``"aggregate"`` is a diagonal Gaussian fitted after training to population k's
        own codes. ``"auto"`` is ``"standard"`` for the objectives that train with that
        prior (``"elbo_mi"``, ``"elbo"``) and ``"aggregate"`` for ``"paper"``, whose
        own-population private posteriors drift away from N(0, I), so that the N(0, I)
        prior would penalise the *correct* population.
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
        Training stops when the mean loss (validation loss with ``early_stopping``) of
        the last ``n_iter_no_change`` epochs is not lower than the mean of the
        ``n_iter_no_change`` epochs before them by ``tol`` times its size. Means, not
        single epochs, since an epoch's loss is a Monte-Carlo estimate.
    n_iter_no_change : int, default=10
        The window of epochs whose mean losses ``tol`` compares (counted once
        annealing and the private KL's warm-up end), so a fit runs at least twice
        this many epochs.
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
        0: silent. 1: a progress bar on stderr (epoch i/N, time left, current loss,
        device) and a one-line summary at the end (epochs run, wall time, best epoch,
        why training stopped). 2: one line per epoch with the terms of the objective
        instead of the bar, then the summary (see :ref:`progress` in the training guide).
    warm_start : bool, default=False
        Continue training the fitted networks (and optimiser state) for another
        ``max_iter`` epochs instead of starting afresh. Parameters that shape the
        networks (sizes, activation, likelihood, ``standardize``, ``missing``,
        ``library_size``, ``shared_invariance``, ``no_private_populations``, and whether
        ``shared_adversary`` is 0) must then be unchanged, or ``fit`` raises a
        ValueError; the training parameters (the value of a nonzero ``shared_adversary``
        among them) may change.
    standardize : bool, default=True
        For ``likelihood="gaussian"``: model each feature centred and scaled by its
        training mean and standard deviation (constant features keep scale 1), so that
        the encoders' inputs and the isotropic Psi do not depend on the units of X. A
        feature with training values more than 20 standard deviations from its mean
        (rare values of a near-constant feature, such as an image's border pixel) is
        scaled so that the furthest sits at 20, where it no longer dominates the
        likelihood.
        Every output stays in the units of X: :meth:`inverse_transform` and
        :meth:`sample` map back, and :meth:`score_samples` is the density of X itself
        (it includes the ``-sum(log scale)`` Jacobian). False models X as given (the
        paper's setting). Ignored for the other likelihoods.
    missing : {"error", "mask"}, default="error"
        ``"error"``: NaN in X raises a ValueError. ``"mask"``: NaN entries are left out
        of the reconstruction log-likelihood (the likelihood of the observed part of
        each row) instead of being imputed; the encoders see them as 0, which is the
        feature mean when ``standardize`` applies. :meth:`transform`, :meth:`predict`,
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
    private_kl_weight : float in (0, 1], default=1.0
        Weight of eq. 3's KL(q_k(t|x) || N(0, I)) on each row's own private code.
        1 is the ELBO (``objective="elbo_mi"`` and ``"elbo"``); values below 1 make
        a nat of information cheaper in the private code than in the shared code, so
        structure that both could hold goes to the private spaces (0 would be eq. 4,
        ``objective="paper"``). Below 1 the loss no longer bounds the likelihood that
        :meth:`predict` and :meth:`score_samples` estimate; :doc:`the quality
        panel </quality>` measures what it does. Must be 1 with ``objective="paper"``,
        which has no such term.
    private_free_nats : float, default=0.0
        Free bits on the private code: each row's own private KL is charged as
        ``max(KL, private_free_nats)``, so up to that many nats of private rate per row
        cost nothing (Kingma et al., 2016, on the whole private code). 0 is eq. 3.
        Above 0 the loss, like ``private_kl_weight < 1``, no longer bounds the
        likelihood that :meth:`predict` estimates; :doc:`the quality panel
        </quality>` measures what it does. Must be 0 with ``objective="paper"``.
    private_kl_warmup : float in [0, 1), default=0.0
        Fraction of ``max_iter`` over which the weight of each row's own private KL
        rises linearly from 0 to ``private_kl_weight`` (a KL warm-up on t alone). Early
        in training the private code is then cheap, so structure of one population
        settles in the private space; from the end of the warm-up on the loss is the
        ``objective`` itself, so a model trained past it is one whose N(0, I) prior of t
        was part of training. The stopping rules count only after it. 0 trains with the
        full weight from the first step. Must be 0 with ``objective="paper"``.
    private_kl_warmup_start : float, default=0.0
        Scale of the own private KL at the start of the ``private_kl_warmup`` schedule,
        as a multiple of ``private_kl_weight``; the scale moves linearly from it to 1.
        0 is the warm-up above. Above 1 the private code starts dearer than the shared
        one ("shared first"), so the factors every population shares are modelled in
        the shared code before the private codes open; on the quality panel's synthetic
        sets this keeps the shared space in use where the default empties it, and
        raises the private sub-group ARI, but population-specific structure learned in
        that phase stays partly in the shared code (:doc:`the quality panel
        </quality>`, "A shared-first schedule"). Needs ``private_kl_warmup > 0``;
        must be 0 with ``objective="paper"``.
    decoder_weight_decay : float, default=0.0
        L2 penalty on the weights of every decoder (shared and private; not their
        biases, the encoders or Psi), as Adam's ``weight_decay``: the gradient of
        ``decoder_weight_decay / 2`` times their squared norm is added to that of the
        per-row loss. It is a Gaussian prior on the decoders, so structure that the K
        private decoders would each have to model is cheaper in the one shared decoder,
        and the shared factors leave the private codes; not part of the paper's
        objective, and not in the recorded loss. 0 is plain Adam;
        :doc:`the quality panel </quality>` measures what it does.
    shared_adversary : float, default=0.0
        Weight lambda of an optional population adversary on the shared code, not part
        of the paper's objective (domain-adversarial training, as in DANN and the
        batch classifier of the scVI family). A small classifier (one hidden layer of
        32 units) reads the shared posterior means, the codes that :meth:`transform`
        returns, and learns the population of each row by minimising its cross-entropy;
        the shared encoder receives lambda times the reversed gradient of that
        cross-entropy, so it is trained to make the populations unreadable from z, as
        eq. 1's z ~ N(0, I), independent of the population, requires: lambda nats per
        nat of ``log K - cross-entropy``, the classifier's estimate of the population
        information in z (the balanced minibatches make ``log K`` its chance value).
        The term shapes the gradient only: the recorded loss, and with it the stopping
        rules, stays the objective's, and ``history_`` records the cross-entropy as
        ``"adversary"``.
        The private priors and every KL term are unchanged. 0 (no classifier) is the
        objective without it; :doc:`the quality panel </quality>` measures what it does.
        Not combinable with ``distributed`` training; :meth:`add_populations` trains no
        shared network, so the classifier does not act there (see that method).
    shared_centering : {"none", "population"}, default="none"
        What the shared encoder q(z|x) reads. ``"none"``: the row, as in eq. 2.
        ``"population"``: the row minus its population's mean (in the encoders' units,
        fitted on the training rows; a masked entry reads as that mean), so that an
        offset between populations, such as a lab's or a batch's, cannot reach the
        shared code: the private decoders' biases model it. The generative model of
        eq. 1 is unchanged; only the inference network differs, which then needs each
        row's population: :meth:`transform` and the other encoders take it from
        ``populations``, ``population_column`` or, failing both, :meth:`predict`, and
        the importance sampling of :meth:`predict_proba` uses population k's centring
        in its proposal for log p(x | k), which costs the shared networks K passes
        instead of one. Suited to batch and study effects; where populations differ in
        how common shared structure is (a cell type more frequent in cases), centring
        moves that structure apart between populations, as batch-centred PCA does.
        :doc:`The quality panel </quality>` measures it.
    mi_alignment : {"none", "mean"}, default="none"
        What private encoder k reads of another population's row in eq. 4's MI term.
        ``"none"``: the row, as published. ``"mean"``: the row moved from its
        population's mean to population k's (the means of ``shared_centering``, fitted
        on the training rows), so that an encoder cannot tell the other populations'
        rows apart by a mean offset alone and send them to the prior at no cost while
        its own code models factors every population shares. Training only: the
        encoders read rows as they are everywhere else. No effect with
        ``objective="elbo"``, which has no MI term. :doc:`The quality panel </quality>`
        measures it.
    population_column : None or str, default=None
        Name of a column of a pandas DataFrame ``X`` that holds the population of each
        row. When set, :meth:`fit` and :meth:`score` take the population from that
        column and ignore ``y`` (which a later Pipeline step can then use as its
        target), the column is not a feature, and the other methods drop it from X;
        :meth:`transform` uses it as ``populations`` when that argument is not given.
        Passing the populations as ``y`` instead keeps working in every
        :class:`~sklearn.pipeline.Pipeline` and search. With an
        :class:`anndata.AnnData` as X, the column is read from ``.obs``.
    layer : None or str, default=None
        With an :class:`anndata.AnnData` as X (every method accepts one): the rows are
        ``.layers[layer]`` (typically the raw counts that ``likelihood="nb"`` needs)
        instead of ``.X``; a sparse layer stays sparse. The feature names are the
        ``var_names``, and :meth:`transform` under ``set_output(transform="pandas")``
        keeps the ``obs_names`` as index. Must be None for any other X.
    mi_samples : int or None, default=None
        How the MI term of eq. 4 is estimated on each minibatch. None: exactly, running
        every private encoder on every row, so a training row costs O(K) encoder passes.
        An int m: each private encoder sees m rows drawn from the minibatch's other
        populations, weighted so that the estimate stays unbiased; a step then costs
        ``K * m`` encoder rows whatever its size, and the cost per row stops growing
        with K (see :doc:`the performance guide </performance>` for its effect on fit quality).
    precision : {"float32", "bf16"}, default="float32"
        ``"bf16"`` runs the training forward pass under bfloat16 autocast (matrix
        products in bf16, losses and weights in float32); meant for GPUs with bf16
        tensor cores. Inference always runs in float32 (or float64 for float64 input).
    compile : bool, default=False
        Train with the minibatch objective compiled by ``torch.compile`` (inductor),
        forward and backward. The first steps pay the compilation (tens of seconds);
        a compiled fit is reproducible under ``random_state`` but not bitwise equal to
        an eager one (fused kernels sum in another order). Off by default: on the
        development CPU its gain at MNIST size was within the noise of the measurement,
        after 100-140 s of compilation (:doc:`the performance guide </performance>`).
        Where compilation fails (no C++ compiler for inductor), ``fit`` raises a
        ``RuntimeError`` naming this option rather than silently training another way.
    distributed : {"auto", True, False}, default="auto"
        Data-parallel training across the processes of a ``torch.distributed`` process
        group (launched with ``torchrun``; one GPU per process on CUDA). ``"auto"``
        trains distributed when a group of several processes is initialised or the
        ``torchrun`` environment is set, ``True`` requires it, ``False`` fits each
        process on its own. Every process passes the same X, y and integer
        ``random_state``, takes its share of each balanced minibatch, and ends with the
        same fitted model: that of a one-process fit up to floating-point summation
        order (see :doc:`the performance guide </performance>`). Not combinable with
        ``mi_samples``, ``shared_invariance > 0`` or ``shared_adversary > 0``.

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
        early stopping, the same terms on the validation rows prefixed ``val_``. With
        ``standardize``, ``recon`` (and so ``loss``) is the log-density of the
        standardised rows; :meth:`score_samples` is in the units of X.
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
    active_shared_ : ndarray of bool of shape (n_shared,)
        The shared units whose posterior mean varies over the training rows by more than
        0.01 (:func:`~sklearn_cpvae.diagnostics.active_units`); the others are collapsed
        to the prior. ``fit`` warns when none is active while the private codes of two
        or more populations are in use.
    active_private_ : ndarray of bool of shape (n_populations, n_private)
        The same for each population's private code on its own training rows (all False
        without a private space).
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
    :ref:`divergence` in the training guide), ``fit`` restores the weights of the epoch with
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

    Rows that are flattened images (here 8 x 8, one channel) can use convolutional
    encoders and decoders:

    >>> images = rng.random((200, 64))
    >>> images[y == "case", :8] += 1.0  # a bright top row in one population
    >>> conv = CPVAE(n_shared=2, n_private=1, hidden_layer_sizes=(16,), image_shape=(8, 8),
    ...              conv_channels=(4, 8), max_iter=30, n_importance_samples=8,
    ...              random_state=0).fit(images, y)
    >>> conv.inverse_transform(conv.transform(images[:2], populations=y[:2]),
    ...                        populations=y[:2]).shape
    (2, 64)
    """

    _parameter_constraints: dict = {
        "n_shared": [Interval(Integral, 1, None, closed="left")],
        "n_private": [Interval(Integral, 1, None, closed="left")],
        "likelihood": [StrOptions(set(LIKELIHOODS))],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "image_shape": [None, "array-like"],
        "conv_channels": ["array-like"],
        "objective": [StrOptions({"elbo_mi", "paper", "elbo"}), Hidden(StrOptions({"mi"}))],
        "mi_weight": [Interval(Real, 0, None, closed="left")],
        "mi_anneal_epochs": [Interval(Integral, 0, None, closed="left")],
        "priors": [None, StrOptions({"uniform"}), "array-like"],
        "private_prior": [StrOptions({"auto", "standard", "aggregate"})],
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
        "standardize": ["boolean"],
        "missing": [StrOptions({"error", "mask"})],
        "library_size": ["boolean"],
        "no_private_populations": [None, "array-like"],
        "shared_invariance": [Interval(Real, 0, None, closed="left")],
        "private_kl_weight": [Interval(Real, 0, 1, closed="right")],
        "private_free_nats": [Interval(Real, 0, None, closed="left")],
        "private_kl_warmup": [Interval(Real, 0, 1, closed="left")],
        "private_kl_warmup_start": [Interval(Real, 0, None, closed="left")],
        "decoder_weight_decay": [Interval(Real, 0, None, closed="left")],
        "shared_adversary": [Interval(Real, 0, None, closed="left")],
        "shared_centering": [StrOptions({"none", "population"})],
        "mi_alignment": [StrOptions({"none", "mean"})],
        "population_column": [None, str],
        "layer": [None, str],
        "mi_samples": [None, Interval(Integral, 1, None, closed="left")],
        "precision": [StrOptions({"float32", "bf16"})],
        "compile": ["boolean"],
        "distributed": [StrOptions({"auto"}), "boolean"],
    }

    def __init__(
        self,
        n_shared=100,
        n_private=25,
        *,
        likelihood="gaussian",
        hidden_layer_sizes=(256,),
        activation="relu",
        image_shape=None,
        conv_channels=(32, 64),
        objective="elbo_mi",
        mi_weight=1.0,
        mi_anneal_epochs=0,
        priors=None,
        private_prior="auto",
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
        standardize=True,
        missing="error",
        library_size=True,
        no_private_populations=None,
        shared_invariance=0.0,
        private_kl_weight=1.0,
        private_free_nats=0.0,
        private_kl_warmup=0.0,
        private_kl_warmup_start=0.0,
        decoder_weight_decay=0.0,
        shared_adversary=0.0,
        shared_centering="none",
        mi_alignment="none",
        population_column=None,
        layer=None,
        mi_samples=None,
        precision="float32",
        compile=False,
        distributed="auto",
    ):
        self.n_shared = n_shared
        self.n_private = n_private
        self.likelihood = likelihood
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.image_shape = image_shape
        self.conv_channels = conv_channels
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
        self.standardize = standardize
        self.missing = missing
        self.library_size = library_size
        self.no_private_populations = no_private_populations
        self.shared_invariance = shared_invariance
        self.private_kl_weight = private_kl_weight
        self.private_free_nats = private_free_nats
        self.private_kl_warmup = private_kl_warmup
        self.private_kl_warmup_start = private_kl_warmup_start
        self.decoder_weight_decay = decoder_weight_decay
        self.shared_adversary = shared_adversary
        self.shared_centering = shared_centering
        self.mi_alignment = mi_alignment
        self.population_column = population_column
        self.layer = layer
        self.mi_samples = mi_samples
        self.precision = precision
        self.compile = compile
        self.distributed = distributed

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, *, populations=None):
        """Fit the networks to rows ``X`` of populations ``y`` (or ``populations``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training rows. CSR/CSC matrices are densified one minibatch at a time.
        y : array-like of shape (n_samples,), default=None
            Population of each row (strings or integers); at least two populations,
            each with at least two rows. Ignored when ``populations`` or
            ``population_column`` gives the populations, so that a later step of a
            :class:`~sklearn.pipeline.Pipeline` can use ``y`` as its own target.
        populations : array-like of shape (n_samples,), default=None
            Population of each row, passed apart from ``y``. Inside a Pipeline or a
            search, route it with scikit-learn's metadata routing
            (``sklearn.set_config(enable_metadata_routing=True)``, then
            ``CPVAE().set_fit_request(populations=True)`` and, since a Pipeline calls
            ``fit_transform``, ``.set_transform_request(populations=True)``).

        Returns
        -------
        self : CPVAE
            The fitted estimator.
        """
        self._validate_params()
        own_kl_options = {
            "private_kl_weight": 1,
            "private_free_nats": 0,
            "private_kl_warmup": 0,
            "private_kl_warmup_start": 0,
        }
        for name, neutral in own_kl_options.items():
            value = getattr(self, name)
            if self.objective in ("paper", "mi") and value != neutral:
                # eq. 4 has no own-population private KL: an option on it would do nothing.
                raise ValueError(
                    f"{name}={value} has no effect with objective={self.objective!r}, "
                    "whose eq. 4 has no KL on a row's own private code; use "
                    f"objective='elbo_mi' or 'elbo', or {name}={neutral}."
                )
        if self.private_kl_warmup_start != 0 and self.private_kl_warmup == 0:
            raise ValueError(
                f"private_kl_warmup_start={self.private_kl_warmup_start} has no effect "
                "with private_kl_warmup=0, which trains with the full own private KL "
                "from the first step; set private_kl_warmup > 0 or "
                "private_kl_warmup_start=0."
            )
        X, classes, y_idx, gate = self._validated_fit_data(X, y, populations)
        seeds = derive_seeds(self.random_state, 5)
        seed_init, seed_train, seed_split, seed_val, seed_is = seeds
        device = resolve_device(self.device)
        continuing = self.warm_start and hasattr(self, "module_")
        if continuing:
            if not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"warm_start=True but y has populations {classes.tolist()}, "
                    f"while the model was fitted on {self.classes_.tolist()}."
                )
            check_same_networks(self.module_.signature(), self._network_params(gate, X.shape[1]))
        else:
            self.classes_ = classes
            self.n_iter_ = 0
            self.history_ = []
            self._optimizer_state = None
            self.module_, self.library_size_ref_ = _start_networks(self, X, y_idx, gate, seed_init)
        self.has_private_ = gate.astype(bool)
        self.population_counts_ = np.bincount(y_idx, minlength=len(classes))
        if self.early_stopping:
            check_validation_split(classes, y_idx, self.validation_fraction, seed_split)

        data, val = training_data(
            X,
            y_idx,
            len(classes),
            device,
            validation_fraction=self.validation_fraction if self.early_stopping else None,
            seed=seed_split,
        )
        cfg = self._train_config(self._objective(), max_iter=self.n_iter_ + self.max_iter)
        outcome = fit_module(
            self.module_,
            data,
            cfg,
            device=device,
            learning_rate=self.learning_rate_init,
            seed=seed_train,
            optimizer_state=self._optimizer_state if continuing else None,
            start_epoch=self.n_iter_,
            val=val,
            val_seed=seed_val,
            distributed=self.distributed,
        )
        result = outcome.result
        # The fitted attributes are completed even after a divergence (good weights were
        # restored, see docs/training.md#divergence); the error is raised at the end.
        self._optimizer_state = outcome.optimizer_state
        self.device_ = str(device)
        self.history_ = self.history_ + result.history
        self.loss_curve_ = [r["loss"] for r in self.history_]
        self.best_loss_ = result.best_loss
        self.n_iter_ = result.n_iter
        self._importance_seed = seed_is
        self.priors_ = resolve_priors(self.priors, self.population_counts_)
        self._fit_code_summaries(X, y_idx)
        self.fit_info_ = fit_info(device, seeds, self.random_state)
        if outcome.diverged is not None:
            raise outcome.diverged
        # One population using its private code with nothing shared is a consistent
        # fit (it alone has structure); two or more mean that what they have in common,
        # if anything, is modelled once per population.
        n_private_in_use = int(self.active_private_.any(axis=1).sum())
        if not self.active_shared_.any() and n_private_in_use >= 2:
            warnings.warn(
                "No unit of the shared code is active on the training rows (the variance "
                "of every shared posterior mean is below 0.01) while the private codes of "
                f"{n_private_in_use} populations are in use: each population is described "
                "by its own code alone, and what the populations have in common, if "
                "anything, is modelled once per population in their private codes. This "
                "is common where the populations are easily told apart; "
                "decoder_weight_decay=0.1, or private_kl_warmup=0.25 with "
                "private_kl_warmup_start=10, put the shared space in use at a cost "
                "(the quality panel's page of the user guide, 'What is still open'). "
                "active_shared_ and active_private_ hold the masks.",
                UserWarning,
                stacklevel=2,
            )
        if result.interrupted:
            warnings.warn(
                f"Training interrupted by the user at epoch {result.n_iter + 1}; the "
                "weights of the last completed epoch were kept.",
                UserWarning,
                stacklevel=2,
            )
        elif not result.converged and not self.early_stopping:
            warnings.warn(
                f"CPVAE ran all max_iter={self.max_iter} epochs and the loss was still "
                f"improving (by tol={self.tol}, relative, between means over windows of "
                f"n_iter_no_change={self.n_iter_no_change} epochs), so it may be "
                "under-trained. Raise max_iter, or fit again with warm_start=True to "
                "continue from here; a larger tol stops sooner.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def add_populations(self, X, populations=None, *, max_iter=None):
        """Add new populations (studies) to the fitted model, scArches-style.

        Each new population gets a private encoder and decoder, trained on its rows with
        the objective of :meth:`fit` while the shared networks, Psi, the NB dispersions,
        the standardisation and every old population's private networks stay frozen: the
        old populations' outputs are unchanged, and the new ones are modelled in the same
        shared space. Training sees only the new rows, so with one new population its MI
        term (which needs other populations' rows) is absent and it is trained with the
        ELBO of eq. 3; add several at once to keep the MI term among them. The optimiser
        state is reset (a later ``warm_start`` fit starts Adam afresh). With
        ``shared_adversary``, the population classifier gets an output unit per new
        population, started at fresh initial weights, while the old populations' units
        and its hidden layer are kept; it is not trained here (the shared encoder it
        acts on is frozen), only by a later ``warm_start`` fit.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame, AnnData} of shape (n_samples, n_features)
            Rows of the new populations only, with the features of :meth:`fit`.
        populations : array-like of shape (n_samples,), default=None
            Population of each row, none of them in ``classes_``; None reads
            ``population_column``.
        max_iter : int, default=None
            Epochs of training; None uses the ``max_iter`` parameter.

        Returns
        -------
        self : CPVAE
            With ``classes_``, ``population_counts_``, ``priors_``, ``has_private_`` and the
            private aggregate moments extended (labels kept sorted).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_cpvae import CPVAE
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(60, 4))
        >>> model = CPVAE(n_shared=2, n_private=1, hidden_layer_sizes=(8,), max_iter=2,
        ...               n_importance_samples=4, random_state=0)
        >>> model = model.fit(X[:40], np.repeat(["a", "b"], 20))
        >>> model.add_populations(X[40:], np.repeat("c", 20), max_iter=2).classes_
        array(['a', 'b', 'c'], dtype='<U1')
        """
        return add_populations(self, X, populations, max_iter=max_iter)

    def _train_config(self, objective, *, max_iter, mi_anneal_epochs=None):
        """The :class:`~sklearn_cpvae._training.TrainConfig` of this estimator's parameters."""
        return TrainConfig(
            objective=objective,
            mi_weight=float(self.mi_weight),
            mi_anneal_epochs=(
                self.mi_anneal_epochs if mi_anneal_epochs is None else mi_anneal_epochs
            ),
            batch_size=self.batch_size,
            max_iter=max_iter,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=self.early_stopping,
            max_grad_norm=self.max_grad_norm,
            verbose=self.verbose,
            mi_samples=self.mi_samples,
            precision=self.precision,
            compile=self.compile,
            private_kl_weight=float(self.private_kl_weight),
            private_free_nats=float(self.private_free_nats),
            private_kl_warmup=int(round(self.private_kl_warmup * max_iter)),
            private_kl_warmup_start=float(self.private_kl_warmup_start),
            shared_adversary=float(self.shared_adversary),
            decoder_weight_decay=float(self.decoder_weight_decay),
        )

    def _validated_fit_data(self, X, y, populations=None):
        """Validated X (CSR if sparse), population labels and indices, private gates.

        The populations come from ``populations``, else from ``population_column``, else
        from ``y``; a ``y`` next to either of the first two is another step's target."""
        adata = X if is_anndata(X) else None
        if adata is not None:
            X, column = anndata_rows(
                adata,
                self.layer,
                self.population_column,
                required=y is None and populations is None,
            )
        else:
            check_layer_unused(self)
            # A DataFrame without the named column is a mistake even when y is given (fit
            # would otherwise quietly take the populations from y, another step's target).
            X, column = split_population_column(
                X,
                self.population_column,
                required=populations is None and (y is None or hasattr(X, "columns")),
                has_y=y is not None,
            )
        if populations is not None:
            check_no_missing_labels(populations, "populations")
            if column is not None and not np.array_equal(np.asarray(populations), column):
                raise ValueError(
                    f"populations disagrees with the population_column "
                    f"{self.population_column!r} of X; pass one of them."
                )
            y = populations
        elif column is not None:
            check_no_missing_labels(column, f"the population_column {self.population_column!r}")
            y = column
        elif y is not None:
            check_no_missing_labels(y, "y")
        if y is None:
            raise ValueError(
                "CPVAE requires y to be passed, but the target y is None: pass the "
                "population of each row as y or as populations=, or X as a DataFrame "
                "holding the column named by population_column."
            )
        continuing = self.warm_start and hasattr(self, "module_")
        if adata is not None and continuing:
            check_anndata_features(self, adata)
        if on_disk(X):
            # An h5py Dataset or zarr array: checked and later read in blocks of rows.
            X, y = validate_on_disk(
                self,
                X,
                y,
                reset=not continuing or adata is not None,
                ensure_all_finite=finite_mode(self.missing),
            )
        else:
            X, y = validate_data(
                self,
                X,
                y,
                dtype=[np.float64, np.float32],
                ensure_min_samples=2,
                # An AnnData's matrix has no names for sklearn to check: its var_names are.
                reset=not continuing or adata is not None,
                accept_sparse=("csr", "csc"),
                ensure_all_finite=finite_mode(self.missing),
            )
        if adata is not None:
            names = np.asarray(adata.var_names, dtype=object)
            if all(isinstance(n, str) for n in names):
                self.feature_names_in_ = names
        if sp.issparse(X):
            X = X.tocsr()
        check_classification_targets(y)
        check_float32_range(X)
        hidden_sizes(self.hidden_layer_sizes)  # validate before any work
        classes, y_idx = np.unique(y, return_inverse=True)
        check_populations(classes, y_idx)
        get_likelihood(self.likelihood).check_support(X)
        warn_non_integer_counts(X, self.likelihood, get_likelihood(self.likelihood).counts, 4)
        gate = private_gate(self.no_private_populations, classes)
        check_latent_sizes(self.n_shared, self.n_private, X.shape[1])
        if image_layout(self.image_shape, self.conv_channels, X.shape[1]) and self._mi_alignment():
            raise ValueError(
                'mi_alignment="mean" cannot be combined with image_shape: it moves rows '
                "through the first layer of an MLP encoder. Pass image_shape=None or "
                'mi_alignment="none".'
            )
        if self.objective != "elbo" and self.mi_anneal_epochs > self.max_iter:
            warnings.warn(
                f"mi_anneal_epochs={self.mi_anneal_epochs} is longer than max_iter="
                f"{self.max_iter}: alpha will not reach mi_weight={self.mi_weight}.",
                UserWarning,
                stacklevel=3,
            )
        return X, classes, y_idx, gate

    def _objective(self):
        """The objective's name, with the deprecated alias ``"mi"`` resolved."""
        if self.objective == "mi":
            warnings.warn(
                'objective="mi" is deprecated and will be removed in 0.3; it is the '
                'paper\'s literal eq. 4, now named objective="paper" (the default, '
                '"elbo_mi", keeps eq. 3\'s own-population KL term).',
                FutureWarning,
                stacklevel=3,
            )
            return "paper"
        return self.objective

    def _mi_alignment(self):
        """Whether the MI term moves rows to each encoder's mean (an objective without
        the term has nothing to align)."""
        return self.mi_alignment == "mean" and has_mi(self.objective)

    def _private_prior(self):
        """``"standard"`` or ``"aggregate"``, with ``"auto"`` resolved by the objective."""
        if self.private_prior != "auto":
            return self.private_prior
        return "aggregate" if self.objective in ("paper", "mi") else "standard"

    def _network_params(self, gate, n_features):
        """The parameters that shape the networks, as :meth:`CPVAEModule.signature` reads
        them off a module (from the parameters, without building a second set)."""
        lik = get_likelihood(self.likelihood)
        image = image_layout(self.image_shape, self.conv_channels, n_features)
        return {
            "n_shared": self.n_shared,
            "n_private": self.n_private,
            "hidden_layer_sizes": hidden_sizes(self.hidden_layer_sizes),
            "activation": self.activation,
            "likelihood": self.likelihood,
            "missing": self.missing == "mask",
            "library_size": bool(self.library_size) and lik.counts,
            "shared_invariance": float(self.shared_invariance),
            "no_private_populations": [float(g) for g in gate],
            "standardize": bool(self.standardize) and lik.identity_mean,
            "shared_adversary": float(self.shared_adversary) > 0,
            "shared_centering": self.shared_centering == "population",
            "mi_alignment": self._mi_alignment(),
            "image_shape": None if image is None else list(image[0]),
            "conv_channels": None if image is None else image[1],
        }

    def _build_module(self, n_features, gate, seed, *, adversary=True):
        """The networks for this configuration; ``fit`` and :func:`load` both build here.

        ``adversary=False`` leaves out the population classifier of ``shared_adversary``
        (the networks :meth:`add_populations` trains, whose shared encoder is frozen)."""
        return CPVAEModule(
            n_features,
            len(gate),
            self.n_shared,
            self.n_private,
            hidden_sizes(self.hidden_layer_sizes),
            self.activation,
            self.likelihood,
            torch.Generator().manual_seed(seed),
            mask_missing=self.missing == "mask",
            library_size=self.library_size,
            private_gate=gate,
            shared_invariance=self.shared_invariance,
            standardize=self.standardize,
            shared_adversary=adversary and float(self.shared_adversary) > 0,
            shared_centering=self.shared_centering == "population",
            mi_alignment=self._mi_alignment(),
            image=image_layout(self.image_shape, self.conv_channels, n_features),
        )

    def _fit_code_summaries(self, X, y_idx):
        """Moments of each population's aggregate private posterior q_k(t) on its rows,
        and which units of each code are active there."""
        centre = y_idx if self.module_.shared_centering else None
        shared = _inference.encode(self.module_, self.device, X, centre=centre)
        self.active_shared_ = active_units(shared)
        mu, var = _inference.encode(
            self.module_,
            self.device,
            X,
            y_idx,
            has_private=self.has_private_,
            private_var=True,
        )
        k = len(self.classes_)
        self.private_code_mean_ = np.stack([mu[y_idx == j].mean(0) for j in range(k)])
        self.private_code_var_ = np.stack(
            [mu[y_idx == j].var(0) + var[y_idx == j].mean(0) for j in range(k)]
        )
        # Without a private space t is unused: its density stays the N(0, I) prior.
        self.private_code_mean_[~self.has_private_] = 0.0
        self.private_code_var_[~self.has_private_] = 1.0
        self.active_private_ = np.stack([active_units(mu[y_idx == j]) for j in range(k)])
        self.active_private_[~self.has_private_] = False

    # --------------------------------------------------------------- inference
    def _log_likelihoods(self, X):
        """log p(x | k) for every row and population, shape (n, K) (eq. 7-8)."""
        aggregate = self._private_prior() == "aggregate"
        return _inference.log_likelihoods(
            self.module_,
            self.device,
            X,
            n_samples=self.n_importance_samples,
            seed=self._importance_seed,
            prior_mean=self.private_code_mean_ if aggregate else None,
            prior_var=self.private_code_var_ if aggregate else None,
        )

    def _population_index(self, populations, n_rows, name="populations"):
        check_known_populations(self.classes_, populations, name)
        return population_index(self.classes_, populations, n_rows, name)

    def score(self, X, y=None, sample_weight=None):
        """Mean accuracy of :meth:`predict` against the populations.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Rows to classify.
        y : array-like of shape (n_samples,), default=None
            True populations. When X is a DataFrame holding ``population_column``, that
            column is used instead (as in :meth:`fit`), so that a search over such a
            DataFrame scores against the populations whatever ``y`` is.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        if is_anndata(X):
            _, column = anndata_rows(X, self.layer, self.population_column)
        else:
            _, column = split_population_column(
                X, self.population_column, required=y is None and hasattr(X, "columns")
            )
        if column is not None:
            y = column
        if y is None:
            raise ValueError("score needs y, or X as a DataFrame holding population_column.")
        # Accuracy would count rows of an unknown population as silently misclassified.
        check_known_populations(self.classes_, y, "the scored rows' populations")
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
        X = check_fitted_X(self, X)
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
        X = check_fitted_X(self, X)
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
            Population k of each row, whose private encoder gives t. None (and no
            ``population_column``) runs the classifier first: t then comes from the
            private encoder of the population :meth:`predict` gives the row, at the cost
            of its importance sampling. Unused when ``blocks="shared"``, unless
            ``shared_centering="population"`` (the shared code then centres each row by
            its population).

        Returns
        -------
        codes : ndarray of shape (n_samples, n_codes)
            ``n_shared + n_private`` columns for ``blocks="both"``, else one block.
        """
        obs_names = X.obs_names if is_anndata(X) else None
        codes = self._codes(X, populations, self.blocks)
        if obs_names is not None and _get_output_config("transform", self)["dense"] == "pandas":
            import pandas as pd

            # set_output takes the index of DataFrame input only; an AnnData's is obs_names.
            return pd.DataFrame(codes, index=pd.Index(obs_names))
        return codes

    def get_latent_representation(self, X, populations=None, *, blocks="shared"):
        """Posterior means of the chosen code blocks, whatever the ``blocks`` parameter.

        The shared code needs no population (unless ``shared_centering="population"``),
        so rows of a study never seen in :meth:`fit` can be embedded with the default
        ``blocks="shared"``.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame, AnnData} of shape (n_samples, n_features)
            Rows to encode.
        populations : array-like of shape (n_samples,), default=None
            Population of each row for the private code; None uses ``population_column``
            when X holds it, else the predicted population. Unused for ``"shared"``,
            unless ``shared_centering="population"``.
        blocks : {"shared", "private", "both"}, default="shared"
            Which codes to return, laid out as :meth:`transform` would.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_codes)

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_cpvae import CPVAE
        >>> X = np.random.default_rng(0).normal(size=(40, 4))
        >>> model = CPVAE(n_shared=2, n_private=1, hidden_layer_sizes=(8,), max_iter=2,
        ...               n_importance_samples=4, random_state=0).fit(X, np.repeat([0, 1], 20))
        >>> model.get_latent_representation(X[:3]).shape
        (3, 2)
        """
        check_is_fitted(self)
        if blocks not in ("both", "shared", "private"):
            raise ValueError(f"blocks must be 'both', 'shared' or 'private'; got {blocks!r}.")
        return self._codes(X, populations, blocks)

    def _codes(self, X, populations, blocks):
        X, column = check_fitted_X(self, X, return_column=True)
        centring = self.module_.shared_centering
        idx = None
        if blocks != "shared" or centring:
            idx = self._row_populations(X, column if populations is None else populations)
        parts = []
        if blocks in ("both", "shared"):
            centre = idx if centring else None
            parts.append(_inference.encode(self.module_, self.device, X, centre=centre))
        if blocks in ("both", "private"):
            parts.append(
                _inference.encode(self.module_, self.device, X, idx, has_private=self.has_private_)
            )
        return np.hstack(parts)

    def _row_populations(self, X, populations):
        """Index of each row's population: ``populations`` when given, else the one
        :meth:`predict` gives it (validated rows ``X``)."""
        if populations is None:
            return np.argmax(self._log_likelihoods(X) + np.log(self.priors_), axis=1)
        return self._population_index(populations, X.shape[0])

    def inverse_transform(self, X, populations=None, *, part="auto", library_size=None):
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
            ``"private"`` for ``blocks="private"``); without ``populations`` it is
            ``"shared"`` for ``blocks="shared"`` and an error otherwise, since codes do
            not say which private decoder to use (pass the populations that
            :meth:`transform` used, or ``part="shared"`` for the shared part alone).
        library_size : float or array-like of shape (n_samples,), default=None
            Count likelihoods, ``part="full"`` or ``"shared"``: mean counts for rows of
            this library size (``exp(g) * library_size / library_size_ref_``); None
            gives them at ``library_size_ref_``. Any population with any library size
            is a counterfactual (see also :meth:`get_normalized_expression`).

        Returns
        -------
        X_rec : ndarray or DataFrame of shape (n_samples, n_features_in_)
            Mean of p(x | z, t) (probabilities for the Bernoulli likelihood, mean counts
            at ``library_size_ref_`` for the count likelihoods). A DataFrame with the
            input feature names when ``set_output(transform="pandas")`` is active.
        """
        check_is_fitted(self)
        index = X.index if hasattr(X, "index") and hasattr(X, "columns") else None
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
            if populations is None and self.blocks != "shared":
                raise ValueError(
                    "inverse_transform needs populations to decode the private block of "
                    "the codes (a full reconstruction): pass the populations that transform "
                    "used (its predicted ones are model.predict(X)), or part='shared' for the "
                    "shared part alone."
                )
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
        both = self.blocks == "both"
        X_rec = _inference.decode(
            self.module_,
            self.device,
            X,
            z_cols=(slice(0, self.n_shared) if both else slice(0, X.shape[1]))
            if part in ("full", "shared")
            else None,
            t_cols=(slice(self.n_shared, None) if both else slice(0, X.shape[1]))
            if part in ("full", "private")
            else None,
            populations=idx if part in ("full", "private") else None,
        )
        if library_size is not None:
            if part == "private":
                raise ValueError(
                    "library_size= applies to decoded counts (part='full' or 'shared'); "
                    "part='private' is a fold change f_k(t) without a library size."
                )
            X_rec = self._at_library_size(X_rec, library_size).astype(X_rec.dtype, copy=False)
        if _get_output_config("transform", self)["dense"] == "pandas":
            import pandas as pd

            names = getattr(self, "feature_names_in_", None)
            if names is None:
                names = [f"x{i}" for i in range(self.n_features_in_)]
            return pd.DataFrame(X_rec, columns=list(names), index=index)
        return X_rec

    def get_normalized_expression(
        self, X, population, *, library_size=None, n_samples=25, random_state=None
    ):
        """Counterfactual expression: each row's shared state decoded in ``population``.

        The mean over draws ``z ~ q(z | x)`` and ``t ~`` the private prior of population
        k (``private_prior``) of the mean of ``p(x | z, t, k)``: what the row would look
        like in study k, averaged over k's own private variation (scvi-tools'
        ``transform_batch``). For the row's own population it is the denoised expression
        with its private code integrated out; :meth:`inverse_transform` of
        :meth:`transform` keeps the row's own private code instead.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame, AnnData} of shape (n_samples, n_features)
            Rows whose shared codes are decoded.
        population : label or array-like of shape (n_samples,)
            Population whose decoder is used, for every row or per row.
        library_size : float or array-like of shape (n_samples,), default=None
            Count likelihoods: the means for rows of this library size (total count),
            ``exp(g) * library_size / library_size_ref_`` as the model's library offset
            defines them (their sum is the library size only as far as the model fits
            it); None gives them at the reference size ``library_size_ref_``.
        n_samples : int, default=25
            Posterior draws averaged per row.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws.

        Returns
        -------
        expression : ndarray of shape (n_samples, n_features_in_)
            Mean counts (count likelihoods), probabilities (Bernoulli) or values in the
            units of X (Gaussian).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_cpvae import CPVAE
        >>> rng = np.random.default_rng(0)
        >>> C = rng.poisson(5.0, size=(40, 4)).astype(float)
        >>> model = CPVAE(n_shared=2, n_private=1, likelihood="nb", hidden_layer_sizes=(8,),
        ...               max_iter=2, n_importance_samples=4,
        ...               random_state=0).fit(C, np.repeat(["a", "b"], 20))
        >>> model.get_normalized_expression(C[:3], "b", library_size=1e4).shape
        (3, 4)
        """
        X = check_fitted_X(self, X)
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        labels = np.asarray(population)
        if labels.ndim == 0:
            labels = np.full(X.shape[0], labels)
        idx = self._population_index(labels, X.shape[0], "population")
        out = np.zeros(X.shape, dtype=np.float64)
        for sl, (mean,) in self._posterior_decodes(X, [idx], n_samples, random_state):
            out[sl] += mean / n_samples
        return self._at_library_size(out, library_size).astype(X.dtype, copy=False)

    def _posterior_decodes(self, X, targets, n_samples, random_state, sources=None):
        """:func:`_inference.posterior_decodes`; ``sources`` (labels, or None for the
        predicted populations) centre the rows for ``shared_centering``."""
        aggregate = self._private_prior() == "aggregate"
        k = len(self.classes_)
        if self.module_.shared_centering:
            sources = self._row_populations(X, sources)
        return _inference.posterior_decodes(
            self.module_,
            self.device,
            X,
            targets,
            n_samples=n_samples,
            seed=derive_seeds(random_state, 1)[0],
            t_mean=self.private_code_mean_ if aggregate else np.zeros((k, self.n_private)),
            t_var=self.private_code_var_ if aggregate else np.ones((k, self.n_private)),
            sources=sources,
        )

    def _at_library_size(self, means, library_size):
        """Count means at the reference library size rescaled to ``library_size``."""
        if library_size is None:
            return means
        if not get_likelihood(self.likelihood).counts:
            raise ValueError(
                f"library_size= sets the total count of the count likelihoods ('poisson', "
                f"'nb'); the model uses likelihood={self.likelihood!r}. Leave it None."
            )
        if not self.module_.library_size:
            raise ValueError(
                "library_size= needs a model fitted with library_size=True: without the "
                "library offset its decoded counts do not depend on a library size."
            )
        size = np.asarray(library_size, dtype=np.float64)
        if size.ndim == 0:
            size = np.full(len(means), float(size))
        if size.shape != (len(means),) or not np.all(np.isfinite(size)) or np.any(size <= 0):
            raise ValueError(
                f"library_size must be a positive number or one per row ({len(means)}); got "
                f"{library_size!r}."
            )
        # The library offset of the count models: log mu = g + log(l / l_ref).
        return means * (size[:, None] / self.library_size_ref_)

    def sample(self, n_samples=1, population=None, *, random_state=None):
        """Generate rows from the fitted model (eq. 1).

        z is drawn from N(0, I); t from the density chosen by ``private_prior``: N(0, I)
        for the objectives that train with it, the aggregate posterior of population k's
        codes for ``objective="paper"``, whose own private posteriors are free to leave
        N(0, I).

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
        if self._private_prior() == "aggregate":
            t = self.private_code_mean_[idx] + np.sqrt(self.private_code_var_[idx]) * t
        X = _inference.generate(self.module_, z, t, idx)
        return X, self.classes_[idx]

    def save(self, path):
        """Save the fitted estimator to ``path`` in a format that runs no code on load.

        The file (safetensors: raw arrays plus a JSON header) holds the weights, the
        parameters, every fitted attribute, the optimiser state (for ``warm_start``),
        the library and format versions and a SHA-256 digest. Read it back with
        :func:`sklearn_cpvae.load`, which refuses truncated, modified or incompatible
        files. Pickle and joblib also work but execute code when loaded: open those
        only from trusted sources (see :doc:`the persistence guide </persistence>`).

        Parameters
        ----------
        path : str or path-like
            Destination; written atomically (a failed save never leaves a partial file).

        Returns
        -------
        self : CPVAE
            The estimator, unchanged.
        """
        _persistence.save(self, path)
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


def _start_networks(est, X, y_idx, gate, seed):
    """New networks with the decoder (and Psi) started at the data's scale, and the
    reference library size (1.0 unless a count likelihood uses ``library_size``)."""
    module = est._build_module(X.shape[1], gate, seed)
    lik = get_likelihood(est.likelihood)
    use_library = lik.counts and bool(est.library_size)
    if module.standardize:
        loc, scale, bias, log_psi = lik.standardization(X)
        module.x_loc.copy_(torch.as_tensor(loc, dtype=torch.float32))
        module.x_scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        library_ref = 1.0
    else:
        bias, log_psi, library_ref = lik.start_values(X, library_size=use_library)
    if use_library:
        module.log_library_ref.fill_(np.log(library_ref))
    with torch.no_grad():
        if log_psi is not None:
            module.log_psi.fill_(log_psi)
        module.dec_shared.output_bias.add_(torch.as_tensor(bias, dtype=torch.float32))
        if module.shared_centering or module.mi_alignment:
            module.population_centre.copy_(_inference.population_centres(module, X, y_idx))
    return module, library_ref
