"""Feynman–Kac correctors (FKC): SMC over pretrained diffusion score models.

Given score models :math:`s_i(t, x) \\approx \\nabla \\log q^{(i)}_t(x)` of diffusions that share
one affine forward SDE :math:`dx = k_t x\\,dt + g_t\\,dW` (a :mod:`psample.schedules` schedule),
FKC (Skreta et al. [1]) samples the weighted product of experts

.. math::

    p_t(x) \\propto \\prod_i q^{(i)}_t(x)^{b_i}, \\qquad S = \\sum_i b_i s_i, \\quad B = \\sum_i b_i,

which covers annealing (one model, :math:`b = \\beta`), products of experts
(:math:`b_1 = b_2 = 1`) and classifier-free guidance as a geometric mixture
(:math:`b = (1 - w, w)`). Particles follow the reverse SDE with drift
:math:`-k_t x + \\tfrac{g_t^2 + c_t^2}{2} S` and noise :math:`c_t` from ``t = 1`` to ``t_min``,
weighted by the rate :math:`G_t(x) = (B - 1)\\, d\\, k_t + \\tfrac{g_t^2}{2}(|S|^2 - \\sum_i b_i
|s_i|^2)`, in which the scores' divergence cancels: no log-density is needed. One step
reweights by :math:`e^{h G_t}` (:func:`psample.smc.base.reweight`), resamples
(``blackjax.smc.resampling``) when the ESS falls below ``resample_ess * N``, and moves by
Euler–Maruyama with the same scores: one evaluation of each score per particle per step. The
initial population is :math:`N(0, s^2 I / B)`, ``s = schedule.reference_std()``. ``noise=r``
(:math:`c_t^2 = r g_t^2`, ``r > 1``) adds a Langevin corrector at no extra evaluation with the
same weights; ``weights="stein"`` (psample's) moves the :math:`|s_i|^2` terms into a drift
change and a divergence estimated from each step's own noise (:func:`stein_divergence`).

See the :doc:`family page </families/fkc>` for the method, tuning and measured limits.

Contract
--------
:func:`as_top_level_api` (exported as :func:`psample.smc.fkc_smc`, with the special cases
:func:`fkc_anneal`, :func:`fkc_product` and :func:`fkc_guidance`) returns a
:class:`psample.base.ParticleAlgorithm` over :class:`FKCState` (``particles`` ``(N, *shape)``,
``log_weights`` ``(N,)``, ``log_Z`` ``()``, ...) with :class:`FKCInfo` per step (``ess``,
``log_Z_increment``, ``is_resampled``, ``time``, ``num_score_evals``, ``num_nonfinite``) and
``num_steps`` steps; :func:`psample.run_particles` runs it. The final weighted population
targets :math:`\\prod_i q^{(i)}_{t_{min}}{}^{b_i}`, and ``log_Z`` estimates
:math:`\\log \\int \\prod_i q^{(i)}_{t_{min}}{}^{b_i} - \\log \\int \\prod_i q^{(i)}_1{}^{b_i}`.
Score functions ``s(t, x)`` take one particle and return an array shaped like it; a non-finite
score is counted (``info.num_nonfinite``) and gives the particle weight zero, never in silence.
``start_resampling_step = k`` forbids resampling during the first ``k`` steps but keeps the
weights (the authors' runner drops them there, which changes the target).

Known limits
------------
- Every estimate, ``log_Z`` most visibly, carries an :math:`O(h)` discretisation bias (the
  weights discretise continuous-time weights); the target is the product at ``t_min``.
- Under VE the initial population matches :math:`q_1` only when ``sigma_max`` dwarfs the data;
  the mismatch is not corrected by the weights.
- Narrow modes need fine steps (``time_grid="quadratic"`` spends them near ``t = 0``); Langevin
  noise is stiffer still, and with the score weights the error of the mode masses on multimodal
  targets falls much more slowly than ``1/sqrt(N)``.
- ``noise="tempered"`` is unstable for ``B > 2`` (it shrinks the variance and loses modes).
- With ``B = 1`` (guidance) ``weights="stein"`` has nothing to move and runs the score weights.

References
----------
.. [1] Marta Skreta, Tara Akhound-Sadegh, Viktor Ohanesian, Roberto Bondesan, Alán
   Aspuru-Guzik, Arnaud Doucet, Rob Brekelmans, Alexander Tong and Kirill Neklyudov,
   "Feynman-Kac Correctors in Diffusion: Annealing, Guidance, and Product of Experts",
   ICML 2025. arXiv:2503.02819.
.. [2] Yang Song, Jascha Sohl-Dickstein, Diederik P. Kingma, Abhishek Kumar, Stefano Ermon and
   Ben Poole, "Score-based generative modeling through stochastic differential equations",
   ICLR 2021. arXiv:2011.13456.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.types import Array, PRNGKey

from psample.schedules import Schedule
from psample import _deprecated
from psample.errors import InvalidTuningError, ShapeError, check_positive, check_positive_int
from psample.smc.base import ParticleAlgorithm, count_nonfinite_score, resample_if, resampling_fn, reweight

__all__ = [
    "FKCState",
    "FKCInfo",
    "NOISES",
    "noise_ratio",
    "WEIGHTS",
    "stein_fraction",
    "TIME_GRIDS",
    "log_weight_rate",
    "time_grid",
    "init",
    "build_kernel",
    "build_stein_kernel",
    "stein_divergence",
    "as_top_level_api",
    "fkc_anneal",
    "fkc_product",
    "fkc_guidance",
]

#: Named noise levels ``c_t`` of the reverse SDE (the weight rate is the same for all); a number
#: ``r > 0`` gives ``c_t^2 = r g_t^2`` (``r > 1``: Langevin noise, see the
#: :doc:`family page </families/fkc>`).
NOISES = {
    "standard": "c_t = g_t: drift -k_t x + g_t^2 S",
    "tempered": "c_t = g_t / sqrt(B): drift -k_t x + (1 + 1/B) g_t^2 S / 2 (unstable for B > 2)",
}


def noise_ratio(noise, total_exponent: float) -> float:
    """``c_t^2 / g_t^2`` of a ``noise`` option: 1 for ``"standard"``, ``1/B`` for ``"tempered"``,
    ``r`` for a number ``r > 0``.

    Raises
    ------
    InvalidTuningError
        An unknown name, or a number that is not finite and positive.
    """
    if isinstance(noise, str):
        if noise not in NOISES:
            raise InvalidTuningError(f"noise must be one of {sorted(NOISES)} or a number r > 0, got {noise!r}")
        return 1.0 if noise == "standard" else 1.0 / float(total_exponent)
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not (math.isfinite(noise) and noise > 0):
        raise InvalidTuningError(
            f"noise must be one of {sorted(NOISES)} or a finite number r > 0 (c_t^2 = r g_t^2), got {noise!r}"
        )
    return float(noise)

#: How the log-weights are computed (:func:`as_top_level_api`'s ``weights``).
WEIGHTS = {
    "score": "the paper's rate G_t from the scores alone (no divergence needed)",
    "stein": "the |s_i|^2 terms of G traded for a drift change and divergences estimated from each "
             "step's own noise (Stein): same target, same evaluations, lower-variance weights",
}

#: The values of the deprecated ``resample=`` keyword (``resample_ess`` replaces it); removed in
#: the next release with it.
_RESAMPLE_MODES = ("every_step", "ess")

#: Time grids of the Euler–Maruyama steps (:func:`time_grid`).
TIME_GRIDS = {
    "uniform": "equally spaced in t (the authors')",
    "quadratic": "equally spaced in sqrt(t): fine steps near t = 0, where the annealed drift is stiffest",
}


class FKCState(NamedTuple):
    """State of one FKC population of ``N`` particles of shape ``shape``.

    particles
        ``(N, *shape)`` particle positions at the current time.
    log_weights
        ``(N,)`` normalised log-weights (``logsumexp == 0``).
    log_Z
        ``()`` running estimate of ``log(Z_t / Z_1)``, the log-normaliser of
        ``prod_i q_t^(i)^b_i`` relative to that at ``t = 1`` (``O(h)`` biased, see the module
        docstring).
    step
        ``()`` int32: steps taken so far; the time is ``time_grid(...)[step]``.
    eve
        ``(N,)`` int32: index of each particle's ancestor in the initial population.
    num_resampled
        ``()`` int32: resampling events so far.
    scores
        ``weights="stein"`` only: one ``(N, *shape)`` array per model, the scores at
        ``particles`` and the current time (computed by the previous step, which needs them
        for its divergence estimate); ``()`` otherwise.
    """

    particles: Array
    log_weights: Array
    log_Z: Array
    step: Array
    eve: Array
    num_resampled: Array
    scores: tuple = ()


class FKCInfo(NamedTuple):
    """Diagnostics of one FKC step (all scalars).

    ess
        Effective sample size after this step's reweighting, before resampling.
    log_Z_increment
        ``log sum_i W_i exp(h G_t(x_i))`` added to ``log_Z``.
    is_resampled
        Whether the population was resampled this step.
    time
        Time ``t`` reached by the step (``t_min`` after the last one).
    num_score_evals
        Score evaluations this step, summed over particles and models (``N * len(score_fns)``).
    num_nonfinite
        ``int32``: score evaluations this step (one per particle and model; with
        ``weights="stein"`` the first step also counts the initial population's) that returned
        any non-finite entry. Such a particle's weight rate is NaN, which counts as weight
        zero; :func:`psample.run_particles` warns with the total, and refuses a population
        left with no finite weight.
    """

    ess: Array
    log_Z_increment: Array
    is_resampled: Array
    time: Array
    num_score_evals: Array
    num_nonfinite: Array


def time_grid(num_steps: int, t_min: float, kind: str = "uniform") -> np.ndarray:
    """``(num_steps + 1,)`` times from 1 down to ``t_min`` (float64), one of :data:`TIME_GRIDS`.

    ``"uniform"``: equally spaced (the authors'). ``"quadratic"``: ``t_j = (1 - (j / K)(1 -
    sqrt(t_min)))**2``, equally spaced in ``sqrt(t)``: steps of about ``2 sqrt(t) / K`` near
    ``t = 0``, where the noised modes are narrowest and the annealed drift stiffest, twice the
    uniform step at ``t = 1``.
    """
    if kind == "uniform":
        return np.linspace(1.0, t_min, num_steps + 1)
    if kind == "quadratic":
        grid = np.linspace(1.0, math.sqrt(t_min), num_steps + 1) ** 2
        grid[0], grid[-1] = 1.0, t_min
        return grid
    raise InvalidTuningError(f"time_grid must be one of {list(TIME_GRIDS)}, got {kind!r}")


_time_grid = time_grid  # as_top_level_api's argument of the same name shadows it


def _dot(u: Array, v: Array) -> Array:
    """``<u_n, v_n>`` over all but the leading (particle) axis: ``(N,)``."""
    return jnp.sum(jnp.reshape(u * v, (u.shape[0], -1)), axis=1)


def _sq_norm(v: Array) -> Array:
    """``|v_n|^2`` over all but the leading (particle) axis: ``(N,)``."""
    return _dot(v, v)


def _scores_at(score_fns: Sequence[Callable], t, x: Array) -> tuple:
    """Every model's score at time ``t`` and each particle of ``x``: one ``(N, *shape)`` array
    per model."""
    return tuple(jax.vmap(fn, in_axes=(None, 0))(t, x) for fn in score_fns)


def log_weight_rate(schedule: Schedule, t, scores: Sequence[Array], exponents: Sequence[float], dim: int) -> Array:
    """FKC log-weight rate ``G_t(x) = (B - 1) d k_t + g_t^2/2 (|S|^2 - sum_i b_i |s_i|^2)``.

    Parameters
    ----------
    schedule
        The shared forward schedule.
    t
        Scalar time.
    scores
        One ``(N, *shape)`` array per model: ``s_i(t, x_n)``.
    exponents
        The ``b_i`` (Python floats).
    dim
        ``d``, the number of scalar coordinates of one particle.

    Returns
    -------
    ``(N,)`` rates. For one model with ``b = 1`` it is exactly zero.
    """
    total = sum(exponents)
    combined = sum(b * s for b, s in zip(exponents, scores))
    spread = _sq_norm(combined) - sum(b * _sq_norm(s) for b, s in zip(exponents, scores))
    rate = 0.5 * schedule.g2(t) * spread
    if total != 1.0:  # B = 1 (one model at b = 1, guidance): div f drops out exactly.
        rate = rate + (total - 1.0) * schedule.divergence(t, dim)
    return rate


def init(rng_key: PRNGKey, num_particles: int, shape: tuple, reference_std: float, total_exponent: float,
         dtype=None) -> FKCState:
    """Draw ``num_particles`` particles from ``N(0, reference_std**2 I / B)`` with equal weights.

    Parameters
    ----------
    rng_key
        Key of the draws.
    num_particles
        ``N >= 2`` (static).
    shape
        Shape of one particle (static).
    reference_std
        ``s`` of the schedule's reference ``N(0, s^2 I)`` standing in for ``q_1``.
    total_exponent
        ``B = sum_i b_i > 0``.
    dtype
        Float dtype of the particles (default: JAX's default float).
    """
    dtype = dtype or jnp.result_type(float)
    scale = reference_std / math.sqrt(total_exponent)
    particles = scale * jax.random.normal(rng_key, (num_particles,) + tuple(shape), dtype=dtype)
    zero = jnp.zeros((), jnp.int32)
    return FKCState(
        particles=particles,
        log_weights=jnp.full((num_particles,), -jnp.log(num_particles), dtype=dtype),
        log_Z=jnp.zeros((), dtype),
        step=zero,
        eve=jnp.arange(num_particles, dtype=jnp.int32),
        num_resampled=zero,
    )


def build_kernel(score_fns: Sequence[Callable], exponents: Sequence[float], schedule: Schedule, noise,
                 resample: Callable) -> Callable:
    """Build one FKC step (static structure: the models, exponents, schedule, noise, resampling
    function ``resample``, from :func:`psample.base.resampling_fn`).

    ``noise`` is a :data:`NOISES` name or a number ``r > 0`` (``c_t^2 = r g_t^2``, see
    :func:`noise_ratio`).

    Returns
    -------
    kernel
        ``kernel(rng_key, state, t, h, may_resample, resample_ess) -> (FKCState, FKCInfo)``:
        reweight by ``exp(h G_t)``, resample if ``may_resample`` and (``resample_ess >= 1`` or
        the ESS is below ``resample_ess * N``), then take one Euler–Maruyama step from ``t`` to
        ``t - h``. ``t``, ``h``, ``may_resample`` and ``resample_ess`` may be traced.
    """
    exponents = tuple(float(b) for b in exponents)
    ratio = noise_ratio(noise, sum(exponents))

    def kernel(rng_key, state: FKCState, t, h, may_resample, resample_ess):
        resample_key, noise_key = jax.random.split(rng_key)
        x = state.particles
        dim = math.prod(x.shape[1:])
        t = jnp.asarray(t, x.dtype)
        h = jnp.asarray(h, x.dtype)
        scores = _scores_at(score_fns, t, x)
        rate = log_weight_rate(schedule, t, scores, exponents, dim)
        new = reweight(state.log_weights, h * rate)

        do_resample = may_resample & new.ess_below(resample_ess)
        combined = sum(b * s for b, s in zip(exponents, scores))
        (x, combined), log_weights, eve = resample_if(
            resample_key, do_resample, (x, combined), new.log_weights, state.eve, resample
        )

        g2 = schedule.g2(t)
        c2 = g2 if ratio == 1.0 else ratio * g2  # standard noise stays bit-identical
        drift = -schedule.drift_coef(t) * x + 0.5 * (g2 + c2) * combined
        eps = jax.random.normal(noise_key, x.shape, x.dtype)
        x = x + h * drift + jnp.sqrt(c2 * h) * eps

        nonfinite = sum(count_nonfinite_score(s) for s in scores)
        return _advance(state, x, log_weights, eve, new, do_resample, t - h, len(score_fns), nonfinite)

    return kernel


def _advance(state: FKCState, particles, log_weights, eve, new, do_resample, time, num_models: int, nonfinite,
             scores=()):
    """The step's new :class:`FKCState` and its :class:`FKCInfo` (``new`` the step's
    :class:`psample.smc.base.Reweighted`)."""
    num_particles = particles.shape[0]
    new_state = FKCState(
        particles=particles,
        log_weights=log_weights,
        log_Z=state.log_Z + new.log_Z_increment,
        step=state.step + 1,
        eve=eve,
        num_resampled=state.num_resampled + do_resample.astype(jnp.int32),
        scores=scores,
    )
    info = FKCInfo(
        ess=new.ess,
        log_Z_increment=new.log_Z_increment,
        is_resampled=do_resample,
        time=time,
        num_score_evals=jnp.asarray(num_particles * num_models, jnp.int32),
        num_nonfinite=jnp.asarray(nonfinite, jnp.int32),
    )
    return new_state, info


def stein_fraction(exponents: Sequence[float]) -> float:
    """``gamma = (B - 1) / B``, the fraction of the drift ``g_t^2 S`` that ``weights="stein"``
    moves into the weights (:doc:`family page </families/fkc>`): the drift gains
    ``-gamma g_t^2 S / 2`` and the rate ``-gamma g_t^2 (div S + |S|^2) / 2``, which leaves
    ``g_t^2/2 (|S|^2 / B - sum_i b_i |s_i|^2)`` of ``G``'s quadratic part: zero wherever the
    experts' scores agree, so zero for one model (annealing). ``B = 1`` (guidance, one model
    at ``b = 1``) leaves nothing to move.
    """
    total = float(sum(exponents))
    return (total - 1.0) / total


def build_stein_kernel(score_fns: Sequence[Callable], exponents: Sequence[float], schedule: Schedule, noise,
                       resample: Callable) -> Callable:
    """Build one FKC step with Stein weights (``weights="stein"``; :doc:`family page </families/fkc>`).

    The state carries the scores at its particles (``FKCState.scores``). One step from ``t``,
    with ``gamma = (B - 1) / B`` (:func:`stein_fraction`): move with the drift
    ``-k_t x + ((g_t^2 + c_t^2) / 2 - gamma g_t^2 / 2) S`` and noise ``c_t sqrt(h) eps``;
    evaluate the scores once at the moved particles and time ``t - h``; estimate ``div S(t, x)``
    from the move (:func:`stein_divergence`); reweight by ``exp(h G)`` with
    ``G = G_score - gamma g_t^2 (div S + |S|^2) / 2`` (all at ``(t, x)``); resample the moved
    particles with their scores. Same signature and cost (one evaluation of each score per
    particle per step) as :func:`build_kernel`'s kernel.
    """
    exponents = tuple(float(b) for b in exponents)
    ratio = noise_ratio(noise, sum(exponents))
    gamma = stein_fraction(exponents)

    def kernel(rng_key, state: FKCState, t, h, may_resample, resample_ess):
        resample_key, noise_key = jax.random.split(rng_key)
        x, scores = state.particles, state.scores
        dim = math.prod(x.shape[1:])
        t = jnp.asarray(t, x.dtype)
        h = jnp.asarray(h, x.dtype)
        g2 = schedule.g2(t)
        c2 = ratio * g2
        combined = sum(b * s for b, s in zip(exponents, scores))
        drift = -schedule.drift_coef(t) * x + 0.5 * (g2 + c2 - gamma * g2) * combined
        eps = jax.random.normal(noise_key, x.shape, x.dtype)
        noise_scale = jnp.sqrt(c2 * h)
        moved = x + h * drift + noise_scale * eps
        new_scores = _scores_at(score_fns, t - h, moved)

        new_combined = sum(b * s for b, s in zip(exponents, new_scores))
        divergence = stein_divergence(eps, combined, new_combined, noise_scale)
        rate = log_weight_rate(schedule, t, scores, exponents, dim)
        rate = rate - 0.5 * gamma * g2 * (divergence + _sq_norm(combined))
        new = reweight(state.log_weights, h * rate)

        do_resample = may_resample & new.ess_below(resample_ess)
        # The scores are counted where they were evaluated: the moved particles' here, the
        # initial population's (evaluated by init) at the first step.
        nonfinite = sum(count_nonfinite_score(s) for s in new_scores) + jnp.where(
            state.step == 0, sum(count_nonfinite_score(s) for s in scores), 0
        )
        (moved, new_scores), log_weights, eve = resample_if(
            resample_key, do_resample, (moved, new_scores), new.log_weights, state.eve, resample
        )
        return _advance(state, moved, log_weights, eve, new, do_resample, t - h, len(score_fns), nonfinite,
                        new_scores)  # fmt: skip

    return kernel


def stein_divergence(eps: Array, score: Array, moved_score: Array, noise_scale) -> Array:
    """Estimate ``div s(t, x_n)`` from one Euler–Maruyama move ``x' = x + h u + noise_scale eps``.

    ``<eps, s(t - h, x') - s(t, x)> / noise_scale`` has mean ``div s(t, x) + O(h)`` (a Hutchinson
    estimate with the move's own Gaussian noise: ``s(x') - s(x) ~ grad s (x' - x)``, and the
    terms odd in ``eps`` average out). Where ``grad s ~ a I`` (a Gaussian mode) it is
    ``~ a |eps|^2``: the control variate ``a_n (|eps_n|^2 - d)``, with ``a_n`` the mean
    estimate per coordinate over the *other* particles (so independent of ``eps_n``, and the
    estimate stays unbiased), removes that chi-square noise.

    Parameters
    ----------
    eps
        ``(N, *shape)`` the move's standard normal noise.
    score, moved_score
        ``(N, *shape)`` the score at the particles before the move (time ``t``) and after it
        (time ``t - h``).
    noise_scale
        Scalar ``c_t sqrt(h) > 0``.

    Returns
    -------
    ``(N,)`` divergence estimates.
    """
    dim = math.prod(eps.shape[1:])
    raw = _dot(eps, moved_score - score) / noise_scale
    # The slope pools the other particles: a non-finite score (NaN, counted by the kernel) must
    # not poison every particle's estimate through it, so it pools the finite ones only.
    finite = jnp.isfinite(raw)
    pooled = jnp.where(finite, raw, 0.0)
    others = jnp.sum(finite) - finite
    slope = (jnp.sum(pooled) - pooled) / (jnp.maximum(others, 1) * dim)
    return raw - slope * (_dot(eps, eps) - dim)


def _particle_shape(score_fns, shape) -> tuple:
    if shape is None:
        for fn in score_fns:
            owner = getattr(fn, "__self__", fn)  # a bound method's model (model.score)
            found = getattr(fn, "shape", None) or getattr(owner, "shape", None)
            if found is None and getattr(owner, "dim", None) is not None:
                found = (int(owner.dim),)
            if found is not None:
                shape = found
                break
        else:
            raise InvalidTuningError(
                "shape: the particles' shape is unknown; pass shape=(d,) (the score functions "
                "carry no .shape or .dim attribute), got shape=None"
            )
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        shape = tuple(int(n) for n in shape)
    except TypeError:
        raise InvalidTuningError(f"shape must be a tuple of positive integers, got {shape!r}") from None
    if not shape or any(n < 1 for n in shape):
        raise InvalidTuningError(f"shape must be a non-empty tuple of positive integers, got {shape!r}")
    return shape


def _check_score_shapes(score_fns, shape, dtype) -> None:
    x = jax.ShapeDtypeStruct(shape, dtype)
    t = jax.ShapeDtypeStruct((), dtype)
    for i, fn in enumerate(score_fns):
        out = jax.eval_shape(fn, t, x)
        if not hasattr(out, "shape") or tuple(out.shape) != tuple(shape):
            got = getattr(out, "shape", type(out).__name__)
            raise ShapeError(
                f"score_fns[{i}](t, x) must return an array shaped like x {tuple(shape)}, got {got}"
            )


def _check_resample_ess(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) <= 1.0:
        raise InvalidTuningError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def _old_resampling_keywords(fn: Callable) -> Callable:
    """Accept psample 0.1's resampling keywords for one release, with a ``DeprecationWarning``.

    ``resampler=scheme`` is ``resampling=scheme``; ``resample="every_step"`` is
    ``resample_ess=1`` (also when only ``ess_threshold`` is given, which then had no effect);
    ``resample="ess"`` is ``resample_ess=ess_threshold`` (default 0.5). The results are those
    of the old call, bit for bit.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        old = {name: kwargs.pop(name) for name in ("resampler", "resample", "ess_threshold") if name in kwargs}
        if old:
            new = {}
            if "resampler" in old:
                if "resampling" in kwargs:
                    raise InvalidTuningError("pass resampling= only (resampler= is its deprecated name), not both")
                new["resampling"] = old["resampler"]
            if "resample" in old or "ess_threshold" in old:
                if "resample_ess" in kwargs:
                    raise InvalidTuningError(
                        "pass resample_ess= only (resample= and ess_threshold= are its deprecated form), not both"
                    )
                mode = old.get("resample", "every_step")
                if not isinstance(mode, str) or mode not in _RESAMPLE_MODES:
                    raise InvalidTuningError(f"resample must be one of {list(_RESAMPLE_MODES)}, got {mode!r}")
                threshold = _check_resample_ess("ess_threshold", old.get("ess_threshold", 0.5))
                new["resample_ess"] = 1.0 if mode == "every_step" else threshold
            spelled = ", ".join(f"{name}={value!r}" for name, value in old.items())
            respelled = ", ".join(f"{name}={value!r}" for name, value in new.items())
            _deprecated.warn(
                f"{spelled} is deprecated: pass {respelled} (resampling= names the scheme, "
                "resample_ess= the ESS fraction below which the population is resampled, 1 for every step)"
            )
            kwargs.update(new)
        return fn(*args, **kwargs)

    return wrapper


