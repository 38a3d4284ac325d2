"""Chain of log-concave Markov chains (one-at-a-time walk-jump sampling).

Saremi, Park and Bach [1] sample a density :math:`p` on :math:`\\mathbb{R}^d` through noisy
measurements :math:`y_k = x + \\sigma \\varepsilon_k`, :math:`k = 1, \\dots, m`, drawn one at a
time, each from its conditional law given the previous ones. That conditional depends on the past
only through the running mean :math:`\\bar y_k`, its score is
:math:`(\\bar y_k - y_k)/\\sigma^2 + \\frac1k \\nabla \\log p_{\\sigma/\\sqrt k}(\\bar y_k)` with
:math:`p_s = p * N(0, s^2 I)` the smoothed density, and it is log-concave once :math:`\\sigma`
exceeds the radius of the target's mass ([1], Theorem 1). Each conditional is sampled by a short
Langevin chain (the *walk*); the *jump* :math:`\\hat x_k = E[X \\mid y_{1:k}] = \\bar y_k +
\\frac{\\sigma^2}{k} \\nabla \\log p_{\\sigma/\\sqrt k}(\\bar y_k)` (Tweedie's formula [2]) estimates
the clean sample, and :math:`\\hat x_m` is the sample. Walk-jump sampling is the case
:math:`m = 1`. The smoothed score is given (``smoothed_score`` / ``smoothed_logdensity``: a
denoiser or an exact formula) or estimated by importance sampling from ``logdensity_fn``
(:mod:`psample.mcmc.smoothed_score`). Inner kernels (:data:`INNER_KERNELS`): ``"underdamped"``
(the A-B-O-B-A splitting of Sachs, Leimkuhler and Danos [3]), ``"ula"`` and ``"mala"``
(BlackJAX's); time is measured in units of :math:`\\sigma^2`, so the relative step lies in
``(0, MAX_STEP_SIZE)``. Each inner chain starts at the re-noised jump
:math:`\\hat x_{k-1} + \\sigma\\xi`, as in Grenioux et al. [4].

See the :doc:`family page </families/logconcave_chain>` for the method, tuning and measured limits.

Contract
--------
:func:`as_top_level_api` (exported as :func:`psample.logconcave_chain`) returns a
:class:`psample.base.ChainAlgorithm`: ``init(position) -> LogConcaveChainState`` (``position`` a
pytree without a chain axis, the jump :math:`\\hat x_0` the first walk starts from) and
``step(rng_key, state) -> (LogConcaveChainState, LogConcaveChainInfo)``. One step adds one
measurement (the inner chain runs in ``lax.fori_loop``) and sets ``state.position`` to the jump
:math:`\\hat x_k`, so a chain's draws are the trajectory :math:`\\hat x_1, \\dots, \\hat x_m`;
the step after the ``m``-th starts a new chain of measurements from the re-noised jump
:math:`\\hat x_m + \\sigma\\xi`, so draws ``m, 2m, ...`` are successive samples
(``psample.sample(..., thin=m)``, or :func:`psample.logconcave_chain_samples`). The state's
flat fields have shape ``(d,)``; the info fields are scalars: evaluation counts
(``num_score_evals``, ``num_density_evals``), ``acceptance_rate`` (MALA), ``score_ess`` (the
importance weights' relative ESS) and ``num_nonfinite``.

Limits
------
- The sample is drawn from the law of :math:`E[X \\mid Y_{1:m}]`, not from :math:`p`: its bias
  is at most :math:`d\\sigma^2/m` in squared :math:`W_2`, and it is under-dispersed within
  each mode.
- Below the log-concavity threshold the first conditional is multimodal, and a short first walk
  leaves the mode weights where the chains started (:func:`default_steps_schedule`).
- The importance-sampling score degenerates in more than a few dimensions and on narrow,
  separated modes: the mode weights are then biased. :func:`psample.sample` and
  :func:`psample.logconcave_chain_samples` warn when the first measurement rests on fewer than
  :data:`MIN_EFFECTIVE_SCORE_SAMPLES` effective proposals (``state.first_score_ess`` times
  ``num_score_samples``).
- Non-finite evaluations are dropped (importance sampling) or leave the walk in place (a given
  score), are counted in ``info.num_nonfinite`` and warned about at the end of the run; no jump
  is ever NaN.

References
----------
.. [1] Saeed Saremi, Ji Won Park and Francis Bach, "Chain of Log-Concave Markov Chains",
   International Conference on Learning Representations (ICLR), 2024. arXiv:2305.19473.
.. [2] Saeed Saremi and Aapo Hyvärinen, "Neural Empirical Bayes", Journal of Machine Learning
   Research 20(181), 1-23, 2019.
.. [3] Matthias Sachs, Benedict Leimkuhler and Vincent Danos, "Langevin Dynamics with Variable
   Coefficients and Nonconservative Forces: From Stationary States to Numerical Methods",
   Entropy 19(12), 647, 2017.
.. [4] Louis Grenioux, Maxence Noble, Marylou Gabrié and Alain Oliviero Durmus, "Stochastic
   Localization via Iterative Posterior Sampling", ICML 2024 (github.com/h2o64/slips).
"""

