"""Warm-up adaptation: the runner's side of the adaptation contract.

The contract (``adaptation``, ``with_parameters``, step-wise ``init``/``step``/``final``) is
declared in :mod:`psample.base` (:class:`~psample.base.ChainAlgorithm`,
:class:`~psample.base.StepwiseAdaptation`).

The runner's hook
-----------------
:func:`warmup` is what :func:`psample.sample` calls before its draw loop: with
``adapt=True``, ``num_warmup > 0`` and an algorithm that provides an adaptation, the warm-up
steps are the adaptation's steps, and the draws are made by
``algorithm.with_parameters(parameters)`` from the adapted states. A step-wise adaptation runs
on :func:`psample.runtime.driver.drive` in jitted chunks of steps, with a bar, Ctrl-C (which returns
the states and parameters of the steps completed) and a checkpoint of the carry after every
chunk, so a resumed run continues the adaptation bit for bit; any other adaptation runs as one
``run`` call. Otherwise nothing happens here and the runner's warm-up is plain burn-in with the
algorithm's own parameters; for a BlackJAX ``SamplingAlgorithm`` (which never has an adaptation
hook) :func:`note_burn_in` says so with a warning that names
:func:`psample.window_adaptation`, BlackJAX's window adaptation as a psample warm-up.
The adapted parameters are stored in the :class:`psample.Trace` (``trace.parameters``), in the
DataTree's attributes (:func:`parameters_to_attrs`) and in checkpoints, and
:func:`restore` rebuilds the tuned algorithm when a checkpointed run is resumed.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from psample.base import ChainAlgorithm, HoistedArguments, is_stepwise, provides_adaptation
from psample.runtime import checks, compiled

__all__ = [
    "WarmupResult",
    "adaptation_key",
    "warmup",
    "restore",
    "parameters_to_attrs",
    "note_burn_in",
]


class WarmupResult(NamedTuple):
    """What :func:`warmup` did.

    algorithm
        ``algorithm.with_parameters(parameters)`` when it adapted, else the algorithm unchanged.
    states
        The chains' states after the adaptation steps done (``None`` if it did not adapt).
    parameters
        The parameters in force after those steps (``None`` if it did not adapt).
    steps_done
        Warm-up steps completed.
    interrupted
        ``True`` if Ctrl-C stopped the adaptation before ``num_warmup`` steps.
    carry
        The step-wise adaptation's carry after ``steps_done`` steps (else ``None``).
    """

    algorithm: Any
    states: Any
    parameters: Any
    steps_done: int
    interrupted: bool
    carry: Any = None


def _chunk_function(algorithm, num_steps: int):
    """``jit((carry, key), step indices) -> ((carry, key), None)``: adaptation steps in a ``lax.scan``.

    Cached per algorithm (:mod:`psample.runtime.compiled`), so repeated runs of one algorithm
    compile once per chunk length.
    """
    adaptation = algorithm.adaptation

    def build():
        def run_chunk(carry, indices):
            state, key = carry

            def one(c, t):
                return adaptation.step(jax.random.fold_in(key, t), c, num_steps)[0], None

            return (jax.lax.scan(one, state, indices)[0], key), None

        return jax.jit(run_chunk)

    return compiled.cached(algorithm.step, ("adaptation", num_steps), build)


def adaptation_key(rng_key):
    """The key of a run's warm-up adaptation, derived from the run's key.

    Draws use ``fold_in(rng_key, step_index)``; the adaptation uses ``split(rng_key)[1]``,
    a different derivation, so the two never share randomness and the draws after warm-up do
    not depend on whether it adapted.
    """
    return jax.random.split(rng_key)[1]


def warmup(
    algorithm,
    positions,
    rng_key,
    num_warmup: int,
    *,
    adapt: bool = True,
    progress: bool = False,
    chunk_length: int | None = None,
    on_chunk: Callable | None = None,
    carry=None,
    steps_done: int = 0,
) -> WarmupResult:
    """Adapt ``algorithm`` during ``num_warmup`` steps when it can and is asked to.

    Parameters
    ----------
    algorithm
        Any sampling algorithm; only one that provides an adaptation
        (:func:`psample.base.provides_adaptation`) is adapted.
    positions
        Initial positions with a leading chain axis (device arrays, possibly sharded).
    rng_key
        The run's key (:func:`adaptation_key` derives the adaptation's key from it).
    num_warmup
        Warm-up steps per chain.
    adapt
        ``False`` switches adaptation off.
    progress, chunk_length
        As for :func:`psample.runtime.driver.drive` (a bar ``"adaptation"``; chunks sized in time when
        a bar or a checkpoint watches, else one chunk).
    on_chunk
        ``on_chunk(carry, steps_done)`` after every completed chunk (a checkpoint save).
    carry, steps_done
        Continue a step-wise adaptation from its ``carry`` after ``steps_done`` steps (a resumed
        run); ``positions`` is then ignored.

    Returns
    -------
    WarmupResult
        When it did not adapt, ``states`` and ``parameters`` are ``None`` and the caller runs its
        own warm-up (burn-in) with the algorithm unchanged.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C before the first chunk of adaptation steps completed.
    psample.errors.RunError
        If a chunk fails while it runs.
    """
    if not (adapt and num_warmup > 0 and provides_adaptation(algorithm)):
        return WarmupResult(algorithm, None, None, 0, False)
    adaptation = algorithm.adaptation
    key = adaptation_key(rng_key)
    if not is_stepwise(adaptation):
        (states, parameters), _ = adaptation.run(key, positions, num_warmup)
        parameters = jax.device_get(parameters)
        return WarmupResult(adapted(algorithm, parameters), states, parameters, num_warmup, False)

    from psample.runtime.driver import drive

    if carry is None:
        carry, steps_done = adaptation.init(positions, num_warmup), 0
    start = steps_done

    def chunk_done(chunk_carry, _records, num_done):
        on_chunk(chunk_carry[0], start + num_done)

    result = drive(
        _chunk_function(algorithm, num_warmup), (carry, key), start, num_warmup, chunk_length=chunk_length,
        progress=progress, desc="adaptation", unit="step", on_chunk=None if on_chunk is None else chunk_done,
    )  # fmt: skip
    carry = result.carry[0]
    states, parameters = adaptation.final(carry)
    parameters = jax.device_get(parameters)
    return WarmupResult(
        adapted(algorithm, parameters), states, parameters, start + result.num_done, result.interrupted, carry
    )


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
    return adapted(algorithm, parameters)


def adapted(algorithm, parameters):
    """``algorithm.with_parameters(parameters)``, compiled once per sampler whatever the parameters.

    The tuned algorithm gets :class:`psample.base.HoistedArguments` whose arguments are the
    parameters and whose ``owner`` is the untuned algorithm's ``step``: its chunk functions take
    the parameters as an argument, so a second adapted run of the same sampler (a notebook cell
    run again, a benchmark's repetition) reuses the compiled draws instead of compiling them
    again around new constants. Where ``with_parameters`` cannot be traced with abstract
    parameters (it reads their values in Python), or does not return a
    :class:`psample.base.ChainAlgorithm`, the tuned algorithm is returned as it is.
    """
    tuned = algorithm.with_parameters(parameters)
    if not isinstance(tuned, ChainAlgorithm) or not _traceable_parameters(algorithm, parameters):
        return tuned
    inner = checks.hoisted(algorithm)
    if inner is None:
        def hoist():
            return HoistedArguments(parameters, algorithm.with_parameters, owner=algorithm.step)
    else:
        def hoist():
            arguments, rebind = inner()[:2]
            return HoistedArguments(
                (arguments, parameters), lambda a: rebind(a[0]).with_parameters(a[1]), owner=algorithm.step
            )
    return tuned._replace(hoisted_arguments=hoist)


def _traceable_parameters(algorithm, parameters) -> bool:
    """Whether ``with_parameters`` builds its algorithm from abstract (traced) parameters."""

    def build():
        try:
            jax.eval_shape(lambda p: (algorithm.with_parameters(p), 0)[1], parameters)
        except (jax.errors.JAXTypeError, jax.errors.ConcretizationTypeError, TypeError, ValueError):
            return False
        return True

    # An unhashable key (tree structure) makes compiled.cached probe every time.
    return compiled.cached(algorithm.step, ("traceable_parameters", jax.tree.structure(parameters)), build)


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


def note_burn_in(algorithm, num_warmup: int) -> None:
    """Warn that ``num_warmup`` steps of a BlackJAX ``SamplingAlgorithm`` are plain burn-in.

    A BlackJAX kernel (``blackjax.nuts(logdensity_fn, step_size, inverse_mass_matrix)``) runs
    with the parameters it was built with; users coming from NumPyro or Stan expect the warm-up
    to tune them. psample's own algorithms without adaptation (graph chains, ...) are meant to
    burn in and are not warned about. ``adapt=False`` asks for burn-in and silences this.
    """
    import warnings

    from blackjax.base import SamplingAlgorithm

    from psample.errors import user_stacklevel

    # BlackJAX's own kernels only: psample builds some algorithms (graph chains, block averages)
    # as a SamplingAlgorithm too, with a step function of its own.
    module = getattr(getattr(algorithm, "step", None), "__module__", None) or ""
    if type(algorithm) is not SamplingAlgorithm or not module.startswith("blackjax"):
        return
    warnings.warn(
        f"num_warmup={num_warmup}: this BlackJAX algorithm has no warm-up adaptation, so these steps are "
        "plain burn-in with the parameters it was built with. For HMC and NUTS, pass "
        "psample.window_adaptation(blackjax.nuts, logdensity_fn) as the algorithm to adapt the step size and "
        "mass matrix (Stan's window adaptation, as NumPyro's NUTS does); adapt=False keeps the burn-in "
        "without this warning.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
