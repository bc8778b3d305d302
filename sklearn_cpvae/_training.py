"""Training: balanced minibatches (Algorithm 1), alpha annealing, stopping rules, divergence.

Plain torch, deliberately without a framework (:doc:`/design`). :func:`fit_module`
is what an estimator calls: it places the rows on the device (:func:`training_data`, with
the validation split), builds the fused Adam optimiser, runs :func:`train` and turns a
divergence into a :class:`FitOutcome` with good weights restored. :func:`train` runs
epochs of any minibatch objective ``step(x, populations, batch_counts, pop_sizes, alpha)``
(:func:`cpvae_step` for CPVAE; the VAE baseline passes its own) and returns what happened
as a :class:`TrainResult`.
"""

import contextlib
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from sklearn_cpvae._data import DiskRows, MappedRows, file_backed, training_tensor
from sklearn_cpvae._memory import with_retained_heap
from sklearn_cpvae._objective import (
    batch_terms,
    has_mi,
    has_own_kl,
    mi_weight_schedule,
    own_kl_warmup,
)
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
    compile: bool = False
    private_kl_weight: float = 1.0
    # Nats of own private rate per row that cost nothing (free bits; 0: none).
    private_free_nats: float = 0.0
    # Epochs over which the own private KL's weight rises from 0 to private_kl_weight.
    private_kl_warmup: int = 0
    private_kl_warmup_start: float = 0.0
    # Weight of the population adversary on the shared codes (0: none).
    shared_adversary: float = 0.0
    # Adam's L2 weight decay on the decoders' weights (0: none).
    decoder_weight_decay: float = 0.0
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
    # Epoch (1-based) of ``best_loss``; None until annealing is over.
    best_epoch: int | None = None


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


def cpvae_step(module, cfg, generator, shard=None):
    """The CPVAE minibatch objective for :func:`train`: eq. 4/10 (or eq. 3) on a balanced
    minibatch, with reparameterisation noise from ``generator``.

    With a :class:`Shard`, ``x`` holds this process's rows of the global minibatch and the
    noise is drawn for the whole global minibatch (every process draws the same) and
    sliced, so that each row gets the noise it gets in a one-process fit.
    """

    objective = _compiled(batch_terms) if cfg.compile else batch_terms

    def step(x, populations, batch_counts, pop_sizes, alpha, own_kl_scale=1.0):
        noise = None
        if shard is not None:
            noise = shard.noise(module, batch_counts, generator, x.device)
        elif cfg.compile:
            # Drawn outside the compiled graph (a generator argument breaks it), in the
            # order and shapes batch_terms would draw them: the same random stream.
            noise = tuple(
                torch.randn((len(x), width), generator=generator, device=x.device)
                for width in (module.n_shared, module.n_private)
            )
        own_kl = cfg.private_kl_weight * own_kl_scale
        if cfg.compile:
            # Tensors, so that the schedules do not recompile at every step.
            alpha = torch.tensor(alpha, dtype=torch.float32, device=x.device)
            own_kl = torch.tensor(own_kl, dtype=torch.float32, device=x.device)
        return objective(
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
            noise=noise,
            private_kl_weight=own_kl,
            private_free_nats=cfg.private_free_nats,
            adversary_weight=cfg.shared_adversary,
        )

    return step


def _compiled(fn):
    """``torch.compile(fn)`` whose failure (no C++ toolchain for inductor, say) raises an
    error that names the ``compile`` option; the failure surfaces at the first call."""
    compiled = torch.compile(fn)
    state = {"ok": False}

    def call(*args, **kwargs):
        if state["ok"]:
            return compiled(*args, **kwargs)
        try:
            out = compiled(*args, **kwargs)
        except Exception as exc:
            raise RuntimeError(
                f"compile=True, but torch.compile failed on this machine "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "inductor needs a working C++ compiler on the CPU (and Triton on CUDA). "
                "Set compile=False to train eagerly."
            ) from exc
        state["ok"] = True
        return out

    return call


