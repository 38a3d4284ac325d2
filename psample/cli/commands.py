"""The ``psample`` command: its parser, the dispatch to one module per subcommand, and the lists.

``psample run`` samples a built-in model with a chain sampler and prints ArviZ diagnostics
(:mod:`psample.cli.run`); ``psample models`` and ``psample samplers`` list what exists (here);
``psample graph`` estimates network observables with graph-homomorphism chains
(:mod:`psample.cli.graph`); ``psample evidence`` estimates a model's evidence with tempered SMC
(:mod:`psample.cli.evidence`); ``psample fkc --demo anneal|product|guidance`` runs Feynman–Kac
correctors on analytic diffusion score models (:mod:`psample.cli.fkc`).

Contract: :func:`main` returns the exit status (0 done, 2 a bad argument, reported on stderr as
``psample: error: ...`` before any long work, 130 interrupted); it never calls ``sys.exit``
itself, so tests and scripts call it in-process. Ctrl-C is answered within a chunk of the run,
with or without a progress bar.
"""

from __future__ import annotations

import argparse
import sys

from psample.cli.common import check_plot_path
from psample.cli.evidence import add_evidence_parser
from psample.cli.fkc import add_fkc_parser
from psample.cli.graph import add_graph_parser
from psample.cli.run import SAMPLERS, add_run_parser, run_run

__all__ = ["main", "OTHER_SAMPLERS"]

#: What ``psample --help`` says first.
DESCRIPTION = "The ``psample`` command line: sample a built-in model and print ArviZ diagnostics."

#: Samplers over other kinds of target, listed by ``psample samplers``.
OTHER_SAMPLERS = {
    "glauber": "Glauber chain over graph homomorphisms, any motif (use `psample graph --sampler glauber`)",
    "pivot": "pivot chain over graph homomorphisms, tree motifs, exact MH (use `psample graph`)",
    "tempered_smc": "tempered SMC with model evidence, rwm/hmc/polar-slice moves (use `psample evidence`)",
    "admm": "distributed MCMC with ADMM (Tzikas et al. 2024): one data shard per agent, agents on a mesh's "
    "'shards' devices (Python API: psample.admm)",
    "fkc": "Feynman-Kac correctors (Skreta et al. 2025): SMC annealing, product of experts and guidance over "
    "diffusion score models (psample.smc.fkc; demos: `psample fkc --demo anneal|product|guidance`)",
    "reverse_diffusion": "training-free reverse diffusion, Monte Carlo scores, SMC-corrected log Z "
    "(Python: psample.diffusion.reverse_diffusion + psample.run_particles)",
    "dds": "Denoising Diffusion Sampler, learned (kl / log_variance / trajectory_balance), exact weights "
    "(Python: psample.diffusion.train_sampler(method='dds'))",
    "pis": "Path Integral Sampler, learned, exact weights (Python: psample.diffusion.train_sampler(method='pis'))",
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="psample", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    sub.add_parser("models", help="list the built-in models")
    sub.add_parser("samplers", help="list the samplers")
    add_graph_parser(sub)
    add_evidence_parser(sub)
    add_fkc_parser(sub)
    return parser


def _cmd_models(_args) -> int:
    import psample.models

    for name, description in psample.models.describe().items():
        print(f"{name:28s} {description}")
    return 0


def _cmd_samplers(_args) -> int:
    for name, entry in SAMPLERS.items():
        print(f"{name:28s} {entry.description}")
    for name, description in OTHER_SAMPLERS.items():
        print(f"{name:28s} {description}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``psample`` console script.

    Parameters
    ----------
    argv
        The arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status.
    """
    args = _build_parser().parse_args(argv)
    from psample.cli.evidence import run_evidence

    commands = {"run": run_run, "models": _cmd_models, "samplers": _cmd_samplers, "evidence": run_evidence}
    if args.command == "graph":
        from psample.cli.graph import run_graph

        commands["graph"] = run_graph
    if args.command == "fkc":
        from psample.cli.fkc import run_fkc

        commands["fkc"] = run_fkc
    from psample.errors import PsampleError
    from psample.runtime.driver import interactive

    try:
        if args.command in ("evidence", "fkc") and args.plot:  # `run` and `graph` check their own
            check_plot_path(args.plot, "--plot")
        with interactive():  # chunks sized in time even with --no-progress: Ctrl-C answers at once
            return commands[args.command](args)
    except (PsampleError, ValueError) as exc:
        print(f"psample: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
