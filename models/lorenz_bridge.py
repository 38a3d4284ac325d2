"""inference-gym's convection Lorenz bridge with unknown scales, as a NumPyro model (``d = 92``).

The gym's ``ConvectionLorenzBridgeUnknownScales`` (Sountsov, Radul and contributors, 2020), after
the Lorenz bridge of Ambrogioni, Hinne and van Gerven (2020): a stochastic Lorenz system
integrated by Euler-Maruyama with step ``h = 0.02`` for 30 steps, whose convection ``x(t)`` is
observed with Gaussian noise except for the ten middle steps (the bridge)::

    innovation_scale ~ LogNormal(-1, 1);  observation_scale ~ LogNormal(-1, 1)
    state[0] ~ N(0, 1)^3
    state[t] ~ N(state[t-1] + h f(state[t-1]), sqrt(h) innovation_scale),  t = 1..29
    f(x, y, z) = (10 (y - x), x (28 - z) - y, x y - 8/3 z)
    observed[t] ~ N(state[t][0], observation_scale),  t in 0..9, 20..29

:func:`lorenz_bridge_model` is written site by site from the gym's source
(``targets/lorenz_system.py``, its default explicit-steps form): the two scale sites under the
gym's names, one site per time step ``state_00`` ... ``state_29`` (each ``(3,)``: ``x, y, z``),
and the deterministic site ``latents`` ``(30, 3)``, the stacked path (the gym's identity
transformation: ``innovation_scale``, ``observation_scale``, ``latents``). Every step is a
``Normal`` location-scale site, so :func:`psample.noncentered` turns the model into its
Euler-Maruyama innovations ``state_tt_decentered`` (``state[0] = z[0]``, ``state[t] = state[t-1]
+ h f(state[t-1]) + sqrt(h) innovation_scale z[t]``) with no model-specific code;
:func:`euler_maruyama_path` and :func:`euler_maruyama_innovations` are that map and its inverse
on a whole ``(30, 3)`` path. :func:`convection_lorenz_bridge` is the :class:`psample.Target`.

The data ship with the package (``data/convection_lorenz_bridge.csv``: the gym's
``internal/datasets/convection_lorenz_bridge.py``, Apache-2.0; float32 values read as float32 and
widened, so they are the gym's numbers exactly); :func:`convection_lorenz_bridge_data` reads them.
The gym's ground truth (posterior means and standard deviations from long Stan runs, with their
own Monte Carlo standard errors) lives in its ``targets/ground_truth`` module
``convection_lorenz_bridge_unknown_scales``; ``benchmarks/hierarchical.py --cases lorenz`` reads it.
``Target.exact`` is empty: nothing is known in closed form.

Limits: the log-density differs from the gym's by a constant (``benchmarks/hierarchical.py
--check``, and the test where inference-gym is installed). The unconstrained coordinates of the
two scales are their logs (NumPyro's bijector for a positive support), where the gym's default
event-space bijector is a softplus: the same posterior, another unconstrained geometry. Only the
convection ``x`` is observed, as in the gym.

References
----------
.. [1] Pavel Sountsov, Alexey Radul and contributors, "Inference Gym", 2020,
   https://pypi.org/project/inference_gym.
.. [2] Luca Ambrogioni, Max Hinne and Marcel van Gerven, "Automatic structured variational
   inference", arXiv:2002.00643, 2020 (the Lorenz bridge; the reference the gym gives).
.. [3] Edward N. Lorenz, "Deterministic nonperiodic flow", Journal of the Atmospheric Sciences
   20(2), 130-141, 1963.
"""

from __future__ import annotations

import dataclasses
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from psample.errors import ModelError
from psample.targets import Target, from_numpyro

__all__ = [
    "STEP_SIZE",
    "convection_lorenz_bridge_data",
    "lorenz_drift",
    "euler_maruyama_path",
    "euler_maruyama_innovations",
    "state_site_names",
    "lorenz_bridge_model",
    "convection_lorenz_bridge",
]

#: The gym's Euler-Maruyama step of the convection Lorenz bridge.
STEP_SIZE = 0.02


def convection_lorenz_bridge_data() -> dict:
    """The gym's ``convection_lorenz_bridge`` data set (without its known scales).

    Returns
    -------
    dict
        ``observed_values`` ``(30,)`` float64 (the gym's float32 values; ``nan`` at the ten missing
        middle steps), ``observation_mask`` ``(30,)`` bool (``True`` where observed) and
        ``step_size`` (0.02): the keyword arguments of :func:`lorenz_bridge_model`.
    """
    with resources.files("psample.models.data").joinpath("convection_lorenz_bridge.csv").open() as f:
        values = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    observed = np.array([float(v) for v in values], dtype=np.float32).astype(np.float64)
    return {"observed_values": observed, "observation_mask": ~np.isnan(observed), "step_size": STEP_SIZE}


