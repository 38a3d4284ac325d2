"""Checks a run makes before any work: positions, target shapes, initial states, one step, size.

Each check raises an error from :mod:`psample.errors` that names the argument, the chains and
the value at fault. They know the sampler contract (``init``/``step`` over a state whose
``position`` is the draw), never a sampler by name.
"""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from psample.errors import DtypeError, InitialPointError, InvalidTuningError, PsampleError, ShapeError
from psample.runtime import compiled
from psample.targets import _complex_message, check_real_logdensity

__all__ = [
    "state_position",
    "state_logdensity",
    "validate_positions",
    "check_target_shapes",
    "batched_init",
    "hoisted",
    "WithArguments",
    "init_states",
    "check_initial_states",
    "check_real_logdensity",
    "check_step_keeps_state",
    "check_run_size",
]


def hoisted(algorithm):
    """``algorithm.hoisted_arguments`` (:class:`psample.base.HoistedArguments` factory) or ``None``."""
    return getattr(algorithm, "hoisted_arguments", None)


class WithArguments:
    """A jitted ``fn(*args, arguments)`` called as ``fn(*args)``, ``arguments`` from ``hoist()``.

    ``lower(*args).compile()`` works as for the jitted function (the chunk driver times
    compiled chunks), the arguments bound the same way.
    """

    def __init__(self, fn, hoist):
        self.fn, self.hoist = fn, hoist

    def __call__(self, *args):
        return self.fn(*args, self.hoist()[0])

    def lower(self, *args):
        arguments = self.hoist()[0]
        return _Lowered(self.fn.lower(*args, arguments), arguments)


class _Lowered:
    """``fn.lower(*args, arguments)`` whose ``compile()`` takes ``*args`` alone."""

    def __init__(self, lowered, arguments):
        self.lowered, self.arguments = lowered, arguments

    def compile(self):
        compiled = self.lowered.compile()
        return lambda *args: compiled(*args, self.arguments)


def cache_owner(algorithm):
    """The compile cache's key for ``algorithm`` (:mod:`psample.runtime.compiled`).

    Its hoisted arguments' ``owner`` where set (adapted algorithms share their sampler's compiled
    functions), else its ``step``.
    """
    hoist = hoisted(algorithm)
    owner = None if hoist is None else getattr(hoist(), "owner", None)
    return algorithm.step if owner is None else owner


def batched_init(algorithm):
    """``jit(vmap(algorithm.init))``, cached on the algorithm so repeated runs do not recompile it."""
    hoist = hoisted(algorithm)
    if hoist is None:
        return compiled.cached(algorithm.step, ("init", algorithm.init), lambda: jax.jit(jax.vmap(algorithm.init)))
    rebind = hoist()[1]
    # Cached without its arguments: algorithms sharing an owner call it with their own.
    init = compiled.cached(
        cache_owner(algorithm), ("init", "hoisted"),
        lambda: jax.jit(lambda positions, arguments: jax.vmap(rebind(arguments).init)(positions)),
    )  # fmt: skip
    return WithArguments(init, hoist)


def state_position(state):
    """The position recorded per draw: ``state.position`` (the BlackJAX convention)."""
    if hasattr(state, "position"):
        return state.position
    return state[0]


def state_logdensity(state):
    return getattr(state, "logdensity", None)


def validate_positions(initial_positions) -> int:
    leaves = jax.tree.leaves(initial_positions)
    if not leaves:
        raise ShapeError("initial_positions is empty: pass a pytree of arrays with a leading chain axis")
    shapes = [np.shape(leaf) for leaf in leaves]
    if any(len(s) == 0 for s in shapes):
        raise ShapeError(
            f"initial_positions has a scalar leaf (shapes {shapes}): every leaf needs a leading "
            "chain axis, e.g. x0[None] for one chain or target.initial_positions(key, num_chains)"
        )
    num_chains = {s[0] for s in shapes}
    if len(num_chains) != 1:
        raise ShapeError(
            f"initial_positions leaves disagree on the number of chains (leading axis): shapes {shapes}"
        )
    (num_chains,) = num_chains
    if num_chains < 1:
        raise ShapeError("initial_positions has a chain axis of length 0: at least one chain is needed")
    return num_chains


