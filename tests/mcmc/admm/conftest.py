"""Algorithms the D-ADMMS tests share: the runtime and ``reference.run_chains`` cache compiled
functions per algorithm object, so tests that use the same object compile once."""

import jax.numpy as jnp
import pytest

import psample

from .reference import loglik, logprior, regression_data


@pytest.fixture(scope="session")
def reference_data():
    """The reference data as a ``(X, y)`` pair of arrays with a leading agent axis."""
    X, y = regression_data()
    return jnp.asarray(X), jnp.asarray(y)


@pytest.fixture(scope="session")
def ring_quadratic(reference_data):
    """D-ADMMS on the reference data, ring, closed-form prox, ``rho = 5``."""
    return psample.admm(logprior, loglik, reference_data, rho=5.0, graph="ring", prox="quadratic")
