"""Interweaved polar slice sampling: polar slice moves and an ASIS interweaving of the hyperparameters.

Method. A hierarchical model can be written in two parameterisations of the same posterior:
the *ancillary* (non-centred) one, position ``x = (z, u)`` with latents ``z`` whose prior does not
depend on the hyperparameters ``u`` (e.g. the innovations of an AR(1) series), and the
*sufficient* (centred) one, ``y = (h, v)`` with the latents ``h = f(z, u)`` that the data see
(the series itself). Centred samplers are slow where the data are weak, non-centred ones where
they are strong; the hyperparameters of a stochastic volatility model are strongly tied to the
whole latent series in both. The ancillarity-sufficiency interweaving strategy of Yu and Meng
[1] (for stochastic volatility: Kastner and Frühwirth-Schnatter [2]) updates the hyperparameters
twice per sweep, once given the ancillary latents and once given the sufficient ones; the two
updates together move them much further than either alone. One transition here is

1. a Gibbsian polar slice transition (Schär, Habeck and Rudolf [3];
   :mod:`psample.mcmc.polar_slice`) of the whole ancillary position ``x`` with the adapted
   ``(w, center, scale)``;
2. a polar slice transition of the hyperparameters ``u`` given ``z`` on the ancillary
   log-density (``z`` fixed), centred and scaled by the hyperparameters' block of the adapted
   preconditioner;
3. the map ``y = to_centered(x)``, a polar slice transition of the hyperparameters ``v`` given
   ``h`` on the sufficient log-density (``h`` fixed), preconditioned by the same block carried
   through the map's Jacobian at the centre, and the map back ``x = to_noncentered(y)``. With
   ``centered_move="coordinatewise"`` this move is instead one univariate slice update of each
   hyperparameter in turn (Neal [5]; :mod:`psample.mcmc.coordinatewise_slice`), which follows
   conditionals whose spreads differ and change with ``h``, such as the local scales of a
   shrinkage prior given the weights. Given ``h`` the likelihood is a constant, so the model's
   prior alone (``logprior_fn`` of :func:`psample.from_numpyro`'s target, no likelihood evaluation) may stand in for
   the sufficient log-density: the move then costs next to nothing.

``ancillary_move=False`` leaves step 2 out (the joint move still moves the hyperparameters), for a partially non-centred ``x`` (:func:`psample.fit_partial_noncentering`) whose
hyperparameter block is nearly independent of its latents.

Each step is an exact update of a conditional law of the same posterior (a polar slice
transition with a fixed preconditioner leaves its conditional invariant, and the maps are
bijections between the two coordinate systems of one distribution), so the sweep leaves the
posterior invariant (Yu and Meng [1], Theorem 1; Tierney [4], cycles of invariant kernels).

Contract. :func:`as_top_level_api` (``psample.interweaved_polar_slice``) returns a
:class:`psample.base.ChainAlgorithm`: ``init(position) -> PolarSliceState`` (the joint polar
slice state of the ancillary position) and
``step(rng_key, state) -> (PolarSliceState, InterweavedPolarSliceInfo)``, pure, jittable and
vmappable; ``adaptation`` is polar slice's own warm-up on the ancillary log-density
(:func:`psample.mcmc.polar_slice_adaptation.polar_slice_adaptation`), after which the
hyperparameters' preconditioners are derived from the adapted one; ``with_parameters`` takes the
result. Positions, draws and the trace are in the ancillary parameterisation.

Limits.

- The user supplies both log-densities (on unconstrained coordinates), the two maps and the flat
  indices of the hyperparameters in each (at least two, for polar coordinates); the maps must be
  exact inverses (checked at one concrete position in ``init``). :func:`psample.noncentered`
  gives the ancillary form of a NumPyro model; the map is model-specific (for an AR(1) latent
  series: ``h = mean + L(persistence, scale) z``, :func:`psample.models.hierarchical.ar1_scale_tril`).
- A transition costs the joint move's evaluations plus two small moves, each a full evaluation
  of one of the log-densities (no conditional structure is exploited beyond a prior-only
  centred log-density the user may pass), plus one evaluation to re-initialise the joint state.
- The warm-up adapts the joint move alone (polar slice's own warm-up); the hyperparameter
  moves join once it ends. Without a sufficient parameterisation
  (``centered_logdensity_fn=None``) the second small move is skipped.
- The hyperparameters' preconditioners are fixed after warm-up and come from the *marginal*
  spread of the hyperparameters, wider than their conditionals: ``hyper_w`` (default 1) sets
  the radius window of both small moves in those units.

References
----------
.. [1] Yaming Yu and Xiao-Li Meng, "To center or not to center: that is not the question — an
   ancillarity-sufficiency interweaving strategy (ASIS) for boosting MCMC efficiency", Journal of
   Computational and Graphical Statistics 20(3), 531-570, 2011.
.. [2] Gregor Kastner and Sylvia Frühwirth-Schnatter, "Ancillarity-sufficiency interweaving
   strategy (ASIS) for boosting MCMC estimation of stochastic volatility models", Computational
   Statistics & Data Analysis 76, 408-423, 2014.
.. [3] Philip Schär, Michael Habeck and Daniel Rudolf, "Gibbsian polar slice sampling", ICML 2023,
   PMLR 202:30204-30223. arXiv:2302.03945.
.. [4] Luke Tierney, "Markov chains for exploring posterior distributions", The Annals of
   Statistics 22(4), 1701-1728, 1994.
.. [5] Radford M. Neal, "Slice sampling", The Annals of Statistics 31(3), 705-767, 2003.
"""

