"""The agents' proximal step: closed form for Gaussian likelihoods, damped Newton, L-BFGS.

Agent ``i`` minimises :math:`f_i(y) + \\langle p_i, y \\rangle + \\rho \\deg_i \\|y - c\\|^2` over
its flattened parameters ``y`` (``d`` of them), :math:`f_i` its negative log-likelihood plus
``1/N`` of the negative log-prior (:func:`_prox_objective`).

- ``"quadratic"``: exact in closed form for Gaussian likelihoods and prior. The matrices
  :math:`(H_i + 2\\rho\\deg_i I)^{-1}` are computed once (:func:`_quadratic_factors`), which
  refuses a potential whose Hessian changes with the position.
- ``"newton"``: damped Newton with Armijo backtracking (:func:`_newton`); ``d x d`` Hessians,
  for small ``d``.
- ``"lbfgs"``: optax L-BFGS with its zoom line search (:func:`_lbfgs`).

The iterative solvers stop at ``prox_tol`` on the gradient's max-norm or after ``prox_steps``
iterations (:data:`_DEFAULT_PROX_STEPS`). An inexact prox changes the chain: the achieved
residual is recorded in ``info.prox_residual``.

Layout invariance: vmapped over chains that share a shard, the log-likelihood's matrix-vector
products become one matrix product whose summation order XLA chooses by the number of chains per
device. :func:`_batched_with` gives every chain its own copy of the agent's shard, so the draws do
not depend on how the chains are split over devices (at the cost of ``chains x data`` memory per
device). ``info.prox_residual`` of ``"quadratic"`` (a diagnostic evaluated on the shared shard)
may still round differently when the chains are split over devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from psample.errors import InvalidTuningError
from psample.mcmc.admm.data import ShardedTarget
from psample.mcmc.admm.network import Network

__all__: list[str] = []  # package-private: the kernel's solvers

#: Default iteration caps of the proximal solvers.
_DEFAULT_PROX_STEPS = {"quadratic": 1, "newton": 20, "lbfgs": 200}


@jax.custom_batching.custom_vmap
def _batched_with(tree, like):
    """``tree``, given a batch axis wherever ``like`` has one (a ``jax.vmap`` over chains).

    The iterative prox evaluates the user's log-likelihood on a shard shared by all chains: a
    vmap over chains turns its matrix-vector products into one matrix product, whose summation
    order XLA picks by the number of chains (a different one on a device holding half of them).
    Giving the shard a chain axis of its own keeps every chain's products matrix-vector
    products, computed alike for any number of chains per device.
    """
    return tree


@_batched_with.def_vmap
def _batched_with_rule(axis_size, in_batched, tree, like):
    tree_batched, _ = in_batched
    out = jax.tree.map(lambda a, b: a if b else jnp.broadcast_to(a, (axis_size,) + a.shape), tree, tree_batched)
    return _batched_with(out, like), jax.tree.map(lambda _: True, tree)


def _local_logdensity(target: ShardedTarget, unravel, num_agents: int):
    """``-f_i``: agent ``i``'s log-likelihood plus its ``1/N`` share of the log-prior, at a flat ``y``."""

    def local(y, shard):
        return target.loglik_fn(unravel(y), shard) + target.logprior_fn(unravel(y)) / num_agents

    return local


def _prox_objective(target: ShardedTarget, unravel, num_agents: int):
    local = _local_logdensity(target, unravel, num_agents)

    def objective(y, shard, dual, centre, penalty):
        return -local(y, shard) + dual @ y + penalty * jnp.sum((y - centre) ** 2)

    return objective


def _newton(objective, y0, args, steps, tol):
    """Damped Newton (Armijo backtracking by halving) from ``y0``; returns (y, iterations)."""
    grad = jax.grad(objective)
    hess = jax.hessian(objective)

    def cond(carry):
        it, _, g = carry
        return (it < steps) & (jnp.max(jnp.abs(g)) > tol)

    def body(carry):
        it, y, g = carry
        direction = -jnp.linalg.solve(hess(y, *args), g)
        value = objective(y, *args)
        slope = g @ direction
        # Near the optimum the decrease is below the round-off of the objective's value: allow
        # that much, or the line search would stall a converging Newton iteration.
        slack = 1e3 * jnp.finfo(value.dtype).eps * (jnp.abs(value) + 1.0)

        def shrink(c):
            t, _ = c
            return t * 0.5, objective(y + 0.5 * t * direction, *args)

        def too_high(c):
            t, v = c
            return (t > 1e-10) & ~(v <= value + 1e-4 * t * slope + slack)

        t, _ = lax.while_loop(too_high, shrink, (jnp.ones_like(value), objective(y + direction, *args)))
        y = y + t * direction
        return it + 1, y, grad(y, *args)

    it, y, _ = lax.while_loop(cond, body, (jnp.int32(0), y0, grad(y0, *args)))
    return y, it


def _lbfgs(objective, y0, args, steps, tol):
    """optax L-BFGS (zoom line search) from ``y0``; returns (y, iterations)."""
    import optax
    import optax.tree_utils as otu

    fn = lambda y: objective(y, *args)  # noqa: E731
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fn)

    def body(carry):
        y, state = carry
        value, g = value_and_grad(y, state=state)
        updates, state = solver.update(g, state, y, value=value, grad=g, value_fn=fn)
        return optax.apply_updates(y, updates), state

    def cond(carry):
        _, state = carry
        it = otu.tree_get(state, "count")
        g = otu.tree_get(state, "grad")
        return (it == 0) | ((it < steps) & (jnp.max(jnp.abs(g)) > tol))

    y, state = lax.while_loop(cond, body, (y0, solver.init(y0)))
    return y, otu.tree_get(state, "count").astype(jnp.int32)


def _quadratic_factors(target: ShardedTarget, data, network: Network, rho: float, unravel, d: int, dtype):
    """``grad f_i(0)``, ``(H_i + 2 rho deg_i I)^{-1}`` and ``H_i``, checking that every ``f_i`` is quadratic."""
    n = network.num_agents

    def f(y, shard):
        return -(target.loglik_fn(unravel(y), shard) + target.logprior_fn(unravel(y)) / n)

    # One jitted function of the data (an argument, not a constant XLA would fold).
    @jax.jit
    def derivatives(data, penalty):
        zero = jnp.zeros(d, dtype)
        hessian = jax.vmap(jax.hessian(f), (None, 0))
        # A quadratic potential has the same Hessian everywhere: compare with a second point.
        probe = jnp.linspace(-1.0, 1.0, d, dtype=dtype) + 0.5
        hessians = hessian(zero, data)
        inverse = jnp.linalg.inv(hessians + penalty[:, None, None] * jnp.eye(d, dtype=dtype))
        return jax.vmap(jax.grad(f), (None, 0))(zero, data), hessians, hessian(probe, data), inverse

    g0, hessians, at_probe, inverse = derivatives(data, 2.0 * rho * network.degrees.astype(dtype))
    scale = float(jnp.max(jnp.abs(hessians))) + 1.0
    if not bool(jnp.all(jnp.isfinite(hessians))) or float(jnp.max(jnp.abs(at_probe - hessians))) > 1e-6 * scale:
        raise InvalidTuningError(
            "prox='quadratic' needs Gaussian (quadratic) local log-likelihoods and prior, but the Hessian of "
            "some agent's potential changes with the position: use prox='newton' or 'lbfgs'"
        )
    return g0, inverse, hessians
