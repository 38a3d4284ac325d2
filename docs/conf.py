"""Sphinx configuration of psample's documentation site (``make docs``).

Choices, and why:

- **numpydoc** renders the docstrings (they are numpydoc: Parameters/Returns/... with shapes);
  **autosummary** writes one page per public name into ``api/generated/`` (git-ignored, made on
  every build from the ``__all__`` lists, so a new public name gets its page and a renamed one
  breaks the build where something still refers to it).
- **nitpicky** mode with ``-W``: every cross-reference must resolve. There is no intersphinx:
  a build must not depend on the network (an unreachable inventory is a warning, hence an error
  under ``-W``). References to third-party objects (jax, numpy, xarray, ...) are therefore listed
  in ``nitpick_ignore_regex`` below, by package; references to psample's own names are checked.
- **myst-parser** for the hand-written pages (Markdown, as the README they came from) and to
  include ``BENCHMARKS.md`` as it is; math is MathJax (client-side, no build cost).
- **sphinx-gallery** over ``examples/``: only the fast ``plot_*.py`` scripts run on every build;
  the long scripts are shown as code, and ``make docs-examples`` runs them all (minutes each),
  whose outputs later builds keep while a script is unchanged (see "About this site" in
  ``docs/getting_started.md``). Every script starts with JAX's defaults and runs with its own
  default arguments, a long script's output file going to ``docs/_build/gallery_files/``.
- No parallel build (``sphinx-build -j``): it warns about a name documented twice that a serial
  build accepts, and the gallery scripts run one after the other in the main process anyway.
- The command-line page and the signatures are generated at build time by ``_ext/psample_docs.py``
  (from argparse itself, via ``tools/readme.py``), so they cannot drift.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

os.environ.setdefault("MPLBACKEND", "Agg")
# The fast gallery scripts (run on every build) compile without LLVM's optimisations, as the fast
# test suite does (tests/conftest.py): their time is mostly the compilation of small programs, and
# what they show (estimates with their error bars, figures) does not depend on it beyond
# round-off. `make docs-examples` (PSAMPLE_GALLERY_PATTERN set: every script) compiles with XLA's
# defaults, as users do. Set before JAX starts its CPU backend, which reads XLA_FLAGS.
GALLERY_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if "PSAMPLE_GALLERY_PATTERN" not in os.environ and GALLERY_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {GALLERY_XLA_FLAGS}".strip()

import psample  # noqa: E402
import psample_docs  # noqa: E402

project = "psample"
author = "the psample authors"
copyright = "the psample authors, Apache-2.0"  # noqa: A001
release = version = getattr(psample, "__version__", "0.1.0")

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
    "psample_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
templates_path = ["_templates"]
exclude_patterns = ["_build", "**/README.rst", "_ext"]
root_doc = "index"

# --- API reference: one page per public name, written at build time ------------------------------
psample_docs.write_api_pages(DOCS / "api" / "generated")
autosummary_generate = True
autosummary_generate_overwrite = True
autosummary_imported_members = True
autodoc_typehints = "none"  # signatures without annotations: the docstrings give the types
autodoc_default_options = {"member-order": "bysource"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# --- Cross-references: every psample reference must resolve --------------------------------------
nitpicky = True
default_role = "py:obj"
_THIRD_PARTY = (
    "jax", "jaxlib", "jnp", "numpy", "np", "numpyro", "blackjax", "arviz", "arviz_stats", "az",
    "xarray", "xr", "optax", "networkx", "nx", "scipy", "pandas", "pd", "zarr", "matplotlib",
    "tqdm", "flax", "typing", "collections", "concurrent", "pathlib", "os", "enum", "dataclasses",
    "functools", "contextlib", "importlib", "sys", "warnings", "argparse", "inspect", "abc", "chex", "tensorflow_probability",
)
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(_THIRD_PARTY)})(\..*)?"),
    # Python builtins and typing names (no intersphinx inventory offline).
    (r"py:.*", r"(int|float|bool|str|bytes|tuple|list|dict|set|callable|Callable|None|object|type|"
               r"Exception|ValueError|TypeError|RuntimeError|KeyboardInterrupt|Warning|UserWarning|"
               r"DeprecationWarning|NamedTuple|Any|Sequence|Mapping|Iterable|Iterator|Path|PRNGKey|"
               r"Array|ArrayLike|PyTree|pytree|array|ndarray|optional|default|shape|dtype)"),
]

# --- Pages -------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# myst.header: BENCHMARKS.md is included as it is written; ref.citation: numpydoc's References
# sections list papers that the text need not cite inline.
# config.cache: sphinx-gallery's reset_argv is a function (the environment is rebuilt each time).
suppress_warnings = ["myst.header", "ref.citation", "config.cache"]

html_theme = "pydata_sphinx_theme"
html_title = "psample"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 8,
}
html_static_path: list[str] = []

# --- Gallery -----------------------------------------------------------------------------------
GALLERY_FILES = DOCS / "_build" / "gallery_files"


def gallery_argv(gallery_conf, script_vars):
    """Command-line arguments of a gallery script run by the build (sphinx-gallery's ``reset_argv``).

    None (the script's defaults), except the output path of a long script that writes a PNG
    (``--plot`` or ``--out``): sphinx-gallery runs scripts in ``examples/``, which must stay
    clean, so the file goes to ``docs/_build/gallery_files/``; the page shows the script's open
    matplotlib figures either way.
    """
    script = Path(script_vars["src_file"])
    text = script.read_text()
    for flag in ("--plot", "--out"):
        if f'add_argument("{flag}"' in text:
            GALLERY_FILES.mkdir(parents=True, exist_ok=True)
            return [flag, str(GALLERY_FILES / f"{script.stem}.png")]
    return []


def reset_jax(gallery_conf, fname):
    """Start every gallery script with JAX's defaults: a script may turn on 64-bit floats
    (``jax.config.update("jax_enable_x64", True)``), which must not leak into the next one."""
    import jax

    jax.config.update("jax_enable_x64", False)


sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Run the fast scripts (plot_*.py, seconds each); the long ones are shown as code, with the
    # outputs of their last run where `make docs-examples` ran them (PSAMPLE_GALLERY_PATTERN='.*'
    # and PSAMPLE_GALLERY_RERUN=1: every script, also those whose outputs are current).
    "filename_pattern": os.environ.get("PSAMPLE_GALLERY_PATTERN", r"/plot_"),
    "run_stale_examples": os.environ.get("PSAMPLE_GALLERY_RERUN", "0") == "1",
    "ignore_pattern": r"(__init__|_common)\.py",
    "plot_gallery": os.environ.get("PSAMPLE_GALLERY_RUN", "1") != "0",
    "download_all_examples": False,
    "remove_config_comments": True,
    "reset_argv": gallery_argv,
    "reset_modules": ("matplotlib", reset_jax),
    "matplotlib_animations": False,
    "within_subsection_order": "FileNameSortKey",
}
autodoc_inherit_docstrings = False  # constants and NamedTuple fields: never numpy's or tuple's docstrings
