"""``psample run``: sample a model with a chain sampler and print ArviZ diagnostics.

The command builds a target of :mod:`psample.models` (by default the non-centred eight-schools
model), or of the user's own NumPyro model (``--model FILE.py:FUNCTION --data data.json|csv|npz``,
:mod:`psample.cli.user_model`), builds a sampler of :data:`SAMPLERS` on it, runs :func:`psample.sample` (4 chains, 500
warm-up steps that adapt the sampler where it can adapt, 1,000 draws) and prints the ArviZ
summary, then the convergence check (rank-normalised R-hat, bulk and tail ESS), whose advice
names this command's options. ``--plot`` writes a trace plot and rank plots
(:func:`psample.cli.plots.plot_run`) and prints the line of the rank plots' uniformity test
(which components fail it), ``--checkpoint`` a Zarr store that :func:`psample.resume` continues.

Contract: exit status 0 when done, 2 for a bad argument (before any sampling), 130 when
interrupted (Ctrl-C keeps the draws so far and prints their summary; a second Ctrl-C skips the
summary), 1 when stdout was closed by its reader. What was kept is reported on stderr whenever
stdout cannot take it.

Known limits: the summary of a long run reads every k-th draw (at most :data:`SUMMARY_VALUES`
values) so that printing it stays fast; the convergence check reads every draw.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NamedTuple

from psample.cli.common import PLOT_FORMATS, SUMMARY_VALUES, check_plot_path, print_summary, silence_stdout, suffixed
from psample.cli.user_model import DATA_RULE, MODEL_HELP

__all__ = ["SAMPLERS", "SamplerEntry", "SUMMARY_VALUES", "DEFAULT_DRAWS", "add_run_parser", "run_run"]

#: Draws per chain when ``--draws`` is not given (``logconcave_chain``: 200 final jumps).
DEFAULT_DRAWS = 1000


class SamplerEntry(NamedTuple):
    """One sampler ``psample run`` can use: what ``psample samplers`` prints, and its constructor."""

    description: str
    build: Callable  # (target) -> blackjax.base.SamplingAlgorithm


def _polar_slice(target):
    import psample

    # Adaptive: `psample run` tunes center, scale and w during warm-up unless --no-adapt.
    return psample.polar_slice(target.logdensity_fn, w=target.hints.get("polar_slice_w", 1.0))


def _flow_polar_slice(target):
    import psample

    # Adaptive: the flow is fitted at the start of warm-up, then centre, scale and w in its base space.
    return psample.flow_polar_slice(target.logdensity_fn, w=target.hints.get("polar_slice_w", 1.0))


def _partially_noncentered_polar_slice(target):
    import psample
    from psample.errors import ModelError

    if target.latent_gaussian_fn is None:
        raise ModelError(f"partially_noncentered_polar_slice needs a NumPyro model with hierarchical Normal latent "
                         f"sites, and {target.name!r} is not a NumPyro model")
    # The latents: every Normal site whose prior depends on other sites (psample.latent_gaussian finds them).
    return psample.partially_noncentered_polar_slice(target.logdensity_fn, target.latent_gaussian_fn())


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
    "flow_polar_slice": SamplerEntry(
        "polar slice sampling in the base space of a RealNVP flow fitted by reverse KL in warm-up (NeuTra); "
        "hierarchical posteriors where one affine map cannot follow the scales",
        _flow_polar_slice,
    ),
    "partially_noncentered_polar_slice": SamplerEntry(
        "polar slice sampling in partially non-centred coordinates fitted in warm-up, for a centred NumPyro "
        "model's hierarchical Normal latents (radon, sparse regressions)",
        _partially_noncentered_polar_slice,
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


def add_run_parser(sub) -> argparse.ArgumentParser:
    """Add the ``run`` subcommand to ``sub`` (the subparsers of the ``psample`` parser)."""
    run = sub.add_parser("run", help="sample a model (built-in or your own) and print the ArviZ summary")
    run.add_argument("--model", default="eight_schools", help=f"{MODEL_HELP} (default eight_schools)")
    run.add_argument("--data", default=None, metavar="DATA.json|csv|npz", help=DATA_RULE)
    run.add_argument("--sampler", default="polar_slice", help="sampler name (see `psample samplers`)")
    run.add_argument("--chains", type=int, default=4, help="number of chains (default 4)")
    # The defaults (4 chains, 500 warm-up steps with adaptation, 1,000 draws) are the shortest run
    # of this form after which the default model, eight schools with adaptive polar slice, has
    # every r_hat below 1.01 over several seeds (the slow test
    # test_default_run_converges_on_eight_schools checks seed 0); halving the draws does not.
    run.add_argument(
        "--draws", type=int, default=None,
        help=f"draws per chain (default {DEFAULT_DRAWS}; logconcave_chain: 200 final jumps)",
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
    return run


def run_run(args) -> int:
    """Run ``psample run`` with the parsed ``args``; returns the exit status."""
    import jax

    import psample
    from psample.cli.user_model import load_target

    if args.sampler not in SAMPLERS:
        print(f"psample: unknown sampler {args.sampler!r}; known: {', '.join(SAMPLERS)}", file=sys.stderr)
        return 2
    if args.plot:
        check_plot_path(args.plot, "--plot")
        check_plot_path(suffixed(args.plot, "_rank"), "--plot (rank plots)")
    target = load_target(args.model, args.data)[0]
    algorithm = SAMPLERS[args.sampler].build(target)
    thin, draws, warmup = args.thin, args.draws if args.draws is not None else DEFAULT_DRAWS, args.warmup
    if args.sampler == "logconcave_chain":
        # One step is one measurement: keep only the final jump of each chain of measurements.
        thin = target.hints["logconcave_chain"]["num_measurements"] * args.thin
        draws = args.draws if args.draws is not None else 200
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
        silence_stdout()
        print(f"psample: stdout was closed (broken pipe): {kept} kept{where}", file=sys.stderr)
        return code or 1
    return code


def _print_summary(trace, args) -> None:
    """The ArviZ summary (of every k-th draw on long runs), the convergence check and the plots."""
    advice = ("Draw more (--draws) or warm up longer (--warmup)." if args.sampler != "logconcave_chain"
              else "Draw more (--draws) or thin more (--thin).")  # fmt: skip
    # SUMMARY_VALUES read here, not bound at import: a test lowers it to see the thinned summary.
    shown, step = print_summary(trace, advice, max_values=SUMMARY_VALUES)
    if args.plot:
        from psample.cli import plots

        rank_path = suffixed(args.plot, "_rank")
        test = plots.rank_test(shown)
        print(plots.rank_test_line(test), flush=True)
        title = (f"{args.model} model, {args.sampler} sampler: {trace.num_chains} chains x {trace.num_draws:,} draws"
                 f"{f' (one in {step} shown)' if step > 1 else ''}, warm-up {args.warmup}, thin {args.thin}, seed {args.seed}")
        plots.plot_run(shown, args.plot, rank_path, title=title, test=test)
        print(f"trace plot written to {args.plot}, rank plots to {rank_path}", flush=True)