def lorenz_drift(state):
    """The Lorenz vector field ``f`` (σ = 10, ρ = 28, β = 8/3) on states ``(..., 3)`` -> ``(..., 3)``."""
    x, y, z = state[..., 0], state[..., 1], state[..., 2]
    return jnp.stack([10.0 * (y - x), x * (28.0 - z) - y, x * y - 8.0 / 3.0 * z], axis=-1)


def euler_maruyama_path(innovations, innovation_scale, step_size=STEP_SIZE):
    """The path ``(T, 3)`` driven by its standard-normal innovations ``(T, 3)`` (a ``lax.scan``).

    ``state[0] = innovations[0]`` (its ``N(0, 1)`` prior) and ``state[t] = state[t-1] + h
    f(state[t-1]) + sqrt(h) innovation_scale innovations[t]``: the map of :func:`psample.noncentered`
    on :func:`lorenz_bridge_model`, whose log-Jacobian is ``3 (T - 1) log(sqrt(h) innovation_scale)``.
    """
    noise = jnp.sqrt(step_size) * innovation_scale

    def step(state, z):
        state = state + step_size * lorenz_drift(state) + noise * z
        return state, state

    _, rest = jax.lax.scan(step, innovations[0], innovations[1:])
    return jnp.concatenate([innovations[:1], rest])


def euler_maruyama_innovations(path, innovation_scale, step_size=STEP_SIZE):
    """The inverse of :func:`euler_maruyama_path`: innovations ``(T, 3)`` of a path ``(T, 3)`` (vectorised)."""
    previous = path[:-1]
    rest = (path[1:] - previous - step_size * lorenz_drift(previous)) / (jnp.sqrt(step_size) * innovation_scale)
    return jnp.concatenate([path[:1], rest])


def state_site_names(num_timesteps: int = 30) -> list[str]:
    """The sites of the path, ``state_00`` ... (zero-padded, so they sort in time order)."""
    width = len(str(num_timesteps - 1))
    return [f"state_{t:0{width}d}" for t in range(num_timesteps)]


def lorenz_bridge_model(observed_values, observation_mask, step_size=STEP_SIZE):
    """The gym's ``LorenzSystemUnknownScales`` observing the convection ``x`` (module docstring).

    Parameters
    ----------
    observed_values
        ``(T,)`` observations of ``x(t)`` (values where ``observation_mask`` is ``False`` are ignored).
    observation_mask
        ``(T,)`` bool, ``True`` where ``x(t)`` is observed.
    step_size
        The Euler-Maruyama step ``h`` (positive).

    Sites: ``innovation_scale``, ``observation_scale`` (scalars), ``state_00`` ... ``(3,)`` (one per
    step), the deterministic ``latents`` ``(T, 3)`` and the observed ``observed_values``.
    """
    observed = np.asarray(observed_values, dtype=float)
    mask = np.asarray(observation_mask, dtype=bool)
    if observed.ndim != 1 or observed.shape[0] < 2:
        raise ModelError(f"observed_values must be a 1-D array of at least 2 steps, got shape {observed.shape}")
    if mask.shape != observed.shape:
        raise ModelError(f"observation_mask must have the shape of observed_values {observed.shape}, got {mask.shape}")
    if not np.all(np.isfinite(observed[mask])):
        raise ModelError("observed_values must be finite where observation_mask is True")
    if not float(step_size) > 0:
        raise ModelError(f"step_size must be positive, got {step_size!r}")
    index = np.flatnonzero(mask)
    innovation_scale = numpyro.sample("innovation_scale", dist.LogNormal(-1.0, 1.0))
    observation_scale = numpyro.sample("observation_scale", dist.LogNormal(-1.0, 1.0))
    noise = jnp.sqrt(step_size) * innovation_scale
    names = state_site_names(observed.shape[0])
    state = numpyro.sample(names[0], dist.Normal(jnp.zeros(3), 1.0).to_event(1))
    states = [state]
    for name in names[1:]:  # a site per step, as the gym writes it (a Python loop at trace time only)
        state = numpyro.sample(name, dist.Normal(state + step_size * lorenz_drift(state), noise).to_event(1))
        states.append(state)
    latents = numpyro.deterministic("latents", jnp.stack(states))
    numpyro.sample("observed_values", dist.Normal(latents[index, 0], observation_scale).to_event(1),
                   obs=jnp.asarray(observed[index]))  # fmt: skip


def convection_lorenz_bridge() -> Target:
    """:func:`lorenz_bridge_model` on :func:`convection_lorenz_bridge_data` (``d = 92``), as the gym writes it."""
    target = from_numpyro(lorenz_bridge_model, **convection_lorenz_bridge_data())
    return dataclasses.replace(target, name="convection_lorenz_bridge_unknown_scales",
                               hints={**target.hints, "polar_slice_w": 10.0})  # fmt: skip
