"""Tempered sequential Monte Carlo with model evidence.

Likelihood tempering moves a weighted population of ``N`` particles from the prior :math:`p`
to the posterior through :math:`\\pi_\\lambda(x) \\propto p(x)\\, L(x)^{\\lambda}`,
:math:`0 = \\lambda_0 < \\dots < \\lambda_T = 1` (Neal [3]; Del Moral, Doucet and Jasra [1]).
Each step reweights by :math:`g_i = L(x_i)^{\\lambda_t - \\lambda_{t-1}}`, adds
:math:`\\log \\sum_i W_i g_i` (``W`` the normalised weights carried into the step) to the
log-evidence estimate, resamples (``resampling=``, a ``blackjax.smc.resampling`` scheme) when the
ESS falls below ``resample_ess * N``, and moves every particle by ``num_mcmc_steps`` steps of a
kernel that leaves :math:`\\pi_{\\lambda_t}` invariant, tuned from the weighted population
(:mod:`psample.smc.mutations`: random-walk Metropolis, HMC or polar slice, cross-fitted). The
schedule is fixed (``schedule``) or adaptive: :math:`\\lambda_t` solves, by bisection
(``blackjax.smc.solver.dichotomy``), for a conditional ESS (Zhou, Johansen and Aston [4]) of
``target_ess`` times its value at :math:`\\delta = 0^+`, which also holds when the step did not
start from a resampled population.

See the :doc:`family page </families/tempered_smc>` for the method, tuning and measured limits.

Contract
--------
:func:`as_top_level_api` (exported as :func:`psample.smc.tempered_smc`) returns a
:class:`psample.base.ParticleAlgorithm` over :class:`TemperedState` with :class:`TemperedInfo`
per step; :func:`psample.run_particles` runs it. ``log_Z`` estimates
:math:`\\log Z = \\log \\int p(x) L(x)\\,dx` (the prior is normalised).

Known limits
------------
- :math:`\\hat Z` (the product of the increments) is unbiased for :math:`Z` only with a fixed
  schedule ([2], §7.4.2); the adaptive schedule adds a bias that vanishes as ``N`` grows.
- A single replicate's error bars (Lee and Whiteley's estimator, ``num_replicates=1``) are
  calibrated for multinomial resampling only (the default); with systematic resampling they are
  several times too small, and :class:`psample.ParticleResult` warns. With several replicates any
  scheme has valid error bars.
- An adaptive run stops after ``max_steps`` steps: a replicate that has not reached temperature
  1 estimates the normaliser of an intermediate level, and the runner warns.
- NaN or ``+inf`` log-likelihoods count as zero likelihood (counted and warned, never silent);
  above ``max_nonfinite_fraction`` of the prior draws the run is refused.
- The moves only mix within the region the population covers: a multimodal posterior whose
  modes the prior population misses is not recovered by the mutations.

References
----------
.. [1] Pierre Del Moral, Arnaud Doucet and Ajay Jasra, "Sequential Monte Carlo samplers",
   Journal of the Royal Statistical Society B 68(3), 411-436, 2006.
.. [2] Pierre Del Moral, "Feynman-Kac formulae: genealogical and interacting particle systems
   with applications", Springer, 2004.
.. [3] Radford M. Neal, "Annealed importance sampling", Statistics and Computing 11(2),
   125-139, 2001.
.. [4] Yan Zhou, Adam M. Johansen and John A. D. Aston, "Toward automatic model comparison:
   an adaptive sequential Monte Carlo approach", Journal of Computational and Graphical
   Statistics 25(3), 701-726, 2016. arXiv:1303.3123.
"""

from __future__ import annotations

import numbers
from typing import Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from blackjax.smc import solver
from blackjax.types import Array, ArrayTree, PRNGKey
from jax.scipy.special import logsumexp

from psample.errors import DtypeError, InvalidTuningError, ModelError, ShapeError, check_positive_int
from psample.smc.mutations import DEFAULT_NUM_MCMC_STEPS, MUTATIONS, Mutation, build_mutation, cross_fitted_tuning
from psample.smc.base import (
    ParticleAlgorithm,
    count_nonfinite_logdensity,
    resample_if,
    resampling_fn,
    reweight,
)

