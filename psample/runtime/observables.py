"""Time averages of observables over every step of any sampler, at the memory cost of a few.

An observable is a function ``fn(state) -> array`` of one chain's state, jittable. Its time
average over a long run estimates its expectation under the chain's stationary law; recording
it at every step costs memory in proportion to the run. :func:`block_averaged` wraps any
single-chain ``SamplingAlgorithm`` so that one step of the wrapper is ``block_size`` steps of the
chain, accumulating the block means of the observables inside the scan; :func:`time_averages`
runs the wrapper with :func:`psample.sample` (chains vmapped, ``num_warmup`` as the runner's warm-up)
and returns each chain's time average. Every step enters the average while the trace holds only
the block means (about :data:`MAX_BLOCKS` per chain); those are also what
``trace.to_datatree()`` puts in its ``observables`` group, so ArviZ's ESS and R-hat apply to
them. Error bars across independent chains: :func:`psample.diagnostics.batch_means`.

The wrapped state's ``position`` is the chain's position after the block (the BlackJAX
convention the runner records), so any sampler whose state has a ``position`` can be wrapped.

Limits: run lengths are whole blocks (``num_draws`` and ``num_warmup`` are rounded up); every
observable is evaluated after every step, inside the compiled scan, so an expensive observable
costs that much per step; block means of one chain are correlated when a block is shorter than
the chain's autocorrelation time, so honest error bars come from independent chains.

References
----------
.. [1] Charles J. Geyer, "Practical Markov chain Monte Carlo", Statistical Science 7(4),
   473-483, 1992.
.. [2] James M. Flegal and Galin L. Jones, "Batch means and spectral variance estimators in
   Markov chain Monte Carlo", Annals of Statistics 38(2), 1034-1070, 2010.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm

from psample import _deprecated
from psample.errors import check_positive_int
from psample.runtime.chains import sample

__all__ = ["MAX_BLOCKS", "BlockAveragedState", "TimeAverages", "block_averaged", "time_averages"]

#: Block means recorded per chain by :func:`time_averages` when no block size is given.
MAX_BLOCKS = 100


class BlockAveragedState(NamedTuple):
    """State of :func:`block_averaged`.

    position : pytree
        The wrapped chain's position after the block (what the runner records as the draw).
    inner : NamedTuple
        The wrapped chain's state.
    block_means : dict
        ``{name: mean of the observable over the block's steps}``, each of the observable's
        shape.
    """

    position: object
    inner: tuple
    block_means: dict


class TimeAverages(NamedTuple):
    """Result of :func:`time_averages`.

    chain_means : dict
        ``{name: each chain's time average}``, numpy arrays of shape ``(chain, ...)``.
    num_steps : int
        Chain steps per chain behind each time average (burn-in excluded).
    trace : psample.Trace
        The run after burn-in; ``trace.observables[name]`` holds the block means
        ``(chain, block, ...)`` and ``trace.positions`` the position at the end of each block.
    """

    chain_means: dict
    num_steps: int
    trace: object


def block_averaged(algorithm: SamplingAlgorithm, observables: dict[str, Callable],
                   block_size: int) -> SamplingAlgorithm:
    """Wrap a chain so that one step is ``block_size`` steps with in-scan observable means.

    Parameters
    ----------
    algorithm
        Single-chain ``SamplingAlgorithm`` whose state has a ``position``.
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
        return BlockAveragedState(inner.position, inner, zeros)

    def step(rng_key, state):
        def one(carry, key):
            inner, sums = carry
            inner, info = algorithm.step(key, inner)
            sums = jax.tree.map(jnp.add, sums, evaluate(inner))
            return (inner, sums), info

        zeros = jax.tree.map(jnp.zeros_like, state.block_means)
        (inner, sums), infos = jax.lax.scan(one, (state.inner, zeros), jax.random.split(rng_key, block_size))
        means = jax.tree.map(lambda s: s / block_size, sums)
        info = jax.tree.map(lambda x: x[-1], infos)
        return BlockAveragedState(inner.position, inner, means), info

    return SamplingAlgorithm(init, step)


@_deprecated.renamed_keywords(num_steps="num_draws", burn_in="num_warmup")
def time_averages(algorithm: SamplingAlgorithm, initial_positions, rng_key, num_draws: int,
                  observables: dict[str, Callable], *, num_warmup: int = 0,
                  block_size: int | None = None, progress: bool = True) -> TimeAverages:
    """Each chain's time average of ``observables`` over ``num_draws`` steps after ``num_warmup``.

    Parameters
    ----------
    algorithm
        Single-chain ``SamplingAlgorithm`` whose state has a ``position``.
    initial_positions
        Positions with a leading chain axis ``(num_chains, ...)`` (as for :func:`psample.sample`).
    rng_key
        PRNG key; the averages depend on it alone (not on the chunking).
    num_draws
        Chain steps per chain entering the averages (rounded up to whole blocks); every step
        is a draw of the average.
    observables
        ``{name: fn(state) -> array}``.
    num_warmup
        Chain steps per chain discarded first (rounded up to whole blocks); the runner's warm-up.
    block_size
        Steps per recorded block mean; default ``ceil(num_draws / MAX_BLOCKS)``.
    progress
        Show the runner's progress bar (only where someone watches: a terminal or notebook).

    Returns
    -------
    TimeAverages
        ``chain_means[name]`` of shape ``(num_chains, ...)``. If Ctrl-C stops the run after
        the warm-up, the averages cover the blocks completed (``trace.interrupted`` is set).
    """
    num_draws = check_positive_int("num_draws", num_draws)
    num_warmup = check_positive_int("num_warmup", num_warmup, minimum=0)
    if block_size is None:
        block_size = math.ceil(num_draws / MAX_BLOCKS)
    block_size = check_positive_int("block_size", block_size)
    wrapped = block_averaged(algorithm, observables, block_size)
    trace = sample(
        wrapped, initial_positions, rng_key, math.ceil(num_draws / block_size),
        num_warmup=math.ceil(num_warmup / block_size),
        observables={name: (lambda s, name=name: s.block_means[name]) for name in observables},
        progress=progress,
    )
    means = {name: np.asarray(values).mean(axis=1) for name, values in trace.observables.items()}
    kept_blocks = int(jax.tree.leaves(trace.positions)[0].shape[1])
    return TimeAverages(means, kept_blocks * block_size, trace)
