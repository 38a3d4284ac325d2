"""The user's own model on the command line: ``--model path/to/model.py:fn --data data.json``.

``--model`` names either a built-in model of :mod:`psample.models` or ``FILE.py:FUNCTION``, a
**NumPyro model** in a Python file (``FILE.py`` alone means a function named ``model``). The
file is imported with :mod:`importlib` from its path (its folder is not put on ``sys.path``),
and the function is wrapped by :func:`psample.from_numpyro` with the data as keyword
arguments, as the built-in NumPyro models are (eight schools, the regressions). A plain
log-density ``fn(x)`` is not taken here: it has no sites, no data and no prior/likelihood split
(``psample evidence`` with tempered SMC needs one); write it as a NumPyro model with one
``numpyro.factor`` site, or use the Python API (:func:`psample.from_logdensity`).

``--data`` gives the model's keyword arguments (:data:`DATA_RULE`):

- ``.json``: an object, each key one keyword argument; lists become NumPy arrays (integer
  arrays when every entry is an integer), numbers and strings stay as they are;
- ``.npz``: one keyword argument per array, by its name in the archive;
- ``.csv``: one keyword argument per column, named by the header row; a column whose every
  value is an integer becomes an integer array, any other numeric column a float array (an
  empty cell is NaN); a column that is not numeric is refused.

Contract: :func:`load_target` fails before any sampling with a :class:`psample.errors.ModelError`
(exit status 2 and a one-line ``psample: error: ...`` in the CLI) that names the problem: a
missing file or function, a file that does not import, data that cannot be read, data keys
the model does not take (named, with the ones it takes), a model that fails at its initial
point, a log-density that is not finite there.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import inspect
import json
from pathlib import Path

import numpy as np

from psample.errors import ModelError

__all__ = ["DATA_RULE", "MODEL_HELP", "is_model_file", "load_function", "load_data", "load_target"]

#: What ``--model`` accepts, for the help text of every command that takes it.
MODEL_HELP = (
    "a built-in model (see `psample models`) or your own NumPyro model as FILE.py:FUNCTION "
    "(FILE.py alone: a function named `model`), called with the --data keyword arguments"
)

#: How ``--data`` becomes keyword arguments, for the help text.
DATA_RULE = (
    "keyword arguments of a --model FILE.py:FUNCTION: data.json (an object; lists become arrays), "
    "data.npz (one argument per array name) or data.csv (one argument per column, named by the header "
    "row; integer columns become int arrays, other numeric columns float arrays)"
)

DATA_FORMATS = (".json", ".npz", ".csv")


def is_model_file(spec: str) -> bool:
    """Whether ``--model spec`` names a file (``path.py:fn``, ``path.py``) rather than a built-in model."""
    path = spec.rsplit(":", 1)[0] if ":" in spec else spec
    return path.endswith(".py") or "/" in spec or "\\" in spec


def _split(spec: str) -> tuple[str, str]:
    if ":" in spec and not spec.endswith(".py"):
        path, name = spec.rsplit(":", 1)
        if not name.isidentifier():
            raise ModelError(f"--model {spec!r}: {name!r} is not a Python function name (FILE.py:FUNCTION)")
        return path, name
    return spec, "model"


def load_function(spec: str):
    """Import ``FILE.py`` of ``spec`` (``FILE.py:FUNCTION``) from its path and return the function.

    Raises
    ------
    ModelError
        The file is missing or not a ``.py`` file, it fails to import (the exception's type and
        message), or it has no callable of that name (the message lists the functions it has).
    """
    path, name = _split(spec)
    file = Path(path)
    if file.suffix != ".py":
        raise ModelError(f"--model {spec!r}: expected FILE.py:FUNCTION (a Python file), got {path!r}")
    if not file.is_file():
        raise ModelError(f"--model {spec!r}: model file {path!r} not found")
    resolved = file.resolve()
    # A module name of its own per file, so that two files called model.py never share one.
    module_name = f"psample_user_model_{hashlib.sha1(str(resolved).encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(module_name, resolved)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file raises anything
        raise ModelError(f"--model {spec!r}: could not import {path!r}: {_one_line(exc)}") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        found = sorted(k for k, v in vars(module).items()
                       if inspect.isfunction(v) and v.__module__ == module_name)  # fmt: skip
        listed = ", ".join(found) if found else "none"
        raise ModelError(f"--model {spec!r}: {path!r} has no function {name!r} (functions defined there: {listed})")
    return fn


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _array(values, what: str):
    try:
        array = np.asarray(values)
    except ValueError as exc:  # ragged lists
        raise ModelError(f"{what}: not a rectangular array ({exc})") from None
    if array.dtype == object:
        raise ModelError(f"{what}: not a rectangular array of numbers")
    return array


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"--data {str(path)!r}: not valid JSON ({exc})") from None
    if not isinstance(content, dict):
        raise ModelError(f"--data {str(path)!r}: a JSON object of keyword arguments is needed, got {type(content).__name__}")
    return {k: _array(v, f"--data {str(path)!r}, key {k!r}") if isinstance(v, list) else v for k, v in content.items()}


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError) as exc:
        raise ModelError(f"--data {str(path)!r}: not a readable .npz archive ({exc})") from None


def _column(values: list[str], name: str, path: Path) -> np.ndarray:
    cells = [v.strip() for v in values]
    try:
        if all(c and float(c).is_integer() and "." not in c and "e" not in c.lower() for c in cells):
            return np.asarray([int(c) for c in cells])
    except ValueError:
        pass
    try:
        return np.asarray([float(c) if c else np.nan for c in cells])
    except ValueError:
        bad = next(c for c in cells if c and not _is_float(c))
        raise ModelError(f"--data {str(path)!r}: column {name!r} is not numeric (value {bad!r})") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _read_csv(path: Path) -> dict:
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if len(rows) < 2:
        raise ModelError(f"--data {str(path)!r}: a header row of column names and at least one data row are needed")
    header = [name.strip() for name in rows[0]]
    if len(set(header)) != len(header) or not all(header):
        raise ModelError(f"--data {str(path)!r}: the header's column names must be distinct and non-empty, got {header}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ModelError(f"--data {str(path)!r}: line {number} has {len(row)} values, the header {len(header)}")
    return {name: _column([row[i] for row in rows[1:]], name, path) for i, name in enumerate(header)}


def load_data(path: str | None) -> dict:
    """The keyword arguments in a ``--data`` file (:data:`DATA_RULE`); ``{}`` for ``None``.

    Raises
    ------
    ModelError
        The file is missing, of another format, or unreadable (the message says why).
    """
    if path is None:
        return {}
    file = Path(path)
    if file.suffix.lower() not in DATA_FORMATS:
        raise ModelError(f"--data {path!r}: the file name must end in {', '.join(DATA_FORMATS)}")
    if not file.is_file():
        raise ModelError(f"--data {path!r}: file not found")
    return {".json": _read_json, ".npz": _read_npz, ".csv": _read_csv}[file.suffix.lower()](file)


def check_keywords(fn, data: dict, spec: str) -> None:
    """Refuse data keys ``fn`` does not take, naming them and the ones it takes."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read: the model's own call will tell
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    takes = [n for n, p in parameters.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]  # fmt: skip
    unknown = [k for k in data if k not in takes]
    if unknown:
        raise ModelError(
            f"--model {spec!r}: the data has key(s) {', '.join(map(repr, unknown))} that the model does not take; "
            f"it takes: {', '.join(takes) if takes else 'no keyword arguments'}"
        )


