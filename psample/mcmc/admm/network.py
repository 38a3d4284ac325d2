"""The agents' communication graph and its layout on a mesh (:func:`build_network`).

``N`` agents talk over an undirected graph: ``"complete"``, ``"ring"`` or any connected
networkx graph on ``0 .. N-1`` (a graph without edges is allowed: every agent stays at its local
MAP). :class:`Network` is the static layout that the kernel and the collectives read: the
graph's kind, the degrees, a table of neighbours in increasing order, and the mesh whose
``"shards"`` axis (:data:`SHARD_AXIS`) holds blocks of ``N / S`` consecutive agents on its ``S``
devices. Everything here is checked and built once, on the host, before any tracing; the
arrays are NumPy constants of every compiled function on any process.

Limits: ``N`` must be divisible by the number of ``"shards"`` devices (agents are not padded),
and the mesh must have Auto axes (``jax.shard_map`` over Explicit axes is refused).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import networkx as nx
import numpy as np
from blackjax.types import Array
from jax.sharding import Mesh

from psample.errors import InvalidTuningError, NetworkError, ShapeError

__all__ = ["SHARD_AXIS", "Network", "build_network"]

#: The mesh axis agents (data shards) are laid out along.
SHARD_AXIS = "shards"


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
