"""Helpers every ``psample`` subcommand shares: checking output paths before any work, and
printing tables and results to a terminal or a pipe.

Contract: the ``check_*`` functions run before a subcommand samples anything, so that a bad
``--plot`` or ``--checkpoint`` path fails in a second instead of after the run; they raise
:class:`psample.errors.InvalidTuningError` naming the option and the path. The printing helpers
never raise on a closed stdout after :func:`silence_stdout`. :func:`print_summary` is what the
sampling subcommands (``run``, ``admm``) print after a run: the ArviZ summary and the
convergence check.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Callable

from psample.errors import InvalidTuningError

__all__ = [
    "PLOT_FORMATS",
    "SUMMARY_VALUES",
    "print_summary",
    "check_plot_path",
    "check_writable_file",
    "suffixed",
    "rounded",
    "pandas_display",
    "silence_stdout",
]

#: Image formats ``--plot`` writes (matplotlib's, without those needing LaTeX or raw buffers).
PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff")
#: Values (chains x draws x scalar components) a printed summary reads at most: a longer run
#: is summarised on every k-th draw, so the summary takes seconds whatever the run's length.
SUMMARY_VALUES = 1_000_000


def check_plot_path(path: str, option: str, formats=PLOT_FORMATS) -> None:
    """Fail before any work unless ``path`` names an image file of ``formats`` that can be written.

    Parameters
    ----------
    path
        The file name given on the command line.
    option
        The option that gave it (``"--plot"``), named in the error.
    formats
        The accepted file extensions, without the dot.

    Raises
    ------
    psample.errors.InvalidTuningError
        Naming ``option`` and ``path``: an unknown or missing file extension, matplotlib not
        installed, or a directory that is missing or read-only.
    """
    extension = Path(path).suffix.lower().lstrip(".")
    if extension not in formats:
        raise InvalidTuningError(
            f"{option} {path!r}: the file name must end in one of "
            f"{', '.join('.' + f for f in formats)} (the image format), got {('.' + extension) if extension else 'none'}"
        )
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InvalidTuningError(f"{option} {path!r} needs matplotlib: pip install matplotlib") from None
    check_writable_file(path, option)


def check_writable_file(path: str, option: str) -> None:
    """Fail before any work if ``path`` cannot be written (the directory is missing or read-only).

    An existing file is left as it was; a file this check had to create is removed again.

    Raises
    ------
    psample.errors.InvalidTuningError
        Naming ``option``, ``path`` and the operating system's reason.
    """
    p = Path(path)
    existed = p.exists()
    try:
        with open(p, "ab"):
            pass
    except OSError as exc:
        raise InvalidTuningError(f"{option} {path!r} cannot be written: {exc.strerror or exc}") from None
    if not existed:
        p.unlink()


def suffixed(path: str, suffix: str) -> str:
    """``path`` with ``suffix`` before its extension (``trace.png`` -> ``trace_rank.png``); no
    extension means ``.png``."""
    p = Path(path)
    return str(p.with_name(p.stem + suffix + (p.suffix or ".png")))


def rounded(summary):
    """An ArviZ summary table for printing: ESS as whole numbers, everything else to 3 decimals.

    ArviZ's automatic rounding would print an r_hat of 1.0088 as 1.01. An ESS ArviZ cannot
    compute (too few draws) shows ``<NA>``.
    """
    ess = [c for c in summary.columns if c.startswith("ess")]
    summary = summary.round(3)
    summary[ess] = summary[ess].round(0).astype("Int64")
    return summary


class pandas_display:
    """Context manager: print whole summary tables, not pandas' truncated view."""

    def __enter__(self):
        import pandas as pd

        self._ctx = pd.option_context("display.max_rows", 200, "display.max_columns", 20, "display.width", 200)
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush raises nothing more.

    Called once the reader of stdout went away (a broken pipe): what is left to say goes to stderr.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor behind sys.stdout
        pass


def print_summary(trace, advice: str, *, max_values: int = SUMMARY_VALUES, warned=(),
                  rewrite: Callable[[str], str] | None = None):  # fmt: skip
    """Print the ArviZ summary of ``trace`` and the convergence check's warning, if any.

    The summary (:func:`psample.diagnostics.summary`, :func:`rounded`, whole tables) reads every
    ``k``-th draw when the run holds more than ``max_values`` values
    (:func:`psample.diagnostics.thinned`; a line on stdout says so); the convergence check
    (:func:`psample.diagnostics.check_convergence`) reads every draw. Its warning, after the
    warnings ``warned`` the caller caught while sampling, goes to stderr as
    ``psample: warning: MESSAGE``; a DeprecationWarning is issued again instead, so that it
    stays one.

    Parameters
    ----------
    trace : psample.Trace
        The run, axes ``(chain, draw, ...)``, at least one draw.
    advice : str
        What to change if the chains have not mixed; it names the subcommand's options.
    max_values : int
        Values (chains x draws x scalar components) the summary reads at most.
    warned : sequence of warnings.WarningMessage
        Warnings caught before (while sampling), printed first.
    rewrite : callable, optional
        ``str -> str`` applied to each printed message (a library name into its option's).

    Returns
    -------
    (psample.Trace, int)
        The summarised trace (every ``k``-th draw) and ``k`` (1: the whole trace).
    """
    import psample.diagnostics

    shown, step = psample.diagnostics.thinned(trace, max_values)
    if step > 1:
        print(f"summary of every {step}th draw ({shown.num_draws:,} per chain), to keep it fast", flush=True)
    with pandas_display():
        print(rounded(psample.diagnostics.summary(shown, round_to="none")), flush=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        psample.diagnostics.check_convergence(trace, advice=advice)
    for warning in [*warned, *caught]:
        if issubclass(warning.category, DeprecationWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            continue
        message = str(warning.message)
        print(f"psample: warning: {rewrite(message) if rewrite else message}", file=sys.stderr)
    return shown, step
