"""Saving and loading fitted estimators without executing code on load.

A pickle (or joblib) file runs arbitrary code when it is loaded, so it must only be
opened when it comes from someone you trust. :func:`save` writes a single
`safetensors <https://huggingface.co/docs/safetensors>`_ file instead: numeric arrays
(the networks' weights, the optimiser's moments, numeric fitted attributes) as raw
little-endian buffers, everything else (parameters, labels, history, versions) as JSON
in the file's header. Loading parses JSON and copies buffers; nothing is evaluated.

The header records the format version, the library version and a SHA-256 digest of
the JSON and of every array, so a truncated, corrupted or edited file is refused. See
:doc:`the persistence guide </persistence>` for the versioning policy.
"""

import copy
import hashlib
import io
import json
import os
import struct
import uuid
import warnings
import zipfile

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from sklearn_cpvae._version import __version__

FORMAT = "sklearn_cpvae.CPVAE"
# Bump when the layout changes; load() refuses versions it does not know.
FORMAT_VERSION = 1
_META_KEY = "sklearn_cpvae"
_DIGEST_KEY = "sha256"
# Private fitted state saved besides the public ``*_`` attributes; ``_sklearn_output_config``
# is what ``set_output`` stores (checked by :func:`_check_output_config` on load).
_PRIVATE_ATTRIBUTES = ("_importance_seed", "_sklearn_output_config")
_OUTPUT_CONFIG_KEYS = {"transform"}
_OUTPUT_CONFIG_VALUES = {"default", "pandas", "polars"}
# Upper bound on the header, so a corrupted length field cannot request huge memory.
_MAX_HEADER_BYTES = 100 * 2**20


