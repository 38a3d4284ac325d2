"""Coordinatewise slice moves: univariate slice sampling of chosen coordinates, one after another.

Method. For each chosen coordinate ``i`` in turn (a random order each sweep), one univariate
slice sampling update of its full conditional ``t -> f(x + t e_i)``: a level
``log u + f(x)``, a bracket of width ``widths[i]`` placed at random around ``t = 0`` and stepped
out by whole widths while its ends are inside the slice (at most ``max_expansions`` steps,
split at random between the two ends), then shrinkage towards ``t = 0`` until a point inside
the slice is drawn (Neal [1], Figs. 3 and 5). Each update leaves the conditional, hence the
joint law, invariant, for any widths.

Use. The sweep serves as one move inside composite samplers, where a conditional is cheap:
e.g. the hyperparameters of a centred hierarchical model given its latents, whose conditional
needs the prior only (``logprior_fn`` of :func:`psample.from_numpyro`'s target, no likelihood evaluation), and whose
coordinates a single joint move cannot follow when the latents switch their scales on and off
(:func:`psample.interweaved_polar_slice` with ``centered_move="coordinatewise"``).

Contract. :func:`coordinatewise_slice` is a pure, jittable, vmappable function of a flat
position. BlackJAX's ``coordinate_slice`` does the same sweep, but its loops read a NaN or
``+inf`` log-density as "outside the slice" without a trace; this one counts them
(``num_nonfinite``, DESIGN §9) and treats them the same way (zero density).

Limits. The coordinates are updated one at a time: strongly correlated coordinates move
slowly; widths far from the conditional spread cost evaluations (stepping out or shrinking),
not correctness.

References
----------
.. [1] Radford M. Neal, "Slice sampling", The Annals of Statistics 31(3), 705-767, 2003.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.types import Array, PRNGKey

__all__ = ["CoordinatewiseSliceInfo", "coordinatewise_slice"]


class CoordinatewiseSliceInfo(NamedTuple):
    """Diagnostics of one sweep (all scalars).

    num_evals
        Log-density evaluations of the sweep (bracket ends, stepping-out and shrinkage).
    num_nonfinite
        Evaluations at which the log-density was NaN or ``+inf`` (read as zero density).
    hit_max_proposals
        ``True`` if some coordinate's shrinkage reached ``max_proposals`` (it then stays put).
    """

    num_evals: Array
    num_nonfinite: Array
    hit_max_proposals: Array


def _evaluate(logdensity_fn, x):
    """``(log-density, is_nonfinite)``: NaN and ``+inf`` become ``-inf``, and are flagged."""
    value = logdensity_fn(x)
    bad = jnp.isnan(value) | (value == jnp.inf)
    return jnp.where(bad, -jnp.inf, value), bad


def _univariate(rng_key, flat, logdensity, logdensity_fn, i, width, max_expansions, max_proposals):
    """One slice update of coordinate ``i``: ``(flat, logdensity, evals, nonfinite, hit)``."""
    key_level, key_place, key_split, key_shrink = jax.random.split(rng_key, 4)
    level = logdensity - jax.random.exponential(key_level, dtype=flat.dtype)

    def at(t):
        return _evaluate(logdensity_fn, flat.at[i].add(t))

    left = -width * jax.random.uniform(key_place, dtype=flat.dtype)
    right = left + width
    steps_left = jnp.floor(max_expansions * jax.random.uniform(key_split)).astype(jnp.int32)
    steps_right = max_expansions - 1 - steps_left

    def step_out(direction):
        def cond(c):
            _, inside, left_steps, _, _ = c
            return inside & (left_steps > 0)

        def body(c):
            t, _, left_steps, evals, bad = c
            t = t + direction * width
            value, flag = at(t)
            return t, value > level, left_steps - 1, evals + 1, bad + flag

        return cond, body

    value_l, bad_l = at(left)
    value_r, bad_r = at(right)
    left, _, _, evals_l, bad_l = jax.lax.while_loop(*step_out(-1.0), (left, value_l > level, steps_left, 1, bad_l.astype(jnp.int32)))
    right, _, _, evals_r, bad_r = jax.lax.while_loop(*step_out(1.0), (right, value_r > level, steps_right, 1, bad_r.astype(jnp.int32)))

    def cond(c):
        return ~c[4] & (c[5] < max_proposals)

    def body(c):
        left, right, key, _, _, n, bad, _ = c
        key, sub = jax.random.split(key)
        t = left + (right - left) * jax.random.uniform(sub, dtype=flat.dtype)
        value, flag = at(t)
        found = value > level
        left = jnp.where(~found & (t < 0), t, left)
        right = jnp.where(~found & (t >= 0), t, right)
        return left, right, key, t, found, n + 1, bad + flag, value

    zero = jnp.zeros((), flat.dtype)
    init = (left, right, key_shrink, zero, jnp.asarray(False), jnp.asarray(0), jnp.asarray(0), logdensity)
    _, _, _, t, found, n, bad_s, value = jax.lax.while_loop(cond, body, init)
    new_flat = jnp.where(found, flat.at[i].add(t), flat)
    new_logdensity = jnp.where(found, value, logdensity)
    return new_flat, new_logdensity, evals_l + evals_r + n, bad_l + bad_r + bad_s, ~found


def coordinatewise_slice(
    rng_key: PRNGKey,
    flat: Array,
    logdensity_fn: Callable,
    indices: Array,
    widths: Array,
    *,
    logdensity: Array | None = None,
    max_expansions: int = 10,
    max_proposals: int = 1000,
) -> tuple[Array, Array, CoordinatewiseSliceInfo]:
    """One sweep of univariate slice updates over ``flat[indices]``, in a random order.

    Parameters
    ----------
    rng_key
        A JAX PRNG key.
    flat
        The current position, shape ``(d,)``.
    logdensity_fn
        ``(d,) -> scalar``, the log-density (up to a constant) whose conditionals are sampled.
    indices
        The coordinates to update, integer array ``(k,)``.
    widths
        The initial bracket width of each, ``(k,)`` (> 0; e.g. the coordinate's conditional spread).
    logdensity
        ``logdensity_fn(flat)`` if known (saves one evaluation); it must be finite.
    max_expansions
        Stepping-out steps per coordinate, both ends together (Neal's ``m``).
    max_proposals
        Shrinkage proposals per coordinate before it stays put.

    Returns
    -------
    flat, logdensity, info
        The new position ``(d,)``, its log-density and a :class:`CoordinatewiseSliceInfo`
        (``num_evals`` includes the evaluation at ``flat`` when ``logdensity`` is not given).
    """
    indices = jnp.asarray(indices)
    widths = jnp.broadcast_to(jnp.asarray(widths, flat.dtype), indices.shape)
    if logdensity is None:
        logdensity, first_bad = _evaluate(logdensity_fn, flat)
        first = (1, first_bad.astype(jnp.int32))
    else:
        first = (0, 0)
    key_order, key_moves = jax.random.split(rng_key)
    order = jax.random.permutation(key_order, indices.shape[0])

    def one(carry, inputs):
        flat, logdensity, evals, bad, hit = carry
        key, j = inputs
        flat, logdensity, n, b, h = _univariate(key, flat, logdensity, logdensity_fn, indices[j], widths[j],
                                                max_expansions, max_proposals)
        return (flat, logdensity, evals + n, bad + b, hit | h), None

    init = (flat, logdensity, jnp.asarray(first[0]), jnp.asarray(first[1]), jnp.asarray(False))
    (flat, logdensity, evals, bad, hit), _ = jax.lax.scan(
        one, init, (jax.random.split(key_moves, indices.shape[0]), order)
    )
    return flat, logdensity, CoordinatewiseSliceInfo(num_evals=evals, num_nonfinite=bad, hit_max_proposals=hit)