def load_target(spec: str, data_path: str | None = None):
    """The :class:`psample.Target` of ``--model spec --data data_path``.

    A built-in model name gives :func:`psample.models.get` (``--data`` is then refused);
    ``FILE.py:FUNCTION`` gives :func:`psample.from_numpyro` of that function with the data as
    keyword arguments, checked as described in the module docstring.

    Returns
    -------
    target, model, data
        The target, the NumPyro model function (``None`` for a built-in model) and the keyword
        arguments read from ``data_path``.

    Raises
    ------
    ModelError
        One line naming the problem, before any sampling.
    """
    import psample
    import psample.models

    if not is_model_file(spec):
        if data_path is not None:
            raise ModelError(f"--data is for a model of your own (--model FILE.py:FUNCTION); {spec!r} is built in")
        return psample.models.get(spec), None, {}
    fn = load_function(spec)
    data = load_data(data_path)
    check_keywords(fn, data, spec)
    name = _split(spec)[1]
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:  # shown below unless the one-line error says it
            warnings.simplefilter("always")
            target = psample.from_numpyro(fn, **data)
    except ModelError as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        if "Cannot find valid initial parameters" in str(cause):
            raise ModelError(
                f"--model {spec!r}: the log-density of model {name!r} is not finite at its initial point "
                "(NumPyro found no point with a finite log-density and gradient): check the data against "
                "the supports of the model's distributions"
            ) from None
        raise ModelError(f"--model {spec!r}: model {name!r} fails at its initial point: {_one_line(cause)}") from None
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    import dataclasses

    return dataclasses.replace(target, name=name), fn, data