# ------------------------------------------------------------------ JSON encoding
def _to_json(value, where, arrays=None):
    """``value`` as JSON-safe data; numeric arrays go to ``arrays`` when it is given."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return _to_json(value.item(), where, arrays)
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v, where, arrays) for v in value]}
    if isinstance(value, list):
        return [_to_json(v, where, arrays) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"cannot save {where}: a dict with non-string keys.")
        return {"__dict__": {k: _to_json(v, f"{where}[{k!r}]", arrays) for k, v in value.items()}}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf" and arrays is not None:
            key = f"attr.{where}"
            arrays[key] = np.ascontiguousarray(value)
            return {"__array__": key}
        if value.dtype.kind in "biufUS":
            return {
                "__ndarray__": value.tolist(),
                "dtype": value.dtype.str,
                "shape": list(value.shape),
            }
        if value.dtype.kind == "O":
            items = [_to_json(v, where) for v in value.ravel().tolist()]
            if any(isinstance(v, dict) for v in items):
                raise TypeError(f"cannot save {where}: an object array of non-scalar values.")
            return {"__ndarray__": items, "dtype": "object", "shape": list(value.shape)}
    raise TypeError(
        f"cannot save {where} of type {type(value).__name__}: only numbers, strings, "
        "None, tuples, lists, dicts and arrays are stored (no code is ever saved)."
    )


def _from_json(value, arrays):
    if isinstance(value, list):
        return [_from_json(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tuple__" in value:
        return tuple(_from_json(v, arrays) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _from_json(v, arrays) for k, v in value["__dict__"].items()}
    if "__array__" in value:
        return arrays[value["__array__"]]
    if "__ndarray__" in value:
        dtype = object if value["dtype"] == "object" else np.dtype(value["dtype"])
        out = np.empty(len(value["__ndarray__"]), dtype=dtype)
        out[:] = value["__ndarray__"]
        return out.reshape(value["shape"])
    raise ValueError(f"unknown entry {sorted(value)} in the file's header.")


def _encode_params(params):
    out = {}
    for name, value in params.items():
        if isinstance(value, (np.random.RandomState, np.random.Generator)):
            warnings.warn(
                f"{name} is a {type(value).__name__} instance, which cannot be stored "
                "without pickle; it is saved as None. The fitted model is saved exactly; "
                "only a refit of the loaded estimator draws different seeds.",
                UserWarning,
                stacklevel=4,
            )
            value = None
        out[name] = _to_json(value, f"parameter {name!r}")
    return out


# --------------------------------------------------------------- digest and I/O
def _digest(meta_json, arrays):
    h = hashlib.sha256(b"sklearn_cpvae-format-1\0")
    h.update(meta_json.encode())
    for key in sorted(arrays):
        arr = np.ascontiguousarray(arrays[key])
        h.update(f"\0{key}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _write(path, meta, arrays):
    """Write atomically: a crash while saving never leaves a half-written ``path``."""
    from safetensors.numpy import save as st_save

    meta_json = json.dumps(meta, sort_keys=True)
    header = {_META_KEY: meta_json, _DIGEST_KEY: _digest(meta_json, arrays)}
    payload = st_save(arrays, metadata=header)
    if hasattr(path, "write"):
        # A member of a pipeline archive, written in memory.
        path.write(payload)
        return
    _write_bytes(path, payload)


def _write_bytes(path, payload):
    """Write ``payload`` to ``path`` atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"cannot save to {path!r}: the folder {folder!r} does not exist. Create it "
            "first (os.makedirs), or save to an existing folder."
        )
    # A fresh name in the destination's directory (so os.replace is atomic), opened like
    # any new file so that the user's umask sets its permissions.
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "xb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read(path, raw=None):
    """``(meta, arrays)`` of a file (or of its bytes ``raw``, ``path`` then only names it
    in messages), after checking format, version and digest."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    if raw is None:
        with open(path, "rb") as fh:
            raw = fh.read()
    where = f"{os.fspath(path)!r}"
    if len(raw) < 8:
        raise ValueError(f"{where} is not a sklearn_cpvae model file: it is truncated or empty.")
    (n_header,) = struct.unpack("<Q", raw[:8])
    if n_header > min(len(raw) - 8, _MAX_HEADER_BYTES):
        raise ValueError(
            f"{where} is truncated or is not a sklearn_cpvae model file (its header "
            f"claims {n_header} bytes, the file holds {len(raw) - 8})."
        )
    try:
        header = json.loads(raw[8 : 8 + n_header])
        meta_json = header["__metadata__"][_META_KEY]
        digest = header["__metadata__"][_DIGEST_KEY]
        meta = json.loads(meta_json)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{where} is not a sklearn_cpvae model file (no readable metadata: {exc})."
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{where} is not a sklearn_cpvae CPVAE file (format {fmt!r}).")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ValueError(
            f"{where} has format version {version!r} (written by sklearn_cpvae "
            f"{meta.get('sklearn_cpvae_version')}); this release reads format version "
            f"{FORMAT_VERSION}. "
            + (
                "Upgrade sklearn_cpvae to load it."
                if newer
                else "Load it with the release that wrote it and save it again."
            )
        )
    try:
        arrays = st_load(raw)
    except SafetensorError as exc:
        raise ValueError(f"{where} is truncated or corrupted: {exc}.") from None
    if _digest(meta_json, arrays) != digest:
        raise ValueError(
            f"{where} failed its SHA-256 check: the file was modified or corrupted after "
            "it was saved. Refusing to load it."
        )
    return meta, arrays


# ------------------------------------------------------------------ public API
def save(estimator, path):
    """Write a fitted estimator to ``path`` (see :meth:`CPVAE.save`).

    What is saved is read off the estimator: ``get_params``, its fitted ``*_`` data
    attributes, ``module_``'s state dict and ``_optimizer_state``.
    """
    check_is_fitted(estimator)
    arrays = {
        f"module.{k}": v.detach().to("cpu").contiguous().numpy()
        for k, v in estimator.module_.state_dict().items()
    }
    attributes = {}
    for name, value in vars(estimator).items():
        fitted = name.endswith("_") and not name.startswith("__") and name != "module_"
        if fitted or name in _PRIVATE_ATTRIBUTES:
            attributes[name] = _to_json(value, name, arrays)
    optimizer = None
    state = getattr(estimator, "_optimizer_state", None)
    if state is not None:
        for pid, slots in state["state"].items():
            for key, v in slots.items():
                arrays[f"optim.{pid}.{key}"] = v.detach().to("cpu").contiguous().numpy()
        optimizer = _to_json(
            {
                "param_groups": state["param_groups"],
                "slots": {str(pid): sorted(slots) for pid, slots in state["state"].items()},
            },
            "the optimiser state",
        )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sklearn_cpvae_version": __version__,
        "torch_version": torch.__version__,
        "params": _encode_params(estimator.get_params(deep=False)),
        "attributes": attributes,
        "optimizer": optimizer,
    }
    _write(path, meta, arrays)


def load(path, *, estimator_class, build_module, added_params=None, raw=None):
    """Read an estimator written by :func:`save`; the public entry point is
    :func:`sklearn_cpvae.load`, which passes what this format does not know.

    ``estimator_class`` is constructed from the saved parameters; ``build_module(est)``
    validates them and returns the (untrained) networks into which the saved weights are
    loaded. Nothing from the file is executed: JSON is parsed and buffers are copied.
    ``added_params`` maps parameters that files of earlier releases lack to the value
    that reproduces how those releases fitted (not to today's default). ``raw``: the
    file's bytes, when it is a member of a pipeline archive (:func:`load_pipeline`).

    Raises
    ------
    ValueError
        If the file is truncated, corrupted or modified (SHA-256 mismatch), is not a
        CPVAE file, has a format version this release does not read, or holds
        parameters or attributes this release does not know.
    """
    meta, arrays = _read(path, raw)
    params = {k: _from_json(v, arrays) for k, v in meta["params"].items()}
    known = estimator_class().get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"{os.fspath(path)!r} was saved by sklearn_cpvae "
            f"{meta.get('sklearn_cpvae_version')} with parameters {unknown} that this "
            "release does not know; upgrade sklearn_cpvae to load it."
        )
    for name, value in (added_params or {}).items():
        params.setdefault(name, value)
    est = estimator_class(**params)
    for name, value in meta["attributes"].items():
        # Only data attributes: a file must never replace methods or the networks.
        fitted = name.endswith("_") and not name.startswith("__") and name != "module_"
        if not (fitted or name in _PRIVATE_ATTRIBUTES) or callable(
            getattr(estimator_class, name, None)
        ):
            raise ValueError(
                f"{os.fspath(path)!r} sets the attribute {name!r}, which a "
                "CPVAE file never holds; refusing to load it."
            )
        value = _from_json(value, arrays)
        if name == "_sklearn_output_config":
            _check_output_config(value, path)
        setattr(est, name, value)
    module = build_module(est)
    state = {
        k[len("module.") :]: torch.from_numpy(v.copy())
        for k, v in arrays.items()
        if k.startswith("module.")
    }
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"the weights in {os.fspath(path)!r} do not fit the saved configuration: {exc}"
        ) from None
    est.module_ = module.eval()
    est._optimizer_state = None
    if meta.get("optimizer") is not None:
        opt = _from_json(meta["optimizer"], arrays)
        est._optimizer_state = {
            "state": {
                int(pid): {
                    key: torch.from_numpy(arrays[f"optim.{pid}.{key}"].copy()) for key in keys
                }
                for pid, keys in opt["slots"].items()
            },
            "param_groups": opt["param_groups"],
        }
    return est


def _check_output_config(value, path):
    """A saved ``set_output`` configuration is a dict of known method names to known
    container names; anything else is refused, like any attribute a file should not set."""
    if (
        not isinstance(value, dict)
        or not set(value) <= _OUTPUT_CONFIG_KEYS
        or not all(v in _OUTPUT_CONFIG_VALUES for v in value.values())
    ):
        raise ValueError(
            f"{os.fspath(path)!r} holds a set_output configuration {value!r} that "
            "set_output never writes; refusing to load it."
        )


# ------------------------------------------------------------------ pipelines
PIPELINE_FORMAT = "sklearn_cpvae.Pipeline"
PIPELINE_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_SHELL = "pipeline.skops"


def _skops_io(what):
    try:
        import skops.io as sio
    except ImportError:
        raise ImportError(
            f"{what} needs skops, which saves the scikit-learn steps of a Pipeline without "
            "pickle: pip install 'sklearn-cpvae[persistence]'."
        ) from None
    return sio


def _split_pipeline(pipeline, cpvae_class, where=""):
    """A copy of ``pipeline`` whose CPVAE steps (also in nested Pipelines) are replaced
    by ``"passthrough"``, and those steps by their position (``"1"``, ``"2.0"``...)."""
    from sklearn.pipeline import Pipeline

    shell = copy.copy(pipeline)
    steps, found = [], {}
    for i, (name, step) in enumerate(pipeline.steps):
        key = f"{where}{i}"
        if isinstance(step, cpvae_class):
            check_is_fitted(step)
            found[key] = step
            step = "passthrough"
        elif isinstance(step, Pipeline):
            step, inner = _split_pipeline(step, cpvae_class, f"{key}.")
            found.update(inner)
        steps.append((name, step))
    shell.steps = steps
    return shell, found


def _hidden_instances(obj, cls, where="pipeline", seen=None):
    """Where ``cls`` instances sit among the attributes and containers of ``obj``."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, cls):
        return [where]
    if isinstance(obj, (list, tuple)):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(obj)]
    elif isinstance(obj, dict):
        items = [(f"{where}[{k!r}]", v) for k, v in obj.items()]
    elif hasattr(obj, "get_params"):
        items = [(f"{where}.{k}", v) for k, v in vars(obj).items()]
    else:
        return []
    found = []
    for name, value in items:
        found += _hidden_instances(value, cls, name, seen)
    return found


