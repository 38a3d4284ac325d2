"""ArviZ's ESS and MCSE with few draws per chain, and the end-of-run warning about them.

Independent draws have ESS = N exactly. ArviZ's estimate on 4 draws per chain sits at its cap
``N log10 N`` instead, so its MCSE is too small by ``sqrt(log10 N)``: the reason a run with
4 draws per chain (e.g. ``psample.logconcave_chain_samples(..., num_draws=4)``) showed mode
weights 2-3 "MCSE" off. The convergence check says so with an UnreliableErrorWarning.
"""

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from arviz_stats.base import array_stats
from blackjax.base import SamplingAlgorithm

import psample
from psample.diagnostics import MIN_DRAWS_FOR_ESS, check_convergence
from psample.errors import ConvergenceWarning, UnreliableErrorWarning


class IidState(NamedTuple):
    position: jax.Array


#: Every step a fresh N(0, I) draw, whatever the state: independent draws, true ESS = N.
IID = SamplingAlgorithm(lambda position: IidState(position),
                        lambda key, state: (IidState(jax.random.normal(key, state.position.shape)), ()))


def iid_trace(num_chains, num_draws, seed=0):
    return psample.sample(IID, jnp.zeros((num_chains, 2)), jax.random.key(seed), num_draws, progress=False,
                          compute_convergence_checks=False)


def test_arviz_ess_of_independent_draws_exceeds_their_number_at_4_draws_per_chain():
    # Not a tolerance question: 500 chains x 4 independent draws, ArviZ reports ESS at its cap
    # N log10 N (3.3 N here) and its MCSE sqrt(3.3) = 1.8 times too small; at 100 draws per
    # chain the ESS is close to N (within 15 % in this run).
    rng = np.random.default_rng(1)
    few = rng.normal(size=(500, 4))
    many = rng.normal(size=(20, 100))
    ess_few = float(array_stats.ess(few, chain_axis=0, draw_axis=1, method="bulk"))
    ess_many = float(array_stats.ess(many, chain_axis=0, draw_axis=1, method="bulk"))
    assert ess_few > 2.5 * few.size
    assert 0.85 * many.size < ess_many < 1.15 * many.size
    mcse_few = float(array_stats.mcse(few, chain_axis=0, draw_axis=1, method="mean"))
    assert mcse_few < 0.7 * few.std(ddof=1) / np.sqrt(few.size)


@pytest.mark.parametrize("num_draws", [4, MIN_DRAWS_FOR_ESS - 1])
def test_a_run_with_few_draws_per_chain_warns_that_its_arviz_error_bars_are_unreliable(num_draws):
    trace = iid_trace(200, num_draws)
    with pytest.warns(UnreliableErrorWarning, match=rf"{num_draws} draws per chain.*ESS comes out too large"
                      r".*MCSE too small.*at least 20 draws per chain.*Draw more"):
        check_convergence(trace, advice="Draw more (num_draws).")


def test_a_run_with_enough_draws_per_chain_does_not_warn():
    trace = iid_trace(8, MIN_DRAWS_FOR_ESS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableErrorWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)  # 8 x 20 independent draws: ESS 160 < 400
        check_convergence(trace, advice="")


def test_the_runner_passes_the_warning_on_at_the_end_of_a_run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # split R-hat of 2-draw halves may exceed 1.01 too
        with pytest.warns(UnreliableErrorWarning, match=r"4 draws per chain.*num_draws") as caught:
            psample.sample(IID, jnp.zeros((100, 2)), jax.random.key(3), 4, progress=False)
    assert any(w.filename == __file__ for w in caught)
