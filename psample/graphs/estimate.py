"""One-call network observables: runner + homomorphism chain + observables -> estimate ± MCSE.

Each function builds the chain (:func:`psample.graphs.pivot` or :func:`psample.graphs.glauber`),
starts ``num_chains`` chains from :func:`psample.graphs.embeddings.initial_embeddings`, runs
them through :func:`psample.runtime.observables.time_averages` (every chain step enters the average,
the trace keeps block means) and returns an :class:`~psample.diagnostics.batch_means.Estimate`:
the mean over chains of each chain's time average after ``burn_in`` steps, with the batch-means
standard error ``sd / √C`` (Lyu, Mémoli & Sivakoff, "Sampling random graph homomorphisms and
applications to network data analysis", JMLR 24(9), 2023, arXiv:1910.09483; spec §3).

The homomorphism chains never leave the connected component they start in, and the starting
embeddings do not spread the chains over components in proportion to ``π``: these functions
therefore refuse a network with more than one component that has an edge (take
:func:`psample.models.graphs.largest_component` first).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import jax
import numpy as np
from blackjax.base import SamplingAlgorithm

from psample.diagnostics.batch_means import Estimate, batch_means, check_tails, reciprocal
from psample.errors import InvalidTuningError, MotifError, NetworkError, UnreliableErrorWarning, check_positive_int
from psample.graphs import observables as obs
from psample.graphs.embeddings import initial_embeddings
from psample.graphs.glauber import as_top_level_api as glauber
from psample.graphs.homomorphism import child_masses
from psample.graphs.motif import Motif, as_motif
from psample.graphs.network import Network, as_network, bipartite_components, require_connected
from psample.graphs.pivot import as_top_level_api as pivot
from psample.runtime.observables import time_averages
from psample.runtime.chains import sample

__all__ = [
    "SAMPLERS",
    "ObservableRun",
    "Patches",
    "homomorphism_chain",
    "run_observables",
    "macc",
    "hom_density",
    "conditional_density",
    "chd_profile",
    "sample_patches",
]

#: Chains these functions can run (``sampler=``).
SAMPLERS = ("pivot", "glauber")


class ObservableRun(NamedTuple):
    """Result of :func:`run_observables`.

    estimates : dict
        ``{name: Estimate}``.
    trace : psample.Trace
        The run after burn-in; ``trace.observables[name]`` holds the block means,
        ``(chain, block, ...)``, and ``trace.positions`` the embedding at the end of each block.
    chain_means : dict
        ``{name: each chain's time average}``, shape ``(chain, ...)`` (the batches).
    """

    estimates: dict
    trace: object
    chain_means: dict


class Patches(NamedTuple):
    """Sampled mesoscale patches (:func:`sample_patches`).

    patches : float (chain, draw, k, k)
        ``A[x, x]``, the adjacency induced on each sampled embedding.
    embeddings : int32 (chain, draw, k)
        The embeddings ``x``.
    """

    patches: np.ndarray
    embeddings: np.ndarray


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


def _starts(network, motif, num_chains, sampler, lazy, rng_key):
    """``(chain, starting embeddings, run key)``, the inputs converted and checked once."""
    network, motif = as_network(network), as_motif(motif)
    require_connected(network)
    algorithm = homomorphism_chain(network, motif, sampler, lazy)
    key_init, key_run = jax.random.split(_rng_key(rng_key))
    return algorithm, initial_embeddings(network, motif, key_init, num_chains), key_run


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
    block_size, progress
        As for :func:`psample.runtime.observables.time_averages` (which also says what Ctrl-C keeps).

    Returns
    -------
    ObservableRun
    """
    num_chains = check_positive_int("num_chains", num_chains, minimum=2)
    num_steps = check_positive_int("num_steps", num_steps)
    burn_in = check_positive_int("burn_in", burn_in, minimum=0)
    algorithm, starts, key_run = _starts(network, motif, num_chains, sampler, lazy, rng_key)
    run = time_averages(algorithm, starts, key_run, num_steps, observables, burn_in=burn_in,
                        block_size=block_size, progress=progress)
    estimates = {name: batch_means(means, num_steps=run.num_steps) for name, means in run.chain_means.items()}
    return ObservableRun(estimates, run.trace, run.chain_means)


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
                rng_key=None, progress: bool = False) -> Estimate:
    """Homomorphism density ``t(F, G)`` of a tree motif by MCMC (importance identity).

    ``t(F, G) = 1 / E_π[w]``, ``w = Π_{c ≠ root} 1 / d(x_{p(c)})`` (see
    :mod:`psample.graphs.observables`); the standard error is the delta method's. The exact
    value is :func:`psample.graphs.exact.tree_hom_density` (exact, linear time); this estimate
    checks the chain. The terms ``w`` are unbounded and, for motifs with many leaves on
    networks with low-degree nodes, so heavy-tailed that the standard error misses the error:
    a large share of the mean is carried by terms too rare under ``π`` for the run to draw, so
    the chains' spread cannot show it, and no batching of the same draws can. Two checks:

    1. before looking at the draws, the share ``F`` of the mean carried by the largest terms
       whose ``π``-probability together is below ``3 / n``, ``n = num_chains × num_steps`` (so
       that even ``n`` independent draws would meet them fewer than 3 times on average, most
       often once or never), against the relative standard error ``s`` of the mean of ``n``
       independent draws of the other terms.
       Since ``E_π[w 1_R] / E_π[w] = g(R)`` for the top-down neighbour walk ``g`` (module
       :mod:`psample.graphs.observables`), ``F`` and ``s`` come from 20,000 exact draws of ``g``
       (:func:`psample.graphs.embeddings.initial_embeddings`, a fixed key), weighted by ``1 / w``
       for ``π``. The estimate is then biased low by about ``F`` while its error bar is about
       ``s``: where ``F > s`` the error bar is unreliable whatever the seed;
    2. otherwise, the Pareto k-hats of the per-chain averages and of their block means
       (:func:`psample.diagnostics.batch_means.check_tails`), for chains whose autocorrelation
       makes their draws worth fewer than independent ones.

    Conditional densities, CHD profiles and MACCs average bounded terms (products of edge
    weights, indicators) and need no such check.

    Parameters
    ----------
    progress
        Show the runner's progress bar. Other parameters: see :func:`run_observables`.

    Raises
    ------
    MotifError
        The motif is not a tree.
    NetworkError
        A node of positive weight has no out-neighbour (out-mass 0): the identity fails.

    Warns
    -----
    UnreliableErrorWarning
        The terms the run is unlikely to draw carry more of the mean than its relative standard
        error (the message gives both, and the draws that would be needed), or else the
        per-chain averages are too heavy-tailed for the error bar to be trusted.
    """
    network, motif = as_network(network), as_motif(motif)
    motif.require_tree("hom_density (an importance identity over a tree motif)")
    alpha = np.asarray(network.node_weights)
    forward = np.asarray(motif.parent_edge_forward)[np.asarray(motif.parent) >= 0]
    used = [("out", network.out)] * bool(forward.any()) + [("in", network.in_)] * bool((~forward).any())
    for name, rows in used:
        dead = np.flatnonzero((alpha > 0) & (np.asarray(rows.mass) <= 0))
        if dead.size:
            raise NetworkError(
                f"nodes {dead[:8].tolist()} have positive weight but no {name}-neighbour: the "
                "importance identity for t(F, G) needs every such node to have one (restrict "
                "the network to a component, or give those nodes weight 0)")
    run = run_observables(network, motif, {"w": obs.inverse_out_mass_product(network, motif)},
                          num_chains=num_chains, num_steps=num_steps, burn_in=burn_in,
                          sampler=sampler, lazy=lazy, rng_key=rng_key, progress=progress)
    estimate = run.estimates["w"]
    exact_instead = ("psample.graphs.exact.tree_hom_density(network, motif) is exact and takes linear time "
                     "for tree motifs")
    num_draws = estimate.num_chains * estimate.num_steps
    tail = _rare_tail(network, motif)
    share, relative_se = tail(num_draws)
    if share > relative_se:
        needed = _draws_needed(tail, num_draws)
        warnings.warn(
            f"the error bar of t(F, G) for {motif!r} is unreliable: the largest importance terms, so rare "
            f"that num_chains x num_steps = {num_draws} independent draws would meet them fewer than 3 times "
            f"on average, carry {share:.1%} of the mean, more than its relative standard error "
            f"{relative_se:.1%}, so the estimate is off by up to about that share and the error bar cannot "
            f"show it; raise num_chains x num_steps "
            + (f"to about {needed:.0e}" if needed else "beyond 1e15") + f", or note that {exact_instead}",
            UnreliableErrorWarning,
            stacklevel=2,
        )
    else:
        check_tails(run.chain_means["w"], f"t(F, G) for {motif!r}", f"use more chains (num_chains), or note that "
                    f"{exact_instead}", blocks=run.trace.observables["w"])
    return reciprocal(estimate)


