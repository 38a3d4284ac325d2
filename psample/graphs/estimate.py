"""One-call network observables: homomorphism chains + runner + observables -> estimate ± MCSE.

A network observable is the expectation of a function of a random homomorphism ``x`` of a small
motif ``F`` into a network ``G``, drawn from the homomorphism measure ``π_{F→G}`` (the MACC
matrix, conditional densities, CHD profiles, the homomorphism density; see
:mod:`psample.graphs.observables`). Each function here builds the chain
(:func:`psample.graphs.pivot_chain` or :func:`psample.graphs.glauber_chain`), starts
``num_chains`` chains from :func:`psample.graphs.embeddings.initial_embeddings`, runs them
through :func:`psample.runtime.observables.time_averages` (every chain step after the
``num_warmup`` warm-up steps enters the average, the trace keeps block means) and returns an
:class:`~psample.diagnostics.batch_means.Estimate`: the mean over chains of each chain's time
average over ``num_draws`` steps, with the batch-means standard error ``sd / √C`` across the
``C`` chains.

Contract
--------
Every function takes the objects that define the run (network, motif(s), observables), then
``rng_key`` (a PRNG key, or an integer seed), then keyword-only counts and tuning:
``num_chains``, ``num_draws`` (chain steps per chain entering the averages), ``num_warmup``
(steps per chain discarded first), ``sampler`` (``"pivot"`` or ``"glauber"``), ``lazy`` and
``progress``. The same key and counts give the same numbers. For one release the old keywords
``num_steps`` (for ``num_draws``) and ``burn_in`` (for ``num_warmup``) still work, and a call
without ``rng_key`` runs on ``jax.random.key(0)``, each with a ``DeprecationWarning``.

Limits
------
The homomorphism chains never leave the connected component they start in, and the starting
embeddings do not spread the chains over components in proportion to ``π``: these functions
therefore refuse a network with more than one component that has an edge (take
:func:`psample.models.graphs.largest_component` first). The error bars assume the chains
forgot their starts within ``num_warmup`` steps and that each chain's time average is close to
normal; :func:`hom_density`, whose terms can be heavy-tailed, checks the latter and warns.
See the :doc:`family page </families/graphs>` for the method, tuning and measured limits.

References
----------
.. [1] H. Lyu, F. Mémoli, D. Sivakoff. "Sampling random graph homomorphisms and applications to
   network data analysis." Journal of Machine Learning Research 24(9), 2023. arXiv:1910.09483.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Callable, NamedTuple

import jax
import numpy as np
from blackjax.base import SamplingAlgorithm

from psample import _deprecated
from psample.diagnostics.batch_means import Estimate, batch_means, check_tails, reciprocal
from psample.errors import InvalidTuningError, MotifError, NetworkError, UnreliableErrorWarning, check_positive_int, user_stacklevel
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
        The run after warm-up; ``trace.observables[name]`` holds the block means,
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


# ------------------------------------------------------------------ the vocabulary's shims
#: Keywords of psample 0.1 -> their names now (accepted with a DeprecationWarning for one release).
RENAMED_KEYWORDS = {"num_steps": "num_draws", "burn_in": "num_warmup"}
_renamed_keywords = _deprecated.renamed_keywords(**RENAMED_KEYWORDS)


def _is_key(value) -> bool:
    """Whether ``value`` is a PRNG key (typed, or raw ``uint32[2]``) or an integer seed."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return True
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return False
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return dtype == np.uint32 and np.shape(value) == (2,)


def _rng_key(rng_key, caller: str):
    """The run's key: a key as given, an integer seed as ``jax.random.key(seed)``; ``None`` runs on
    ``jax.random.key(0)`` with a DeprecationWarning (the key becomes required)."""
    if rng_key is None:
        _deprecated.warn(f"{caller}() without rng_key runs on jax.random.key(0); rng_key will be required: "
                         f"pass one, e.g. {caller}(..., jax.random.key(0))")
        return jax.random.key(0)
    if isinstance(rng_key, (int, np.integer)) and not isinstance(rng_key, bool):
        return jax.random.key(int(rng_key))
    if not _is_key(rng_key):
        raise InvalidTuningError(f"rng_key must be a PRNG key (jax.random.key) or an integer seed, got {rng_key!r}")
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
    key_init, key_run = jax.random.split(rng_key)
    return algorithm, initial_embeddings(network, motif, key_init, num_chains), key_run


