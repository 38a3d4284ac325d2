"""``psample evidence``: the log evidence of a built-in model by tempered SMC.

Runs :func:`psample.smc.tempered_smc` on a model of :mod:`psample.models` through
:func:`psample.run_particles`, prints ``log Z`` with its Monte Carlo error (and the exact value
when the model knows it), then the ArviZ summary (statistics only: means, standard deviations,
intervals) of the final populations at equal weights (:meth:`ParticleResult.to_datatree`). ArviZ's
ESS and R-hat are not printed: resampled particles are not a Markov chain.
"""

from __future__ import annotations

import sys

__all__ = ["add_evidence_parser", "run_evidence"]


def add_evidence_parser(sub) -> None:
    """Add the ``evidence`` sub-command to an ``argparse`` sub-parser set."""
    from psample.smc.mutations import MUTATIONS

    p = sub.add_parser("evidence", help="log evidence of a built-in model by tempered SMC")
    p.add_argument("--model", default="eight_schools", help="model name (see `psample models`)")
    p.add_argument("--mcmc", default="hmc", choices=sorted(MUTATIONS), help="mutation kernel (default hmc)")
    p.add_argument("--particles", type=int, default=2000, help="particles per replicate (default 2000)")
    p.add_argument("--replicates", type=int, default=8, help="independent replicates (default 8)")
    p.add_argument("--mcmc-steps", type=int, default=None,
                   help="mutation steps per level (default: the sampler's, 5 for hmc, 10 otherwise)")
    p.add_argument("--target-ess", type=float, default=0.5, help="adaptive schedule's ESS target (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="write ESS and log Z over the steps here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_evidence(args) -> int:
    """Run the ``evidence`` sub-command; returns the exit status (130 if interrupted)."""
    import warnings

    import arviz as az
    import jax
    import numpy as np
    import pandas as pd

    import psample
    import psample.models

    target = psample.models.get(args.model)
    if target.loglikelihood_fn is None:
        print(
            f"psample: model {args.model!r} is a bare log-density without a prior/likelihood split; "
            "`psample evidence` needs a NumPyro model",
            file=sys.stderr,
        )
        return 2
    algorithm = psample.smc.tempered_smc(
        target, mcmc=args.mcmc, num_mcmc_steps=args.mcmc_steps, target_ess=args.target_ess
    )
    run_key, resample_key = jax.random.split(jax.random.PRNGKey(args.seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the interruption is reported below
        result = psample.run_particles(
            algorithm, run_key, args.particles, num_replicates=args.replicates, progress=not args.no_progress
        )
    status = "interrupted" if result.interrupted else ("done" if result.complete.all() else "incomplete")
    steps = result.num_steps
    print(
        f"{target.name}: tempered SMC ({args.mcmc} moves), {result.num_replicates} replicates x "
        f"{result.num_particles} particles, {steps.min()}-{steps.max()} steps ({status})"
    )
    exact = target.exact.get("log_Z")
    if exact is None and args.model.startswith("eight_schools"):
        exact = psample.models.eight_schools_log_evidence()
    line = f"log Z = {result.log_Z_mean:.4f} ± {result.log_Z_se:.4f} (Monte Carlo se, {result.log_Z_se_method})"
    if exact is not None:
        line += f"; exact {exact:.4f}"
    print(line)
    if result.interrupted:
        temperature = getattr(result.final_state, "temperature", None)
        reached = "" if temperature is None else f" (temperature {float(min(temperature)):.3g})"
        print(f"interrupted: log Z and the summary below are those of an intermediate distribution{reached}")
    if not result.interrupted and not result.complete.all():
        reached = np.asarray(result.final_state.temperature)[~result.complete]
        print(f"incomplete: {int((~result.complete).sum())} replicate(s) stopped at max_steps below temperature 1 "
              f"(reached {np.round(reached, 4).tolist()}): log Z and the summary below are not the posterior's")
    tree = result.to_datatree(rng_key=resample_key)
    summary = az.summary(tree, kind="stats", round_to="none")
    with pd.option_context("display.max_rows", 200, "display.max_columns", 20, "display.width", 200):
        print("posterior (resampled particles, all replicates):")
        print(summary.round(3))
    if args.plot:
        result.plot(args.plot)
        print(f"ESS and log Z plot written to {args.plot}")
    return 130 if result.interrupted else 0
