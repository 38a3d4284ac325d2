"""Old public names of psample 0.1 that keep working for one release, with a ``DeprecationWarning``.

Two kinds moved in the one-library reorganisation:

- modules (:data:`MOVED_MODULES`): ``import psample.run`` imports :mod:`psample.runtime.chains`
  under its old name, through a finder on ``sys.meta_path``;
- constructors named like their modules (:func:`deprecate_calling`): ``psample.smc.tempered``
  is the module again, and calling it calls ``psample.smc.tempered_smc`` with a warning.

Everything here goes in the next release.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

from psample.errors import user_stacklevel

__all__ = ["MOVED_MODULES", "install", "deprecate_calling", "renamed_keywords", "warn"]

#: Old module path -> new module path.
MOVED_MODULES = {
    "psample.driver": "psample.runtime.driver",
    "psample.run": "psample.runtime.chains",
    "psample.particles": "psample.runtime.particles",
    "psample.checkpoint": "psample.runtime.checkpoint",
    "psample.trace": "psample.runtime.trace",
    "psample.checks": "psample.runtime.checks",
    "psample.adaptation": "psample.runtime.warmup",
    "psample.observables": "psample.runtime.observables",
    "psample.evidence": "psample.cli.evidence",
    "psample.fkc_demo": "psample.cli.fkc",
    "psample.graphs.cli": "psample.cli.graph",
    "psample.logconcave": "psample.mcmc.logconcave_samples",
    "psample.diffusion.schedules": "psample.schedules",
}


def _warn_moved(old: str, new: str) -> None:
    warnings.warn(
        f"{old} moved to {new}; the old path is removed in the next release",
        DeprecationWarning,
        stacklevel=user_stacklevel(),
    )


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        return None  # an empty module; exec_module swaps in the real one

    def exec_module(self, module):
        _warn_moved(module.__name__, self.new)
        # The import system returns whatever sys.modules holds under the old name after this.
        sys.modules[module.__name__] = importlib.import_module(self.new)


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(new))


def install() -> None:
    """Put the finder of moved modules on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())


def moved_attribute(package: str, name: str):
    """``package.name`` for a module that moved out of ``package`` (module ``__getattr__``)."""
    old = f"{package}.{name}"
    if old not in MOVED_MODULES:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    _warn_moved(old, MOVED_MODULES[old])
    return importlib.import_module(MOVED_MODULES[old])


def deprecate_calling(module: types.ModuleType, replacement: str, new_path: str) -> None:
    """Make ``module`` callable as the constructor of the same name was: it calls ``replacement``."""

    class _CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            warnings.warn(
                f"calling {module.__name__}(...) is deprecated: the module is no longer a function; "
                f"call {new_path}(...) (removed in the next release)",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(self, replacement)(*args, **kwargs)

    module.__class__ = _CallableModule


def warn(message: str) -> None:
    """A ``DeprecationWarning`` attributed to the user's code (psample's own frames skipped)."""
    warnings.warn(f"{message} (removed in the next release)", DeprecationWarning, stacklevel=user_stacklevel())


def renamed_keywords(**renames: str):
    """Decorator: accept psample 0.1 keyword names (``old="new"``) with a DeprecationWarning.

    A call that passes both the old and the new name raises ``TypeError``.
    """

    def decorate(fn):
        name = fn.__qualname__

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{name}() got both {old}= (deprecated) and {new}=; pass {new}= only")
                    warn(f"{name}({old}=...) is deprecated: it is now {new}=")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