from __future__ import annotations

import numbers
from typing import Callable, NamedTuple

import blackjax.mcmc.mala as blackjax_mala
import blackjax.sgmcmc.diffusions as sgmcmc_diffusions
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from blackjax.base import build_sampling_algorithm
from blackjax.types import Array, ArrayLikeTree, ArrayTree

from psample.base import ChainAlgorithm
from psample.errors import (
    InitialPointError,
    InvalidTuningError,
    ModelError,
    check_positive,
    check_positive_int,
)
from psample.mcmc.smoothed_score import (
    DEFAULT_NUM_SCORE_SAMPLES,
    MIN_EFFECTIVE_SCORE_SAMPLES,
    SCORE_ESTIMATORS,
    SUPPORT_RELATIVE_WEIGHT,
    SmoothedScore,
    check_score_ess,
    exact_smoothed_score,
    importance_smoothed_score,
)

__all__ = [
    "LogConcaveChainState",
    "LogConcaveChainInfo",
    "SmoothedScore",
    "INNER_KERNELS",
    "SCORE_ESTIMATORS",
    "MAX_STEP_SIZE",
    "DEFAULT_NUM_SCORE_SAMPLES",
    "SUPPORT_RELATIVE_WEIGHT",
    "MIN_EFFECTIVE_SCORE_SAMPLES",
    "check_score_ess",
    "exact_smoothed_score",
    "importance_smoothed_score",
    "default_steps_schedule",
    "conditional_score",
    "conditional_logdensity",
    "init",
    "build_kernel",
    "as_top_level_api",
]

#: Inner Langevin kernels, by name.
INNER_KERNELS = ("underdamped", "ula", "mala")
#: Relative step sizes must lie in ``(0, MAX_STEP_SIZE)``: with time in units of ``σ²`` every
#: conditional has curvature at most 1, and the Euler (ULA/MALA drift) and leapfrog
#: (underdamped) steps are unstable on a curvature-1 direction from ``h = 2`` on.
MAX_STEP_SIZE = 2.0


class LogConcaveChainState(NamedTuple):
    """State of a chain of log-concave Markov chains after ``k`` measurements.

    position
        The jump ``x̂_k = E[X | y_1..y_k]``, a pytree with the structure given to :func:`init`
        (at ``k = 0`` the position given to :func:`init`).
    measurement
        The latest measurement ``y_k``, flat, shape ``(d,)`` (at ``k = 0`` the initial position).
    mean
        The running mean ``ȳ_k`` of the measurements, shape ``(d,)`` (zeros at ``k = 0``).
    num_measurements
        ``k``, int32 scalar in ``0..m``; the step after ``k = m`` starts a new chain of
        measurements (``k = 1``).
    logdensity_grad
        The smoothed score ``∇ log p_{σ/√k}(ȳ_k)`` the jump used, shape ``(d,)``; at ``k = 0``
        ``∇ log p_σ`` at the initial position. (Named as in BlackJAX's Langevin states, so that
        ``psample.sample`` checks that it is finite at every chain's initial point.)
    chain_num_nonfinite
        int32 scalar: non-finite evaluations (as ``LogConcaveChainInfo.num_nonfinite``) over the
        measurements ``1..k`` of the current chain of measurements (0 at ``k = 0``), so that a
        run keeping only every ``m``-th draw still sees them.
    first_score_ess
        Mean relative ESS of the importance weights over the score estimates of the first
        measurement of the current chain of measurements (the one that decides the mode); 1 for
        a given score and at ``k = 0``.
    """

    position: ArrayTree
    measurement: Array
    mean: Array
    num_measurements: Array
    logdensity_grad: Array
    chain_num_nonfinite: Array
    first_score_ess: Array