def _run(network, motif, observables, rng_key, *, num_chains, num_draws, num_warmup, sampler, lazy,
         block_size=None, progress) -> ObservableRun:
    """:func:`run_observables` on a resolved key (the one-call functions share it)."""
    num_chains = check_positive_int("num_chains", num_chains, minimum=2)
    num_draws = check_positive_int("num_draws", num_draws)
    num_warmup = check_positive_int("num_warmup", num_warmup, minimum=0)
    algorithm, starts, key_run = _starts(network, motif, num_chains, sampler, lazy, rng_key)
    # time_averages' keywords num_steps/burn_in (renamed num_draws/num_warmup there too).
    run = time_averages(algorithm, starts, key_run, num_draws, observables, num_warmup=num_warmup,
                        block_size=block_size, progress=progress)
    steps = getattr(run, "num_draws", None) or run.num_steps  # whole blocks
    estimates = {name: batch_means(means, num_steps=steps) for name, means in run.chain_means.items()}
    return ObservableRun(estimates, run.trace, run.chain_means)


@_renamed_keywords
def run_observables(network, motif, observables: dict[str, Callable], rng_key=None, *,
                    num_chains: int = 1000, num_draws: int = 1000, num_warmup: int = 250,
                    sampler: str = "pivot", lazy: bool | None = None, block_size: int | None = None,
                    progress: bool = True) -> ObservableRun:
    """Run homomorphism chains and estimate the time averages of ``observables``.

    Parameters
    ----------
    network
        Network (or networkx graph / adjacency matrix; the observables must read the same one).
    motif
        Motif, or a name such as ``"path3"``.
    observables
        ``{name: fn(state) -> array}`` (see :mod:`psample.graphs.observables`).
    rng_key
        PRNG key (``jax.random.key``) or integer seed. Required: for one release a call without
        it runs on ``jax.random.key(0)`` with a ``DeprecationWarning``.
    num_chains
        Independent chains (batches of the standard error), >= 2.
    num_draws
        Chain steps per chain entering the averages (rounded up to whole blocks). Was
        ``num_steps`` (still accepted for one release, with a warning).
    num_warmup
        Chain steps per chain discarded first (rounded up to whole blocks). Was ``burn_in``.
    sampler
        ``"pivot"`` (tree motifs) or ``"glauber"`` (any connected motif).
    lazy
        Lazy pivot chain; ``None``: lazy exactly when the network has a bipartite component.
    block_size, progress
        As for :func:`psample.runtime.observables.time_averages` (which also says what Ctrl-C
        keeps); the progress bar shows only where someone watches (a terminal, a notebook).

    Returns
    -------
    ObservableRun
        ``estimates[name]`` of each observable's shape, ``trace`` with block means
        ``(chain, block, ...)``, ``chain_means[name]`` of shape ``(chain, ...)``.
    """
    return _run(network, motif, observables, _rng_key(rng_key, "run_observables"), num_chains=num_chains,
                num_draws=num_draws, num_warmup=num_warmup, sampler=sampler, lazy=lazy,
                block_size=block_size, progress=progress)


# ---------------------------------------------------------------- one-call statistics
@_renamed_keywords
def macc(network, k: int, rng_key=None, *, num_chains: int = 1000, num_draws: int = 1000,
         num_warmup: int = 250, sampler: str = "pivot", lazy: bool | None = None,
         progress: bool = True) -> Estimate:
    """Matrix of average clustering coefficients of the k-path, ``E_π[A(x_i, x_j)]``.

    Parameters
    ----------
    network
        Network, networkx graph or adjacency matrix.
    k
        Path nodes (>= 2).
    rng_key
        PRNG key or integer seed (see :func:`run_observables`).
    num_chains, num_draws, num_warmup, sampler, lazy, progress
        See :func:`run_observables`.

    Returns
    -------
    Estimate
        ``estimate`` and ``mcse`` of shape ``(k, k)``. Exact value:
        :func:`psample.graphs.exact.path_macc`.
    """
    rng_key = _rng_key(rng_key, "macc")
    k = check_positive_int("k", k, minimum=2, error=MotifError)
    network = as_network(network)
    run = _run(network, Motif.path(k), {"macc": obs.patch(network, k)}, rng_key, num_chains=num_chains,
               num_draws=num_draws, num_warmup=num_warmup, sampler=sampler, lazy=lazy, progress=progress)
    return run.estimates["macc"]