def _put_back(shell, key, estimator):
    node = shell
    *outer, last = (int(i) for i in key.split("."))
    for i in outer:
        node = node.steps[i][1]
    node.steps[last] = (node.steps[last][0], estimator)


def save_pipeline(pipeline, path, *, cpvae_class):
    """Write a fitted :class:`~sklearn.pipeline.Pipeline` that holds CPVAE steps to one
    file that runs no code on load (see :func:`sklearn_cpvae.save_pipeline`).

    The file is a zip archive: ``manifest.json`` (format, versions, where the CPVAE steps
    go), ``pipeline.skops`` (the Pipeline with each CPVAE step replaced by
    ``"passthrough"``, in skops' format) and one ``cpvae/<position>.cpvae`` file in this
    module's safetensors format per CPVAE step.
    """
    from sklearn.pipeline import Pipeline

    sio = _skops_io("save_pipeline")
    if not isinstance(pipeline, Pipeline):
        raise TypeError(
            f"save_pipeline saves a sklearn.pipeline.Pipeline; got {type(pipeline).__name__} "
            "(save a single CPVAE with its save method)."
        )
    shell, found = _split_pipeline(pipeline, cpvae_class)
    hidden = _hidden_instances(shell, cpvae_class)
    if hidden:
        raise ValueError(
            f"the pipeline holds a CPVAE inside a step other than a Pipeline (at "
            f"{hidden[0]}, e.g. in a ColumnTransformer or a meta-estimator); save_pipeline "
            "stores CPVAE only as a step of a Pipeline, nested Pipelines included."
        )
    shell_bytes = sio.dumps(shell)
    members = {}
    for key, est in found.items():
        buffer = io.BytesIO()
        save(est, buffer)
        members[f"cpvae/{key}.cpvae"] = buffer.getvalue()
    manifest = {
        "format": PIPELINE_FORMAT,
        "format_version": PIPELINE_FORMAT_VERSION,
        "sklearn_cpvae_version": __version__,
        "cpvae_steps": {key: f"cpvae/{key}.cpvae" for key in found},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_MANIFEST, json.dumps(manifest, sort_keys=True))
        zf.writestr(_SHELL, shell_bytes)
        for name, data in members.items():
            zf.writestr(name, data)
    _write_bytes(path, buffer.getvalue())