class LogConcaveChainInfo(NamedTuple):
    """Diagnostics of one step (one measurement); all scalars.

    measurement
        ``k``, the number of measurements the new state holds (1..m).
    num_inner_steps
        Steps of the inner Langevin chain on the ``k``-th conditional.
    num_score_evals
        Smoothed-score evaluations: the inner chain's (one per step, plus one at its start for
        ULA and MALA) and the jump's.
    num_density_evals
        Target evaluations they cost: ``num_score_evals`` for a given score, times
        ``num_score_samples`` for the importance-sampling estimator (densities for
        ``"tweedie"``, density-and-gradient pairs otherwise). The budget to compare samplers by.
    acceptance_rate
        Mean MALA acceptance probability over the inner chain; NaN for the unadjusted kernels.
    score_ess
        Smallest relative effective sample size ``(Σ w_i)² / (N Σ w_i²)`` of the importance
        weights over this step's score estimates (1 is ideal; near ``1/N`` the estimate rests
        on one sample); NaN when the score is given.
    num_nonfinite
        int32: evaluations this step that were not finite. For a given score: score
        evaluations with a NaN or infinite entry (the inner chain does not move on one, the
        jump falls back to ``x̂_k = ȳ_k``), and for ``inner="mala"`` proposals whose acceptance
        ratio is NaN (rejected). For the importance-sampling estimator: proposals whose
        log-density was NaN or ``+inf``, or whose gradient was not finite (dropped from the
        weights). The runner warns when any is positive.
    """

    measurement: Array
    num_inner_steps: Array
    num_score_evals: Array
    num_density_evals: Array
    acceptance_rate: Array
    score_ess: Array
    num_nonfinite: Array


def default_steps_schedule(num_measurements: int, steps_per_measurement: int = 20, first_steps: int = 200):
    """Inner steps per measurement: ``first_steps`` for the first, ``steps_per_measurement`` after.

    The first measurement carries the mode decision. Its conditional, ``p_σ`` itself, is the
    widest and the flattest (where ``σ`` sits near the log-concavity threshold the curvature along
    the line between modes almost vanishes), so its inner chain must travel ``~σ`` in every
    direction; later conditionals are narrower (``σ/√k``-smoothed) and start at the re-noised
    jump, near where they concentrate.

    Returns
    -------
    numpy.ndarray
        ``(num_measurements,)`` int32.
    """
    m = check_positive_int("num_measurements", num_measurements)
    schedule = np.full(m, check_positive_int("steps_per_measurement", steps_per_measurement), dtype=np.int32)
    schedule[0] = check_positive_int("first_steps", first_steps)
    return schedule


def conditional_score(y, previous_mean, k, sigma, smoothed_score_at_mean):
    """Score of the ``k``-th measurement's conditional, ``∇_{y} log p(y_k = y | y_{1:k-1})``.

    ``(ȳ_k - y)/σ² + (1/k) ∇log p_{σ/√k}(ȳ_k)`` with ``ȳ_k = ȳ_{k-1} + (y - ȳ_{k-1})/k``.

    Parameters
    ----------
    y, previous_mean
        Flat ``(d,)``: the candidate ``y_k`` and the running mean ``ȳ_{k-1}`` (any value at ``k = 1``).
    k
        Measurement index ``>= 1`` (may be traced).
    sigma
        Noise scale.
    smoothed_score_at_mean
        ``∇ log p_{σ/√k}(ȳ_k)``, shape ``(d,)``, evaluated by the caller at ``ȳ_k``.
    """
    kf = jnp.asarray(k, y.dtype)
    ybar = previous_mean + (y - previous_mean) / kf
    return (ybar - y) / sigma**2 + smoothed_score_at_mean / kf


