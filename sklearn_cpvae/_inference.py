"""Inference with fitted networks: device and dtype copies, chunking, encode, decode, log p(x|k).

Every function takes a fitted :class:`~sklearn_cpvae._module.CPVAEModule` and numpy rows
and returns numpy arrays. One chunking policy (:func:`chunks`) keeps the temporaries of a
chunk under :data:`CHUNK_BYTES`; rows are converted to tensors one chunk at a time, so a
sparse X is never densified whole.

float64 input runs a float64 copy of the networks: float32 GEMMs round differently with
the number of rows, which would make a row's output depend on its batch.
"""

import copy

import numpy as np
import scipy.sparse as sp
import torch

from sklearn_cpvae._memory import with_retained_heap
from sklearn_cpvae._objective import kl_std_normal, log_likelihood_per_population, proposal
from sklearn_cpvae._torch_utils import resolve_device
from sklearn_cpvae._validation import check_finite_output

# Inference works in chunks whose temporaries stay under this many bytes.
CHUNK_BYTES = 256 * 2**20


def to_tensor(X, device, dtype=np.float32):
    """Rows ``X`` (dense or sparse) as a tensor of ``dtype`` on ``device``; always a copy."""
    if sp.issparse(X):
        # One inference chunk or minibatch at a time, never the whole matrix.
        X = X.toarray()
    # np.array copies, so torch never aliases a caller's (possibly read-only) array.
    return torch.from_numpy(np.array(X, dtype=dtype, order="C")).to(device)


def inference_module(module, device, dtype):
    """``(networks, device, torch dtype)``: ``module`` on the inference device in ``dtype``.

    ``device`` is the estimator's ``device`` parameter; a CUDA device absent on this
    machine falls back to the CPU with a warning. The fitted module itself is used on the
    CPU in float32; any other combination runs a copy.
    """
    device = resolve_device(device, fallback_warn=True)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    if device.type == "cpu" and tdtype == torch.float32:
        return module, device, tdtype
    return copy.deepcopy(module).to(device=device, dtype=tdtype), device, tdtype