from __future__ import annotations

import functools
import operator
from typing import Callable, NamedTuple, Sequence

import jax
import jax.flatten_util
import jax.numpy as jnp
from blackjax.types import Array

from psample.base import ChainAlgorithm
from psample.errors import InitialPointError, InvalidTuningError, ShapeError, check_flat_indices, check_positive
from psample.mcmc.coordinatewise_slice import coordinatewise_slice
from psample.mcmc.polar_slice import as_top_level_api as polar_slice
from psample.mcmc.polar_slice_adaptation import stepwise_run
from psample.mcmc.preconditioning import LowRankScale, is_concrete

__all__ = ["InterweavedPolarSliceInfo", "hyper_preconditioners", "as_top_level_api"]


class InterweavedPolarSliceInfo(NamedTuple):
    """Diagnostics of one interweaved sweep.

    num_evals
        Log-density evaluations of the sweep (joint move, both hyperparameter moves, their
        initialisations and the re-initialisation of the joint state), scalar.
    num_joint_evals, num_ancillary_evals, num_sufficient_evals
        The evaluations of the joint move and of the two hyperparameter moves, scalars.
    hit_max_proposals
        ``True`` if a shrinkage loop of any of the three moves reached ``max_proposals``.
    num_nonfinite
        Evaluations at which a log-density was NaN or ``+inf``, scalar.
    """

    num_evals: Array
    num_joint_evals: Array
    num_ancillary_evals: Array
    num_sufficient_evals: Array
    hit_max_proposals: Array
    num_nonfinite: Array


def _rows(scale, idx, d):
    """``S[idx, :]``, shape ``(k, d)``, for every form of the scale (``None`` is the identity)."""
    if scale is None:
        return jnp.eye(d)[idx]
    if isinstance(scale, LowRankScale):
        D, U, a = scale.diagonal, scale.basis, scale.factors
        return D[idx, None] * (jnp.eye(d)[idx] + (U[idx] * a) @ U.T)
    scale = jnp.asarray(scale)
    if scale.ndim == 1:
        return jnp.eye(d)[idx] * scale[idx, None]
    return scale[idx]


