"""Errors and warnings psample raises on purpose.

Bad input raises before any long work starts: every such error is a ``ValueError`` or
``TypeError`` subclass whose message names the offending argument and its value, so a user can
fix the call without reading the source. :class:`RunError` is the one error raised during a
run: it carries what was drawn before the failure. Warnings (:class:`NumericalWarning`) report
runs that finished but whose results need a second look.
"""

from __future__ import annotations

import numbers
import os
import sys

__all__ = [
    "user_stacklevel",
    "PsampleError",
    "InvalidTuningError",
    "ShapeError",
    "DtypeError",
    "InitialPointError",
    "ModelError",
    "CheckpointError",
    "NetworkError",
    "MotifError",
    "RunError",
    "NonFiniteError",
    "NumericalWarning",
    "UnreliableErrorWarning",
    "ConvergenceWarning",
    "check_positive",
    "check_positive_int",
]


class PsampleError(Exception):
    """Base class of every error psample raises on purpose."""


class InvalidTuningError(PsampleError, ValueError):
    """A tuning or run-length value is out of range (``w <= 0``, ``thin < 1``, ...)."""


class ShapeError(PsampleError, ValueError):
    """Positions lack a chain axis, or their shapes disagree across leaves or with the target."""


class DtypeError(PsampleError, TypeError):
    """Positions (or another argument) have a dtype the sampler cannot use (integer, complex, float16)."""


class InitialPointError(PsampleError, ValueError):
    """The log-density (or its gradient) is not finite at some chain's initial point."""


class ModelError(PsampleError, ValueError):
    """A model could not be built (bad arguments, unknown name) or initialised by NumPyro."""


class CheckpointError(PsampleError, ValueError):
    """A checkpoint path holds another run, or is not a psample checkpoint."""


class NetworkError(PsampleError, ValueError):
    """A network is empty, has no edge, negative weights, or invalid node weights."""


class MotifError(PsampleError, ValueError):
    """A motif is not a tree where a tree is needed, or exceeds a size cap."""


class RunError(PsampleError, RuntimeError):
    """A run failed after it started (e.g. the log-density raised in a host callback).

    Nothing drawn before the failure is lost: ``error.trace`` (chain runs) or ``error.result``
    (any run through the chunk driver) holds the completed chunks, and a checkpointed run can
    be resumed. The original exception is ``error.__cause__``.
    """

    def __init__(self, message: str, *, result=None, trace=None):
        super().__init__(message)
        self.result = result
        self.trace = trace


class NonFiniteError(RunError, FloatingPointError):
    """A run met non-finite values where no answer can stand (e.g. every weight of a population).

    Raised at the end of a run, with what was computed attached (``error.result``), so nothing
    is lost; the message names the function that returned the values and how many there were.
    """


class NumericalWarning(UserWarning):
    """A run finished, but some steps met NaN log-densities (or similar numerical trouble)."""


class UnreliableErrorWarning(UserWarning):
    """A Monte Carlo standard error is unreliable (e.g. heavy-tailed terms: Pareto k-hat too high)."""


class ConvergenceWarning(UserWarning):
    """Chains have not mixed: rank-normalised R-hat above 1.01 or bulk/tail ESS below 100 per chain.

    Raised once at the end of a chain run (as Stan, NumPyro and PyMC warn), naming the
    variables and ArviZ's numbers.
    """


def check_positive(name: str, value, *, error=InvalidTuningError) -> float:
    """Return ``float(value)`` if it is a finite number > 0, else raise ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise error(f"{name} must be a positive number, got {value!r}") from None
    value = float(value)
    if not (value > 0 and value < float("inf")):
        raise error(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_positive_int(name: str, value, *, minimum: int = 1, error=InvalidTuningError) -> int:
    """Return ``int(value)`` if it is an integer >= ``minimum``, else raise ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_flat_indices(name: str, indices, size: int, *, minimum: int = 1):
    """Return ``indices`` as a 1-d int array if they are ``>= minimum`` distinct flat indices in
    ``[0, size)``, else raise :class:`ShapeError` naming ``name``."""
    import numpy as np

    idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
    if idx.ndim != 1 or idx.size < minimum or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ShapeError(f"{name} must be a 1-d sequence of at least {minimum} integer flat indices, got {indices!r}")
    if len(set(idx.tolist())) != idx.size or idx.min() < 0 or idx.max() >= size:
        raise ShapeError(f"{name} must hold distinct indices in [0, {size}), got {idx.tolist()}")
    return idx


_PSAMPLE_DIRS = tuple(
    os.path.join(root, "")
    for root in (
        os.path.dirname(os.path.abspath(__file__)),  # psample/ (models/ and diagnostics/ inside it when installed)
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"),  # source tree
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "diagnostics"),
    )
)


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a ``warnings.warn`` point at the first caller outside psample.

    Call it as the argument of ``warnings.warn``: psample's own frames (decorators, helpers,
    runners, module ``__getattr__`` and import hooks) are skipped, so the warning names the user's
    line however deep psample called. importlib's frames are passed over without counting them,
    as ``warnings`` itself skips them.
    """
    frame, level = sys._getframe(1), 1  # level 1: the function that calls warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(_PSAMPLE_DIRS):
        frame, level = frame.f_back, level + 1
        while frame is not None and _is_importlib(frame.f_code.co_filename):
            frame = frame.f_back
    return level


def _is_importlib(filename: str) -> bool:
    return "importlib" in filename and "_bootstrap" in filename
