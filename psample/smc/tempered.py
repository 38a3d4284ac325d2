"""Tempered sequential Monte Carlo with model evidence.

Likelihood tempering moves a weighted population of particles through the bridge

.. math::

    \\pi_\\lambda(x) \\propto p(x)\\, L(x)^{\\lambda}, \\qquad
    0 = \\lambda_0 < \\lambda_1 < \\dots < \\lambda_T = 1,

from the prior :math:`p` to the posterior (Neal [3]; Del Moral, Doucet and Jasra [1]). One
step from :math:`\\lambda_{t-1}` to :math:`\\lambda_t`:

1. **reweight** by :math:`g_i = L(x_i)^{\\lambda_t - \\lambda_{t-1}}`; the evidence estimate
   grows by :math:`\\log \\sum_i W_i g_i` (normalised weights ``W`` carried into the step, so
   the increment is right whether or not the previous step resampled);
2. **resample** (``blackjax.smc.resampling``) when the effective sample size
   (``blackjax.smc.ess``) falls below ``resample_ess * N``;
3. **move** every particle by ``num_mcmc_steps`` steps of a Markov kernel that leaves
   :math:`\\pi_{\\lambda_t}` invariant, tuned from the weighted population at this level.

The schedule is fixed (``schedule``) or adaptive: :math:`\\lambda_t` solves, by bisection
(``blackjax.smc.solver.dichotomy``, as BlackJAX's ``adaptive_tempered_smc``), for a conditional
ESS (Zhou, Johansen and Aston [4]) of ``target_ess`` times its value at :math:`\\delta = 0^+`;
with equal weights this is BlackJAX's ESS rule, and unlike it, it also holds when the step did
not start from a resampled population.

The product of the increments, :math:`\\hat Z`, is an unbiased estimate of the evidence
:math:`Z = \\int p(x) L(x)\\,dx` for a fixed schedule ([2], §7.4.2); the adaptive schedule adds a
bias that vanishes as ``N`` grows.

Mutation kernels (``mcmc=``), all tuned from the weighted particles at each level with the
weighted mean ``m`` and covariance ``C = L Lᵀ``, cross-fitted: each half of the population is
moved with the other half's statistics, so that no particle tunes its own kernel (which breaks
invariance; see ``_cross_fitted_tuning``):

- ``"rwm"``: Gaussian random-walk Metropolis (BlackJAX ``additive_step_random_walk``) with
  proposal covariance ``s² C``; the scale ``s`` starts at ``2.38/sqrt(d)`` and follows the
  acceptance rate to 0.234 from level to level;
- ``"hmc"``: BlackJAX HMC with inverse mass matrix ``diag(C)`` (``metric="diagonal"``, the
  default) or ``C`` (``"dense"``); the step size starts at ``d^(-1/4)`` and follows the
  acceptance rate to 0.65;
- ``"polar_slice"``: psample's Gibbsian polar slice sampler (Schär, Habeck and Rudolf [5])
  run in the standardised coordinates ``z = L⁻¹(x - m)``, where the population is centred at the
  origin of the polar decomposition; ``w`` is the weighted standard deviation of ``‖z‖``.
  It needs no acceptance-rate tuning and no gradient, and its radius moves are robust to the
  heavy tails of early, nearly-prior levels.

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
.. [5] Philip Schär, Michael Habeck and Daniel Rudolf, "Gibbsian polar slice sampling",
   ICML 2023, PMLR 202:30204-30223. arXiv:2302.03945.
"""

from __future__ import annotations

import numbers
from typing import Callable, NamedTuple

import blackjax
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from blackjax.smc import solver
from blackjax.types import Array, ArrayTree, PRNGKey
from jax.scipy.special import logsumexp

from psample.errors import DtypeError, InvalidTuningError, ModelError, ShapeError, check_positive, check_positive_int
from psample.mcmc import polar_slice
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


# ------------------------------------------------------------------------------------------
# Mutation kernels: tuned from the weighted population, run on flat (d,) positions.


class _Tuned(NamedTuple):
    mean: Array  # (d,)
    chol: Array  # (d, d) lower Cholesky factor of the weighted covariance, or (d,) its diagonal's sqrt
    scale: Array  # ()


def _from_z(tuned: _Tuned, z: Array) -> Array:
    """``m + L z`` (dense frame) or ``m + s * z`` (diagonal frame)."""
    return tuned.mean + (tuned.chol * z if tuned.chol.ndim == 1 else tuned.chol @ z)


def _to_z(tuned: _Tuned, x: Array) -> Array:
    """The inverse of :func:`_from_z`, for one ``(d,)`` point or rows ``(n, d)``."""
    centred = x - tuned.mean
    if tuned.chol.ndim == 1:
        return centred / tuned.chol
    return jax.scipy.linalg.solve_triangular(tuned.chol, centred.T, lower=True).T