__all__ = [
    "TemperedState",
    "TemperedInfo",
    "MUTATIONS",
    "MAX_NONFINITE_FRACTION",
    "init",
    "build_kernel",
    "as_top_level_api",
]

#: Prior draws with a NaN or ``+inf`` log-likelihood are given weight zero; more than this
#: fraction of them is an error (the model or the prior sampler is wrong).
MAX_NONFINITE_FRACTION = 0.1


class TemperedState(NamedTuple):
    """State of one tempered SMC population of ``N`` particles.

    particles
        Pytree, every leaf ``(N, ...)``: the particles (unconstrained positions).
    log_weights
        ``(N,)`` normalised log-weights (``logsumexp == 0``).
    log_Z
        ``()`` running log-evidence estimate ``log(Z_lambda / Z_0)`` (``Z_0 = 1``, the prior).
    temperature
        ``()`` current ``lambda`` in ``[0, 1]``.
    loglikelihood
        ``(N,)`` log-likelihood of each particle, as computed: NaN and ``+inf`` (counted in
        ``num_nonfinite``) are given weight zero at the next reweighting, like ``-inf``.
    eve
        ``(N,)`` int32: index of each particle's ancestor in the initial population.
    num_resampled
        ``()`` int32: resampling events so far.
    num_steps
        ``()`` int32: steps taken so far.
    scale
        ``()`` the adapted scalar of the mutation kernel (random-walk scale, HMC step size or
        polar slice window ``w``) used at the last level.
    """

    particles: ArrayTree
    log_weights: Array
    log_Z: Array
    temperature: Array
    loglikelihood: Array
    eve: Array
    num_resampled: Array
    num_steps: Array
    scale: Array


class TemperedInfo(NamedTuple):
    """Diagnostics of one tempered SMC step (all scalars).

    ess
        Effective sample size after reweighting, before resampling (``blackjax.smc.ess``).
    log_Z_increment
        ``log sum_i W_i g_i`` added to ``log_Z`` this step.
    is_resampled
        Whether the population was resampled this step.
    temperature
        ``lambda`` reached by this step.
    acceptance_rate
        Mean acceptance rate of the mutation moves (1 for polar slice, which always moves).
    scale
        The mutation kernel's scalar used this step (see :class:`TemperedState`).
    num_evals
        Log-density evaluations this step, summed over particles: mutation evaluations (HMC:
        gradient evaluations) plus one log-likelihood evaluation per particle after the moves.
    num_nonfinite
        ``int32``: evaluations this step at which the user's functions returned NaN or
        ``+inf``: the log-likelihood of every particle after the moves (and, at the first
        step, of the initial prior draws), and the tempered log-density at the mutation
        kernel's proposals (random walk: every proposal; HMC: every trajectory's end point,
        where a NaN met inside the trajectory ends up; polar slice: every evaluation). They
        count as zero density (weight zero, moves into them rejected), and
        :func:`psample.run_particles` warns with their total.
    """

    ess: Array
    log_Z_increment: Array
    is_resampled: Array
    temperature: Array
    acceptance_rate: Array
    scale: Array
    num_evals: Array
    num_nonfinite: Array


def _log_cess(log_weights, loglikelihood, delta):
    """log conditional ESS of incremental weights ``exp(delta * loglik)`` (Zhou et al. 2016)."""
    log_g = jnp.where(jnp.isneginf(loglikelihood), -jnp.inf, delta * loglikelihood)
    n = log_weights.shape[0]
    return jnp.log(n) + 2 * logsumexp(log_weights + log_g) - logsumexp(log_weights + 2 * log_g)