@dataclass(frozen=True)
class Shard:
    """This process's share of every balanced minibatch in a distributed fit.

    Each of the ``world_size`` processes takes the same positions ``rows`` (a slice of
    ``range(batch_size)``) out of every population's M rows, so the global minibatch, and
    with it the estimate of eq. 4, is the one a single process would use. The objective
    is a sum over rows (:func:`~sklearn_cpvae._objective.cpvae_terms`), so the global
    loss is the sum of the processes' partial losses: gradients are summed, not averaged.
    """

    rank: int
    world_size: int
    batch_size: int

    @property
    def rows(self):
        bounds = np.linspace(0, self.batch_size, self.world_size + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def noise(self, module, batch_counts, generator, device):
        """``(eps_z, eps_t)`` for this shard's rows, sliced from the global draws in the
        order and shapes :func:`~sklearn_cpvae._objective.batch_terms` draws them."""
        k = module.n_populations
        n = k * self.batch_size
        out = []
        for width in (module.n_shared, module.n_private):
            eps = torch.randn((n, width), generator=generator, device=device)
            out.append(eps.view(k, self.batch_size, width)[:, self.rows].reshape(-1, width))
        return tuple(out)

    def sum(self, tensor):
        """The sum over processes (every process gets the same value)."""
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def from_first(self, tensor):
        """Process 0's value on every process, so that all take the same decisions."""
        torch.distributed.broadcast(tensor, src=0)
        return tensor


class _Objective(torch.nn.Module):
    """The minibatch objective as a module, so that DistributedDataParallel sees the
    forward pass of the networks it synchronises. The terms leave ``forward`` as a tuple:
    DistributedDataParallel finds the outputs that backward starts from by flattening
    the return value, and would not look inside a dataclass."""

    def __init__(self, module, step):
        super().__init__()
        self.module = module
        self._step = step
        self.terms_type = None

    def forward(self, *args):
        terms = self._step(*args)
        self.terms_type = type(terms)
        if dataclasses.is_dataclass(terms):
            return tuple(getattr(terms, f.name) for f in dataclasses.fields(terms))
        return terms


def _data_parallel(module, step, device):
    """``step`` with its gradients summed over the processes by DistributedDataParallel."""
    objective = _Objective(module, step)
    ddp = torch.nn.parallel.DistributedDataParallel(
        objective,
        device_ids=[device.index] if device.type == "cuda" else None,
        # The same parameters take part in every step (log_theta, say, never does
        # outside the NB likelihood): a static graph handles the unused ones without
        # searching the autograd graph at every step.
        static_graph=True,
    )

    def parallel_step(*args):
        out = ddp(*args)
        return objective.terms_type(*out) if isinstance(out, tuple) else out

    return parallel_step


def distributed_shard(distributed, cfg, device, has_invariance):
    """A :class:`Shard` when this fit runs in a process group of several processes, else None.

    ``distributed="auto"`` trains data-parallel when a ``torch.distributed`` process group
    is initialised, or when the environment of ``torchrun`` (``WORLD_SIZE`` > 1, with
    ``RANK`` and ``MASTER_ADDR``) is set, in which case the group is initialised here
    (NCCL on CUDA, gloo on the CPU); ``True`` requires one; ``False`` never distributes.
    """
    if distributed is False:
        return None
    dist = torch.distributed
    if not dist.is_available():
        if distributed is True:
            raise ValueError("distributed=True, but this torch build has no torch.distributed.")
        return None
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if not dist.is_initialized():
        if distributed is True:
            raise ValueError(
                "distributed=True, but no torch.distributed process group is initialised: "
                "launch with torchrun, or call torch.distributed.init_process_group first, "
                'or use distributed="auto".'
            )
        return None
    world = dist.get_world_size()
    if world == 1:
        return None
    if cfg.mi_samples is not None:
        raise ValueError(
            f"mi_samples={cfg.mi_samples} cannot be combined with distributed training "
            f"({world} processes): its draws span the whole minibatch. Use mi_samples=None, "
            "or distributed=False."
        )
    if has_invariance:
        raise ValueError(
            "shared_invariance > 0 cannot be combined with distributed training "
            f"({world} processes): its MMD penalty is not a sum over rows. Set "
            "shared_invariance=0, or distributed=False."
        )
    if cfg.shared_adversary > 0:
        raise ValueError(
            f"shared_adversary={cfg.shared_adversary} cannot be combined with distributed "
            f"training ({world} processes): its classifier's data-parallel training has "
            "not been verified against a one-process fit. Set shared_adversary=0, or "
            "distributed=False."
        )
    if cfg.batch_size < world:
        raise ValueError(
            f"batch_size={cfg.batch_size} is smaller than the {world} processes of the "
            "distributed fit, which share each population's batch_size rows; raise batch_size."
        )
    return Shard(dist.get_rank(), world, cfg.batch_size)


def _check_same_fit(shard, data, cfg, seed, device):
    """Every process must fit the same rows with the same seed: processes that quietly
    averaged gradients of different data would return a model of none of them."""
    x, _, pop_sizes = data
    mine = [len(x), cfg.batch_size, cfg.max_iter, seed, *pop_sizes.long().tolist()]
    mine = torch.tensor(mine, dtype=torch.int64, device=device)
    low, high = mine.clone(), mine.clone()
    torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
    torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise ValueError(
            f"distributed training across {shard.world_size} processes needs the same X, "
            "populations and random_state in every process, but they differ (rows, "
            "population sizes or seed); pass the same data and an integer random_state "
            "everywhere, or set distributed=False to fit each process on its own."
        )


def distributed_device(device, shard):
    """One GPU per process: ``cuda`` without an index means this process's local GPU."""
    if shard is None or device.type != "cuda" or device.index is not None:
        return device
    local = int(os.environ.get("LOCAL_RANK", shard.rank % torch.cuda.device_count()))
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


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
                private_free_nats=cfg.private_free_nats,
                adversary_weight=cfg.shared_adversary,
            )
            sums += _stack(terms)
    module.train(was_training)
    return dict(zip(TERMS, sums.tolist()))


