"""The documentation site's sources against the package, without building the site.

The API reference (``docs/api.rst``) must list every public function and class, and every
``:doc:`` and ``:ref:`` role in a docstring must name a page or a label that the site
has; the Sphinx build (``.ci/run``) checks the rest with warnings as errors.
"""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import sklearn_cpvae

DOCS = Path(__file__).resolve().parents[1] / "docs"
ROLE = re.compile(r":(doc|ref):`(?:[^`<]*<([^`>]+)>|([^`<]+))`")
# MyST targets: "(label)=" lines and Pandoc-style "{#label}" heading ids; reST ".. _label:".
LABELS = (
    re.compile(r"^\(([\w-]+)\)=\s*$", re.M),
    re.compile(r"\{#([\w-]+)\}\s*$", re.M),
    re.compile(r"^\.\. _([\w-]+):\s*$", re.M),
)


def _modules():
    yield sklearn_cpvae
    for info in pkgutil.walk_packages(sklearn_cpvae.__path__, "sklearn_cpvae."):
        yield importlib.import_module(info.name)


def _public_modules():
    for module in _modules():
        parts = module.__name__.split(".")
        if hasattr(module, "__all__") and not any(p.startswith("_") for p in parts):
            yield module


def _docstrings():
    """(where, docstring) of every module, and of everything each module defines."""
    for module in _modules():
        yield module.__name__, inspect.getdoc(module) or ""
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(obj):
                yield f"{module.__name__}.{name}", inspect.getdoc(obj) or ""
                for attr, member in vars(obj).items():
                    if inspect.isfunction(member) or isinstance(member, property):
                        yield f"{module.__name__}.{name}.{attr}", inspect.getdoc(member) or ""
            elif inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", inspect.getdoc(obj) or ""


def _api_names():
    text = (DOCS / "api.rst").read_text()
    names, current = set(), None
    for line in text.splitlines():
        match = re.match(r"\.\. currentmodule:: (\S+)", line)
        if match:
            current = match.group(1)
        elif current and re.fullmatch(r"   [A-Za-z_]\w*", line):
            names.add(f"{current}.{line.strip()}")
    return names


def _site_labels():
    labels = set()
    for page in [*DOCS.glob("*.md"), *DOCS.glob("*.rst")]:
        for pattern in LABELS:
            labels.update(pattern.findall(page.read_text()))
    return labels


@pytest.mark.parametrize("module", list(_public_modules()), ids=lambda m: m.__name__)
def test_api_reference_lists_every_public_callable(module):
    listed = _api_names()
    public = {
        f"{module.__name__}.{name}"
        for name in module.__all__
        if callable(getattr(module, name)) and not name.startswith("_")
    }
    assert public - listed == set(), "add these to docs/api.rst"


def test_api_reference_names_exist():
    for qualified in _api_names():
        module, _, name = qualified.rpartition(".")
        assert hasattr(importlib.import_module(module), name), qualified


def test_docstring_cross_references_resolve():
    pages = {p.stem for p in [*DOCS.glob("*.md"), *DOCS.glob("*.rst")]}
    labels = _site_labels()
    unresolved = []
    for where, doc in _docstrings():
        for role, explicit, bare in ROLE.findall(doc):
            target = (explicit or bare).strip()
            if role == "doc" and target.lstrip("/") not in pages:
                unresolved.append((where, role, target))
            if role == "ref" and target not in labels:
                unresolved.append((where, role, target))
    assert unresolved == []


def test_cross_reference_check_sees_a_missing_page():
    assert ROLE.findall("see :doc:`the guide </nowhere>` and :ref:`x`") == [
        ("doc", "/nowhere", ""),
        ("ref", "", "x"),
    ]
    assert "nowhere" not in {p.stem for p in DOCS.glob("*.md")}


def test_docstrings_cite_the_site_not_repository_paths():
    """help() and the site are read without a checkout: docs/*.md paths lead nowhere."""
    repo_path = re.compile(r"(?<![\w/.])docs/[\w./-]+")  # not the docs/ of a URL
    found = [(where, m) for where, doc in _docstrings() for m in repo_path.findall(doc)]
    assert found == []