@_old_resampling_keywords
def as_top_level_api(
    score_fns: Sequence[Callable],
    exponents: Sequence[float],
    *,
    schedule: Schedule,
    num_steps: int,
    t_min: float = 1e-3,
    time_grid: str = "uniform",
    noise: str = "standard",
    weights: str = "score",
    resampling="systematic",
    resample_ess: float = 1.0,
    start_resampling_step: int = 0,
    shape=None,
) -> ParticleAlgorithm:
    """Feynman–Kac correctors: sample ``prod_i q_t^(i)(x)^b_i`` from score models by weighted SMC.

    Examples
    --------
    .. code::

        model = psample.models.diffusion_mixture([0.7, 0.3], [[-2.0, 0.0], [2.0, 0.0]], [0.25, 0.25])
        algorithm = psample.smc.fkc_smc([model.score], [2.0], schedule=model.schedule, num_steps=500, shape=(2,))
        result = psample.run_particles(algorithm, jax.random.key(0), 4096, num_replicates=8)
        mean, se = result.weighted_mean()

    Parameters
    ----------
    score_fns
        Score models ``s(t, x) -> array shaped like x`` for one particle ``x`` (vmapped over the
        particles here): trained networks or exact formulas. All must share ``schedule``.
    exponents
        The ``b_i``, one per score function; their sum ``B`` must be ``> 0`` (individual
        exponents may be negative, as ``1 - w`` in guidance).
    schedule
        The forward noise schedule, :class:`psample.diffusion.VP` or :class:`~psample.diffusion.VE`
        (:class:`psample.schedules.Schedule`).
    num_steps
        Euler–Maruyama steps from ``t = 1`` to ``t_min``.
    t_min
        Final time in ``(0, 1)``.
    time_grid
        ``"uniform"`` (equally spaced, the authors' and the default) or ``"quadratic"``
        (equally spaced in ``sqrt(t)``, see :func:`time_grid`): at a given number of steps the
        quadratic grid resolves the narrow noised modes near ``t = 0``, where uniform steps
        overshoot and the weights (``|s|^2`` grows with the overshoot) pick the overshot
        particles: with few steps on narrow modes it is much more accurate.
    noise
        ``"standard"`` (``c_t = g_t``, default), ``"tempered"`` (``c_t = g_t / sqrt(B)``) or a
        number ``r > 0`` for ``c_t^2 = r g_t^2``. ``r > 1`` adds a Langevin corrector inside
        every step at no extra score evaluation, with the same weights
        (:doc:`family page </families/fkc>`). It is stiffer: pair ``r`` of 2 to 4 with
        ``time_grid="quadratic"`` and a few hundred steps; with about a hundred steps or fewer
        the standard noise is better.
    weights
        ``"score"`` (default: the paper's rate ``G`` from the scores) or ``"stein"``: the
        ``|s_i|^2`` terms of ``G`` are traded for a drift change and divergences estimated from
        each step's own noise (:doc:`family page </families/fkc>`). Same target and the same
        score evaluations per step (plus one per particle for the initial population), and
        lower-variance weights:
        on annealed multimodal targets a several times smaller error of the mode masses. With
        ``B = 1`` (guidance) there is nothing to move and the score weights' step runs.
    resampling
        The resampling scheme: ``"systematic"`` (default), ``"stratified"``, ``"multinomial"``,
        ``"residual"`` (keys of :data:`psample.base.RESAMPLING`, from
        ``blackjax.smc.resampling``) or such a function ``(rng_key, weights, num_samples) ->
        indices``. (Deprecated name: ``resampler``.)
    resample_ess
        In ``(0, 1]``: resample when the ESS after reweighting falls below ``resample_ess * N``;
        ``1`` (default, the paper's) resamples every step. (Deprecated form: ``resample=
        "every_step"`` is ``resample_ess=1``, ``resample="ess"`` with ``ess_threshold=a`` is
        ``resample_ess=a``.)
    start_resampling_step
        No resampling before this step (weights still accumulate); ``0 <= k <= num_steps``.
    shape
        Shape of one particle, e.g. ``(2,)``; default: the ``shape`` (or ``(dim,)``) attribute
        of the first score function (or of the object a bound method belongs to) that has one:
        the :mod:`psample.models` score models and their ``.score`` methods do.

    Returns
    -------
    psample.smc.ParticleAlgorithm
        ``init(rng_key, N)`` and ``step(rng_key, state)`` over :class:`FKCState`, with
        ``num_steps`` steps; run it with :func:`psample.run_particles`. The final weighted
        population (``result.log_weights``; resampled when the last step resampled) targets
        ``prod_i q_{t_min}^(i)^b_i``; ``result.resample(key)`` gives equal-weight draws.

    Raises
    ------
    InvalidTuningError
        ``score_fns`` and ``exponents`` of different lengths or empty, a non-finite exponent,
        ``B <= 0``, bad ``num_steps``/``t_min``/``start_resampling_step``, a ``resample_ess``
        outside ``(0, 1]``, an unknown or non-positive ``noise``, an unknown
        ``weights``/``resampling``/``time_grid``, an unknown shape;
        ``num_particles < 2`` when the population is drawn.
    ShapeError
        A score function whose output is not shaped like ``x`` (raised when the population is
        drawn, before any step).
    """
    if callable(score_fns):
        score_fns = [score_fns]
    score_fns = list(score_fns)
    if np.ndim(exponents) == 0:
        exponents = [exponents]
    exponents = list(exponents)
    if not score_fns:
        raise InvalidTuningError("score_fns must hold at least one score function, got []")
    if len(exponents) != len(score_fns):
        raise InvalidTuningError(
            f"exponents and score_fns must have the same length, got {len(exponents)} exponents "
            f"{exponents!r} for {len(score_fns)} score functions"
        )
    for i, fn in enumerate(score_fns):
        if not callable(fn):
            raise InvalidTuningError(f"score_fns[{i}] must be a function s(t, x), got {fn!r}")
    try:
        exponents = [float(b) for b in exponents]
    except (TypeError, ValueError):
        raise InvalidTuningError(f"exponents must be numbers, got {exponents!r}") from None
    if not all(math.isfinite(b) for b in exponents):
        raise InvalidTuningError(f"exponents must be finite, got {exponents!r}")
    total = sum(exponents)
    if not total > 0:
        raise InvalidTuningError(f"the exponents must sum to B > 0 (initial law N(0, s^2 I / B)), got {exponents!r}")
    if not isinstance(schedule, Schedule):
        raise InvalidTuningError(f"schedule must be a psample.diffusion.VP or VE schedule, got {schedule!r}")
    num_steps = check_positive_int("num_steps", num_steps)
    t_min = check_positive("t_min", t_min)
    if not t_min < 1.0:
        raise InvalidTuningError(f"t_min must be in (0, 1), got {t_min!r}")
    if time_grid not in TIME_GRIDS:
        raise InvalidTuningError(f"time_grid must be one of {list(TIME_GRIDS)}, got {time_grid!r}")
    noise_ratio(noise, total)  # validates
    if weights not in WEIGHTS:
        raise InvalidTuningError(f"weights must be one of {list(WEIGHTS)}, got {weights!r}")
    resample_ess = _check_resample_ess("resample_ess", resample_ess)
    start = check_positive_int("start_resampling_step", start_resampling_step, minimum=0)
    if start > num_steps:
        raise InvalidTuningError(
            f"start_resampling_step must be in [0, num_steps={num_steps}], got {start_resampling_step!r}"
        )
    resample_fn = resampling_fn(resampling)
    shape = _particle_shape(score_fns, shape)
    # B = 1 (guidance): nothing to move into the weights, and the Stein step's order (reweight
    # after the move) only costs diversity (a larger error of the mean on guidance problems).
    stein = weights == "stein" and stein_fraction(exponents) != 0.0
    kernel = (build_stein_kernel if stein else build_kernel)(score_fns, exponents, schedule, noise, resample_fn)
    times = _time_grid(num_steps, t_min, time_grid)
    reference_std = float(schedule.reference_std())

    def step(rng_key, state: FKCState):
        dtype = state.particles.dtype
        table = jnp.asarray(times, dtype)
        index = jnp.minimum(state.step, num_steps - 1)
        t = table[index]
        h = t - table[index + 1]
        return kernel(rng_key, state, t, h, state.step >= start, resample_ess)

    def init_fn(rng_key, num_particles):
        num_particles = check_positive_int("num_particles", num_particles, minimum=2)
        dtype = jnp.result_type(float)
        _check_score_shapes(score_fns, shape, dtype)
        state = init(rng_key, num_particles, shape, reference_std, total, dtype)
        if stein:  # the first step's divergence estimate needs the scores at t = 1
            t = jnp.asarray(times[0], dtype)
            state = state._replace(scores=_scores_at(score_fns, t, state.particles))
        return state

    return ParticleAlgorithm(
        init=init_fn,
        step=step,
        num_steps=num_steps,
        resampling=resampling if isinstance(resampling, str) else None,
        nonfinite_source="score_fns",
    )


