"""``psample evidence``: the log evidence (log Z) of a model, by tempered SMC or a diffusion sampler.

``--sampler tempered_smc`` (default) runs :func:`psample.smc.tempered_smc` from the prior to the
posterior (it needs a NumPyro model: a prior/likelihood split). ``--sampler reverse_diffusion``
runs :func:`psample.diffusion.reverse_diffusion` (training-free, Monte Carlo scores, SMC weights);
``--sampler dds`` and ``--sampler pis`` first train a sampler with
:func:`psample.diffusion.train_sampler` (``--iterations``, a progress bar with the loss; Ctrl-C
stops training and keeps the network so far), then draw weighted particles with it. The three
diffusion samplers take any model, bare log-densities included: they sample the unconstrained
position flattened to one vector, and ``log Z`` is the normaliser of ``exp(logdensity_fn)``,
the model's evidence for a NumPyro model. All run through :func:`psample.run_particles`.

The model is a built-in one of :mod:`psample.models` or the user's own NumPyro model
(``--model FILE.py:FUNCTION --data data.json|csv|npz``, :mod:`psample.cli.user_model`).

Prints ``log Z`` with its Monte Carlo error from the spread of ``--replicates`` independent
populations (and the exact value when the model knows it); then, for tempered SMC, the ArviZ
summary (statistics only: means, standard deviations, intervals) of the final populations at
equal weights (:meth:`ParticleResult.to_datatree`) and, for the diffusion samplers, the weighted
posterior means of the sites (constrained) with their Monte Carlo errors
(:meth:`ParticleResult.weighted_mean`). ArviZ's ESS and R-hat are not printed: particles are not
a Markov chain. Warnings of the samplers (non-finite values, weights too heavy-tailed for their
error bars) are printed on stderr as ``psample: warning: ...`` with this command's options as
advice.

Limits: the diffusion samplers' defaults are small (a few seconds on a CPU for a model of a few
dimensions); their weights are exact, but a poor proposal (a short training, too few score
samples) misses mass that no error bar shows, so compare with ``--sampler tempered_smc`` where
the model allows it.
"""

from __future__ import annotations

import sys

from psample.cli.user_model import DATA_RULE, MODEL_HELP

__all__ = ["EVIDENCE_SAMPLERS", "add_evidence_parser", "run_evidence"]

#: ``--sampler`` choices of ``psample evidence`` -> the default number of particles per replicate.
EVIDENCE_SAMPLERS = {"tempered_smc": 2000, "reverse_diffusion": 500, "dds": 2000, "pis": 2000}

#: Python argument names in the samplers' warnings -> this command's options.
_ADVICE = {
    "train_sampler's num_iterations": "--iterations",
    "num_iterations": "--iterations",
    "num_particles": "--particles",
    "num_score_samples": "--score-samples",
    "num_replicates": "--replicates",
}


