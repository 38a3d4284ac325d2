"""README.md and the documentation's Markdown pages tell the truth: generated blocks match the
code, the names they give exist, and their Python snippets run.

The long prose that README.md used to carry lives in ``docs/`` (the Sphinx site, ``make docs``);
its pages are checked here exactly as README.md is (:data:`PAGES`). The command-line help on
``docs/cli.md`` is generated at build time (the ``psample-cli`` directive of
``docs/_ext/psample_docs.py``), so it cannot drift; the test checks every subcommand has it.

- Every block between ``<!-- generated: ... -->`` and ``<!-- end generated -->`` equals what
  ``tools/readme.py`` makes from the code now (command-line help, the entry points' signatures),
  and every subcommand of ``psample`` has its ``--help`` block.
- Every fenced ``python`` block runs, as a user would run it (JAX's default 32-bit precision, a
  fresh namespace, a scratch working directory), with warnings as errors: any DeprecationWarning
  and any UserWarning (psample's ``ConvergenceWarning``, ``NumericalWarning``, ... included).

A block may be preceded by a marker comment ``<!-- test: ITEM; ITEM -->`` whose items are

- ``name=value, ...``: replace the keyword argument ``name=...`` in the block by ``name=value``
  (fast settings for a snippet that shows realistic sizes; every name must occur in the block);
- ``continues``: run after the previous python block, in one program (a snippet that builds on
  the one above it);
- ``heavy``: mark the block's test ``heavy`` (seconds of compilation);
- ``skip: REASON``: do not run it (a reason is required);
- ``allow: WARNING (REASON)``: let the block issue that warning of :mod:`psample.errors`, where
  the fast settings cause it (a reason is required).

Every block runs as a user pastes it into a fresh interpreter: JAX's defaults (32-bit, no state
left by the tests), its own namespace and scratch directory. To pay for the interpreter start and
the imports (jax, NumPyro, ArviZ) once rather than per block, the blocks of one
kind (README.md's ``heavy`` ones, the site's ``heavy`` ones, the others) run one after the other
in ONE interpreter, each in a fresh namespace and
working directory, with the warning filters set anew (:data:`BATCH`); each block's outcome is
reported with its page and line, and a failing block does not stop the others. A block that
changes the interpreter's global state (:data:`GLOBAL_STATE`: 64-bit mode, XLA flags, the
environment, NumPyro's device count) runs alone in its own interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import psample.errors
from tests.conftest import xla_flags

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: The files whose prose and Python blocks are checked: README.md, then the site's Markdown pages.
PAGES = [README, *sorted(DOCS.glob("*.md")), *sorted((DOCS / "families").glob("*.md"))]


def _tool():
    spec = importlib.util.spec_from_file_location("psample_readme_tool", ROOT / "tools" / "readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: A fenced block: a language (``python``, ``text``, ...) or a MyST directive (```` ```{name} args ````).
FENCE = re.compile(r"^```(?P<lang>[a-z]*|\{[^}\n]*\}[^\n]*)\n(?P<code>.*?)^```\n", re.S | re.M)
MARKER = re.compile(r"<!-- test: (?P<items>.*?) -->\n$")


def _blocks(path: Path):
    """``(path, line, code, items)`` of every python block, ``items`` parsed from its marker."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match["lang"] != "python":
            continue
        before = text[: match.start()]
        line = before.count("\n") + 1
        marker = MARKER.search(before)
        items = {"subs": {}, "continues": False, "heavy": False, "skip": None, "allow": []}
        if marker is not None and marker.end() == len(before):
            for item in (i.strip() for i in marker["items"].split(";")):
                if item in ("continues", "heavy"):
                    items[item] = True
                elif item.startswith("skip:") and item[5:].strip():
                    items["skip"] = item[5:].strip()
                elif (allow := re.fullmatch(r"allow: (\w+) \(.+\)", item)) is not None:
                    items["allow"].append(allow[1])
                elif re.fullmatch(r"\w+=[^,=]+(,\s*\w+=[^,=]+)*", item):
                    items["subs"].update(kv.strip().split("=", 1) for kv in item.split(","))
                else:
                    raise ValueError(f"{path.name} line {line}: bad test marker item {item!r}")
        found.append((path, line, match["code"], items))
    return found


