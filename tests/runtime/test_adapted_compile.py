"""An adapted run compiles its draws once per sampler: the tuned parameters are arguments.

``psample.runtime.warmup.adapted`` hands the parameters to the chunk functions as hoisted
arguments whose compile-cache owner is the untuned sampler, so running the same sampler again
(a notebook cell, a benchmark's repetition) does not trace the model again for its draws; a
``with_parameters`` that reads its parameters' values in Python keeps the old path.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psample

# Adapted runs compiled end to end: in CI's `make test-ci`, out of the fast developer loop.
pytestmark = [pytest.mark.heavy, pytest.mark.ci]

VARIANCES = jnp.arange(1.0, 4.0)


def _counting_target():
    traces = []

    def logdensity(x):
        traces.append(1)  # runs once per trace, never per evaluation of a compiled function
        return -0.5 * jnp.sum(x**2 / VARIANCES)

    return logdensity, traces


def _run(algorithm, seed):
    positions = jax.random.normal(jax.random.key(0), (4, 3))
    return psample.sample(algorithm, positions, jax.random.key(seed), 50, num_warmup=60, progress=False,
                          compute_convergence_checks=False)  # fmt: skip


def test_second_adapted_run_does_not_trace_its_draws_again():
    logdensity, traces = _counting_target()
    algorithm = psample.polar_slice(logdensity)
    first = _run(algorithm, 0)
    before = len(traces)
    second = _run(algorithm, 1)
    # One trace of the step's shapes for the new tuned algorithm; no draw or init compilation.
    assert len(traces) - before <= 1
    assert first.parameters["w"] != second.parameters["w"]  # different parameters, same compiled draws
    assert np.isfinite(np.asarray(second.positions)).all()


def test_with_parameters_that_reads_values_keeps_working():
    logdensity, _ = _counting_target()
    base = psample.polar_slice(logdensity)

    def with_parameters(parameters):
        if float(parameters["w"]) <= 0:  # a Python read of the value: not traceable
            raise ValueError("w must be positive")
        return base.with_parameters(parameters)

    reading = base._replace(with_parameters=with_parameters)
    np.testing.assert_array_equal(np.asarray(_run(reading, 2).positions), np.asarray(_run(base, 2).positions))
