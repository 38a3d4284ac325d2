"""Gibbsian polar slice sampling (GPSS), with an affine preconditioner adapted during warm-up.

Polar slice sampling (Roberts and Rosenthal [2]) draws, in polar coordinates
:math:`x = r\\theta`, uniformly on the slice :math:`\\{(r, \\theta) : L(r, \\theta) > \\ell\\}` of
:math:`L(r, \\theta) = (d-1)\\log r + \\log\\varrho(r\\theta)`. The Gibbsian polar slice sampler of
Schär, Habeck and Rudolf [1] replaces that joint draw by two Gibbs updates at one level
:math:`\\ell`: the direction :math:`\\theta \\mid r` by geodesic shrinkage on a random great circle
of the unit sphere, and the radius :math:`r \\mid \\theta` by stepping-out and shrinkage (Neal
[3]) on the ray, with initial window ``w``. It needs no gradients, mixes in the radius almost
independently of the dimension for rotationally (near-)invariant targets, and copes with heavy
tails and funnels where random-walk, hit-and-run and elliptical slice samplers get stuck.

See the :doc:`family page </families/polar_slice>` for the method, tuning and measured limits.

Contract
--------
:func:`as_top_level_api` (``psample.polar_slice``) returns a
:class:`psample.base.ChainAlgorithm`: ``init(position) -> PolarSliceState`` and
``step(rng_key, state) -> (PolarSliceState, PolarSliceInfo)``, pure and jittable, with a
warm-up ``adaptation`` and ``with_parameters``. The transition itself (state, ``init``,
``build_kernel`` and the direction-only and radius-only kernels) is implemented in
:mod:`psample.mcmc.polar_slice_kernel` and re-exported here, as are the preconditioner's
:class:`LowRankScale`, :func:`reparametrize` and :func:`check_preconditioner`
(:mod:`psample.mcmc.preconditioning`).

**Affine preconditioning.** The sampler is centred at the origin and isotropic. With a
``center`` ``c`` and a ``scale`` ``S`` (a vector, a lower-triangular matrix or a
:class:`LowRankScale`) it runs on ``z`` with ``x = c + S z``, exact for any fixed ``(c, S)``.
Positions and draws stay in ``x``; the state's ``radius`` and ``direction`` are those of ``z``.
:mod:`psample.mcmc.polar_slice_adaptation` estimates ``(c, S, w)`` during warm-up.

Known limits
------------
- ``d >= 2`` (polar coordinates); positions are real float32 or float64 arrays.
- Without preconditioning the sampler pays heavily where the target sits far from the origin
  or is strongly correlated: adapt during warm-up (``num_warmup`` in :func:`psample.sample`).
- A NaN or ``+inf`` log-density counts as outside the slice (and in ``num_nonfinite``); a
  chain whose density is non-finite everywhere nearby stops moving.
- Each shrinkage loop is capped at ``max_proposals`` evaluations: a transition that hits the
  cap (``hit_max_proposals``) keeps the old value of that coordinate and is not exactly
  invariant.

References
----------
.. [1] Philip Schär, Michael Habeck and Daniel Rudolf, "Gibbsian polar slice
   sampling", Proceedings of the 40th International Conference on Machine
   Learning (ICML), PMLR 202:30204-30223, 2023. arXiv:2302.03945.
.. [2] Gareth O. Roberts and Jeffrey S. Rosenthal, "The polar slice sampler",
   Stochastic Models 18(2), 257-280, 2002.
.. [3] Radford M. Neal, "Slice sampling", The Annals of Statistics 31(3),
   705-767, 2003.
"""

from __future__ import annotations

from typing import Callable

import jax
from blackjax.base import build_sampling_algorithm

from psample.base import ChainAlgorithm
from psample.errors import check_positive
from psample.mcmc.polar_slice_adaptation import polar_slice_adaptation
from psample.mcmc.polar_slice_kernel import (
    PolarSliceInfo,
    PolarSliceState,
    build_direction_kernel,
    build_kernel,
    build_radius_kernel,
    init,
    init_transformed,
)
from psample.mcmc.preconditioning import LowRankScale, check_preconditioner, reparametrize