def _check_exponent(name: str, value, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise InvalidTuningError(f"{name} must be a finite number, got {value!r}")
    if positive and not float(value) > 0:
        raise InvalidTuningError(f"{name} must be > 0, got {value!r}")
    return float(value)


def fkc_anneal(score_fn: Callable, beta: float, **options) -> ParticleAlgorithm:
    """Anneal one model to inverse temperature ``beta``: target ``q_t^beta`` (``beta > 0``).

    ``options`` are those of :func:`as_top_level_api` (``schedule`` and ``num_steps`` required).
    The weight rate is ``(beta - 1) d k_t + g_t^2 beta (beta - 1) |s|^2 / 2``; ``beta = 1``
    gives identically zero weights (the plain reverse SDE).
    """
    beta = _check_exponent("beta", beta)
    return as_top_level_api([score_fn], [beta], **options)


def fkc_product(score_fn_1: Callable, score_fn_2: Callable, **options) -> ParticleAlgorithm:
    """Product of two experts: target ``q_t^(1) q_t^(2)``, started at ``N(0, s^2 I / 2)``.

    ``options`` are those of :func:`as_top_level_api`; the weight rate is
    ``d k_t + g_t^2 <s_1, s_2>``.
    """
    return as_top_level_api([score_fn_1, score_fn_2], [1.0, 1.0], **options)


def fkc_guidance(score_uncond: Callable, score_cond: Callable, w: float, **options) -> ParticleAlgorithm:
    """Classifier-free guidance, corrected: target ``q_t(x)^(1-w) q_t(x | c)^w``.

    The drift is the usual CFG drift ``-k_t x + g_t^2 ((1 - w) s_u + w s_c)``; the weight rate
    ``g_t^2 w (w - 1) |s_c - s_u|^2 / 2`` (``>= 0`` for ``w > 1``) corrects it to the
    geometric-mixture target, which naive CFG misses. ``w`` is any finite number (``w = 1``: the
    conditional model alone, zero weights).
    """
    w = _check_exponent("w", w, positive=False)
    return as_top_level_api([score_uncond, score_cond], [1.0 - w, w], **options)


def __getattr__(name: str):
    if name == "RESAMPLE_MODES":
        warnings.warn(
            "psample.smc.fkc.RESAMPLE_MODES is deprecated with the resample= keyword: fkc_smc's "
            "resample_ess= (1 for every step) replaces both; removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return _RESAMPLE_MODES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
