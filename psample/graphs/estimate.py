"""One-call network observables: runner + homomorphism chain + observables -> estimate ± MCSE.

Each function builds the chain (:func:`psample.graphs.homomorphism.pivot` or ``glauber``), starts
``num_chains`` chains from :func:`~psample.graphs.homomorphism.initial_embeddings`, runs them
with :func:`psample.sample` and returns an :class:`~psample.graphs.observables.Estimate`: the
mean over chains of each chain's time average after ``burn_in`` steps, with the batch-means
standard error ``sd / √C`` (Lyu, Mémoli & Sivakoff 2023; spec §3).

Time averages are accumulated inside the scan. :func:`block_averaged` wraps the chain so that
one runner draw is a block of ``block_size`` chain steps and carries the block means of the
observables; the runner records only these (at most about 100 per chain), so memory does not
grow with the number of steps while every step enters the average. The block means are also
what ``trace.to_datatree()`` puts in its ``observables`` group, so ArviZ's ESS and R-hat
(``psample.diagnostics.summary(trace, group="observables")``) apply to them.

The homomorphism chains never leave the connected component they start in, and the starting
embeddings do not spread the chains over components in proportion to ``π``: these functions
therefore refuse a network with more than one component that has an edge (take
:func:`psample.models.graphs.largest_component` first).

References
----------
.. [1] H. Lyu, F. Mémoli, D. Sivakoff. "Sampling random graph homomorphisms and applications to
   network data analysis." JMLR 24(9), 2023. arXiv:1910.09483.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import scipy.sparse as sp
from blackjax.base import SamplingAlgorithm
from scipy.sparse import csgraph

from psample.errors import InvalidTuningError, MotifError, NetworkError, check_positive_int
from psample.graphs import observables as obs
from psample.graphs.homomorphism import glauber, initial_embeddings, pivot
from psample.graphs.motif import Motif
from psample.graphs.network import Network, bipartite_components
from psample.graphs.observables import Estimate
from psample.run import sample

__all__ = [
    "SAMPLERS",
    "BlockAveragedState",
    "ObservableRun",
    "Patches",
    "as_network",
    "as_motif",
    "homomorphism_chain",
    "block_averaged",
    "run_observables",
    "macc",
    "hom_density",
    "conditional_density",
    "chd_profile",
    "sample_patches",
]

#: Chains these functions can run.
SAMPLERS = ("pivot", "glauber")
#: Block means recorded per chain (at most): one runner draw per block.
MAX_BLOCKS = 100


class BlockAveragedState(NamedTuple):
    """State of :func:`block_averaged`.

    position : int32 (k,)
        The chain's embedding after the block (what the runner records as the draw).
    inner : HomomorphismState
        The wrapped chain's state.
    block_means : dict
        ``{name: mean of the observable over the block's steps}``.
    """

    position: jax.Array
    inner: tuple
    block_means: dict


class ObservableRun(NamedTuple):
    """Result of :func:`run_observables`.

    estimates : dict
        ``{name: Estimate}``.
    trace : psample.Trace
        The run after burn-in; ``trace.observables[name]`` holds the block means,
        ``(chain, block, ...)``, and ``trace.positions`` the embedding at the end of each block.
    """

    estimates: dict
    trace: object


class Patches(NamedTuple):
    """Sampled mesoscale patches (:func:`sample_patches`).

    patches : float (chain, draw, k, k)
        ``A[x, x]``, the adjacency induced on each sampled embedding.
    embeddings : int32 (chain, draw, k)
        The embeddings ``x``.
    """

    patches: np.ndarray
    embeddings: np.ndarray


# ---------------------------------------------------------------------------- inputs
def as_network(network, weight="weight") -> Network:
    """A :class:`Network` from a Network, a networkx graph or an ``(n, n)`` adjacency matrix."""
    if isinstance(network, Network):
        return network
    if isinstance(network, nx.Graph):
        return Network.from_networkx(network, weight=weight)
    if sp.issparse(network) or isinstance(network, (np.ndarray, jax.Array)):
        return Network.from_adjacency(network)
    raise NetworkError(
        f"network must be a psample Network, a networkx graph or an (n, n) adjacency matrix, "
        f"got {type(network).__name__}")


def as_motif(motif) -> Motif:
    """A :class:`Motif` from a Motif, a networkx graph, or a name ``pathK``/``starK``/``cycleK``."""
    if isinstance(motif, Motif):
        return motif
    if isinstance(motif, nx.Graph):
        return Motif.from_networkx(motif)
    if isinstance(motif, str):
        for prefix, build in (("path", Motif.path), ("star", Motif.star), ("cycle", Motif.cycle)):
            if motif.startswith(prefix) and motif[len(prefix):].isdigit():
                return build(int(motif[len(prefix):]))
    raise MotifError(
        f"motif must be a Motif, a networkx graph or a name like 'path3', 'star4', 'cycle3', "
        f"got {motif!r}")


def _check_connected(network: Network) -> None:
    n = network.num_nodes
    sym = sp.csr_array((np.asarray(network.sym_weights), np.asarray(network.sym_indices),
                        np.asarray(network.sym_indptr)), shape=(n, n))
    _, labels = csgraph.connected_components(sym, directed=False)
    with_edges = np.unique(labels[np.diff(sym.indptr) > 0])
    if len(with_edges) > 1:
        raise NetworkError(
            f"network has {len(with_edges)} connected components with edges: the chains cannot "
            "move between them and their starts are not spread over them in proportion to the "
            "homomorphism measure; restrict it to one component (e.g. "
            "psample.models.graphs.largest_component)")


def _rng_key(rng_key):
    if rng_key is None:
        return jax.random.PRNGKey(0)
    if isinstance(rng_key, (int, np.integer)) and not isinstance(rng_key, bool):
        return jax.random.PRNGKey(int(rng_key))
    return rng_key


def homomorphism_chain(network: Network, motif: Motif, sampler: str = "pivot",
                       lazy: bool | None = None) -> SamplingAlgorithm:
    """The pivot or Glauber chain; ``lazy=None`` makes the pivot lazy on bipartite networks."""
    if sampler not in SAMPLERS:
        raise InvalidTuningError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if sampler == "glauber":
        if lazy:
            raise InvalidTuningError("lazy=True applies to the pivot chain only, got sampler='glauber'")
        return glauber(network, motif)
    if lazy is None:
        lazy = bool(bipartite_components(network))
    return pivot(network, motif, lazy=bool(lazy))


# ------------------------------------------------------------------ in-scan averaging
def block_averaged(algorithm: SamplingAlgorithm, observables: dict[str, Callable],
                   block_size: int) -> SamplingAlgorithm:
    """Wrap a chain so that one step is ``block_size`` steps with in-scan observable means.

    Parameters
    ----------
    algorithm
        Single-chain ``SamplingAlgorithm`` whose state has an ``embedding``.
    observables
        ``{name: fn(state) -> array}`` of the wrapped chain's state.
    block_size
        Chain steps per wrapped step (>= 1).

    Returns
    -------
    SamplingAlgorithm
        State :class:`BlockAveragedState`; ``step`` returns the wrapped chain's ``Info`` of the
        block's last step. Record ``state.block_means[name]`` as runner observables.
    """
    block_size = check_positive_int("block_size", block_size)

    def evaluate(state):
        return {name: jnp.asarray(fn(state), dtype=float) for name, fn in observables.items()}

    def init(position, rng_key=None):
        inner = algorithm.init(position)
        zeros = jax.tree.map(jnp.zeros_like, evaluate(inner))
        return BlockAveragedState(inner.embedding, inner, zeros)

    def step(rng_key, state):
        def one(carry, key):
            inner, sums = carry
            inner, info = algorithm.step(key, inner)
            sums = jax.tree.map(jnp.add, sums, evaluate(inner))
            return (inner, sums), info

        zeros = jax.tree.map(jnp.zeros_like, state.block_means)
        (inner, sums), infos = jax.lax.scan(one, (state.inner, zeros),
                                            jax.random.split(rng_key, block_size))
        means = jax.tree.map(lambda s: s / block_size, sums)
        info = jax.tree.map(lambda x: x[-1], infos)
        return BlockAveragedState(inner.embedding, inner, means), info

    return SamplingAlgorithm(init, step)


def run_observables(network, motif, observables: dict[str, Callable], *, num_chains: int = 1000,
                    num_steps: int = 1000, burn_in: int = 250, sampler: str = "pivot",
                    lazy: bool | None = None, rng_key=None, block_size: int | None = None,
                    progress: bool = False) -> ObservableRun:
    """Run homomorphism chains and estimate the time averages of ``observables``.

    Parameters
    ----------
    network
        Network (or networkx graph / adjacency matrix; the observables must read the same one).
    motif
        Motif, or a name such as ``"path3"``.
    observables
        ``{name: fn(state) -> array}`` (see :mod:`psample.graphs.observables`).
    num_chains
        Independent chains (batches of the standard error), >= 2.
    num_steps
        Chain steps per chain entering the averages (rounded up to whole blocks).
    burn_in
        Chain steps per chain discarded first (rounded up to whole blocks).
    sampler
        ``"pivot"`` (tree motifs) or ``"glauber"`` (any connected motif).
    lazy
        Lazy pivot chain; ``None``: lazy exactly when the network has a bipartite component.
    rng_key
        PRNG key or integer seed (default 0).
    block_size
        Steps per recorded block mean; default ``ceil(num_steps / 100)``.
    progress
        Show the runner's progress bar.

    Returns
    -------
    ObservableRun
        If Ctrl-C stops the run after burn-in, the estimates cover the blocks completed
        (``trace.interrupted`` is set).
    """
    num_chains = check_positive_int("num_chains", num_chains, minimum=2)
    num_steps = check_positive_int("num_steps", num_steps)
    burn_in = check_positive_int("burn_in", burn_in, minimum=0)
    if block_size is None:
        block_size = math.ceil(num_steps / MAX_BLOCKS)
    block_size = check_positive_int("block_size", block_size)
    network, motif = as_network(network), as_motif(motif)
    _check_connected(network)
    algorithm = homomorphism_chain(network, motif, sampler, lazy)
    key_init, key_run = jax.random.split(_rng_key(rng_key))
    starts = initial_embeddings(network, motif, key_init, num_chains)
    wrapped = block_averaged(algorithm, observables, block_size)
    num_blocks = math.ceil(num_steps / block_size)
    warmup_blocks = math.ceil(burn_in / block_size)
    # Burn-in blocks are recorded and dropped afterwards (they are small): the runner then
    # compiles a single sampling scan, and with equal chunks only once.
    chunk = math.ceil((warmup_blocks + num_blocks) / (10 if progress else 1))
    num_blocks = math.ceil((warmup_blocks + num_blocks) / chunk) * chunk - warmup_blocks
    trace = sample(
        wrapped, starts, key_run, warmup_blocks + num_blocks,
        observables={name: (lambda s, name=name: s.block_means[name]) for name in observables},
        chunk_size=chunk,
        progress=progress,
    )
    kept = lambda tree: jax.tree.map(lambda x: x[:, warmup_blocks:], tree)  # noqa: E731
    trace = dataclasses.replace(trace, positions=kept(trace.positions), info=kept(trace.info),
                                observables=kept(trace.observables), num_warmup=warmup_blocks)
    kept_blocks = int(jax.tree.leaves(trace.positions)[0].shape[1])
    if kept_blocks == 0:  # Ctrl-C during burn-in
        raise KeyboardInterrupt("interrupted during burn-in: no block after burn-in to average")
    steps = kept_blocks * block_size
    estimates = {name: obs.batch_means(np.asarray(values).mean(axis=1), num_steps=steps)
                 for name, values in trace.observables.items()}
    return ObservableRun(estimates, trace)


# ---------------------------------------------------------------- one-call statistics
def macc(network, k: int, *, num_chains: int = 1000, num_steps: int = 1000, burn_in: int = 250,
         sampler: str = "pivot", lazy: bool | None = None, rng_key=None) -> Estimate:
    """Matrix of average clustering coefficients of the k-path, ``E_π[A(x_i, x_j)]``.

    Parameters
    ----------
    network
        Network, networkx graph or adjacency matrix.
    k
        Path nodes (>= 2).
    num_chains, num_steps, burn_in, sampler, lazy, rng_key
        See :func:`run_observables`.

    Returns
    -------
    Estimate
        ``estimate`` and ``mcse`` of shape ``(k, k)``. Exact value:
        :func:`psample.graphs.exact.path_macc`.
    """
    k = check_positive_int("k", k, minimum=2, error=MotifError)
    network = as_network(network)
    run = run_observables(network, Motif.path(k), {"macc": obs.patch(network, k)},
                          num_chains=num_chains, num_steps=num_steps, burn_in=burn_in,
                          sampler=sampler, lazy=lazy, rng_key=rng_key)
    return run.estimates["macc"]


def hom_density(network, motif, *, num_chains: int = 1000, num_steps: int = 1000,
                burn_in: int = 250, sampler: str = "pivot", lazy: bool | None = None,
                rng_key=None) -> Estimate:
    """Homomorphism density ``t(F, G)`` of a tree motif by MCMC (importance identity).

    ``t(F, G) = 1 / E_π[Π_{c ≠ root} 1 / d(x_{p(c)})]`` (see
    :mod:`psample.graphs.observables`); the standard error is the delta method's. The exact
    value is :func:`psample.graphs.exact.tree_hom_density`; this estimate checks the chain.

    Raises
    ------
    MotifError
        The motif is not a tree.
    NetworkError
        A node of positive weight has no out-neighbour (out-mass 0): the identity fails.
    """
    network, motif = as_network(network), as_motif(motif)
    if not motif.is_tree:
        raise MotifError(f"hom_density estimates t(F, G) of a tree motif, got {motif!r}")
    alpha = np.asarray(network.node_weights)
    forward = np.asarray(motif.parent_edge_forward)[np.asarray(motif.parent) >= 0]
    used = [("out", network.out_mass)] * bool(forward.any()) + [("in", network.in_mass)] * bool((~forward).any())
    for name, mass in used:
        dead = np.flatnonzero((alpha > 0) & (np.asarray(mass) <= 0))
        if dead.size:
            raise NetworkError(
                f"nodes {dead[:8].tolist()} have positive weight but no {name}-neighbour: the "
                "importance identity for t(F, G) needs every such node to have one (restrict "
                "the network to a component, or give those nodes weight 0)")
    run = run_observables(network, motif, {"w": obs.inverse_out_mass_product(network, motif)},
                          num_chains=num_chains, num_steps=num_steps, burn_in=burn_in,
                          sampler=sampler, lazy=lazy, rng_key=rng_key)
    return obs.reciprocal(run.estimates["w"])


def conditional_density(network, motif_F, motif_H, *, num_chains: int = 1000,
                        num_steps: int = 1000, burn_in: int = 250, sampler: str = "pivot",
                        lazy: bool | None = None, rng_key=None) -> Estimate:
    """Conditional homomorphism density ``t(H, G | F) = E_{π_{F→G}}[Π_{E_H \\ E_F} A(x_i, x_j)]``.

    Parameters
    ----------
    motif_F
        The motif sampled (a tree for the pivot chain).
    motif_H
        ``F`` plus extra edges on the same nodes (e.g. ``Motif.cycle(3)`` over ``Motif.path(3)``).

    Returns
    -------
    Estimate
        Scalar estimate and MCSE.
    """
    network, motif_F, motif_H = as_network(network), as_motif(motif_F), as_motif(motif_H)
    pairs = obs.extra_edges(motif_F, motif_H)
    run = run_observables(network, motif_F, {"chd": obs.edge_product(network, pairs)},
                          num_chains=num_chains, num_steps=num_steps, burn_in=burn_in,
                          sampler=sampler, lazy=lazy, rng_key=rng_key)
    return run.estimates["chd"]


def chd_profile(network, motif_F, motif_H, thresholds=None, *, num_chains: int = 1000,
                num_steps: int = 1000, burn_in: int = 250, sampler: str = "pivot",
                lazy: bool | None = None, rng_key=None) -> Estimate:
    """CHD profile ``θ ↦ P_{π_{F→G}}(min_{E_H \\ E_F} A(x_i, x_j) ≥ θ)``.

    Parameters
    ----------
    thresholds
        1-D array of θ; default ``linspace(0, 1, 51)`` (for weights scaled to ``[0, 1]``).

    Returns
    -------
    Estimate
        ``estimate[t]`` and ``mcse[t]`` at ``thresholds[t]``.
    """
    network, motif_F, motif_H = as_network(network), as_motif(motif_F), as_motif(motif_H)
    if thresholds is None:
        thresholds = np.linspace(0.0, 1.0, 51)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0 or not np.all(np.isfinite(thresholds)):
        raise InvalidTuningError(f"thresholds must be a non-empty 1-D array of finite numbers, "
                                 f"got {thresholds!r}")
    pairs = obs.extra_edges(motif_F, motif_H)
    run = run_observables(network, motif_F,
                          {"profile": obs.threshold_indicators(network, pairs, thresholds)},
                          num_chains=num_chains, num_steps=num_steps, burn_in=burn_in,
                          sampler=sampler, lazy=lazy, rng_key=rng_key)
    return run.estimates["profile"]


def sample_patches(network, k: int, *, num_chains: int = 100, num_draws: int = 100,
                   burn_in: int = 250, thin: int = 10, sampler: str = "pivot",
                   lazy: bool | None = None, rng_key=None) -> Patches:
    """Sample k×k patches ``A[x, x]`` induced on k-path embeddings (network dictionary learning).

    Parameters
    ----------
    num_chains, num_draws
        The result holds ``num_chains × num_draws`` patches.
    burn_in
        Steps discarded per chain.
    thin
        Chain steps between kept patches.

    Returns
    -------
    Patches
    """
    k = check_positive_int("k", k, minimum=2, error=MotifError)
    num_chains = check_positive_int("num_chains", num_chains)
    network = as_network(network)
    _check_connected(network)
    motif = Motif.path(k)
    algorithm = homomorphism_chain(network, motif, sampler, lazy)
    key_init, key_run = jax.random.split(_rng_key(rng_key))
    starts = initial_embeddings(network, motif, key_init, num_chains)
    trace = sample(algorithm, starts, key_run, num_draws, num_warmup=burn_in, thin=thin,
                   observables={"patch": obs.patch(network, k)}, progress=False)
    return Patches(np.asarray(trace.observables["patch"]), np.asarray(trace.positions))
