"""Bad-input corpus: property-based tests over the inputs of every public method.

Each drawn input is described by its class (shape, values, dtype, container, labels,
parameter), and an oracle says what that class must give: a clean input must give a
finite result, and each defect must give a ``ValueError``/``TypeError`` whose message
names it (a regular expression per defect). Where a defect may be absorbed by a cast
(NaN in a bool array) or by the networks (a 1e30 entry at predict time), a finite result
is accepted too, but any error must still name the defect. Examples are derandomised so
the default run is reproducible and fast; set ``CPVAE_FUZZ_REPORT=path`` to write the
count of cases tried per input class and outcome.
"""

import json
import os
import re
import warnings
from collections import Counter

import numpy as np
import pytest
from conftest import CONFIGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sklearn_cpvae import CPVAE

pd = pytest.importorskip("pandas")
sp = pytest.importorskip("scipy.sparse")

N_FEATURES = 4
TINY = CONFIGS["bad_input"]
OUTCOMES = Counter()
MESSAGES = Counter()


def _settings(n):
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    total = sum(OUTCOMES.values())
    # Outcomes per method, then per value of each property of the input (its class
    # "shape/values/dtype/container[/labels]" split on "/").
    by = Counter()
    for (test, cls, outcome), n in OUTCOMES.items():
        by[(test, "", outcome)] += n
        for part in cls.split("/"):
            by[("", part, outcome)] += n
    lines = [f"bad-input corpus: {total} cases"] + [
        f"  {test or '(any)':17s} {part or '(all)':36s} {outcome:10s} {n}"
        for (test, part, outcome), n in sorted(by.items())
    ]
    print("\n".join(lines))
    path = os.environ.get("CPVAE_FUZZ_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump(
                {
                    "total": total,
                    "cases": [[*k, n] for k, n in sorted(OUTCOMES.items())],
                    "messages": [[*k, n] for k, n in sorted(MESSAGES.items())],
                },
                fh,
                indent=1,
            )


def _all_finite(out):
    if isinstance(out, tuple):
        return all(_all_finite(o) for o in out)
    arr = np.asarray(out)
    return arr.dtype.kind not in "fc" or bool(np.all(np.isfinite(arr)))


def _outcome(test, cls, call, problems=(), tolerated=()):
    """Run ``call`` and check it against the oracle.

    ``problems``: regular expressions, one per defect of the input that must be reported;
    with none, ``call`` must return a finite result. With some, it must raise a
    ValueError/TypeError whose message matches one of them. ``tolerated``: defects that
    may also be absorbed (a finite result is then accepted) but, if reported, must be
    named like a problem.
    """
    named = [*problems, *tolerated]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            out = call()
        except (ValueError, TypeError) as exc:
            msg = str(exc)
            OUTCOMES[(test, cls, type(exc).__name__)] += 1
            MESSAGES[(test, type(exc).__name__, msg.splitlines()[0][:110] if msg else "")] += 1
            assert named, f"{cls}: a clean input raised {type(exc).__name__}: {msg}"
            assert any(re.search(p, msg) for p in named), (
                f"{cls}: the message does not name the defect ({named}): {msg}"
            )
            return None
    assert _all_finite(out), f"non-finite output for {cls}"
    assert not problems, f"{cls}: no error for the defect(s) {list(problems)}"
    OUTCOMES[(test, cls, "result")] += 1
    return out


# What each property of an input must be reported as (a regular expression of the message).
SHAPE_PROBLEMS = {
    "1-D": r"2D array",
    "3-D": r"dim 3|3D|dimension",
    "ragged": r"inhomogeneous|sequence|inconsistent",
    "empty": r"0 sample|2D array",
}
VALUE_PROBLEMS = {"nan": r"NaN", "inf": r"infinity", "-inf": r"infinity"}
DTYPE_PROBLEMS = {
    "complex128": r"[Cc]omplex",
    "mixed object": r"string|convert|numeric",
}
# Strings of numbers are converted like numbers; anything else must be reported.
STRINGS = r"string|convert|numeric"
# The number of rows or features a fitted model expects, and the entry too large for
# training's float32 arithmetic.
FEATURES = r"features"
MAGNITUDE = r"magnitude|infinity|finite"