def check_target_shapes(initial_positions, target, what: str = "initial_positions", error=ShapeError) -> None:
    """The positions must have the target's per-chain shapes, and its log-density must be real.

    Raises
    ------
    ShapeError (or ``error``)
        If the per-chain shapes differ from those of ``target.initial_positions``.
    DtypeError
        If ``target.logdensity_fn`` returns a complex value (:func:`check_real_logdensity`).
    """
    expected = jax.eval_shape(lambda k: target.initial_positions(k, 1), jax.random.PRNGKey(0))
    got = jax.tree.map(lambda x: np.shape(x)[1:], initial_positions)
    want = jax.tree.map(lambda x: x.shape[1:], expected)
    if jax.tree.structure(got) != jax.tree.structure(want) or jax.tree.leaves(got) != jax.tree.leaves(want):
        raise error(
            f"{what} do not match target {target.name!r}: per-chain shapes {got}, "
            f"expected {want} (with a leading chain axis)"
        )
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), expected)
    check_real_logdensity(target.logdensity_fn, one, f"the log-density of target {target.name!r}")


def init_states(algorithm, positions):
    """``vmap(algorithm.init)`` over the chains, with errors that say what the chain axis is."""
    try:
        return batched_init(algorithm)(positions)
    except ShapeError as exc:
        shapes = [np.shape(leaf) for leaf in jax.tree.leaves(positions)]
        if all(len(s) == 1 for s in shapes):
            raise ShapeError(
                f"initial_positions has shape(s) {shapes}: the leading axis is the chain axis, so each "
                f"of the {shapes[0][0]} chains starts at a scalar, and the sampler refused that ({exc}). "
                "To start one chain at this vector, add a chain axis: initial_positions[None]"
            ) from None
        raise


def check_initial_states(algorithm, positions, states) -> None:
    """Every floating field of every chain's initial state must be finite, and the log-density real.

    A NaN or infinite field means the sampler cannot start there (a non-finite log-density, or
    an undefined coordinate such as the direction at the origin for polar slice). The offending
    chains are named; the sampler's own ``init`` is then run on the first of them outside
    ``jit``, so a sampler that explains the problem for a concrete position gets to say it.

    Raises
    ------
    DtypeError
        If the state's ``logdensity`` is complex (a sampler that stores the user's value as it
        comes; it would be cast to real, or compared, with the imaginary part dropped).
    InitialPointError
        If a floating field is not finite for some chains.
    """
    logdensity = state_logdensity(states)
    if logdensity is not None and jnp.issubdtype(jnp.result_type(logdensity), jnp.complexfloating):
        raise DtypeError(_complex_message("the log-density (the initial state's logdensity)", jnp.result_type(logdensity)))
    bad_fields = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(states)[0]:
        leaf = np.asarray(leaf)
        if leaf.ndim == 0 or not np.issubdtype(leaf.dtype, np.floating):
            continue
        finite = np.isfinite(leaf.reshape(leaf.shape[0], -1)).all(axis=1)
        for chain in np.flatnonzero(~finite):
            bad_fields.setdefault(int(chain), []).append(jax.tree_util.keystr(path).lstrip("."))
    if not bad_fields:
        return
    chains = sorted(bad_fields)
    fields = sorted({f for fs in bad_fields.values() for f in fs})
    first = jax.tree.map(lambda x: x[chains[0]], positions)
    reason = ""
    try:
        algorithm.init(first)
    except PsampleError as exc:
        reason = f": {exc}"
    values = ""
    if logdensity is not None and "logdensity" in fields:
        values = f" (log-density {np.asarray(logdensity)[chains].tolist()})"
    described = [f"{f} ({_FIELD_MEANING[f]})" if f in _FIELD_MEANING else f for f in fields]
    raise InitialPointError(
        f"the sampler cannot start chain(s) {chains}: its initial state is not finite in "
        f"{', '.join(described)}{values}{reason}; start those chains elsewhere (inside the support)"
    )


