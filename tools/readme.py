"""Regenerate the generated blocks of README.md from the code, so that the README cannot drift.

A generated block sits between two HTML comments and holds one fenced ``text`` block::

    <!-- generated: psample run --help -->
    ```text
    ...what `psample run --help` prints...
    ```
    <!-- end generated -->

The spec after ``generated:`` is one of

- ``psample ARGS...``: what the command line prints for ``ARGS`` (help or a listing such as
  ``psample models``), run in-process at a fixed width of :data:`COLUMNS` columns so the text does
  not depend on the terminal;
- ``signatures NAME, NAME, ...``: the call signature of each public entry point (a dotted path
  such as ``psample.sample`` or ``psample.diffusion.TrainedSampler.sample``) from
  :func:`inspect.signature`, without annotations, defaults as written in the source where their
  ``repr`` is not a plain literal, wrapped at :data:`COLUMNS` columns.

Hand-written prose stays outside the markers; everything between them is replaced.

Usage (from the repository root)::

    python tools/readme.py           # rewrite README.md in place (`make readme`)
    python tools/readme.py --check   # exit 1 and print a diff if README.md is out of date

``tests/test_readme.py`` runs the check in the fast suite.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import inspect
import io
import os
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Width of the generated text (argparse's help and the wrapped signatures).
COLUMNS = 100

#: One generated block: its opening marker, its body (replaced), its closing marker.
BLOCK = re.compile(r"(?P<open><!-- generated: (?P<spec>[^\n]*?) -->\n)(?P<body>.*?)(?P<close><!-- end generated -->)", re.S)

#: The command to run to regenerate, named in every complaint.
COMMAND = "make readme  (or: .venv/bin/python tools/readme.py)"


# ----------------------------------------------------------------------------------------------
# Command-line output


@contextlib.contextmanager
def _fixed_terminal():
    """argparse wraps at ``$COLUMNS`` (via :func:`shutil.get_terminal_size`); fix it, no colours."""
    saved = {name: os.environ.get(name) for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "PYTHON_COLORS")}
    os.environ.update(COLUMNS=str(COLUMNS), LINES="50", NO_COLOR="1", PYTHON_COLORS="0")
    os.environ.pop("FORCE_COLOR", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cli_output(args: list[str]) -> str:
    """What ``psample ARGS`` prints on stdout (in-process; ``--help`` exits through SystemExit)."""
    from psample.cli import main

    out = io.StringIO()
    with _fixed_terminal(), contextlib.redirect_stdout(out):
        try:
            status = main(args)
        except SystemExit as exc:
            status = exc.code
    if status not in (0, None):
        raise RuntimeError(f"`psample {' '.join(args)}` exited with status {status}")
    return out.getvalue()


def subcommands() -> list[str]:
    """The subcommands ``psample --help`` lists (``{run,models,...}`` in its usage line)."""
    usage = re.search(r"\{([a-z_,-]+)\}", cli_output(["--help"]))
    if usage is None:
        raise RuntimeError("`psample --help` lists no subcommands in its usage line")
    return usage.group(1).split(",")


# ----------------------------------------------------------------------------------------------
# Signatures


def resolve(dotted: str):
    """The object at a dotted path, as a user reaches it: attributes first, submodules when absent."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for k, name in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:k]))
    return obj


def _default_sources(function) -> dict[str, str]:
    """``{parameter: default as written}`` from the source of ``function`` (unwrapped)."""
    try:
        source = textwrap.dedent(inspect.getsource(inspect.unwrap(function)))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return {}
    node = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if node is None:
        return {}
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    return {a.arg: " ".join(ast.get_source_segment(source, d).split()) for a, d in pairs}


def _plain(value) -> bool:
    return value is None or type(value) in (bool, int, float, str)


def _annotation(annotation) -> str:
    if isinstance(annotation, str):
        return annotation.strip("'\"")
    return getattr(annotation, "__name__", repr(annotation))


def signature_text(dotted: str) -> str:
    """``dotted(arg, ..., *, key=default, ...) -> Return``, wrapped at :data:`COLUMNS`."""
    obj = resolve(dotted)
    signature = inspect.signature(obj)
    sources = _default_sources(obj)
    params = list(signature.parameters.values())
    if params and params[0].name in ("self", "cls") and "." in getattr(obj, "__qualname__", ""):
        params = params[1:]
    parts: list[str] = []
    star = False
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        if p.kind is p.VAR_POSITIONAL:
            star = True
            parts.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            default = repr(p.default) if _plain(p.default) else sources.get(p.name, repr(p.default))
            if " at 0x" in default:
                raise RuntimeError(f"{dotted}: the default of {p.name} has no stable text ({default})")
            parts.append(f"{p.name}={default}")
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY):
            parts.append("/")
    tail = ")"
    if signature.return_annotation is not signature.empty:
        tail += f" -> {_annotation(signature.return_annotation)}"
    head = f"{dotted}("
    indent = " " * 4
    lines, line = [], head
    for k, part in enumerate(parts):
        piece = part + ("," if k + 1 < len(parts) else tail)
        if line not in (head, indent) and len(line) + 1 + len(piece) > COLUMNS:
            lines.append(line)
            line = indent + piece
        else:
            line += ("" if line in (head, indent) else " ") + piece
    if not parts:
        line += tail
    lines.append(line)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# The README


def generate(spec: str) -> str:
    """The text of one generated block (without its fence)."""
    words = spec.split()
    if words and words[0] == "psample":
        return cli_output(words[1:])
    if words and words[0] == "signatures":
        names = [name.strip() for name in spec[len("signatures"):].split(",") if name.strip()]
        return "".join(signature_text(name) for name in names)
    raise ValueError(f"README.md: unknown generated block {spec!r} (use `psample ARGS` or `signatures NAME, ...`)")


def regenerate(text: str) -> str:
    """``text`` with every generated block replaced by a fresh one."""

    def block(match: re.Match) -> str:
        body = generate(match["spec"]).rstrip("\n")
        return f"{match['open']}```text\n{body}\n```\n{match['close']}"

    return BLOCK.sub(block, text)


def specs(text: str) -> list[str]:
    return [m["spec"] for m in BLOCK.finditer(text)]


def diff(old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "README.md", "regenerated"))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv not in ([], ["--check"]):
        print("usage: python tools/readme.py [--check]", file=sys.stderr)
        return 2
    old = README.read_text()
    new = regenerate(old)
    if argv == ["--check"]:
        if new != old:
            print(diff(old, new))
            print(f"README.md is out of date; regenerate it with: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if new != old:
        README.write_text(new)
        print(f"README.md: {len(specs(old))} generated blocks, rewritten")
    else:
        print(f"README.md: {len(specs(old))} generated blocks, up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
