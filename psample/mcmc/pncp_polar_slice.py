"""Polar slice sampling in partially non-centred coordinates fitted during warm-up (hierarchical models).

Method. A hierarchical model's Gaussian latents ``h | v ~ N(m(v), diag s(v)²)`` and their
hyperparameters ``v`` form a funnel in the centred coordinates and a ridge in the non-centred ones.
:func:`psample.fit_partial_noncentering` fits coordinates ``x = (v, e)``, ``h = μ(v) + L(v)⁻ᵀ e``,
in which they are close to independent (the partially non-centred parameterisation of
Papaspiliopoulos, Roberts and Sköld [1]). This sampler runs :func:`psample.interweaved_polar_slice`
in those coordinates and keeps its chains' positions in the model's own (centred) coordinates:

- ``hyper_move="polar"``: each sweep is the joint polar slice move of ``x`` and a polar slice move
  of the hyperparameters given ``e``;
- ``hyper_move="coordinatewise"``: the joint move, then each hyperparameter in turn by univariate
  slice sampling given the centred latents ``h``, on ``latents.hyper_conditional_fn`` (the model's
  prior alone where the likelihood does not see the hyperparameters given ``h``, as in a sparse
  regression's local scales: such a move costs next to nothing).

Warm-up (the adaptation's ``run``): the first ``noncentered_fraction`` of the steps adapt the
joint move in the non-centred coordinates (the fit with ``H = 0``); then the map is fitted at the
centre that adaptation found, the chains move to the new coordinates and adapt again; with
``num_fits = 2`` the map is fitted a second time, at the centre adapted in the first fit's
coordinates, half-way through the rest. After warm-up the map and the preconditioner are fixed.
See the :doc:`family page </families/polar_slice>` for measurements.

Contract. :func:`partially_noncentered_polar_slice` returns a :class:`psample.base.ChainAlgorithm`
whose states are :class:`PartiallyNoncenteredState` (``position`` the draw in the user's pytree
layout, ``logdensity`` the user's log-density there; ``inner`` the interweaved state on the flat
``x``) and whose ``adaptation`` has a ``run`` only (not step-wise: a checkpointed run stopped
during its warm-up cannot continue it). Its parameters are the interweaved sampler's (``w``,
``center``, ``scale``, ``hyper_preconditioning``) plus the fit ``curvature`` (``(k,)`` for a
diagonal ``H``, else ``(k, k)``) and ``linear`` ``(k,)``. **Exactness**: for a fixed map and
fixed parameters each sweep leaves the density on ``x`` (Jacobian included) invariant, so the
positions ``y = to_centered(x)`` have the user's law; the warm-up only chooses the map.

Limits. The latents must be ``Normal`` sites whose prior location and scale depend on the other
sites only (:func:`psample.latent_gaussian` reads them from a NumPyro model and checks this);
positions are flat-ravelled in that function's layout. A non-diagonal ``H`` (latents that share
data, e.g. regression weights) factorises a ``k x k`` matrix at every evaluation. Without the
adaptation (``adapt=False`` or ``num_warmup=0``) the sampler runs in the non-centred coordinates.

References
----------
.. [1] Omiros Papaspiliopoulos, Gareth O. Roberts and Martin Sköld, "A general framework for the
   parametrization of hierarchical models", Statistical Science 22(1), 59-73, 2007.
.. [2] Yaming Yu and Xiao-Li Meng, "To center or not to center: that is not the question",
   Journal of Computational and Graphical Statistics 20(3), 531-570, 2011.
.. [3] Philip Schär, Michael Habeck and Daniel Rudolf, "Gibbsian polar slice sampling",
   ICML 2023. arXiv:2302.03945.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
from blackjax.types import Array, ArrayTree, PRNGKey

from psample.base import ChainAlgorithm
from psample.errors import InvalidTuningError, check_positive, check_positive_int
from psample.mcmc.interweaved_polar_slice import as_top_level_api as interweaved_polar_slice
from psample.mcmc.partial_noncentering import fit_partial_noncentering, partial_noncentering_map

__all__ = ["PartiallyNoncenteredState", "partially_noncentered_polar_slice"]

#: the per-stage adaptation parameters that are not the interweaved sampler's
_MAP_KEYS = ("curvature", "linear")


class PartiallyNoncenteredState(NamedTuple):
    """State of polar slice sampling in partially non-centred coordinates.

    position
        The draw ``y`` in the user's (centred) pytree layout.
    logdensity
        The user's log-density at ``y``, scalar.
    inner
        The interweaved sampler's state on the flat partially non-centred ``x`` ``(d,)``.
    """

    position: ArrayTree
    logdensity: Array
    inner: Any


class _RunOnlyAdaptation(NamedTuple):
    """An adaptation with a ``run`` only (:class:`psample.base.Adaptation`)."""

    run: Callable


def partially_noncentered_polar_slice(
    logdensity_fn: Callable,
    latents,
    *,
    hyper_move: str = "polar",
    w: float = 10.0,
    hyper_w: float | None = None,
    noncentered_fraction: float = 0.4,
    num_fits: int | None = None,
    curvature=None,
    linear=None,
    parameters: dict | None = None,
    max_proposals: int = 1000,
    newton_steps: int = 20,
) -> ChainAlgorithm:
    """Polar slice sampling of a hierarchical model in partially non-centred coordinates.

    Examples
    --------
    .. code::

        target = psample.from_numpyro(model, **data)                  # the centred model
        latents = psample.latent_gaussian(model, ["county_effect"], **data)
        sampler = psample.partially_noncentered_polar_slice(target.logdensity_fn, latents)
        trace = psample.sample(sampler, target.init_fn(key, 8), key, 1000, num_warmup=500,
                               target=target)

    Parameters
    ----------
    logdensity_fn
        ``y -> scalar``: the centred log-density on the user's positions (for a NumPyro model,
        :func:`psample.from_numpyro`'s ``logdensity_fn`` on the unconstrained sites).
    latents
        A :class:`psample.LatentGaussian` (:func:`psample.latent_gaussian`): the latents' and
        hyperparameters' flat indices in ``ravel_pytree(y)``, ``loc_scale`` and
        ``hyper_conditional_fn``.
    hyper_move
        ``"polar"`` (a polar slice move of the hyperparameters given the non-centred latents) or
        ``"coordinatewise"`` (each hyperparameter by univariate slice given the centred latents,
        on ``latents.hyper_conditional_fn``).
    w
        Radius window of the joint move (> 0), in preconditioned units.
    hyper_w
        Window of the hyperparameter moves (> 0), in units of their marginal spread; default 1
        for ``"polar"``, 2 for ``"coordinatewise"``.
    noncentered_fraction
        Share of the warm-up steps run in the non-centred coordinates before the first fit, in
        ``(0, 1)``.
    num_fits
        Times the map is fitted during warm-up (1 or 2); default 1 for ``"polar"``, 2 for
        ``"coordinatewise"``.
    curvature, linear
        A fixed fit (``H`` as ``(k,)`` diagonal or ``(k, k)``, ``b`` ``(k,)``); default ``H = 0,
        b = 0``, the non-centred coordinates, until the warm-up fits them.
    parameters
        The interweaved sampler's fixed parameters (``w``, ``center``, ``scale``,
        ``hyper_preconditioning``), as the adaptation returns them; default none (unpreconditioned).
    max_proposals
        As :func:`psample.polar_slice`, for every move.
    newton_steps
        Newton steps of each fit (:func:`psample.fit_partial_noncentering`).

    Returns
    -------
    psample.base.ChainAlgorithm
        ``init(position) -> PartiallyNoncenteredState``, ``step``, ``adaptation`` (``run`` only) and
        ``with_parameters``.

    Raises
    ------
    InvalidTuningError
        If a tuning value is out of range, or ``hyper_move="coordinatewise"`` is asked of
        ``latents`` without ``hyper_conditional_fn``.
    """
    if hyper_move not in ("polar", "coordinatewise"):
        raise InvalidTuningError(f"hyper_move must be 'polar' or 'coordinatewise', got {hyper_move!r}")
    coordinatewise = hyper_move == "coordinatewise"
    hyper_w = (2.0 if coordinatewise else 1.0) if hyper_w is None else hyper_w
    num_fits = (2 if coordinatewise else 1) if num_fits is None else num_fits
    if not isinstance(w, jax.core.Tracer):
        check_positive("w", w)
    if not isinstance(hyper_w, jax.core.Tracer):
        check_positive("hyper_w", hyper_w)
    if num_fits not in (1, 2):
        raise InvalidTuningError(f"num_fits must be 1 or 2, got {num_fits!r}")
    if not 0.0 < noncentered_fraction < 1.0:
        raise InvalidTuningError(f"noncentered_fraction must lie in (0, 1), got {noncentered_fraction!r}")
    check_positive_int("newton_steps", newton_steps)
    if coordinatewise and getattr(latents, "hyper_conditional_fn", None) is None:
        raise InvalidTuningError("hyper_move='coordinatewise' needs latents.hyper_conditional_fn "
                                 "(psample.latent_gaussian provides it)")
    hyper_idx = jnp.asarray(latents.hyper_indices)
    latent_idx = jnp.asarray(latents.latent_indices)
    hyper_list = [int(i) for i in latents.hyper_indices]
    latent_list = [int(i) for i in latents.latent_indices]

    def flat_logdensity(unravel):
        return lambda y: logdensity_fn(unravel(y))

    def coordinates(unravel, H, b):
        """The map for a fit ``(H, b)`` (``None``: the non-centred map ``H = 0, b = 0``)."""
        return partial_noncentering_map(flat_logdensity(unravel), H, b, hyper_idx, latent_idx, latents.loc_scale)

    def inner_algorithm(pncp, move_coordinatewise):
        if move_coordinatewise:
            return interweaved_polar_slice(pncp.logdensity_fn, latents.hyper_conditional_fn, pncp.to_centered,
                                           pncp.to_partial, hyper_list, w=w, hyper_w=hyper_w,
                                           centered_move="coordinatewise", ancillary_move=False,
                                           max_proposals=max_proposals)  # fmt: skip
        return interweaved_polar_slice(pncp.logdensity_fn, None, None, None, hyper_list, w=w, hyper_w=hyper_w,
                                       max_proposals=max_proposals)

    def tuned(pncp, move_coordinatewise, inner_parameters):
        algorithm = inner_algorithm(pncp, move_coordinatewise)
        return algorithm if inner_parameters is None else algorithm.with_parameters(inner_parameters)

    def wrap(inner, pncp, unravel) -> PartiallyNoncenteredState:
        y = pncp.to_centered(inner.position)
        return PartiallyNoncenteredState(unravel(y), inner.logdensity - pncp.log_det_jacobian_fn(inner.position), inner)

    # a fixed fit runs the configured sweep; the non-centred start (no fit yet) the polar one
    fitted = curvature is not None

    def init(position) -> PartiallyNoncenteredState:
        y, unravel = jax.flatten_util.ravel_pytree(position)
        pncp = coordinates(unravel, curvature, linear)
        algorithm = tuned(pncp, coordinatewise and fitted, parameters)
        return wrap(algorithm.init(pncp.to_partial(y)), pncp, unravel)

    def step(rng_key: PRNGKey, state: PartiallyNoncenteredState):
        unravel = jax.flatten_util.ravel_pytree(state.position)[1]
        pncp = coordinates(unravel, curvature, linear)
        algorithm = tuned(pncp, coordinatewise and fitted, parameters)
        inner, info = algorithm.step(rng_key, state.inner)
        return wrap(inner, pncp, unravel), info

    def run(rng_key: PRNGKey, positions, num_steps: int):
        num_steps = int(num_steps)
        first = int(noncentered_fraction * num_steps)
        rest = [(num_steps - first) // num_fits] * num_fits
        rest[-1] += num_steps - first - sum(rest)
        if min([first, *rest]) < 10:
            raise InvalidTuningError(
                f"partially_noncentered_polar_slice's warm-up needs at least 10 steps in each of its "
                f"{num_fits + 1} stages, got num_warmup={num_steps} (noncentered_fraction={noncentered_fraction})"
            )
        example = jax.tree.map(lambda a: a[0], positions)
        unravel = jax.flatten_util.ravel_pytree(example)[1]
        ys = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(positions)
        H = b = None
        keys = list(jax.random.split(rng_key))
        if num_fits == 2:
            keys[1:] = jax.random.split(keys[1])
        infos = []
        for stage, steps in enumerate([first, *rest]):
            pncp = coordinates(unravel, H, b)
            algorithm = inner_algorithm(pncp, coordinatewise and stage > 0)
            (states, inner_parameters), info = algorithm.adaptation.run(keys[stage], jax.vmap(pncp.to_partial)(ys),
                                                                         steps)
            infos.append(info)
            ys = jax.vmap(pncp.to_centered)(states.position)
            if stage < num_fits:  # fit at the adapted centre, in centred coordinates
                fit = fit_partial_noncentering(flat_logdensity(unravel), pncp.to_centered(inner_parameters["center"]),
                                               hyper_list, latent_list, latents.loc_scale,
                                               newton_steps=newton_steps)  # fmt: skip
                diagonal = bool(jnp.all(fit.curvature == jnp.diag(jnp.diag(fit.curvature))))
                H = jnp.diag(fit.curvature) if diagonal else fit.curvature
                b = fit.linear
        states = jax.vmap(lambda s: wrap(s, pncp, unravel))(states)
        return (states, {**inner_parameters, "curvature": H, "linear": b}), infos

    def with_parameters(new) -> ChainAlgorithm:
        inner_parameters = {key: value for key, value in new.items() if key not in _MAP_KEYS}
        return partially_noncentered_polar_slice(
            logdensity_fn, latents, hyper_move=hyper_move, w=inner_parameters.get("w", w), hyper_w=hyper_w,
            noncentered_fraction=noncentered_fraction, num_fits=num_fits, curvature=new["curvature"],
            linear=new["linear"], parameters=inner_parameters, max_proposals=max_proposals, newton_steps=newton_steps,
        )  # fmt: skip

    return ChainAlgorithm(init, step, _RunOnlyAdaptation(run), with_parameters)