@_renamed_keywords
def hom_density(network, motif, rng_key=None, *, num_chains: int = 1000, num_draws: int = 1000,
                num_warmup: int = 250, sampler: str = "pivot", lazy: bool | None = None,
                progress: bool = True) -> Estimate:
    """Homomorphism density ``t(F, G)`` of a tree motif by MCMC (importance identity).

    ``t(F, G) = 1 / E_π[w]``, ``w = Π_{c ≠ root} 1 / d(x_{p(c)})`` (see
    :mod:`psample.graphs.observables`); the standard error is the delta method's. The exact
    value is :func:`psample.graphs.exact.tree_hom_density` (exact, linear time); this estimate
    checks the chain. The terms ``w`` are unbounded and, for motifs with many leaves on
    networks with low-degree nodes, so heavy-tailed that the standard error misses the error:
    a large share of the mean is carried by terms too rare under ``π`` for the run to draw, so
    the chains' spread cannot show it, and no batching of the same draws can. Two checks:

    1. before looking at the draws, the share ``F`` of the mean carried by the largest terms
       whose ``π``-probability together is below ``3 / n``, ``n = num_chains × num_draws`` (so
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
    network
        Network, networkx graph or adjacency matrix.
    motif
        Tree motif (or its name, e.g. ``"star4"``).
    rng_key
        PRNG key or integer seed (see :func:`run_observables`).
    num_chains, num_draws, num_warmup, sampler, lazy, progress
        See :func:`run_observables`.

    Returns
    -------
    Estimate
        Scalar estimate of ``t(F, G)`` and its MCSE (delta method).

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
    rng_key = _rng_key(rng_key, "hom_density")
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
    run = _run(network, motif, {"w": obs.inverse_out_mass_product(network, motif)}, rng_key,
               num_chains=num_chains, num_draws=num_draws, num_warmup=num_warmup, sampler=sampler,
               lazy=lazy, progress=progress)
    estimate = run.estimates["w"]
    exact_instead = ("psample.graphs.exact.tree_hom_density(network, motif) is exact and takes linear time "
                     "for tree motifs")
    total = estimate.num_chains * estimate.num_steps
    tail = _rare_tail(network, motif)
    share, relative_se = tail(total)
    if share > relative_se:
        needed = _draws_needed(tail, total)
        warnings.warn(
            f"the error bar of t(F, G) for {motif!r} is unreliable: the largest importance terms, so rare "
            f"that num_chains x num_draws = {total} independent draws would meet them fewer than 3 times "
            f"on average, carry {share:.1%} of the mean, more than its relative standard error "
            f"{relative_se:.1%}, so the estimate is off by up to about that share and the error bar cannot "
            f"show it; raise num_chains x num_draws "
            + (f"to about {needed:.0e}" if needed else "beyond 1e15") + f", or note that {exact_instead}",
            UnreliableErrorWarning,
            stacklevel=user_stacklevel(),
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



@_renamed_keywords
def conditional_density(network, motif_F, motif_H, rng_key=None, *, num_chains: int = 1000,
                        num_draws: int = 1000, num_warmup: int = 250, sampler: str = "pivot",
                        lazy: bool | None = None, progress: bool = True) -> Estimate:
    """Conditional homomorphism density ``t(H, G | F) = E_{π_{F→G}}[Π_{E_H \\ E_F} A(x_i, x_j)]``.

    Parameters
    ----------
    network
        Network, networkx graph or adjacency matrix.
    motif_F
        The motif sampled (a tree for the pivot chain).
    motif_H
        ``F`` plus extra edges on the same nodes (e.g. ``Motif.cycle(3)`` over ``Motif.path(3)``).
    rng_key
        PRNG key or integer seed (see :func:`run_observables`).
    num_chains, num_draws, num_warmup, sampler, lazy, progress
        See :func:`run_observables`.

    Returns
    -------
    Estimate
        Scalar estimate and MCSE.
    """
    rng_key = _rng_key(rng_key, "conditional_density")
    network, motif_F, motif_H = as_network(network), as_motif(motif_F), as_motif(motif_H)
    pairs = obs.extra_edges(motif_F, motif_H)
    run = _run(network, motif_F, {"chd": obs.edge_product(network, pairs)}, rng_key, num_chains=num_chains,
               num_draws=num_draws, num_warmup=num_warmup, sampler=sampler, lazy=lazy, progress=progress)
    return run.estimates["chd"]


def _thresholds_in_key_place(fn):
    """psample 0.1 took ``chd_profile(network, F, H, thresholds)``: a 4th positional argument
    that is not a key is taken as ``thresholds``, with a DeprecationWarning (one release)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if len(args) >= 4 and args[3] is not None and not _is_key(args[3]):
            if "thresholds" in kwargs:
                raise TypeError("chd_profile() got thresholds both positionally and as thresholds=")
            _deprecated.warn("chd_profile(network, motif_F, motif_H, thresholds) is deprecated: the 4th "
                             "positional argument is now rng_key; pass thresholds=...")
            kwargs["thresholds"] = args[3]
            args = args[:3] + args[4:]
        return fn(*args, **kwargs)

    return wrapper