def chunks(n, bytes_per_row):
    """Row slices of ``n`` rows whose temporaries stay under :data:`CHUNK_BYTES`."""
    size = max(1, int(CHUNK_BYTES // max(1, bytes_per_row)))
    return [slice(i, i + size) for i in range(0, n, size)]


def grouped_chunks(populations, n_groups, bytes_per_row):
    """Row slices for a pass that lays each slice out as a padded (K, m, ...) block
    (:func:`~sklearn_cpvae._nn.group_rows`): its temporaries are about ``(2 n + K m)``
    rows of ``bytes_per_row``, m the slice's largest population. Assuming the worst
    (one population per slice, K m = K n) makes every slice K times smaller than the
    memory needs when the populations are mixed, and a batched GEMM with few rows per
    network runs far below the GEMM rate; so the slices start at the mixed case's size
    and shrink, in proportion to the excess, until every one fits."""
    n = len(populations)
    rows = max(1, int(CHUNK_BYTES // max(1, bytes_per_row)))
    worst = max(1, rows // (2 + n_groups))
    pops = np.asarray(populations, dtype=np.int64)
    size = max(worst, rows // 3)
    while size > worst:
        slices = [slice(i, i + size) for i in range(0, n, size)]
        largest = max((int(np.bincount(pops[sl]).max()) for sl in slices), default=0)
        need = 2 * size + n_groups * largest
        if need <= rows:
            return slices
        size = max(worst, min(size - 1, size * rows // need))
    return [slice(i, i + worst) for i in range(0, n, worst)]


def _width(module, X):
    return max(module.layer_width, X.shape[1])


@with_retained_heap
def encode(
    module,
    device,
    X,
    populations=None,
    *,
    has_private=None,
    private_var=False,
    shared_var=False,
    centre=None,
):
    """Posterior means of z, or (with ``populations``) of t under each row's own encoder.

    ``has_private`` (K,) zeroes the private codes of populations without a private space.
    With ``private_var`` (``shared_var``) the private (shared) variances are returned
    too: ``(mean, var)``.
    ``centre`` (n,) gives each row's population for a population-centred shared encoder
    (``shared_centering``).
    """
    module, device, tdtype = inference_module(module, device, X.dtype)
    n_pop = module.n_populations
    if populations is None:
        slices = chunks(X.shape[0], 16 * _width(module, X))
    else:
        slices = grouped_chunks(populations, n_pop, 8 * _width(module, X))
    shared, private, variances = [], [], []
    with torch.inference_mode():
        for sl in slices:
            # The chunk is a copy of its own: standardised in place, once for either encoder.
            xb = module.standardize_rows(to_tensor(X[sl], device, X.dtype), inplace=True)
            if populations is None:
                pops = None if centre is None else torch.as_tensor(centre[sl], device=device)
                mu_z, lv_z = module.encode_shared(xb, standardized=True, populations=pops)
                shared.append(mu_z.cpu().numpy())
                if shared_var:
                    variances.append(torch.exp(lv_z).cpu().numpy())
                continue
            pops = torch.as_tensor(populations[sl], device=device)
            mu, lv = module.encode_private(xb, pops, standardized=True)
            mu = (
                mu
                * torch.as_tensor(has_private[populations[sl]], dtype=mu.dtype, device=device)[
                    :, None
                ]
            )
            private.append(mu.cpu().numpy())
            variances.append(torch.exp(lv).cpu().numpy())
    if populations is None:
        codes = np.concatenate(shared).astype(X.dtype, copy=False)
        codes = check_finite_output(codes, "the shared code", tdtype)
        if shared_var:
            return codes, np.concatenate(variances).astype(X.dtype, copy=False)
        return codes
    private = check_finite_output(np.concatenate(private), "the private code", tdtype)
    if private_var:
        return private, np.concatenate(variances)
    return private.astype(X.dtype, copy=False)


@with_retained_heap
def log_likelihoods(module, device, X, *, n_samples, seed, prior_mean=None, prior_var=None):
    """log p(x | k) for every row and population, shape (n, K) (eq. 7-8).

    ``n_samples`` importance samples drawn once from ``seed`` (common random numbers for
    every row and population). The prior on t is N(0, I), or the diagonal Gaussian
    ``(prior_mean, prior_var)`` of shape (K, n_private) each.
    """
    module, device, tdtype = inference_module(module, device, X.dtype)
    s, k = n_samples, module.n_populations
    n_shared, n_private = module.n_shared, module.n_private
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn((s, n_shared + n_private), generator=gen, dtype=torch.float64)
    eps = eps.to(device=device, dtype=tdtype)
    eps_z, eps_t = eps[:, :n_shared], eps[:, n_shared:]
    if prior_mean is not None:
        p_mean = torch.as_tensor(prior_mean, device=device, dtype=tdtype)
        p_logvar = torch.as_tensor(np.log(prior_var), device=device, dtype=tdtype)
    else:
        p_mean = torch.zeros((k, n_private), device=device, dtype=tdtype)
        p_logvar = torch.zeros_like(p_mean)
    # A population-centred shared encoder runs the shared networks once per population.
    k_shared = k if module.shared_centering else 1
    width = _width(module, X)
    per_row = 4 * X.dtype.itemsize * s * (k + k_shared) * (X.shape[1] + width + n_private)
    # The encoders need S times less memory per row than the samples: they run on blocks
    # of many rows, the samples on slices of them. Slices sized for the samples would
    # leave a few rows per private encoder at large K (4 at K = 50, S = 50), where their
    # batched GEMM runs far below the GEMM rate.
    per_row_encode = (
        2
        * X.dtype.itemsize
        * ((k + k_shared) * (width + 2 * max(n_shared, n_private)) + 2 * X.shape[1])
    )
    out = []
    with torch.inference_mode():
        for block in chunks(X.shape[0], per_row_encode):
            xb = to_tensor(X[block], device, X.dtype)
            q = proposal(module, xb)
            log_jacobian = module.log_jacobian(xb)[:, None]
            for sl in chunks(xb.shape[0], per_row):
                ll = log_likelihood_per_population(
                    module, q.rows(sl), eps_z, eps_t, p_mean, p_logvar
                )
                out.append((ll + log_jacobian[sl]).cpu().numpy())
    ll = np.concatenate(out).astype(np.float64)
    return check_finite_output(ll, "log p(x | population)", tdtype)


@with_retained_heap
def decode(module, device, codes, *, z_cols=None, t_cols=None, populations=None):
    """Mean of p(x | z, t) from codes: ``f_s(z)`` (``z_cols``), ``f_k(t)`` (``t_cols``, with
    each row's population) or their sum when both are given; as numpy in codes' dtype."""
    module, device, tdtype = inference_module(module, device, codes.dtype)
    n_features = module.n_features
    per_row = 8 * codes.itemsize * (n_features + module.layer_width)
    out = []
    with torch.inference_mode():
        for sl in chunks(len(codes), per_row):
            cb = to_tensor(codes[sl], device, codes.dtype)
            dec = 0
            if z_cols is not None:
                dec = dec + module.decode_shared(cb[:, z_cols])
            if t_cols is not None:
                pops = torch.as_tensor(populations[sl], device=device)
                dec = dec + module.decode_private(cb[:, t_cols], pops)
            out.append(module.output_mean(dec, offset=z_cols is not None).cpu().numpy())
    X_rec = np.concatenate(out).astype(codes.dtype, copy=False)
    return check_finite_output(X_rec, "the decoded X", tdtype)


def generate(module, z, t, populations):
    """Mean of p(x | z, t) for drawn codes ``z``, ``t`` (float64 numpy), on the CPU."""
    with torch.inference_mode():
        zt = torch.as_tensor(z, dtype=torch.float32)
        tt = torch.as_tensor(t, dtype=torch.float32)
        out = module.decode_shared(zt) + module.decode_private(tt, torch.as_tensor(populations))
        return module.output_mean(out).numpy().astype(np.float64)


@with_retained_heap
def population_centres(module, X, populations):
    """Each population's mean encoder input over its rows of ``X``, (K, D) float32, for
    ``shared_centering``: the mean over observed entries (0, the standardised mean,
    for a feature a population never observes). Accumulated in float64, on the CPU."""
    sums = counts = 0.0
    per_row = 8 * 8 * X.shape[1]
    with torch.inference_mode():
        for sl in chunks(X.shape[0], per_row):
            xb = to_tensor(X[sl], "cpu", np.float64)
            pops = torch.as_tensor(populations[sl], dtype=torch.long)
            s, c = module.population_centre_sums(xb, pops)
            sums, counts = sums + s, counts + c
    return torch.where(counts > 0, sums / counts.clamp_min(1.0), 0.0).to(torch.float32)


@with_retained_heap
def private_kl(module, device, X):
    """``KL(q_k(t | x_i) || N(0, I))`` of every private encoder on every row, (n, K)."""
    module, device, _ = inference_module(module, device, X.dtype)
    per_row = 8 * _width(module, X) * (2 + module.n_populations)
    out = []
    with torch.inference_mode():
        for sl in chunks(X.shape[0], per_row):
            mu, lv = module.encode_private_all(to_tensor(X[sl], device, X.dtype))
            out.append(kl_std_normal(mu, lv).T.cpu().numpy())
    return np.concatenate(out).astype(np.float64)


@with_retained_heap
def posterior_decodes(module, device, X, targets, *, n_samples, seed, t_mean, t_var, sources=None):
    """Decoded means under several populations for the same posterior draws of z.

    For every chunk of rows and each of ``n_samples`` draws ``z_s ~ q(z | x)`` and
    ``eps_s ~ N(0, I)``, yields ``(rows, [mean of p(x | z_s, t_k, k) for k in targets])``
    with ``t_k = t_mean[k] + sqrt(t_var[k]) * eps_s`` (population k's private prior, the
    same ``eps_s`` for every k: common random numbers, so that differences between
    populations are not swamped by noise). ``targets`` are (n,) index arrays; ``sources``
    (n,) the rows' own populations, for a population-centred shared encoder. Means are
    at the reference library size, in the units of X, as numpy float64.
    """
    module, device, tdtype = inference_module(module, device, X.dtype)
    gen = torch.Generator().manual_seed(seed)
    t_mean = torch.as_tensor(t_mean, dtype=tdtype, device=device)
    t_std = torch.as_tensor(np.sqrt(t_var), dtype=tdtype, device=device)
    n_features = module.n_features
    per_row = 8 * X.dtype.itemsize * (n_features * (1 + len(targets)) + _width(module, X))
    with torch.inference_mode():
        for sl in chunks(X.shape[0], per_row):
            xb = to_tensor(X[sl], device, X.dtype)
            src = None if sources is None else torch.as_tensor(sources[sl], device=device)
            mu_z, lv_z = module.encode_shared(xb, populations=src)
            pops = [torch.as_tensor(t[sl], device=device) for t in targets]
            for _ in range(n_samples):
                eps_z = torch.randn(mu_z.shape, generator=gen, dtype=torch.float64)
                eps_t = torch.randn(
                    (len(xb), module.n_private), generator=gen, dtype=torch.float64
                )
                z = mu_z + torch.exp(0.5 * lv_z) * eps_z.to(device=device, dtype=tdtype)
                shared = module.decode_shared(z)
                eps_t = eps_t.to(device=device, dtype=tdtype)
                means = []
                for k in pops:
                    t = t_mean[k] + t_std[k] * eps_t
                    out = module.output_mean(shared + module.decode_private(t, k))
                    means.append(check_finite_output(out.cpu().numpy(), "the decoded X", tdtype))
                yield sl, [m.astype(np.float64) for m in means]
