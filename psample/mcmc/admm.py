"""Distributed MCMC with ADMM (D-ADMMS): one data shard per agent, agents on devices.

The posterior :math:`\\mu^*(x) \\propto \\exp(-\\sum_i f_i(x))` is split over ``N`` agents on an
undirected graph, agent ``i`` holding the data shard :math:`D_i` and the local potential

.. math::

    f_i(x) = -\\log p(D_i \\mid x) - \\tfrac{1}{N} \\log p(x)

(the prior is shared equally). Every agent keeps a local sample :math:`x_i` and a dual
:math:`p_i`; one synchronous iteration of Tzikas et al. [1] is

1. noise :math:`\\xi_i \\sim N(0, \\sigma^2 I)`, :math:`\\sigma^2 = 1 / (2\\rho^2)`, one draw per
   agent shared by all its edge terms;
2. the noisy proximal step, with :math:`c_i = \\tfrac12 (x_i^k + \\operatorname{mean}_{j \\in N_i}
   x_j^k)` and :math:`\\deg_i = |N_i|`:

   .. math::

       x_i^{k+1} = \\arg\\min_x \\; f_i(x) + \\langle p_i^k, x \\rangle
                   + \\rho \\deg_i \\, \\| x - (c_i - \\xi_i) \\|^2 ;

3. communication: every agent sends :math:`x_i^{k+1}` (one ``d``-vector) to its neighbours; the
   neighbour sums serve the dual step now and the proximal step of the next iteration, so one
   message per iteration is all the algorithm needs;
4. the dual step :math:`p_i^{k+1} = p_i^k + \\rho \\sum_{j \\in N_i} (x_i^{k+1} - x_j^{k+1})`
   (:math:`\\sum_i p_i` stays 0: recorded as ``info.dual_sum``).

The neighbour sums run over each agent's **real neighbours**. The authors' code
(``sisl/Distributed_ADMM_Sampler``) sums the quadratic term over agents ``0 .. deg_i - 1``
instead (its dual step does use the real neighbours); that index slip is not copied, so its
stored figures are not reproduced exactly. Nor is the baseline-only slip of its logistic
script (the prior gradient of D-SGLD taken at the true parameter).

**The method is biased by design.** For Gaussian targets the stationary mean of every agent is
the posterior mean, but the stationary covariance is not the posterior's: it depends on ``rho``
and on the graph (for the reference linear regression, W2 to the posterior plateaus at 0.068 on
the 20-agent cycle with ``rho = 5`` and at 0.164 on the complete graph). Noise-free ADMM
(``noise=False``) converges to the posterior mode with the agents in consensus. A graph without
edges leaves every agent at its local MAP (no noise enters: the noise only acts through edges).

**rho on a regular graph** (degree ``D``: ``N - 1`` for the complete graph, 2 for the ring).
Summing the agents' prox optimality conditions (``sum_i p_i = 0`` and ``sum_i c_i = N x̄``)
gives the network average's update exactly:

.. math::

    \\bar x^{k+1} = \\bar x^k - \\eta \\sum_i \\nabla f_i(x_i^{k+1})
                    - \\bar\\xi, \\qquad \\eta = \\frac{1}{2\\rho D N}, \\quad
                    \\bar\\xi \\sim N\\big(0, \\tfrac{1}{2\\rho^2 N} I\\big),

an implicit Langevin step on the posterior potential (when the agents' gradients act as one
gradient at the average) at temperature :math:`T = D/(2\\rho)`: the noise variance is
:math:`2\\eta T`. For a Gaussian posterior of precision ``H`` its stationary covariance is
:math:`T H^{-1} (I + \\eta H / 2)^{-1}`: exact when every shard has the same curvature, 0-7%
below the exact law on the reference linear regression and 3-26% below it at precision ~3,000
with unequal shards (``tests/test_admm.py``), within 6% on the logistic regression of
BENCHMARKS.md. So the variance is ``T`` times the posterior's only while
``eta lambda << 1`` (``lambda`` a posterior precision eigenvalue); ``rho = D / 2`` gives
``T = 1`` but not the posterior's variance when ``lambda`` is comparable to ``2 rho D N``. The
average relaxes in about ``2 rho D N / lambda`` iterations; with many agents no ``rho`` is both
fast and accurate on the complete graph (1,000 agents, d = 100: BENCHMARKS.md).

**rho and the mean.** For a non-Gaussian posterior the gradients at the agents' own positions
(spread around the average by the noise, sd ``1 / (sqrt(2) rho)`` per agent and step) do not
act as one gradient at the average, and the average's mean moves off the posterior's. On the
logistic regression of BENCHMARKS.md (``benchmarks/admm_rho.py``, 10 agents) the offset is
0.42 posterior sd at ``rho = 2.5`` and 0.14 at 5 on the complete graph, within Monte Carlo
error at 10 and 20, where the variance ratio has fallen to 0.42 and 0.21. The default stays
``rho = 5``: of the values measured it has the smallest error overall on the complete graph
(variance ratio 0.76-0.82, offset 0.14 sd), and the offset is flagged at the end of the run:
:func:`check_mean_offset` tests the mean of the posterior's score at the network average
(``info.average_score``; 0 when the gradients act as one) against its Monte Carlo error and
warns naming ``rho``. It sees the offset that the agents' disagreement causes, not the shift of
a too-narrow law's mean towards the posterior's mode (the ring at ``rho = 20`` was 0.04 sd off,
unflagged): the variance error of the rule above remains the method's, by design.
The parameters' scale matters: the noise is fixed in the parameters' units, so the method is not
invariant to rescaling them.

Devices: with a mesh whose ``"shards"`` axis has several devices, each device holds a block of
``N / S`` consecutive agents through ``jax.shard_map``. The complete graph communicates with one
sum over all agents (which also gives the network average), the ring with two ``ppermute`` of
the block's end rows, any other graph with an ``all_gather`` of the new local samples and the
block's rows of a neighbour table. With one device the same block code runs on all agents at
once. Each agent's noise comes from ``fold_in(key, agent index)``, so the placement does not
change the draws, and by default (``layout_invariant=True``) not a bit of them either, on any
number of devices or processes, with any number of agents or chains per device:

- sums over all agents (complete graph, network average, dual sum) are exact fixed-point sums,
  a ``pmax`` and an integer ``psum`` (:func:`_fixed_point_total`): a float ``psum`` adds the
  block sums in another order than one device adds the agents, which changes the last bits;
- other graphs add each agent's neighbours one by one in increasing order (a matrix product
  with the adjacency rows would sum in an order that depends on the block's shape);
- the iterative solvers give every chain its own copy of the agent's shard
  (:func:`_batched_with`): vmapped over chains that share a shard, the log-likelihood's
  matrix-vector products become one matrix product whose summation order XLA chooses by the
  number of chains per device (measured: 1e-15 apart on the 2x2 chains x shards mesh).

``layout_invariant=False`` uses plain float ``psum``s and shared shards instead (same draws to
round-off). Measured costs are in BENCHMARKS.md (ADMM, part 3). Only ``info.prox_residual`` of
``prox="quadratic"`` (a diagnostic evaluated on the shared shard) may round differently when the
chains are split over devices.

The proximal step is exact in closed form for Gaussian likelihoods (``prox="quadratic"``: the
matrices :math:`(H_i + 2\\rho\\deg_i I)^{-1}` are computed once), or iterative for general
smooth ones: damped Newton (``"newton"``, small ``d``) or optax L-BFGS (``"lbfgs"``), stopped at
``prox_tol`` on the gradient's max-norm or after ``prox_steps`` iterations. An inexact prox
changes the chain: the achieved residual is recorded in ``info.prox_residual``.

References
----------
.. [1] Vasileios Tzikas, Licio Romao, Mert Pilanci, Alessandro Abate and Mykel J.
   Kochenderfer, "Distributed Markov Chain Monte Carlo Sampling based on the Alternating
   Direction Method of Multipliers", arXiv:2401.15838, 2024. Code:
   https://github.com/sisl/Distributed_ADMM_Sampler
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import networkx as nx
import numpy as np
from blackjax.base import SamplingAlgorithm, build_sampling_algorithm

from psample.base import ChainAlgorithm, HoistedArguments
from blackjax.types import Array, ArrayLikeTree, ArrayTree, PRNGKey
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from psample.errors import (
    InitialPointError,
    InvalidTuningError,
    NetworkError,
    NumericalWarning,
    ShapeError,
    check_positive,
    check_positive_int,
)

__all__ = [
    "ADMMState",
    "ADMMInfo",
    "ShardedTarget",
    "Network",
    "init",
    "build_kernel",
    "as_top_level_api",
    "build_network",
    "shard",
    "sharded_numpyro_model",
    "ShardedModel",
    "SHARD_AXIS",
    "load_shards",
    "MeanOffset",
    "check_mean_offset",
]

#: The mesh axis agents (data shards) are laid out along.
SHARD_AXIS = "shards"

#: Default iteration caps of the iterative proximal solvers.
_DEFAULT_PROX_STEPS = {"quadratic": 1, "newton": 20, "lbfgs": 200}


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


class ShardedTarget(NamedTuple):
    """A posterior split over data shards: ``logprior_fn(x) + sum_i loglik_fn(x, data_i)``."""

    logprior_fn: Callable
    loglik_fn: Callable


class Network(NamedTuple):
    """Static layout of the agents (built once by :func:`build_network`).

    num_agents
        ``N``.
    kind
        ``"complete"``, ``"ring"``, ``"graph"`` (neighbour-table sums) or ``"none"`` (no edges).
    degrees
        ``deg_i``, float array ``(N,)``.
    adjacency
        ``(N, N)`` 0/1 float matrix for ``kind="graph"``, else ``None``.
    mesh
        The mesh whose ``"shards"`` axis holds blocks of agents, or ``None`` (one device).
    neighbours
        ``(N, max degree)`` int32 table of every agent's neighbours in increasing order, padded
        with ``N`` (a row of zeros), for ``kind="graph"``; else ``None``.
    exact_sums
        Sums over all agents (the complete graph's neighbour sums, the network average, the
        dual sum) are exact fixed-point sums, independent of the device layout.
    """

    num_agents: int
    kind: str
    degrees: Array
    adjacency: Array | None
    mesh: Mesh | None
    neighbours: Array | None = None
    exact_sums: bool = True


# ----------------------------------------------------------------------------- set-up


def shard(array, num_agents: int, *, name: str = "data"):
    """Split ``array`` along its first axis into ``num_agents`` equal shards.

    Returns an array of shape ``(num_agents, n / num_agents, ...)``. Shards must be of equal
    size (no padding: a padded observation would change the likelihood); drop or add
    observations so that ``num_agents`` divides their number.
    """
    num_agents = check_positive_int("num_agents", num_agents)
    array = jnp.asarray(array)
    if array.ndim == 0 or array.shape[0] % num_agents:
        raise ShapeError(
            f"{name} with {array.shape[0] if array.ndim else 0} observations (shape {array.shape}) cannot "
            f"be split into num_agents={num_agents} shards of equal size; shards are not padded"
        )
    return array.reshape(num_agents, array.shape[0] // num_agents, *array.shape[1:])


def _num_agents(data) -> int:
    leaves = jax.tree_util.tree_flatten_with_path(data)[0]
    if not leaves:
        raise ShapeError("data must be a pytree of arrays with a leading agent axis, got no arrays")
    sizes = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ShapeError(f"data leaf {jax.tree_util.keystr(path) or 'data'} is a scalar: it needs a leading agent axis")
        sizes[jax.tree_util.keystr(path) or "data"] = shape
    leading = {s[0] for s in sizes.values()}
    if len(leading) > 1:
        raise ShapeError(
            f"data leaves disagree on the number of agents (leading axis): {sizes}; every leaf needs "
            "the shape (num_agents, ...) with equal-size shards (see psample.mcmc.admm.shard)"
        )
    return leading.pop()


def build_network(graph, num_agents: int, mesh: Mesh | None = None, exact_sums: bool = True) -> Network:
    """Check ``graph`` and ``mesh`` against ``num_agents`` and return the static layout.

    ``graph`` is ``"complete"``, ``"ring"`` (``N >= 3``) or a networkx graph whose nodes are
    ``0 .. N-1``. A graph must be connected, except a graph without any edge, which is allowed
    on purpose: every agent then stays at its local MAP (the reference's "no edges" case).
    """
    n = num_agents
    adjacency = None
    if isinstance(graph, str):
        if graph == "complete":
            kind, degrees = ("complete" if n > 1 else "none"), np.full(n, n - 1.0)
        elif graph == "ring":
            if n < 3:
                raise NetworkError(f"graph='ring' needs at least 3 agents, got {n} (use 'complete')")
            kind, degrees = "ring", np.full(n, 2.0)
        else:
            raise InvalidTuningError(f"graph must be 'complete', 'ring' or a networkx graph, got {graph!r}")
    elif isinstance(graph, nx.Graph):
        if graph.is_directed():
            raise NetworkError("graph must be undirected (communication goes both ways)")
        if set(graph.nodes) != set(range(n)):
            raise ShapeError(
                f"graph has {graph.number_of_nodes()} nodes {sorted(graph.nodes)[:10]}..., but data has "
                f"{n} agents (leading axis): the nodes must be 0 .. {n - 1}"
            )
        if nx.number_of_selfloops(graph):
            raise NetworkError(f"graph has self-loops at {list(nx.nodes_with_selfloops(graph))[:10]}")
        if graph.number_of_edges() == 0:
            kind = "none"
        elif not nx.is_connected(graph):
            parts = nx.number_connected_components(graph)
            raise NetworkError(
                f"graph is disconnected ({parts} components): the agents cannot reach consensus; "
                "connect it (a graph without any edge is allowed: local MAPs)"
            )
        else:
            kind = "graph"
        adjacency = (nx.to_numpy_array(graph, nodelist=range(n)) != 0).astype(np.float64)
        degrees = adjacency.sum(axis=1)
    else:
        raise InvalidTuningError(
            f"graph must be 'complete', 'ring' or a networkx graph, got {type(graph).__name__}"
        )
    if mesh is not None:
        if not isinstance(mesh, Mesh):
            raise InvalidTuningError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
        if SHARD_AXIS not in mesh.axis_names or mesh.shape[SHARD_AXIS] == 1:
            mesh = None
        else:
            if any(t == jax.sharding.AxisType.Explicit for t in mesh.axis_types):
                raise InvalidTuningError(
                    f"mesh has Explicit axes {mesh.axis_types}: build it with Auto axes, e.g. "
                    "jax.make_mesh(shape, names, axis_types=(jax.sharding.AxisType.Auto,) * len(names))"
                )
            size = mesh.shape[SHARD_AXIS]
            if n % size:
                raise ShapeError(
                    f"{n} agents cannot be laid out on the mesh's {size} {SHARD_AXIS!r} devices: "
                    f"use a number of agents divisible by {size}"
                )
    neighbours = None
    if kind != "graph":
        adjacency = None
    else:
        # Neighbour sums add the neighbours one by one in increasing order: the same additions
        # in the same order whatever block of agents a device holds (a matrix product's order
        # would depend on the block's shape).
        width = int(adjacency.sum(axis=1).max())
        neighbours = np.full((n, width), n, np.int32)
        for i in range(n):
            row = np.flatnonzero(adjacency[i])
            neighbours[i, : len(row)] = row
    # Host arrays: constants of every jitted function, on any process.
    return Network(n, kind, np.asarray(degrees, np.float64), adjacency, mesh, neighbours, bool(exact_sums))


# ----------------------------------------------------------------------------- communication


def _power_of_two(exponent, dtype):
    """``2.0 ** exponent`` built from its bits (exact; ``exponent`` clipped to the normal range)."""
    info = jnp.finfo(dtype)
    bits, mantissa = info.bits, info.nmant
    bias = info.maxexp - 1
    exponent = jnp.clip(exponent, info.minexp, info.maxexp - 1).astype(jnp.int64 if bits == 64 else jnp.int32)
    integer = jnp.int64 if bits == 64 else jnp.int32
    return lax.bitcast_convert_type((exponent + bias).astype(integer) << mantissa, dtype)


def _fixed_point_total(values, num_agents: int, sharded: bool):
    """``values.sum(axis=0)`` over every agent on every device, exactly and in no order at all.

    A float sum depends on the order of its terms, and XLA orders them by the shapes it sees
    (the agents per device, its vector width): the total of a run on four devices would differ
    from one device's in the last bits. Here every value is written as a few integer limbs on a
    grid fixed by the largest magnitude of all agents (a ``pmax``, exact), the limbs are summed
    as integers (a ``psum`` of integers: associative, exact) and the float is rebuilt once from
    the integer totals. So the total is a function of the set of values alone: bit for bit the
    same on any number of devices, with any number of agents per device. Values below
    ``2**-(limbs x bits)`` of the largest are truncated (for float64 and up to ``2**21`` agents:
    3 limbs of 32 bits, 96 bits below the largest, far below its round-off); a non-finite value
    makes the total NaN.
    """
    dtype = values.dtype
    info = jnp.finfo(dtype)
    integer = jnp.int64 if info.bits == 64 else jnp.int32
    int_bits = 64 if info.bits == 64 else 32
    # Limbs small enough that the sum of every agent's fits the integer type.
    limb_bits = min(32, int_bits - 2 - int(np.ceil(np.log2(num_agents + 1))))
    num_limbs = -(-(info.nmant + 1 + 40) // limb_bits)
    finite = jnp.isfinite(values)
    magnitude = jnp.max(jnp.where(finite, jnp.abs(values), 0), axis=0)
    bad = (~finite).astype(integer)
    if sharded:
        magnitude = lax.pmax(magnitude, SHARD_AXIS)
    _, exponent = jnp.frexp(magnitude)  # magnitude < 2 ** exponent (0 for 0 and subnormals)
    y = jnp.where(finite, values, 0) * _power_of_two(-exponent, dtype)  # |y| < 1, exact
    shift = jnp.asarray(2.0**limb_bits, dtype)
    limbs = []
    for _ in range(num_limbs):
        y = y * shift
        limb = jnp.trunc(y)
        y = y - limb  # exact: the integer part of a float is a float
        limbs.append(limb.astype(integer))
    sums = jnp.stack(limbs + [bad]).sum(axis=1)  # (num_limbs + 1, d) integers
    if sharded:
        sums = lax.psum(sums, SHARD_AXIS)
    total = sums[num_limbs - 1].astype(dtype)
    for k in range(num_limbs - 2, -1, -1):
        total = sums[k].astype(dtype) + total / shift
    total = total * _power_of_two(exponent - limb_bits, dtype)
    return jnp.where(sums[num_limbs] > 0, jnp.nan, total)


def _block_comm(network: Network, block: int):
    """Functions of one device's block of agents: first agent index, totals, neighbour sums.

    Inside ``shard_map`` they use collectives over ``"shards"``; without a mesh the block is
    every agent and they are plain array operations. ``total(values)`` sums ``(block, d)``
    per-agent values over all agents: exactly (:func:`_fixed_point_total`) when
    ``network.exact_sums``, else a float ``psum`` of the block sums.
    """
    sharded = network.mesh is not None
    size = network.mesh.shape[SHARD_AXIS] if sharded else 1

    def first_index():
        return lax.axis_index(SHARD_AXIS) * block if sharded else 0

    def total(values):
        if network.exact_sums:
            return _fixed_point_total(values, network.num_agents, sharded)
        block_sum = values.sum(axis=0)
        return lax.psum(block_sum, SHARD_AXIS) if sharded else block_sum

    def neighbour_sums(x, neighbour_rows):
        if network.kind == "none":
            return jnp.zeros_like(x)
        if network.kind == "complete":
            return total(x) - x
        if network.kind == "ring":
            if sharded:
                forward = [(s, (s + 1) % size) for s in range(size)]
                backward = [(s, (s - 1) % size) for s in range(size)]
                prev_last = lax.ppermute(x[-1:], SHARD_AXIS, forward)
                next_first = lax.ppermute(x[:1], SHARD_AXIS, backward)
            else:
                prev_last, next_first = x[-1:], x[:1]
            left = jnp.concatenate([prev_last, x[:-1]])
            right = jnp.concatenate([x[1:], next_first])
            return left + right
        everyone = lax.all_gather(x, SHARD_AXIS, tiled=True) if sharded else x
        everyone = jnp.concatenate([everyone, jnp.zeros_like(everyone[:1])])  # row N: padding
        columns = jnp.asarray(neighbour_rows).T  # (max degree, block)
        return lax.fori_loop(1, columns.shape[0], lambda k, acc: acc + everyone[columns[k]], everyone[columns[0]])

    return first_index, total, neighbour_sums


def _neighbour_rows(network: Network, num_agents: int):
    if network.neighbours is not None:
        return network.neighbours
    return np.zeros((num_agents, 0), np.int32)


# ----------------------------------------------------------------------------- init


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


def _communicate(network: Network, x):
    """Neighbour sums and network average of a full ``(N, d)`` array, both replicated."""
    n = network.num_agents
    block = n // (network.mesh.shape[SHARD_AXIS] if network.mesh is not None else 1)
    _, total, neighbour_sums = _block_comm(network, block)

    def fn(x_block, neighbour_rows):
        sums = neighbour_sums(x_block, neighbour_rows)
        if network.mesh is not None:
            # The initial state is replicated on every device (the runner's checks read it on
            # every process); the first step's shard_map hands each device its block.
            sums = lax.all_gather(sums, SHARD_AXIS, tiled=True)
        return sums, total(x_block) / n

    if network.mesh is None:
        return fn(x, _neighbour_rows(network, n))
    spec = PartitionSpec(SHARD_AXIS)
    return jax.shard_map(
        fn, mesh=network.mesh, in_specs=(spec, spec), out_specs=(PartitionSpec(), PartitionSpec()), check_vma=False
    )(x, _neighbour_rows(network, n))


# ----------------------------------------------------------------------------- kernel


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


# ----------------------------------------------------------------------------- top level


def _spans_processes(mesh: Mesh | None) -> bool:
    return mesh is not None and any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def _place(tree, mesh: Mesh | None):
    """Lay a pytree's leading (agent) axis out on the mesh's ``"shards"`` axis.

    Host arrays on a mesh that spans several processes become global arrays of which every
    process keeps only its own devices' blocks (copied from its host array); global arrays
    (e.g. from :func:`load_shards`) stay where they are when already laid out so.
    """
    if mesh is None:
        return jax.tree.map(jnp.asarray, tree)
    sharding = NamedSharding(mesh, PartitionSpec(SHARD_AXIS))

    def leaf(x):
        if isinstance(x, jax.Array):
            if x.sharding.is_equivalent_to(sharding, x.ndim):
                return x
            return jax.device_put(x, sharding)
        if _spans_processes(mesh):
            host = np.asarray(x)
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
        return jax.device_put(jnp.asarray(x), sharding)

    return jax.tree.map(leaf, tree)


def load_shards(loader: Callable, num_agents: int, mesh: Mesh | None = None):
    """Data for :func:`as_top_level_api` of which every process loads only its own agents.

    Parameters
    ----------
    loader
        ``loader(agents: slice) -> pytree of arrays`` with leading axis ``agents.stop -
        agents.start``: the shards of those agents (read from disk, a database, ...). It is
        called only for the blocks of agents on this process's devices (once per block).
    num_agents
        ``N``, the number of agents of the whole run.
    mesh
        The mesh whose ``"shards"`` axis holds the agents (it may span several processes, under
        ``jax.distributed.initialize``); ``None``: one device, ``loader(slice(0, N))``.

    Returns
    -------
    A pytree of global ``jax.Array`` of shape ``(N, ...)`` laid out on ``"shards"``; on a
    multi-process mesh no process holds another's blocks. Every process calls this (and
    :func:`as_top_level_api`, and ``psample.sample``) with the same arguments but its own data.
    """
    num_agents = check_positive_int("num_agents", num_agents)
    if mesh is None or SHARD_AXIS not in mesh.axis_names:
        return jax.tree.map(jnp.asarray, loader(slice(0, num_agents)))
    size = mesh.shape[SHARD_AXIS]
    if num_agents % size:
        raise ShapeError(
            f"{num_agents} agents cannot be laid out on the mesh's {size} {SHARD_AXIS!r} devices: "
            f"use a number of agents divisible by {size}"
        )
    sharding = NamedSharding(mesh, PartitionSpec(SHARD_AXIS))
    blocks = {}

    def load(agents: slice):
        key = (agents.start or 0, num_agents if agents.stop is None else agents.stop)
        if key not in blocks:
            tree = jax.tree.map(np.asarray, loader(slice(*key)))
            for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
                if x.ndim == 0 or x.shape[0] != key[1] - key[0]:
                    raise ShapeError(
                        f"loader(slice{key}) returned {jax.tree_util.keystr(path) or 'data'} of shape {x.shape}: "
                        f"its leading axis must be the {key[1] - key[0]} agents asked for"
                    )
            blocks[key] = tree
        return blocks[key]

    local = sharding.addressable_devices_indices_map((num_agents,))
    first = load(next(iter(local.values()))[0])
    leaves, structure = jax.tree.flatten(first)
    arrays = [
        jax.make_array_from_callback(
            (num_agents,) + x.shape[1:], sharding,
            lambda index, i=i: jax.tree.leaves(load(index[0]))[i][(slice(None),) + tuple(index[1:])],
        )  # fmt: skip
        for i, x in enumerate(leaves)
    ]
    return jax.tree.unflatten(structure, arrays)


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
        ADMM penalty (> 0); it also sets the noise, ``sigma^2 = 1 / (2 rho^2)``. The paper's 5,
        kept on measured evidence (module notes). On a regular graph of degree ``D`` the
        network average is an implicit Langevin chain at temperature ``D / (2 rho)`` with step
        ``eta = 1 / (2 rho D N)``: covariance ``T H^-1 (I + eta H / 2)^-1`` for a Gaussian
        posterior of precision ``H``, relaxation in about ``2 rho D N / lambda`` iterations.
        A larger ``rho`` shrinks the mean offset on non-Gaussian posteriors (3x from 2.5 to
        5 in BENCHMARKS.md) and the variance with it; :func:`check_mean_offset`, which
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
        shards for the iterative prox; see the module notes). Its costs: an extra ``pmax`` and
        an integer ``psum`` of ``4 d`` numbers per sum over agents, and with ``"newton"`` or
        ``"lbfgs"`` a copy of each shard per chain (memory ``chains x data`` per device):
        ``False`` for big shards and many chains with an iterative prox, or to save the
        measured per-iteration cost (BENCHMARKS.md); draws then agree to round-off only.

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


# ----------------------------------------------------------------------------- bias check


class MeanOffset(NamedTuple):
    """What :func:`check_mean_offset` found, per flattened coordinate (``d`` of them).

    score_mean
        ``(d,)`` mean of ``info.average_score`` (the posterior's score at the network average)
        over every chain and draw.
    score_se
        ``(d,)`` its Monte Carlo standard error: the spread of ``num_groups`` group means
        (whole chains, or equal consecutive blocks of them when there are fewer than 20 chains).
    z
        ``(d,)`` ``score_mean / score_se``.
    threshold
        The ``|z|`` beyond which the mean is called off: the Student-t quantile with
        ``num_groups - 1`` degrees of freedom of a 1e-3 false-alarm rate over all ``d``
        coordinates (Bonferroni).
    offset_sd
        ``(d,)`` the network average's mean minus the posterior's, in posterior sds, by a
        Gaussian approximation fitted to the draws (NaN where it cannot be fitted).
    biased
        ``max |z| > threshold``.
    num_groups
        The number of group means behind ``score_se``.
    """

    score_mean: np.ndarray
    score_se: np.ndarray
    z: np.ndarray
    threshold: float
    offset_sd: np.ndarray
    biased: bool
    num_groups: int


def check_mean_offset(trace, *, rho: float | None = None, warn: bool = True) -> MeanOffset:
    """Test a D-ADMMS run for a mean offset beyond its Monte Carlo error; warn if there is one.

    At stationarity the network average moves by ``-eta sum_i grad f_i(x_i) - noise`` with the
    gradients taken at the agents' own positions ``x_i`` (module notes), so the mean of
    ``sum_i grad f_i(x_i)`` is 0. If the agents' gradients acted as one gradient at the average
    (agents in consensus, or Gaussian shards of equal curvature), the posterior's score at the
    average, ``info.average_score``, would have mean 0 as well, and for a near-Gaussian
    posterior ``E[score] = -H (mean - posterior mean)`` (``H`` its precision): a nonzero mean is
    an offset of the network average's mean. Tempering the posterior (the method's variance
    error) leaves the score's mean at 0, so this checks the mean alone. It needs no reference
    run: the group means of the recorded scores give the Monte Carlo error (chains are
    independent; with fewer than 20 chains each is cut into consecutive blocks, which assumes
    the blocks are longer than the autocorrelation time). The warm-up's draws are not in the
    trace; a run that has not reached stationarity can be flagged too.

    Parameters
    ----------
    trace
        A :class:`psample.Trace` of a ``psample.admm`` run: ``trace.info.average_score`` of
        shape ``(chains, draws, d)`` and ``trace.positions`` (the network average).
    rho
        The ``rho`` of the run, quoted in the warning (``psample.admm`` passes its own).
    warn
        ``False``: return the result without warning.

    Returns
    -------
    MeanOffset

    Warns
    -----
    NumericalWarning
        When ``max |z|`` exceeds the threshold, with the offset in posterior sds and what to
        change in ``psample.admm``.
    """
    from scipy import stats

    score = np.asarray(getattr(trace.info, "average_score", None) if trace.info is not None else None)
    if score.ndim != 3:
        raise ShapeError(
            f"trace.info.average_score must have shape (chains, draws, d) (a psample.admm run), got {score.shape}"
        )
    num_chains, num_draws, d = score.shape
    positions = jax.vmap(jax.vmap(lambda x: jax.flatten_util.ravel_pytree(x)[0]))(trace.positions)
    positions = np.asarray(positions)
    blocks = min(num_draws, -(-20 // num_chains))
    length = num_draws // blocks
    # Group means over the last blocks * length draws (the first draws of a short remainder go).
    groups = score[:, num_draws - blocks * length :].reshape(num_chains, blocks, length, d).mean(axis=2)
    groups = groups.reshape(num_chains * blocks, d)
    k = groups.shape[0]
    mean = score.reshape(-1, d).mean(axis=0)
    se = groups.std(axis=0, ddof=1) / np.sqrt(k) if k > 1 else np.full(d, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, mean / se, np.where(mean == 0, 0.0, np.inf))
    threshold = float(stats.t.ppf(1 - 0.5e-3 / d, max(k - 1, 1)))
    biased = bool(np.nanmax(np.abs(z)) > threshold) if k > 1 else False
    offset = _gaussian_offset(positions.reshape(-1, d), score.reshape(-1, d), mean)
    result = MeanOffset(mean, se, z, threshold, offset, biased, k)
    if biased and warn:
        worst = int(np.nanargmax(np.abs(z)))
        size = (
            f"about {abs(offset[worst]):.2g} posterior sd by a Gaussian approximation"
            if np.isfinite(offset[worst]) else "its size in posterior sds could not be estimated"
        )  # fmt: skip
        said = "" if rho is None else f" (rho={rho:g}: agents' noise sd 1/(sqrt(2) rho) = {np.sqrt(0.5) / rho:.3g})"
        warnings.warn(
            f"the D-ADMMS network average's mean is off the posterior's beyond its Monte Carlo error: the "
            f"posterior's score at the average has mean {mean[worst]:.3g} +- {se[worst]:.2g} in coordinate "
            f"{worst} (z = {z[worst]:.1f}, threshold {threshold:.1f}), an offset of {size}. The agents' noise"
            f"{said} spreads them around their average and their gradients at their own positions pull it off "
            "the posterior's mean. A larger rho in psample.admm shrinks the offset (twice rho: about a third), at a "
            "cost: the average's variance shrinks too (its temperature is deg / (2 rho) on a regular graph of "
            "degree deg) and it relaxes more slowly; or keep rho and read the means as biased by this much.",
            NumericalWarning,
            stacklevel=2,
        )
    return result


def _gaussian_offset(x: np.ndarray, g: np.ndarray, g_mean: np.ndarray) -> np.ndarray:
    """Mean offset in posterior sds from draws ``x`` and scores ``g`` (both ``(M, d)``).

    For a Gaussian posterior of precision ``H`` the score is ``-H (x - mu)``, so the draws'
    cross-covariance is ``Cov(x, g) = -Cov(x) H`` whatever the draws' own covariance (which
    D-ADMMS gets wrong): ``H = -Cov(x)^{-1} Cov(x, g)``, the offset ``-H^{-1} E[g]`` and the
    posterior sds ``sqrt(diag H^{-1})``.
    """
    d = x.shape[1]
    nan = np.full(d, np.nan)
    if x.shape[0] <= d + 1:
        return nan
    xc, gc = x - x.mean(axis=0), g - g.mean(axis=0)
    cov, cross = xc.T @ xc, xc.T @ gc
    try:
        precision = -np.linalg.solve(cov, cross)
        precision = 0.5 * (precision + precision.T)
        if not np.all(np.isfinite(precision)) or np.linalg.eigvalsh(precision).min() <= 0:
            return nan
        covariance = np.linalg.inv(precision)
    except np.linalg.LinAlgError:
        return nan
    return -(covariance @ g_mean) / np.sqrt(np.diag(covariance))


# ----------------------------------------------------------------------------- NumPyro


class ShardedModel(NamedTuple):
    """A NumPyro model split for :func:`as_top_level_api` by :func:`sharded_numpyro_model`.

    logprior_fn
        ``z -> scalar``: log-prior of the latent sites in NumPyro's unconstrained space, the
        log-Jacobian of the constraining map included.
    loglik_fn
        ``(z, shard) -> scalar``: summed log-probability of the observed sites on one shard.
    data
        ``{name: (N, n / N, ...)}``: the sharded data arguments.
    target
        :func:`psample.from_numpyro` of the model on the pooled data: initial positions,
        ``postprocess`` to constrained sites, and the full posterior for a reference run.
    """

    logprior_fn: Callable
    loglik_fn: Callable
    data: dict
    target: object


def sharded_numpyro_model(model, num_agents: int, sharded: dict, **kwargs) -> ShardedModel:
    """Split a NumPyro model with observed sites over ``num_agents`` data shards.

    Parameters
    ----------
    model
        A NumPyro model whose likelihood is a product over observations (an ``obs=`` site in a
        plate over the sharded arguments).
    num_agents
        Number of shards; it must divide the number of observations (no padding).
    sharded
        ``{argument name: array}``: model keyword arguments with a leading observation axis
        (e.g. ``{"X": X, "y": y}``), split into equal shards along it.
    **kwargs
        Other (unsharded) keyword arguments of the model.

    Raises
    ------
    ShapeError
        If the sharded arrays disagree on the number of observations or ``num_agents`` does not
        divide it.
    ModelError
        If the model cannot be initialised or has no observed site.
    """
    from numpyro import handlers
    from numpyro.infer.util import potential_energy

    from psample.errors import ModelError
    from psample.targets import from_numpyro, observed_loglikelihood

    num_agents = check_positive_int("num_agents", num_agents)
    if not isinstance(sharded, dict) or not sharded:
        raise ShapeError(f"sharded must be a non-empty dict of arrays with an observation axis, got {sharded!r}")
    sizes = {name: np.shape(value)[0] if np.ndim(value) else None for name, value in sharded.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ShapeError(f"the sharded arguments disagree on the number of observations: {sizes}")
    data = {name: shard(value, num_agents, name=name) for name, value in sharded.items()}
    first = {name: value[0] for name, value in data.items()}
    try:
        trace = handlers.trace(handlers.seed(model, 0)).get_trace(**kwargs, **first)
    except Exception as exc:  # user code raises anything
        raise ModelError(f"could not run model {getattr(model, '__name__', model)!r} on one shard: {exc}") from exc
    if not any(site["type"] == "sample" and site["is_observed"] for site in trace.values()):
        raise ModelError(f"model {getattr(model, '__name__', model)!r} has no observed (obs=) site to shard")
    target = from_numpyro(model, **kwargs, **{name: jnp.asarray(v) for name, v in sharded.items()})

    def loglik_fn(z, shard_data):
        return observed_loglikelihood(model, (), {**kwargs, **shard_data}, z)

    # The log-prior (with the log-Jacobian) is the log joint on one shard minus that shard's
    # log-likelihood: one shard's cost per call, not the pooled data's.
    first_kwargs = {**kwargs, **first}

    def logprior_fn(z):
        return -potential_energy(model, (), first_kwargs, z) - loglik_fn(z, first)

    return ShardedModel(logprior_fn, loglik_fn, data, target)
