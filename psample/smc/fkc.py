"""Feynman–Kac correctors (FKC): SMC over pretrained diffusion score models.

Given score models :math:`s_i(t, x) \\approx \\nabla \\log q^{(i)}_t(x)` of diffusions that share
one affine forward SDE :math:`dx = k_t x\\,dt + g_t\\,dW` (a :mod:`psample.diffusion` schedule),
FKC (Skreta et al. [1]) samples the weighted product of experts

.. math::

    p_t(x) \\propto \\prod_i q^{(i)}_t(x)^{b_i}, \\qquad S = \\sum_i b_i s_i, \\quad B = \\sum_i b_i,

which covers annealing (one model, :math:`b = \\beta`), products of experts
(:math:`b_1 = b_2 = 1`) and classifier-free guidance as a geometric mixture
(:math:`b = (1 - w, w)`). Particles follow, backwards in time from ``t = 1`` to ``t_min``, the
SDE with drift :math:`u_t = -k_t x + \\tfrac{g_t^2 + c_t^2}{2} S` and noise :math:`c_t`, and carry
the log-weight rate

.. math::

    G_t(x) = (B - 1)\\, d\\, k_t + \\frac{g_t^2}{2}\\Big(|S|^2 - \\sum_i b_i |s_i|^2\\Big),

chosen so that the divergence of the scores cancels from the Fokker–Planck equation: no
Hutchinson estimator and no log-density is needed ([1], Prop. 3.3; re-derived in the psample
notes for any noise level :math:`c_t`, which leaves :math:`G` unchanged). ``noise="standard"``
takes :math:`c_t = g_t` (the drift :math:`-k_t x + g_t^2 S`); ``noise="tempered"`` takes
:math:`c_t = g_t / \\sqrt{B}` (the authors' ``scale_diffusion`` flag for annealing); a number
``r > 0`` takes :math:`c_t^2 = r\\, g_t^2`.

**Langevin noise** (``r > 1``). Compared with the standard noise, the SDE with
:math:`c_t^2 = r g_t^2` adds the drift :math:`\\tfrac{(r - 1) g_t^2}{2} S` and the noise variance
:math:`(r - 1) g_t^2` per unit time: an overdamped Langevin diffusion that leaves the current
target :math:`p_t` invariant (:math:`S = \\nabla \\log p_t`), with step
:math:`\\epsilon = (r - 1) g_t^2 h / 2` inside every Euler–Maruyama step. It is a Langevin
corrector at no extra score evaluation, and because :math:`G` does not depend on :math:`c_t` the
weights stay those of the standard noise. The mixing shortens how long a particle keeps its
excess weight, so the weights' variance falls: on the 40-mode mixture at ``beta = 3`` and 400
quadratic steps the mode-mass error went from 0.22 to 0.15 (``r = 2``) and 0.12 (``r = 4``) at
4096 particles, and from 0.16 to 0.086 at 16384, now falling like ``1/sqrt(N)``
(BENCHMARKS.md, FKC run 5). The price is stiffness: the Euler step must resolve
:math:`\\tfrac{(1 + r) B g_t^2}{2 v_t}` (``v_t`` the narrowest noised mode's variance), so larger
``r`` needs finer steps near ``t = 0`` (at 100 steps ``r = 4`` did far worse than the standard
noise). The default stays ``"standard"``.

**Stein weights** (``weights="stein"``, psample's; derived in the same way as ``G``). For one
model ``G`` holds :math:`\\tfrac{g_t^2}{2}\\beta(\\beta - 1)|s|^2`, which within a mode follows a
particle's distance to the mode's centre: a slow fluctuation that accumulates in the weights and
ends as variance of the mode masses. Adding a drift :math:`\\delta` to the SDE changes the
Fokker–Planck equation by :math:`-\\nabla\\cdot(p\\,\\delta) = -p(\\nabla\\cdot\\delta + \\delta\\cdot S)`,
which the rate repays exactly with :math:`+\\nabla\\cdot\\delta + \\delta\\cdot S`. With
:math:`\\delta = -\\gamma\\tfrac{g_t^2}{2} S` and :math:`\\gamma = (B - 1)/B`
(:func:`stein_fraction`) the quadratic part of ``G`` becomes
:math:`\\tfrac{g_t^2}{2}(|S|^2/B - \\sum_i b_i |s_i|^2)`, zero wherever the experts' scores agree;
for annealing it vanishes:

.. math::

    u_t = -k_t x + \\frac{g_t^2}{2}(r\\beta + 1)\\, s, \\qquad
    G_t = (\\beta - 1)\\, d\\, k_t - \\frac{g_t^2}{2}(\\beta - 1)\\, \\nabla\\cdot s,

exact for any noise :math:`c_t^2 = r g_t^2` (and a little less stiff than the score drift). The
divergence costs no evaluation: the step's own noise gives the estimate
:math:`\\langle\\varepsilon, S(t - h, x') - S(t, x)\\rangle / (c_t\\sqrt{h})`, whose mean is
:math:`\\nabla\\cdot S(t, x) + O(h)` (:func:`stein_divergence`, with a control variate that
removes its chi-square noise where the Hessian is near-isotropic, as in a Gaussian mode). Its
noise is fresh at every step, so it averages out where the :math:`|s|^2` term accumulated. For
a Gaussian mode :math:`\\nabla\\cdot s` is constant, so within separated modes the weights are
nearly flat. The step reweights *after* its move (the estimate needs the moved particles'
scores, which the next step reuses): the same one evaluation of each score per particle per
step, plus one for the initial population. On the 40-mode mixture at ``beta = 3`` (4096
particles, 64 replicates, BENCHMARKS.md) it brought the mode-mass error to 0.072 ± 0.001 at
400 evaluations (``r = 4``; the score weights: 0.119), below SMC with exact-density MALA moves
at the same score evaluations (0.080 ± 0.001), with a larger within-mode error (3.0% against
1.7%). Guidance (``B = 1``) has nothing to move: there ``weights="stein"`` runs the score
weights' step.

One step of the Euler–Maruyama discretisation with step :math:`h`, from time :math:`t`:

1. **reweight**: evaluate every score once at the particles, multiply the weights by
   :math:`\\exp(h\\, G_t(x))` (the shared :func:`psample.smc.base.reweight`: the log-normaliser
   grows by :math:`\\log \\sum_i W_i e^{h G_t(x_i)}` with the normalised weights carried into the
   step, so weights keep accumulating between resampling events and the increment is right
   whatever the previous step did);
2. **resample** (``blackjax.smc.resampling``) every step or when the ESS (``blackjax.smc.ess``)
   falls below ``ess_threshold * N``, but never before step ``start_resampling_step``;
3. **move**: :math:`x \\leftarrow x + h\\,u_t(x) + c_t \\sqrt{h}\\,\\varepsilon` with the scores
   already computed in 1 (gathered by the resampling indices): one evaluation of each score per
   particle per step.

The initial population is :math:`N(0, s^2 I / B)` with ``s = schedule.reference_std()``: the
product of the experts' references :math:`N(0, s^2 I)^{b_i}`. For VP that is :math:`q_1` up to
:math:`\\alpha_1 \\approx 7\\cdot 10^{-5}`; for VE it holds only when ``sigma_max`` dwarfs the data,
and that initial mismatch is not corrected by the weights.

What the final weighted population targets is :math:`\\prod_i q^{(i)}_{t_{min}}{}^{b_i}`, which
tends to :math:`\\prod_i q^{(i)}_0{}^{b_i}` as ``t_min -> 0``. The weights discretise continuous
time weights (they are not exact discrete importance weights), so every estimate, ``log_Z``
included, carries an :math:`O(h)` bias; ``log_Z`` estimates
:math:`\\log \\int \\prod_i q^{(i)}_{t_{min}}{}^{b_i} - \\log \\int \\prod_i q^{(i)}_1{}^{b_i}`.

Differences from the authors' code, on purpose:

- ``start_resampling_step = k`` forbids resampling during the first ``k`` steps (early weights
  are noisy and resampling them degenerates the population) but the weights keep accumulating
  there; the authors' runner drops the weights *and* freezes the particles in that window,
  which changes the target.
- ``resample="ess"`` (adaptive resampling) is offered besides the paper's ``"every_step"``.

Step sizes (derived for a Gaussian model, measured in BENCHMARKS.md): the step must resolve the
stiffest part of the annealed drift, ``B g_t^2 / v_t`` with ``v_t`` the variance of the
narrowest noised mode, and the weight factor ``exp(h G)`` has a finite variance only when
``h (B - 1) g_t^2 / v_t`` stays below about 1/2 (``G`` grows like ``|s|^2``). On the VP schedule and
narrow modes that is hardest near ``t = 0`` (``time_grid="quadratic"`` spends its steps there)
and again near ``t = 1`` where ``g_t^2`` is largest (the uniform grid spends more there). On the
40-mode mixture at ``beta = 3`` and 100 steps the quadratic grid cut the mode-mass error from
0.97 to 0.38 (400 steps: 0.22 and 0.23); on the product and guidance problems at the slow tests'
settings, 125 quadratic steps gave a replicate spread of the estimates 0.9-5 times that of 250
uniform ones. The uniform grid stays the default. Past the discretisation error, FKC's error on
the 40-mode mixture is a Monte Carlo variance that fell much slower than ``1/sqrt(N)``
(BENCHMARKS.md).

Known behaviour (measured, see the tests and BENCHMARKS.md): with ``noise="tempered"`` and
``beta > 2`` the weighted variance has an unstable fixed point (for a Gaussian model and
:math:`c_t^2 = r g_t^2` the variance ODE's linearisation at :math:`1/\\beta` has rate
:math:`\\beta(t)(\\beta - 1 - \\beta r)`, which is :math:`\\beta(t)(\\beta - 2)` at ``r = 1/beta``
and more stable the larger ``r``): at
``beta = 4`` on a unit Gaussian the particles settle near variance 1/12 instead of 1/4, and on
the 40-mode mixture the tempered variant loses modes. ``noise="standard"`` is the default.

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

import math
import numbers
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.types import Array, PRNGKey

from psample.schedules import Schedule
from psample.errors import InvalidTuningError, ShapeError, check_positive, check_positive_int
from psample.smc.base import ParticleAlgorithm, count_nonfinite_score, resample_if, resampling_fn, reweight

__all__ = [
    "FKCState",
    "FKCInfo",
    "NOISES",
    "noise_ratio",
    "WEIGHTS",
    "stein_fraction",
    "RESAMPLE_MODES",
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
#: ``r > 0`` gives ``c_t^2 = r g_t^2`` (``r > 1``: Langevin noise, see the module docstring).
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

#: When the population is resampled (from ``start_resampling_step`` on).
RESAMPLE_MODES = ("every_step", "ess")

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
    """Build one FKC step (static structure: the models, exponents, schedule, noise, resampler).

    ``noise`` is a :data:`NOISES` name or a number ``r > 0`` (``c_t^2 = r g_t^2``, see
    :func:`noise_ratio`).

    Returns
    -------
    kernel
        ``kernel(rng_key, state, t, h, may_resample, ess_threshold) -> (FKCState, FKCInfo)``:
        reweight by ``exp(h G_t)``, resample if ``may_resample`` and (``ess_threshold >= 1`` or
        the ESS is below ``ess_threshold * N``), then take one Euler–Maruyama step from ``t`` to
        ``t - h``. ``t``, ``h``, ``may_resample`` and ``ess_threshold`` may be traced.
    """
    exponents = tuple(float(b) for b in exponents)
    ratio = noise_ratio(noise, sum(exponents))

    def kernel(rng_key, state: FKCState, t, h, may_resample, ess_threshold):
        resample_key, noise_key = jax.random.split(rng_key)
        x = state.particles
        dim = math.prod(x.shape[1:])
        t = jnp.asarray(t, x.dtype)
        h = jnp.asarray(h, x.dtype)
        scores = _scores_at(score_fns, t, x)
        rate = log_weight_rate(schedule, t, scores, exponents, dim)
        new = reweight(state.log_weights, h * rate)

        do_resample = may_resample & new.ess_below(ess_threshold)
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
    moves into the weights (module docstring): the drift gains ``-gamma g_t^2 S / 2`` and the
    rate ``-gamma g_t^2 (div S + |S|^2) / 2``, which leaves ``g_t^2/2 (|S|^2 / B - sum_i b_i
    |s_i|^2)`` of ``G``'s quadratic part: zero wherever the experts' scores agree, so zero for
    one model (annealing). ``B = 1`` (guidance, one model at ``b = 1``) leaves nothing to move.
    """
    total = float(sum(exponents))
    return (total - 1.0) / total