def x_oracle(cls, *, fit):
    """``(problems, tolerated)`` of an X of class ``shape/values/dtype/container``."""
    shape, kind, dtype, _ = cls.split("/")[:4]
    problems, tolerated = [], []
    if shape in SHAPE_PROBLEMS:
        problems.append(SHAPE_PROBLEMS[shape])
    elif shape == "one row" and fit:
        problems.append(r"1 sample|minimum of 2")
    elif shape in ("one feature", "extra feature") and not fit:
        problems.append(FEATURES)
    if dtype in DTYPE_PROBLEMS:
        problems.append(DTYPE_PROBLEMS[dtype])
    if dtype == "str":
        tolerated.append(STRINGS)
    value = VALUE_PROBLEMS.get(kind)
    if kind == "1e30":
        # Too large for training (fit); at predict time the networks may absorb it.
        value = MAGNITUDE
        if not fit or dtype == "float16":
            tolerated.append(value)
            value = None
    if value is not None and shape != "empty":
        if dtype in ("bool", "int64", "float16"):
            # The cast turns NaN into True / a huge integer, inf into a huge integer.
            tolerated += [value, MAGNITUDE]
        elif dtype in DTYPE_PROBLEMS or dtype == "str":
            tolerated.append(value)
        else:
            problems.append(value)
    if dtype == "float16":
        tolerated.append(MAGNITUDE)
    return problems, tolerated


FIT_LABEL_PROBLEMS = {
    "one population": r"at least 2 populations",
    "one-row population": r"at least 2 rows",
    "NaN label": r"NaN|label",
    "mixed types": r"label|type",
    "float continuous": r"continuous|label",
    "wrong length": r"inconsistent|samples",
}
LABEL_PROBLEMS = {
    "unseen label": r"unknown population",
    "NaN label": r"unknown population|types|NaN",
    "int labels": r"unknown population|types",
    "mixed types": r"unknown population|types",
    "wrong length": r"one label per row",
    "2-D": r"1-D",
}


# ------------------------------------------------------------------ strategies
VALUE_KINDS = [
    "normal",
    "nan",
    "inf",
    "-inf",
    "1e30",
    "constant column",
    "all-zero row",
    "tiny 1e-300",
]
DTYPES = [
    "float64",
    "float32",
    "float16",
    "int64",
    "bool",
    "complex128",
    "object",
    "str",
    "mixed object",
]
SHAPES = ["2-D", "1-D", "3-D", "ragged", "empty", "one row", "one feature", "extra feature"]
CONTAINERS = ["ndarray", "list", "DataFrame", "sparse"]


@st.composite
def matrices(draw, n_features=N_FEATURES, min_rows=2, max_rows=6):
    """``(input class, X)``: X described by its shape, values, dtype and container.

    Four draws in five vary a single property and keep the others clean, so that every
    defect is tried alone (where a correct result or an error naming it is expected);
    the fifth combines defects freely.
    """
    alone = draw(st.sampled_from(["shape", "values", "dtype", "container", None]))

    def pick(prop, options):
        free = alone is None or alone == prop
        return draw(st.sampled_from(options)) if free else options[0]

    shape = pick("shape", SHAPES)
    n = {"empty": 0, "one row": 1}.get(shape, draw(st.integers(min_rows, max_rows)))
    d = {"one feature": 1, "extra feature": n_features + 1}.get(shape, n_features)
    X = draw(hnp.arrays(np.float64, (n, d), elements=st.floats(-1e3, 1e3, width=64)))
    kind = pick("values", VALUE_KINDS)
    if X.size:
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))
        special = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "1e30": 1e30}
        if kind in special:
            X[i, j] = special[kind]
        elif kind == "constant column":
            X[:, j] = 7.0
        elif kind == "all-zero row":
            X[i] = 0.0
        elif kind == "tiny 1e-300":
            X[i, j] = 1e-300
    dtype = pick("dtype", DTYPES)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype == "str":
            X = X.astype(str)
        elif dtype == "object":
            X = X.astype(object)
        elif dtype == "mixed object":
            X = X.astype(object)
            if X.size:
                X[0, 0] = "a"
        else:
            X = X.astype(dtype)
    if shape == "1-D":
        X = X.ravel()
    elif shape == "3-D":
        X = X[..., None]
    elif shape == "ragged":
        X = [list(row) for row in X] + [[1.0]]
    container = pick("container", CONTAINERS)
    if container == "list" and isinstance(X, np.ndarray):
        X = X.tolist()
    elif container == "DataFrame" and isinstance(X, np.ndarray) and X.ndim == 2:
        X = pd.DataFrame(X, columns=[f"f{c}" for c in range(X.shape[1])])
    elif (
        container == "sparse"
        and isinstance(X, np.ndarray)
        and X.ndim == 2
        and X.dtype.kind in "biufc"
        and X.dtype != np.float16
    ):
        X = sp.csr_matrix(X)
    else:
        container = "ndarray" if isinstance(X, np.ndarray) else "list"
    return f"{shape}/{kind}/{dtype}/{container}", X