def conditional_logdensity(y, previous_mean, k, sigma, smoothed_logdensity):
    """``log p(y_k = y | y_{1:k-1})`` up to a constant: ``-(1-1/k)‖y - ȳ_{k-1}‖²/(2σ²) + log p_{σ/√k}(ȳ_k)``.

    From the sufficiency of the mean, ``log p(y_{1:k}) = -Σ_l ‖y_l - ȳ_k‖²/(2σ²) +
    log p_{σ/√k}(ȳ_k) + const``; written in ``y - ȳ_{k-1}`` so that no large terms cancel.
    ``smoothed_logdensity(ybar, s)`` acts on flat ``(d,)`` vectors. Its gradient in ``y`` is
    :func:`conditional_score`; its Hessian ``-I/σ² + Cov(X | y_{1:k})/σ⁴`` is negative definite
    (log-concave) when ``σ`` is large enough, and never below ``-I/σ²``.
    """
    kf = jnp.asarray(k, y.dtype)
    delta = y - previous_mean
    ybar = previous_mean + delta / kf
    quad = -(1.0 - 1.0 / kf) * jnp.sum(delta**2) / (2.0 * sigma**2)
    return quad + smoothed_logdensity(ybar, sigma / jnp.sqrt(kf))


def _flat(tree):
    return jax.flatten_util.ravel_pytree(tree)[0]


def init(position: ArrayLikeTree, source: SmoothedScore, sigma: float) -> LogConcaveChainState:
    """Create the state at ``k = 0`` from ``position`` (the jump ``x̂_0`` the first walk starts from).

    Parameters
    ----------
    position
        A pytree of floating arrays (no chain axis).
    source
        The smoothed-score source (:func:`exact_smoothed_score`, :func:`importance_smoothed_score`).
    sigma
        Noise scale ``σ > 0``.

    Returns
    -------
    LogConcaveChainState
        With ``logdensity_grad = ∇ log p_σ(position)`` (an importance-sampling source uses the
        fixed key ``PRNGKey(0)`` here: the value only serves the finiteness check; it is NaN when
        no proposal has positive density).

    Raises
    ------
    InitialPointError
        If the position is concrete and the smoothed score is not finite there.
    """
    flat, unravel = jax.flatten_util.ravel_pytree(position)
    score, ess, _ = source.score(jax.random.PRNGKey(0), position, jnp.asarray(sigma, flat.dtype))
    # An importance-sampling estimate with no proposal of positive density (ESS 0) is undefined:
    # NaN here, so that the runner's check of the initial states names the chain.
    score = jnp.where(ess == 0, jnp.nan, _flat(score).astype(flat.dtype))
    if not isinstance(score, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(score))):
        raise InitialPointError(
            f"the smoothed score at scale sigma={float(sigma)!r} is not finite at the initial position "
            f"{position!r} (score {np.asarray(score)!r}); start inside the support or check smoothed_score"
        )
    return LogConcaveChainState(
        position=position,
        measurement=flat,
        mean=jnp.zeros_like(flat),
        num_measurements=jnp.asarray(0, jnp.int32),
        logdensity_grad=score,
        chain_num_nonfinite=jnp.asarray(0, jnp.int32),
        first_score_ess=jnp.asarray(1.0, flat.dtype),
    )


def _finite(x):
    return jnp.all(jnp.isfinite(x))