__all__ = [
    "PolarSliceState",
    "PolarSliceInfo",
    "LowRankScale",
    "init",
    "init_transformed",
    "reparametrize",
    "check_preconditioner",
    "build_kernel",
    "build_direction_kernel",
    "build_radius_kernel",
    "as_top_level_api",
]


def _check_w(w):
    """Validate ``w`` when it is a concrete number; traced values pass through."""
    if isinstance(w, jax.core.Tracer):
        return w
    return check_positive("w", w)


def as_top_level_api(
    logdensity_fn: Callable,
    *,
    w: float = 1.0,
    center=None,
    scale=None,
    max_proposals: int = 1000,
    structure: str = "auto",
) -> ChainAlgorithm:
    """Gibbsian polar slice sampler (Schär, Habeck and Rudolf, 2023), optionally preconditioned.

    Examples
    --------
    .. code::

        gpss = psample.polar_slice(logdensity_fn, w=5.0)
        state = gpss.init(position)
        new_state, info = gpss.step(rng_key, state)

        # or let psample.sample adapt center, scale and w during warm-up:
        trace = psample.sample(gpss, positions, rng_key, 1000, num_warmup=1000)

    Chains are run by ``jax.vmap`` over ``init`` and ``step`` (``psample.sample``
    does this).

    Parameters
    ----------
    logdensity_fn
        ``position -> scalar`` unnormalised log-density; ``position`` is any pytree
        with ``d >= 2`` floating entries in total. Returning ``-inf`` marks points outside
        the support; NaN and ``+inf`` are treated the same way but counted
        (``PolarSliceInfo.num_nonfinite``), and the runner warns about them.
    w
        Initial width of the radius bracket (> 0), in the units of ``z`` (of ``x`` without
        ``scale``). The paper uses values of the order of the typical radius scale (e.g.
        ``w = d`` for a ``d``-dimensional Cauchy); too small costs stepping-out evaluations,
        too large costs shrinkage evaluations, both only logarithmically.
    center
        ``(d,)`` array (the flattened position's layout), the origin of the sampler's polar
        coordinates; default 0.
    scale
        The preconditioner ``S`` of ``x = center + S z``: a vector ``(d,)`` (diagonal), a
        lower-triangular matrix ``(d, d)`` or a :class:`LowRankScale`; default the identity.
        Every transition is exact for any fixed ``center`` and ``scale``.
    max_proposals
        Integer >= 1: the stepping-out limit of the radius bracket (split at random
        between its ends, which keeps the update exact) and the cap on the evaluations
        of each shrinkage loop (see ``hit_max_proposals``).
    structure
        Form of the scale the warm-up adaptation estimates: ``"auto"`` (dense for
        ``d <= 512`` and low-rank above, each replaced by a diagonal scale when the data show
        no correlation worth the cost), ``"dense"``, ``"low_rank"`` or ``"diagonal"``.

    Returns
    -------
    psample.base.ChainAlgorithm
        ``init(position) -> PolarSliceState``,
        ``step(rng_key, state) -> (PolarSliceState, PolarSliceInfo)``,
        ``adaptation`` (a windowed, cross-chain, robust estimate of ``center``, ``scale`` and
        ``w``: :func:`psample.mcmc.polar_slice_adaptation.polar_slice_adaptation`) and
        ``with_parameters({"w", "center", "scale"})``.

    Raises
    ------
    InvalidTuningError
        If ``w`` is not a finite number > 0, ``max_proposals`` is not an integer >= 1, or a
        concrete ``scale`` is not of one of the three forms.
    """
    w = _check_w(w)
    kernel = build_kernel(max_proposals)
    algorithm = build_sampling_algorithm(
        kernel, init_transformed, logdensity_fn, init_args=(center, scale), kernel_args=(w, center, scale)
    )
    adaptation = polar_slice_adaptation(
        logdensity_fn, w=w, center=center, scale=scale, max_proposals=max_proposals, structure=structure
    )

    def with_parameters(parameters) -> ChainAlgorithm:
        return as_top_level_api(
            logdensity_fn,
            w=parameters["w"],
            center=parameters["center"],
            scale=parameters["scale"],
            max_proposals=max_proposals,
            structure=structure,
        )

    return ChainAlgorithm(algorithm.init, algorithm.step, adaptation, with_parameters)