#: BlackJAX's state field names, for error messages.
_FIELD_MEANING = {"logdensity": "the log-density", "logdensity_grad": "the gradient of the log-density"}


def check_step_keeps_state(algorithm, states) -> None:
    """One step must return a state of the same structure, shapes and dtypes (the scan carry)."""
    step = jax.vmap(algorithm.step)
    keys = jax.random.split(jax.random.PRNGKey(0), jax.tree.leaves(states)[0].shape[0])
    avals = (jax.tree.structure(states), tuple((np.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(states)))
    try:
        # Traced once per algorithm and state shape (psample.runtime.compiled): repeated runs pay nothing.
        new_states, _ = compiled.cached(algorithm.step, ("step_shapes", avals), lambda: jax.eval_shape(step, keys, states))
    except PsampleError:
        raise
    except (TypeError, ValueError) as exc:
        positions = state_position(states)
        dtypes = jax.tree.map(lambda x: str(jnp.result_type(x)), positions)
        shapes = jax.tree.map(np.shape, positions)
        floating = all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in jax.tree.leaves(positions))
        error = ShapeError if floating else DtypeError
        raise error(
            f"one step of the sampler cannot run from initial_positions of dtype {dtypes} and shape {shapes} "
            f"({str(exc).splitlines()[0]})" + ("" if floating else "; most samplers need floating positions")
        ) from None
    before = jax.tree_util.tree_flatten_with_path(states)[0]
    after = jax.tree.leaves(new_states)
    if jax.tree.structure(new_states) != jax.tree.structure(states):
        raise ShapeError("algorithm.step returns a state of another structure than algorithm.init")
    for (path, old), new in zip(before, after):
        if np.shape(old) != new.shape or jnp.result_type(old) != new.dtype:
            name = jax.tree_util.keystr(path).lstrip(".")
            raise DtypeError(
                f"one step changes the state's {name} from {jnp.result_type(old)}{list(np.shape(old))} "
                f"to {new.dtype}{list(new.shape)}: pass initial_positions of dtype {new.dtype} "
                "(e.g. x.astype(jnp.float32))"
            )


def _available_memory() -> int | None:
    """Bytes of memory available to this process (Linux ``MemAvailable``), or ``None``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} PB"


def check_run_size(bytes_per_draw: int, num_chains: int, num_draws: int, checkpoint=None) -> None:
    """Refuse a run whose draws cannot fit in memory (the trace) or on disk (the checkpoint).

    ``bytes_per_draw`` covers every chain. A checkpoint stores the draws about twice (ArviZ
    groups and the raw draws it resumes from); its disk is checked when ``checkpoint`` (an
    existing directory) is given.
    """
    total = bytes_per_draw * num_draws
    what = (
        f"{num_chains} chains x {num_draws} draws x {format_bytes(bytes_per_draw / max(num_chains, 1))} "
        f"per chain and draw = {format_bytes(total)}"
    )
    available = _available_memory()
    if available is not None and total > 0.8 * available:
        raise InvalidTuningError(
            f"this run would record {what}, more than the {format_bytes(available)} of memory available: "
            "draw fewer (num_draws), keep fewer (thin), run fewer chains, or record fewer observables"
        )
    if checkpoint is not None:
        free = shutil.disk_usage(checkpoint).free
        if 2 * total > free:
            raise InvalidTuningError(
                f"the checkpoint {str(checkpoint)!r} would hold about {format_bytes(2 * total)} ({what}, "
                f"twice), more than the {format_bytes(free)} free on its disk: thin more or draw fewer"
            )