def _underdamped_walk(rng_key, y, cond_score, num_steps, h, friction, u):
    """``num_steps`` steps of the Sachs-Leimkuhler-Danos splitting, velocity drawn from ``N(0, uI)``.

    A step whose score is not finite is undone (position kept, velocity refreshed) and counted.
    Returns ``(y, min ESS, sum of ESS, score evaluations, NaN acceptance, num_nonfinite)``.
    """
    dtype = y.dtype
    zeta = jnp.exp(-friction * h)
    noise_scale = jnp.sqrt(u * (1.0 - zeta**2))
    v_key, loop_key = jax.random.split(rng_key)
    v = jnp.sqrt(u) * jax.random.normal(v_key, y.shape, dtype)

    def body(i, carry):
        y_old, v_old, ess_min, ess_sum, bad = carry
        score_key, noise_key = jax.random.split(jax.random.fold_in(loop_key, i))
        xi = jax.random.normal(noise_key, y_old.shape, dtype)
        y = y_old + 0.5 * h * v_old
        psi, e, nf = cond_score(score_key, y)
        ok = _finite(psi)
        psi = jnp.where(ok, psi, 0.0)
        v = v_old + 0.5 * u * h * psi
        v = zeta * v + 0.5 * u * h * psi + noise_scale * xi
        y = y + 0.5 * h * v
        y = jnp.where(ok, y, y_old)
        v = jnp.where(ok, v, jnp.sqrt(u) * xi)
        return y, v, jnp.fmin(ess_min, e), ess_sum + e, bad + nf

    zero = jnp.zeros((), dtype)
    carry = (y, v, jnp.asarray(jnp.nan, dtype), zero, jnp.zeros((), jnp.int32))
    y, _, ess_min, ess_sum, bad = jax.lax.fori_loop(0, num_steps, body, carry)
    return y, ess_min, ess_sum, num_steps, jnp.asarray(jnp.nan, dtype), bad


def _ula_walk(rng_key, y, cond_score, num_steps, h, u):
    """``num_steps`` Euler-Maruyama steps ``y += hu g(y) + sqrt(2hu) ξ`` (BlackJAX's SGLD step).

    A move to a point whose score is not finite is undone and counted (as is a non-finite
    score at the start, where the chain then waits with a zero drift).
    """
    euler = sgmcmc_diffusions.overdamped_langevin()
    first_key, loop_key = jax.random.split(rng_key)
    g, ess, bad = cond_score(first_key, y)
    g = jnp.where(_finite(g), g, 0.0)

    def body(i, carry):
        y_old, g_old, ess_min, ess_sum, bad = carry
        step_key, score_key = jax.random.split(jax.random.fold_in(loop_key, i))
        y = euler(step_key, y_old, g_old, h * u)
        g, e, nf = cond_score(score_key, y)
        ok = _finite(g)
        return (
            jnp.where(ok, y, y_old),
            jnp.where(ok, g, g_old),
            jnp.fmin(ess_min, e),
            ess_sum + e,
            bad + nf,
        )

    y, _, ess_min, ess_sum, bad = jax.lax.fori_loop(0, num_steps, body, (y, g, ess, ess, bad))
    return y, ess_min, ess_sum, num_steps + 1, jnp.asarray(jnp.nan, y.dtype), bad


def _mala_walk(rng_key, y, cond_logdensity, num_steps, h, u):
    """``num_steps`` steps of BlackJAX's MALA kernel with step size ``hu``.

    ``+inf`` log-densities are turned into NaN, so that a proposal with a NaN or ``+inf``
    log-density (or a non-finite gradient) gets a NaN acceptance ratio, which BlackJAX rejects;
    those are counted. (A smoothed density ``p_s``, ``s > 0``, is positive everywhere, so a
    legitimate ``-inf`` does not occur.)
    """
    kernel = blackjax_mala.build_kernel()

    def logdensity(y):
        value = cond_logdensity(y)
        return jnp.where(value == jnp.inf, jnp.nan, value)

    state = blackjax_mala.init(y, logdensity)

    def body(i, carry):
        state, acc, bad = carry
        state, info = kernel(jax.random.fold_in(rng_key, i), state, logdensity, h * u)
        nan = jnp.isnan(info.acceptance_rate)
        return state, acc + jnp.where(nan, 0.0, info.acceptance_rate), bad + nan

    carry = (state, jnp.zeros((), y.dtype), jnp.zeros((), jnp.int32))
    state, acc, bad = jax.lax.fori_loop(0, num_steps, body, carry)
    mean_acc = acc / jnp.maximum(num_steps, 1).astype(y.dtype)
    nan = jnp.asarray(jnp.nan, y.dtype)
    return state.position, nan, nan, num_steps + 1, mean_acc, bad


