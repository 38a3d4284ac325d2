"""``psample fkc``: Feynman–Kac correctors on analytic score models, against the exact target.

``psample fkc --demo anneal|product|guidance`` runs :func:`psample.smc.fkc_smc` on the exact
Gaussian-mixture score models of :func:`psample.models.fkc_problem` (VP schedule; ``anneal``: the bimodal
mixture at ``beta = 2``; ``product``: two 2-mode mixtures sharing one mode; ``guidance``: 1-D
classifier-free guidance at ``w = 3``), and the same SDE without weights or resampling (the
uncorrected sampler: annealed drift, naive product, naive CFG), prints each statistic next to
its exact value, and with ``--plot`` draws the exact density beside both samplers' particles and
their 1-D marginals against the exact marginal densities, with the mode masses
(:func:`psample.cli.plots.plot_fkc`).
"""

from __future__ import annotations

import argparse
import sys
import warnings

__all__ = ["DEMOS", "add_fkc_parser", "run_fkc", "run_demo", "uncorrected"]

#: Demo name -> FKC problem name (:data:`psample.models.FKC_PROBLEMS`).
DEMOS = {"anneal": "anneal_bimodal", "product": "product", "guidance": "guidance"}


def add_fkc_parser(sub) -> None:
    """Add the ``fkc`` sub-command to an ``argparse`` sub-parser set."""
    p = sub.add_parser("fkc", help="Feynman-Kac correctors on analytic diffusion score models (demos)")
    p.add_argument("--demo", default="anneal", choices=sorted(DEMOS), help="which demo (default anneal)")
    p.add_argument("--particles", type=int, default=4096, help="particles per replicate (default 4096)")
    p.add_argument("--replicates", type=int, default=4, help="independent replicates (default 4)")
    p.add_argument("--steps", type=int, default=500, help="Euler-Maruyama steps (default 500)")
    p.add_argument("--resampling", default="systematic", choices=["systematic", "stratified", "multinomial", "residual"],
                   help="resampling scheme (default systematic)")
    p.add_argument("--resample-ess", type=float, default=1.0, metavar="FRACTION",
                   help="resample when the ESS falls below FRACTION x particles; 1 (default) resamples every step")
    # psample 0.1's spelling, for one release: every_step is --resample-ess 1, ess is --resample-ess 0.5.
    p.add_argument("--resample", default=None, choices=["every_step", "ess"], help=argparse.SUPPRESS)
    p.add_argument("--noise", default="standard", type=_noise,
                   help="standard, tempered, or a number r > 0 for c_t^2 = r g_t^2 (r > 1: Langevin noise; default standard)")
    p.add_argument("--weights", default="score", choices=["score", "stein"],
                   help="FKC log-weights: score (the paper's) or stein (lower variance, psample.smc.fkc; default score)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="write the exact density and both samplers' particles here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _noise(text: str):
    """``--noise``: a :data:`psample.smc.fkc.NOISES` name or a number ``r > 0``."""
    try:
        return float(text)
    except ValueError:
        return text


def uncorrected(problem, *, num_steps: int, noise="standard", time_grid: str = "uniform"):
    """The same reverse SDE as FKC without weights or resampling (equal weights at the end).

    Returns a :class:`psample.smc.ParticleAlgorithm`: FKC that never resamples; read its final
    particles with equal weights (the weights it carries are the FKC correction, unused here).
    """
    import psample

    return psample.smc.fkc_smc(
        [m.score for m in problem.models], problem.exponents, schedule=problem.models[0].schedule,
        num_steps=num_steps, t_min=problem.t_min, time_grid=time_grid, noise=noise, resample_ess=0.5,
        start_resampling_step=num_steps,
        shape=problem.models[0].shape,
    )  # fmt: skip


def _statistics(problem):
    """``{label: (fn(particle) -> scalar, exact value)}`` for the demo's problem."""
    import jax.numpy as jnp

    exact = problem.exact
    stats = {"E[x_0]": (lambda x: x[0], float(exact["mean"][0])),
             "Var[x_0]": (None, float(exact["var"][0]))}  # fmt: skip
    if "P(x_0<0)" in exact:
        stats["P(x_0<0)"] = (lambda x: (x[0] < 0).astype(x.dtype), float(exact["P(x_0<0)"]))
    if "P(|x-(2,0)|<1)" in exact:
        center = jnp.array([2.0, 0.0])
        stats["P(|x-(2,0)|<1)"] = (lambda x: (jnp.sum((x - center) ** 2) < 1).astype(x.dtype), float(exact["P(|x-(2,0)|<1)"]))
    if problem.models[0].dim > 1:
        stats["E[x_1]"] = (lambda x: x[1], float(exact["mean"][1]))
    return stats


def run_demo(demo: str, *, num_particles=4096, num_replicates=4, num_steps=500, resampling="systematic",
             resample_ess=1.0, noise="standard", weights="score", seed=0, progress=False, **deprecated):
    """Run one demo; returns ``(problem, fkc_result, uncorrected_result, table)``.

    ``resampling`` and ``resample_ess`` are :func:`psample.smc.fkc_smc`'s (``resample_ess=1``:
    every step). ``table`` maps each statistic to ``(exact, fkc mean, fkc se, uncorrected mean,
    uncorrected se)``; standard errors are over the replicates. (Deprecated: ``resample=
    "every_step"`` is ``resample_ess=1``, ``resample="ess"`` is ``resample_ess=0.5``.)
    """
    if "resample" in deprecated:
        resample = deprecated.pop("resample")
        resample_ess = _resample_ess_of(resample, "run_demo(resample=...)")
    if deprecated:
        raise TypeError(f"run_demo() got unexpected keyword arguments {sorted(deprecated)}")
    import jax
    import numpy as np

    import psample
    import psample.models

    problem = psample.models.fkc_problem(DEMOS[demo], psample.diffusion.VP())
    algorithm = psample.smc.fkc_smc(
        [m.score for m in problem.models], problem.exponents, schedule=problem.models[0].schedule,
        num_steps=num_steps, t_min=problem.t_min, noise=noise, weights=weights, resampling=resampling,
        resample_ess=resample_ess, shape=problem.models[0].shape,
    )  # fmt: skip
    key_fkc, key_plain = jax.random.split(jax.random.PRNGKey(seed))
    result = psample.run_particles(algorithm, key_fkc, num_particles, num_replicates=num_replicates, progress=progress)
    plain = psample.run_particles(uncorrected(problem, num_steps=num_steps, noise=noise), key_plain, num_particles,
                                  num_replicates=num_replicates, progress=progress)  # fmt: skip
    table = {}
    for label, (fn, exact) in _statistics(problem).items():
        row = [exact]
        for res, weighted in ((result, True), (plain, False)):
            x = np.asarray(res.particles)
            if fn is None:  # variance of x_0
                values = x[..., 0]
            else:
                values = np.asarray(jax.vmap(jax.vmap(fn))(res.particles))
            w = np.exp(res.log_weights) if weighted else np.full(values.shape, 1.0 / values.shape[1])
            means = np.sum(w * values, axis=1)
            if fn is None:
                means = np.sum(w * (values - means[:, None]) ** 2, axis=1)
            row += [float(means.mean()), float(means.std(ddof=1) / np.sqrt(len(means)))]
        table[label] = tuple(row)
    return problem, result, plain, table


def _resample_ess_of(resample: str, spelled: str) -> float:
    """``resample_ess`` of psample 0.1's ``resample`` mode (``"every_step"``: 1, ``"ess"``: 0.5), with a
    ``DeprecationWarning``."""
    if resample not in ("every_step", "ess"):
        raise ValueError(f"resample must be 'every_step' or 'ess', got {resample!r}")
    value = 1.0 if resample == "every_step" else 0.5
    warnings.warn(f"{spelled} is deprecated: use resample_ess={value} (1 resamples every step); removed in the next release",
                  DeprecationWarning, stacklevel=3)
    return value


def run_fkc(args) -> int:
    """Run the ``fkc`` sub-command; returns the exit status."""
    from psample.models import FKC_PROBLEMS

    resample_ess = args.resample_ess
    if getattr(args, "resample", None) is not None:
        resample_ess = _resample_ess_of(args.resample, f"--resample {args.resample}")
    problem, result, plain, table = run_demo(
        args.demo, num_particles=args.particles, num_replicates=args.replicates, num_steps=args.steps,
        resampling=args.resampling, resample_ess=resample_ess, noise=args.noise, weights=args.weights, seed=args.seed,
        progress=not args.no_progress,
    )  # fmt: skip
    print(f"{args.demo}: {FKC_PROBLEMS[problem.name]}")
    print(f"FKC (noise={args.noise}, weights={args.weights}, resampling={args.resampling}, resample_ess={resample_ess:g}), "
          f"{args.steps} steps, {result.num_replicates} replicates x {result.num_particles} particles; "
          "± = standard error over the replicates")  # fmt: skip
    print(f"{'statistic':18s} {'exact':>9s} {'FKC':>19s} {'uncorrected':>19s}")
    for label, (exact, m, se, pm, pse) in table.items():
        print(f"{label:18s} {exact:9.4f} {m:9.4f} ± {se:7.4f} {pm:9.4f} ± {pse:7.4f}")
    if args.plot:
        from psample.cli.plots import plot_fkc

        title = (f"{args.demo} demo: {FKC_PROBLEMS[problem.name].replace('beta', 'β')}\n"
                 f"FKC (noise={args.noise}, weights={args.weights}, {args.resampling} resampling, "
                 f"resample_ess={resample_ess:g}) vs the uncorrected SDE; {args.steps} steps, seed {args.seed}")
        plot_fkc(args.plot, problem, result, plain, title=title, table=table)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