def _next_temperature(log_weights, loglikelihood, temperature, target_ess):
    """Largest ``lambda`` whose conditional ESS is ``target_ess`` times that at ``delta = 0+``."""
    max_delta = 1.0 - temperature
    alive = jnp.where(jnp.isneginf(loglikelihood), -jnp.inf, log_weights)
    # At delta -> 0+ the conditional ESS is N times the weight of the particles with a
    # finite likelihood (the others die at any delta > 0).
    target = jnp.log(log_weights.shape[0]) + logsumexp(alive) + jnp.log(target_ess)

    def fun(delta):
        return _log_cess(log_weights, loglikelihood, delta) - target

    delta = solver.dichotomy(fun, 0.0, max_delta)
    delta = jnp.clip(jnp.nan_to_num(delta, nan=max_delta), 0.0, max_delta)
    return jnp.where(delta >= max_delta, 1.0, temperature + delta)


def init(
    rng_key: PRNGKey,
    num_particles: int,
    initial_sampler: Callable,
    loglikelihood_fn: Callable,
    initial_scale: float,
) -> TemperedState:
    """Draw ``num_particles`` particles from the prior and weight them equally.

    Parameters
    ----------
    rng_key
        Key of the prior draws.
    num_particles
        ``N >= 2`` (static).
    initial_sampler
        ``(rng_key, N) -> particles`` drawing from the prior (leading axis ``N`` on every leaf).
    loglikelihood_fn
        ``particle -> scalar``.
    initial_scale
        Initial value of the mutation kernel's scalar (``state.scale``).
    """
    particles = initial_sampler(rng_key, num_particles)
    loglikelihood = jax.vmap(loglikelihood_fn)(particles)
    dtype = jax.flatten_util.ravel_pytree(jax.tree.map(lambda x: x[0], particles))[0].dtype
    zero = jnp.zeros((), jnp.int32)
    return TemperedState(
        particles=particles,
        log_weights=jnp.full((num_particles,), -jnp.log(num_particles), dtype=dtype),
        log_Z=jnp.zeros((), dtype),
        temperature=jnp.zeros((), dtype),
        loglikelihood=loglikelihood.astype(dtype),
        eve=jnp.arange(num_particles, dtype=jnp.int32),
        num_resampled=zero,
        num_steps=zero,
        scale=jnp.asarray(initial_scale, dtype),
    )