def build_kernel(inner: str = "underdamped") -> Callable:
    """Build the one-measurement kernel.

    Parameters
    ----------
    inner
        Static choice of inner kernel, one of :data:`INNER_KERNELS`.

    Returns
    -------
    kernel
        ``kernel(rng_key, state, source, sigma, num_measurements, schedule, step_size, friction)
        -> (LogConcaveChainState, LogConcaveChainInfo)``. ``source`` is a :class:`SmoothedScore`;
        ``schedule`` the ``(num_measurements,)`` int array of inner steps per measurement;
        ``sigma``, ``step_size`` (relative, in ``(0, 2)``) and ``friction`` may be traced.
    """
    if inner not in INNER_KERNELS:
        raise InvalidTuningError(f"inner must be one of {INNER_KERNELS}, got {inner!r}")

    def kernel(rng_key, state, source, sigma, num_measurements, schedule, step_size, friction):
        _, unravel = jax.flatten_util.ravel_pytree(state.position)
        x_hat = _flat(state.position)
        dtype = x_hat.dtype
        sigma = jnp.asarray(sigma, dtype)
        var = sigma**2
        h = jnp.asarray(step_size, dtype)

        # Past the m-th measurement a new chain of measurements starts (k = 1, empty mean).
        restart = state.num_measurements >= num_measurements
        k = jnp.where(restart, 1, state.num_measurements + 1)
        kf = k.astype(dtype)
        previous_mean = jnp.where(restart, jnp.zeros_like(state.mean), state.mean)
        s = sigma / jnp.sqrt(kf)

        def flat_score(key, ybar):
            score, ess, nf = source.score(key, unravel(ybar), s)
            return _flat(score).astype(dtype), jnp.asarray(ess, dtype), jnp.asarray(nf, jnp.int32)

        def running_mean(y):
            return previous_mean + (y - previous_mean) / kf

        def cond_score(key, y):
            score, ess, nf = flat_score(key, running_mean(y))
            return conditional_score(y, previous_mean, k, sigma, score), ess, nf

        init_key, walk_key, jump_key = jax.random.split(rng_key, 3)
        # Start at the re-noised jump x̂_{k-1} + σ ξ (x̂_0 = the initial position).
        y0 = x_hat + sigma * jax.random.normal(init_key, x_hat.shape, dtype)
        num_steps = jnp.asarray(schedule, jnp.int32)[k - 1]
        if inner == "underdamped":
            y, ess, ess_sum, evals, acc, walk_nonfinite = _underdamped_walk(
                walk_key, y0, cond_score, num_steps, h, jnp.asarray(friction, dtype), var
            )
        elif inner == "ula":
            y, ess, ess_sum, evals, acc, walk_nonfinite = _ula_walk(walk_key, y0, cond_score, num_steps, h, var)
        else:

            def cond_logdensity(y):
                return conditional_logdensity(
                    y, previous_mean, k, sigma, lambda ybar, s: source.logdensity(unravel(ybar), s)
                )

            y, ess, ess_sum, evals, acc, walk_nonfinite = _mala_walk(
                walk_key, y0, cond_logdensity, num_steps, h, var
            )

        ybar = running_mean(y)
        score, jump_ess, jump_nonfinite = flat_score(jump_key, ybar)
        # No jump on a non-finite score: fall back to the running mean (counted).
        score = jnp.where(_finite(score), score, 0.0)
        new_x_hat = ybar + (var / kf) * score
        num_score_evals = jnp.asarray(evals, jnp.int32) + 1
        num_nonfinite = walk_nonfinite + jump_nonfinite
        previous_nonfinite = jnp.where(restart, 0, state.chain_num_nonfinite)
        mean_ess = (ess_sum + jump_ess) / num_score_evals.astype(dtype)
        mean_ess = jnp.where(jnp.isnan(mean_ess), 1.0, mean_ess)  # a given score
        new_state = LogConcaveChainState(
            position=unravel(new_x_hat),
            measurement=y,
            mean=ybar,
            num_measurements=k.astype(jnp.int32),
            logdensity_grad=score,
            chain_num_nonfinite=previous_nonfinite + num_nonfinite,
            first_score_ess=jnp.where(k == 1, mean_ess, state.first_score_ess),
        )
        info = LogConcaveChainInfo(
            measurement=k.astype(jnp.int32),
            num_inner_steps=num_steps,
            num_score_evals=num_score_evals,
            num_density_evals=num_score_evals * source.cost,
            acceptance_rate=acc,
            score_ess=jnp.fmin(ess, jump_ess),
            num_nonfinite=num_nonfinite,
        )
        return new_state, info

    return kernel