def load_pipeline(path, *, trusted=None, load_cpvae):
    """Read a file written by :func:`save_pipeline`; ``load_cpvae(where, raw)`` reads one
    CPVAE member. Nothing from the file is executed: skops refuses every type it does not
    trust by default unless it is listed in ``trusted``."""
    sio = _skops_io("load_pipeline")
    where = repr(os.fspath(path))
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read(_MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != PIPELINE_FORMAT:
                raise ValueError(f"{where} is not a sklearn_cpvae pipeline file.")
            if manifest.get("format_version") != PIPELINE_FORMAT_VERSION:
                raise ValueError(
                    f"{where} has pipeline format version {manifest.get('format_version')!r}"
                    f"; this release reads version {PIPELINE_FORMAT_VERSION}."
                )
            shell_bytes = zf.read(_SHELL)
            steps = {key: zf.read(member) for key, member in manifest["cpvae_steps"].items()}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{where} is not a sklearn_cpvae pipeline file (or it is truncated): {exc}."
        ) from None
    untrusted = [t for t in sio.get_untrusted_types(data=shell_bytes) if t not in (trusted or [])]
    if untrusted:
        raise ValueError(
            f"{where} holds types that skops does not trust by default: {untrusted}. "
            "Loading them could run their code: check that you know and trust each one, "
            "then pass them as load_pipeline(path, trusted=[...])."
        )
    shell = sio.loads(shell_bytes, trusted=list(trusted) if trusted else None)
    for key, raw in steps.items():
        estimator = load_cpvae(f"{os.fspath(path)}:cpvae/{key}.cpvae", raw)
        try:
            _put_back(shell, key, estimator)
        except (ValueError, IndexError, AttributeError, TypeError):
            raise ValueError(
                f"{where} places a CPVAE step at position {key!r}, which its pipeline does "
                "not have; the file was modified or is corrupted."
            ) from None
    return shell
