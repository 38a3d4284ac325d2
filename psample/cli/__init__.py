"""The ``psample`` command line: one module per subcommand.

:mod:`~psample.cli.commands` holds the parser, the dispatch and the ``models`` and ``samplers``
lists; ``psample run`` is :mod:`~psample.cli.run`, ``psample evidence``
:mod:`~psample.cli.evidence`, ``psample admm`` :mod:`~psample.cli.admm`, ``psample fkc``
:mod:`~psample.cli.fkc` and ``psample graph`` :mod:`~psample.cli.graph`;
:mod:`~psample.cli.user_model` loads a user's NumPyro model (``--model FILE.py:FUNCTION``) and
its ``--data``, and :mod:`~psample.cli.common` has the helpers they share.

In psample 0.1 ``psample.cli`` was one module that also exported ``SAMPLERS``,
``check_plot_path``, ``check_writable_file`` and ``PLOT_FORMATS``; those names still work from
here for one release, with a ``DeprecationWarning`` naming their new module.
"""

from psample.cli.commands import main

__all__ = ["main"]

#: Names of the 0.1 module ``psample.cli`` -> the module that has them now.
_MOVED_NAMES = {
    "SAMPLERS": "psample.cli.run",
    "check_plot_path": "psample.cli.common",
    "check_writable_file": "psample.cli.common",
    "PLOT_FORMATS": "psample.cli.common",
}


def __getattr__(name):
    new = _MOVED_NAMES.get(name)
    if new is None:
        raise AttributeError(f"module 'psample.cli' has no attribute {name!r}")
    import importlib
    import warnings

    from psample.errors import user_stacklevel

    warnings.warn(
        f"psample.cli.{name} moved to {new}.{name}; the old path is removed in the next release",
        DeprecationWarning,
        stacklevel=user_stacklevel(),
    )
    return getattr(importlib.import_module(new), name)