def _check_step_size(step_size):
    if isinstance(step_size, jax.core.Tracer):
        return step_size
    value = check_positive("step_size", step_size)
    if not value < MAX_STEP_SIZE:
        raise InvalidTuningError(
            f"step_size must lie in (0, {MAX_STEP_SIZE:g}), got {step_size!r}: it is relative to σ² "
            "(the inverse of the 1/σ² smoothness bound every conditional obeys), and a step of 2 or "
            "more is unstable on a conditional whose curvature reaches that bound"
        )
    return value


def _check_schedule(steps_per_measurement, num_measurements):
    if steps_per_measurement is None:
        return default_steps_schedule(num_measurements)
    if isinstance(steps_per_measurement, numbers.Integral) and not isinstance(steps_per_measurement, bool):
        schedule = default_steps_schedule(num_measurements, steps_per_measurement, steps_per_measurement)
        return schedule
    try:
        schedule = np.asarray(steps_per_measurement)
    except Exception:  # noqa: BLE001 - anything not array-like
        schedule = None
    if (
        schedule is None
        or schedule.shape != (num_measurements,)
        or not np.issubdtype(schedule.dtype, np.integer)
        or np.any(schedule < 1)
    ):
        raise InvalidTuningError(
            "steps_per_measurement must be an integer >= 1 or a sequence of num_measurements="
            f"{num_measurements} integers >= 1, got {steps_per_measurement!r}"
        )
    return schedule.astype(np.int32)