@_thresholds_in_key_place
@_renamed_keywords
def chd_profile(network, motif_F, motif_H, rng_key=None, *, thresholds=None, num_chains: int = 1000,
                num_draws: int = 1000, num_warmup: int = 250, sampler: str = "pivot",
                lazy: bool | None = None, progress: bool = True) -> Estimate:
    """CHD profile ``θ ↦ P_{π_{F→G}}(min_{E_H \\ E_F} A(x_i, x_j) ≥ θ)``.

    Parameters
    ----------
    network, motif_F, motif_H
        As for :func:`conditional_density`.
    rng_key
        PRNG key or integer seed (see :func:`run_observables`).
    thresholds
        1-D array of θ, shape ``(T,)``; default ``linspace(0, 1, 51)`` (for weights scaled to
        ``[0, 1]``). Keyword-only (for one release a 4th positional argument that is not a key
        is still taken as the thresholds, with a ``DeprecationWarning``).
    num_chains, num_draws, num_warmup, sampler, lazy, progress
        See :func:`run_observables`.

    Returns
    -------
    Estimate
        ``estimate[t]`` and ``mcse[t]`` at ``thresholds[t]``, shape ``(T,)``.
    """
    rng_key = _rng_key(rng_key, "chd_profile")
    network, motif_F, motif_H = as_network(network), as_motif(motif_F), as_motif(motif_H)
    if thresholds is None:
        thresholds = np.linspace(0.0, 1.0, 51)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0 or not np.all(np.isfinite(thresholds)):
        raise InvalidTuningError(f"thresholds must be a non-empty 1-D array of finite numbers, "
                                 f"got {thresholds!r}")
    pairs = obs.extra_edges(motif_F, motif_H)
    run = _run(network, motif_F, {"profile": obs.threshold_indicators(network, pairs, thresholds)}, rng_key,
               num_chains=num_chains, num_draws=num_draws, num_warmup=num_warmup, sampler=sampler,
               lazy=lazy, progress=progress)
    return run.estimates["profile"]


@_renamed_keywords
def sample_patches(network, k: int, rng_key=None, *, num_chains: int = 100, num_draws: int = 100,
                   num_warmup: int = 250, thin: int = 10, sampler: str = "pivot",
                   lazy: bool | None = None, progress: bool = True) -> Patches:
    """Sample k×k patches ``A[x, x]`` induced on k-path embeddings (network dictionary learning).

    Parameters
    ----------
    network
        Network, networkx graph or adjacency matrix.
    k
        Path nodes (>= 2).
    rng_key
        PRNG key or integer seed (see :func:`run_observables`).
    num_chains, num_draws
        The result holds ``num_chains × num_draws`` patches.
    num_warmup
        Steps discarded per chain (was ``burn_in``).
    thin
        Chain steps between kept patches.
    sampler, lazy, progress
        See :func:`run_observables`.

    Returns
    -------
    Patches
        ``patches`` of shape ``(num_chains, num_draws, k, k)``, ``embeddings`` of shape
        ``(num_chains, num_draws, k)``.
    """
    rng_key = _rng_key(rng_key, "sample_patches")
    k = check_positive_int("k", k, minimum=2, error=MotifError)
    num_chains = check_positive_int("num_chains", num_chains)
    network = as_network(network)
    algorithm, starts, key_run = _starts(network, Motif.path(k), num_chains, sampler, lazy, rng_key)
    trace = sample(algorithm, starts, key_run, num_draws, num_warmup=num_warmup, thin=thin,
                   observables={"patch": obs.patch(network, k)}, progress=progress)
    return Patches(np.asarray(trace.observables["patch"]), np.asarray(trace.positions))
