"""The D-ADMMS iteration of Tzikas et al. [1]: state, info, ``init``, ``build_kernel``, the top-level API.

Every agent ``i`` of ``N`` keeps a local sample :math:`x_i` and a dual :math:`p_i`, with the
local potential :math:`f_i(x) = -\\log p(D_i \\mid x) - \\tfrac{1}{N} \\log p(x)`. One
synchronous iteration draws noise :math:`\\xi_i \\sim N(0, I / (2\\rho^2))` per agent (from
``fold_in(key, i)``, so the device layout does not change the draws), takes the noisy proximal
step

.. math::

    x_i^{k+1} = \\arg\\min_x \\; f_i(x) + \\langle p_i^k, x \\rangle
                + \\rho \\deg_i \\, \\| x - (c_i - \\xi_i) \\|^2, \\qquad
    c_i = \\tfrac12 (x_i^k + \\operatorname{mean}_{j \\in N_i} x_j^k)

(:mod:`psample.mcmc.admm.prox`), sends :math:`x_i^{k+1}` to the neighbours (one message per
iteration, :mod:`psample.mcmc.admm.collectives`) and takes the dual step
:math:`p_i^{k+1} = p_i^k + \\rho \\sum_{j \\in N_i} (x_i^{k+1} - x_j^{k+1})` (:math:`\\sum_i p_i`
stays 0: ``info.dual_sum``). See the :doc:`family page </families/admm>` for the method, tuning
and measured limits.

Contract: ``as_top_level_api`` returns a :class:`psample.base.ChainAlgorithm` whose
``state.position`` is the network average (a pytree shaped like the initial position) and whose
info is :class:`ADMMInfo`. With a mesh whose ``"shards"`` axis has several devices, each device
holds a block of ``N / S`` consecutive agents through ``jax.shard_map``; with one device the
same block code runs on all agents at once. The method's bias and the rules for ``rho`` are
summarised in :mod:`psample.mcmc.admm`.

References
----------
.. [1] Vasileios Tzikas, Licio Romao, Mert Pilanci, Alessandro Abate and Mykel J.
   Kochenderfer, "Distributed Markov Chain Monte Carlo Sampling based on the Alternating
   Direction Method of Multipliers", arXiv:2401.15838, 2024.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from blackjax.base import build_sampling_algorithm
from blackjax.types import Array, ArrayLikeTree, ArrayTree, PRNGKey
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from psample.base import ChainAlgorithm, HoistedArguments
from psample.errors import InitialPointError, InvalidTuningError, ShapeError, check_positive, check_positive_int
from psample.mcmc.admm.collectives import _block_comm, _communicate, _neighbour_rows
from psample.mcmc.admm.data import ShardedTarget, _num_agents, _place
from psample.mcmc.admm.mean_offset import check_mean_offset
from psample.mcmc.admm.network import SHARD_AXIS, Network, build_network
from psample.mcmc.admm.prox import (
    _DEFAULT_PROX_STEPS,
    _batched_with,
    _lbfgs,
    _local_logdensity,
    _newton,
    _prox_objective,
    _quadratic_factors,
)

__all__ = ["ADMMState", "ADMMInfo", "init", "build_kernel", "as_top_level_api"]


class ADMMState(NamedTuple):
    """State of one D-ADMMS chain (``N`` agents, ``d`` parameters in total).

    position
        The network average ``(1/N) sum_i x_i``, a pytree shaped like the initial position.
    local_positions
        Every agent's local sample ``x_i``, shape ``(N, d)`` (flattened with
        ``jax.flatten_util.ravel_pytree`` order). Record it with the observable
        ``{"local": lambda state: state.local_positions}``.
    duals
        Every agent's dual ``p_i``, shape ``(N, d)``; their sum stays 0.
    neighbour_sums
        ``sum_{j in N_i} x_j`` for every agent, shape ``(N, d)``: the last message received,
        kept so that one communication per iteration serves the dual and the next prox step.
    """

    position: ArrayTree
    local_positions: Array
    duals: Array
    neighbour_sums: Array


class ADMMInfo(NamedTuple):
    """Diagnostics of one D-ADMMS iteration (replicated, so every process can read them).

    prox_residual
        Largest max-norm, over agents, of the gradient of the proximal objective at the new
        ``x_i`` (round-off for ``prox="quadratic"``; compare with ``prox_tol`` otherwise).
    prox_iterations
        Largest number of solver iterations any agent took (1 for ``"quadratic"``).
    consensus_distance
        ``max_i ||x_i - x̄||`` after the step: the spread of the agents around the average.
    dual_sum
        ``max |sum_i p_i|``: 0 up to round-off (a conserved direction of the recursion).
    average_score
        ``sum_i grad log p_i(x̄)``, shape ``(d,)``: the posterior's score (gradient of the
        log-density, prior included) at the new network average ``x̄``, one gradient per agent
        and one sum over agents. Its mean over the draws is 0 when the agents' gradients act as
        one gradient at ``x̄``; :func:`check_mean_offset` tests it.
    num_nonfinite
        How many of this step's evaluations of the user's functions were not finite (int32):
        agents whose prox ended where their log-density is NaN or +inf or its gradient is not
        finite, plus agents whose gradient at ``x̄`` is not finite.
    """

    prox_residual: Array
    prox_iterations: Array
    consensus_distance: Array
    dual_sum: Array
    average_score: Array
    num_nonfinite: Array


def init(
    position: ArrayLikeTree,
    target: ShardedTarget,
    data: ArrayTree,
    network: Network,
    local_positions: Array | None = None,
) -> ADMMState:
    """Start every agent at ``position`` (or at its row of ``local_positions``), duals 0.

    Parameters
    ----------
    position
        A pytree of floating arrays (no chain axis): the starting point of every agent, and the
        structure of the state's ``position``.
    target, data, network
        The sharded posterior, the data (leading agent axis) and the layout.
    local_positions
        Optional ``(N, d)`` per-agent starting points (flattened), e.g. the reference code's
        i.i.d. ``N(0, I)`` starts; ``position`` then only gives the structure.

    Raises
    ------
    InitialPointError
        If the position is concrete and some agent's local log-likelihood (or the prior) is not
        finite there. Under ``jit`` the local positions become NaN instead, which
        ``psample.sample`` reports naming the chains.
    """
    flat, unravel = jax.flatten_util.ravel_pytree(position)
    n = network.num_agents
    if local_positions is None:
        local_positions = jnp.broadcast_to(flat, (n, flat.shape[0]))
    local_positions = jnp.asarray(local_positions, flat.dtype)
    if local_positions.shape != (n, flat.shape[0]):
        raise ShapeError(f"local_positions must have shape {(n, flat.shape[0])}, got {local_positions.shape}")

    local_log = jax.vmap(lambda x, shard: target.loglik_fn(unravel(x), shard) + target.logprior_fn(unravel(x)))(
        local_positions, data
    )
    if local_log.shape != (n,):
        raise ShapeError(f"loglik_fn and logprior_fn must return scalars, got per-agent shape {local_log.shape[1:]}")
    finite = jnp.isfinite(local_log)
    if not isinstance(finite, jax.core.Tracer) and not bool(finite.all()):
        bad = np.flatnonzero(~np.asarray(finite)).tolist()
        raise InitialPointError(
            f"the local log-likelihood (plus log-prior) is not finite for agent(s) {bad[:20]} at their "
            f"starting points (values {np.asarray(local_log)[bad[:5]].tolist()}): start elsewhere"
        )
    # Under jit: NaN marks the agents that cannot start, for the runner's check of initial states.
    local_positions = jnp.where(finite[:, None], local_positions, jnp.nan)
    duals = jnp.zeros_like(local_positions)
    neighbour_sums, mean = _communicate(network, local_positions)
    state = ADMMState(unravel(mean), local_positions, duals, neighbour_sums)
    if network.mesh is not None:
        # Replicated, so that every process can read (check) the initial state.
        state = jax.lax.with_sharding_constraint(state, NamedSharding(network.mesh, PartitionSpec()))
    return state


def build_kernel(prox: str = "newton", prox_steps: int | None = None, prox_tol: float = 1e-9, noise: bool = True,
                 layout_invariant: bool = True):  # fmt: skip
    """Build the D-ADMMS kernel.

    Parameters
    ----------
    prox
        ``"quadratic"`` (closed form, Gaussian likelihoods; needs ``prox_factors``),
        ``"newton"`` or ``"lbfgs"``.
    prox_steps, prox_tol
        Iteration cap and gradient max-norm tolerance of the iterative solvers.
    noise
        ``False`` gives noise-free (deterministic) consensus ADMM.
    layout_invariant
        For the iterative solvers: give every chain its own (broadcast) copy of the shard, so
        that the chains' log-likelihoods are computed alike whatever the number of chains per
        device (:func:`_batched_with`). Sums over agents follow ``network.exact_sums``.

    Returns
    -------
    kernel(rng_key, state, target, data, network, rho, prox_factors=None) -> (state, info)
        ``prox_factors`` is ``(g0, M, H)`` for ``"quadratic"``: ``g0_i = grad f_i(0)`` ``(N, d)``,
        ``M_i = (H_i + 2 rho deg_i I)^{-1}`` and ``H_i`` ``(N, d, d)``.
    """
    steps = _DEFAULT_PROX_STEPS[prox] if prox_steps is None else prox_steps

    def kernel(rng_key: PRNGKey, state: ADMMState, target: ShardedTarget, data, network: Network, rho,
               prox_factors=None) -> tuple[ADMMState, ADMMInfo]:  # fmt: skip
        _, unravel = jax.flatten_util.ravel_pytree(state.position)
        n = network.num_agents
        block = n // (network.mesh.shape[SHARD_AXIS] if network.mesh is not None else 1)
        first_index, total, neighbour_sums = _block_comm(network, block)
        objective = _prox_objective(target, unravel, n)
        x0 = state.local_positions
        sigma = jnp.sqrt(0.5) / rho

        def block_step(x, p, nsum, shard, degrees, neighbour_rows, factors, key):
            d = x.shape[1]
            agents = first_index() + jnp.arange(x.shape[0])
            xi = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (d,), x.dtype))(agents)
            xi = sigma * xi if noise else jnp.zeros_like(xi)
            deg = degrees[:, None]
            centre = 0.5 * (x + nsum / jnp.maximum(deg, 1.0)) - xi
            penalty = rho * degrees
            if layout_invariant and prox != "quadratic":
                shard = _batched_with(shard, x)

            def solve(xi_, pi, ci, shard_i, pen, fac):
                args = (shard_i, pi, ci, pen)
                if prox == "quadratic":
                    g0, inverse, _ = fac
                    y, it = inverse @ (-g0 - pi + 2.0 * pen * ci), jnp.int32(1)
                elif prox == "newton":
                    y, it = _newton(objective, xi_, args, steps, prox_tol)
                else:
                    y, it = _lbfgs(objective, xi_, args, steps, prox_tol)
                value, gradient = jax.value_and_grad(objective)(y, *args)
                residual = jnp.max(jnp.abs(gradient))
                # NaN, or a log-density of +inf (the objective's -inf), or a non-finite gradient.
                bad = jnp.isnan(value) | (value == -jnp.inf) | ~jnp.isfinite(residual)
                return y, residual, it, bad

            x_new, residual, iters, bad_prox = jax.vmap(solve)(x, p, centre, shard, penalty, factors)
            nsum_new = neighbour_sums(x_new, neighbour_rows)
            p_new = p + rho * (deg * x_new - nsum_new)
            mean = total(x_new) / n
            spread = jnp.sqrt(jnp.sum((x_new - mean) ** 2, axis=1)).max()
            # Every agent's gradient at the network average: their sum is the posterior's score
            # there, whose stationary mean is 0 when the agents' gradients at their own x_i
            # (which drive the average) act as one gradient at x̄ (check_mean_offset).
            if prox == "quadratic":
                g0, _, hessians = factors
                local_scores = -(g0 + hessians @ mean)
            else:
                local_scores = jax.vmap(jax.grad(_local_logdensity(target, unravel, n)), (None, 0))(mean, shard)
            score = total(local_scores)
            bad = bad_prox.astype(jnp.int32).sum()
            bad = bad + (~jnp.all(jnp.isfinite(local_scores), axis=1)).astype(jnp.int32).sum()
            stats = jnp.stack([residual.max(), spread, iters.max().astype(x.dtype)])
            if network.mesh is not None:
                stats = lax.pmax(stats, SHARD_AXIS)
                bad = lax.psum(bad, SHARD_AXIS)
            dual_sum = jnp.max(jnp.abs(total(p_new)))
            return x_new, p_new, nsum_new, mean, stats, dual_sum, score, bad

        factors = prox_factors if prox == "quadratic" else jnp.zeros((n, 0), x0.dtype)
        args = (x0, state.duals, state.neighbour_sums, data, network.degrees.astype(x0.dtype),
                _neighbour_rows(network, n), factors)  # fmt: skip
        if network.mesh is None:
            out = block_step(*args, rng_key)
        else:
            spec = PartitionSpec(SHARD_AXIS)
            out = jax.shard_map(
                block_step, mesh=network.mesh, in_specs=(spec,) * len(args) + (PartitionSpec(),),
                out_specs=(spec, spec, spec) + (PartitionSpec(),) * 5, check_vma=False,
            )(*args, rng_key)  # fmt: skip
        x_new, p_new, nsum_new, mean, stats, dual_sum, score, bad = out
        info = ADMMInfo(stats[0], stats[2].astype(jnp.int32), stats[1], dual_sum, score, bad)
        return ADMMState(unravel(mean), x_new, p_new, nsum_new), info

    return kernel


def as_top_level_api(
    logprior_fn: Callable,
    loglik_fn: Callable,
    data: ArrayTree,
    *,
    rho: float = 5.0,
    graph="complete",
    prox: str = "newton",
    prox_steps: int | None = None,
    prox_tol: float = 1e-9,
    noise: bool = True,
    mesh: Mesh | None = None,
    position_like: ArrayLikeTree | None = None,
    layout_invariant: bool = True,
) -> ChainAlgorithm:
    """D-ADMMS: distributed sampling with noisy consensus ADMM (Tzikas et al. 2024).

    Parameters
    ----------
    logprior_fn
        ``position -> scalar`` log-prior (split equally among the agents).
    loglik_fn
        ``(position, shard) -> scalar`` log-likelihood of one agent's data shard.
    data
        Pytree whose leaves have a leading agent axis ``(N, ...)``: one equal-size shard per
        agent (:func:`shard` splits an array).
    rho
        ADMM penalty (> 0); it also sets the noise, ``sigma^2 = 1 / (2 rho^2)``. The paper's 5
        (:mod:`psample.mcmc.admm` discusses the choice). On a regular graph of degree ``D`` the
        network average is an implicit Langevin chain at temperature ``D / (2 rho)`` with step
        ``eta = 1 / (2 rho D N)``: covariance ``T H^-1 (I + eta H / 2)^-1`` for a Gaussian
        posterior of precision ``H``, relaxation in about ``2 rho D N / lambda`` iterations.
        A larger ``rho`` shrinks the mean offset on non-Gaussian posteriors and the
        variance with it; :func:`check_mean_offset`, which
        ``psample.sample`` runs at the end of every run (``ChainAlgorithm.check_trace``), warns when the
        offset exceeds its Monte Carlo error. With hundreds of agents prefer a sparse graph.
    graph
        ``"complete"``, ``"ring"``, or a networkx graph over the agents ``0 .. N-1``.
    prox
        ``"newton"`` (default; small ``d``), ``"lbfgs"`` (optax), or ``"quadratic"`` (closed
        form for Gaussian likelihoods and prior; needs ``position_like`` or is built on the
        first ``init``).
    prox_steps, prox_tol
        Iteration cap (default 20 Newton / 200 L-BFGS iterations) and tolerance on the max-norm
        of the prox objective's gradient; the achieved value is ``info.prox_residual``.
    noise
        ``False``: noise-free consensus ADMM (converges to the posterior mode).
    mesh
        A ``jax.sharding.Mesh`` with Auto axes; blocks of ``N / S`` agents are placed on the
        ``S`` devices of its ``"shards"`` axis (``N`` must be divisible by ``S``). Pass the same
        mesh to ``psample.sample`` (chains go on its ``"chains"`` axis, if it has one). A mesh
        may span several processes (``jax.distributed.initialize``): pass ``data`` from
        :func:`load_shards`, so that every process loads and holds only its own agents' shards
        (host arrays are accepted too: each process then copies its blocks to its devices).
        The data and prox matrices reach the runner's jitted functions as arguments
        (``ChainAlgorithm.hoisted_arguments``, :mod:`psample.base`), never as constants.
    position_like
        Optional position (pytree, no chain axis) for ``prox="quadratic"``: its matrices are
        then computed (and a non-quadratic likelihood refused) now, instead of when the first
        step is traced.
    layout_invariant
        ``True`` (default): the run is bit for bit the same on any device layout (exact
        fixed-point sums over agents, neighbour sums in a fixed order, a per-chain copy of the
        shards for the iterative prox; :mod:`psample.mcmc.admm.collectives`,
        :mod:`psample.mcmc.admm.prox`). Its costs: an extra ``pmax`` and
        an integer ``psum`` of ``4 d`` numbers per sum over agents, and with ``"newton"`` or
        ``"lbfgs"`` a copy of each shard per chain (memory ``chains x data`` per device):
        ``False`` for big shards and many chains with an iterative prox, or to save the
        exact sums' per-iteration cost; draws then agree to round-off only.

    Returns
    -------
    psample.base.ChainAlgorithm
        ``init(position)`` starts every agent at ``position``; ``step(key, state)`` is one
        synchronous iteration. ``state.position`` is the network average.

    Examples
    --------
    >>> alg = psample.admm(logprior, loglik, psample.mcmc.admm.shard(xy, 20), graph="ring")
    >>> trace = psample.sample(alg, jnp.zeros((100, 2)), jax.random.key(0), 200,
    ...                        observables={"local": lambda s: s.local_positions})
    """
    rho = check_positive("rho", rho)
    if prox not in _DEFAULT_PROX_STEPS:
        raise InvalidTuningError(f"prox must be 'quadratic', 'newton' or 'lbfgs', got {prox!r}")
    if prox_steps is not None:
        prox_steps = check_positive_int("prox_steps", prox_steps)
    prox_tol = check_positive("prox_tol", prox_tol)
    if not callable(logprior_fn) or not callable(loglik_fn):
        raise TypeError("logprior_fn and loglik_fn must be functions")
    num_agents = _num_agents(data)
    network = build_network(graph, num_agents, mesh, exact_sums=layout_invariant)
    # The data (and the closed-form prox matrices) are laid out on the mesh's "shards" axis. On
    # a mesh spanning several processes they are global arrays of which each process holds its
    # own blocks, and jit cannot embed those as constants: the algorithm hands them to the
    # runner (``ChainAlgorithm.hoisted_arguments``), which passes them to its jitted functions as
    # arguments. Always so, that one process and several compile the same program.
    data = _place(data, network.mesh)
    target = ShardedTarget(logprior_fn, loglik_fn)
    kernel = build_kernel(prox, prox_steps, prox_tol, noise, layout_invariant)

    factors = {}

    def quadratic_factors(position):
        # Built once per parameter structure, outside any trace (the matrices are constants).
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), position)
        key = _structure_key(position)
        if key not in factors:
            zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
            flat, unravel = jax.flatten_util.ravel_pytree(zeros)
            with jax.ensure_compile_time_eval():
                built = _quadratic_factors(target, data, network, rho, unravel, flat.shape[0], flat.dtype)
                built = _place(built, network.mesh)
            factors[key] = built
        return factors[key]

    if prox == "quadratic" and position_like is not None:
        quadratic_factors(position_like)

    def algorithm(data, built):
        """The algorithm on ``data`` and prox matrices ``built`` (concrete, or the runner's traced arguments)."""

        def step_kernel(rng_key, state, target, data, network, rho):
            fac = None
            if prox == "quadratic":
                key = _structure_key(state.position)
                fac = built[key] if key in built else quadratic_factors(state.position)
            return kernel(rng_key, state, target, data, network, rho, fac)

        return build_sampling_algorithm(step_kernel, init, target, init_args=(data, network),
                                        kernel_args=(data, network, rho))  # fmt: skip

    sampling = algorithm(data, factors)
    return ChainAlgorithm(
        sampling.init,
        sampling.step,
        # The arrays jit must take as arguments (the data, and the prox matrices built so far:
        # the runner traces a step before it compiles), and the algorithm rebuilt on them.
        hoisted_arguments=lambda: HoistedArguments((data, dict(factors)), lambda arguments: algorithm(*arguments)),
        check_trace=lambda trace: check_mean_offset(trace, rho=rho),
    )


def _structure_key(position) -> str:
    return str(jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), position))