def as_top_level_api(
    logdensity_fn: Callable | None = None,
    *,
    sigma: float,
    num_measurements: int,
    steps_per_measurement=None,
    step_size: float = 0.5,
    smoothed_score: Callable | None = None,
    smoothed_logdensity: Callable | None = None,
    inner: str = "underdamped",
    friction: float = 1.0,
    num_score_samples: int = 256,
    score_estimator: str | None = None,
) -> ChainAlgorithm:
    """Chain of log-concave Markov chains (Saremi, Park and Bach, 2024); one step = one measurement.

    Examples
    --------
    .. code::

        smoothed = psample.models.smoothed_gaussian_mixture(weights, means, covs)
        colcmc = psample.logconcave_chain(sigma=5.7, num_measurements=256,
                                          smoothed_score=smoothed.score)
        state = colcmc.init(position)
        for k in range(256):                      # or psample.sample(..., num_draws=256)
            state, info = colcmc.step(keys[k], state)
        sample = state.position                   # x̂_m; the draws before it tunnel there

    Parameters
    ----------
    logdensity_fn
        ``position -> scalar`` unnormalised log-density of the target. Used only when no
        ``smoothed_score``/``smoothed_logdensity`` is given, through the importance-sampling
        estimator (:func:`importance_smoothed_score`).
    sigma
        Noise scale ``σ > 0`` of every measurement. Choose it at least the radius of the target's
        mass (for a mixture: the largest distance of a mean from the centre, plus the largest
        component standard deviation), so that every conditional is log-concave; larger
        ``σ`` conditions the conditionals better and needs more measurements.
    num_measurements
        ``m >= 1``; the output's bias is at most ``dσ²/m`` in squared ``W2``. ``m = 1`` is
        walk-jump sampling.
    steps_per_measurement
        Inner steps per measurement: an integer (every measurement, the first included), a
        sequence of ``m`` integers, or ``None`` for :func:`default_steps_schedule` (200 steps on
        the first measurement, which makes the mode decision, then 20). At or above the
        log-concavity threshold a short first walk suffices; below it the first conditional is
        not log-concave and a short first walk leaves the mode weights where the walk started.
        Give the first measurement ``~100 / step_size`` steps or more, and more again when
        ``σ`` is below the threshold.
    step_size
        Relative step ``h`` in ``(0, 2)``: the inner chains step ``h σ²`` in Langevin time, time
        being measured in units of ``σ²``, the inverse of the ``1/σ²`` smoothness bound.
    smoothed_score
        ``(y, s) -> ∇ log p_s(y)`` (``y`` shaped like a position, ``s`` a scalar noise scale),
        e.g. a trained denoiser's score or ``psample.models.smoothed_gaussian_mixture(...).score``.
    smoothed_logdensity
        ``(y, s) -> log p_s(y)`` up to a constant in ``y``; needed by ``inner="mala"``, and gives
        the score by autodiff when ``smoothed_score`` is not given.
    inner
        ``"underdamped"`` (default), ``"ula"`` or ``"mala"``.
    friction
        Friction ``γ > 0`` of the underdamped kernel, per unit of relative time (``γ = 1`` is
        critical damping on the stiffest direction allowed by the smoothness bound).
    num_score_samples
        Proposals per importance-sampling score estimate (``>= 2``).
    score_estimator
        ``"tweedie"``, ``"identity"`` or ``"mixed"`` (default ``"mixed"``); only for the
        importance-sampling estimator.

    Returns
    -------
    psample.base.ChainAlgorithm
        ``init(position) -> LogConcaveChainState``, ``step(rng_key, state) ->
        (LogConcaveChainState, LogConcaveChainInfo)``.

    Raises
    ------
    InvalidTuningError
        ``sigma <= 0``, ``num_measurements < 1``, ``step_size`` outside ``(0, 2)``, a bad
        schedule, friction or sample count, an unknown ``inner``/``score_estimator``, or
        ``inner="mala"`` without ``smoothed_logdensity``.
    ModelError
        If neither a log-density nor a smoothed score (or smoothed log-density) is given.
    InitialPointError
        From ``init``, if the smoothed score is not finite at the initial position.
    ShapeError
        From ``init`` (before any draw), if ``smoothed_score`` returns another shape than the
        position, or ``smoothed_logdensity`` a non-scalar.
    """
    sigma = check_positive("sigma", sigma)
    num_measurements = check_positive_int("num_measurements", num_measurements)
    step_size = _check_step_size(step_size)
    friction = check_positive("friction", friction)
    schedule = _check_schedule(steps_per_measurement, num_measurements)
    if inner not in INNER_KERNELS:
        raise InvalidTuningError(f"inner must be one of {INNER_KERNELS}, got {inner!r}")
    if smoothed_score is not None and not callable(smoothed_score):
        raise ModelError(f"smoothed_score must be a function (y, s) -> score, got {smoothed_score!r}")
    if smoothed_logdensity is not None and not callable(smoothed_logdensity):
        raise ModelError(f"smoothed_logdensity must be a function (y, s) -> scalar, got {smoothed_logdensity!r}")
    if smoothed_score is not None or smoothed_logdensity is not None:
        if score_estimator is not None:
            raise InvalidTuningError(
                f"score_estimator={score_estimator!r} applies only to the importance-sampling "
                "estimator, but a smoothed score was given"
            )
        source = exact_smoothed_score(smoothed_score, smoothed_logdensity)
    elif logdensity_fn is not None:
        if not callable(logdensity_fn):
            raise ModelError(f"logdensity_fn must be a function, got {logdensity_fn!r}")
        source = importance_smoothed_score(logdensity_fn, num_score_samples, score_estimator or "mixed")
    else:
        raise ModelError(
            "logconcave_chain needs logdensity_fn (for the importance-sampling score estimate) or "
            "smoothed_score / smoothed_logdensity; got none of them"
        )
    if inner == "mala" and source.logdensity is None:
        raise InvalidTuningError(
            "inner='mala' needs the smoothed log-density log p_s (its acceptance ratio uses the "
            "conditional's density): pass smoothed_logdensity, or use inner='underdamped' or 'ula'"
        )
    kernel = build_kernel(inner)
    algorithm = build_sampling_algorithm(
        kernel,
        init,
        source,
        init_args=(sigma,),
        kernel_args=(sigma, num_measurements, jnp.asarray(schedule), step_size, friction),
    )
    def check_estimator_regime(trace):
        # From the chains' final states: each chain's first measurement.
        check_score_ess(np.asarray(trace.final_state.first_score_ess), num_score_samples)

    estimated = smoothed_score is None and smoothed_logdensity is None
    return ChainAlgorithm(algorithm.init, algorithm.step, check_trace=check_estimator_regime if estimated else None)
