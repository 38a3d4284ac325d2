"""BlackJAX's window adaptation for BlackJAX's HMC-family kernels, as a psample warm-up.

``psample.sample(blackjax.nuts(logdensity_fn, step_size, inverse_mass_matrix), ...)`` runs NUTS
with the parameters given: a BlackJAX ``SamplingAlgorithm`` has no adaptation hook, so its
``num_warmup`` steps are burn-in. :func:`window_adaptation` wraps a BlackJAX algorithm
(``blackjax.nuts``, ``blackjax.hmc``, ...) with Stan's windowed adaptation of the step size
(dual averaging) and of the (diagonal or dense) inverse mass matrix,
:func:`blackjax.window_adaptation`, so that ``psample.sample(..., num_warmup=1000)`` adapts as
Stan, NumPyro and PyMC do::

    algorithm = psample.window_adaptation(blackjax.nuts, logdensity_fn)
    trace = psample.sample(algorithm, positions, rng_key, 1000, num_warmup=1000)

Contract
--------
Each chain adapts on its own (BlackJAX's adaptation is single-chain; it is ``jax.vmap``-ed over
the chains), as in NumPyro and Stan, so every chain has its own step size and mass matrix: they
live in the chain's state (:class:`WindowAdaptedState`), and the ``parameters`` kept in the
trace and the checkpoint have a leading chain axis. The adaptation runs as one jitted
``run`` call (no progress bar, no checkpoint inside it, Ctrl-C waits for it), as BlackJAX runs it.
Without warm-up (``num_warmup=0`` or ``adapt=False``) the sampler uses ``step_size`` and
``inverse_mass_matrix`` (default: the identity).

References
----------
.. [1] Stan Development Team, "Stan Reference Manual", section "HMC algorithm parameters:
   automatic parameter tuning" (windowed adaptation).
.. [2] Matthew D. Hoffman and Andrew Gelman, "The No-U-Turn Sampler", JMLR 15, 2014
   (dual averaging of the step size).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import blackjax
import jax
import jax.flatten_util
import jax.numpy as jnp

from psample.base import ChainAlgorithm
from psample.errors import check_positive

__all__ = ["WindowAdaptedState", "window_adaptation"]


class WindowAdaptedState(NamedTuple):
    """One chain of a BlackJAX kernel with its own tuned parameters.

    position
        The draw (the kernel state's position), a pytree.
    logdensity
        ``()`` its log-density.
    state
        The BlackJAX kernel's state (e.g. ``HMCState``).
    step_size
        ``()`` this chain's step size.
    inverse_mass_matrix
        ``(d,)`` (diagonal) or ``(d, d)`` (dense) this chain's inverse mass matrix, ``d`` the
        size of the flattened position.
    """

    position: Any
    logdensity: Any
    state: Any
    step_size: Any
    inverse_mass_matrix: Any


class _Adaptation(NamedTuple):
    run: Callable


def window_adaptation(
    algorithm,
    logdensity_fn: Callable,
    *,
    step_size: float = 1.0,
    inverse_mass_matrix=None,
    is_mass_matrix_diagonal: bool = True,
    target_acceptance_rate: float = 0.8,
    **kwargs,
) -> ChainAlgorithm:
    """A BlackJAX HMC-family algorithm that adapts during :func:`psample.sample`'s warm-up.

    Parameters
    ----------
    algorithm
        A BlackJAX top-level algorithm taking ``step_size`` and ``inverse_mass_matrix``
        (``blackjax.nuts``, ``blackjax.hmc``, ``blackjax.mala``-like APIs are not covered).
    logdensity_fn
        ``position -> scalar``.
    step_size, inverse_mass_matrix
        The parameters without warm-up, and the adaptation's starting step size;
        ``inverse_mass_matrix`` defaults to the identity (``(d,)`` ones, or ``(d, d)`` when
        ``is_mass_matrix_diagonal=False``).
    is_mass_matrix_diagonal, target_acceptance_rate
        As in :func:`blackjax.window_adaptation`.
    **kwargs
        Other parameters of ``algorithm`` (e.g. ``num_integration_steps`` for ``blackjax.hmc``,
        ``max_num_doublings`` for ``blackjax.nuts``), passed to the algorithm and to the
        adaptation.

    Returns
    -------
    ChainAlgorithm
        ``init(position)``, ``step(rng_key, state)`` over :class:`WindowAdaptedState`;
        ``adaptation.run(rng_key, positions, num_steps)`` (all chains, each adapting on its own)
        and ``with_parameters(parameters)``.
    """
    step_size = check_positive("step_size", step_size)
    check_positive("target_acceptance_rate", target_acceptance_rate)
    for name in ("step_size", "inverse_mass_matrix"):
        if name in kwargs:
            raise TypeError(f"window_adaptation() got {name} twice")

    def initial_matrix(position):
        dim = jax.flatten_util.ravel_pytree(position)[0].shape[0]
        if inverse_mass_matrix is not None:
            return jnp.asarray(inverse_mass_matrix)
        return jnp.ones(dim) if is_mass_matrix_diagonal else jnp.eye(dim)

    def wrap(inner, eps, matrix):
        return WindowAdaptedState(inner.position, inner.logdensity, inner, jnp.asarray(eps), matrix)

    def init(position):
        matrix = initial_matrix(position)
        sampler = algorithm(logdensity_fn, step_size=step_size, inverse_mass_matrix=matrix, **kwargs)
        return wrap(sampler.init(position), step_size, matrix)

    def step(rng_key, state):
        sampler = algorithm(logdensity_fn, step_size=state.step_size,
                            inverse_mass_matrix=state.inverse_mass_matrix, **kwargs)  # fmt: skip
        inner, info = sampler.step(rng_key, state.state)
        return wrap(inner, state.step_size, state.inverse_mass_matrix), info

    def run(rng_key, positions, num_steps):
        window = blackjax.window_adaptation(
            algorithm, logdensity_fn, is_mass_matrix_diagonal=is_mass_matrix_diagonal,
            initial_step_size=step_size, target_acceptance_rate=target_acceptance_rate, **kwargs,
        )  # fmt: skip
        num_chains = jax.tree.leaves(positions)[0].shape[0]

        def one(key, position):
            (inner, parameters), _ = window.run(key, position, num_steps)
            return wrap(inner, parameters["step_size"], parameters["inverse_mass_matrix"])

        states = jax.jit(jax.vmap(one))(jax.random.split(rng_key, num_chains), positions)
        parameters = {"step_size": states.step_size, "inverse_mass_matrix": states.inverse_mass_matrix}
        return (states, parameters), None

    def with_parameters(parameters):
        # Each chain's parameters live in its state; a new chain starts from the first chain's.
        def init_tuned(position):
            eps = jnp.ravel(jnp.asarray(parameters["step_size"]))[0]
            matrix = jnp.asarray(parameters["inverse_mass_matrix"])
            if matrix.ndim > (1 if is_mass_matrix_diagonal else 2):
                matrix = matrix[0]
            sampler = algorithm(logdensity_fn, step_size=eps, inverse_mass_matrix=matrix, **kwargs)
            return wrap(sampler.init(position), eps, matrix)

        return ChainAlgorithm(init=init_tuned, step=step, adaptation=adaptation, with_parameters=with_parameters)

    adaptation = _Adaptation(run=run)
    return ChainAlgorithm(init=init, step=step, adaptation=adaptation, with_parameters=with_parameters)