def labels_for(n, fitted=("a", "b")):
    """``(label class, labels)`` of length about ``n`` for methods of a fitted model."""
    good = np.array(fitted)[np.arange(n) % len(fitted)]
    options = {
        "known": good,
        "unseen label": np.where(np.arange(n) == 0, "zzz", good),
        "NaN label": np.where(np.arange(n) == 0, np.nan, 0.0),
        "int labels": np.arange(n),
        "mixed types": np.array([1, "a"] * n, dtype=object)[:n],
        "wrong length": good[:-1] if n else np.array(["a"]),
        "2-D": good[:, None],
        "None": None,
    }
    keys = ["known"] * 8 + sorted(options)
    return st.sampled_from(keys).map(lambda k: (k, options[k]))


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, N_FEATURES))
    y = np.repeat(["a", "b"], 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CPVAE(**TINY).fit(X, y)


# ------------------------------------------------------------- fitted methods
METHODS = ["predict", "predict_proba", "predict_log_proba", "score_samples", "score", "transform"]


@_settings(400)
@given(data=st.data(), method=st.sampled_from(METHODS))
def test_inference_methods(fitted, data, method):
    cls, X = data.draw(matrices())
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    lab_cls, labels = data.draw(labels_for(n))
    if method in ("score_samples", "transform"):
        call = lambda: getattr(fitted, method)(X, populations=labels)  # noqa: E731
        cls = f"{cls}/populations={lab_cls}"
    elif method == "score":
        call = lambda: fitted.score(X, labels)  # noqa: E731
        cls = f"{cls}/y={lab_cls}"
    else:
        call = lambda: getattr(fitted, method)(X)  # noqa: E731
    problems, tolerated = x_oracle(cls, fit=False)
    if method in ("score_samples", "transform", "score") and lab_cls in LABEL_PROBLEMS:
        problems = [*problems, LABEL_PROBLEMS[lab_cls]]
    if method == "score" and lab_cls == "None":
        problems = [*problems, r"needs y"]
    if method == "score" and lab_cls != "known":
        # sklearn's accuracy compares any labels; only a length mismatch is an error.
        problems = [p for p in problems if p not in LABEL_PROBLEMS.values()]
        # Labels of mixed types fail inside sklearn's accuracy_score with its own message.
        tolerated = [
            *tolerated,
            *LABEL_PROBLEMS.values(),
            r"inconsistent|samples|mix|not supported between",
        ]
    out = _outcome(method, cls, call, problems, tolerated)
    if out is not None and method in ("predict_proba",):
        assert np.allclose(out.sum(axis=1), 1.0)


@_settings(150)
@given(data=st.data(), part=st.sampled_from(["auto", "full", "shared", "private", "bad"]))
def test_inverse_transform(fitted, data, part):
    cls, codes = data.draw(matrices(n_features=fitted.n_shared + fitted.n_private))
    n = codes.shape[0] if hasattr(codes, "shape") else len(codes)
    lab_cls, labels = data.draw(labels_for(n))
    problems, tolerated = x_oracle(cls, fit=False)
    problems = [p for p in problems if p != FEATURES]
    if cls.split("/")[0] in ("one feature", "extra feature"):
        problems.append(r"columns")
    if cls.split("/")[3] == "sparse":
        problems.append(r"[Ss]parse")
    if part == "bad":
        problems.append(r"part must be")
    # The fitted model has both blocks: every part but "shared" needs the populations.
    needs_labels = part in ("full", "private", "auto")
    if needs_labels and lab_cls == "None":
        problems.append(r"needs populations")
    elif needs_labels and lab_cls in LABEL_PROBLEMS:
        problems.append(LABEL_PROBLEMS[lab_cls])
    _outcome(
        "inverse_transform",
        f"{cls}/populations={lab_cls}/part={part}",
        lambda: fitted.inverse_transform(codes, labels, part=part),
        problems,
        tolerated,
    )


@_settings(100)
@given(
    n_samples=st.one_of(
        st.integers(1, 5),
        st.integers(-2, 0),
        st.floats(allow_nan=True),
        st.sampled_from(["3", None, np.int64(2), True]),
    ),
    population=st.sampled_from([None, "a", "b"] * 2 + ["zzz", 0, np.nan, ["a"], ("b",)]),
    random_state=st.sampled_from([None, 0, np.random.RandomState(0)] * 2 + [-1, "x", 2**40]),
)
def test_sample(fitted, n_samples, population, random_state):
    cls = f"n={type(n_samples).__name__}/pop={population!r}"
    problems = []
    valid_n = isinstance(n_samples, (int, np.integer)) and not isinstance(n_samples, bool)
    if not (valid_n and n_samples >= 1):
        problems.append(r"n_samples must be a positive integer")
    if isinstance(population, (list, tuple)):
        problems.append(r"must be 1-D")
    elif population is not None and population not in ("a", "b"):
        problems.append(r"unknown population|types")
    if isinstance(random_state, str) or (
        isinstance(random_state, int) and not 0 <= random_state < 2**32
    ):
        problems.append(r"[Ss]eed|random_state")
    _outcome(
        "sample",
        cls,
        lambda: fitted.sample(n_samples, population, random_state=random_state),
        problems,
    )


@_settings(50)
@given(
    st.one_of(
        st.none(),
        st.lists(st.text(max_size=3), max_size=5),
        st.integers(),
        st.just(np.array(["f0", "f1", "f2", "f3"], dtype=object)),
        st.just([f"x{i}" for i in range(N_FEATURES)]),
    )
)
def test_get_feature_names_out(fitted, input_features):
    problems = []
    if input_features is not None and (
        np.ndim(input_features) != 1 or len(input_features) != N_FEATURES
    ):
        problems.append(r"input_features")
    _outcome(
        "feature_names",
        type(input_features).__name__,
        lambda: fitted.get_feature_names_out(input_features),
        problems,
    )


# ----------------------------------------------------------------------- fit
@st.composite
def training_labels(draw, n):
    kind = draw(
        st.sampled_from(
            ["two populations"] * 6
            + [
                "two populations",
                "three populations",
                "one population",
                "one-row population",
                "NaN label",
                "mixed types",
                "float continuous",
                "int",
                "bool",
                "2-D",
                "wrong length",
                "object str",
            ]
        )
    )
    base = np.arange(n) % 2
    y = {
        "two populations": np.array(["u", "v"])[base],
        "three populations": np.arange(n) % 3,
        "one population": np.zeros(n, dtype=int),
        "one-row population": np.where(np.arange(n) == 0, 9, 1),
        "NaN label": np.where(np.arange(n) == 0, np.nan, base.astype(float)),
        "mixed types": np.array([1, "a"] * n, dtype=object)[:n],
        "float continuous": np.linspace(0, 1, n) + 0.5,
        "int": base,
        "bool": base.astype(bool),
        "2-D": base[:, None],
        "wrong length": base[:-1] if n else np.array([0]),
        "object str": np.array(["u", "v"], dtype=object)[base],
    }[kind]
    return kind, y


@_settings(120)
@given(data=st.data())
def test_fit(data):
    # At least 4 rows, so that two alternating populations have 2 rows each.
    cls, X = data.draw(matrices(n_features=3, min_rows=4, max_rows=8))
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    lab_cls, y = data.draw(training_labels(n))

    def call():
        model = CPVAE(**TINY).fit(X, y)
        # A fitted model must give finite outputs on its own training data.
        Xd = X.toarray() if sp.issparse(X) else X
        return model.predict_proba(Xd), model.transform(Xd, populations=np.ravel(y))

    problems, tolerated = x_oracle(cls, fit=True)
    if lab_cls in FIT_LABEL_PROBLEMS:
        problems.append(FIT_LABEL_PROBLEMS[lab_cls])
    if lab_cls == "three populations" and n < 6:
        problems.append(FIT_LABEL_PROBLEMS["one-row population"])
    _outcome("fit", f"{cls}/y={lab_cls}", call, problems, tolerated)


BAD_PARAMS = {
    "n_shared": [0, -1, 2.5, "2", None, np.nan],
    "n_private": [0, -3, 1.0, "x"],
    "likelihood": ["poisson", None, 1],
    "hidden_layer_sizes": [(), (0,), (-1,), (4.5,), "4", None, [4, 0], np.array([4]), 0],
    "activation": ["sigmoid", None, len],
    "objective": ["kl", None],
    "mi_weight": [-1.0, np.nan, "1", np.inf],
    "mi_anneal_epochs": [-1, 1.5, 5],
    "priors": [[0.5, 0.2], [-0.5, 1.5], [np.nan, 1.0], "x", [1.0], [[0.5, 0.5]], "uniform"],
    "private_prior": ["gaussian", None],
    "blocks": ["all", None, 2],
    "batch_size": [0, -1, 2.0, None],
    "learning_rate_init": [0.0, -1e-3, np.nan, np.inf, "0.1"],
    "max_iter": [0, -1, 1.5, None, np.inf],
    "tol": [-1.0, np.nan, "x"],
    "n_iter_no_change": [0, 0.5],
    "early_stopping": ["yes", 2],
    "validation_fraction": [0.0, 1.0, -0.1, 0.95, 0.5],
    "max_grad_norm": [0.0, -1.0, np.inf, np.nan, 1e-12],
    "decoder_weight_decay": [-0.1, np.nan, "0.1"],
    "private_kl_warmup_start": [-1.0, np.nan, "10"],
    "n_importance_samples": [0, -1, 1.5],
    "device": ["gpu", "cuda:99", "", 0, "cpu:0"],
    "random_state": [-1, 2**40, "seed", 1.5],
    "verbose": [-1, "loud"],
    "warm_start": ["no", 2],
}
# The values of BAD_PARAMS that are valid: the fit must succeed with them.
VALID_PARAMS = {
    ("hidden_layer_sizes", "[4]"),
    ("mi_anneal_epochs", "5"),
    ("priors", "'uniform'"),
    ("validation_fraction", "0.95"),
    ("validation_fraction", "0.5"),
    ("max_grad_norm", "1e-12"),
    ("device", "'cpu:0'"),
}


@_settings(150)
@given(data=st.data())
def test_invalid_parameters(data):
    name = data.draw(st.sampled_from(sorted(BAD_PARAMS)))
    value = data.draw(st.sampled_from(BAD_PARAMS[name]))
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 3)), np.repeat(["a", "b"], 6)

    def call():
        model = CPVAE(**TINY).set_params(**{name: value}).fit(X, y)
        return model.predict_proba(X)

    key = (name, str(value.tolist()) if isinstance(value, np.ndarray) else repr(value))
    # Every error must name the parameter (its name, or its value as in "device='gpu'").
    problems = [] if key in VALID_PARAMS else [re.escape(name)]
    _outcome("set_params+fit", name, call, problems)