def add_evidence_parser(sub) -> None:
    """Add the ``evidence`` sub-command to an ``argparse`` sub-parser set."""
    from psample.smc.mutations import MUTATIONS

    p = sub.add_parser("evidence", help="log evidence of a model by tempered SMC or a diffusion sampler")
    p.add_argument("--model", default="eight_schools", help=f"{MODEL_HELP} (default eight_schools)")
    p.add_argument("--data", default=None, metavar="DATA.json|csv|npz", help=DATA_RULE)
    p.add_argument("--sampler", default="tempered_smc", choices=list(EVIDENCE_SAMPLERS),
                   help="tempered_smc (NumPyro models; default), reverse_diffusion (training-free), "
                        "dds or pis (trained first, --iterations)")
    p.add_argument("--particles", type=int, default=None,
                   help="particles per replicate (default: " + ", ".join(f"{k} {v}" for k, v in EVIDENCE_SAMPLERS.items())
                        + ")")  # fmt: skip
    p.add_argument("--replicates", type=int, default=8, help="independent replicates (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="write ESS and log Z over the steps here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    smc = p.add_argument_group("tempered_smc")
    smc.add_argument("--mcmc", default="hmc", choices=sorted(MUTATIONS), help="mutation kernel (default hmc)")
    smc.add_argument("--mcmc-steps", type=int, default=None,
                     help="mutation steps per level (default: the sampler's, 5 for hmc, 10 otherwise)")
    smc.add_argument("--target-ess", type=float, default=0.5, help="adaptive schedule's ESS target (default 0.5)")
    diffusion = p.add_argument_group("reverse_diffusion, dds, pis")
    diffusion.add_argument("--steps", type=int, default=None,
                           help="time steps of the sampler (default: reverse_diffusion 100, dds/pis 50)")
    diffusion.add_argument("--score-samples", type=int, default=64,
                           help="reverse_diffusion: Monte Carlo draws per particle and step for the score (default 64)")
    diffusion.add_argument("--data-std", type=float, default=1.0,
                           help="reverse_diffusion: the target's rough scale, setting the score's proposal (default 1)")
    diffusion.add_argument("--iterations", type=int, default=1000,
                           help="dds/pis: training iterations (default 1000)")
    diffusion.add_argument("--batch-size", type=int, default=128, help="dds/pis: paths per training iteration (default 128)")
    diffusion.add_argument("--loss", default="kl", choices=["kl", "log_variance", "trajectory_balance"],
                           help="dds/pis: training loss (default kl)")
    diffusion.add_argument("--init-std", type=float, default=1.0,
                           help="dds/pis: the reference process's scale (default 1)")


def _flat(target):
    """``(logdensity of a flat vector, its dimension, flat vector -> {site: constrained value})``."""
    import jax
    import jax.flatten_util

    one = jax.tree.map(lambda leaf: leaf[0], target.initial_positions(jax.random.PRNGKey(0), 1))
    flat, unravel = jax.flatten_util.ravel_pytree(one)
    post = target.postprocess_fn

    def logdensity_fn(x):
        return target.logdensity_fn(unravel(x))

    def postprocess(x):
        position = unravel(x)
        if post is not None:
            return post(position)
        return dict(position) if isinstance(position, dict) else {"x": position}

    return logdensity_fn, int(flat.shape[0]), postprocess


def _diffusion_result(args, target, particles, key):
    """Build and run a diffusion sampler on ``target``; returns ``(result, description)``."""
    import jax

    import psample
    import psample.diffusion

    logdensity_fn, dim, postprocess = _flat(target)
    train_key, sample_key = jax.random.split(key)
    if args.sampler == "reverse_diffusion":
        steps = args.steps if args.steps is not None else 100
        algorithm = psample.diffusion.reverse_diffusion(
            logdensity_fn, dim=dim, schedule=psample.diffusion.VP(), num_steps=steps,
            num_score_samples=args.score_samples, data_std=args.data_std,
        )  # fmt: skip
        result = psample.run_particles(
            algorithm, sample_key, particles, num_replicates=args.replicates, progress=not args.no_progress
        )
        description = f"reverse diffusion ({steps} steps, {args.score_samples} score samples)"
    else:
        import optax

        steps = args.steps if args.steps is not None else 50
        sampler = psample.diffusion.train_sampler(
            logdensity_fn, dim, train_key, method=args.sampler, loss=args.loss, num_steps=steps,
            batch_size=args.batch_size, optimizer=optax.adam(1e-3), num_iterations=args.iterations,
            init_std=args.init_std, progress=not args.no_progress,
        )  # fmt: skip
        result = sampler.sample(sample_key, particles, num_replicates=args.replicates, progress=not args.no_progress)
        description = (f"{args.sampler.upper()} ({steps} steps, trained {sampler.num_iterations} iterations, "
                       f"{args.loss} loss)")  # fmt: skip
    result.postprocess_fn = postprocess  # weighted means of the constrained sites
    return result, description


def _advice(message: str) -> str:
    for name, option in _ADVICE.items():
        message = message.replace(name, option)
    return message


def run_evidence(args) -> int:
    """Run the ``evidence`` sub-command; returns the exit status (130 if interrupted)."""
    import warnings

    import jax
    import numpy as np

    import psample
    import psample.models
    from psample.cli.user_model import load_target
    from psample.errors import ModelError, NumericalWarning, UnreliableErrorWarning, check_positive_int

    particles = check_positive_int(
        "--particles", args.particles if args.particles is not None else EVIDENCE_SAMPLERS[args.sampler], minimum=2
    )
    check_positive_int("--replicates", args.replicates)
    target = load_target(args.model, args.data)[0]
    run_key, resample_key = jax.random.split(jax.random.PRNGKey(args.seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.sampler == "tempered_smc":
            if target.loglikelihood_fn is None:
                raise ModelError(
                    f"model {args.model!r} is a bare log-density without a prior/likelihood split; "
                    "`psample evidence --sampler tempered_smc` needs a NumPyro model "
                    "(--sampler reverse_diffusion, dds or pis take any model)"
                )
            algorithm = psample.smc.tempered_smc(
                target, mcmc=args.mcmc, num_mcmc_steps=args.mcmc_steps, target_ess=args.target_ess
            )
            result = psample.run_particles(
                algorithm, run_key, particles, num_replicates=args.replicates, progress=not args.no_progress
            )
            description = f"tempered SMC ({args.mcmc} moves)"
        else:
            result, description = _diffusion_result(args, target, particles, run_key)
    for warning in caught:
        if issubclass(warning.category, RuntimeWarning) and "interrupted" in str(warning.message):
            continue  # the interruption is reported below
        if not issubclass(warning.category, (NumericalWarning, UnreliableErrorWarning)):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            continue
        print(f"psample: warning: {_advice(str(warning.message))}", file=sys.stderr)
    status = "interrupted" if result.interrupted else ("done" if result.complete is None or result.complete.all()
                                                       else "incomplete")  # fmt: skip
    steps = result.num_steps
    print(
        f"{target.name}: {description}, {result.num_replicates} replicates x "
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
    if not result.interrupted and result.complete is not None and not result.complete.all():
        reached = np.asarray(result.final_state.temperature)[~result.complete]
        print(f"incomplete: {int((~result.complete).sum())} replicate(s) stopped at max_steps below temperature 1 "
              f"(reached {np.round(reached, 4).tolist()}): log Z and the summary below are not the posterior's")
    if args.sampler == "tempered_smc":
        _print_summary(result, resample_key)
    else:
        _print_weighted_means(result)
    if args.plot:
        result.plot(args.plot)
        print(f"ESS and log Z plot written to {args.plot}")
    return 130 if result.interrupted else 0


def _print_summary(result, resample_key) -> None:
    """ArviZ's summary (statistics only) of the populations at equal weights."""
    import arviz as az

    from psample.cli.common import pandas_display

    tree = result.to_datatree(rng_key=resample_key)
    summary = az.summary(tree, kind="stats", round_to="none")
    with pandas_display():
        print("posterior (resampled particles, all replicates):")
        print(summary.round(3))


def _print_weighted_means(result) -> None:
    """Weighted means of every component of every site, with their Monte Carlo errors."""
    import numpy as np
    import pandas as pd

    from psample.cli.common import pandas_display

    means, errors = result.weighted_mean()
    rows = {}
    for site in means:
        mean, se = np.asarray(means[site]), np.asarray(errors[site])
        for index in np.ndindex(mean.shape):
            label = site + (f"[{','.join(map(str, index))}]" if index else "")
            rows[label] = (float(mean[index]), float(se[index]))
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["mean", "mcse"])
    with pandas_display():
        print(f"posterior means (weighted particles; mcse from the spread of the {result.num_replicates} replicates):")
        print(table.round(4))
