"""Networks for the graph-homomorphism samplers: random graph generators and small real networks.

Every function returns a :class:`networkx.Graph` with nodes relabelled ``0 .. n−1`` (the original
label kept in the node attribute ``"label"``) and, where the graph is weighted, edge weights in the
``"weight"`` attribute scaled to ``(0, 1]`` so that CHD thresholds ``θ ∈ [0, 1]`` are meaningful.
Convert with ``psample.graphs.network.Network.from_networkx``; the exact homomorphism densities,
MACC matrices and conditional densities of these graphs are computed by
:mod:`psample.graphs.exact` (dynamic programming over sparse mat-vecs, or enumeration for tiny
graphs). This module defines targets only and imports no sampler.

The real networks are the ones shipped with networkx, as used in network-observable studies such
as Lyu, Mémoli & Sivakoff (2023):

* ``karate``: Zachary's karate club, 34 nodes, 78 edges (weights = number of interactions);
* ``lesmis``: Les Misérables co-appearances, 77 nodes, 254 edges (weights = co-appearances);
* ``florentine``: Florentine families' marriages, 15 nodes, 20 edges (unweighted);
* ``davis``: Davis' southern women and the events they attended, 32 nodes, 89 edges (bipartite:
  use a lazy pivot chain on it).

References
----------
.. [1] H. Lyu, F. Mémoli, D. Sivakoff. "Sampling random graph homomorphisms and applications to
   network data analysis." JMLR 24(9), 2023. arXiv:1910.09483.
.. [2] A. Hagberg, D. Schult, P. Swart. "Exploring network structure, dynamics, and function
   using NetworkX." SciPy 2008.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from psample.errors import ModelError, check_positive_int

__all__ = [
    "REAL_NETWORKS",
    "erdos_renyi",
    "stochastic_block_model",
    "barabasi_albert",
    "karate",
    "les_miserables",
    "florentine_families",
    "davis_southern_women",
    "real_network",
    "largest_component",
]


def _probability(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ModelError(f"{name} must be a probability in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ModelError(f"{name} must be a probability in [0, 1], got {value!r}")
    return value


def _relabel(graph: nx.Graph, *, weighted: bool) -> nx.Graph:
    """Nodes ``0..n−1`` in the graph's node order; weights scaled to ``(0, 1]`` or dropped."""
    out = nx.convert_node_labels_to_integers(graph, label_attribute="label")
    weights = [float(w) for _, _, w in out.edges(data="weight", default=1.0)]
    top = max(weights) if weights else 1.0
    for (_, _, data), w in zip(out.edges(data=True), weights):
        data.clear()
        if weighted:
            data["weight"] = w / top
    return out


def largest_component(graph: nx.Graph) -> nx.Graph:
    """The largest connected component, relabelled ``0..m−1`` (original label in ``"label"``)."""
    nodes = max(nx.connected_components(graph), key=len)
    sub = graph.subgraph(nodes)
    weighted = any("weight" in d for _, _, d in sub.edges(data=True))
    return _relabel(sub, weighted=weighted)


def erdos_renyi(n: int, p: float, seed: int = 0) -> nx.Graph:
    """Erdős–Rényi ``G(n, p)`` (:func:`networkx.fast_gnp_random_graph`), unweighted.

    Parameters
    ----------
    n
        Number of nodes (>= 1).
    p
        Edge probability in ``[0, 1]``.
    seed
        Random seed (the graph is a deterministic function of it).
    """
    n = check_positive_int("n", n, error=ModelError)
    p = _probability("p", p)
    return nx.fast_gnp_random_graph(n, p, seed=seed)


def stochastic_block_model(sizes, p_in: float, p_out: float, seed: int = 0) -> nx.Graph:
    """Stochastic block model with ``len(sizes)`` blocks, unweighted.

    Edges are independent: probability ``p_in`` within a block, ``p_out`` between blocks. Each
    block is a :func:`networkx.fast_gnp_random_graph` and each pair of blocks a
    :func:`networkx.bipartite.random_graph` (both ``O(n + m)``), so graphs of 10⁵ nodes take about a
    second. Nodes ``0..n−1`` are in block order; the block of each node is in the node attribute
    ``"block"``.

    Parameters
    ----------
    sizes
        Block sizes, e.g. ``(50, 50)``.
    p_in, p_out
        Edge probability within and between blocks.
    seed
        Random seed (the graph is a deterministic function of it).
    """
    sizes = [check_positive_int("sizes[i]", s, error=ModelError) for s in sizes]
    if not sizes:
        raise ModelError("sizes must list at least one block size, got []")
    p_in, p_out = _probability("p_in", p_in), _probability("p_out", p_out)
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=len(sizes) ** 2)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    graph = nx.Graph()
    for b, size in enumerate(sizes):
        graph.add_nodes_from(range(offsets[b], offsets[b + 1]), block=b)
    for b, size in enumerate(sizes):
        block = nx.fast_gnp_random_graph(size, p_in, seed=int(seeds[b * len(sizes) + b]))
        graph.add_edges_from((u + offsets[b], v + offsets[b]) for u, v in block.edges())
        for c in range(b + 1, len(sizes)):
            between = nx.bipartite.random_graph(size, sizes[c], p_out, seed=int(seeds[b * len(sizes) + c]))
            # bipartite.random_graph numbers the first side 0..size-1, the second size..
            graph.add_edges_from((min(u, v) + offsets[b], max(u, v) - size + offsets[c])
                                 for u, v in between.edges())
    return graph


def barabasi_albert(n: int, m: int, seed: int = 0) -> nx.Graph:
    """Barabási–Albert preferential attachment graph (``m`` edges per new node), unweighted.

    Heavy-tailed degrees make it the standard non-regular test case: a pivot chain whose root is
    uniform (instead of ``∝ h_root``) is visibly biased on it.
    """
    n = check_positive_int("n", n, error=ModelError)
    m = check_positive_int("m", m, error=ModelError)
    if m >= n:
        raise ModelError(f"m must be smaller than n for a Barabási–Albert graph, got m={m}, n={n}")
    return nx.barabasi_albert_graph(n, m, seed=seed)


def karate(weighted: bool = False) -> nx.Graph:
    """Zachary's karate club (34 nodes, 78 edges); ``weighted`` uses the interaction counts."""
    return _relabel(nx.karate_club_graph(), weighted=weighted)


def les_miserables(weighted: bool = False) -> nx.Graph:
    """Les Misérables co-appearance network (77 nodes, 254 edges)."""
    return _relabel(nx.les_miserables_graph(), weighted=weighted)


def florentine_families(weighted: bool = False) -> nx.Graph:
    """Florentine families' marriage network (15 nodes, 20 edges; no weights to use)."""
    return _relabel(nx.florentine_families_graph(), weighted=weighted)


def davis_southern_women(weighted: bool = False) -> nx.Graph:
    """Davis' southern women – events bipartite network (32 nodes, 89 edges; no weights)."""
    return _relabel(nx.davis_southern_women_graph(), weighted=weighted)


#: Name -> constructor of the real networks shipped with networkx.
REAL_NETWORKS = {
    "karate": karate,
    "lesmis": les_miserables,
    "florentine": florentine_families,
    "davis": davis_southern_women,
}


def real_network(name: str, weighted: bool = False) -> nx.Graph:
    """One of :data:`REAL_NETWORKS` by name (``karate``, ``lesmis``, ``florentine``, ``davis``)."""
    if name not in REAL_NETWORKS:
        raise ModelError(f"network must be one of {sorted(REAL_NETWORKS)}, got {name!r}")
    return REAL_NETWORKS[name](weighted=weighted)