def _snapshot(module, into=None):
    """A copy of ``module``'s state dict, written into the copy ``into`` when given.

    Taken after every epoch (the weights a divergence or an interrupt restores): refilling
    a copy that is no longer needed, rather than allocating a fresh one, spares the
    allocator and page faults of a copy of every weight per epoch, which with K private
    networks is O(K) weights.
    """
    state = module.state_dict()
    if into is None:
        return {name: value.detach().clone() for name, value in state.items()}
    for name, value in state.items():
        into[name].copy_(value)
    return into


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
        "learning_rate_init, standardise X, or see 'Divergence' in the training guide of the "
        "documentation.",
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
    shard=None,
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

    With a :class:`Shard`, ``step`` is this process's DistributedDataParallel objective:
    it sees the shard's rows of each global minibatch, and the recorded terms are summed
    over the processes, so every process records, checks and stops alike.
    """
    x, populations, pop_sizes = data
    names = cfg.terms
    k = len(pop_sizes)
    device = pop_sizes.device
    members = [torch.nonzero(populations.cpu() == j).flatten() for j in range(k)]
    n_steps = steps_per_epoch(len(x), k, cfg.batch_size)
    # A balanced minibatch always has the same layout and counts: built once, not per step.
    local = shard.rows if shard is not None else slice(None)
    m_local = len(range(cfg.batch_size)[local])
    batch_pops = torch.arange(k, device=device).repeat_interleave(m_local)
    # The counts of the global minibatch: a shard's rows carry their global weights.
    batch_counts = pop_sizes.new_full((k,), cfg.batch_size)
    # DistributedDataParallel averages gradients; the global loss is the shards' sum.
    loss_factor = shard.world_size if shard is not None else 1
    # x stays where the caller put it: on the training device when it fits there (moved
    # once), else in (pinned) host memory, from which each minibatch is streamed.
    streamed = x.device != device
    autocast = _autocast(cfg.precision, device)
    result = TrainResult(n_iter=start_epoch)
    last_good = _snapshot(module)
    # The lowest-loss epoch's weights: a reference to that epoch's last_good copy, so
    # tracking it costs no copy of its own. ``spare`` is a copy no longer referenced
    # (the previous best), reused by the next snapshot.
    best_state, best_epoch, spare = None, None, None
    previous = None
    # The stopping metric of every epoch after the schedules end.
    counted = []
    params = [p for p in module.parameters()]
    module.train()
    epoch = start_epoch
    scale = None
    report = Progress(cfg, start_epoch, device, validate is not None)
    try:
        for epoch in range(start_epoch, cfg.max_iter):
            tic = time.perf_counter()
            idx = balanced_batches(members, cfg.batch_size, n_steps, index_generator).to(x.device)
            sums = torch.zeros(len(names), device=device)
            for i in range(n_steps):
                alpha = mi_weight_schedule(
                    epoch + i / n_steps, cfg.mi_weight, cfg.mi_anneal_epochs
                )
                # The own-KL scale goes only to the CPVAE step, the one step with the term
                # (positional: DistributedDataParallel's forward takes no keywords).
                warm = ()
                if cfg.private_kl_warmup > 0:
                    warm = (
                        own_kl_warmup(
                            epoch + i / n_steps,
                            cfg.private_kl_warmup,
                            cfg.private_kl_warmup_start,
                        ),
                    )
                # A tensor gather, or sparse rows densified one minibatch at a time.
                xb = x[idx[i][:, local].reshape(-1)]
                if streamed:
                    xb = xb.pin_memory().to(device, non_blocking=True)
                with autocast:
                    terms = step(xb, batch_pops, batch_counts, pop_sizes, alpha, *warm)
                if scale is None:
                    # One extra synchronisation per fit: the reference for "explodes".
                    first = _stack(terms, names)
                    first = (shard.sum(first) if shard is not None else first).tolist()
                    finite = [abs(v) for v in first if math.isfinite(v)]
                    scale = max([1.0] + finite)
                optimizer.zero_grad(set_to_none=True)
                (terms.loss * loss_factor if shard is not None else terms.loss).backward()
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                sums += _stack(terms, names)
            if shard is not None:
                sums = shard.sum(sums)
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
                exc = _restored(exc, best_epoch if best else result.n_iter, best)
                report.close(
                    result,
                    f"divergence (the {exc.term!r} term at epoch {exc.epoch}; the weights "
                    f"of epoch {exc.restored_epoch} were restored)",
                )
                raise exc from None
            if validate is not None:
                vrec = validate(alpha)
                if shard is not None:
                    vals = shard.from_first(torch.tensor(list(vrec.values()), device=device))
                    vrec = dict(zip(vrec, vals.tolist()))
                record.update({f"val_{n}": v for n, v in vrec.items()})
            record["time"] = time.perf_counter() - tic
            result.history.append(record)
            result.n_iter = epoch + 1
            report.epoch(record)
            if last_good is best_state:
                last_good, spare = _snapshot(module, spare), None
            else:
                last_good = _snapshot(module, last_good)
            previous = record

            # Stopping rules: the objective changes with alpha and with the private KL's
            # warm-up, so only count after both schedules end.
            if epoch + 1 < max(cfg.mi_anneal_epochs, cfg.private_kl_warmup):
                continue
            metric = record[f"val_{names[0]}"] if validate is not None else record[names[0]]
            if metric < result.best_loss:
                result.best_loss = metric
                if best_state is not None and best_state is not last_good:
                    spare = best_state
                best_state, best_epoch = last_good, epoch + 1
                result.best_epoch = best_epoch
            counted.append(metric)
            if plateaued(counted, cfg.tol, cfg.n_iter_no_change):
                result.converged = True
                break
    except KeyboardInterrupt:
        # As sklearn's MLP: keep a usable model; the estimator warns.
        result.interrupted = True
        module.load_state_dict(last_good)
    except BaseException:
        # Any other error: leave no half-drawn bar behind it.
        report.abandon()
        raise
    if cfg.early_stopping and best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    report.close(result, _stop_reason(result, cfg))
    return result


def plateaued(losses, tol, window):
    """Whether training has stopped improving: the mean of the last ``window`` epoch
    losses is not below the mean of the ``window`` epochs before them by ``tol`` of its
    size.

    An epoch's loss is a Monte-Carlo estimate (one draw of the codes per row), so it
    moves by about 0.1 nat per row from one epoch to the next while a fit can still be
    gaining 0.03 nat an epoch. Means over windows average that noise out, where the
    record of single epochs (scikit-learn's MLP rule) is beaten ever more rarely by
    noise alone and stops such fits early (:doc:`the training guide </training>`,
    "When training stops").

    Examples
    --------
    >>> plateaued([5.0, 4.0, 3.0, 2.0], tol=1e-4, window=2)
    False
    >>> plateaued([4.0, 3.9, 4.1, 3.95, 4.05, 4.0], tol=1e-4, window=3)
    True
    """
    if len(losses) < 2 * window:
        return False
    current = sum(losses[-window:]) / window
    before = sum(losses[-2 * window : -window]) / window
    return not current < before - tol * abs(before)


def _stop_reason(result, cfg):
    """Why :func:`train` ended, in the words of the options that decide it."""
    if result.interrupted:
        return "interrupt (KeyboardInterrupt)"
    if result.converged:
        what = "validation loss" if cfg.early_stopping else "loss"
        rule = "early stopping" if cfg.early_stopping else "tol"
        return (
            f"{rule} (the {what} over the last n_iter_no_change={cfg.n_iter_no_change} "
            f"epochs did not improve by tol={cfg.tol:g} on the {cfg.n_iter_no_change} "
            "before)"
        )
    return f"max_iter (all {cfg.max_iter} epochs run)"


def shown_terms(cfg):
    """The terms of the objective that the progress output shows, in loss order.

    Only the terms the objective has: no ``kl_private`` for ``objective="paper"`` (eq. 4
    has no KL on a row's own private code), no ``mi`` (nor alpha) for ``"elbo"``.
    """
    names = cfg.terms
    if names[: len(TERMS)] != TERMS:
        return names
    keep = ["loss", "recon", "kl_shared"]
    if has_own_kl(cfg.objective):
        keep.append("kl_private")
    if has_mi(cfg.objective):
        keep.append("mi")
    # Terms beyond the objective's own (the population adversary's cross-entropy).
    return (*keep, *names[len(TERMS) :])


class Progress:
    """What ``fit`` shows while it trains, by ``verbose``.

    0: nothing. 1: a tqdm bar on stderr (epoch i/N, time left, current loss and device)
    and a one-line summary on stdout at the end. 2 and above: one line per epoch on
    stdout (:func:`format_epoch`) instead of the bar, and the same summary.
    """

    def __init__(self, cfg, start_epoch, device, has_validation):
        self.cfg = cfg
        self.verbose = int(cfg.verbose)
        self.device = str(device)
        self.has_validation = has_validation
        self.start_epoch = start_epoch
        self.tic = time.perf_counter()
        self.bar = None
        if self.verbose == 1:
            self.bar = tqdm(
                total=cfg.max_iter,
                initial=start_epoch,
                desc="fit",
                unit="epoch",
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def epoch(self, record):
        if self.bar is not None:
            postfix = {"loss": f"{record[self.cfg.terms[0]]:.4g}"}
            if self.has_validation:
                postfix["val_loss"] = f"{record[f'val_{self.cfg.terms[0]}']:.4g}"
            postfix["device"] = self.device
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
        elif self.verbose >= 2:
            print(format_epoch(record, self.cfg), flush=True)

    def abandon(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self, result, reason):
        self.abandon()
        if self.verbose >= 1:
            print(format_summary(result, reason, time.perf_counter() - self.tic, self), flush=True)


def format_summary(result, reason, wall, progress):
    """One line: epochs run, wall time, device, best epoch and why training stopped."""
    run = result.n_iter - progress.start_epoch
    parts = [f"fit: {run} epoch{'s' if run != 1 else ''} in {wall:.1f}s on {progress.device}"]
    if result.best_epoch is not None:
        what = "validation loss" if progress.has_validation else "loss"
        parts.append(f"best epoch {result.best_epoch} ({what} {result.best_loss:.4g})")
    else:
        parts.append("no best epoch (annealing not over)")
    parts.append(f"stopped by {reason}")
    return "; ".join(parts)


@dataclass
class FitOutcome:
    """What :func:`fit_module` returns: the :class:`TrainResult`, the optimiser state on
    the CPU (None after a divergence: Adam's moments may hold NaN), and the
    :class:`TrainingDivergedError` to raise once the estimator is complete (or None)."""

    result: TrainResult
    optimizer_state: dict | None
    diverged: TrainingDivergedError | None


def make_optimizer(module, learning_rate, device, decoder_weight_decay=0.0):
    """Adam; the fused kernel on CPU and CUDA updates every parameter in one pass. With K
    private networks the optimiser touches O(K) weights per step, so this matters as much
    as the GEMMs.

    ``decoder_weight_decay`` > 0 puts the decoders' weights (:func:`decoder_weights`) in
    a parameter group of their own with that ``weight_decay``; the other parameters stay
    in the first group, undecayed."""
    fused = device.type in ("cpu", "cuda")
    if decoder_weight_decay == 0:
        return torch.optim.Adam(module.parameters(), lr=learning_rate, fused=fused)
    decayed = decoder_weights(module)
    ids = {id(p) for p in decayed}
    groups = [
        {"params": [p for p in module.parameters() if id(p) not in ids]},
        {"params": decayed, "weight_decay": decoder_weight_decay},
    ]
    return torch.optim.Adam(groups, lr=learning_rate, fused=fused)


def decoder_weights(module):
    """The weight tensors of the shared and private decoders (dense and transposed
    convolutions), without their biases."""
    return [
        p
        for name, p in module.named_parameters()
        if name.startswith(("dec_shared.", "dec_private."))
        and any(part.endswith("weights") for part in name.split(".")[1:])
    ]


def rows_source(X, device, rows=None):
    """Rows ``rows`` of X for training: a float32 tensor, or densify-on-demand rows.

    One float32 copy of the rows at most (none for float32 input on the CPU); a sparse X
    stays sparse and is densified one minibatch at a time; a memory-mapped X is read from
    its file one minibatch at a time (no copy), as are the rows of an h5py Dataset or a
    zarr array (:class:`~sklearn_cpvae._data.DiskRows`).
    """
    if sp.issparse(X):
        return SparseRows(X if rows is None else X[rows], device)
    if isinstance(X, DiskRows) or file_backed(X):
        return MappedRows(X, device, rows)
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


@with_retained_heap(trim=True)
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
    distributed=False,
):
    """Train ``module`` on ``data`` (from :func:`training_data`) and leave it on the CPU.

    ``make_step(generator)`` builds the minibatch objective (default :func:`cpvae_step`)
    from the noise generator seeded with ``seed``; the minibatches draw from the same
    seed. ``optimizer_state`` continues a previous fit (``warm_start``). ``val`` are
    held-out rows scored each epoch by :func:`evaluate` with fixed noise ``val_seed``.
    A divergence is caught (good weights are restored by :func:`train`) and returned in
    the :class:`FitOutcome`, so that the caller completes its fitted attributes first.

    ``distributed`` (see :func:`distributed_shard`) trains data-parallel under
    ``torchrun``: every process passes the same data and seed, takes its shard of each
    global minibatch, and DistributedDataParallel sums the gradients, so every process
    ends with the same weights, those of a one-process fit up to floating-point
    summation order. Only the CPVAE objective (``make_step=None``) is sharded.
    """
    shard = None
    if make_step is None:
        invariance = float(getattr(module, "shared_invariance", 0.0)) > 0
        shard = distributed_shard(distributed, cfg, device, invariance)
        device = distributed_device(device, shard)
        if shard is not None:
            _check_same_fit(shard, data, cfg, seed, device)
        if shard is not None and shard.rank != 0:
            # One log for the fit: process 0's (the others record the same history).
            cfg = dataclasses.replace(cfg, verbose=0)
        if cfg.shared_adversary > 0:
            # The classifier's cross-entropy is recorded (and guarded) as its own term.
            cfg = dataclasses.replace(cfg, terms=(*cfg.terms, "adversary"))
    module = module.to(device)
    optimizer = make_optimizer(module, learning_rate, device, cfg.decoder_weight_decay)
    if optimizer_state is not None:
        if len(optimizer_state["param_groups"]) != len(optimizer.param_groups):
            raise ValueError(
                "warm_start=True continues the previous fit's optimiser, whose "
                "decoder_weight_decay was "
                f"{'0' if len(optimizer_state['param_groups']) == 1 else 'above 0'}; "
                f"decoder_weight_decay={cfg.decoder_weight_decay:g} cannot switch the decay "
                "on or off in a continued fit. Keep it, or fit with warm_start=False."
            )
        decays = [group["weight_decay"] for group in optimizer.param_groups]
        optimizer.load_state_dict(optimizer_state)
        # load_state_dict restores the saved step size and decay too: a warm start must
        # use the learning_rate_init and decoder_weight_decay it is given now.
        for group, decay in zip(optimizer.param_groups, decays):
            group["lr"] = learning_rate
            group["weight_decay"] = decay
    generator = make_generator(seed, device)
    index_generator = generator if device.type == "cpu" else make_generator(seed, "cpu")
    step = (make_step or (lambda gen: cpvae_step(module, cfg, gen, shard)))(generator)
    if shard is not None:
        step = _data_parallel(module, step, device)
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
            shard=shard,
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


def format_epoch(record, cfg):
    """One epoch for ``verbose >= 2``: ``loss`` and the terms it sums, all with the sign
    they have in the loss, so ``loss = nll + kl_shared + kl_private + alpha * mi``; with
    ``shared_adversary`` also the population classifier's cross-entropy ``adversary``
    (chance: log K), which enters the loss's gradient, not its value.

    ``recon`` (a log-likelihood) is shown as ``nll = -recon``; terms the objective does
    not have are left out (:func:`shown_terms`), and ``val_loss`` appears only with
    early stopping.
    """
    width = len(str(cfg.max_iter))
    parts = [f"epoch {record['epoch']:{width}d}/{cfg.max_iter}"]
    names = shown_terms(cfg)
    for name in names:
        if name == "recon":
            parts.append(f"nll={-record[name]:.4g}")
        else:
            parts.append(f"{name}={record[name]:.4g}")
    if "mi" in names and "mi_weight" in record:
        parts.append(f"alpha={record['mi_weight']:.4g}")
    val = f"val_{names[0]}"
    if val in record:
        parts.append(f"val_loss={record[val]:.4g}")
    parts.append(f"({record['time']:.2f}s)")
    return "  ".join(parts)