def build_stein_kernel(score_fns: Sequence[Callable], exponents: Sequence[float], schedule: Schedule, noise,
                       resample: Callable) -> Callable:
    """Build one FKC step with Stein weights (``weights="stein"``, module docstring).

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

    def kernel(rng_key, state: FKCState, t, h, may_resample, ess_threshold):
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

        do_resample = may_resample & new.ess_below(ess_threshold)
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
    resample: str = "every_step",
    ess_threshold: float = 0.5,
    start_resampling_step: int = 0,
    resampler="systematic",
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
        The forward noise schedule, :class:`psample.diffusion.VP` or :class:`~psample.diffusion.VE`.
    num_steps
        Euler–Maruyama steps from ``t = 1`` to ``t_min``.
    t_min
        Final time in ``(0, 1)``.
    time_grid
        ``"uniform"`` (equally spaced, the authors' and the default) or ``"quadratic"``
        (equally spaced in ``sqrt(t)``, see :func:`time_grid`): at a given number of steps the
        quadratic grid resolves the narrow noised modes near ``t = 0``, where uniform steps
        overshoot and the weights (``|s|^2`` grows with the overshoot) pick the overshot
        particles (BENCHMARKS.md: on the 40-mode mixture at 100 steps, mode error 0.3 against
        0.9).
    noise
        ``"standard"`` (``c_t = g_t``, default), ``"tempered"`` (``c_t = g_t / sqrt(B)``) or a
        number ``r > 0`` for ``c_t^2 = r g_t^2``. ``r > 1`` adds a Langevin corrector inside
        every step at no extra score evaluation, with the same weights (module docstring);
        ``noise`` of 2 to 4 with ``time_grid="quadratic"`` and a few hundred steps were the best
        settings measured on the annealed 40-mode mixture (at 100 steps: the standard noise).
    weights
        ``"score"`` (default: the paper's rate ``G`` from the scores) or ``"stein"``: the
        ``|s_i|^2`` terms of ``G`` are traded for a drift change and divergences estimated from
        each step's own noise (module docstring). Same target and the same score evaluations per
        step (plus one per particle for the initial population); on the annealed 40-mode
        mixture it cut the mode-mass error 1.5-5x, to or below SMC with exact-density MALA moves
        (BENCHMARKS.md). With ``B = 1`` (guidance) there is nothing to move and the score
        weights' step runs.
    resample
        ``"every_step"`` (the paper's) or ``"ess"`` (when the ESS drops below
        ``ess_threshold * N``).
    ess_threshold
        In ``(0, 1]``; used by ``resample="ess"``.
    start_resampling_step
        No resampling before this step (weights still accumulate); ``0 <= k <= num_steps``.
    resampler
        ``"systematic"``, ``"stratified"``, ``"multinomial"``, ``"residual"``
        (``blackjax.smc.resampling``) or such a function.
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
        ``B <= 0``, bad ``num_steps``/``t_min``/``start_resampling_step``, an ``ess_threshold``
        outside ``(0, 1]``, an unknown or non-positive ``noise``, an unknown
        ``weights``/``resample``/``resampler``/``time_grid``, an unknown shape;
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
    if resample not in RESAMPLE_MODES:
        raise InvalidTuningError(f"resample must be one of {list(RESAMPLE_MODES)}, got {resample!r}")
    if (isinstance(ess_threshold, bool) or not isinstance(ess_threshold, numbers.Real)
            or not 0.0 < float(ess_threshold) <= 1.0):  # fmt: skip
        raise InvalidTuningError(f"ess_threshold must be a number in (0, 1], got {ess_threshold!r}")
    ess_threshold = float(ess_threshold)
    start = check_positive_int("start_resampling_step", start_resampling_step, minimum=0)
    if start > num_steps:
        raise InvalidTuningError(
            f"start_resampling_step must be in [0, num_steps={num_steps}], got {start_resampling_step!r}"
        )
    resample_fn = resampling_fn(resampler)
    shape = _particle_shape(score_fns, shape)
    # B = 1 (guidance): nothing to move into the weights, and the Stein step's order (reweight
    # after the move) only costs diversity: measured 2x the mean error on the guidance problem.
    stein = weights == "stein" and stein_fraction(exponents) != 0.0
    kernel = (build_stein_kernel if stein else build_kernel)(score_fns, exponents, schedule, noise, resample_fn)
    times = _time_grid(num_steps, t_min, time_grid)
    threshold = 1.0 if resample == "every_step" else ess_threshold
    reference_std = float(schedule.reference_std())

    def step(rng_key, state: FKCState):
        dtype = state.particles.dtype
        table = jnp.asarray(times, dtype)
        index = jnp.minimum(state.step, num_steps - 1)
        t = table[index]
        h = t - table[index + 1]
        return kernel(rng_key, state, t, h, state.step >= start, threshold)

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
        resampling=resampler if isinstance(resampler, str) else None,
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
