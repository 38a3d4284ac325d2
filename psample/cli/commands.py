"""The ``psample`` command: its parser, the dispatch to one module per subcommand, and the lists.

``psample run`` samples a model with a chain sampler and prints ArviZ diagnostics
(:mod:`psample.cli.run`); ``psample admm`` runs distributed MCMC with ADMM on a model whose data
split into shards (:mod:`psample.cli.admm`); ``psample models`` and ``psample samplers`` list
what exists (here); ``psample graph`` estimates network observables with graph-homomorphism
chains (:mod:`psample.cli.graph`); ``psample evidence`` estimates a model's evidence with
tempered SMC or a diffusion sampler (:mod:`psample.cli.evidence`); ``psample fkc --demo
anneal|product|guidance`` runs Feynman–Kac correctors on analytic diffusion score models
(:mod:`psample.cli.fkc`). ``run``, ``evidence`` and ``admm`` also take the user's own NumPyro
model, ``--model FILE.py:FUNCTION --data data.json|csv|npz`` (:mod:`psample.cli.user_model`).

``psample samplers`` prints every sampler with the command that runs it, from one table,
:data:`SAMPLER_COMMANDS`.

Contract: :func:`main` returns the exit status (0 done, 2 a bad argument, reported on stderr as
``psample: error: ...`` before any long work, 130 interrupted); it never calls ``sys.exit``
itself, so tests and scripts call it in-process. Ctrl-C is answered within a chunk of the run,
with or without a progress bar.
"""

from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

from psample.cli.admm import add_admm_parser
from psample.cli.common import check_plot_path
from psample.cli.evidence import add_evidence_parser
from psample.cli.fkc import add_fkc_parser
from psample.cli.graph import add_graph_parser
from psample.cli.run import SAMPLERS, add_run_parser, run_run

__all__ = ["main", "SAMPLER_COMMANDS", "SamplerCommand"]

#: What ``psample --help`` says first.
DESCRIPTION = "The ``psample`` command line: sample a model and print ArviZ diagnostics."


class SamplerCommand(NamedTuple):
    """One line of ``psample samplers``: the command that runs the sampler, and what it is."""

    command: str
    description: str


#: Commands that run the samplers not of ``psample run`` (those are listed from its own table).
_OTHER_COMMANDS = {
    "admm": SamplerCommand(
        "psample admm",
        "distributed MCMC with ADMM (Tzikas et al. 2024): one data shard per agent, agents on a mesh's "
        "'shards' devices (Python: psample.admm)",
    ),
    "tempered_smc": SamplerCommand(
        "psample evidence --sampler tempered_smc",
        "tempered SMC with model evidence, rwm/hmc/polar-slice moves (Python: psample.smc.tempered_smc)",
    ),
    "reverse_diffusion": SamplerCommand(
        "psample evidence --sampler reverse_diffusion --model conjugate_gaussian",
        "training-free reverse diffusion, Monte Carlo scores, SMC-corrected log Z "
        "(Python: psample.diffusion.reverse_diffusion + psample.run_particles)",
    ),
    "dds": SamplerCommand(
        "psample evidence --sampler dds --model conjugate_gaussian",
        "Denoising Diffusion Sampler, learned (kl / log_variance / trajectory_balance), exact weights "
        "(Python: psample.diffusion.train_sampler(method='dds'))",
    ),
    "pis": SamplerCommand(
        "psample evidence --sampler pis --model conjugate_gaussian",
        "Path Integral Sampler, learned, exact weights (Python: psample.diffusion.train_sampler(method='pis'))",
    ),
    "glauber": SamplerCommand(
        "psample graph --sampler glauber --network karate",
        "Glauber chain over graph homomorphisms, any motif (Python: psample.graphs)",
    ),
    "pivot": SamplerCommand(
        "psample graph --sampler pivot --network karate",
        "pivot chain over graph homomorphisms, tree motifs, exact MH (Python: psample.graphs)",
    ),
    "fkc": SamplerCommand(
        "psample fkc --demo anneal",
        "Feynman-Kac correctors (Skreta et al. 2025): SMC annealing, product of experts and guidance over "
        "diffusion score models (demos anneal|product|guidance; Python: psample.smc.fkc)",
    ),
}

#: The built-in model a chain sampler's listed command names, where the default (eight schools,
#: non-centred) is not one it applies to.
_RUN_MODEL = {"logconcave_chain": " --model two_mode_mixture", "partially_noncentered_polar_slice": " --model radon"}

#: Every sampler of ``psample samplers``: name -> the command that runs it and its description;
#: the chain samplers of ``psample run`` first (from :data:`psample.cli.run.SAMPLERS`).
SAMPLER_COMMANDS: dict[str, SamplerCommand] = {
    **{
        name: SamplerCommand(
            f"psample run --sampler {name}" + _RUN_MODEL.get(name, ""),
            entry.description,
        )
        for name, entry in SAMPLERS.items()
    },
    **_OTHER_COMMANDS,
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="psample", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    sub.add_parser("models", help="list the built-in models")
    sub.add_parser("samplers", help="list the samplers and the command that runs each")
    add_admm_parser(sub)
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
    width = max(len(entry.command) for entry in SAMPLER_COMMANDS.values())
    names = max(len(name) for name in SAMPLER_COMMANDS)
    print(f"{'sampler':{names}s} {'command':{width}s} description")
    for name, entry in SAMPLER_COMMANDS.items():
        print(f"{name:{names}s} {entry.command:{width}s} {entry.description}")
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
    if args.command == "admm":
        from psample.cli.admm import run_admm

        commands["admm"] = run_admm
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


def __getattr__(name):
    if name == "OTHER_SAMPLERS":  # psample 0.2's table of the samplers outside `psample run`
        import warnings

        from psample.errors import user_stacklevel

        warnings.warn(
            "psample.cli.commands.OTHER_SAMPLERS is replaced by psample.cli.commands.SAMPLER_COMMANDS "
            "(name -> SamplerCommand(command, description)); the old name is removed in the next release",
            DeprecationWarning,
            stacklevel=user_stacklevel(),
        )
        return {k: v.description for k, v in _OTHER_COMMANDS.items()}
    raise AttributeError(f"module 'psample.cli.commands' has no attribute {name!r}")