def build_kernel(
    logprior_fn: Callable,
    loglikelihood_fn: Callable,
    mutation: Mutation,
    resample: Callable,
    num_mcmc_steps: int,
) -> Callable:
    """Build one tempered SMC step.

    Returns
    -------
    kernel
        ``kernel(rng_key, state, temperature, resample_ess) -> (TemperedState, TemperedInfo)``:
        reweight to ``temperature`` (traced, ``>= state.temperature``), resample when the ESS is
        below ``resample_ess * N`` (``resample_ess >= 1``: every step), then move.
    """

    def kernel(rng_key: PRNGKey, state: TemperedState, temperature, resample_ess):
        resample_key, move_key = jax.random.split(rng_key)
        num_particles = state.log_weights.shape[0]
        loglik = jnp.where(jnp.isfinite(state.loglikelihood), state.loglikelihood, -jnp.inf)
        delta = temperature - state.temperature
        log_g = jnp.where(jnp.isneginf(loglik), -jnp.inf, delta * loglik)
        new = reweight(state.log_weights, log_g)

        do_resample = new.ess_below(resample_ess)
        particles, log_weights, eve = resample_if(
            resample_key, do_resample, state.particles, new.log_weights, state.eve, resample
        )

        example = jax.tree.map(lambda x: x[0], particles)
        _, unravel = jax.flatten_util.ravel_pytree(example)
        flat = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(particles)
        weights = jnp.exp(log_weights)

        def logdensity(x):
            position = unravel(x)
            return logprior_fn(position) + temperature * loglikelihood_fn(position)

        tuned = cross_fitted_tuning(flat, weights, state.scale, mutation)
        keys = jax.random.split(move_key, num_particles)

        half = num_particles // 2
        if mutation.metric == "diagonal":
            # One vmap over all particles, each given its half's parameters as rows: a diagonal
            # frame costs the same per particle batched or shared, and one loop over N
            # particles runs half the kernel launches of two loops over N/2 (which dominate
            # when the log-density is cheap).
            side = jnp.where(jnp.arange(num_particles) < half, 1, 0)
            rows = jax.tree.map(lambda t: t[side], tuned)
            flat, acceptance, evals, move_nonfinite = jax.vmap(
                lambda k, x, t: mutation.move(k, x, logdensity, t, num_mcmc_steps)
            )(keys, flat, rows)
        else:

            def move_half(rows, tuned_by):
                # One vmap per half with that half's parameters unbatched: the dense frame's
                # products become one matrix-matrix product over the half instead of a gather
                # and a matrix-vector product per particle (which cost more than a cheap
                # log-density).
                mine = jax.tree.map(lambda t: t[tuned_by], tuned)
                return jax.vmap(lambda k, x: mutation.move(k, x, logdensity, mine, num_mcmc_steps))(keys[rows], flat[rows])

            moved = [move_half(slice(0, half), 1), move_half(slice(half, num_particles), 0)]
            flat, acceptance, evals, move_nonfinite = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), *moved)
        scale = jnp.mean(tuned.scale).astype(state.scale.dtype)
        acceptance = jnp.mean(acceptance)
        particles = jax.vmap(unravel)(flat)
        loglikelihood = jax.vmap(loglikelihood_fn)(particles).astype(state.log_weights.dtype)
        next_scale = mutation.adapt(scale, acceptance)
        # The initial draws' log-likelihoods were evaluated by init: count them at the first step.
        initial_nonfinite = jnp.where(state.num_steps == 0, count_nonfinite_logdensity(state.loglikelihood), 0)
        nonfinite = jnp.sum(move_nonfinite) + count_nonfinite_logdensity(loglikelihood) + initial_nonfinite

        new_state = TemperedState(
            particles=particles,
            log_weights=log_weights,
            log_Z=state.log_Z + new.log_Z_increment,
            temperature=jnp.asarray(temperature, state.temperature.dtype),
            loglikelihood=loglikelihood,
            eve=eve,
            num_resampled=state.num_resampled + do_resample.astype(jnp.int32),
            num_steps=state.num_steps + 1,
            scale=next_scale.astype(state.scale.dtype),
        )
        info = TemperedInfo(
            ess=new.ess,
            log_Z_increment=new.log_Z_increment,
            is_resampled=do_resample,
            temperature=new_state.temperature,
            acceptance_rate=acceptance,
            scale=scale,
            num_evals=jnp.sum(evals) + num_particles,
            num_nonfinite=nonfinite.astype(jnp.int32),
        )
        return new_state, info

    return kernel


def _check_schedule(schedule) -> np.ndarray:
    values = np.asarray(schedule, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise InvalidTuningError(
            f"schedule must be a 1-D sequence of at least two temperatures from 0 to 1, got {schedule!r}"
        )
    if not np.all(np.isfinite(values)) or values[0] != 0.0 or values[-1] != 1.0 or np.any(np.diff(values) <= 0):
        raise InvalidTuningError(
            f"schedule must increase strictly from 0 to 1, got {values.tolist()!r}"
        )
    return values


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 < float(value) <= 1.0):
        raise InvalidTuningError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def _nonfinite_check(max_fraction: float) -> Callable:
    def check(states: TemperedState) -> None:
        loglik = np.asarray(states.loglikelihood)
        bad = np.isnan(loglik) | np.isposinf(loglik)  # -inf is a legitimate zero likelihood
        fraction = float(bad.mean())
        if fraction > max_fraction:
            examples = np.unique(loglik[bad])[:3].tolist()
            raise ModelError(
                f"loglikelihood_fn is NaN or +inf at {fraction:.1%} of the prior draws "
                f"({int(bad.sum())} of {bad.size}; values such as {examples}); at most "
                f"max_nonfinite_fraction={max_fraction:.0%} is allowed (they get weight zero): "
                "check the model and the prior sampler"
            )

    return check


