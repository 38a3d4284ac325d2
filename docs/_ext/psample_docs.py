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


@__import__("functools").cache
def all_modules() -> list[str]:
    """Every module of the installed package (``psample.models`` and ``.diagnostics`` included)."""
    import pkgutil

    import psample

    import psample.diagnostics
    import psample.models

    names = ["psample", "psample.models", "psample.diagnostics"]
    for package in (psample, psample.models, psample.diagnostics):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.rsplit(".", 1)[-1] in ("__main__", "_deprecated") or ".models.data" in info.name:
                continue
            if info.name not in names:
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


def _lookup(path: str):
    """The object at a dotted path (modules imported as needed), or None."""
    parts = path.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        try:
            for attr in parts[k:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _canonical(obj, path: str) -> list[str]:
    names = []
    if isinstance(obj, types.ModuleType):
        names.append(obj.__name__)
    qualname = getattr(obj, "__qualname__", None)
    module = getattr(obj, "__module__", None)
    if isinstance(qualname, str) and isinstance(module, str):
        names.append(f"{module}.{qualname}")
    owner, _, attr = path.rpartition(".")
    if owner:  # a constant: documented under the module that defines (or re-exports) it
        for other in all_modules():
            mod = importlib.import_module(other)
            if getattr(mod, attr, None) is obj and not isinstance(obj, types.ModuleType):
                names.append(f"{other}.{attr}")
    return names


def resolve_by_import(app, env, node, contnode):
    """Resolve a short or re-exported Python reference the way Python would.

    A docstring of module ``m`` may write ``:class:`Network``` for a class that ``m`` imports
    from ``psample.graphs.network``; Sphinx looks for ``m.Network`` only. This handler imports
    ``m``, follows the name to the object, and links the page that documents the object under
    its defining module. A name that does not exist stays a warning (a broken reference).
    References to private helpers (a component starting with ``_``) have no page by design:
    they are shown as code, without a link.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    if any(part.startswith("_") and not part.startswith("__") for part in target.split(".")):
        return contnode
    module = node.get("py:module") or ""
    cls = node.get("py:class") or ""
    candidates = []
    if module and cls:
        candidates.append(f"{module}.{cls}.{target}")
    if module:
        candidates.append(f"{module}.{target}")
        # a method or attribute of the class that a module-level docstring names (Class.attr)
    # A docstring shown on the page of a re-exported name (psample.smc.fkc_anneal) refers to names
    # of the module that defines it (psample.smc.fkc).
    page = node["refdoc"].rsplit("/", 1)[-1]
    documented = _lookup(page) if page.startswith("psample.") else None
    defining = getattr(documented, "__module__", None)
    if isinstance(defining, str):
        candidates.append(f"{defining}.{target}")
    candidates.append(target)
    domain = env.get_domain("py")
    from sphinx.util.nodes import make_refnode

    def link(name):
        entry = domain.objects[name]
        return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name)

    for path in candidates:
        obj = _lookup(path)
        if obj is None:
            continue
        for name in [path, *_canonical(obj, path)]:
            if name in domain.objects:
                return link(name)
    # A name the module does not import at run time (only for type checking): accept it when every
    # documented object of that name is one and the same object; otherwise it is ambiguous.
    matches = [name for name in domain.objects if name.endswith("." + target)]
    objects = {id(_lookup(name)) for name in matches}
    if matches and len(objects) == 1 and _lookup(matches[0]) is not None:
        obj = _lookup(matches[0])
        canonical = [n for n in _canonical(obj, matches[0]) if n in domain.objects]
        return link(canonical[0] if canonical else sorted(matches, key=len)[0])
    return None


def drop_type_docstring(app, what, name, obj, options, lines):
    """A constant has no docstring of its own: do not show its type's (numpy's ``ndarray``...)."""
    if what not in ("data", "attribute") or inspect.isclass(obj) or callable(obj):
        return
    first = next((line.strip() for line in lines if line.strip()), None)
    for doc in (getattr(obj, "__doc__", None), inspect.getdoc(type(obj))):
        head = next((line.strip() for line in (doc or "").splitlines() if line.strip()), None)
        if first is not None and head is not None and first == head:
            lines.clear()
            return


def setup(app):
    app.connect("missing-reference", resolve_by_import)
    app.connect("autodoc-process-docstring", drop_type_docstring, priority=400)
    app.add_directive("psample-cli", CliDirective)
    app.add_directive("psample-signatures", SignaturesDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