class _Mutation(NamedTuple):
    initial_scale: Callable  # d -> float
    level_scale: Callable  # (carried scale, flat, weights, chol) -> scale used at this level
    adapt: Callable  # (scale used, mean acceptance) -> scale carried to the next level
    move: Callable  # (key, x, logdensity, tuned, num_steps) -> (x, acceptance, num_evals, num_nonfinite)
    metric: str = "dense"  # "dense" (full covariance of the particles) or "diagonal" (variances)


def _carried_scale(scale, flat, weights, chol):
    return scale


def _adapt_to_acceptance(target: float) -> Callable:
    # BlackJAX's update_scale_from_acceptance_rate rule, for one shared scale.
    def adapt(scale, acceptance):
        return scale * jnp.exp(acceptance - target)

    return adapt


def _no_adaptation(scale, acceptance):
    return scale


def _run_chain(kernel_step, state, key, num_steps):
    def body(state, key):
        state, info = kernel_step(key, state)
        return state, info

    return jax.lax.scan(body, state, jax.random.split(key, num_steps))


def _rwm_move(key, x, logdensity, tuned, num_steps):
    # BlackJAX's additive-step random walk (build_rmh's proposal, energy and acceptance, the
    # same keys), written out because its info reports the accepted state as the "proposal":
    # the proposal's log-density is needed to count NaN and +inf values.
    acceptance_ratio = blackjax.mcmc.proposal.compute_asymmetric_acceptance_ratio(
        blackjax.mcmc.random_walk.build_rmh_transition_energy(None)
    )

    def random_step(k, position):
        noise = jax.random.normal(k, position.shape, dtype=position.dtype)
        return tuned.scale * (tuned.chol * noise if tuned.chol.ndim == 1 else tuned.chol @ noise)

    def rw_step(k, state):
        key_proposal, key_accept = jax.random.split(k, 2)
        position = state.position + random_step(key_proposal, state.position)
        proposed = blackjax.mcmc.random_walk.RWState(position, logdensity(position))
        log_p_accept = acceptance_ratio(state, proposed)
        state, (_, p_accept, _) = blackjax.mcmc.proposal.static_binomial_sampling(
            key_accept, log_p_accept, state, proposed
        )
        return state, (p_accept, proposed.logdensity)

    state = blackjax.additive_step_random_walk.init(x, logdensity)
    state, (acceptance, proposed) = _run_chain(rw_step, state, key, num_steps)
    nonfinite = count_nonfinite_logdensity(proposed)
    return state.position, jnp.mean(acceptance), jnp.asarray(num_steps, jnp.int32), nonfinite


def _hmc_move(num_integration_steps):
    def move(key, x, logdensity, tuned, num_steps):
        # HMC with inverse mass L L^T on x is HMC with the identity on z = L^-1 (x - m): the
        # same trajectories and acceptances. Running it in z spares BlackJAX's dense metric,
        # which inverts and factors the mass matrix at every step of every particle.
        def logdensity_z(z):
            return logdensity(_from_z(tuned, z))

        kernel = blackjax.hmc.build_kernel()
        if tuned.chol.ndim == 1:
            # Diagonal frame: HMC on x with inverse mass diag(s²) is HMC with the identity on
            # z = (x - m) / s, and costs one product per leapfrog step (the kinetic energy's)
            # where the frame costs two (x from z, and the gradient back to z).
            state = blackjax.hmc.init(x, logdensity)
            state, info = _run_chain(
                lambda k, s: kernel(k, s, logdensity, tuned.scale, tuned.chol**2, num_integration_steps),
                state, key, num_steps,
            )  # fmt: skip
            position = state.position
        else:
            state = blackjax.hmc.init(_to_z(tuned, x), logdensity_z)
            identity = jnp.ones_like(x)
            state, info = _run_chain(
                lambda k, s: kernel(k, s, logdensity_z, tuned.scale, identity, num_integration_steps),
                state, key, num_steps,
            )  # fmt: skip
            position = _from_z(tuned, state.position)
        evals = jnp.sum(info.num_integration_steps).astype(jnp.int32)
        nonfinite = count_nonfinite_logdensity(info.proposal.logdensity)
        return position, jnp.mean(info.acceptance_rate), evals, nonfinite

    return move


def _polar_move(max_proposals):
    kernel = polar_slice.build_kernel(max_proposals)

    def move(key, x, logdensity, tuned, num_steps):
        # Standardised coordinates z = L^-1 (x - m): the population sits around the origin
        # of the polar decomposition and is roughly isotropic. The map is affine and fixed
        # during the moves, so invariance for z carries over to x.
        def logdensity_z(z):
            return logdensity(_from_z(tuned, z))

        state = polar_slice.init(_to_z(tuned, x), logdensity_z)
        state, info = _run_chain(lambda k, s: kernel(k, s, logdensity_z, tuned.scale), state, key, num_steps)
        x_new = _from_z(tuned, state.position)
        nonfinite = jnp.sum(info.num_nonfinite).astype(jnp.int32)
        return x_new, jnp.ones((), x.dtype), jnp.sum(info.num_evals).astype(jnp.int32), nonfinite

    return move