def hyper_preconditioners(parameters, example_position, to_centered, hyper_indices, centered_hyper_indices):
    """The hyperparameters' ``(center, scale)`` in both parameterisations, from the joint's.

    ``parameters`` holds the joint polar slice's adapted ``center`` ``(d,)`` and ``scale`` (any
    form). The ancillary block: ``center[hyper_indices]`` and the Cholesky factor ``(k, k)`` of
    the hyperparameters' block of ``S Sᵀ``. The sufficient block: the centre mapped by
    ``to_centered`` and that covariance carried through the Jacobian block
    ``∂ y[centered_hyper_indices] / ∂ x[hyper_indices]`` at the centre.

    Returns
    -------
    dict
        ``hyper_center`` ``(k,)``, ``hyper_scale`` ``(k, k)``, ``centered_hyper_center`` ``(k',)``,
        ``centered_hyper_scale`` ``(k', k')`` (the last two only if ``to_centered`` is not ``None``).
    """
    flat, unravel = jax.flatten_util.ravel_pytree(example_position)
    d = flat.shape[0]
    center = jnp.zeros(d, flat.dtype) if parameters.get("center") is None else jnp.asarray(parameters["center"])
    rows = _rows(parameters.get("scale"), jnp.asarray(hyper_indices), d)
    cov = rows @ rows.T
    jitter = 1e-12 * jnp.trace(cov)
    ancillary = {
        "hyper_center": center[jnp.asarray(hyper_indices)],
        "hyper_scale": jnp.linalg.cholesky(cov + jitter * jnp.eye(cov.shape[0])),
    }
    if to_centered is None:
        return ancillary

    def centered_flat(x):
        return jax.flatten_util.ravel_pytree(to_centered(unravel(x)))[0]

    jac = jax.jacfwd(centered_flat)(center)[jnp.asarray(centered_hyper_indices)][:, jnp.asarray(hyper_indices)]
    cov_c = jac @ cov @ jac.T
    eye_c = jnp.eye(cov_c.shape[0])
    return {
        **ancillary,
        "centered_hyper_center": centered_flat(center)[jnp.asarray(centered_hyper_indices)],
        "centered_hyper_scale": jnp.linalg.cholesky(cov_c + 1e-12 * jnp.trace(cov_c) * eye_c),
    }


def _check_maps(position, to_centered, to_noncentered):
    """The maps must be inverse bijections: checked at one concrete position."""
    if not is_concrete(position):
        return
    flat, _ = jax.flatten_util.ravel_pytree(position)
    back, _ = jax.flatten_util.ravel_pytree(to_noncentered(to_centered(position)))
    if back.shape != flat.shape:
        raise ShapeError(f"to_noncentered(to_centered(x)) has {back.shape[0]} coordinates, x has {flat.shape[0]}")
    tol = 1e-4 if flat.dtype == jnp.float32 else 1e-8
    err = float(jnp.max(jnp.abs(back - flat) / (1.0 + jnp.abs(flat))))
    if not err <= tol:
        raise InitialPointError(
            f"to_noncentered(to_centered(x)) differs from x by {err:.3g} (relative) at the initial position: "
            "the two maps must be inverse bijections between the parameterisations"
        )


