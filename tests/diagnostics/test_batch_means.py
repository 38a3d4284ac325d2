"""Batch-means standard errors over independent chains and their heavy-tail check
(``psample.diagnostics.batch_means``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from psample.diagnostics.batch_means import (
    Estimate,
    batch_means,
    check_tails,
    khat_threshold,
    reciprocal,
    tail_shape,
)
from psample.errors import ShapeError, UnreliableErrorWarning


def test_batch_means_and_reciprocal():
    values = np.arange(24, dtype=float).reshape(4, 3, 2)  # chain means: [2,3], [8,9], [14,15], [20,21]
    est = batch_means(values)
    np.testing.assert_allclose(est.estimate, [11.0, 12.0])
    np.testing.assert_allclose(est.mcse, np.std([2, 8, 14, 20], ddof=1) / 2 * np.ones(2))
    assert (est.num_chains, est.num_steps) == (4, 3)
    inv = reciprocal(Estimate(np.float64(4.0), np.float64(0.2), 4, 3))
    assert inv.estimate == 0.25 and inv.mcse == pytest.approx(0.2 / 16)
    with pytest.raises(ShapeError, match="2 chains"):
        batch_means(np.ones((1, 5)))



def test_tail_check_warns_on_heavy_tails_only():
    """Pareto k-hat of 1000 batches (fixed seed): Pareto(α = 1) terms have k = 1/α = 1 (infinite
    mean) and warn; Pareto(α = 4) (k = 0.25), Gaussian and constant batches do not. The
    threshold for 1000 batches is min(1 - 1/log10(1000), 0.7) = 2/3; k-hat's sampling sd for
    1000 draws is about 0.1, so 1 and 0.25 are each more than 3 sd from it. Blocks: 20,000
    Pareto(α = 0.7) block means (k ≈ 1.4, threshold 1) behind tame batches warn; 20,000
    Gaussian ones do not."""
    rng = np.random.default_rng(0)
    assert khat_threshold(1000) == pytest.approx(2 / 3)
    heavy = 1.0 + rng.pareto(1.0, 1000)
    with pytest.warns(UnreliableErrorWarning, match=r"error bar of θ is unreliable.*Pareto k-hat") as record:
        khat, block_khat = check_tails(heavy, "θ", "use more chains")
    assert khat > 0.8 and np.isnan(block_khat) and "use more chains" in str(record[0].message)
    assert tail_shape(heavy) == pytest.approx(khat)
    tame = rng.normal(size=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableErrorWarning)
        assert check_tails(1.0 + rng.pareto(4.0, 1000), "θ", "")[0] < 0.5
        assert check_tails(tame, "θ", "", blocks=rng.normal(size=(1000, 20)))[1] < 0.5
        assert np.isnan(check_tails(np.ones(1000), "θ", "")[0])  # no tail at all
    with pytest.warns(UnreliableErrorWarning, match=r"over its 20000 block means"):
        _, block_khat = check_tails(tame, "θ", "", blocks=1.0 + rng.pareto(0.7, (1000, 20)))
    assert block_khat > 1.2
    with pytest.warns(UnreliableErrorWarning, match="inf"):
        check_tails(np.append(heavy, np.inf), "θ", "")
