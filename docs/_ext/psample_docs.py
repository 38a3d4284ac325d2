"""Sphinx extension of psample's docs: the API listings, the command-line help and signatures.

- :func:`write_api_pages` writes one listing page per public module (``api/generated/*.rst``)
  from the module's ``__all__``, each with an ``autosummary`` that gives every name its page;
  run from ``conf.py`` before Sphinx looks for sources, so autosummary sees the listings.
- ``.. psample-cli:: ARGS`` inserts what ``psample ARGS`` prints (``--help`` or a listing),
  run in-process at a fixed width by ``tools/readme.py`` (the README's generator), so the
  command-line page is argparse's own text on every build.
- ``.. psample-signatures:: NAME, NAME`` inserts the call signatures of public entry points,
  also from ``tools/readme.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import types
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive

ROOT = Path(__file__).resolve().parents[2]

#: The public modules of the API reference, in the order of the reference's table of contents,
#: each with a one-line description.
MODULES = {
    "psample": "the top level: targets, runners, results and the chain samplers' constructors",
    "psample.base": "the contracts every runner consumes",
    "psample.targets": "targets from NumPyro models and log-densities",
    "psample.runtime": "the runners, written once around the contracts",
    "psample.mcmc": "chain samplers: polar slice, log-concave chains, ADMM",
    "psample.smc": "particle methods: tempered SMC, Feynman–Kac correctors",
    "psample.diffusion": "diffusion samplers for unnormalised densities",
    "psample.graphs": "Markov chains over graph homomorphisms, network observables",
    "psample.numpyro": "psample's chain samplers as NumPyro kernels",
    "psample.models": "the model zoo: targets with exact answers",
    "psample.diagnostics": "diagnostics that ArviZ does not have",
    "psample.errors": "errors and warnings",
}

#: Modules without an ``__all__``: their public modules are listed instead.
SUBMODULES = {
    "psample.runtime": ["chains", "particles", "trace", "particle_result", "driver", "warmup",
                        "checkpoint", "sharding", "observables", "checks", "plan", "datatree",
                        "compiled", "progress", "plotting"],
    "psample.mcmc": ["polar_slice", "logconcave_chain", "admm"],
}


def _tool():
    spec = importlib.util.spec_from_file_location("psample_readme_tool", ROOT / "tools" / "readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _listing(name: str, description: str) -> str:
    module = importlib.import_module(name)
    title = f"``{name}``: {description}"
    lines = [title, "=" * len(title), "", f".. automodule:: {name}", "   :no-members:",
             "   :no-index:", "", f".. currentmodule:: {name}", ""]
    public = getattr(module, "__all__", None)
    if public is None:
        mods = [f"{name}.{sub}" for sub in SUBMODULES.get(name, [])]
        objs = []
    else:
        mods = [f"{name}.{n}" for n in public if isinstance(getattr(module, n), types.ModuleType)]
        objs = [n for n in public if not isinstance(getattr(module, n), types.ModuleType)]
        # A submodule that has its own listing is linked there, not documented twice.
        mods = [m if m not in MODULES else None for m in mods]
        linked = [f"{name}.{n}" for n in public if f"{name}.{n}" in MODULES]
        mods = [m for m in mods if m]
        if linked:
            lines += ["Sections of their own: " + ", ".join(f":mod:`{m}`" for m in linked) + ".", ""]
    groups = {"Classes": [], "Functions": [], "Constants": []}
    for n in objs:
        obj = getattr(module, n)
        if inspect.isclass(obj):
            groups["Classes"].append(n)
        elif callable(obj):
            groups["Functions"].append(n)
        else:
            groups["Constants"].append(n)
    for heading, names in groups.items():
        if not names:
            continue
        lines += [heading, "-" * len(heading), "", ".. autosummary::", "   :toctree: .", ""]
        lines += [f"   {n}" for n in names] + [""]
    if mods:
        lines += ["Modules", "-------", ""] + [f"- :doc:`module-{m}`" for m in mods] + [""]
    return "\n".join(lines)


def all_modules() -> list[str]:
    """Every module of the installed package (``psample.models`` and ``.diagnostics`` included)."""
    import pkgutil

    import psample

    names = ["psample"]
    for info in pkgutil.walk_packages(psample.__path__, "psample."):
        if info.name.rsplit(".", 1)[-1] in ("__main__", "_deprecated") or ".models.data" in info.name:
            continue
        names.append(info.name)
    return sorted(names)


def defined_names(name: str) -> list[str]:
    """The public names a module's own source defines (functions, classes, constants), in order."""
    import ast

    module = importlib.import_module(name)
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return []
    found: list[str] = []
    for node in tree.body:
        targets = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            targets = [node.name]
        elif isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        for t in targets:
            if not t.startswith("_") and t not in found and t != "__all__" and hasattr(module, t):
                obj = getattr(module, t)
                if isinstance(obj, types.ModuleType):
                    continue
                if (inspect.isclass(obj) or inspect.isfunction(obj)) and not obj.__module__.startswith("psample"):
                    continue  # an alias of a third-party name (Array = jax.Array)
                found.append(t)
    for t in getattr(module, "__all__", []):  # re-exported public names, documented here too
        if t not in found and hasattr(module, t) and not isinstance(getattr(module, t), types.ModuleType):
            found.append(t)
    return found


def _module_page(name: str) -> str:
    title = f"``{name}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {name}", "   :no-members:", "",
             f".. currentmodule:: {name}", ""]
    names = defined_names(name)
    if names:
        lines += [".. autosummary::", "   :toctree: .", ""] + [f"   {n}" for n in names] + [""]
    return "\n".join(lines)


def write_api_pages(folder: Path) -> None:
    """One listing page per module of :data:`MODULES` and one page per module of the package
    (its own public names), in ``folder`` (stale pages removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.rst"):
        old.unlink()
    for name, description in MODULES.items():
        (folder / f"index-{name}.rst").write_text(_listing(name, description))
    modules = all_modules()
    for name in modules:
        (folder / f"module-{name}.rst").write_text(_module_page(name))
    toc = ["All modules", "===========", "",
           "Every module of the package, with the names its source defines: the implementation",
           "pages that the public names above are re-exported from.", "",
           ".. toctree::", "   :maxdepth: 1", ""] + [f"   module-{m}" for m in modules]
    (folder / "modules.rst").write_text("\n".join(toc) + "\n")


def gallery_argv(script_path, script_vars):  # sphinx-gallery's reset_argv: run with defaults
    return []


class CliDirective(Directive):
    """``.. psample-cli:: run --help``: what the command line prints, as a literal block."""

    has_content = False
    required_arguments = 1
    final_argument_whitespace = True

    def run(self):
        args = self.arguments[0].split()
        text = _tool().cli_output(args).rstrip("\n")
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class SignaturesDirective(Directive):
    """``.. psample-signatures:: psample.sample, psample.resume``: their call signatures."""

    has_content = False
    required_arguments = 1
    final_argument_whitespace = True

    def run(self):
        tool = _tool()
        names = [n.strip() for n in self.arguments[0].split(",") if n.strip()]
        text = "".join(tool.signature_text(n) for n in names).rstrip("\n")
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("psample-cli", CliDirective)
    app.add_directive("psample-signatures", SignaturesDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
