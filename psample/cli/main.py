"""The ``psample`` command line: sample a built-in model and print ArviZ diagnostics.

``psample run`` samples the non-centred eight-schools model with Gibbsian polar slice
sampling (4 chains) and prints the ArviZ summary; ``psample models`` and ``psample samplers``
list what exists; ``psample graph`` estimates network observables with graph-homomorphism
chains; ``psample fkc --demo anneal|product|guidance`` runs Feynman–Kac correctors on analytic
diffusion score models.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable, NamedTuple

from psample.cli.evidence import add_evidence_parser
from psample.cli.fkc import add_fkc_parser
from psample.cli.graph import add_graph_parser

__all__ = ["main", "SAMPLERS", "check_plot_path", "PLOT_FORMATS"]

#: Image formats ``--plot`` writes (matplotlib's, without those needing LaTeX or raw buffers).
PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff")
#: Values (chains x draws x scalar components) the printed summary reads at most: a longer run
#: is summarised on every k-th draw, so the summary takes seconds whatever the run's length.
SUMMARY_VALUES = 1_000_000


class SamplerEntry(NamedTuple):
    description: str
    build: Callable  # (target) -> blackjax.base.SamplingAlgorithm


def _polar_slice(target):
    import psample

    # Adaptive: `psample run` tunes center, scale and w during warm-up unless --no-adapt.
    return psample.polar_slice(target.logdensity_fn, w=target.hints.get("polar_slice_w", 1.0))


def _hit_and_run_slice(target):
    import blackjax

    return blackjax.slice_sampling(target.logdensity_fn, width=target.hints.get("slice_width", 1.0))


def _logconcave_chain(target):
    import psample
    from psample.errors import ModelError

    hints = target.hints.get("logconcave_chain")
    if hints is None:
        raise ModelError(
            f"logconcave_chain needs a noise scale sigma, and model {target.name!r} suggests none "
            "(models with exact smoothed scores do: two_mode_mixture)"
        )
    score = target.exact.get("smoothed_score")
    if score is not None:
        return psample.logconcave_chain(smoothed_score=score, **hints)
    return psample.logconcave_chain(target.logdensity_fn, **hints)


#: Samplers ``psample run`` can use on a log-density target, by CLI name.
SAMPLERS = {
    "polar_slice": SamplerEntry(
        "Gibbsian polar slice sampling (Schär, Habeck, Rudolf 2023), adapting centre, scale and w in warm-up; "
        "heavy tails, funnels",
        _polar_slice,
    ),
    "hit_and_run_slice": SamplerEntry(
        "BlackJAX hit-and-run uniform slice sampling (the paper's HRUSS baseline)", _hit_and_run_slice
    ),
    "logconcave_chain": SamplerEntry(
        "chain of log-concave Markov chains / walk-jump (Saremi, Park, Bach 2024); multimodal targets "
        "with smoothed scores (--model two_mode_mixture); draws are final jumps (thin = measurements)",
        _logconcave_chain,
    ),
}

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
    parser = argparse.ArgumentParser(prog="psample", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="sample a built-in model and print the ArviZ summary")
    run.add_argument("--model", default="eight_schools", help="model name (see `psample models`)")
    run.add_argument("--sampler", default="polar_slice", help="sampler name (see `psample samplers`)")
    run.add_argument("--chains", type=int, default=4, help="number of chains (default 4)")
    # With warm-up adaptation (the default), 4 x 1,000 draws after 500 warm-up steps give every
    # r_hat < 1.01 on eight schools for seeds 0-4 (max r_hat as printed: 1.006, 1.006, 1.004,
    # 1.005, 1.005, re-measured after the centre test and w balance of BENCHMARKS.md run E); 500 draws did not, after 500 warm-up steps (1.010-1.017) or after 1,000
    # (1.018 for seed 0). Measured with `psample run --seed S --warmup W --draws N`, float32, as
    # `psample run` runs; unadapted it needed 4 x 40,000 draws.
    run.add_argument(
        "--draws", type=int, default=None,
        help="draws per chain (default 1000; logconcave_chain: 200 final jumps)",
    )
    run.add_argument(
        "--warmup", type=int, default=500, help="warm-up (adaptation) steps per chain (default 500)"
    )
    run.add_argument("--thin", type=int, default=1, help="steps per kept draw (default 1)")
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--checkpoint", default=None, help="Zarr store to write every chunk to")
    run.add_argument(
        "--plot", default=None, metavar="FILE.png",
        help=f"write an ArviZ trace plot here, and rank plots to FILE_rank.png ({', '.join(PLOT_FORMATS)})",
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument(
        "--no-adapt", action="store_true", help="no warm-up adaptation: warm-up is plain burn-in"
    )

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


def _cmd_run(args) -> int:
    import jax

    import psample
    import psample.diagnostics
    import psample.models

    if args.sampler not in SAMPLERS:
        print(f"psample: unknown sampler {args.sampler!r}; known: {', '.join(SAMPLERS)}", file=sys.stderr)
        return 2
    if args.plot:
        check_plot_path(args.plot, "--plot")
        check_plot_path(_suffixed(args.plot, "_rank"), "--plot (rank plots)")
    target = psample.models.get(args.model)
    algorithm = SAMPLERS[args.sampler].build(target)
    thin, draws, warmup = args.thin, args.draws, args.warmup
    if args.sampler == "logconcave_chain":
        # One step is one measurement: keep only the final jump of each chain of measurements.
        thin = target.hints["logconcave_chain"]["num_measurements"] * args.thin
        draws = args.draws if args.draws_given else 200
        warmup = 0
    init_key, run_key = jax.random.split(jax.random.PRNGKey(args.seed))
    positions = target.initial_positions(init_key, args.chains)
    try:
        trace = psample.sample(
            algorithm,
            positions,
            run_key,
            draws,
            num_warmup=warmup,
            thin=thin,
            target=target,
            progress=not args.no_progress,
            checkpoint=args.checkpoint,
            adapt=not args.no_adapt,
            compute_convergence_checks=False,  # checked below, with this command's options as advice
        )
    except KeyboardInterrupt:
        print("interrupted before the first draw", file=sys.stderr)
        return 130
    if trace.num_draws == 0:  # Ctrl-C during warm-up: nothing to summarise
        where = f"; the checkpoint {args.checkpoint} holds it (psample.resume continues)" if args.checkpoint else ""
        print(f"interrupted during warm-up after {trace.num_steps} of {warmup} steps: no draws{where}", file=sys.stderr)
        return 130
    code = 130 if trace.interrupted else 0
    kept = f"{trace.num_chains} chains x {trace.num_draws:,} draws"
    where = f"; the checkpoint {args.checkpoint} holds them" if args.checkpoint else ""
    try:
        status = "interrupted" if trace.interrupted else "done"
        print(f"{target.name}: {args.sampler}, {trace.num_chains} chains x {trace.num_draws} draws ({status})", flush=True)
        if trace.interrupted:
            print(f"interrupted: {trace.num_draws:,} draws per chain kept{where} (Ctrl-C again skips the summary)",
                  flush=True)
        _print_summary(trace, args)
    except KeyboardInterrupt:
        print("summary skipped", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`psample run | head`, or Ctrl-C reaching the whole pipeline):
        # report on stderr what was kept, and let nothing more reach the closed pipe.
        _silence_stdout()
        print(f"psample: stdout was closed (broken pipe): {kept} kept{where}", file=sys.stderr)
        return code or 1
    return code


def _print_summary(trace, args) -> None:
    """The ArviZ summary (of every k-th draw on long runs), the convergence check and the plots."""
    import psample.diagnostics

    shown, step = psample.diagnostics.thinned(trace, SUMMARY_VALUES)
    if step > 1:
        print(f"summary of every {step}th draw ({shown.num_draws:,} per chain), to keep it fast", flush=True)
    with _pandas_display():
        print(_rounded(psample.diagnostics.summary(shown, round_to="none")), flush=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        psample.diagnostics.check_convergence(
            trace, advice="Draw more (--draws) or warm up longer (--warmup)." if args.sampler != "logconcave_chain"
            else "Draw more (--draws) or thin more (--thin).",
        )  # fmt: skip
    for warning in caught:
        print(f"psample: warning: {warning.message}", file=sys.stderr)
    if args.plot:
        rank_path = _suffixed(args.plot, "_rank")
        psample.diagnostics.plot_trace(shown, args.plot, kind="trace")
        psample.diagnostics.plot_trace(shown, rank_path, kind="rank")
        print(f"trace plot written to {args.plot}, rank plots to {rank_path}", flush=True)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush raises nothing more."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor behind sys.stdout
        pass


def check_plot_path(path: str, option: str, formats=PLOT_FORMATS) -> None:
    """Fail before any work unless ``path`` names an image file of ``formats`` that can be written.

    Raises
    ------
    psample.errors.InvalidTuningError
        Naming ``option`` and ``path``: an unknown or missing file extension, matplotlib not
        installed, or a directory that is missing or read-only.
    """
    from pathlib import Path

    from psample.errors import InvalidTuningError

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
    """Fail before any work if ``path`` cannot be written (the directory is missing or read-only)."""
    from pathlib import Path

    from psample.errors import InvalidTuningError

    p = Path(path)
    existed = p.exists()
    try:
        with open(p, "ab"):
            pass
    except OSError as exc:
        raise InvalidTuningError(f"{option} {path!r} cannot be written: {exc.strerror or exc}") from None
    if not existed:
        p.unlink()


def _rounded(summary):
    """ESS as whole numbers, everything else to 3 decimals (ArviZ's automatic rounding would
    print an r_hat of 1.0088 as 1.01). An ESS ArviZ cannot compute (too few draws) shows <NA>."""
    ess = [c for c in summary.columns if c.startswith("ess")]
    summary = summary.round(3)
    summary[ess] = summary[ess].round(0).astype("Int64")
    return summary


def _suffixed(path: str, suffix: str) -> str:
    from pathlib import Path

    p = Path(path)
    return str(p.with_name(p.stem + suffix + (p.suffix or ".png")))


class _pandas_display:
    """Print whole summary tables, not pandas' truncated view."""

    def __enter__(self):
        import pandas as pd

        self._ctx = pd.option_context("display.max_rows", 200, "display.max_columns", 20, "display.width", 200)
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def main(argv=None) -> int:
    """Entry point of the ``psample`` console script."""
    args = _build_parser().parse_args(argv)
    if args.command == "run":
        args.draws_given = args.draws is not None
        if args.draws is None:
            args.draws = 1000
    from psample.cli.evidence import run_evidence

    commands = {"run": _cmd_run, "models": _cmd_models, "samplers": _cmd_samplers, "evidence": run_evidence}
    if args.command == "graph":
        from psample.cli.graph import run_graph

        commands["graph"] = run_graph
    if args.command == "fkc":
        from psample.cli.fkc import run_fkc

        commands["fkc"] = run_fkc
    from psample.runtime.driver import interactive
    from psample.errors import PsampleError

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