BLOCKS = [block for page in PAGES for block in _blocks(page)]


def _substitute(code: str, subs: dict[str, str], line: int, path: Path = README) -> str:
    for name, value in subs.items():
        code, count = re.subn(rf"(?<![\w.]){name}\s*=\s*[^,)\n]+", f"{name}={value}", code)
        assert count, f"{path.name} line {line}: the test marker sets {name}=, which the block does not pass"
    return code


def test_generated_blocks_are_up_to_date():
    tool = _tool()
    text = README.read_text()
    new = tool.regenerate(text)
    assert new == text, (
        f"README.md differs from the code; regenerate it with: {tool.COMMAND}\n{tool.diff(text, new)}"
    )


def test_every_subcommand_has_its_help_in_the_docs():
    """``docs/cli.md`` shows ``psample --help`` and, for each subcommand, its help (or, for a
    listing, its output), generated at build time by the ``psample-cli`` directive."""
    tool = _tool()
    present = {"psample " + m for m in re.findall(r"^```\{psample-cli\} (.+)$", (DOCS / "cli.md").read_text(), re.M)}
    wanted = {"psample --help": ["psample --help"]}
    wanted |= {f"psample {c} --help": [f"psample {c} --help", f"psample {c}"] for c in tool.subcommands()}
    missing = [name for name, forms in wanted.items() if not present.intersection(forms)]
    assert not missing, (
        f"docs/cli.md shows no help for: {', '.join(missing)}; add a block ```{{psample-cli}} CMD --help``` for it"
    )


