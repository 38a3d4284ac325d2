"""Mutation kernels of tempered SMC, tuned from the weighted population.

After reweighting and resampling, tempered SMC moves every particle by a few steps of a Markov
kernel that leaves the current level :math:`\\pi_\\lambda` invariant (Del Moral, Doucet and
Jasra [1]). Particle methods can tune that kernel from the population itself (Chopin [2];
BlackJAX's ``inner_kernel_tuning``): here every kernel works in the frame of the weighted mean
``m`` and covariance ``C = L Lᵀ`` (``metric="dense"``) or variances (``metric="diagonal"``) of
the particles, recomputed at each level.

Kernels (:data:`MUTATIONS`, chosen by tempered SMC's ``mcmc=``):

- ``"rwm"``: Gaussian random-walk Metropolis (BlackJAX ``additive_step_random_walk``'s
  proposal and acceptance) with proposal covariance ``s² C``; the scale ``s`` starts at
  ``2.38/sqrt(d)`` and follows the acceptance rate towards 0.234 from level to level;
- ``"hmc"``: BlackJAX HMC with inverse mass matrix ``diag(C)`` (``metric="diagonal"``, its
  default) or ``C`` (``"dense"``); the step size starts at ``d^(-1/4)`` and follows the
  acceptance rate towards 0.65;
- ``"polar_slice"``: psample's Gibbsian polar slice sampler (Schär, Habeck and Rudolf [3]) in the
  standardised coordinates ``z = L⁻¹(x - m)``, where the population sits around the origin of the
  polar decomposition; its window ``w`` is the weighted standard deviation of ``‖z‖``. It needs
  no acceptance-rate tuning and no gradient, and its radius moves are robust to the heavy tails
  of early, nearly-prior levels.

See the :doc:`family page </families/tempered_smc>` for the method, tuning and measured limits.

Contract
--------
:func:`build_mutation` returns a :class:`Mutation`: ``initial_scale(d)``, ``level_scale``,
``adapt`` and ``move(key, x, logdensity, tuned, num_steps) -> (x, acceptance, num_evals,
num_nonfinite)`` on one flat ``(d,)`` position. :func:`cross_fitted_tuning` gives the
:class:`Tuned` parameters of each half of the population. The tempered step vmaps ``move`` over
the particles; every move leaves the log-density it is given invariant for fixed ``tuned``.

Known limits
------------
- A kernel tuned from a population that contains the particle it moves is not invariant (the
  particle moves its own mass matrix), and the error does not vanish as ``N`` grows. Tuning is
  therefore cross-fitted: each half of the population is moved with the other half's statistics
  (:func:`cross_fitted_tuning`). Copies of one particle made by resampling sit at neighbouring
  indices, so they fall on the same side but for the boundary one.
- The frame is a Gaussian approximation of the current level: for strongly correlated levels the
  diagonal frame is a poor preconditioner (prefer ``metric="dense"``), and no frame helps much
  with a multimodal level, whose modes the moves do not cross.
- The weighted covariance gets a small ridge, so a collapsed population (or fewer particles than
  dimensions) gives a finite but nearly singular frame.
- A NaN or ``+inf`` log-density at a proposal is a rejected move (zero density); it is counted in
  ``num_nonfinite`` so the runner warns.

References
----------
.. [1] Pierre Del Moral, Arnaud Doucet and Ajay Jasra, "Sequential Monte Carlo samplers",
   Journal of the Royal Statistical Society B 68(3), 411-436, 2006.
.. [2] Nicolas Chopin, "A sequential particle filter method for static models", Biometrika
   89(3), 539-552, 2002.
.. [3] Philip Schär, Michael Habeck and Daniel Rudolf, "Gibbsian polar slice sampling",
   ICML 2023, PMLR 202:30204-30223. arXiv:2302.03945.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
from blackjax.types import Array

from psample.errors import InvalidTuningError, check_positive, check_positive_int
from psample.mcmc import polar_slice
from psample.smc.base import count_nonfinite_logdensity

__all__ = [
    "MUTATIONS",
    "METRICS",
    "DEFAULT_NUM_MCMC_STEPS",
    "Tuned",
    "Mutation",
    "build_mutation",
    "weighted_moments",
    "cross_fitted_tuning",
]


class Tuned(NamedTuple):
    """A kernel's parameters at one level, tuned from (half of) the weighted population.

    mean
        ``(d,)`` weighted mean ``m``.
    chol
        ``(d, d)`` lower Cholesky factor ``L`` of the weighted covariance (dense frame), or
        ``(d,)`` the weighted standard deviations (diagonal frame).
    scale
        ``()`` the kernel's scalar: random-walk scale, HMC step size or polar slice window.
    """

    mean: Array
    chol: Array
    scale: Array


def _from_z(tuned: Tuned, z: Array) -> Array:
    """``m + L z`` (dense frame) or ``m + s * z`` (diagonal frame)."""
    return tuned.mean + (tuned.chol * z if tuned.chol.ndim == 1 else tuned.chol @ z)


def _to_z(tuned: Tuned, x: Array) -> Array:
    """The inverse of :func:`_from_z`, for one ``(d,)`` point or rows ``(n, d)``."""
    centred = x - tuned.mean
    if tuned.chol.ndim == 1:
        return centred / tuned.chol
    return jax.scipy.linalg.solve_triangular(tuned.chol, centred.T, lower=True).T


class Mutation(NamedTuple):
    """A mutation kernel as the tempered SMC step uses it (see :func:`build_mutation`).

    initial_scale
        ``d -> float``: the kernel's scalar at the first level (``d`` the flat dimension).
    level_scale
        ``(carried_scale, flat, weights, chol) -> scale`` used at this level, from the scale
        carried from the previous level and the population ``flat`` ``(N, d)`` with normalised
        ``weights`` ``(N,)``.
    adapt
        ``(scale, mean_acceptance) -> scale`` carried to the next level.
    move
        ``(key, x, logdensity, tuned, num_steps) -> (x, acceptance, num_evals, num_nonfinite)``:
        ``num_steps`` kernel steps from one flat position ``x`` ``(d,)``, invariant for
        ``logdensity`` given ``tuned`` (:class:`Tuned`); the mean acceptance rate ``()``, the
        log-density evaluations ``()`` and the count of NaN or ``+inf`` values met ``()``.
    metric
        ``"dense"`` (full covariance of the particles) or ``"diagonal"`` (their variances).
    """

    initial_scale: Callable
    level_scale: Callable
    adapt: Callable
    move: Callable
    metric: str = "dense"


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
    z = _to_z(Tuned(mean, chol, jnp.ones(())), flat)
    radius = jnp.linalg.norm(z, axis=1)
    r_mean = jnp.sum(weights * radius)
    sd = jnp.sqrt(jnp.sum(weights * (radius - r_mean) ** 2))
    return jnp.maximum(sd, 0.1)


#: Mutation kernels by name, with a one-line description (:func:`build_mutation` builds them).
MUTATIONS = {
    "rwm": "Gaussian random-walk Metropolis (BlackJAX), covariance from the particles, scale to 0.234 acceptance",
    "hmc": "HMC (BlackJAX), inverse mass matrix from the particles, step size to 0.65 acceptance",
    "polar_slice": "psample's Gibbsian polar slice sampler in coordinates standardised by the particles",
}


#: Frames tuned from the particles at each level (``mcmc_parameters["metric"]``).
METRICS = ("dense", "diagonal")

#: Mutation steps per level when tempered SMC's ``num_mcmc_steps`` is not given: HMC's tuned,
#: whitened moves need fewer steps per level than the random walk and polar slice.
DEFAULT_NUM_MCMC_STEPS = {"hmc": 5, "rwm": 10, "polar_slice": 10}


def build_mutation(mcmc: str, options: dict | None) -> Mutation:
    """The mutation kernel ``mcmc`` (a key of :data:`MUTATIONS`) with its ``options``.

    Parameters
    ----------
    mcmc
        ``"rwm"``, ``"hmc"`` or ``"polar_slice"``.
    options
        ``None`` or a dict: ``"rwm"``: ``scale`` (initial; default ``2.38/sqrt(d)``);
        ``"hmc"``: ``step_size`` (initial; default ``d^(-1/4)``), ``num_integration_steps``
        (default 10); ``"polar_slice"``: ``max_proposals`` (default 1000). Every kernel:
        ``metric``, one of :data:`METRICS` (default ``"diagonal"`` for HMC, ``"dense"`` for the
        others).

    Raises
    ------
    InvalidTuningError
        An unknown kernel, metric or option, or a non-positive scale, step size or count.
    """
    options = dict(options or {})
    # HMC defaults to the diagonal frame, folded into its inverse mass matrix: cheaper per
    # evaluation than the dense frame and as accurate unless the level is strongly correlated.
    # Polar slice keeps the dense frame, which makes the population isotropic around its origin.
    metric = options.pop("metric", "diagonal" if mcmc == "hmc" else "dense")
    if metric not in METRICS:
        raise InvalidTuningError(f"mcmc_parameters['metric'] must be one of {list(METRICS)}, got {metric!r}")
    if mcmc == "rwm":
        scale = options.pop("scale", None)
        scale = None if scale is None else check_positive("mcmc_parameters['scale']", scale)
        mutation = Mutation(
            lambda d: scale if scale is not None else 2.38 / np.sqrt(d),
            _carried_scale, _adapt_to_acceptance(0.234), _rwm_move,
        )  # fmt: skip
    elif mcmc == "hmc":
        step_size = options.pop("step_size", None)
        step_size = None if step_size is None else check_positive("mcmc_parameters['step_size']", step_size)
        steps = check_positive_int("mcmc_parameters['num_integration_steps']", options.pop("num_integration_steps", 10))
        mutation = Mutation(
            lambda d: step_size if step_size is not None else d**-0.25,
            _carried_scale, _adapt_to_acceptance(0.65), _hmc_move(steps),
        )  # fmt: skip
    elif mcmc == "polar_slice":
        max_proposals = check_positive_int("mcmc_parameters['max_proposals']", options.pop("max_proposals", 1000))
        mutation = Mutation(lambda d: 1.0, _polar_window, _no_adaptation, _polar_move(max_proposals))
    else:
        raise InvalidTuningError(f"mcmc must be one of {sorted(MUTATIONS)}, got {mcmc!r}")
    if options:
        raise InvalidTuningError(f"unknown mcmc_parameters for mcmc={mcmc!r}: {sorted(options)}")
    return mutation._replace(metric=metric)


def weighted_moments(flat: Array, weights: Array, metric: str = "dense") -> tuple[Array, Array]:
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


def cross_fitted_tuning(flat, weights, carried_scale, mutation):
    """Kernel parameters for each half of the population, from the *other* half.

    A kernel tuned from a population that contains the particle it moves is no longer
    invariant (the particle moves its own mass matrix; with HMC's long trajectories the moved
    population's variance is inflated, and the inflation does not shrink as ``N`` grows:
    ``tests/smc/test_tempered.py`` checks invariance at one level). Cross-fitting removes
    that self-dependence: particles ``i < N/2`` are moved with the statistics of ``i >= N/2``
    and vice versa. Resampling (every ``blackjax.smc.resampling`` scheme, multinomial included:
    it draws sorted uniforms) keeps a particle's copies at neighbouring indices, so copies fall
    on the same side but for the boundary. A half holding no weight (possible between
    resamplings) borrows the whole population's statistics.

    Parameters
    ----------
    flat
        ``(N, d)`` flat particles.
    weights
        ``(N,)`` normalised weights.
    carried_scale
        ``()`` the kernel's scalar carried from the previous level.
    mutation
        The :class:`Mutation`.

    Returns
    -------
    tuned
        :class:`Tuned` with a leading axis of 2 (statistics of the first and the second half):
        particles ``i < N/2`` use ``tuned[1]``, the others ``tuned[0]``.
    """
    num = weights.shape[0]
    second = jnp.arange(num) >= num // 2
    tuned = []
    for mask in (~second, second):
        mass = jnp.sum(jnp.where(mask, weights, 0.0))
        half_weights = jnp.where(mass > 1e-12, jnp.where(mask, weights, 0.0) / jnp.where(mass > 0, mass, 1.0), weights)
        mean, chol = weighted_moments(flat, half_weights, mutation.metric)
        scale = mutation.level_scale(carried_scale, flat, half_weights, chol)
        tuned.append(Tuned(mean, chol, jnp.asarray(scale, flat.dtype)))
    return jax.tree.map(lambda a, b: jnp.stack([a, b]), *tuned)

