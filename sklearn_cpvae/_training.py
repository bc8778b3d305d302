"""Training: balanced minibatches (Algorithm 1), alpha annealing, stopping rules, divergence.

Plain torch, deliberately without a framework (see ``docs/design.md``). :func:`fit_module`
is what an estimator calls: it places the rows on the device (:func:`training_data`, with
the validation split), builds the fused Adam optimiser, runs :func:`train` and turns a
divergence into a :class:`FitOutcome` with good weights restored. :func:`train` runs
epochs of any minibatch objective ``step(x, populations, batch_counts, pop_sizes, alpha)``
(:func:`cpvae_step` for CPVAE; the VAE baseline passes its own) and returns what happened
as a :class:`TrainResult`.
"""

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.model_selection import train_test_split

from sklearn_cpvae._data import training_tensor
from sklearn_cpvae._objective import batch_terms, mi_weight_schedule
from sklearn_cpvae._sparse import SparseRows
from sklearn_cpvae._torch_utils import make_generator

TERMS = ("loss", "recon", "kl_shared", "kl_private", "mi")


# A term "explodes" when its epoch average exceeds EXPLODE_FACTOR times the scale of the
# objective at the first step of the fit (the largest |term| there, at least 1), and
# "jumps" when its epoch average moves by more than JUMP_FACTOR times that scale from one
# good epoch to the next; the jump test catches a loss that spikes and recovers long
# before it explodes. The measurements behind both values are in docs/training.md.
EXPLODE_FACTOR = 1e4
JUMP_FACTOR = 10.0


class TrainingDivergedError(FloatingPointError):
    """Training diverged: a term of the objective became non-finite, exploded or jumped.

    Raised by ``fit`` after good weights were restored (those of the epoch with the lowest
    loss once annealing is over, else of the last good epoch), so the estimator stays
    fitted and usable. ``term``, ``epoch`` (1-based) and ``value`` say what went wrong,
    ``restored_epoch`` whose weights the estimator holds (0: the initial ones); the
    message names them too.
    """

    def __init__(
        self, message, *, term=None, epoch=None, value=None, result=None, restored_epoch=None
    ):
        super().__init__(message)
        self.term = term
        self.epoch = epoch
        self.value = value
        self.restored_epoch = restored_epoch
        # The TrainResult up to the last good epoch (the estimator records its history).
        self.result = result


@dataclass(frozen=True)
class TrainConfig:
    objective: str
    mi_weight: float
    mi_anneal_epochs: int
    batch_size: int
    max_iter: int
    tol: float
    n_iter_no_change: int
    early_stopping: bool
    max_grad_norm: float | None
    verbose: int
    mi_samples: int | None = None
    precision: str = "float32"
    private_kl_weight: float = 1.0
    # Names of the step's terms recorded each epoch (the first one is minimised).
    terms: tuple = TERMS
    # Record alpha (``mi_weight``) each epoch; off for objectives without an MI term.
    record_alpha: bool = True


@dataclass
class TrainResult:
    history: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    interrupted: bool = False
    best_loss: float = math.inf


