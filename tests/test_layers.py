"""The import graph: no loops (file or folder), no import from a lower layer to a higher one.

The layers (DESIGN.md §8), lowest first:

0. ground floor: ``psample.base``, ``errors``, ``rng`` and the deprecation shims;
1. ``psample.targets``, ``psample.schedules`` and ``psample.diagnostics`` (reads results);
2. ``psample.models`` (targets with exact answers; never a sampler);
3. the sampler kernels (``mcmc``, ``smc``, ``diffusion``, ``graphs``) and, beside them, the
   runtime; neither imports the other;
4. one-call conveniences that compose runtime and samplers (and the packages' ``__init__``);
5. the command line.

Every import counts, including those inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"psample": ROOT / "psample", "psample.models": ROOT / "models", "psample.diagnostics": ROOT / "diagnostics"}

GROUND = {"psample.base", "psample.errors", "psample.rng", "psample._deprecated"}
CONVENIENCES = {
    "psample.mcmc.logconcave_samples",
    "psample.graphs.estimate",
    "psample.diffusion.train",
    "psample.diffusion.trained",
    "psample.numpyro",
}
KERNEL_FOLDERS = ("psample.mcmc", "psample.smc", "psample.diffusion", "psample.graphs")


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if package == "psample" and name.startswith(("psample.models", "psample.diagnostics")):
                continue
            found[name] = path
    return found


MODULES = modules()


def imports(name: str) -> set[str]:
    """psample modules ``name`` imports (``from psample import x`` resolves to the module x)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("psample") and target != name:
                out.add(target)
    return out


GRAPH = {name: imports(name) for name in MODULES}


def layer(name: str) -> int:
    if name in GROUND:
        return 0
    if name in ("psample.targets", "psample.schedules") or name.startswith("psample.diagnostics"):
        return 1
    if name.startswith("psample.models"):
        return 2
    if name.startswith("psample.cli") or name == "psample":
        return 5
    if name in CONVENIENCES or (name in KERNEL_FOLDERS):  # a family's __init__ re-exports its conveniences
        return 4
    if name.startswith("psample.runtime") or name.startswith(KERNEL_FOLDERS):
        return 3
    raise AssertionError(f"{name} has no layer: add it to tests/test_layers.py")


def folder(name: str) -> str:
    parts = name.split(".")
    if name in ("psample.models", "psample.diagnostics") or name.startswith(("psample.models.", "psample.diagnostics.")):
        return ".".join(parts[:2])
    path = MODULES[name]
    return name if path.name != "__init__.py" and len(parts) == 2 else ".".join(parts[:2])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_every_module_has_a_layer():
    for name in MODULES:
        layer(name)


def test_no_module_level_import_loop():
    # The top-level facade psample/__init__ imports everything; leave it out as a source.
    graph = {name: deps - {"psample"} for name, deps in GRAPH.items() if name != "psample"}
    assert find_cycle(graph) is None, f"import loop: {' -> '.join(find_cycle(graph))}"


def test_no_folder_level_import_loop():
    graph: dict[str, set[str]] = {}
    for name, deps in GRAPH.items():
        if name == "psample":
            continue
        source = folder(name)
        graph.setdefault(source, set()).update(folder(d) for d in deps if folder(d) != source and d != "psample")
    assert find_cycle(graph) is None, f"folder loop: {' -> '.join(find_cycle(graph))}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name):
    for dep in GRAPH[name]:
        assert layer(dep) <= layer(name), f"{name} (layer {layer(name)}) imports {dep} (layer {layer(dep)})"
        if layer(name) == 3 and layer(dep) == 3:
            runtime = name.startswith("psample.runtime"), dep.startswith("psample.runtime")
            assert runtime[0] == runtime[1], f"{name} imports {dep}: the runtime and the samplers never import each other"
        if dep.startswith("psample.diagnostics"):
            assert layer(name) != 3 or name.startswith("psample.runtime"), f"sampler kernel {name} imports {dep}"
