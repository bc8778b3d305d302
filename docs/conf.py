"""Sphinx configuration of the sklearn_cpvae documentation site.

Build from the repository root (offline: nothing is fetched from the network)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The layout follows scikit-learn's: numpydoc docstrings, an autosummary API reference
with one page per public object, and a sphinx-gallery of examples executed at build time.
The Markdown pages of ``docs/`` are read by MyST.
"""

import os
import re
import sys
from pathlib import Path

from docutils import nodes

ROOT = Path(__file__).resolve().parents[1]
# Build against this checkout even when another copy of the package is installed.
sys.path.insert(0, str(ROOT))
# The gallery's networks are tiny: one thread is as fast and does not stall on shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import sklearn_cpvae  # noqa: E402

project = "sklearn-cpvae"
author = "sklearn_cpvae developers"
copyright = "sklearn_cpvae developers"
release = sklearn_cpvae.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb"]

# API reference: one generated page per object listed in api.rst.
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
# numpydoc renders the Parameters/Attributes sections; the class template lists methods.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# MyST: ``(label)=`` targets and ``{#id}`` heading ids become Sphinx labels, so the
# docstrings' :ref: roles reach sections of the Markdown pages.
myst_enable_extensions = ["attrs_block", "attrs_inline", "colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "examples" / "gallery")],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("sklearn_cpvae",),
    # Links from the examples' code to the API pages of this site only (no downloads).
    "reference_url": {"sklearn_cpvae": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "show_memory": False,
    "abort_on_example_error": True,
}

html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-cpvae {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # No external icons, fonts or analytics: the site opens from a local folder.
    "icon_links": [],
}
html_static_path = []
html_show_sourcelink = False

# Pages written by a benchmark script start at "###" (they are tables, without a title).
GENERATED_PAGES = {"performance_results": "Performance results (generated tables)"}
HEADING = re.compile(r"^(#{1,6})(\s)", re.MULTILINE)
# "## Title {#id}" (the Pandoc heading-id syntax the Markdown pages use) becomes a MyST
# target, so that :ref:`id` reaches the section.
HEADING_ID = re.compile(r"^(#{1,6} .*?)\s*\{#([A-Za-z][\w-]*)\}\s*$", re.MULTILINE)


def _title_generated_page(text, title):
    """The page with a title, its headings moved up so the highest is one level below."""
    levels = [len(m.group(1)) for m in HEADING.finditer(text)]
    shift = min(levels) - 2 if levels else 0
    if shift > 0:
        text = HEADING.sub(lambda m: "#" * (len(m.group(1)) - shift) + m.group(2), text)
    return f"# {title}\n\n{text}"


def _prepare_markdown(app, docname, source):
    if not str(app.env.doc2path(docname)).endswith(".md"):
        return
    text = source[0]
    if docname in GENERATED_PAGES:
        text = _title_generated_page(text, GENERATED_PAGES[docname])
    source[0] = HEADING_ID.sub(r"(\2)=\n\1", text)


# numpydoc type lines name fitted attributes bare, e.g. "shape (n_samples, n_features_in_)";
# reST would read the trailing underscore as a hyperlink reference.
BARE_ATTRIBUTE = re.compile(r"(?<![`\w])([A-Za-z]\w*_)(?=[,)])")


def _quote_attributes(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        if " : " in line and not line.lstrip().startswith((">>>", "...")):
            head, sep, spec = line.partition(" : ")
            lines[i] = head + sep + BARE_ATTRIBUTE.sub(r"``\1``", spec)


# The docstrings use scikit-learn's glossary (:term:`fit`); without network access there
# is no intersphinx inventory, so a glossary term resolves to scikit-learn's page.
SKLEARN_GLOSSARY = "https://scikit-learn.org/stable/glossary.html#term-"


# Methods inherited from scikit-learn (set_fit_request, ...) cite its user guide.
SKLEARN_LABELS = {"metadata_routing": "https://scikit-learn.org/stable/metadata_routing.html"}


def _sklearn_reference(app, env, node, contnode):
    if node.get("refdomain") != "std":
        return None
    target = node["reftarget"].strip()
    if node.get("reftype") == "term":
        uri = SKLEARN_GLOSSARY + target.lower().replace(" ", "-")
    elif node.get("reftype") == "ref" and target in SKLEARN_LABELS:
        uri = SKLEARN_LABELS[target]
    else:
        return None
    ref = nodes.reference("", "", internal=False, refuri=uri)
    ref += contnode
    return ref


def setup(app):
    app.connect("source-read", _prepare_markdown)
    # Before numpydoc (priority 500) turns the sections into reST.
    app.connect("autodoc-process-docstring", _quote_attributes, priority=400)
    app.connect("missing-reference", _sklearn_reference)
