"""Polar slice sampling in the base space of a normalizing flow fitted during warm-up (NeuTra).

An affine preconditioner ``x = c + S z`` (:mod:`psample.mcmc.polar_slice_adaptation`) cannot
straighten a posterior whose local scale changes across it (funnels, hierarchical scale
hyperparameters). NeuTra (Hoffman et al. [1]) fits a normalizing flow ``x = T(u)`` with
``u ~ N(0, I)`` to the posterior by variational inference and runs MCMC on the pushed-back
density

.. math::

    \\pi_u(u) = \\pi(T(u)) \\, |\\det J_T(u)|,

which is closer to a standard Gaussian than ``π`` is; transport elliptical slice sampling
(Cabezas and Nemeth [2]) does the same for a slice sampler. Here Gibbsian polar slice sampling
(:mod:`psample.mcmc.polar_slice`) runs in ``u`` (with the affine adaptation on top of it, in
``u``), and every draw is mapped back to ``x = T(u)``. The flow is RealNVP (Dinh et al. [3]):
``num_layers`` affine coupling layers with ``tanh`` MLPs of ``hidden`` units and an
element-wise affine layer, starting at the identity shifted to the initial positions' mean;
:func:`fit_flow` maximises the ELBO (reverse KL) by Adam (optax) during warm-up.
See the :doc:`family page </families/polar_slice>` for the method, tuning and measured limits.

Contract. :func:`flow_polar_slice` returns a :class:`psample.base.ChainAlgorithm` whose states
are :class:`FlowPolarSliceState` (``position`` is the draw ``x``, a pytree shaped like the
user's; ``logdensity`` is ``log π(x)``; ``base`` the polar slice state in ``u``) and whose
``adaptation`` (a :class:`psample.base.StepwiseAdaptation`) fits the flow in ``init`` and then
runs the polar slice adaptation windows in ``u``. Its parameters are
``{"w", "center", "scale", "flow"}``, a pytree of arrays (checkpoints store them); ``flow`` is
the :func:`init_flow` pytree. **Exactness**: for any fixed flow and ``(c, S, w)`` each
transition leaves ``π_u`` invariant (it is polar slice sampling on ``π_u``, whose log-density
the kernel evaluates exactly, Jacobian included), so the ``x`` draws have law ``π``; the warm-up
only chooses the map, which is fixed afterwards.

Limits. The fit is a stochastic optimisation of a mode-seeking objective: the flow can miss
modes or understate tails; the sampler stays exact but then mixes no better than without it.
Each evaluation of ``π_u`` costs a flow pass on top of the target; the flow's size is set by
``num_layers`` and ``hidden``, and the fit is warm-up time. Positions must be real float arrays
(``d >= 2``).

References
----------
.. [1] Matthew D. Hoffman, Pavel Sountsov, Joshua V. Dillon, Ian Langmore, Dustin Tran and
   Srinivas Vasudevan, "NeuTra-lizing bad geometry in Hamiltonian Monte Carlo using neural
   transport", 2019. arXiv:1903.03704.
.. [2] Alberto Cabezas and Christopher Nemeth, "Transport elliptical slice sampling", AISTATS
   2023, PMLR 206:3664-3676. arXiv:2210.10644.
.. [3] Laurent Dinh, Jascha Sohl-Dickstein and Samy Bengio, "Density estimation using Real NVP",
   ICLR 2017. arXiv:1605.08803.
.. [4] Philip Schär, Michael Habeck and Daniel Rudolf, "Gibbsian polar slice sampling",
   ICML 2023. arXiv:2302.03945.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from blackjax.types import Array, ArrayTree, PRNGKey

from psample.base import ChainAlgorithm
from psample.errors import InvalidTuningError, ShapeError, check_positive, check_positive_int
from psample.mcmc.polar_slice_adaptation import PolarSliceAdaptationState, polar_slice_adaptation, stepwise_run
from psample.mcmc.polar_slice_kernel import PolarSliceState, build_kernel, init_transformed

__all__ = [
    "FlowPolarSliceState",
    "FlowAdaptationState",
    "init_flow",
    "flow_forward",
    "flow_inverse",
    "base_logdensity",
    "reverse_kl",
    "fit_flow",
    "flow_polar_slice",
]

#: Soft clamp of the coupling layers' log-scales: ``s = _CLAMP tanh(raw / _CLAMP)``.
_CLAMP = 3.0


class FlowPolarSliceState(NamedTuple):
    """State of polar slice sampling in a flow's base space.

    position
        The draw ``x = T(u)``, a pytree shaped like the user's position.
    logdensity
        ``log π(x)``, scalar (the target's, without the Jacobian).
    base
        The :class:`~psample.mcmc.polar_slice.PolarSliceState` in ``u`` (``position`` ``(d,)``,
        ``logdensity`` ``log π_u(u)``, radius and direction of the affine ``z`` in ``u``).
    """

    position: ArrayTree
    logdensity: Array
    base: PolarSliceState


class FlowAdaptationState(NamedTuple):
    """Carry of the flow adaptation.

    inner
        The :class:`~psample.mcmc.polar_slice_adaptation.PolarSliceAdaptationState` in ``u``.
    flow
        The fitted flow (:func:`init_flow`'s pytree), fixed after ``init``.
    example
        One chain's initial position (the pytree layout draws are unflattened to).
    """

    inner: PolarSliceAdaptationState
    flow: dict
    example: ArrayTree


# ----------------------------------------------------------------------------- the flow


def _masks(d: int, num_layers: int) -> np.ndarray:
    """``(K, d)`` float masks: halves of a fixed permutation per pair of layers, alternating."""
    rng = np.random.default_rng(d)
    masks = []
    for k in range(num_layers):
        if k % 2 == 0:
            order = rng.permutation(d)
            mask = np.zeros(d)
            mask[order[: d // 2]] = 1.0
        else:
            mask = 1.0 - masks[-1]
        masks.append(mask)
    return np.stack(masks) if masks else np.zeros((0, d))


def init_flow(rng_key: PRNGKey, d: int, *, num_layers: int = 4, hidden: int = 64, shift=None, dtype=None) -> dict:
    """Parameters of an identity-initialised flow ``T = A ∘ C_K ∘ ⋯ ∘ C_1`` on ``R^d``.

    Parameters
    ----------
    rng_key
        Key of the MLPs' first layers (the last layers start at zero: ``T`` starts at ``A``).
    d
        Dimension (>= 2).
    num_layers
        Coupling layers ``K`` (>= 0; 0 leaves the element-wise affine layer only).
    hidden
        Units of each MLP's two hidden layers (>= 1).
    shift
        ``(d,)`` initial shift of ``A`` (default 0); ``log_scale`` starts at 0.

    Returns
    -------
    dict
        ``{"shift": (d,), "log_scale": (d,), "layers": [{"w1": (d, h), "b1": (h,), "w2": (h, h),
        "b2": (h,), "w3": (h, 2d), "b3": (2d,)}] * K}``.
    """
    d = check_positive_int("d", d)
    if d < 2:
        raise ShapeError(f"a flow for polar slice sampling needs d >= 2, got d={d}")
    if not (isinstance(num_layers, (int, np.integer)) and num_layers >= 0):
        raise InvalidTuningError(f"num_layers must be an integer >= 0, got {num_layers!r}")
    hidden = check_positive_int("hidden", hidden)
    dtype = dtype or jnp.zeros(()).dtype
    layers = []
    for key in jax.random.split(rng_key, max(int(num_layers), 1))[: int(num_layers)]:
        k1, k2 = jax.random.split(key)
        layers.append({
            "w1": jax.random.normal(k1, (d, hidden), dtype) / math.sqrt(d),
            "b1": jnp.zeros(hidden, dtype),
            "w2": jax.random.normal(k2, (hidden, hidden), dtype) / math.sqrt(hidden),
            "b2": jnp.zeros(hidden, dtype),
            "w3": jnp.zeros((hidden, 2 * d), dtype),
            "b3": jnp.zeros(2 * d, dtype),
        })  # fmt: skip
    shift = jnp.zeros(d, dtype) if shift is None else jnp.asarray(shift, dtype)
    return {"shift": shift, "log_scale": jnp.zeros(d, dtype), "layers": layers}


def _coupling_terms(layer, masked):
    h = jnp.tanh(masked @ layer["w1"] + layer["b1"])
    h = jnp.tanh(h @ layer["w2"] + layer["b2"])
    out = h @ layer["w3"] + layer["b3"]
    d = masked.shape[-1]
    return _CLAMP * jnp.tanh(out[:d] / _CLAMP), out[d:]


def flow_forward(flow: dict, u: Array) -> tuple[Array, Array]:
    """``(T(u), log|det J_T(u)|)`` for one point ``u`` ``(d,)``."""
    masks = jnp.asarray(_masks(u.shape[-1], len(flow["layers"])), u.dtype)
    y, logdet = u, jnp.zeros((), u.dtype)
    for mask, layer in zip(masks, flow["layers"]):
        s, t = _coupling_terms(layer, mask * y)
        s, t = (1.0 - mask) * s, (1.0 - mask) * t
        y = y * jnp.exp(s) + t
        logdet = logdet + jnp.sum(s)
    x = flow["shift"] + jnp.exp(flow["log_scale"]) * y
    return x, logdet + jnp.sum(flow["log_scale"])


def flow_inverse(flow: dict, x: Array) -> Array:
    """``T⁻¹(x)`` for one point ``x`` ``(d,)``."""
    masks = jnp.asarray(_masks(x.shape[-1], len(flow["layers"])), x.dtype)
    y = (x - flow["shift"]) * jnp.exp(-flow["log_scale"])
    for mask, layer in zip(masks[::-1], flow["layers"][::-1]):
        s, t = _coupling_terms(layer, mask * y)
        s, t = (1.0 - mask) * s, (1.0 - mask) * t
        y = (y - t) * jnp.exp(-s)
    return y


def base_logdensity(logdensity_fn: Callable, flow: dict, unravel_fn: Callable = lambda x: x) -> Callable:
    """``u -> log π(T(u)) + log|det J_T(u)|``, the target pushed back to the base space.

    ``unravel_fn`` maps the flat ``x`` ``(d,)`` to the pytree ``logdensity_fn`` takes.
    """

    def logdensity(u):
        x, logdet = flow_forward(flow, u)
        return jnp.asarray(logdensity_fn(unravel_fn(x)), u.dtype) + logdet

    return logdensity


def reverse_kl(flow: dict, logdensity_fn: Callable, u: Array, unravel_fn: Callable = lambda x: x) -> Array:
    """Monte Carlo ``KL(T#N(0, I) || π)`` up to ``log Z``: ``mean_i[log N(u_i) - log π_u(u_i)]``.

    ``u`` ``(n, d)`` standard-normal draws (reparameterised: differentiable in ``flow``).
    Non-finite terms are left out of the mean.
    """
    values = jax.vmap(base_logdensity(logdensity_fn, flow, unravel_fn))(u)
    log_base = -0.5 * jnp.sum(u**2, axis=1) - 0.5 * u.shape[1] * math.log(2 * math.pi)
    terms = log_base - values
    finite = jnp.isfinite(terms)
    return jnp.sum(jnp.where(finite, terms, 0.0)) / jnp.maximum(jnp.sum(finite), 1)


def _check_tuning(num_fit_steps, batch_size, learning_rate):
    if not (isinstance(num_fit_steps, (int, np.integer)) and num_fit_steps >= 0):
        raise InvalidTuningError(f"num_fit_steps must be an integer >= 0, got {num_fit_steps!r}")
    check_positive_int("batch_size", batch_size)
    check_positive("learning_rate", learning_rate)


def fit_flow(
    rng_key: PRNGKey,
    logdensity_fn: Callable,
    flow: dict,
    *,
    num_fit_steps: int = 1000,
    batch_size: int = 32,
    learning_rate: float = 5e-3,
    unravel_fn: Callable = lambda x: x,
) -> tuple[dict, Array]:
    """Fit ``flow`` by maximising the ELBO (NeuTra): Adam with cosine decay, one jitted ``lax.scan``.

    Parameters
    ----------
    rng_key
        Key of the batches of ``u ~ N(0, I)``.
    logdensity_fn
        ``x -> log π(x)`` (``x`` the flat ``(d,)`` vector, or the pytree ``unravel_fn`` makes).
    flow
        Starting parameters (:func:`init_flow`).
    num_fit_steps, batch_size, learning_rate
        Adam steps (>= 0), draws per step (>= 1), initial step size (> 0, decayed to 0 by a
        cosine schedule).

    Returns
    -------
    (flow, losses)
        The fitted parameters and the ``(num_fit_steps,)`` reverse-KL estimates.

    Raises
    ------
    InvalidTuningError
        If a tuning value is out of range.
    """
    _check_tuning(num_fit_steps, batch_size, learning_rate)
    if num_fit_steps == 0:
        return flow, jnp.zeros(0)
    d = flow["shift"].shape[0]
    optimizer = optax.chain(
        optax.zero_nans(),
        optax.clip_by_global_norm(10.0),
        optax.adam(optax.cosine_decay_schedule(learning_rate, num_fit_steps)),
    )

    def loss(params, u):
        return reverse_kl(params, logdensity_fn, u, unravel_fn)

    @jax.jit
    def run(flow, key):
        def one(carry, step_key):
            params, opt_state = carry
            u = jax.random.normal(step_key, (batch_size, d), params["shift"].dtype)
            value, grads = jax.value_and_grad(loss)(params, u)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, _), losses = jax.lax.scan(one, (flow, optimizer.init(flow)), jax.random.split(key, num_fit_steps))
        return params, losses

    return run(flow, rng_key)


# ----------------------------------------------------------------------------- the sampler


def flow_polar_slice(
    logdensity_fn: Callable,
    *,
    flow: dict | None = None,
    w: float = 1.0,
    center=None,
    scale=None,
    max_proposals: int = 1000,
    structure: str = "auto",
    num_layers: int = 4,
    hidden: int = 64,
    num_fit_steps: int = 1000,
    batch_size: int = 32,
    learning_rate: float = 5e-3,
    seed: int = 0,
) -> ChainAlgorithm:
    """Gibbsian polar slice sampling in the base space of a flow fitted during warm-up (NeuTra).

    Examples
    --------
    .. code::

        sampler = flow_polar_slice(logdensity_fn, num_fit_steps=2000)
        trace = psample.sample(sampler, positions, rng_key, 1000, num_warmup=500)

    Parameters
    ----------
    logdensity_fn
        ``position -> scalar``, as for :func:`psample.polar_slice`.
    flow
        Fixed flow parameters (:func:`init_flow`); ``None``: the identity until the warm-up fits
        one (then this is plain polar slice sampling).
    w, center, scale, max_proposals, structure
        Polar slice's parameters and the affine adaptation's structure, all in the base space
        ``u`` (see :func:`psample.polar_slice`).
    num_layers, hidden
        Size of the flow the warm-up fits (coupling layers >= 0, hidden units >= 1).
    num_fit_steps, batch_size, learning_rate
        The warm-up's ELBO fit (:func:`fit_flow`), done in the adaptation's ``init``.
    seed
        Integer seed of the flow's initial weights and of the fit's batches (the adaptation's
        ``init`` is given no key).

    Returns
    -------
    psample.base.ChainAlgorithm
        ``init(position) -> FlowPolarSliceState``, ``step``, ``adaptation`` (step-wise) and
        ``with_parameters({"w", "center", "scale", "flow"})``.

    Raises
    ------
    InvalidTuningError
        If a tuning value is out of range.
    """
    _check_tuning(num_fit_steps, batch_size, learning_rate)
    if not (isinstance(num_layers, (int, np.integer)) and num_layers >= 0):
        raise InvalidTuningError(f"num_layers must be an integer >= 0, got {num_layers!r}")
    hidden = check_positive_int("hidden", hidden)
    if not isinstance(seed, (int, np.integer)):
        raise InvalidTuningError(f"seed must be an integer, got {seed!r}")
    if not isinstance(w, jax.core.Tracer):
        check_positive("w", w)
    kernel = build_kernel(max_proposals)

    def pieces(example, flow_params):
        flat, unravel = jax.flatten_util.ravel_pytree(example)
        if flow_params is None:
            flow_params = {"shift": jnp.zeros_like(flat), "log_scale": jnp.zeros_like(flat), "layers": []}
        return unravel, flow_params, base_logdensity(logdensity_fn, flow_params, unravel)

    def wrap(base: PolarSliceState, flow_params, unravel) -> FlowPolarSliceState:
        x, logdet = flow_forward(flow_params, base.position)
        return FlowPolarSliceState(unravel(x), base.logdensity - logdet, base)

    def init(position) -> FlowPolarSliceState:
        unravel, flow_params, logdensity_u = pieces(position, flow)
        u = flow_inverse(flow_params, jax.flatten_util.ravel_pytree(position)[0])
        return wrap(init_transformed(u, logdensity_u, center, scale), flow_params, unravel)

    def step(rng_key: PRNGKey, state: FlowPolarSliceState):
        unravel, flow_params, logdensity_u = pieces(state.position, flow)
        base, info = kernel(rng_key, state.base, logdensity_u, w, center, scale)
        return wrap(base, flow_params, unravel), info

    def inner_adaptation(logdensity_u):
        return polar_slice_adaptation(
            logdensity_u, w=w, center=center, scale=scale, max_proposals=max_proposals, structure=structure
        )

    def adapt_init(positions, num_steps: int) -> FlowAdaptationState:
        example = jax.tree.map(lambda a: a[0], positions)
        flat = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(positions)
        d = flat.shape[1]
        if d < 2:
            raise ShapeError(f"polar slice sampling needs positions with d >= 2 entries, got d={d}")
        unravel = jax.flatten_util.ravel_pytree(example)[1]
        init_key, fit_key = jax.random.split(jax.random.key(int(seed)))
        start = init_flow(init_key, d, num_layers=num_layers, hidden=hidden, shift=jnp.mean(flat, 0), dtype=flat.dtype)
        fitted, _ = fit_flow(fit_key, logdensity_fn, start, num_fit_steps=num_fit_steps, batch_size=batch_size,
                             learning_rate=learning_rate, unravel_fn=unravel)  # fmt: skip
        u = jax.vmap(lambda x: flow_inverse(fitted, x))(flat)
        inner = inner_adaptation(base_logdensity(logdensity_fn, fitted, unravel)).init(u, num_steps)
        return FlowAdaptationState(inner, fitted, example)

    def adapt_step(rng_key: PRNGKey, carry: FlowAdaptationState, num_steps: int):
        unravel = jax.flatten_util.ravel_pytree(carry.example)[1]
        adaptation = inner_adaptation(base_logdensity(logdensity_fn, carry.flow, unravel))
        inner, info = adaptation.step(rng_key, carry.inner, num_steps)
        return FlowAdaptationState(inner, carry.flow, carry.example), info

    def adapt_final(carry: FlowAdaptationState):
        unravel = jax.flatten_util.ravel_pytree(carry.example)[1]
        adaptation = inner_adaptation(base_logdensity(logdensity_fn, carry.flow, unravel))
        states, parameters = adaptation.final(carry.inner)
        states = jax.vmap(lambda s: wrap(s, carry.flow, unravel))(states)
        return states, dict(parameters, flow=carry.flow)

    adaptation = _FlowAdaptation(stepwise_run(adapt_init, adapt_step, adapt_final), adapt_init, adapt_step, adapt_final)

    def with_parameters(parameters) -> ChainAlgorithm:
        return flow_polar_slice(
            logdensity_fn, flow=parameters["flow"], w=parameters["w"], center=parameters["center"],
            scale=parameters["scale"], max_proposals=max_proposals, structure=structure, num_layers=num_layers,
            hidden=hidden, num_fit_steps=num_fit_steps, batch_size=batch_size, learning_rate=learning_rate,
            seed=seed,
        )  # fmt: skip

    return ChainAlgorithm(init, step, adaptation, with_parameters)


class _FlowAdaptation(NamedTuple):
    """The flow adaptation (a :class:`psample.base.StepwiseAdaptation`): ``init`` fits the flow."""

    run: Callable
    init: Callable
    step: Callable
    final: Callable