def _completion_check(max_steps: int | None) -> Callable:
    """``check_final`` of :class:`ParticleAlgorithm`: a replicate is complete at temperature 1."""

    def check(states: TemperedState):
        temperature = np.asarray(states.temperature)
        complete = temperature >= 1.0
        stopped = ~complete
        message = (
            f"tempered SMC stopped before reaching temperature 1 in {int(stopped.sum())} of "
            f"{complete.size} replicate(s) (temperatures reached: "
            f"{np.round(temperature[stopped][:10], 4).tolist()}, after "
            f"{np.asarray(states.num_steps)[stopped][:10].tolist()} steps; max_steps={max_steps}): "
            "their log_Z estimates the normaliser of prior x likelihood^temperature and their "
            "particles follow that intermediate distribution, not the posterior "
            "(result.complete is False for them). Build the algorithm with a larger max_steps, "
            "or a smaller target_ess (larger temperature steps), in psample.smc.tempered_smc."
        )
        return complete, message

    return check


def _check_function_output(name: str, fn: Callable, particle) -> None:
    """A log-density function must return a real scalar (checked on shapes, before any step)."""
    out = jax.eval_shape(fn, particle)
    dtype = getattr(out, "dtype", None)
    if dtype is None or not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise DtypeError(f"{name} must return a real scalar log-density, got dtype {dtype} ({out})")
    if tuple(out.shape) != ():
        raise ShapeError(f"{name} must return a scalar log-density for one particle, got shape {tuple(out.shape)}")