#: Exact draws of the neighbour walk g behind :func:`hom_density`'s check of its error bar.
_TAIL_DRAWS = 20_000
#: Terms that ``n`` independent draws meet fewer than this many times in expectation (counting
#: every larger term too) are "rare" for :func:`hom_density`: their count is then Poisson with a
#: relative spread above 58 %, and a run most often meets them once or not at all.
_RARE_COUNT = 3.0


def _draws_needed(tail, num_draws: int) -> float | None:
    """The first power of ten above ``num_draws`` (up to 1e15) at which ``F <= s``, or ``None``."""
    for exponent in range(1, 16):
        draws = 10.0**exponent
        if draws > num_draws:
            share, relative_se = tail(draws)
            if share <= relative_se:
                return draws
    return None


def _rare_tail(network, motif) -> Callable[[float], tuple[float, float]]:
    """``n -> (F, s)`` for the terms ``w = Π 1 / d`` of :func:`hom_density` (its check 1).

    ``F``: the share of ``E_π[w]`` carried by the terms ``w' >= w`` whose ``π``-probability adds
    up to less than ``_RARE_COUNT / n``; ``s``: the relative standard error of the mean of ``n``
    independent ``π``-draws of the remaining terms. Both from ``_TAIL_DRAWS`` exact draws of ``g`` (the
    top-down walk, whose law is ``π w t``): a draw's share of the mean is ``1 / _TAIL_DRAWS``
    and its ``π``-weight is proportional to ``1 / w``. Equal terms (ties, e.g. equal degrees)
    fall on the same side.
    """
    positions = initial_embeddings(network, motif, jax.random.PRNGKey(0), _TAIL_DRAWS)
    log_w = -np.asarray(jax.vmap(lambda x: jax.numpy.sum(jax.numpy.log(child_masses(network, motif, x))))(positions))
    log_w = np.sort(np.round(log_w, 9))[::-1]  # largest first; round-off ties made exact
    weights = np.exp(log_w[-1] - log_w)  # π-weights ∝ 1 / w, the largest 1
    weights /= weights.sum()
    last_of_tie = np.searchsorted(-log_w, -log_w, side="right") - 1
    mass_through = np.cumsum(weights)[last_of_tie]  # π-mass of all terms >= this one
    scaled = np.exp(log_w - log_w[0])  # w / max w

    def tail(num_draws: float) -> tuple[float, float]:
        rare = num_draws * mass_through < _RARE_COUNT
        seen = ~rare
        mean = weights[seen] @ scaled[seen] / weights[seen].sum()
        variance = weights[seen] @ (scaled[seen] - mean) ** 2 / weights[seen].sum()
        return float(rare.mean()), float(math.sqrt(variance / num_draws) / mean)

    return tail


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
    algorithm, starts, key_run = _starts(network, Motif.path(k), num_chains, sampler, lazy, rng_key)
    trace = sample(algorithm, starts, key_run, num_draws, num_warmup=burn_in, thin=thin,
                   observables={"patch": obs.patch(network, k)}, progress=False)
    return Patches(np.asarray(trace.observables["patch"]), np.asarray(trace.positions))
