"""The ``psample`` command line: one module per subcommand.

``psample run`` (:mod:`~psample.cli.main`, with ``models`` and ``samplers``),
``psample evidence`` (:mod:`~psample.cli.evidence`), ``psample fkc`` (:mod:`~psample.cli.fkc`)
and ``psample graph`` (:mod:`~psample.cli.graph`).
"""

from psample.cli.main import main

__all__ = ["main"]
