"""Windowed, cross-chain, robust warm-up adaptation of Gibbsian polar slice sampling.

Gibbsian polar slice sampling (Schär, Habeck and Rudolf [1]) is centred at the origin and
isotropic: it is not translation- or affine-invariant, and pays heavily where a posterior sits
far from the origin or is correlated. Run on ``z`` with ``x = c + S z``
(``psample.polar_slice(..., center=c, scale=S)``) it is exact for any fixed ``(c, S)``; this
module chooses ``c``, ``S`` and the radius window ``w`` from the chains' own warm-up draws.
See the :doc:`family page </families/polar_slice>` for the method, tuning and measured limits;
it gives the adaptation's rules in full.

Contract. :func:`polar_slice_adaptation` returns a :class:`PolarSliceAdaptation`: BlackJAX's
``run(rng_key, positions, num_steps) -> ((states, parameters), info)`` over all chains at once
(``positions`` and ``states`` with a leading chain axis) and its step-wise parts
``init``/``step``/``final`` (a :class:`psample.base.StepwiseAdaptation`, which
:func:`psample.sample` drives in chunks). ``parameters = {"w", "center", "scale"}`` are the
keyword arguments of :func:`psample.polar_slice`, and the returned states are valid states of
the sampler with those parameters.

The rules, in brief. Stan-like windows ([3], :func:`window_schedule`); at the end of each, the
parameters are re-estimated from that window's thinned draws (at most ``max_draws_per_chain``
per chain), pooled over all chains, and the chains' polar coordinates recomputed in the new
``z``. The estimators are robust (medians, MADs, Tyler's M-estimator [2] with shrinkage [4]),
and use the log-density's gradients at the thinned draws where they are trusted (nutpie's
diagonal rule; the geometric mean of the draws' and gradients' covariances for a dense scale,
exact for a Gaussian from any draws); the centre stays the user's unless a test finds the
draws clearly move it; ``w`` balances the radius bracket's expansions and shrinks ([5]).
``structure="auto"`` chooses a dense scale up to ``d = 512`` (diagonal where the draws show no
correlation beyond noise or the gradients are not trusted) and a low-rank one above. Details
in :func:`estimate_parameters`. Sampling never uses gradients; a log-density that cannot be
differentiated is adapted from the draws alone. A non-finite or degenerate estimate (chains
that did not move) keeps the previous parameters.

Non-finite log-densities. The transitions treat NaN and ``+inf`` as outside every slice (see
:mod:`psample.mcmc.polar_slice`), so the windows' draws never sit at such points; gradients
that are not finite at a draw leave that draw out of the gradient-based estimates. The steps
that met one are counted per chain, and ``final`` warns
(:class:`psample.errors.NumericalWarning`) with the count, as the runner does for the draws.

Known limits. On a strongly correlated Gaussian only the dense form (from the gradients) makes
the target near-isotropic in ``z``; the diagonal and the low-rank form (fitted to draws only)
leave it badly conditioned. A dense scale fitted to the draws alone can degrade the chain on
heavy-tailed targets, where the gradients are not trusted; hence the low-rank form is only the
fallback of very large ``d``. ``benchmarks/polar_slice_structures.py`` compares the forms.

References
----------
.. [1] Philip Schär, Michael Habeck and Daniel Rudolf, "Gibbsian polar slice sampling",
   ICML 2023, PMLR 202:30204-30223. arXiv:2302.03945.
.. [2] David E. Tyler, "A distribution-free M-estimator of multivariate scatter", The Annals
   of Statistics 15(1), 234-251, 1987.
.. [3] Stan Reference Manual, "HMC algorithm parameters: automatic parameter tuning"
   (windowed adaptation).
.. [4] Yilun Chen, Ami Wiesel and Alfred O. Hero III, "Robust shrinkage estimation of
   high-dimensional covariance matrices", IEEE Transactions on Signal Processing 59(9),
   4097-4107, 2011.
.. [5] Matthew M. Tibbits, Chris Groendyke, Murali Haran and John C. Liechty, "Automated factor
   slice sampling", Journal of Computational and Graphical Statistics 23(2), 543-563, 2014.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import scipy.stats
from blackjax.types import Array, ArrayTree, PRNGKey

from psample.errors import InvalidTuningError, NumericalWarning, ShapeError, check_positive_int
from psample.mcmc.polar_slice_kernel import build_kernel, init_transformed
from psample.mcmc.preconditioning import (
    LowRankScale,
    apply_scale,
    check_preconditioner,
    is_concrete,
    reparametrize,
    solve_scale,
    to_z,
)

__all__ = [
    "PolarSliceAdaptationState",
    "PolarSliceAdaptationInfo",
    "PolarSliceAdaptation",
    "STRUCTURES",
    "window_schedule",
    "estimate_parameters",
    "polar_slice_adaptation",
    "stepwise_run",
]

#: Forms of the scale the adaptation can estimate.
STRUCTURES = ("auto", "dense", "low_rank", "diagonal")
#: ``structure="auto"`` estimates a dense scale up to this dimension, a low-rank one above.
DENSE_MAX_DIM = 512
#: MAD of a standard Gaussian is 1 / 1.4826.
_MAD_TO_SD = 1.482602218505602
#: Fixed-point iterations of Tyler's estimator (converges geometrically with the shrinkage).
_TYLER_ITERATIONS = 30
#: With at most ``2 d`` draws, the draw and gradient covariances are shrunk toward their
#: diagonals with weight ``0.01 d / (n + d)``: just enough to keep them invertible. With more
#: draws they are not shrunk: shrinkage breaks the exactness of the geometric mean for
#: Gaussians, so it is kept as small as invertibility allows.
_GRADIENT_SHRINKAGE = 0.01
#: ``structure="auto"`` keeps a dense scale when the draws' Tyler shape has a condition number
#: above this factor times the Marchenko-Pastur ratio of ``n`` draws from the identity.
_CORRELATION_NOISE_FACTOR = 2.0
#: The centre moves from the user's only where a test of "no offset" rejects at this level
#: (:func:`_shrunk_center`): a false move costs the sampler far more than a missed small one.
_CENTER_TEST_LEVEL = 1e-3
#: ``w`` balances this many radius expansions against one shrinkage (:func:`_radius_window`).
_EXPANSION_WEIGHT = 1.5


class PolarSliceAdaptationState(NamedTuple):
    """Carry of the adaptation: all chains together (one cross-chain state).

    states
        The chains' :class:`~psample.mcmc.polar_slice.PolarSliceState`, leading chain axis ``C``,
        in the coordinates of ``parameters``.
    parameters
        ``{"w": scalar, "center": (d,), "scale": (d,) | (d, d) | LowRankScale}``.
    buffer
        ``(C, K, d)`` thinned flat positions of the current window (``K`` rows per chain).
    step
        Steps done, int32 scalar.
    counts
        ``(2,)``: radius stepping-out expansions and shrinkage rejections summed over the
        current window's transitions (all chains), for the choice of ``w``.
    num_nonfinite
        ``(C,)`` int32: warm-up steps so far in which the chain's log-density returned NaN or
        ``+inf`` at least once (``PolarSliceInfo.num_nonfinite > 0``); ``final`` warns when
        any is positive.
    """

    states: ArrayTree
    parameters: dict
    buffer: Array
    step: Array
    counts: Array
    num_nonfinite: Array


class PolarSliceAdaptationInfo(NamedTuple):
    """Per-step diagnostics of the adaptation.

    info
        The sampler's :class:`~psample.mcmc.polar_slice.PolarSliceInfo`, leaves ``(C,)`` per step.
    window_end
        ``True`` at the last step of a window (the parameters were re-estimated after it).
    w
        The window ``w`` in force after the step (scalar).
    """

    info: ArrayTree
    window_end: Array
    w: Array


class PolarSliceAdaptation(NamedTuple):
    """The adaptation: BlackJAX's ``run`` plus its step-wise parts (NumPyro's kernel uses them).

    run
        ``run(rng_key, positions, num_steps) -> ((states, parameters), info)``; step ``t`` uses
        the key ``fold_in(rng_key, t)``, split over the chains.
    init
        ``init(positions, num_steps) -> PolarSliceAdaptationState``.
    step
        ``step(rng_key, adaptation_state, num_steps) -> (adaptation_state, PolarSliceAdaptationInfo)``.
    final
        ``final(adaptation_state) -> (states, parameters)``: the structure decision of
        ``structure="auto"`` (only where the values are concrete), see the
        :doc:`family page </families/polar_slice>`;
        with a concrete carry it warns (:class:`psample.errors.NumericalWarning`) when some
        step met a NaN or ``+inf`` log-density.
    """

    run: Callable
    init: Callable
    step: Callable
    final: Callable


# ----------------------------------------------------------------------------- schedule


def window_schedule(num_steps: int) -> list[tuple[int, int]]:
    """Stan-like windows ``[(start, end), ...]`` covering ``range(num_steps)``.

    A first window of ``max(10, num_steps // 10)`` steps, then windows doubling from
    ``max(10, num_steps // 40)``; a window is stretched to the end when the rest could not hold
    the next, doubled, one. Fewer than 20 steps make one window.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    if num_steps < 20:
        return [(0, num_steps)]
    windows, start = [], 0
    first = max(10, num_steps // 10)
    length = max(10, num_steps // 40)
    end = min(first, num_steps)
    windows.append((0, end))
    start = end
    while start < num_steps:
        end = start + length
        if num_steps - end < 2 * length:
            end = num_steps
        windows.append((start, end))
        start, length = end, 2 * length
    return windows



def record_window_draw(buffer, positions, t, schedule):
    """Store the chains' positions of warm-up step ``t`` in the window buffer if the schedule keeps it.

    Parameters
    ----------
    buffer
        ``(num_chains, rows, d)`` flattened draws of the current window.
    positions
        The chains' positions (pytree, leading chain axis).
    t
        Index of the warm-up step just taken.
    schedule
        ``(starts, ends, strides)`` of the windows (from ``_schedule_arrays``).

    Returns
    -------
    tuple
        ``(buffer, window, start, end)``: the updated buffer, the index of the window ``t`` is in
        and that window's first and one-past-last steps.
    """
    starts, ends, strides = schedule
    rows = buffer.shape[1]
    window = jnp.searchsorted(jnp.asarray(ends), t, side="right")
    start, end = jnp.asarray(starts)[window], jnp.asarray(ends)[window]
    stride = jnp.asarray(strides)[window]
    offset = t - start
    store = (offset % stride == stride - 1) & (offset // stride < rows)
    flat = jax.vmap(lambda q: jax.flatten_util.ravel_pytree(q)[0])(positions)
    row = jnp.minimum(offset // stride, rows - 1)
    buffer = buffer.at[:, row].set(jnp.where(store, flat, buffer[:, row]))
    return buffer, window, start, end

def _schedule_arrays(num_steps: int, rows: int):
    """Static per-window arrays: starts, ends, thinning strides and rows kept."""
    windows = window_schedule(num_steps)
    starts = np.array([s for s, _ in windows], np.int32)
    ends = np.array([e for _, e in windows], np.int32)
    strides = np.array([math.ceil((e - s) / rows) for s, e in windows], np.int32)
    kept = (ends - starts) // strides
    return starts, ends, strides, kept


# ----------------------------------------------------------------------------- estimators


def _masked_median(values, valid):
    """Median over axis 0 of the rows where ``valid`` (NaN if none)."""
    return jnp.nanmedian(jnp.where(valid[:, None], values, jnp.nan), axis=0)


def _mad(values, valid, center):
    return _MAD_TO_SD * _masked_median(jnp.abs(values - center), valid)


def _shrinkage(n, d):
    return d / (n + d)


def _tyler_shape(y, valid, n):
    """Tyler's M-estimator of the shape of rows ``y`` (standardised), shrunk toward ``I``; trace ``d``.

    Returns ``(shape, weights)``: the weights ``d / (yᵢᵀ shape⁻¹ yᵢ)`` of the fixed point
    (zero for invalid rows), which down-weight far draws.
    """
    d = y.shape[1]
    rho = _shrinkage(n, d)
    eye = jnp.eye(d, dtype=y.dtype)
    y = jnp.where(valid[:, None], y, 0.0)

    def iterate(_, shape):
        chol = jnp.linalg.cholesky(shape)
        u = jax.scipy.linalg.solve_triangular(chol, y.T, lower=True)
        q = jnp.sum(u**2, axis=0)
        weights = jnp.where(valid & (q > 0), d / jnp.where(q > 0, q, 1.0), 0.0)
        new = (y.T * weights) @ y / n
        new = (1.0 - rho) * new + rho * eye
        return d * new / jnp.trace(new)

    shape = jax.lax.fori_loop(0, _TYLER_ITERATIONS, iterate, eye)
    u = jax.scipy.linalg.solve_triangular(jnp.linalg.cholesky(shape), y.T, lower=True)
    q = jnp.sum(u**2, axis=0)
    return shape, jnp.where(valid & (q > 0), d / jnp.where(q > 0, q, 1.0), 0.0)


def _weighted_cov(values, weights):
    total = jnp.sum(weights)
    mean = weights @ values / total
    centred = values - mean
    return (centred.T * weights) @ centred / total


def _sqrt_and_inverse_sqrt(matrix):
    eigenvalues, eigenvectors = jnp.linalg.eigh(0.5 * (matrix + matrix.T))
    eigenvalues = jnp.maximum(eigenvalues, eigenvalues[-1] * 1e-12)
    root = jnp.sqrt(eigenvalues)
    return (eigenvectors * root) @ eigenvectors.T, (eigenvectors / root) @ eigenvectors.T


def _geometric_mean_with_inverse(a, b):
    """``A # B⁻¹ = A^½ (A^½ B A^½)^-½ A^½``, the SPD ``X`` with ``X A⁻¹ X = B⁻¹``."""
    a_half, _ = _sqrt_and_inverse_sqrt(a)
    _, k_inv_half = _sqrt_and_inverse_sqrt(a_half @ b @ a_half)
    x = a_half @ k_inv_half @ a_half
    return 0.5 * (x + x.T)


def _low_rank_scale(y, valid, mad, rank):
    """``LowRankScale`` from standardised rows ``y`` (see the family page, docs/families/polar_slice.md)."""
    d = y.shape[1]
    y0 = jnp.where(valid[:, None], y, 0.0)
    norms = jnp.linalg.norm(y0, axis=1)
    signs = y0 * jnp.where(norms > 0, math.sqrt(d) / jnp.where(norms > 0, norms, 1.0), 0.0)[:, None]
    _, _, vt = jnp.linalg.svd(signs, full_matrices=False)
    basis = vt[:rank].T
    projections = y0 @ basis
    spread = _mad(projections, valid, _masked_median(projections, valid))
    residual = y0 - projections @ basis.T
    rest = jnp.median(_mad(residual, valid, _masked_median(residual, valid)))
    factors = spread / rest - 1.0
    return LowRankScale(mad * rest, basis, factors)


def _radius_spread(x, valid, center, scale):
    """Interquartile range of the radii ``‖S⁻¹ (x - c)‖`` of the valid rows (exists for every law)."""
    radii = jnp.linalg.norm(jax.vmap(lambda row: to_z(row, center, scale))(x), axis=1)
    radii = jnp.where(valid, radii, jnp.nan)
    return jnp.nanquantile(radii, 0.75) - jnp.nanquantile(radii, 0.25)


def _radius_window(w, expansions, shrinks, spread_new, spread_old):
    """The next window's ``w``: stepping-out and shrinkage balanced, carried to the new coordinates.

    Tibbits et al. [5] tune a slice sampler's width so that the bracket's expansions and its
    contractions are equally frequent: ``w`` too small pays in stepping-out evaluations
    (linear in the mismatch), too large in shrinkage (logarithmic). The window ran with ``w``
    and averaged ``expansions`` and ``shrinks`` per transition; ``w (κ E + 1) / (S + 1)`` is not
    capped at a doubling (unlike their ``2 w E / (E + S)``), so a first window far off (``w = 1``
    on a Cauchy whose slices span hundreds) lands near the slice width at once. Its fixed point
    is ``κ E = S`` with ``κ = 1.5`` (:data:`_EXPANSION_WEIGHT`), not ``E = S``: the cost is flat
    above the balance and steep below it, and a wide bracket's lower end is often clamped at
    the radius 0, which costs no evaluation; the evaluations per transition vary little over a
    wide range of ``w`` around the balance. The new scale and centre change the radii: ``w`` is
    carried over by the ratio of the radii's interquartile ranges in the new and the old
    coordinates.
    """
    return w * (_EXPANSION_WEIGHT * expansions + 1.0) / (shrinks + 1.0) * spread_new / spread_old


def _shrunk_center(whole, first, second, anchor, scale):
    """The centre: the user's ``anchor`` unless the draws clearly move it, then James-Stein.

    In the coordinates ``δ = S⁻¹ (c - anchor)`` of the new scale, the noise variance of each
    ``δ_j`` is ``v = mean_j (δ¹_j - δ²_j)² / 4`` from the two half-windows' centres. With
    Gaussian noise (medians are asymptotically Gaussian, also for a Cauchy) and the anchor
    right, ``δ ≈ (δ¹ + δ²) / 2`` and ``(δ¹ - δ²) / 2`` are independent and
    ``T = ‖δ‖² / (d v)`` is ``F(d, d)``-distributed. Below its ``1 - α`` quantile
    (:data:`_CENTER_TEST_LEVEL`) the centre is exactly ``anchor``; above it,
    ``δ ← max(0, 1 - (d - 2) v / ‖δ‖²) δ`` (positive-part James-Stein), which keeps a real shift
    (far above the threshold). James-Stein alone leaves a residual offset whenever the noise
    makes ``T`` exceed ``(d - 2) / d``, about half the time on a centred target, and the sampler
    is very sensitive to its centre: an offset of the size of a median's noise (a fraction of
    the target's spread in ``z``) costs a large share of the efficiency per evaluation.
    """
    delta, first, second = (solve_scale(scale, c - anchor) for c in (whole, first, second))
    d = delta.shape[0]
    noise = jnp.mean((first - second) ** 2) / 4.0
    norm2 = jnp.sum(delta**2)
    threshold = float(scipy.stats.f.ppf(1.0 - _CENTER_TEST_LEVEL, d, d))  # d is static
    significant = norm2 > threshold * d * noise
    keep = jnp.clip(1.0 - (d - 2) * noise / jnp.maximum(norm2, 1e-300), 0.0, 1.0)
    keep = jnp.where(jnp.isfinite(keep), keep, 1.0)
    keep = jnp.where(significant | ~jnp.isfinite(noise), keep, 0.0)  # no noise estimate: as before
    return anchor + apply_scale(scale, keep * delta)


def _mp_ratio(n, d):
    """``λ₊ / λ₋`` of Tyler's shrunk shape of ``n`` draws from the identity (Marchenko-Pastur)."""
    gamma = d / n
    rho = _shrinkage(n, d)
    upper = (1 - rho) * (1 + jnp.sqrt(gamma)) ** 2 + rho
    lower = (1 - rho) * jnp.maximum(0.0, 1 - jnp.sqrt(gamma)) ** 2 + rho
    return upper / lower


def _gradients_reliable(y, gradients, with_gradient, valid):
    """Whether the gradients' covariance is carried by many draws, not a few.

    With spatial weights ``d / ‖yᵢ‖²``, the draws' contributions ``vᵢ = ‖gᵢ‖² d / ‖yᵢ‖²`` to
    the gradient covariance have an effective number ``(Σv)² / Σv²`` close to ``n`` for
    Gaussians but a small fraction of ``n`` for heavy-tailed targets (the multivariate Cauchy)
    and funnels, where the local curvature varies over orders of magnitude and the geometric
    mean with the gradients means nothing: below ``n / 2`` the draws alone are used.
    """
    d = y.shape[1]
    sq = jnp.sum(jnp.where(valid[:, None], y, 0.0) ** 2, axis=1)
    v = jnp.where(with_gradient & (sq > 0), d * jnp.sum(gradients**2, axis=1) / jnp.where(sq > 0, sq, 1.0), 0.0)
    effective = jnp.sum(v) ** 2 / jnp.maximum(jnp.sum(v**2), 1e-300)
    n = jnp.sum(valid)
    return (jnp.sum(with_gradient) >= jnp.maximum(2, n // 2)) & (effective >= 0.5 * n)


def _shrink_log_spread(whole, first, second):
    """Shrink the log of per-coordinate scales toward their mean by their estimated noise.

    Empirical Bayes (James-Stein on ``log s_j``): the noise variance of ``log s_j`` is
    ``v = mean_j (log s_j¹ - log s_j²)² / 4`` from the two half-windows (each half has twice the
    whole window's variance), the spread ``V = var_j log s_j`` holds signal plus ``v``, and
    ``log s_j ← mean + max(0, 1 - v / V) (log s_j - mean)``. An isotropic target (the
    multivariate Cauchy, where every coordinate's MAD is noisy) gets an isotropic scale, while
    scales that really differ (eight schools) are kept. Without it the noise of a short
    warm-up's per-coordinate MADs makes the scale of an isotropic target anisotropic, which
    slows the chain.
    """
    logs = jnp.log(whole)
    finite = jnp.all(jnp.isfinite(logs)) & jnp.all(jnp.isfinite(jnp.log(first))) & jnp.all(jnp.isfinite(jnp.log(second)))
    noise = jnp.mean((jnp.log(first) - jnp.log(second)) ** 2) / 4.0
    mean = jnp.mean(logs)
    spread = jnp.mean((logs - mean) ** 2)
    keep = jnp.clip(1.0 - noise / jnp.maximum(spread, 1e-300), 0.0, 1.0)
    return jnp.where(finite, jnp.exp(mean + keep * (logs - mean)), whole)


def _newton_points_agree(y, gradients, covariance, valid):
    """Whether the target is locally Gaussian enough for the gradient-based dense scale.

    For a Gaussian with covariance ``Σ`` every Newton point ``yᵢ + Σ gᵢ`` is the mean. With
    ``Σ`` the geometric-mean estimate, the Newton points' spread in the coordinates whitened by
    ``Σ`` (median over draws of ``‖L⁻¹ (mᵢ - median m)‖² / d``) is 0 for a Gaussian, small (well
    below 1/4) for near-Gaussian posteriors, and of the order of the draws'
    own spread (``>= 1``) where the curvature varies over orders of magnitude (Cauchy, funnel):
    below 1/4 the gradients are trusted.
    """
    d = y.shape[1]
    newton = y + gradients @ covariance
    centre = _masked_median(newton, valid)
    chol = jnp.linalg.cholesky(covariance)
    whitened = jax.scipy.linalg.solve_triangular(chol, (newton - centre).T, lower=True)
    spread = jnp.sum(whitened**2, axis=0) / d
    statistic = jnp.nanmedian(jnp.where(valid, spread, jnp.nan))
    return statistic < 0.25


def _whitened_center(x, valid, center, scale):
    """``center + S · median(S⁻¹ (x - center))``: the coordinate-wise median taken in whitened
    coordinates, whose error is then of the size of the target's spread in every direction
    (the coordinate-wise median in ``x`` is not: along the narrow directions of a correlated
    target its error can be many standard deviations)."""
    z = jax.vmap(lambda row: to_z(row, center, scale))(x)
    return center + apply_scale(scale, _masked_median(z, valid))


def estimate_parameters(
    x,
    num_rows,
    previous: dict,
    structure: str,
    *,
    gradient_fn=None,
    rank: int = 16,
    allow_diagonal: bool = False,
    anchor=None,
    radius_counts=None,
    gradients=None,
):
    """Robust estimates of ``center``, ``scale`` (of the given structure) and ``w`` from the chains' draws.

    With ``gradient_fn`` (the gradient of the log-density, used at the window's thinned draws
    only), the scale combines the spread of the draws with that of the gradients, as nutpie
    does for HMC's mass matrix (Seyboldt et al.): for a Gaussian target the gradients are
    ``-P (x - μ)``, so for *any* set of draws, explored or not, the weighted covariances
    ``A`` of the draws and ``B`` of the gradients (same weights) satisfy ``B = P A P`` and the
    geometric mean ``A # B⁻¹`` is exactly the target covariance ``P⁻¹``. That matters here:
    a poorly scaled polar slice chain moves slowly, so early windows' draws alone understate
    the spread along every slowly mixing direction (and a scale fitted to them would mix slower
    still there). The diagonal form is ``sqrt(MAD(x_j) / MAD(∂_j log ρ))``, exact for
    diagonal Gaussians. The weights are Tyler's (robust, heavy tails); the gradients of
    heavy-tailed targets are bounded, so their covariance always exists. Without gradients (or
    where they are not finite) the draws alone are used: the MAD, or the MAD-scaled Tyler shape.
    The centre is the coordinate-wise median in the whitened coordinates of the new scale, of
    the draws, or where the gradients are trusted (dense form) of the Newton points
    ``x + Σ ∇ log ρ(x)``: each is the mean for a Gaussian, and since ``E ∇ log ρ = 0`` they are a
    control-variate estimate of the mean in general. It stays exactly at ``anchor`` unless a
    test finds the offset significant, and is then shrunk toward ``anchor`` (:func:`_shrunk_center`). ``w`` balances stepping-out and shrinkage (:func:`_radius_window`).

    Parameters
    ----------
    x
        ``(C, K, d)`` draws (flat positions) of ``C`` chains; rows ``< num_rows`` are used.
    num_rows
        Number of valid rows per chain (int scalar, may be traced).
    previous
        The parameters in force, returned unchanged if the estimate is not finite or
        degenerate (a coordinate with zero spread).
    structure
        ``"dense"``, ``"low_rank"`` or ``"diagonal"`` (static).
    gradient_fn
        ``flat position -> gradient of the log-density`` or ``None``.
    allow_diagonal
        With ``structure="dense"`` (``"auto"``), return a diagonal matrix when the condition
        number of the draws' Tyler shape is below ``2 λ₊/λ₋`` of the Marchenko-Pastur law for
        ``n`` draws from the identity (no correlation beyond noise).
    anchor
        ``(d,)``: the centre stays there unless the draws clearly move it, and is shrunk toward
        it (the user's centre; default 0).
    radius_counts
        ``(expansions, shrinks)``: radius stepping-out expansions and shrinkage rejections per
        transition, averaged over the window (run with ``previous["w"]``); ``None`` keeps ``w``'s
        ratio to the radii's spread.
    gradients
        ``(C, K, d)``: the gradients at ``x``, already evaluated (in place of ``gradient_fn``;
        a block of a blocked sampler passes the columns of the joint's gradient, which are the
        gradient of its conditional density).

    Returns
    -------
    dict
        ``{"w", "center", "scale"}`` with the same structure as ``previous``.
    """
    num_chains, rows, d = x.shape
    valid = jnp.broadcast_to(jnp.arange(rows) < num_rows, (num_chains, rows)).reshape(-1)
    flat = x.reshape(-1, d)
    prev_scale = jnp.tril(previous["scale"]) if structure == "dense" else previous["scale"]
    center = _whitened_center(flat, valid, previous["center"], prev_scale)
    mad = _mad(flat, valid, center)
    degenerate = jnp.any(~(mad > 0))
    mad = jnp.where(mad > 0, mad, 1.0)
    y = (flat - center) / mad
    n = jnp.maximum(jnp.sum(valid), 1).astype(x.dtype)
    # Diagonal estimate: MAD of the draws, or sqrt(MAD(x) / MAD(gradient)) where gradients are
    # reliable; computed on the whole window and on its two halves (rows), whose disagreement
    # measures the estimate's noise for the shrinkage below.
    index = jnp.broadcast_to(jnp.arange(rows), (num_chains, rows)).reshape(-1)
    halves = (valid & (index < num_rows // 2), valid & (index >= num_rows // 2))
    given_gradients = gradients
    gradients = with_gradient = use_gradients = None
    if given_gradients is not None:
        gradients = jnp.reshape(given_gradients, (-1, d))
    elif gradient_fn is not None:
        gradients = jax.vmap(gradient_fn)(flat)
    has_gradients = gradients is not None
    if has_gradients:
        with_gradient = valid & jnp.all(jnp.isfinite(gradients), axis=1)
        gradients = jnp.where(with_gradient[:, None], gradients, 0.0)
        use_gradients = _gradients_reliable(y, gradients * mad, with_gradient, valid)

    def diagonal_of(rows_used):
        spread = _mad(flat, rows_used, _masked_median(flat, rows_used))
        if not has_gradients:
            return spread
        used = rows_used & with_gradient
        gradient_mad = _mad(gradients, used, _masked_median(gradients, used))
        ok = use_gradients & (gradient_mad > 0) & jnp.isfinite(gradient_mad)
        return jnp.where(ok, jnp.sqrt(spread / jnp.where(ok, gradient_mad, 1.0)), spread)

    points = flat  # what the centre is the median of
    diagonal = _shrink_log_spread(diagonal_of(valid), diagonal_of(halves[0]), diagonal_of(halves[1]))
    diagonal = jnp.where((diagonal > 0) & jnp.isfinite(diagonal), diagonal, mad)
    if structure == "diagonal":
        scale = diagonal
    elif structure == "dense":
        shape, weights = _tyler_shape(y, valid, n)
        covariance = shape
        if has_gradients:
            # Both covariances in y = (x - c) / mad coordinates, with the same Tyler weights.
            weights = jnp.where(with_gradient, weights, 0.0)
            used = jnp.sum(with_gradient).astype(x.dtype)
            rho = jnp.where(used > 2 * d, 0.0, _GRADIENT_SHRINKAGE * _shrinkage(used, d))
            a = _weighted_cov(y, weights)
            b = _weighted_cov(gradients * mad, weights)
            a = (1.0 - rho) * a + rho * jnp.diag(jnp.diag(a))
            b = (1.0 - rho) * b + rho * jnp.diag(jnp.diag(b))
            mean = _geometric_mean_with_inverse(a, b)
            gaussian_like = _newton_points_agree(y, gradients * mad, mean, with_gradient)
            use_gradients = gaussian_like & jnp.all(jnp.isfinite(mean))
            covariance = jnp.where(use_gradients, mean, shape)
            # Newton points: exact means for a Gaussian, a control variate of the mean otherwise.
            newton = center + mad * (y + (gradients * mad) @ mean)
            points = jnp.where(use_gradients & with_gradient[:, None] & jnp.isfinite(newton), newton, flat)
        scale = mad[:, None] * jnp.linalg.cholesky(covariance)
        if allow_diagonal:
            # structure="auto": a dense scale only where the draws show correlation beyond noise.
            eigenvalues = jnp.linalg.eigvalsh(shape)
            correlated = eigenvalues[-1] > _CORRELATION_NOISE_FACTOR * _mp_ratio(n, d) * eigenvalues[0]
            if has_gradients:
                # Without reliable gradients (heavy tails, funnels) a dense scale fitted to the
                # draws alone hurts: a slowly mixing window's draws understate the spread along
                # slow directions, and the next window mixes slower still.
                correlated = correlated & use_gradients
            scale = jnp.where(correlated, scale, jnp.diag(diagonal))
    else:
        scale = _low_rank_scale((flat - center) / mad, valid, mad, rank)
    anchor = jnp.zeros(d, x.dtype) if anchor is None else anchor
    center = _shrunk_center(*(_whitened_center(points, v, center, scale) for v in (valid, *halves)), anchor, scale)
    spread_new = _radius_spread(flat, valid, center, scale)
    spread_old = _radius_spread(flat, valid, previous["center"], prev_scale)
    expansions, shrinks = (0.0, 0.0) if radius_counts is None else radius_counts
    w = _radius_window(previous["w"], expansions, shrinks, spread_new, spread_old)
    new = {"w": w, "center": center, "scale": scale}
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(new)]))
    ok = finite & ~degenerate & (w > 0)
    if structure == "low_rank":
        ok = ok & jnp.all(scale.factors > -1.0)
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, previous)


# ----------------------------------------------------------------------------- structures


def _dense_matrix(scale, d, dtype):
    """``S`` as a ``(d, d)`` matrix."""
    return jax.vmap(lambda e: apply_scale(scale, e), out_axes=1)(jnp.eye(d, dtype=dtype))


def _convert_scale(scale, structure: str, d: int, rank: int, dtype):
    """The user's initial ``scale`` (any form or ``None``) in ``structure``'s form."""
    if structure == "diagonal":
        if scale is None:
            return jnp.ones(d, dtype)
        if not isinstance(scale, LowRankScale) and jnp.ndim(scale) == 1:
            return jnp.asarray(scale, dtype)
        matrix = _dense_matrix(scale, d, dtype)
        return jnp.sqrt(jnp.sum(matrix**2, axis=1))
    if structure == "dense":
        if scale is None:
            return jnp.eye(d, dtype=dtype)
        if not isinstance(scale, LowRankScale) and jnp.ndim(scale) == 2:
            return jnp.tril(jnp.asarray(scale, dtype))
        matrix = _dense_matrix(scale, d, dtype)
        return jnp.linalg.cholesky(matrix @ matrix.T)
    basis = jnp.eye(d, rank, dtype=dtype)
    if isinstance(scale, LowRankScale) and scale.basis.shape[1] == rank:
        return LowRankScale(*(jnp.asarray(v, dtype) for v in scale))
    diagonal = _convert_scale(scale, "diagonal", d, rank, dtype)
    return LowRankScale(diagonal, basis, jnp.zeros(rank, dtype))


# ----------------------------------------------------------------------------- the adaptation


def _warn_nonfinite(carry: PolarSliceAdaptationState) -> None:
    """Warn once, at the end of the warm-up, when log-densities were NaN or ``+inf`` (concrete carry only)."""
    if not is_concrete(carry.num_nonfinite):
        return
    counts = np.asarray(carry.num_nonfinite)
    if not counts.any():
        return
    chains = np.flatnonzero(counts).tolist()
    warnings.warn(
        f"during the warm-up adaptation the log-density returned NaN or +inf in {int(counts.sum())} step(s) "
        f"of {len(chains)} chain(s) {chains if len(chains) <= 20 else chains[:20] + ['...']} "
        f"(of {int(carry.step)} steps); such points count as zero density, so those chains may have "
        "stopped moving and the adapted center, scale and w describe the rest of the support: check "
        "the model for overflow or invalid parameter values.",
        NumericalWarning,
        stacklevel=3,
    )


def polar_slice_adaptation(
    logdensity_fn: Callable,
    *,
    w: float = 1.0,
    center=None,
    scale=None,
    max_proposals: int = 1000,
    structure: str = "auto",
    rank: int = 16,
    max_draws_per_chain: int = 100,
    use_gradients: bool = True,
) -> PolarSliceAdaptation:
    """Windowed, cross-chain, robust adaptation of ``center``, ``scale`` and ``w``.

    Examples
    --------
    .. code::

        warmup = polar_slice_adaptation(logdensity_fn)
        (states, parameters), info = warmup.run(rng_key, positions, 1000)   # positions (C, ...)
        sampler = psample.polar_slice(logdensity_fn, **parameters)

    Parameters
    ----------
    logdensity_fn
        The target, as for :func:`psample.polar_slice`.
    w, center, scale
        Starting parameters (the first window runs with them); defaults ``1``, ``0``, ``I``.
    max_proposals
        As for :func:`psample.polar_slice`.
    structure
        ``"auto"``, ``"dense"``, ``"low_rank"`` or ``"diagonal"`` (see the
        :doc:`family page </families/polar_slice>`).
    rank
        Directions of a low-rank scale (at most ``d``).
    max_draws_per_chain
        Thinned draws per chain kept per window for the estimates.
    use_gradients
        Use the log-density's gradient (``jax.grad``) at the windows' thinned draws for the
        scale (see :func:`estimate_parameters`); ignored when ``logdensity_fn`` cannot be
        differentiated. Sampling itself never uses gradients.

    Returns
    -------
    PolarSliceAdaptation
        ``run(rng_key, positions, num_steps) -> ((states, parameters), info)`` (BlackJAX's
        form) and its step-wise parts. ``parameters = {"w", "center", "scale"}`` are the
        keyword arguments of :func:`psample.polar_slice`.

    Raises
    ------
    InvalidTuningError
        If ``structure`` is unknown or a number is out of range.
    """
    if structure not in STRUCTURES:
        raise InvalidTuningError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    rank = check_positive_int("rank", rank)
    max_draws_per_chain = check_positive_int("max_draws_per_chain", max_draws_per_chain)
    kernel = build_kernel(max_proposals)

    def resolved(d: int) -> str:
        if structure == "auto":
            return "dense" if d <= DENSE_MAX_DIM else "low_rank"
        return structure

    def init(positions, num_steps: int) -> PolarSliceAdaptationState:
        check_positive_int("num_steps", num_steps)
        flat = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(positions)
        num_chains, d = flat.shape
        if d < 2:
            raise ShapeError(f"polar slice sampling needs positions with d >= 2 entries, got d={d}")
        form = resolved(d)
        k = min(rank, d)
        dtype = flat.dtype
        parameters = {
            "w": jnp.asarray(w, dtype),
            "center": jnp.zeros(d, dtype) if center is None else jnp.asarray(center, dtype),
            "scale": _convert_scale(scale, form, d, k, dtype),
        }
        check_preconditioner(parameters["center"], parameters["scale"], d)
        states = jax.vmap(lambda p: init_transformed(p, logdensity_fn, parameters["center"], parameters["scale"]))(
            positions
        )
        rows = min(max_draws_per_chain, num_steps)
        buffer = jnp.zeros((num_chains, rows, d), dtype)
        counts = jnp.zeros(2, dtype)
        nonfinite = jnp.zeros(num_chains, jnp.int32)
        return PolarSliceAdaptationState(states, parameters, buffer, jnp.asarray(0, jnp.int32), counts, nonfinite)

    def step(rng_key: PRNGKey, carry: PolarSliceAdaptationState, num_steps: int):
        states, parameters, buffer, t, counts, nonfinite = carry
        num_chains, rows, d = buffer.shape
        form = resolved(d)
        starts, ends, strides, kept = _schedule_arrays(num_steps, rows)
        keys = jax.random.split(rng_key, num_chains)
        p = parameters
        states, info = jax.vmap(lambda k, s: kernel(k, s, logdensity_fn, p["w"], p["center"], p["scale"]))(
            keys, states
        )

        buffer, window, start, end = record_window_draw(buffer, states.position, t, (starts, ends, strides))
        window_end = t + 1 == end
        counts = counts + jnp.stack([jnp.sum(info.num_radius_expansions), jnp.sum(info.num_radius_shrinks)]).astype(
            counts.dtype
        )
        anchor = jnp.zeros(d, buffer.dtype) if center is None else jnp.asarray(center, buffer.dtype)

        gradient_fn = _gradient_fn(states.position)

        def re_estimate(args):
            states, parameters = args
            new = estimate_parameters(
                buffer, jnp.asarray(kept)[window], parameters, form, gradient_fn=gradient_fn, rank=min(rank, d),
                allow_diagonal=structure == "auto", anchor=anchor,
                radius_counts=tuple(counts / ((end - start) * num_chains)),
            )
            states = jax.vmap(lambda s: reparametrize(s, new["center"], new["scale"]))(states)
            return states, new

        states, parameters = jax.lax.cond(window_end, re_estimate, lambda a: a, (states, parameters))
        counts = jnp.where(window_end, 0.0, counts)
        nonfinite = nonfinite + (info.num_nonfinite > 0)
        new_carry = PolarSliceAdaptationState(states, parameters, buffer, t + 1, counts, nonfinite)
        return new_carry, PolarSliceAdaptationInfo(info, window_end, parameters["w"])

    def final(carry: PolarSliceAdaptationState):
        _warn_nonfinite(carry)
        states, parameters = carry.states, carry.parameters
        scale = parameters["scale"]
        if structure != "auto" or isinstance(scale, LowRankScale) or not is_concrete(parameters):
            return states, parameters
        matrix = np.asarray(scale)
        if np.any(np.tril(matrix, -1) != 0):
            return states, parameters
        # The last window chose a diagonal scale: the vector form costs O(d) a transition, not O(d²).
        parameters = dict(parameters, scale=jnp.asarray(np.diag(matrix).copy()))
        states = jax.vmap(lambda s: reparametrize(s, parameters["center"], parameters["scale"]))(states)
        return states, parameters

    def _gradient_fn(batched_position):
        """``flat -> ∇ log ρ`` for positions shaped like one chain's, or ``None`` (not differentiable)."""
        if not use_gradients:
            return None
        one = jax.tree.map(lambda a: a[0], batched_position)
        flat0, unravel = jax.flatten_util.ravel_pytree(one)
        gradient = jax.grad(lambda f: jnp.asarray(logdensity_fn(unravel(f)), flat0.dtype))
        try:
            jax.eval_shape(gradient, flat0)
        except Exception:  # not differentiable (integer ops, callbacks, custom loops): draws only
            return None
        return gradient

    return PolarSliceAdaptation(stepwise_run(init, step, final), init, step, final)


def stepwise_run(init: Callable, step: Callable, final: Callable) -> Callable:
    """BlackJAX's ``run`` of a step-wise adaptation: ``init``, a jitted scan of ``step``, ``final``.

    Step ``t`` gets the key ``fold_in(rng_key, t)``, the key the runner's chunked warm-up gives
    it (:class:`psample.base.StepwiseAdaptation`), so both give the same result.

    Returns
    -------
    callable
        ``run(rng_key, positions, num_steps) -> ((states, parameters), info)``, ``info`` with a
        leading ``(num_steps,)`` axis.
    """

    def scan(rng_key, carry, num_steps):
        def one(c, t):
            return step(jax.random.fold_in(rng_key, t), c, num_steps)

        return jax.lax.scan(one, carry, jnp.arange(num_steps))

    run_steps = jax.jit(scan, static_argnums=2)

    def run(rng_key: PRNGKey, positions, num_steps: int):
        carry, info = run_steps(rng_key, init(positions, num_steps), num_steps)
        return final(carry), info

    return run
