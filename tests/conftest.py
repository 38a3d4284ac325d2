"""Test configuration: float64 everywhere (several reference values need it), CPU only."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