def as_top_level_api(
    logdensity_fn: Callable,
    centered_logdensity_fn: Callable | None,
    to_centered: Callable | None,
    to_noncentered: Callable | None,
    hyper_indices: Sequence[int],
    centered_hyper_indices: Sequence[int] | None = None,
    *,
    w: float = 1.0,
    hyper_w: float = 1.0,
    center=None,
    scale=None,
    hyper_preconditioning: dict | None = None,
    max_proposals: int = 1000,
    structure: str = "auto",
    centered_move: str = "polar",
    ancillary_move: bool = True,
) -> ChainAlgorithm:
    """Polar slice sampler with an ASIS interweaving of the hyperparameters (Yu and Meng, 2011).

    Examples
    --------
    .. code::

        sampler = psample.interweaved_polar_slice(
            logdensity_nc, logdensity_c, to_centered, to_noncentered, hyper_indices=[100, 101, 102]
        )
        trace = psample.sample(sampler, positions_nc, rng_key, 1000, num_warmup=500)

    Parameters
    ----------
    logdensity_fn
        ``x -> scalar``: the ancillary (non-centred) log-density; ``x`` any pytree of ``d >= 2``
        floating entries. The chain's positions are in this parameterisation.
    centered_logdensity_fn
        ``y -> scalar``: the sufficient (centred) log-density of the same posterior, or ``None``:
        then the sweep is the joint move and the hyperparameter move given the latents of ``x``
        only (for a parameterisation in which they are nearly independent a posteriori, e.g. a
        partially non-centred one), and both maps must be ``None`` too.
    to_centered, to_noncentered
        ``x -> y`` and ``y -> x``, inverse bijections (jittable), or ``None`` (above).
    hyper_indices
        Flat indices (in ``ravel_pytree(x)``) of the hyperparameters, at least two.
    centered_hyper_indices
        Their flat indices in ``ravel_pytree(y)``; default ``hyper_indices``. The other
        coordinates of ``y`` are held fixed in the sufficient move.
    w
        Radius window of the joint move (> 0), in the units of the preconditioned coordinates.
    hyper_w
        Radius window of the two hyperparameter moves (> 0), in units of the hyperparameters'
        marginal spread.
    center, scale
        The joint move's preconditioner, as in :func:`psample.polar_slice` (``center`` ``(d,)``;
        ``scale`` a vector, a lower-triangular matrix or a :class:`LowRankScale`).
    hyper_preconditioning
        The dict of :func:`hyper_preconditioners`; default derived from ``center`` and ``scale``.
    max_proposals
        As :func:`psample.polar_slice`, for all three moves.
    structure
        Form of the joint scale the warm-up estimates, as :func:`psample.polar_slice`.
    centered_move
        How the hyperparameters move given the centred latents: ``"polar"`` (a polar slice
        transition of the block, as above) or ``"coordinatewise"`` (one univariate slice update
        of each hyperparameter in turn, :func:`psample.mcmc.coordinatewise_slice.coordinatewise_slice`,
        brackets ``hyper_w`` times its marginal spread). The coordinatewise move follows
        conditionals whose spread differs between hyperparameters and changes with the latents
        (local scales of a shrinkage prior); it pays off where ``centered_logdensity_fn`` is
        cheap: given the centred latents the likelihood is a constant, so the model's prior
        alone (``logprior_fn`` of :func:`psample.from_numpyro`'s target) gives the same conditional.
    ancillary_move
        Whether the sweep includes the hyperparameter move given the ancillary latents (step 2);
        ``False`` leaves the joint move and the centred move.

    Returns
    -------
    psample.base.ChainAlgorithm
        ``init(x) -> PolarSliceState``, ``step(rng_key, state) -> (PolarSliceState,
        InterweavedPolarSliceInfo)``, ``adaptation`` (polar slice's warm-up on
        ``logdensity_fn``; its parameters gain the hyperparameters' preconditioners) and
        ``with_parameters``.

    Raises
    ------
    InvalidTuningError
        If ``w`` or ``hyper_w`` is not a finite number > 0 (and as :func:`psample.polar_slice`), if
        ``centered_move`` is neither ``"polar"`` nor ``"coordinatewise"``, or if no move of the
        hyperparameters is left (``ancillary_move=False`` without a centred log-density).
    ShapeError
        If an index set has fewer than two entries, repeats one or is out of range (checked in
        ``init``).
    InitialPointError
        If the maps are not inverse at the initial position.
    """
    if not isinstance(hyper_w, jax.core.Tracer):
        hyper_w = check_positive("hyper_w", hyper_w)
    sufficient = (("centered_logdensity_fn", centered_logdensity_fn), ("to_centered", to_centered),
                  ("to_noncentered", to_noncentered))
    if centered_logdensity_fn is None:
        given = [name for name, fn in sufficient[1:] if fn is not None]
        if given:
            raise InvalidTuningError(f"{', '.join(given)} given without centered_logdensity_fn: pass all three or none")
    else:
        for name, fn in sufficient:
            if not callable(fn):
                raise InvalidTuningError(f"{name} must be callable, got {fn!r}")
    if centered_move not in ("polar", "coordinatewise"):
        raise InvalidTuningError(f"centered_move must be 'polar' or 'coordinatewise', got {centered_move!r}")
    if not ancillary_move and centered_logdensity_fn is None:
        raise InvalidTuningError("ancillary_move=False needs centered_logdensity_fn: no hyperparameter move is left")
    hyper_raw = hyper_indices
    centered_raw = hyper_indices if centered_hyper_indices is None else centered_hyper_indices
    joint = polar_slice(logdensity_fn, w=w, center=center, scale=scale, max_proposals=max_proposals,
                        structure=structure)

    def resolve(position):
        flat, unravel = jax.flatten_util.ravel_pytree(position)
        idx = check_flat_indices("hyper_indices", hyper_raw, flat.shape[0], minimum=2)
        if centered_logdensity_fn is None:
            return unravel, None, idx, None
        shapes = jax.eval_shape(to_centered, position)
        flat_c, unravel_c = jax.flatten_util.ravel_pytree(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))
        idx_c = check_flat_indices("centered_hyper_indices", centered_raw, flat_c.shape[0], minimum=2)
        return unravel, unravel_c, idx, idx_c

    def init_fn(position):
        resolve(position)
        if centered_logdensity_fn is not None:
            _check_maps(position, to_centered, to_noncentered)
        return joint.init(position)

    def hyper_move(rng_key, flat, unravel, idx, fn, c, s):
        def conditional(u):
            return fn(unravel(flat.at[idx].set(u)))

        move = polar_slice(conditional, w=hyper_w, center=c, scale=s, max_proposals=max_proposals)
        new, info = move.step(rng_key, move.init(flat[idx]))
        return flat.at[idx].set(new.position), info

    def centered_hyper_move(rng_key, flat_c, unravel_c, idx_c, pre):
        if centered_move == "polar":
            return hyper_move(rng_key, flat_c, unravel_c, idx_c, centered_logdensity_fn,
                              pre["centered_hyper_center"], pre["centered_hyper_scale"])
        spread = jnp.linalg.norm(pre["centered_hyper_scale"], axis=1)  # marginal sd of each hyperparameter
        flat_c, _, info = coordinatewise_slice(rng_key, flat_c, lambda y: centered_logdensity_fn(unravel_c(y)),
                                               idx_c, hyper_w * spread, max_proposals=max_proposals)
        return flat_c, info

    def step_fn(rng_key, state):
        unravel, unravel_c, idx, idx_c = resolve(state.position)
        pre = hyper_preconditioning
        if pre is None:
            pre = hyper_preconditioners({"center": center, "scale": scale}, state.position, to_centered, idx, idx_c)
        key_joint, key_anc, key_suf = jax.random.split(rng_key, 3)
        state, info_joint = joint.step(key_joint, state)
        flat, _ = jax.flatten_util.ravel_pytree(state.position)
        infos = [info_joint]
        num_ancillary = num_sufficient = jnp.zeros((), jnp.int32)
        if ancillary_move:
            flat, info_anc = hyper_move(key_anc, flat, unravel, idx, logdensity_fn, pre["hyper_center"],
                                        pre["hyper_scale"])
            infos.append(info_anc)
            num_ancillary = info_anc.num_evals + 1
        if centered_logdensity_fn is None:  # no sufficient parameterisation: the hyperparameters move once
            new_state = joint.init(unravel(flat))
        else:
            flat_c, _ = jax.flatten_util.ravel_pytree(to_centered(unravel(flat)))
            flat_c, info_suf = centered_hyper_move(key_suf, flat_c, unravel_c, idx_c, pre)
            new_state = joint.init(to_noncentered(unravel_c(flat_c)))
            infos.append(info_suf)
            # the polar move's count leaves out its own initialisation; the coordinatewise one includes it
            num_sufficient = info_suf.num_evals + (1 if centered_move == "polar" else 0)
        evals = info_joint.num_evals + num_ancillary + num_sufficient + 1  # + the joint state's re-init
        return new_state, InterweavedPolarSliceInfo(
            num_evals=evals,
            num_joint_evals=info_joint.num_evals,
            num_ancillary_evals=num_ancillary,
            num_sufficient_evals=num_sufficient,
            hit_max_proposals=functools.reduce(operator.or_, [i.hit_max_proposals for i in infos]),
            num_nonfinite=sum(i.num_nonfinite for i in infos),
        )

    inner = joint.adaptation

    def final(carry):
        states, parameters = inner.final(carry)
        example = jax.tree.map(lambda a: a[0], states.position)
        _, _, idx, idx_c = resolve(example)
        pre = hyper_preconditioners(parameters, example, to_centered, idx, idx_c)
        return states, {**parameters, "hyper_preconditioning": pre}

    def adapt_init(positions, num_steps):
        example = jax.tree.map(lambda a: a[0], positions)
        resolve(example)
        if centered_logdensity_fn is not None:
            _check_maps(example, to_centered, to_noncentered)
        return inner.init(positions, num_steps)

    # Polar slice's own warm-up of the joint move (the hyperparameter moves join after it;
    # run during warm-up too, they left the tuned sampler mixing worse: BENCHMARKS.md); its parameters gain the
    # hyperparameters' blocks.
    adaptation = inner._replace(run=stepwise_run(adapt_init, inner.step, final), init=adapt_init, final=final)

    def with_parameters(parameters) -> ChainAlgorithm:
        return as_top_level_api(
            logdensity_fn, centered_logdensity_fn, to_centered, to_noncentered, hyper_raw, centered_raw,
            w=parameters["w"], hyper_w=parameters.get("hyper_w", hyper_w), center=parameters["center"],
            scale=parameters["scale"], hyper_preconditioning=parameters.get("hyper_preconditioning"),
            max_proposals=max_proposals, structure=structure, centered_move=centered_move,
            ancillary_move=ancillary_move,
        )  # fmt: skip

    return ChainAlgorithm(init_fn, step_fn, adaptation, with_parameters)
