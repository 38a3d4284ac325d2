"""Motifs ``F = ([k], E_F)``: the small graphs whose homomorphisms into a network are sampled.

A motif is hashable static data (numpy arrays fixed at construction), so a sampler can close
over it and loop over its ``k`` nodes at trace time. The pivot chain of Lyu, Mémoli & Sivakoff
needs a tree, rooted at ``root``: each non-root node ``c`` is placed from its ``parent[c]``, in
the breadth-first ``order``. Glauber dynamics works for any connected motif; for a motif with
cycles ``parent``/``order`` describe a breadth-first spanning tree (used to draw initial
embeddings).

Edge orientation. A motif edge ``(i, j)`` asks for ``A(x_i, x_j) > 0``. For undirected input
(a networkx ``Graph``, ``directed=False``) edges are oriented away from the root: parent→child
on the spanning tree, and from the earlier to the later node in breadth-first order off the
tree. On a symmetric network orientation does not matter. With ``directed=True`` (or a
networkx ``DiGraph``) edges keep the given orientation and tree edges may point towards the
root; ``parent_edge_forward[c]`` says which way the edge between ``parent[c]`` and ``c`` points.

References
----------
.. [1] H. Lyu, F. Mémoli, D. Sivakoff. "Sampling random graph homomorphisms and applications to
   network data analysis." Journal of Machine Learning Research 24(9), 2023. arXiv:1910.09483.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import networkx as nx
import numpy as np

from psample.errors import MotifError

__all__ = ["Motif", "MAX_MOTIF_NODES", "as_motif"]

#: Default cap on the number of motif nodes (the chains loop over motif nodes at trace time).
MAX_MOTIF_NODES = 32


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array)
    array.setflags(write=False)
    return array


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Motif:
    """A connected motif with a root, as static numpy arrays (hashable; compare by value).

    Build with :meth:`from_edges`, :meth:`from_networkx`, :meth:`path`, :meth:`star` or
    :meth:`cycle`.

    Attributes
    ----------
    num_nodes : int
        ``k``.
    edges : int32 (m, 2)
        Directed edges ``(i, j)``, each asking for ``A(x_i, x_j) > 0``; see the module
        docstring for how undirected input is oriented (parent→child on trees); sorted
        lexicographically.
    root : int
        The root (pivot) node.
    directed : bool
        Whether edge orientations were given (and are kept when re-rooting).
    is_tree : bool
        Whether the underlying undirected graph is a tree (``m = k - 1``, connected).
    parent : int32 (k,)
        Parent of each node in the breadth-first spanning tree from ``root``; -1 at the root.
    order : int32 (k,)
        Breadth-first order from the root (``order[0] == root``); parents come before children.
    children_count : int32 (k,)
        Number of children of each node in the spanning tree.
    parent_edge_forward : bool (k,)
        For ``c != root``: whether the tree edge points ``parent[c] -> c`` (else ``c -> parent[c]``).
    neighbour_nodes : int32 (k, Δ)
        Motif neighbours of each node (any direction), padded with 0; ``Δ = max(1, max degree)``.
        Column 0 is the node's spanning-tree parent when it has one.
    neighbour_outgoing : bool (k, Δ)
        Whether the edge to ``neighbour_nodes[v, j]`` points away from ``v``.
    neighbour_mask : bool (k, Δ)
        Which entries of ``neighbour_nodes`` are real.
    """

    num_nodes: int
    edges: np.ndarray
    root: int
    directed: bool
    is_tree: bool
    parent: np.ndarray
    order: np.ndarray
    children_count: np.ndarray
    parent_edge_forward: np.ndarray
    neighbour_nodes: np.ndarray
    neighbour_outgoing: np.ndarray
    neighbour_mask: np.ndarray

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_edges(cls, edges, num_nodes=None, root=0, *, directed=False, max_nodes=MAX_MOTIF_NODES) -> "Motif":
        """Build a motif on nodes ``0..k-1`` from an edge list.

        Parameters
        ----------
        edges : array-like (m, 2) of int
            Edges ``(i, j)``. With ``directed=False`` they are unordered pairs, oriented away
            from the root; with ``directed=True`` each asks for ``A(x_i, x_j) > 0``.
        num_nodes : int, optional
            ``k``; default ``1 + max node in edges``.
        root : int
            Root (pivot) node.
        directed : bool
        max_nodes : int
            Cap on ``k`` (default :data:`MAX_MOTIF_NODES`).

        Raises
        ------
        MotifError
            Empty motif, more than ``max_nodes`` nodes, self-loop, repeated edge, node out of
            range, disconnected motif, or root out of range.
        """
        raw = np.asarray(edges if len(edges) else np.zeros((0, 2)), dtype=np.int64)
        if raw.ndim != 2 or raw.shape[1] != 2:
            raise MotifError(f"edges must have shape (m, 2), got shape {raw.shape}")
        if num_nodes is None:
            num_nodes = int(raw.max()) + 1 if raw.size else 0
        return _build(raw, int(num_nodes), root, bool(directed), max_nodes)

    @classmethod
    def from_networkx(cls, graph, root=None, *, max_nodes=MAX_MOTIF_NODES) -> "Motif":
        """Build a motif from a networkx graph; motif node ``i`` is ``list(graph.nodes)[i]``.

        Parameters
        ----------
        graph : networkx.Graph or networkx.DiGraph
            A ``DiGraph`` keeps its edge orientations (``directed=True``).
        root
            A node of ``graph``; default the first node.
        """
        if not isinstance(graph, nx.Graph):
            raise MotifError(f"graph must be a networkx graph, got {type(graph).__name__}")
        if graph.is_multigraph():
            raise MotifError("motif must be a simple graph, got a networkx multigraph")
        nodes = list(graph.nodes)
        if not nodes:
            raise MotifError("motif is empty (0 nodes): a motif needs at least one node")
        if root is None:
            root = nodes[0]
        if root not in graph:
            raise MotifError(f"root={root!r} is not a node of the motif (nodes {nodes[:10]!r})")
        label = {u: i for i, u in enumerate(nodes)}
        edges = np.array([(label[u], label[v]) for u, v in graph.edges], dtype=np.int64).reshape(-1, 2)
        return _build(edges, len(nodes), label[root], graph.is_directed(), max_nodes)

    @classmethod
    def path(cls, k: int) -> "Motif":
        """Path ``0 - 1 - ... - (k-1)`` with ``k`` nodes, rooted at the end node 0."""
        k = _count("k", k, minimum=1)
        return cls.from_edges([(i, i + 1) for i in range(k - 1)], num_nodes=k, root=0)

    @classmethod
    def star(cls, k: int) -> "Motif":
        """Star with ``k`` nodes in all: centre 0 (the root) and ``k - 1`` leaves ``1..k-1``."""
        k = _count("k", k, minimum=1)
        return cls.from_edges([(0, i) for i in range(1, k)], num_nodes=k, root=0)

    @classmethod
    def cycle(cls, k: int) -> "Motif":
        """Cycle ``0 - 1 - ... - (k-1) - 0`` with ``k >= 3`` nodes, rooted at 0 (not a tree)."""
        k = _count("k", k, minimum=3)
        return cls.from_edges([(i, (i + 1) % k) for i in range(k)], num_nodes=k, root=0)

    def rooted_at(self, root: int) -> "Motif":
        """The same motif with another root (undirected motifs are re-oriented away from it)."""
        return _build(self.edges.astype(np.int64), self.num_nodes, root, self.directed, max(self.num_nodes, 1))

    # ------------------------------------------------------------------ helpers
    @property
    def num_edges(self) -> int:
        """Number of edges ``m``."""
        return int(self.edges.shape[0])

    def require_tree(self, what: str = "the pivot chain",
                     instead: str = "use glauber_chain(network, motif), which samples homomorphisms of any motif") -> None:
        """Raise :class:`MotifError` unless the motif is a tree (the one check of that, everywhere).

        ``what`` needs the tree; ``instead`` ends the message with what to do otherwise.
        """
        if not self.is_tree:
            raise MotifError(
                f"{what} needs a tree motif, but this motif ({self.num_nodes} nodes, "
                f"{self.num_edges} edges) has a cycle; {instead}"
            )

    def _key(self):
        return (self.num_nodes, self.edges.tobytes(), self.root, self.directed)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other) -> bool:
        return isinstance(other, Motif) and self._key() == other._key()

    def __repr__(self) -> str:
        kind = "tree" if self.is_tree else "graph"
        edges = ", ".join(f"{i}->{j}" if self.directed else f"{i}-{j}" for i, j in self.edges)
        return f"Motif({kind}, k={self.num_nodes}, root={self.root}, edges=[{edges}])"


def as_motif(motif, *, convert: bool = True) -> Motif:
    """A :class:`Motif` from a Motif, a networkx graph, or a name ``pathK``/``starK``/``cycleK``.

    The one way in: every function that takes a motif goes through here. ``convert=False``
    accepts only a :class:`Motif` (the samplers, which are built for one).
    """
    if isinstance(motif, Motif):
        return motif
    if convert:
        if isinstance(motif, nx.Graph):
            return Motif.from_networkx(motif)
        if isinstance(motif, str):
            for prefix, build in (("path", Motif.path), ("star", Motif.star), ("cycle", Motif.cycle)):
                if motif.startswith(prefix) and motif[len(prefix):].isdigit():
                    return build(int(motif[len(prefix):]))
        raise MotifError(f"motif must be a Motif, a networkx graph or a name like 'path3', 'star4', "
                         f"'cycle3', got {motif!r}")
    raise MotifError(f"motif must be a psample Motif (Motif.path, Motif.from_networkx, as_motif, ...), "
                     f"got {type(motif).__name__}")


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise MotifError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _build(edges: np.ndarray, k: int, root, directed: bool, max_nodes: int) -> Motif:
    if k <= 0:
        raise MotifError("motif is empty (0 nodes): a motif needs at least one node")
    if k > max_nodes:
        raise MotifError(
            f"motif has {k} nodes, more than max_nodes={max_nodes}: the chains loop over motif "
            "nodes at trace time; pass a larger max_nodes if you really mean it"
        )
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < k:
        raise MotifError(f"root must be a motif node in 0..{k - 1}, got {root!r}")
    root = int(root)
    if edges.size and (edges.min() < 0 or edges.max() >= k):
        bad = int(edges.min()) if edges.min() < 0 else int(edges.max())
        raise MotifError(f"edges must join nodes in 0..{k - 1}, got an edge with node {bad}")
    loops = edges[edges[:, 0] == edges[:, 1]]
    if len(loops):
        raise MotifError(f"motif has a self-loop at node {int(loops[0, 0])}: self-loops are not supported")
    pairs = [tuple(e) for e in edges.tolist()] if directed else [tuple(sorted(e)) for e in edges.tolist()]
    if len(set(pairs)) != len(pairs):
        seen, repeated = set(), None
        for p in pairs:
            if p in seen:
                repeated = p
                break
            seen.add(p)
        raise MotifError(f"motif has the edge {repeated} more than once")

    # Breadth-first spanning tree of the underlying undirected graph.
    adjacency = [[] for _ in range(k)]
    for i, j in edges.tolist():
        adjacency[i].append(j)
        adjacency[j].append(i)
    parent = np.full(k, -1, dtype=np.int64)
    seen = np.zeros(k, dtype=bool)
    seen[root] = True
    order = []
    queue = deque([root])
    while queue:
        v = queue.popleft()
        order.append(v)
        for u in sorted(set(adjacency[v])):
            if not seen[u]:
                seen[u] = True
                parent[u] = v
                queue.append(u)
    if len(order) != k:
        missing = sorted(set(range(k)) - set(order))
        raise MotifError(
            f"motif is not connected: nodes {missing[:10]} cannot be reached from root {root} "
            "(the density of a disconnected motif is the product of its components' densities)"
        )
    position = np.empty(k, dtype=np.int64)
    position[np.array(order)] = np.arange(k)

    if not directed:
        # Orient away from the root: tree edges parent->child, others by breadth-first position.
        oriented = []
        for i, j in edges.tolist():
            if parent[j] == i or (parent[i] != j and position[i] < position[j]):
                oriented.append((i, j))
            else:
                oriented.append((j, i))
        edges = np.array(oriented, dtype=np.int64).reshape(-1, 2)
    # Edge order carries no meaning: store it sorted, so equal motifs compare (and hash) equal.
    edges = edges[np.lexsort((edges[:, 1], edges[:, 0]))] if len(edges) else edges
    edge_set = {tuple(e) for e in edges.tolist()}
    forward = np.ones(k, dtype=bool)
    for c in range(k):
        if parent[c] >= 0:
            forward[c] = (int(parent[c]), c) in edge_set
    children_count = np.bincount(parent[parent >= 0], minlength=k)
    is_tree = len(edges) == k - 1

    # Incident-edge tables for Glauber, the tree parent first (it anchors the candidate set).
    incident = [[] for _ in range(k)]
    for i, j in edges.tolist():
        incident[i].append((j, True))
        incident[j].append((i, False))
    for v in range(k):
        incident[v].sort(key=lambda item: (item[0] != parent[v], position[item[0]]))
    width = max(1, max(len(x) for x in incident))
    nodes = np.zeros((k, width), dtype=np.int32)
    outgoing = np.zeros((k, width), dtype=bool)
    mask = np.zeros((k, width), dtype=bool)
    for v in range(k):
        for slot, (u, out) in enumerate(incident[v]):
            nodes[v, slot], outgoing[v, slot], mask[v, slot] = u, out, True

    return Motif(
        num_nodes=k,
        edges=_frozen(edges.astype(np.int32).reshape(-1, 2)),
        root=root,
        directed=directed,
        is_tree=bool(is_tree),
        parent=_frozen(parent.astype(np.int32)),
        order=_frozen(np.array(order, dtype=np.int32)),
        children_count=_frozen(children_count.astype(np.int32)),
        parent_edge_forward=_frozen(forward),
        neighbour_nodes=_frozen(nodes),
        neighbour_outgoing=_frozen(outgoing),
        neighbour_mask=_frozen(mask),
    )
