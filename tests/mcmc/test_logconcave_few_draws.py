"""Several samples per chain from ``psample.logconcave_chain_samples``: are they independent, and
are their error bars honest with 4 draws per chain?

Each sample after the first starts its chain of measurements from the re-noised previous sample,
so successive samples could be correlated. At the target's hinted ``sigma`` (the log-concavity
threshold) and the default 200-step first walk they are not: the lag-1 correlation of the
mode indicator within chains is 0 within its standard error. What was off with 4 draws per chain is
ArviZ's ESS (above the number of draws) and so its MCSE (too small): the run warns about that
(:data:`psample.diagnostics.MIN_DRAWS_FOR_ESS`), and the chains taken as independent batches give
an honest error bar, checked here against the exact mode weights.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psample
import psample.models as models
from psample.errors import UnreliableErrorWarning

WEIGHTS = np.array([0.5, 0.3, 0.2])
MEANS = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
NUM_CHAINS, NUM_DRAWS = 300, 4
#: Two-sided 4-sigma bound (false-fail rate 6e-5 per comparison, 7 comparisons).
Z = 4.0


@pytest.fixture(scope="module")
def run():
    """300 chains x 4 samples on the gallery's 2-D three-mode mixture, every chain started in the
    lightest mode; the warnings of the run and the mode of every sample, ``(chain, draw)``."""
    target = models.gaussian_mixture(WEIGHTS, MEANS, np.full(3, 0.2))
    hints = target.hints["logconcave_chain"]
    start = jnp.asarray(MEANS[2]) + 0.3 * jax.random.normal(jax.random.PRNGKey(10), (NUM_CHAINS, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = psample.logconcave_chain_samples(
            start, jax.random.PRNGKey(11), num_draws=NUM_DRAWS, progress=False, sigma=hints["sigma"],
            num_measurements=hints["num_measurements"], smoothed_score=target.exact["smoothed_score"])
    x = np.asarray(trace.positions)
    modes = np.argmin(((x[..., None, :] - MEANS) ** 2).sum(-1), axis=-1)
    return caught, modes


def test_four_draws_per_chain_warn_that_arviz_error_bars_are_unreliable(run):
    caught, _ = run
    unreliable = [w for w in caught if issubclass(w.category, UnreliableErrorWarning)]
    assert len(unreliable) == 1
    assert "4 draws per chain" in str(unreliable[0].message) and "num_draws" in str(unreliable[0].message)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]


def test_samples_within_a_chain_are_uncorrelated_at_the_hinted_sigma(run):
    _, modes = run
    for mode in range(len(WEIGHTS)):
        ind = (modes == mode).astype(float)
        centred = ind - ind.mean()
        lag1 = (centred[:, 1:] * centred[:, :-1]).mean() / (centred**2).mean()
        # Under independence the lag-1 correlation of n pairs has standard error 1/sqrt(n).
        assert abs(lag1) < Z / np.sqrt(centred[:, 1:].size), (mode, lag1)


def test_chains_as_batches_give_mode_weights_within_their_error_bars(run):
    _, modes = run
    for mode, weight in enumerate(WEIGHTS):
        chain_means = (modes == mode).mean(axis=1)  # independent chains: one batch each
        estimate = chain_means.mean()
        se = chain_means.std(ddof=1) / np.sqrt(NUM_CHAINS)
        assert abs(estimate - weight) < Z * se, (mode, estimate, se)