def as_top_level_api(
    logprior_fn,
    loglikelihood_fn: Callable | None = None,
    *,
    initial_sampler: Callable | None = None,
    mcmc: str = "hmc",
    num_mcmc_steps: int | None = None,
    target_ess: float = 0.5,
    schedule=None,
    resampling="multinomial",
    resample_ess: float | None = None,
    mcmc_parameters: dict | None = None,
    max_steps: int = 1000,
    max_nonfinite_fraction: float = MAX_NONFINITE_FRACTION,
) -> ParticleAlgorithm:
    """Tempered SMC from the prior to the posterior, estimating the log evidence.

    Examples
    --------
    .. code::

        algorithm = psample.smc.tempered_smc(psample.models.get("eight_schools"), mcmc="polar_slice")
        result = psample.run_particles(algorithm, jax.random.key(0), 1000, num_replicates=8)
        print(result.log_Z_mean, "+-", result.log_Z_se)

    Parameters
    ----------
    logprior_fn
        ``particle -> scalar`` log prior density (unconstrained, Jacobian included), or a
        :class:`psample.Target` with ``logprior_fn``, ``loglikelihood_fn`` and ``prior_sample_fn``
        (every NumPyro model wrapped by :func:`psample.from_numpyro`); the target's
        post-processing then names and constrains the particles.
    loglikelihood_fn
        ``particle -> scalar`` log-likelihood (omit with a Target).
    initial_sampler
        ``(rng_key, num_particles) -> particles`` drawing from the prior (omit with a Target).
    mcmc
        Mutation kernel: ``"rwm"``, ``"hmc"`` or ``"polar_slice"`` (:data:`MUTATIONS`, see
        :mod:`psample.smc.mutations`); ``"polar_slice"`` needs particles with at least two
        entries.
    num_mcmc_steps
        Mutation steps per particle per level (>= 1). Default (``None``): 5 for ``"hmc"``, 10
        for ``"rwm"`` and ``"polar_slice"`` (``mutations.DEFAULT_NUM_MCMC_STEPS``): 5 moves of
        a tuned, whitened HMC kernel reach the log-Z error of 10 in less time.
    target_ess
        In ``(0, 1]``: the adaptive schedule's conditional-ESS target, and the default
        resampling threshold. ``1`` with an adaptive schedule would never move the temperature
        and is rejected.
    schedule
        ``None`` (adaptive) or an increasing sequence of temperatures from 0 to 1; the number of
        steps is then ``len(schedule) - 1``.
    resampling
        ``"multinomial"`` (default), ``"systematic"``, ``"stratified"``, ``"residual"``
        (keys of :data:`psample.base.RESAMPLING`, from ``blackjax.smc.resampling``) or such a
        function ``(rng_key, weights, num_samples) -> indices``. Multinomial is the scheme for
        which a single replicate's error bars (:attr:`psample.ParticleResult.log_Z_se` with
        ``num_replicates=1``, Lee and Whiteley's estimator) are valid; with systematic
        resampling they are several times too small, although its own ``log_Z`` spread over
        seeds is about that of multinomial. With several replicates any scheme has valid errors.
    resample_ess
        Resample when the ESS after reweighting falls below ``resample_ess * N``; ``1``
        resamples every step. Default: ``1`` with the adaptive schedule (every step, as
        BlackJAX; with the adaptive schedule it gives a lower log-Z error at equal evaluations
        than resampling only when the ESS falls below ``N/2``), ``target_ess`` with a fixed
        schedule.
    mcmc_parameters
        Options of the kernel: ``"rwm"``: ``scale``; ``"hmc"``: ``step_size`` (initial),
        ``num_integration_steps`` (default 10); ``"polar_slice"``: ``max_proposals``. Every
        kernel: ``metric``, the frame tuned from the particles at each level: ``"dense"``
        (default of ``"rwm"`` and ``"polar_slice"``; their covariance, a ``d x d`` product per
        log-density evaluation) or ``"diagonal"`` (default of ``"hmc"``; their variances,
        folded into HMC's inverse mass matrix; cheaper per evaluation, and as accurate unless
        the posterior is strongly correlated: prefer ``"dense"`` then).
    max_steps
        An adaptive run stops after this many steps even if the temperature has not reached 1:
        :func:`psample.run_particles` then warns (naming the temperature reached) and the
        result says so (``result.complete`` is False for that replicate,
        ``final_state.temperature`` how far it got).
    max_nonfinite_fraction
        Prior draws with a NaN or ``+inf`` log-likelihood get weight zero (and are counted in
        ``info.num_nonfinite``, which the runner warns about); above this fraction (default
        10%), the run is refused before any step.

    Returns
    -------
    psample.smc.ParticleAlgorithm
        ``init(rng_key, N)``, ``step(rng_key, state)``; run it with :func:`psample.run_particles`.

    Raises
    ------
    InvalidTuningError
        ``target_ess`` or ``resample_ess`` outside ``(0, 1]``, a schedule that does not increase
        from 0 to 1, an unknown ``mcmc`` or ``resampling``, bad kernel options.
    ModelError
        A Target without the tempering pieces, or missing functions.
    DtypeError, ShapeError
        ``logprior_fn`` or ``loglikelihood_fn`` does not return a real scalar (e.g. a complex
        value), raised when the population is drawn, before any step.

    Notes
    -----
    A NaN or ``+inf`` from ``loglikelihood_fn`` (or the tempered log-density at a mutation
    proposal) counts as zero likelihood, like ``-inf``: the particle gets weight zero at the
    next reweighting and moves into such points are rejected. The estimates are then those of
    the model restricted to where the function is finite, which is rarely what was meant: each
    such value is counted (``info.num_nonfinite``) and :func:`psample.run_particles` warns with
    the total (``psample.errors.NumericalWarning``); a population left with no finite weight
    is refused (``psample.errors.NonFiniteError``).
    """
    postprocess_fn = None
    if hasattr(logprior_fn, "logdensity_fn") and hasattr(logprior_fn, "init_fn"):
        target = logprior_fn
        if target.logprior_fn is None or target.loglikelihood_fn is None or target.prior_sample_fn is None:
            raise ModelError(
                f"target {target.name!r} does not separate prior and likelihood (logprior_fn, "
                "loglikelihood_fn, prior_sample_fn); build it with psample.from_numpyro or pass "
                "the three functions"
            )
        if loglikelihood_fn is not None or initial_sampler is not None:
            raise ModelError("pass either a Target or logprior_fn, loglikelihood_fn and initial_sampler, not both")
        logprior_fn, loglikelihood_fn = target.logprior_fn, target.loglikelihood_fn
        initial_sampler, postprocess_fn = target.prior_sample_fn, target.postprocess_fn
    for name, fn in (("logprior_fn", logprior_fn), ("loglikelihood_fn", loglikelihood_fn),
                     ("initial_sampler", initial_sampler)):  # fmt: skip
        if not callable(fn):
            raise ModelError(f"{name} must be a function, got {fn!r}")
    target_ess = _check_fraction("target_ess", target_ess)
    if resample_ess is None:
        resample_ess = 1.0 if schedule is None else target_ess
    resample_ess = _check_fraction("resample_ess", resample_ess)
    if num_mcmc_steps is None:
        num_mcmc_steps = DEFAULT_NUM_MCMC_STEPS.get(mcmc, 10)
    num_mcmc_steps = check_positive_int("num_mcmc_steps", num_mcmc_steps)
    max_steps = check_positive_int("max_steps", max_steps)
    if not (0.0 <= float(max_nonfinite_fraction) < 1.0):
        raise InvalidTuningError(f"max_nonfinite_fraction must be in [0, 1), got {max_nonfinite_fraction!r}")
    if not isinstance(mcmc, str) or mcmc not in MUTATIONS:
        raise InvalidTuningError(f"mcmc must be one of {sorted(MUTATIONS)}, got {mcmc!r}")
    mutation = build_mutation(mcmc, mcmc_parameters)
    resample = resampling_fn(resampling)
    kernel = build_kernel(logprior_fn, loglikelihood_fn, mutation, resample, num_mcmc_steps)

    if schedule is None:
        if target_ess >= 1.0:
            raise InvalidTuningError(
                "target_ess must be < 1 with an adaptive schedule (at 1 the temperature never "
                f"moves), got {target_ess!r}"
            )

        def step(rng_key, state):
            temperature = _next_temperature(state.log_weights, _finite(state.loglikelihood), state.temperature, target_ess)
            return kernel(rng_key, state, temperature, resample_ess)

        num_steps = None

        def is_done(state):
            return (state.temperature >= 1.0) | (state.num_steps >= max_steps)

    else:
        temperatures = _check_schedule(schedule)
        num_steps = temperatures.size - 1

        def step(rng_key, state):
            table = jnp.asarray(temperatures, state.temperature.dtype)
            temperature = table[jnp.minimum(state.num_steps + 1, num_steps)]
            return kernel(rng_key, state, temperature, resample_ess)

        is_done = None

    def init_fn(rng_key, num_particles):
        num_particles = check_positive_int("num_particles", num_particles, minimum=2)
        particles_example = jax.eval_shape(lambda k: initial_sampler(k, 1), rng_key)
        d = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(particles_example))
        if mcmc == "polar_slice" and d < 2:
            raise InvalidTuningError(
                f"mcmc='polar_slice' needs particles with at least 2 entries, these have d={d}; use 'rwm' or 'hmc'"
            )
        particle = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), particles_example)
        _check_function_output("loglikelihood_fn", loglikelihood_fn, particle)
        _check_function_output("logprior_fn", logprior_fn, particle)
        return init(rng_key, num_particles, initial_sampler, loglikelihood_fn, mutation.initial_scale(d))

    return ParticleAlgorithm(
        init=init_fn,
        step=step,
        num_steps=num_steps,
        is_done=is_done,
        check_initial=_nonfinite_check(float(max_nonfinite_fraction)),
        postprocess_fn=postprocess_fn,
        resampling=resampling if isinstance(resampling, str) else None,
        check_final=_completion_check(max_steps if schedule is None else None),
        nonfinite_source="loglikelihood_fn (or logprior_fn + temperature x loglikelihood_fn at a move)",
    )


def _finite(loglikelihood):
    return jnp.where(jnp.isfinite(loglikelihood), loglikelihood, -jnp.inf)