def test_layout_names_every_subpackage():
    """The Layout block (``docs/vocabulary.md``) names every folder that installs as a package
    (``name/`` at its depth)."""
    text = (DOCS / "vocabulary.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[: layout.index("```", layout.index("```text") + 3)]
    folders = [init.parent for top in ("psample", "models", "diagnostics") for init in (ROOT / top).rglob("__init__.py")]
    folders.append(ROOT / "models" / "data")
    missing = []
    for folder in folders:
        parts = folder.relative_to(ROOT).parts  # psample/mcmc/admm -> "    admm/" in the block
        if not re.search(rf"^{' ' * 2 * (len(parts) - 1)}{parts[-1]}/ ", layout, re.M):
            missing.append("/".join(parts))
    assert not missing, f"docs/vocabulary.md's Layout does not list: {', '.join(missing)}"


def test_readme_markers_are_well_formed():
    assert len(BLOCKS) >= 5
    for path, line, code, items in BLOCKS:
        for name in items["allow"]:
            assert issubclass(getattr(psample.errors, name, None) or type, Warning), f"{path.name} line {line}: {name}"
        if items["subs"]:
            _substitute(code, items["subs"], line, path)
        if items["continues"]:
            index = next(i for i, b in enumerate(BLOCKS) if b[0] == path and b[1] == line)
            assert index and BLOCKS[index - 1][0] == path, f"{path.name} line {line}: continues a block of another file"


#: Short names the README's prose uses, as in its snippets (``import psample.graphs as pg``, ...).
ALIASES = {"pg": "psample.graphs", "admm": "psample.mcmc.admm", "models": "psample.models"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_names_in_the_prose_exist(page):
    """Every ``psample.x.y`` (or ``pg.x``, ``admm.x``, ``models.x``) in inline code exists; a name
    reached only through a deprecation shim may appear only where its paragraph says so."""
    tool = _tool()
    prose = re.sub(r"^```.*?^```\n", "", page.read_text(), flags=re.S | re.M)
    missing = []
    for paragraph in prose.split("\n\n"):
        for span in re.findall(r"`([^`]+)`", paragraph):
            for match in re.finditer(r"(?<![\w./])((?:psample|pg|admm|models)\.[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?!\w*/)", span):
                head, _, rest = match[1].partition(".")
                name = f"{ALIASES.get(head, head)}.{rest}"
                if name.endswith(".py"):
                    continue  # a file (benchmarks/admm.py)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("error", DeprecationWarning)
                        tool.resolve(name)
                except DeprecationWarning:
                    if "DeprecationWarning" not in paragraph:
                        missing.append(f"{match[1]} (deprecated)")
                except (AttributeError, ImportError):
                    missing.append(match[1])
    assert not missing, f"{page.name} names what the code does not have: {', '.join(sorted(set(missing)))}"


def _before(path: Path, line: int) -> str:
    return "\n".join(path.read_text().splitlines()[:line])


#: A block whose code matches this changes the interpreter's global state: it runs alone.
GLOBAL_STATE = re.compile(r"jax_enable_x64|enable_x64|XLA_FLAGS|os\.environ|jax\.config\.update|set_host_device_count"
                          r"|set_platform|jax\.distributed")  # fmt: skip


def _group(index: int) -> str:
    """The interpreter block ``index`` runs in: ``heavy-readme`` (README.md's ``heavy`` blocks:
    the quick start), ``heavy`` (the site's), ``light`` or ``alone-<index>``."""
    path, line, code, items = BLOCKS[index]
    if GLOBAL_STATE.search(_program(index)):
        return f"alone-{index}"
    if items["heavy"]:
        return "heavy-readme" if path == README else "heavy"
    return "light"


def _heading(path: Path, line: int) -> str:
    heading = re.findall(r"^## (.+)$", _before(path, line), re.M)
    slug = re.sub(r"[^a-z0-9]+", "-", (heading[-1] if heading else "top").lower()).strip("-")[:40]
    prefix = "" if path == README else path.stem + "-"
    return f"{prefix}{slug}-line{line}"


def _params():
    """One test per interpreter: README.md's ``heavy`` blocks together (also marked ``ci``: CI
    runs them, so the quick start stays true), the site's ``heavy`` blocks together, the others
    together, each block that changes global state alone (its test id names the block)."""
    groups: dict[str, list[int]] = {}
    params = []
    for index, (path, line, code, items) in enumerate(BLOCKS):
        if items["skip"]:  # listed as skipped, with the page's reason
            params.append(pytest.param((index,), id=_heading(path, line), marks=pytest.mark.skip(reason=items["skip"])))
        else:
            groups.setdefault(_group(index), []).append(index)
    for name, indices in groups.items():
        marks = [pytest.mark.heavy] if any(BLOCKS[i][3]["heavy"] for i in indices) else []
        if marks and all(BLOCKS[i][0] == README for i in indices):
            marks.append(pytest.mark.ci)
        label = name if not name.startswith("alone-") else _heading(*BLOCKS[indices[0]][:2])
        params.append(pytest.param(tuple(indices), id=label, marks=marks))
    return params


def _program(index: int) -> str:
    """Block ``index`` as one program: after the block it continues (recursively), each block at
    its own line numbers so a traceback names the page's line."""
    path, line, code, items = BLOCKS[index]
    before = _program(index - 1) if items["continues"] else ""
    code = _substitute(code, items["subs"], line, path)
    offset = line - before.count("\n")
    return before + "\n" * max(offset, 1) + code


#: The program that runs blocks one after the other in one interpreter. It reads a JSON list of
#: ``{"label", "file", "code", "allow"}`` on stdin and, per block, in a fresh namespace and
#: scratch directory with fresh warning filters (psample's DeprecationWarnings and every
#: UserWarning as errors, but those ``allow`` names), runs the code and prints
#: ``BLOCK <label> OK`` or ``BLOCK <label> FAILED`` after the traceback (on stdout).
BATCH = r"""
import json, os, sys, traceback, warnings
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

blocks = json.load(sys.stdin)
scratch = os.getcwd()
for number, block in enumerate(blocks):
    os.chdir(os.path.join(scratch, str(number)))
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.simplefilter("error", DeprecationWarning)
            warnings.simplefilter("error", UserWarning)
            if block["allow"]:
                import psample.errors
                for name in block["allow"]:
                    warnings.simplefilter("ignore", getattr(psample.errors, name))
            exec(compile(block["code"], block["file"], "exec"), {"__name__": "__main__"})
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # an exception, or sys.exit(1) of the block
        if isinstance(error, SystemExit) and error.code in (None, 0):
            print(f"BLOCK {block['label']} OK", flush=True)
        else:
            traceback.print_exc(file=sys.stdout)
            print(f"BLOCK {block['label']} FAILED", flush=True)
    else:
        print(f"BLOCK {block['label']} OK", flush=True)
    finally:
        plt.close("all")
"""


def _run_blocks(indices, cwd: Path) -> None:
    """Run the blocks ``indices`` in one fresh interpreter, as a user runs each (:data:`BATCH`):
    JAX's defaults (no x64, no state left by other tests); fail naming every block that failed."""
    blocks = []
    for number, index in enumerate(indices):
        path, line, code, items = BLOCKS[index]
        (cwd / str(number)).mkdir()  # snippets write checkpoints and saved samplers: here
        label = f"{path.relative_to(ROOT)} line {line}"
        blocks.append({"label": label, "file": str(path), "code": _program(index), "allow": items["allow"]})
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "PYTHONWARNINGS")}
    env["XLA_FLAGS"] = xla_flags()
    done = subprocess.run([sys.executable, "-c", BATCH], input=json.dumps(blocks), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    failed = []
    output = done.stdout
    for block in blocks:
        ok, bad = f"BLOCK {block['label']} OK\n", f"BLOCK {block['label']} FAILED\n"
        if ok in output:
            output = output.split(ok, 1)[1]
        elif bad in output:
            report, output = output.split(bad, 1)
            failed.append(f"{block['label']}:\n{report[-4000:]}")
        else:  # the interpreter died in this block
            failed.append(f"{block['label']} (exit status {done.returncode}):\n{output[-2000:]}\n{done.stderr[-4000:]}")
            break
    assert not failed, "\n\n".join(failed)


@pytest.mark.parametrize("indices", _params())
def test_readme_python_blocks_run(indices, tmp_path):
    _run_blocks(indices, tmp_path)


def test_a_failing_block_is_named_and_the_next_runs_in_a_fresh_namespace(tmp_path, monkeypatch):
    """The batch runner itself: a block's UserWarning is an error, reported with its page and
    line; the next block still runs, in its own namespace and working directory."""
    fake = [
        (README, 10, "leak = 1\nopen('here.txt', 'w').close()\nimport warnings\nwarnings.warn('careful')\n", {}),
        (README, 20, "assert 'leak' not in globals()\nimport os\nassert not os.path.exists('here.txt')\n", {}),
        (README, 30, "import sys\nsys.exit(2)\n", {}),
        (README, 40, "import os\nos._exit(3)\n", {}),
        (README, 50, "print('never reached')\n", {}),
    ]
    items = {"subs": {}, "continues": False, "heavy": False, "skip": None, "allow": []}
    monkeypatch.setattr(sys.modules[__name__], "BLOCKS", [(p, line, code, dict(items)) for p, line, code, _ in fake])
    with pytest.raises(AssertionError) as failed:
        _run_blocks((0, 1, 2, 3, 4), tmp_path)
    message = str(failed.value)
    assert "README.md line 10:" in message and "UserWarning: careful" in message
    assert "README.md line 20" not in message  # ran, and passed
    assert "README.md line 30:" in message and "SystemExit: 2" in message
    assert "README.md line 40 (exit status 3)" in message and "line 50" not in message  # the interpreter ended there
