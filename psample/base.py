"""Every contract a psample runner consumes, in one place.

A sampler is data the runners read: pure functions and a few optional hooks, gathered in a
NamedTuple. Nothing here runs anything; the runners (:mod:`psample.runtime`) know these types
and never a sampler by name, and sampler modules import this module (as they import
``blackjax.base``) and never the runtime.

Chains (:func:`psample.sample`)
-------------------------------
:class:`ChainAlgorithm` is BlackJAX's ``SamplingAlgorithm`` contract, ``init(position) ->
State`` and ``step(rng_key, state) -> (State, Info)``, with optional hooks as typed fields.
Anything with ``init`` and ``step`` runs (a ``blackjax.base.SamplingAlgorithm`` too); the runner
reads each hook with ``getattr``, so a BlackJAX algorithm simply has none of them.

State contract: ``state.position`` is the draw (a pytree), ``state.logdensity`` (when present)
is recorded. Info contract: any NamedTuple of arrays; an ``int`` field ``num_nonfinite``
(evaluations of the user's function that returned NaN or ``+inf`` this step) is summed into the
runner's end-of-run warning.

Warm-up adaptation
------------------
An algorithm that tunes itself fills ``adaptation`` and ``with_parameters``:

``adaptation.run(rng_key, positions, num_steps) -> ((states, parameters), info)``
    BlackJAX's adaptation signature, with a leading chain axis on ``positions`` and ``states``
    (the adaptation may pool chains). ``parameters`` is a pytree of arrays and ``states`` are
    valid states of ``with_parameters(parameters)``.
``with_parameters(parameters) -> ChainAlgorithm``
    The same sampler with fixed ``parameters``; exact for the target whatever they are.

A *step-wise* adaptation (:class:`StepwiseAdaptation`) also has ``init``/``step``/``final``, so
the runner drives it in chunks like the draws (progress bar, Ctrl-C, checkpoints, bit-exact
resume).

Particles (:func:`psample.run_particles`)
-----------------------------------------
:class:`ParticleAlgorithm`: ``init(rng_key, num_particles)`` draws and weights a population,
``step(rng_key, state)`` makes one time step. State contract: ``particles`` (leaves ``(N, ...)``),
``log_weights`` ``(N,)`` normalised, ``log_Z`` ``()``; optionally ``eve`` ``(N,)`` and
``num_resampled`` ``()`` (single-run variance estimator), and for an until-done algorithm
``temperature`` ``()`` in ``[0, 1]``, how far it has come (the progress bar shows it, as a
fraction reaching 1). Info contract: ``ess``,
``log_Z_increment``, ``is_resampled``, optionally ``num_nonfinite``.

Non-finite values
-----------------
:func:`is_nonfinite_logdensity` is the one definition the samplers count with: NaN and ``+inf``
are errors of the user's function, ``-inf`` is a legitimate zero density.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm
from blackjax.smc import resampling
from blackjax.types import Array, ArrayTree

__all__ = [
    "SamplingAlgorithm",
    "ChainAlgorithm",
    "AdaptiveSamplingAlgorithm",
    "Adaptation",
    "StepwiseAdaptation",
    "HoistedArguments",
    "ParticleAlgorithm",
    "RESAMPLING",
    "resampling_fn",
    "provides_adaptation",
    "is_stepwise",
    "is_nonfinite_logdensity",
]


class HoistedArguments(NamedTuple):
    """Arrays a sampler's functions close over that ``jax.jit`` must take as arguments.

    Global arrays spread over several processes (each holding its own part) cannot be embedded
    in a compiled function as constants, so the runner passes them to every jitted function as
    an argument and rebuilds the algorithm on the traced values.

    arguments
        The arrays (a pytree).
    rebind
        ``rebind(arguments) -> ChainAlgorithm``: the same algorithm over (traced) ``arguments``.
    owner
        Optional key of the runners' compile cache: algorithms with the same ``owner`` share
        their compiled functions, each called with its own ``arguments`` (``rebind`` must then
        build the same algorithm from them). ``None``: the algorithm's ``step``. The runner sets
        it for adapted algorithms, whose parameters are arguments, so a second adapted run of the
        same sampler does not compile again.
    """

    arguments: ArrayTree
    rebind: Callable[[ArrayTree], "ChainAlgorithm"]
    owner: Any = None


class ChainAlgorithm(NamedTuple):
    """A Markov chain as :func:`psample.sample` runs it (BlackJAX's pair plus optional hooks).

    init
        ``init(position) -> State`` (one chain, no chain axis).
    step
        ``step(rng_key, state) -> (State, Info)``, pure and jittable.
    adaptation
        ``None``, or an :class:`Adaptation` (optionally a :class:`StepwiseAdaptation`) that tunes
        the sampler's parameters during warm-up.
    with_parameters
        ``with_parameters(parameters) -> ChainAlgorithm`` with those parameters fixed; required
        with ``adaptation``.
    check_trace
        ``check_trace(trace) -> None``, run by the runner after a complete run: a sampler-specific
        check of its draws that warns (e.g. ADMM's mean offset, the log-concave chain's
        importance-sampling ESS). ``None`` for none.
    hoisted_arguments
        ``hoisted_arguments() -> HoistedArguments`` for algorithms whose functions close over
        multi-process global arrays; ``None`` (the usual case) when ``jit`` may embed them.
    """

    init: Callable
    step: Callable
    adaptation: Any = None
    with_parameters: Callable | None = None
    check_trace: Callable | None = None
    hoisted_arguments: Callable[[], HoistedArguments] | None = None


#: The name psample 0.1 gave an adaptive :class:`ChainAlgorithm` (same type, same field order).
AdaptiveSamplingAlgorithm = ChainAlgorithm


@runtime_checkable
class Adaptation(Protocol):
    """BlackJAX's adaptation signature, over all chains at once."""

    def run(self, rng_key, positions, num_steps: int):
        """``((states, parameters), info)``; ``positions`` and ``states`` have a chain axis."""


@runtime_checkable
class StepwiseAdaptation(Adaptation, Protocol):
    """An adaptation the runner drives step by step (in chunks).

    Step ``t`` is given the key ``fold_in(key, t)``, so the result does not depend on chunking.
    """

    def init(self, positions, num_steps: int):
        """The adaptation's carry (a pytree of arrays) before its first step."""

    def step(self, rng_key, carry, num_steps: int):
        """``(carry, info)``: one adaptation step for all chains."""

    def final(self, carry):
        """``(states, parameters)`` after any number of steps (what an interrupted warm-up keeps)."""


class ParticleAlgorithm(NamedTuple):
    """A weighted-population algorithm, as :func:`psample.run_particles` runs it.

    init
        ``init(rng_key, num_particles) -> state``: draws the initial population from the
        algorithm's own reference (prior, noise) and weights it.
    step
        ``step(rng_key, state) -> (state, info)``: one time step (move, reweight, resample when
        the ESS drops). Pure and jittable.
    num_steps
        Number of steps of a fixed schedule, or ``None`` for "until done".
    is_done
        ``is_done(state) -> bool`` scalar (jittable); ``None`` when ``num_steps`` is set.
    check_initial
        ``check_initial(states) -> None``: host-side validation of the initial populations of
        all replicates (leading replicate axis), raising a ``psample.errors`` error before any
        step runs; ``None`` for none.
    postprocess_fn
        ``particle -> dict`` mapping one particle to constrained, named sites (a
        :class:`psample.Target`'s), or ``None``.
    resampling
        Name of the resampling scheme (a key of :data:`RESAMPLING`), or ``None``
        when unknown (a custom function). The single-run error estimators of
        :class:`psample.ParticleResult` are calibrated for ``"multinomial"`` and warn otherwise.
    check_final
        ``check_final(states) -> (complete, message)``: host-side test of the final populations
        of all replicates (leading replicate axis): ``complete`` ``(replicate,)`` bool, whether
        each reached the algorithm's target (e.g. temperature 1), and the warning the runner
        issues when some did not; ``None``: a population that took all its steps is complete.
    nonfinite_source
        Name of the user function(s) whose non-finite values ``info.num_nonfinite`` counts
        (e.g. ``"loglikelihood_fn"``), for the runner's warning and error messages.
    """

    init: Callable
    step: Callable
    num_steps: int | None = None
    is_done: Callable | None = None
    check_initial: Callable | None = None
    postprocess_fn: Callable | None = None
    resampling: str | None = None
    check_final: Callable | None = None
    nonfinite_source: str | None = None


#: Resampling schemes by name (all from ``blackjax.smc.resampling``).
RESAMPLING = {
    "systematic": resampling.systematic,
    "stratified": resampling.stratified,
    "multinomial": resampling.multinomial,
    "residual": resampling.residual,
}


def resampling_fn(resampling_name) -> Callable:
    """The ``blackjax.smc.resampling`` function called ``resampling_name`` (or a callable as is)."""
    if callable(resampling_name):
        return resampling_name
    if resampling_name not in RESAMPLING:
        from psample.errors import InvalidTuningError

        raise InvalidTuningError(
            f"resampling must be one of {sorted(RESAMPLING)} or a function "
            f"(rng_key, weights, num_samples) -> indices, got {resampling_name!r}"
        )
    return RESAMPLING[resampling_name]


def provides_adaptation(algorithm) -> bool:
    """Whether ``algorithm`` can adapt during warm-up (has ``adaptation.run`` and ``with_parameters``)."""
    adaptation = getattr(algorithm, "adaptation", None)
    return callable(getattr(adaptation, "run", None)) and callable(getattr(algorithm, "with_parameters", None))


def is_stepwise(adaptation) -> bool:
    """Whether ``adaptation`` has the step-wise form ``init``/``step``/``final``."""
    return all(callable(getattr(adaptation, name, None)) for name in ("init", "step", "final"))


def is_nonfinite_logdensity(value: Array) -> Array:
    """NaN or ``+inf``: what a log-density may not return (``-inf`` is zero density)."""
    return jnp.isnan(value) | (value == jnp.inf)