def _polar_window(scale, flat, weights, chol):
    """``w`` = weighted standard deviation of the standardised radii (floored at 0.1)."""
    mean = jnp.sum(weights[:, None] * flat, axis=0)
    z = _to_z(_Tuned(mean, chol, jnp.ones(())), flat)
    radius = jnp.linalg.norm(z, axis=1)
    r_mean = jnp.sum(weights * radius)
    sd = jnp.sqrt(jnp.sum(weights * (radius - r_mean) ** 2))
    return jnp.maximum(sd, 0.1)


#: Mutation kernels by name: (description, factory(options) -> _Mutation).
MUTATIONS = {
    "rwm": "Gaussian random-walk Metropolis (BlackJAX), covariance from the particles, scale to 0.234 acceptance",
    "hmc": "HMC (BlackJAX), inverse mass matrix from the particles, step size to 0.65 acceptance",
    "polar_slice": "psample's Gibbsian polar slice sampler in coordinates standardised by the particles",
}


METRICS = ("dense", "diagonal")


def _build_mutation(mcmc: str, options: dict) -> _Mutation:
    options = dict(options or {})
    # HMC defaults to the diagonal frame: on the three models of benchmarks/smc.py its log-Z
    # error equalled the dense frame's at 15% less time per level (BENCHMARKS.md). Polar slice
    # keeps the dense frame, which makes the population isotropic around its origin.
    metric = options.pop("metric", "diagonal" if mcmc == "hmc" else "dense")
    if metric not in METRICS:
        raise InvalidTuningError(f"mcmc_parameters['metric'] must be one of {list(METRICS)}, got {metric!r}")
    if mcmc == "rwm":
        scale = options.pop("scale", None)
        scale = None if scale is None else check_positive("mcmc_parameters['scale']", scale)
        mutation = _Mutation(
            lambda d: scale if scale is not None else 2.38 / np.sqrt(d),
            _carried_scale, _adapt_to_acceptance(0.234), _rwm_move,
        )  # fmt: skip
    elif mcmc == "hmc":
        step_size = options.pop("step_size", None)
        step_size = None if step_size is None else check_positive("mcmc_parameters['step_size']", step_size)
        steps = check_positive_int("mcmc_parameters['num_integration_steps']", options.pop("num_integration_steps", 10))
        mutation = _Mutation(
            lambda d: step_size if step_size is not None else d**-0.25,
            _carried_scale, _adapt_to_acceptance(0.65), _hmc_move(steps),
        )  # fmt: skip
    elif mcmc == "polar_slice":
        max_proposals = check_positive_int("mcmc_parameters['max_proposals']", options.pop("max_proposals", 1000))
        mutation = _Mutation(lambda d: 1.0, _polar_window, _no_adaptation, _polar_move(max_proposals))
    else:
        raise InvalidTuningError(f"mcmc must be one of {sorted(MUTATIONS)}, got {mcmc!r}")
    if options:
        raise InvalidTuningError(f"unknown mcmc_parameters for mcmc={mcmc!r}: {sorted(options)}")
    return mutation._replace(metric=metric)


def _weighted_moments(flat: Array, weights: Array, metric: str = "dense") -> tuple[Array, Array]:
    """Weighted mean ``(d,)`` and lower Cholesky factor ``(d, d)`` of the weighted covariance
    (``metric="dense"``), or the weighted standard deviations ``(d,)`` (``"diagonal"``).

    A ridge of ``1e-9`` times the mean variance (plus a tiny absolute floor) keeps the factor
    finite when the particles are fewer than the dimension or have collapsed.
    """
    mean = jnp.sum(weights[:, None] * flat, axis=0)
    centred = flat - mean
    if metric == "diagonal":
        var = jnp.sum(weights[:, None] * centred**2, axis=0)
        ridge = 1e-9 * jnp.mean(var) + jnp.finfo(flat.dtype).tiny ** 0.5
        return mean, jnp.sqrt(var + ridge)
    cov = (weights[:, None] * centred).T @ centred
    d = flat.shape[1]
    ridge = 1e-9 * jnp.trace(cov) / d + jnp.finfo(flat.dtype).tiny ** 0.5
    return mean, jnp.linalg.cholesky(cov + ridge * jnp.eye(d, dtype=flat.dtype))