def balanced_batches(members, batch_size, n_steps, generator):
    """Indices ``(n_steps, K, M)``: every step draws M rows from every population (Alg. 1).

    Each population is visited in a fresh random order and recycled when exhausted, so a
    small population is oversampled rather than starved, and a large one is covered
    without replacement within a pass.
    """
    out = []
    need = n_steps * batch_size
    for idx in members:
        passes = -(-need // len(idx))
        order = torch.argsort(torch.rand((passes, len(idx)), generator=generator), dim=1)
        out.append(idx[order.reshape(-1)[:need]].view(n_steps, batch_size))
    return torch.stack(out, dim=1)


def steps_per_epoch(n_samples, n_populations, batch_size):
    """One epoch sees about as many rows as the data holds."""
    return max(1, -(-n_samples // (n_populations * batch_size)))


def cpvae_step(module, cfg, generator):
    """The CPVAE minibatch objective for :func:`train`: eq. 4/10 (or eq. 3) on a balanced
    minibatch, with reparameterisation noise from ``generator``."""

    def step(x, populations, batch_counts, pop_sizes, alpha):
        return batch_terms(
            module,
            x,
            populations,
            batch_counts,
            pop_sizes,
            objective=cfg.objective,
            mi_weight=alpha,
            generator=generator,
            balanced=True,
            mi_samples=cfg.mi_samples,
            private_kl_weight=cfg.private_kl_weight,
        )

    return step


def evaluate(module, x, populations, cfg, mi_weight, seed, chunk=None):
    """Objective terms on a whole (validation) set, with fixed noise so epochs compare."""
    k = module.n_populations
    # The exact MI term holds a (K, chunk, hidden) block: keep it a few tens of MB.
    chunk = chunk or max(128, 32768 // k)
    device = module.log_psi.device  # x may live in host memory when streamed
    counts = torch.bincount(populations, minlength=k).to(device=device, dtype=x.dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    sums = torch.zeros(len(TERMS), device=device, dtype=x.dtype)
    was_training = module.training
    module.eval()
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            sl = slice(start, start + chunk)
            terms = batch_terms(
                module,
                x[sl].to(device),
                populations[sl].to(device),
                counts,
                counts,
                objective=cfg.objective,
                mi_weight=mi_weight,
                generator=gen,
                private_kl_weight=cfg.private_kl_weight,
            )
            sums += _stack(terms)
    module.train(was_training)
    return dict(zip(TERMS, sums.tolist()))


def _stack(terms, names=TERMS):
    return torch.stack([getattr(terms, name).detach() for name in names])


def _check_diverged(record, epoch, scale, previous=None, names=TERMS):
    """Raise :class:`TrainingDivergedError` if a term is non-finite, exploded or jumped.

    ``previous`` is the last good epoch's record (None: no jump test). The parts are
    checked before their sum, so that the error names the culprit. The message's
    restoration clause is added by :func:`train`, which knows what it restored.
    """
    for name in (*names[1:], names[0]):
        value = record[name]
        if not math.isfinite(value):
            what = f"became {value}"
        elif scale is not None and abs(value) > EXPLODE_FACTOR * scale:
            what = (
                f"exploded to {value:.3g}, more than {EXPLODE_FACTOR:g} times the scale "
                f"{scale:.3g} of the objective at the first step,"
            )
        elif _jumped(name, record, previous, scale):
            what = (
                f"jumped from {previous[name]:.3g} to {value:.3g} in one epoch, more than "
                f"{JUMP_FACTOR:g} times the scale {scale:.3g} of the objective at the first "
                "step,"
            )
        else:
            continue
        raise TrainingDivergedError(
            f"training diverged: the {name!r} term of the objective {what} at epoch {epoch + 1}",
            term=name,
            epoch=epoch + 1,
            value=value,
        )


def _jumped(name, record, previous, scale):
    """Whether ``name`` moved by more than JUMP_FACTOR * scale since ``previous``.

    Two epochs at different alpha (annealing) have losses that differ by design, so the
    loss's move is not tested then; every part it sums still is.
    """
    if scale is None or previous is None:
        return False
    if name == "loss" and record.get("mi_weight") != previous.get("mi_weight"):
        return False
    return abs(record[name] - previous[name]) > JUMP_FACTOR * scale


def _restored(exc, epoch, best):
    """Complete the error's message with the weights that were restored."""
    exc.restored_epoch = epoch
    which = (
        "the initial weights were"
        if epoch == 0
        else f"the weights of epoch {epoch} ({'lowest loss' if best else 'last good epoch'}) were"
    )
    exc.args = (
        f"{exc.args[0]}; {which} restored and the estimator is usable. Lower "
        "learning_rate_init, standardise X, or see docs/training.md#divergence.",
    )
    return exc


def train(
    step,
    module,
    optimizer,
    data,
    cfg,
    *,
    index_generator,
    start_epoch=0,
    validate=None,
):
    """Run epochs ``start_epoch .. cfg.max_iter - 1`` on ``data = (X, populations, pop_sizes)``.

    ``step(x, populations, batch_counts, pop_sizes, alpha)`` returns the minibatch terms
    (attributes ``cfg.terms``, the first one minimised); ``index_generator`` (CPU) draws
    the minibatches. ``validate(alpha)`` returns the terms on held-out rows as a dict, or
    is None. Weights of the best validation epoch are restored when ``cfg.early_stopping``.
    After a non-finite, exploding or jumping term, those of the best epoch (lowest loss,
    validation loss with early stopping, at the final alpha) or, before annealing ends,
    of the last good epoch are restored before :class:`TrainingDivergedError` is raised,
    with the :class:`TrainResult` so far attached as its ``result``.
    """
    x, populations, pop_sizes = data
    names = cfg.terms
    k = len(pop_sizes)
    device = pop_sizes.device
    members = [torch.nonzero(populations.cpu() == j).flatten() for j in range(k)]
    n_steps = steps_per_epoch(len(x), k, cfg.batch_size)
    # A balanced minibatch always has the same layout and counts: built once, not per step.
    batch_pops = torch.arange(k, device=device).repeat_interleave(cfg.batch_size)
    batch_counts = pop_sizes.new_full((k,), cfg.batch_size)
    # x stays where the caller put it: on the training device when it fits there (moved
    # once), else in (pinned) host memory, from which each minibatch is streamed.
    streamed = x.device != device
    autocast = _autocast(cfg.precision, device)
    result = TrainResult(n_iter=start_epoch)
    last_good = copy.deepcopy(module.state_dict())
    # The lowest-loss epoch's weights: a reference to that epoch's last_good copy, so
    # tracking it costs no copy of its own.
    best_state, best_epoch = None, None
    previous = None
    no_improve = 0
    params = [p for p in module.parameters()]
    module.train()
    epoch = start_epoch
    scale = None
    try:
        for epoch in range(start_epoch, cfg.max_iter):
            tic = time.perf_counter()
            idx = balanced_batches(members, cfg.batch_size, n_steps, index_generator).to(x.device)
            sums = torch.zeros(len(names), device=device)
            for i in range(n_steps):
                alpha = mi_weight_schedule(
                    epoch + i / n_steps, cfg.mi_weight, cfg.mi_anneal_epochs
                )
                # A tensor gather, or sparse rows densified one minibatch at a time.
                xb = x[idx[i].reshape(-1)]
                if streamed:
                    xb = xb.pin_memory().to(device, non_blocking=True)
                with autocast:
                    terms = step(xb, batch_pops, batch_counts, pop_sizes, alpha)
                if scale is None:
                    # One extra synchronisation per fit: the reference for "explodes".
                    first = _stack(terms, names).tolist()
                    finite = [abs(v) for v in first if math.isfinite(v)]
                    scale = max([1.0] + finite)
                optimizer.zero_grad(set_to_none=True)
                terms.loss.backward()
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                sums += _stack(terms, names)
            # One host-device synchronisation per epoch, here.
            record = dict(zip(names, (sums / n_steps).tolist()))
            if cfg.record_alpha:
                record["mi_weight"] = alpha
            record["epoch"] = epoch + 1
            try:
                _check_diverged(record, epoch, scale, previous, names)
            except TrainingDivergedError as exc:
                best = best_state is not None
                module.load_state_dict(best_state if best else last_good)
                module.eval()
                exc.result = result
                raise _restored(exc, best_epoch if best else result.n_iter, best) from None
            if validate is not None:
                vrec = validate(alpha)
                record.update({f"val_{n}": v for n, v in vrec.items()})
            record["time"] = time.perf_counter() - tic
            result.history.append(record)
            result.n_iter = epoch + 1
            if cfg.verbose:
                print(_format(record, names), flush=True)
            last_good = copy.deepcopy(module.state_dict())
            previous = record

            # Stopping rules: the objective changes with alpha, so only count after annealing.
            if epoch + 1 < cfg.mi_anneal_epochs:
                continue
            metric = record[f"val_{names[0]}"] if validate is not None else record[names[0]]
            significant = metric < result.best_loss - cfg.tol * abs(result.best_loss)
            if metric < result.best_loss:
                result.best_loss = metric
                best_state, best_epoch = last_good, epoch + 1
            if significant:
                no_improve = 0
            else:
                no_improve += 1
                if no_improve >= cfg.n_iter_no_change:
                    result.converged = True
                    break
    except KeyboardInterrupt:
        # As sklearn's MLP: keep a usable model; the estimator warns.
        result.interrupted = True
        module.load_state_dict(last_good)
    if cfg.early_stopping and best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return result


@dataclass
class FitOutcome:
    """What :func:`fit_module` returns: the :class:`TrainResult`, the optimiser state on
    the CPU (None after a divergence: Adam's moments may hold NaN), and the
    :class:`TrainingDivergedError` to raise once the estimator is complete (or None)."""

    result: TrainResult
    optimizer_state: dict | None
    diverged: TrainingDivergedError | None


def make_optimizer(module, learning_rate, device):
    """Adam; the fused kernel on CPU and CUDA updates every parameter in one pass. With K
    private networks the optimiser touches O(K) weights per step, so this matters as much
    as the GEMMs."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(module.parameters(), lr=learning_rate, fused=fused)


def rows_source(X, device, rows=None):
    """Rows ``rows`` of X for training: a float32 tensor, or densify-on-demand rows.

    One float32 copy of the rows at most (none for float32 input on the CPU); a sparse X
    stays sparse and is densified one minibatch at a time.
    """
    if sp.issparse(X):
        return SparseRows(X if rows is None else X[rows], device)
    return training_tensor(X, device, rows)


def training_data(X, y_idx, n_populations, device, *, validation_fraction=None, seed=None):
    """``(data, val)`` for :func:`fit_module`: the training rows, their populations and
    population sizes, and, with a ``validation_fraction``, a stratified held-out
    ``(rows, populations)`` pair (else None)."""
    rows_tr, idx_tr, val = None, y_idx, None
    if validation_fraction is not None:
        rows_tr, rows_val = train_test_split(
            np.arange(X.shape[0]),
            test_size=validation_fraction,
            stratify=y_idx,
            random_state=seed,
        )
        idx_tr = y_idx[rows_tr]
        x_val = rows_source(X, device, rows_val)
        val = (x_val, torch.as_tensor(y_idx[rows_val], device=x_val.device))
    x_t = rows_source(X, device, rows_tr)
    pops = torch.as_tensor(idx_tr, device=x_t.device)
    pop_sizes = torch.as_tensor(
        np.bincount(idx_tr, minlength=n_populations), dtype=torch.float32, device=device
    )
    return (x_t, pops, pop_sizes), val


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


def fit_module(
    module,
    data,
    cfg,
    *,
    device,
    learning_rate,
    seed,
    make_step=None,
    optimizer_state=None,
    start_epoch=0,
    val=None,
    val_seed=0,
):
    """Train ``module`` on ``data`` (from :func:`training_data`) and leave it on the CPU.

    ``make_step(generator)`` builds the minibatch objective (default :func:`cpvae_step`)
    from the noise generator seeded with ``seed``; the minibatches draw from the same
    seed. ``optimizer_state`` continues a previous fit (``warm_start``). ``val`` are
    held-out rows scored each epoch by :func:`evaluate` with fixed noise ``val_seed``.
    A divergence is caught (good weights are restored by :func:`train`) and returned in
    the :class:`FitOutcome`, so that the caller completes its fitted attributes first.
    """
    module = module.to(device)
    optimizer = make_optimizer(module, learning_rate, device)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    generator = make_generator(seed, device)
    index_generator = generator if device.type == "cpu" else make_generator(seed, "cpu")
    step = (make_step or (lambda gen: cpvae_step(module, cfg, gen)))(generator)
    validate = None
    if val is not None:

        def validate(alpha):
            return evaluate(module, *val, cfg, alpha, val_seed)

    diverged = None
    try:
        result = train(
            step,
            module,
            optimizer,
            data,
            cfg,
            index_generator=index_generator,
            start_epoch=start_epoch,
            validate=validate,
        )
    except TrainingDivergedError as exc:
        diverged, result = exc, exc.result
    finally:
        module.to("cpu").eval()
    state = None if diverged is not None else _state_to_cpu(optimizer.state_dict())
    return FitOutcome(result, state, diverged)


def _autocast(precision, device):
    """bf16 autocast for the forward pass (GEMMs in bf16, losses in float32), or nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _format(record, names=TERMS):
    parts = [f"epoch {record['epoch']:4d}"]
    for name in names + ("mi_weight",):
        if name in record:
            parts.append(f"{name}={record[name]:.4g}")
    if "val_loss" in record:
        parts.append(f"val_loss={record['val_loss']:.4g}")
    parts.append(f"({record['time']:.2f}s)")
    return "  ".join(parts)
