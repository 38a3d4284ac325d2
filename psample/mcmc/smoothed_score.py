"""Smoothed scores for the chain of log-concave Markov chains: exact, or estimated by importance sampling.

The walk of :mod:`psample.mcmc.logconcave_chain` needs the score of the smoothed density
``p_σ = p * N(0, σ² I)`` at its current point. :func:`exact_smoothed_score` wraps a given
smoothed score (analytic or learned) and optionally its log-density; :func:`importance_smoothed_score`
estimates it from the target's log-density alone, with proposals ``x ~ N(y, σ² I)`` weighted by
``p(x)`` (self-normalised importance sampling, Tweedie's formula), in log space, dropping and
counting non-finite proposals. Its known limit: with few effective proposals on the first
measurement the estimated mode weights are biased towards wide modes; :func:`check_score_ess`
detects that regime and warns.

See the :doc:`family page </families/logconcave_chain>` for the method, tuning and measured limits.

References
----------
.. [1] Saeed Saremi, Ji Won Park and Francis Bach, "Chain of Log-Concave Markov Chains",
   International Conference on Learning Representations (ICLR), 2024. arXiv:2305.19473.
.. [2] Saeed Saremi and Aapo Hyvärinen, "Neural Empirical Bayes", Journal of Machine Learning
   Research 20(181), 1-23, 2019.
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from psample.base import is_nonfinite_logdensity
from psample.errors import InvalidTuningError, ModelError, NumericalWarning, ShapeError, check_positive_int

__all__ = [
    "SmoothedScore",
    "SCORE_ESTIMATORS",
    "DEFAULT_NUM_SCORE_SAMPLES",
    "SUPPORT_RELATIVE_WEIGHT",
    "MIN_EFFECTIVE_SCORE_SAMPLES",
    "exact_smoothed_score",
    "importance_smoothed_score",
    "check_score_ess",
]

#: Importance-sampling estimators of the smoothed score, by name.
SCORE_ESTIMATORS = ("tweedie", "identity", "mixed")
#: Default proposals per importance-sampling score estimate.
DEFAULT_NUM_SCORE_SAMPLES = 256

#: Below this many effective proposals (``num_score_samples`` times the mean relative ESS of
#: the first measurement's score estimates) the importance-sampling score cannot weigh the
#: modes right (their estimated weights are biased below it).
MIN_EFFECTIVE_SCORE_SAMPLES = 8.0


def _flat(tree):
    return jax.flatten_util.ravel_pytree(tree)[0]


class SmoothedScore(NamedTuple):
    """A source of smoothed scores on flat vectors (the ``logdensity_fn`` slot of the kernel).

    score
        ``(rng_key, y, s) -> (∇ log p_s(y), relative ESS, num_nonfinite)`` on pytree ``y``; the
        ESS is NaN for exact scores; ``num_nonfinite`` (int32) counts the non-finite evaluations
        behind the estimate (for an exact score, 1 if the score itself is not finite).
    logdensity
        ``(y, s) -> log p_s(y)`` up to a constant in ``y``, or ``None`` when unknown.
    cost
        Target evaluations per score evaluation (1 for a given score).
    """

    score: Callable
    logdensity: Callable | None
    cost: int


def exact_smoothed_score(smoothed_score: Callable | None = None, smoothed_logdensity: Callable | None = None):
    """A :class:`SmoothedScore` from a given ``smoothed_score(y, s)`` and/or ``smoothed_logdensity(y, s)``.

    Without ``smoothed_score`` the score is the autodiff gradient of ``smoothed_logdensity``.
    The output's shape is checked against ``y`` whenever the function is traced (so at ``init``,
    before any long work): a score must have the structure and shapes of the position, a
    log-density must be a scalar. A non-finite score is returned as is and counted (the kernel
    refuses to move on it).

    Raises
    ------
    ShapeError
        When the functions are first traced (``init``), if ``smoothed_score`` returns another
        structure or shape than the position, or ``smoothed_logdensity`` a non-scalar.
    """
    if smoothed_score is None:
        if smoothed_logdensity is None:
            raise ModelError("give smoothed_score or smoothed_logdensity")
        grad = jax.grad(smoothed_logdensity)
        name = "the gradient of smoothed_logdensity"

        def smoothed_score(y, s):
            return grad(y, s)

    else:
        name = "smoothed_score"

    def score(rng_key, y, s):
        del rng_key
        if smoothed_logdensity is not None:
            _check_scalar_output(smoothed_logdensity, y, s)
        # Shapes are static: a mismatch (e.g. a () or (1,) score broadcast against a (d,)
        # position) is refused at trace time, before any draw.
        _check_score_output(name, smoothed_score, y, s)
        out = smoothed_score(y, s)
        flat = _flat(out)
        nonfinite = jnp.logical_not(jnp.all(jnp.isfinite(flat))).astype(jnp.int32)
        return out, jnp.asarray(jnp.nan, dtype=flat.dtype), nonfinite

    return SmoothedScore(score, smoothed_logdensity, 1)


def _check_score_output(name, fn, y, s):
    expected = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), y)
    got = jax.eval_shape(fn, y, s)
    want_shapes = jax.tree.map(lambda x: x.shape, expected)
    got_shapes = jax.tree.map(lambda x: tuple(jnp.shape(x)), got)
    if jax.tree.structure(got) != jax.tree.structure(expected) or jax.tree.leaves(
        got_shapes, is_leaf=lambda x: isinstance(x, tuple)
    ) != jax.tree.leaves(want_shapes, is_leaf=lambda x: isinstance(x, tuple)):
        raise ShapeError(
            f"{name} returned shape {got_shapes} for a position of shape {want_shapes}: the smoothed "
            f"score must have the position's shape {want_shapes} (one partial derivative per coordinate)"
        )


def _check_scalar_output(fn, y, s):
    got = jax.eval_shape(fn, y, s)
    if not (hasattr(got, "shape") and tuple(got.shape) == ()):
        shape = jax.tree.map(lambda x: tuple(jnp.shape(x)), got)
        raise ShapeError(f"smoothed_logdensity returned shape {shape}; it must return a scalar, shape ()")


#: An importance-sampling estimate of ``E[X | y]`` is confined to the bounding box of the
#: proposals whose weight is at least this fraction of the largest: the proposals the weighted
#: mean actually rests on (module docstring).
SUPPORT_RELATIVE_WEIGHT = 1e-6


def importance_smoothed_score(logdensity_fn: Callable, num_samples: int = DEFAULT_NUM_SCORE_SAMPLES, estimator: str = "mixed"):
    """Self-normalised importance-sampling estimate of ``∇ log p_s`` from ``logdensity_fn`` alone.

    Proposal ``N(y, s² I)``, weights ``w_i ∝ p(y + s ε_i)`` in log space. Estimators (module
    docstring): ``"tweedie"`` ``Σ w_i ε_i / s`` ([1], eq. 4.8); ``"identity"``
    ``Σ w_i ∇log p(y + s ε_i)``; ``"mixed"`` ``a·tweedie + (1-a)·identity`` with ``a ∈ [0, 1]``
    minimising ``Σ w_i² ‖a(t_i - T) + (1-a)(g_i - G)‖²``, the delta-method variance of a
    self-normalised estimate (its plug-in ``a`` adds an ``O(1/N)`` bias).

    Safeguards, since the score is ``(E[X | y] - y)/s²`` and ``E[X | y]`` lies in the convex hull
    of the target's mass:

    * a proposal whose log-density is NaN or ``+inf``, or (``"identity"``, ``"mixed"``) whose
      gradient is not finite where its density is positive, is dropped and counted (``-inf``
      is zero density, neither dropped nor counted);
    * the denoiser ``y + s² ĝ`` is projected (clipped, per coordinate) into the bounding box of
      the proposals with weight at least :data:`SUPPORT_RELATIVE_WEIGHT` times the largest,
      intersected with one weighted standard deviation of the proposals around the Tweedie
      estimate ``Σ w_i x_i``. The Tweedie form is a convex combination of the proposals and
      barely moves; the identity and mixed forms add ``s²`` times a gradient, which with
      degenerate weights threw the jump and the walk far outside the target's mass;
    * if no proposal has positive density the estimate is ``0`` (``E[X | y] = y``: no
      information) with relative ESS ``0``.

    Parameters
    ----------
    logdensity_fn
        ``position -> scalar``, unnormalised.
    num_samples
        ``N >= 2`` proposals per estimate.
    estimator
        One of :data:`SCORE_ESTIMATORS`.

    Returns
    -------
    SmoothedScore
        Without a log-density (``logdensity=None``), costing ``num_samples`` target evaluations
        per score; its ``score`` returns ``(score, relative ESS, number of dropped proposals)``.
    """
    num_samples = check_positive_int("num_score_samples", num_samples, minimum=2)
    if estimator not in SCORE_ESTIMATORS:
        raise InvalidTuningError(f"score_estimator must be one of {SCORE_ESTIMATORS}, got {estimator!r}")
    log_support = float(np.log(SUPPORT_RELATIVE_WEIGHT))

    def score(rng_key, y, s):
        flat, unravel = jax.flatten_util.ravel_pytree(y)
        s = jnp.asarray(s, flat.dtype)
        eps = jax.random.normal(rng_key, (num_samples,) + flat.shape, dtype=flat.dtype)
        xs = flat + s * eps

        def flat_logdensity(x):
            return jnp.asarray(logdensity_fn(unravel(x)), dtype=flat.dtype)

        if estimator == "tweedie":
            logw = jax.vmap(flat_logdensity)(xs)
            bad = is_nonfinite_logdensity(logw)
        else:
            logw, grads = jax.vmap(jax.value_and_grad(flat_logdensity))(xs)
            bad = is_nonfinite_logdensity(logw)
            bad = bad | (jnp.isfinite(logw) & ~jnp.all(jnp.isfinite(grads), axis=1))
        logw = jnp.where(bad, -jnp.inf, logw)
        num_nonfinite = jnp.sum(bad).astype(jnp.int32)
        top = jnp.max(logw)
        has_mass = top > -jnp.inf
        rel = jnp.where(has_mass, logw - jnp.where(has_mass, top, 0.0), -jnp.inf)
        w = jnp.exp(rel)
        w = w / jnp.where(has_mass, jnp.sum(w), 1.0)
        ess = jnp.where(has_mass, 1.0 / (num_samples * jnp.sum(w**2)), 0.0)
        t = eps / s
        tweedie = w @ t
        if estimator == "tweedie":
            g = tweedie
        else:
            # Zero-weight samples may carry non-finite gradients: keep 0 * nan out of the sums.
            grads = jnp.where((w > 0)[:, None] & jnp.isfinite(grads), grads, 0.0)
            identity = w @ grads
            if estimator == "identity":
                g = identity
            else:
                b = grads - identity
                diff = (t - tweedie) - b
                w2 = w**2
                num = -jnp.sum(w2 * jnp.sum(diff * b, axis=1))
                den = jnp.sum(w2 * jnp.sum(diff**2, axis=1))
                a = jnp.clip(jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.5), 0.0, 1.0)
                g = a * tweedie + (1.0 - a) * identity
        # Trust region of E[X | y]: the box of the supported proposals, and within one weighted
        # standard deviation of the Tweedie (convex-combination) estimate, the spread the weights
        # resolve; a well-resolved gradient correction is far smaller than that.
        support = (rel >= log_support)[:, None]
        centre = flat + s * (w @ eps)
        spread = jnp.sqrt(w @ (xs - centre) ** 2)
        lower = jnp.maximum(jnp.min(jnp.where(support, xs, jnp.inf), axis=0), centre - spread)
        upper = jnp.minimum(jnp.max(jnp.where(support, xs, -jnp.inf), axis=0), centre + spread)
        denoised = jnp.clip(flat + s**2 * g, lower, upper)
        g = jnp.where(has_mass, (denoised - flat) / s**2, 0.0)
        return unravel(g), ess, num_nonfinite

    return SmoothedScore(score, None, num_samples)


def check_score_ess(first_score_ess, num_score_samples: int, *, stacklevel: int = 3) -> float:
    """Warn when the importance-sampling score rested on too few effective proposals.

    Parameters
    ----------
    first_score_ess
        Relative ESS of the first measurement's score estimates (``state.first_score_ess``),
        any shape; their mean is used.
    num_score_samples
        The estimator's proposals per estimate.

    Returns
    -------
    float
        The effective number of proposals, ``mean(first_score_ess) * num_score_samples``.
        Below :data:`MIN_EFFECTIVE_SCORE_SAMPLES` a ``NumericalWarning`` says that the mode
        weights are biased towards wide modes, and what to pass instead.
    """
    effective = float(np.mean(first_score_ess)) * int(num_score_samples)
    if effective < MIN_EFFECTIVE_SCORE_SAMPLES:
        target = num_score_samples * MIN_EFFECTIVE_SCORE_SAMPLES / max(effective, 1e-12)
        warnings.warn(
            f"the importance-sampling smoothed score rested on {effective:.2g} effective proposals "
            f"(mean score_ess {effective / num_score_samples:.2g} of num_score_samples={num_score_samples}) "
            "on the first measurement, where the mode weights are decided: below "
            f"{MIN_EFFECTIVE_SCORE_SAMPLES:g} they are biased (towards wide modes). Increase "
            f"num_score_samples (to about {int(2 ** np.ceil(np.log2(target)))}), or pass "
            "smoothed_score (an exact or learned smoothed score)",
            NumericalWarning,
            stacklevel=stacklevel,
        )
    return effective