def _cross_fitted_tuning(flat, weights, carried_scale, mutation):
    """Kernel parameters for each half of the population, from the *other* half.

    A kernel tuned from a population that contains the particle it moves is no longer
    invariant (the particle moves its own mass matrix; with HMC's long trajectories we measured
    a 3% variance inflation at N = 100 that did not shrink at N = 400). Cross-fitting removes
    that self-dependence: particles ``i < N/2`` are moved with the statistics of ``i >= N/2``
    and vice versa. Resampling (every ``blackjax.smc.resampling`` scheme, multinomial included:
    it draws sorted uniforms) keeps a particle's copies at neighbouring indices, so copies fall
    on the same side but for the boundary. A half holding no weight (possible between
    resamplings) borrows the whole population's statistics.

    Returns
    -------
    tuned
        :class:`_Tuned` with a leading axis of 2 (statistics of the first and the second half):
        particles ``i < N/2`` use ``tuned[1]``, the others ``tuned[0]``.
    """
    num = weights.shape[0]
    second = jnp.arange(num) >= num // 2
    tuned = []
    for mask in (~second, second):
        mass = jnp.sum(jnp.where(mask, weights, 0.0))
        half_weights = jnp.where(mass > 1e-12, jnp.where(mask, weights, 0.0) / jnp.where(mass > 0, mass, 1.0), weights)
        mean, chol = _weighted_moments(flat, half_weights, mutation.metric)
        scale = mutation.level_scale(carried_scale, flat, half_weights, chol)
        tuned.append(_Tuned(mean, chol, jnp.asarray(scale, flat.dtype)))
    return jax.tree.map(lambda a, b: jnp.stack([a, b]), *tuned)


# ------------------------------------------------------------------------------------------


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
    mutation: _Mutation,
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

        tuned = _cross_fitted_tuning(flat, weights, state.scale, mutation)
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
            "or a smaller target_ess (larger temperature steps), in psample.smc.tempered."
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


#: Mutation steps per level when ``num_mcmc_steps`` is not given (measured: BENCHMARKS.md).
DEFAULT_NUM_MCMC_STEPS = {"hmc": 5, "rwm": 10, "polar_slice": 10}


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
        Mutation kernel: ``"rwm"``, ``"hmc"`` or ``"polar_slice"`` (see the module docstring);
        ``"polar_slice"`` needs particles with at least two entries.
    num_mcmc_steps
        Mutation steps per particle per level (>= 1). Default (``None``): 5 for ``"hmc"``, 10
        for ``"rwm"`` and ``"polar_slice"``. With HMC, 5 moves of a tuned, whitened kernel reach
        the same log-Z error as 10 for less time on the three benchmark models (BENCHMARKS.md,
        tempered SMC, run 4: 0.65-1.03x BlackJAX's CPU time at equal error, against 1.0-1.2x
        with 10).
    target_ess
        In ``(0, 1]``: the adaptive schedule's conditional-ESS target, and the default
        resampling threshold. ``1`` with an adaptive schedule would never move the temperature
        and is rejected.
    schedule
        ``None`` (adaptive) or an increasing sequence of temperatures from 0 to 1; the number of
        steps is then ``len(schedule) - 1``.
    resampling
        ``"multinomial"`` (default), ``"systematic"``, ``"stratified"``, ``"residual"``
        (``blackjax.smc.resampling``) or such a function. Multinomial is the scheme for which
        a single replicate's error bars (:attr:`psample.ParticleResult.log_Z_se` with
        ``num_replicates=1``, Lee and Whiteley's estimator) are valid; on eight schools they
        were 4x too small with systematic resampling, whose own ``log_Z`` spread over seeds was
        about the same (0.066 against 0.069 over 64 seeds of 500 particles; BENCHMARKS.md). With several replicates any scheme has valid errors.
    resample_ess
        Resample when the ESS after reweighting falls below ``resample_ess * N``; ``1``
        resamples every step. Default: ``1`` with the adaptive schedule (every step, as
        BlackJAX; it gave a lower log-Z error at equal evaluations than resampling when the ESS
        falls below ``N/2`` on all three models of ``benchmarks/smc.py``, up to 1.6x lower in
        RMSE), ``target_ess`` with a fixed schedule.
    mcmc_parameters
        Options of the kernel: ``"rwm"``: ``scale``; ``"hmc"``: ``step_size`` (initial),
        ``num_integration_steps`` (default 10); ``"polar_slice"``: ``max_proposals``. Every
        kernel: ``metric``, the frame tuned from the particles at each level: ``"dense"``
        (default of ``"rwm"`` and ``"polar_slice"``; their covariance, a ``d x d`` product per
        log-density evaluation) or ``"diagonal"`` (default of ``"hmc"``; their variances,
        folded into HMC's inverse mass matrix; cheaper per evaluation, and as accurate on the
        benchmark models; prefer ``"dense"`` for strongly correlated posteriors).
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
    mutation = _build_mutation(mcmc, mcmc_parameters)
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
