"""Training-free reverse diffusion with Monte Carlo scores, corrected by exact SMC weights.

The target ``π ∝ γ`` is noised by an affine forward process (:mod:`psample.schedules`), and the
reverse process runs from its Gaussian reference at ``t = 1`` to ``t_min`` on a grid uniform in
``log(σ_t/α_t)``. At every step each particle's score of the noised target
``q_t(x) = ∫ γ(x_0) N(x; α_t x_0, σ_t² I) dx_0`` is estimated from ``M = num_score_samples``
draws of ``p(x_0 | x_t = x)`` (self-normalised importance sampling from the Gaussian posterior
of the data model ``x_0 ~ N(0, τ² I)``, ``τ = data_std``; or MALA on that posterior,
``score_estimator="langevin"``), as in RDMC [1] and iDEM [2]; the move is the Gaussian
one-step transition that Tweedie's formula builds from it. The same draws give an unbiased
estimate ``q̂_t(x)`` of the noised density, and with it the population is an SMC sampler
(Del Moral, Doucet and Jasra [3]) on the extended space of the paths and the draws, with the
forward transition as backward kernel:

.. math::

    \\log g_n = \\log \\hat q_{t_{n+1}}(x_{n+1}) + \\log B_n(x_n \\mid x_{n+1})
              - \\log \\hat q_{t_n}(x_n) - \\log F_n(x_{n+1} \\mid x_n)

(``q̂_{t_K} := γ``), so ``log_Z`` is unbiased in ``Z`` whatever ``M``, the score's quality or
the step count: the score only shapes the proposal. ``correction=False`` runs the plain reverse
SDE (uniform weights, ``log_Z`` NaN).

See the :doc:`family page </families/diffusion>` for the method, tuning and measured limits.

Contract
--------
``reverse_diffusion(logdensity_fn, *, schedule, num_steps, num_score_samples, ...)`` returns a
:class:`psample.base.ParticleAlgorithm` for :func:`psample.run_particles`: one ``step`` is one
time step (move, reweight, resample by ``resampling=`` when the ESS falls below
``resample_ess · N``); the state (:class:`ReverseDiffusionState`) holds ``particles``
``(N, d)``, ``log_weights`` ``(N,)`` and ``log_Z`` ``()``, the info
(:class:`ReverseDiffusionInfo`) ``ess``, ``log_Z_increment``, ``is_resampled``, ``time``,
``num_evals`` and ``num_nonfinite``. Positions are flat ``(d,)`` vectors. NaN or ``+inf``
values of the target are counted in ``info.num_nonfinite`` and get weight zero; ``-inf`` is
zero density.

Limits
------
Each step costs ``N · num_score_samples`` target evaluations. The weights stay exact whatever
the score's quality, but the proposal is only as good as the score: when the importance draws
degenerate (high dimension, modes far beyond ``data_std``) the particles miss modes, the ESS
collapses and ``log Z`` has a large variance (and, for modes never reached, a bias no error bar
shows).

References
----------
.. [1] Xunpeng Huang, Hanze Dong, Yifan Hao, Yian Ma and Tong Zhang, "Reverse diffusion Monte
   Carlo", ICLR 2024. arXiv:2307.02037.
.. [2] Tara Akhound-Sadegh et al., "Iterated denoising energy matching for sampling from
   Boltzmann densities", ICML 2024. arXiv:2402.06121.
.. [3] Pierre Del Moral, Arnaud Doucet and Ajay Jasra, "Sequential Monte Carlo samplers",
   Journal of the Royal Statistical Society B 68(3), 411-436, 2006.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.types import Array
from jax.scipy.special import logsumexp

from psample.diffusion.processes import gaussian_logpdf, nonfinite_evaluation, nonfinite_value
from psample.schedules import Schedule
from psample.diffusion.validation import check_logdensity, check_reference_finite, check_time
from psample.errors import InvalidTuningError, ModelError, check_positive, check_positive_int
from psample.smc.base import ParticleAlgorithm, resample_if, resampling_fn, reweight

__all__ = ["ReverseDiffusionState", "ReverseDiffusionInfo", "ScoreEstimate", "estimate_score",
           "time_grid", "reverse_diffusion", "ESTIMATORS"]  # fmt: skip

ESTIMATORS = ("importance", "langevin")


class ReverseDiffusionState(NamedTuple):
    """One population of reverse diffusion.

    particles
        ``(N, d)`` the particles ``x_n`` at time ``t_n``.
    log_weights
        ``(N,)`` normalised log-weights.
    log_Z
        ``()`` running estimate of ``log Z`` (NaN without correction).
    log_target
        ``(N,)`` each particle's ``log q̂_{t_n}(x_n)`` (its intermediate target), resampled with it.
    score
        ``(N, d)`` each particle's estimated score ``ŝ_n``.
    step
        ``()`` int32, ``n``.
    eve, num_resampled
        ``(N,)`` initial ancestors and ``()`` resampling count (single-run error of log Z).
    pending_nonfinite
        ``()`` int32: non-finite evaluations of the initial population's estimates, reported
        in the first step's info (0 after it).
    """

    particles: Array
    log_weights: Array
    log_Z: Array
    log_target: Array
    score: Array
    step: Array
    eve: Array
    num_resampled: Array
    pending_nonfinite: Array


class ReverseDiffusionInfo(NamedTuple):
    """Per step: ``ess`` ``()`` after reweighting, ``log_Z_increment`` ``()``, ``is_resampled``
    ``()``, ``time`` ``()`` (``t_{n+1}``), ``num_evals`` ``()`` target evaluations (with
    gradient) this step, all particles together, and ``num_nonfinite`` ``()`` int32: how many
    of them returned NaN or ``+inf``, or a non-finite gradient at a finite value (the first
    step also counts the initial population's). Such a draw gets weight zero in the
    estimates; ``-inf`` (zero density) is not counted."""

    ess: Array
    log_Z_increment: Array
    is_resampled: Array
    time: Array
    num_evals: Array
    num_nonfinite: Array


class ScoreEstimate(NamedTuple):
    """``log_density`` ``()``: ``log q̂_t(x)``; ``score`` ``(d,)``: ``ŝ_t(x)``;
    ``num_nonfinite`` ``()`` int32: the estimate's target evaluations that were non-finite
    (:func:`psample.diffusion.processes.nonfinite_evaluation`)."""

    log_density: Array
    score: Array
    num_nonfinite: Array


def time_grid(schedule: Schedule, num_steps: int, t_min: float) -> np.ndarray:
    """``t_0 = 1 > … > t_K = t_min`` uniform in the log noise-to-signal ratio ``log(σ_t/α_t)``
    (uniform in ``t`` for :class:`VE`): every step shrinks the noise by the same factor."""
    fine = np.linspace(t_min, 1.0, 100_001)
    ratio = np.asarray(np.log(schedule.sigma(fine)) - schedule.log_alpha(fine), dtype=np.float64)
    wanted = np.linspace(ratio[-1], ratio[0], num_steps + 1)
    grid = np.interp(wanted, ratio, fine)
    grid[0], grid[-1] = 1.0, t_min
    return grid


def estimate_score(rng_key, logdensity_fn, schedule: Schedule, t, x, num_samples: int, *,
                   estimator: str = "importance", data_std: float = 1.0, num_langevin_steps: int = 5,
                   langevin_step_size: float = 0.1) -> ScoreEstimate:  # fmt: skip
    """Monte Carlo estimate of ``log q_t(x)`` (unbiased in ``exp``) and ``∇ log q_t(x)``
    (consistent) for one point ``x`` ``(d,)`` (see the :doc:`family page </families/diffusion>`)."""
    d = x.shape[0]
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    tau2 = data_std**2
    c = alpha**2 * tau2 + sigma**2
    snr2 = (alpha**2 * tau2 / sigma**2) ** 2
    lam = snr2 / (1.0 + snr2)
    is_key, mcmc_key = jax.random.split(rng_key)
    z = jax.random.normal(is_key, (num_samples, d), x.dtype)
    x0 = alpha * tau2 * x / c + jnp.sqrt(tau2 * sigma**2 / c) * z
    log_gamma, grads = jax.vmap(jax.value_and_grad(logdensity_fn))(x0)
    bad = jnp.sum(jax.vmap(nonfinite_evaluation)(log_gamma, grads))
    # NaN or +inf is not a density: the draw gets weight zero, and is counted.
    log_gamma = jnp.where(nonfinite_value(log_gamma), -jnp.inf, log_gamma)
    log_u = log_gamma - gaussian_logpdf(x0, 0.0, tau2)
    log_sum = logsumexp(log_u)
    log_density = gaussian_logpdf(x, 0.0, c) + log_sum - math.log(num_samples)
    # Every draw outside the support: uniform weights keep the score finite (the particle's
    # density estimate is 0, so its weight is 0 anyway).
    weights = jnp.where(jnp.isfinite(log_sum), jax.nn.softmax(log_u), 1.0 / num_samples)
    grads = jnp.where(jnp.isfinite(grads), grads, 0.0)

    def combined(points, point_grads, w):
        ratio = (alpha * points - x) / sigma**2
        score = w @ ((1.0 - lam) * ratio + lam * point_grads / alpha)
        # The posterior mean E[x_0 | x] the score implies (Tweedie) is a weighted average of
        # draws; the gradient form can leave their range when the draws' weights degenerate
        # (high dimension, steep tails), so clip it back coordinate-wise.
        denoised = jnp.clip((x + sigma**2 * score) / alpha, points.min(axis=0), points.max(axis=0))
        return (alpha * denoised - x) / sigma**2

    if estimator == "importance":
        score = combined(x0, grads, weights)
    else:
        indices = jax.random.choice(jax.random.fold_in(mcmc_key, 0), num_samples, (num_samples,), p=weights)
        score, bad_mcmc = _langevin_score(mcmc_key, logdensity_fn, x, alpha, sigma, x0[indices], num_langevin_steps,
                                          langevin_step_size * tau2 * sigma**2 / c, combined)  # fmt: skip
        bad = bad + bad_mcmc
    return ScoreEstimate(log_density, score, bad.astype(jnp.int32))


def _langevin_score(rng_key, logdensity_fn, x, alpha, sigma, x0, num_steps, step_size, combined):
    """MALA on ``p(x_0 | x_t = x)`` from ``x0`` ``(M, d)``: ``(score, num_nonfinite)``, the
    combined score at the end and the non-finite target evaluations of the chains."""

    def log_post(y):
        return logdensity_fn(y) - jnp.sum((x - alpha * y) ** 2) / (2 * sigma**2)

    value_grad = jax.vmap(jax.value_and_grad(log_post))
    count = lambda lp, g: jnp.sum(jax.vmap(nonfinite_evaluation)(lp, g))

    def one(carry, key):
        y, lp, g, bad = carry
        k1, k2 = jax.random.split(key)
        prop = y + step_size * g + jnp.sqrt(2 * step_size) * jax.random.normal(k1, y.shape, y.dtype)
        lp_new, g_new = value_grad(prop)
        bad = bad + count(lp_new, g_new)

        def log_q(to, frm, g_frm):
            return -jnp.sum((to - frm - step_size * g_frm) ** 2, axis=1) / (4 * step_size)

        log_ratio = lp_new - lp + log_q(y, prop, g_new) - log_q(prop, y, g)
        log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
        accept = jnp.log(jax.random.uniform(k2, lp.shape, y.dtype)) < log_ratio
        y = jnp.where(accept[:, None], prop, y)
        return (y, jnp.where(accept, lp_new, lp), jnp.where(accept[:, None], g_new, g), bad), None

    lp, g = value_grad(x0)
    start = (x0, lp, g, count(lp, g))
    (y, _, _, bad), _ = jax.lax.scan(one, start, jax.random.split(rng_key, num_steps))
    values, target_grads = jax.vmap(jax.value_and_grad(logdensity_fn))(y)
    bad = bad + count(values, target_grads)
    target_grads = jnp.where(jnp.isfinite(target_grads), target_grads, 0.0)
    return combined(y, target_grads, jnp.full((y.shape[0],), 1.0 / y.shape[0], y.dtype)), bad


def reverse_diffusion(
    logdensity_fn: Callable,
    *,
    schedule: Schedule,
    num_steps: int,
    num_score_samples: int,
    score_estimator: str = "importance",
    dim: int | None = None,
    data_std: float = 1.0,
    t_min: float = 1e-3,
    correction: bool = True,
    resampling="systematic",
    resample_ess: float = 0.5,
    score_fn: Callable | None = None,
    num_langevin_steps: int = 5,
    langevin_step_size: float = 0.1,
    max_nonfinite_fraction: float = 0.1,
) -> ParticleAlgorithm:
    """Reverse diffusion toward ``exp(logdensity_fn)`` with Monte Carlo scores and SMC weights.

    Examples
    --------
    .. code::

        target = psample.models.gmm25()
        algorithm = psample.diffusion.reverse_diffusion(
            target.logdensity_fn, dim=2, schedule=psample.diffusion.VP(), num_steps=100,
            num_score_samples=64)
        result = psample.run_particles(algorithm, jax.random.key(0), 1000, num_replicates=4)
        print(result.log_Z_mean, "+-", result.log_Z_se)   # exact: 0

    Parameters
    ----------
    logdensity_fn
        ``(d,) -> scalar`` unnormalised log-density, or a :class:`psample.Target` on a flat
        vector (its dimension is then read from it).
    schedule
        The forward process (:class:`psample.diffusion.VP` or :class:`~psample.diffusion.VE`);
        the population starts at its reference ``N(0, reference_std² I)``.
    num_steps
        Reverse steps ``K >= 1``.
    num_score_samples
        ``M >= 1`` Monte Carlo draws per particle per step (each one target evaluation with
        gradient).
    score_estimator
        ``"importance"`` or ``"langevin"`` (:doc:`family page </families/diffusion>`).
    dim
        Dimension ``d`` (required with a plain function).
    data_std
        ``τ``, the rough scale of the target, setting the importance proposal
        (:doc:`family page </families/diffusion>`).
    t_min
        Last time of the grid, in ``(0, 1)``.
    correction
        Weight and resample (exact ``log_Z``); ``False``: the plain reverse SDE.
    resampling, resample_ess
        A ``blackjax.smc.resampling`` scheme, and the ESS fraction in ``(0, 1]`` below which it
        resamples (``1``: every step).
    score_fn
        Optional exact score ``(t, x) -> ∇ log q_t(x)`` used for the moves instead of the
        estimate (tests; the weights still use the Monte Carlo density estimates).
    num_langevin_steps, langevin_step_size
        The ``"langevin"`` estimator's MALA steps and step size (in units of the posterior
        variance scale ``σ_t² / c_t``).
    max_nonfinite_fraction
        Refuse targets whose log-density is non-finite at more than this fraction of draws from
        the reference.

    Returns
    -------
    psample.smc.ParticleAlgorithm
        Run it with :func:`psample.run_particles`; info per step: ESS, log-Z increment,
        resampled, time, target evaluations.

    Raises
    ------
    InvalidTuningError
        ``num_steps < 1``, ``num_score_samples < 1``, ``t_min`` outside ``(0, 1)``, an unknown
        estimator or resampling scheme, ``resample_ess`` outside ``(0, 1]``.
    ShapeError
        ``logdensity_fn`` does not map ``(dim,)`` to a scalar, or ``dim`` is missing.
    ModelError
        The log-density is non-finite at too many reference draws (the message gives the fraction).
    """
    if hasattr(logdensity_fn, "logdensity_fn") and hasattr(logdensity_fn, "init_fn"):
        target = logdensity_fn
        logdensity_fn = target.logdensity_fn
        shape = jax.eval_shape(lambda k: target.init_fn(k, 1), jax.random.key(0))
        if not hasattr(shape, "shape") or len(shape.shape) != 2:
            raise ModelError(f"reverse_diffusion needs a target on a flat vector; {target.name!r} has positions {shape}")
        if dim is not None and dim != shape.shape[1]:
            from psample.errors import ShapeError

            raise ShapeError(f"dim={dim!r} does not match target {target.name!r}, of dimension {shape.shape[1]}")
        dim = shape.shape[1]
    if dim is None:
        from psample.errors import ShapeError

        raise ShapeError("reverse_diffusion(logdensity_fn, dim=...): dim, the length of the vector x the "
                         "log-density takes, is needed with a plain function (got dim=None); a psample.Target "
                         "(e.g. psample.models.get(name)) carries its own")  # fmt: skip
    if not isinstance(schedule, Schedule):
        raise InvalidTuningError(f"schedule must be a psample.diffusion.VP or VE, got {schedule!r}")
    num_steps = check_positive_int("num_steps", num_steps)
    num_score_samples = check_positive_int("num_score_samples", num_score_samples)
    if not isinstance(score_estimator, str) or score_estimator not in ESTIMATORS:
        raise InvalidTuningError(f"score_estimator must be one of {list(ESTIMATORS)}, got {score_estimator!r}")
    t_min = check_time("t_min", t_min)
    data_std = check_positive("data_std", data_std)
    num_langevin_steps = check_positive_int("num_langevin_steps", num_langevin_steps)
    langevin_step_size = check_positive("langevin_step_size", langevin_step_size)
    resample = resampling_fn(resampling)
    if not 0.0 < float(resample_ess) <= 1.0:
        raise InvalidTuningError(f"resample_ess must be in (0, 1], got {resample_ess!r}")
    resample_ess = float(resample_ess)
    if score_fn is not None and not callable(score_fn):
        raise InvalidTuningError(f"score_fn must be a function (t, x) -> score, got {score_fn!r}")
    dim = check_logdensity(logdensity_fn, dim)
    ref_std = float(schedule.reference_std())
    check_reference_finite(logdensity_fn, dim, ref_std, jax.random.key(0), max_fraction=max_nonfinite_fraction)

    times = time_grid(schedule, num_steps, t_min)
    evals_per_estimate = num_score_samples * (num_langevin_steps + 3 if score_estimator == "langevin" else 1)

    def estimate(key, t, x):
        est = estimate_score(key, logdensity_fn, schedule, t, x, num_score_samples, estimator=score_estimator,
                             data_std=data_std, num_langevin_steps=num_langevin_steps, langevin_step_size=langevin_step_size)  # fmt: skip
        if score_fn is not None:
            est = est._replace(score=score_fn(t, x))
        return est

    def estimate_all(key, t, xs):
        keys = jax.random.split(key, xs.shape[0])
        return jax.vmap(estimate, in_axes=(0, None, 0))(keys, t, xs)

    def init(rng_key, num_particles):
        dtype = jnp.zeros(()).dtype
        draw_key, score_key = jax.random.split(rng_key)
        x = ref_std * jax.random.normal(draw_key, (num_particles, dim), dtype)
        est = estimate_all(score_key, jnp.asarray(times[0], dtype), x)
        return ReverseDiffusionState(
            particles=x,
            log_weights=jnp.full((num_particles,), -jnp.log(num_particles), dtype),
            log_Z=jnp.asarray(0.0 if correction else jnp.nan, dtype),
            log_target=gaussian_logpdf(x, 0.0, ref_std**2),
            score=est.score,
            step=jnp.zeros((), jnp.int32),
            eve=jnp.arange(num_particles, dtype=jnp.int32),
            num_resampled=jnp.zeros((), jnp.int32),
            pending_nonfinite=jnp.sum(est.num_nonfinite).astype(jnp.int32),
        )

    def step(rng_key, state):
        move_key, score_key, resample_key = jax.random.split(rng_key, 3)
        n = state.step
        table = jnp.asarray(times, state.particles.dtype)
        t, t_next = table[n], table[n + 1]
        a = schedule.alpha(t) / schedule.alpha(t_next)
        v = schedule.sigma(t) ** 2 - a**2 * schedule.sigma(t_next) ** 2
        # The one-step posterior variance under the data model N(0, τ² I): v c_{t'} / c_t.
        c_now = schedule.alpha(t) ** 2 * data_std**2 + schedule.sigma(t) ** 2
        c_next = schedule.alpha(t_next) ** 2 * data_std**2 + schedule.sigma(t_next) ** 2
        var = v * c_next / c_now
        x = state.particles
        mean = (x + v * state.score) / a
        x_next = mean + jnp.sqrt(var) * jax.random.normal(move_key, x.shape, x.dtype)
        last = n + 1 == num_steps
        est = estimate_all(score_key, t_next, x_next)
        final = jax.vmap(logdensity_fn)(x_next)
        bad_final = last & nonfinite_value(final)
        log_target = jnp.where(last, final, est.log_density)
        # NaN or +inf is not a density: weight zero, counted (a NaN estimate q̂ cannot arise:
        # the estimate already counted and dropped its non-finite draws).
        log_target = jnp.where(nonfinite_value(log_target), -jnp.inf, log_target)
        num_nonfinite = state.pending_nonfinite + jnp.sum(est.num_nonfinite) + jnp.sum(bad_final)
        num_particles = x.shape[0]
        if correction:
            log_g = (log_target + gaussian_logpdf(x, a * x_next, v)
                     - state.log_target - gaussian_logpdf(x_next, mean, var))  # fmt: skip
            new = reweight(state.log_weights, log_g)
            do_resample = new.ess_below(resample_ess) & ~last
            (x_next, log_target, score), log_weights, eve = resample_if(
                resample_key, do_resample, (x_next, log_target, est.score), new.log_weights, state.eve, resample
            )
            log_Z, increment, ess = state.log_Z + new.log_Z_increment, new.log_Z_increment, new.ess
        else:
            do_resample = jnp.zeros((), bool)
            score, log_weights, eve = est.score, state.log_weights, state.eve
            log_Z, increment = state.log_Z, jnp.asarray(jnp.nan, x.dtype)
            ess = jnp.asarray(num_particles, x.dtype)
        new_state = ReverseDiffusionState(x_next, log_weights, log_Z, log_target, score, n + 1, eve,
                                          state.num_resampled + do_resample.astype(jnp.int32),
                                          jnp.zeros((), jnp.int32))  # fmt: skip
        info = ReverseDiffusionInfo(ess, increment, do_resample, t_next,
                                    jnp.asarray(num_particles * (evals_per_estimate + 1), jnp.int32),
                                    num_nonfinite.astype(jnp.int32))  # fmt: skip
        return new_state, info

    return ParticleAlgorithm(init=init, step=step, num_steps=num_steps,
                             resampling=resampling if isinstance(resampling, str) else None)  # fmt: skip
