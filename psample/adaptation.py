"""Warm-up adaptation: the protocol a sampler implements, and the runner's hook into it.

The protocol
------------
A sampler that can tune itself during warm-up returns, from its top-level constructor, an
:class:`AdaptiveSamplingAlgorithm` instead of a plain ``blackjax.base.SamplingAlgorithm``:

``init(position) -> State`` and ``step(rng_key, state) -> (State, Info)``
    The sampler with its current (user-given) parameters, exactly as in BlackJAX; anything
    that takes a ``SamplingAlgorithm`` takes this too.
``adaptation``
    An object with BlackJAX's adaptation signature
    ``run(rng_key, positions, num_steps) -> ((states, parameters), info)``. ``positions``
    has a leading chain axis and so do the returned ``states``: the adaptation may pool the
    chains (cross-chain estimates). ``parameters`` is a pytree of arrays (a dict, as in
    BlackJAX's ``window_adaptation``) and ``states`` are valid states of
    ``with_parameters(parameters)``.
``with_parameters(parameters) -> AdaptiveSamplingAlgorithm``
    The same sampler with fixed ``parameters``. Sampling with it is exact for the target
    whatever the parameters (the adaptation only chooses them).

The runner's hook
-----------------
:func:`warmup` is what :func:`psample.sample` calls before its draw loop: with
``adapt=True``, ``num_warmup > 0`` and an algorithm that provides an adaptation, the warm-up
steps are the adaptation's steps, and the draws are made by
``algorithm.with_parameters(parameters)`` from the adapted states. Otherwise nothing
happens here and the runner's warm-up is plain burn-in with the algorithm's own parameters.
The adapted parameters are stored in the :class:`psample.Trace` (``trace.parameters``), in the
DataTree's attributes (:func:`parameters_to_attrs`) and in checkpoints, and
:func:`restore` rebuilds the tuned algorithm when a checkpointed run is resumed.

This module imports nothing from the runner, so sampler modules may import the protocol
type from it (as they import ``blackjax.base``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import numpy as np

__all__ = [
    "AdaptiveSamplingAlgorithm",
    "provides_adaptation",
    "adaptation_key",
    "warmup",
    "restore",
    "parameters_to_attrs",
]


class AdaptiveSamplingAlgorithm(NamedTuple):
    """A sampling algorithm that can tune its own parameters during warm-up.

    init
        ``init(position) -> State`` (one chain, no chain axis).
    step
        ``step(rng_key, state) -> (State, Info)``.
    adaptation
        Has ``run(rng_key, positions, num_steps) -> ((states, parameters), info)``, with a
        leading chain axis on ``positions`` and ``states``.
    with_parameters
        ``with_parameters(parameters) -> AdaptiveSamplingAlgorithm`` with those parameters fixed.
    """

    init: Callable
    step: Callable
    adaptation: Any
    with_parameters: Callable


def provides_adaptation(algorithm) -> bool:
    """Whether ``algorithm`` follows the protocol (has ``adaptation.run`` and ``with_parameters``)."""
    adaptation = getattr(algorithm, "adaptation", None)
    return callable(getattr(adaptation, "run", None)) and callable(getattr(algorithm, "with_parameters", None))


def adaptation_key(rng_key):
    """The key of a run's warm-up adaptation, derived from the run's key.

    Draws use ``fold_in(rng_key, step_index)``; the adaptation uses ``split(rng_key)[1]``,
    a different derivation, so the two never share randomness and the draws after warm-up do
    not depend on whether it adapted.
    """
    return jax.random.split(rng_key)[1]


def warmup(algorithm, positions, rng_key, num_warmup: int, *, adapt: bool = True):
    """Adapt ``algorithm`` during ``num_warmup`` steps when it can and is asked to.

    Parameters
    ----------
    algorithm
        Any sampling algorithm; only an :class:`AdaptiveSamplingAlgorithm` (see
        :func:`provides_adaptation`) is adapted.
    positions
        Initial positions with a leading chain axis (device arrays, possibly sharded).
    rng_key
        The run's key (:func:`adaptation_key` derives the adaptation's key from it).
    num_warmup
        Warm-up steps per chain.
    adapt
        ``False`` switches adaptation off.

    Returns
    -------
    (algorithm, states, parameters)
        When it adapted: the tuned algorithm (``with_parameters``), the chains' states after
        warm-up and the parameters. Otherwise ``(algorithm, None, None)``: the caller runs
        its own warm-up (burn-in) with the algorithm unchanged.
    """
    if not (adapt and num_warmup > 0 and provides_adaptation(algorithm)):
        return algorithm, None, None
    (states, parameters), _ = algorithm.adaptation.run(adaptation_key(rng_key), positions, num_warmup)
    parameters = jax.device_get(parameters)
    return algorithm.with_parameters(parameters), states, parameters


def restore(algorithm, parameters):
    """The algorithm a checkpointed run continues with: ``with_parameters`` if it was adapted.

    Raises
    ------
    psample.errors.CheckpointError
        If the run was adapted but ``algorithm`` cannot take parameters.
    """
    if parameters is None:
        return algorithm
    if not callable(getattr(algorithm, "with_parameters", None)):
        from psample.errors import CheckpointError

        raise CheckpointError(
            "the checkpointed run was adapted during warm-up, but the algorithm passed to resume has no "
            "with_parameters(): resume with the sampler the run was started with"
        )
    return algorithm.with_parameters(parameters)


def parameters_to_attrs(parameters, prefix: str = "adapted") -> dict:
    """The parameters as flat, JSON-friendly DataTree attributes ``{"adapted.w": 1.7, ...}``.

    Names follow the pytree (dict keys and NamedTuple fields joined by ``.``); arrays become
    nested lists, so the attributes survive a round trip through Zarr or netCDF.
    """
    if parameters is None:
        return {}
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(parameters)[0]:
        parts = [str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path]
        value = np.asarray(leaf)
        out[".".join([prefix, *parts])] = value.item() if value.ndim == 0 else value.tolist()
    return out
