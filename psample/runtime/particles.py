"""The particle runner: many independent weighted populations of any particle algorithm.

A particle algorithm (:class:`psample.smc.ParticleAlgorithm`) moves one weighted population;
:func:`run_particles` runs ``num_replicates`` independent populations of it, vmapped (and
placed over the local devices when they divide the replicates evenly), through the chunk
driver (:mod:`psample.runtime.driver`): one jitted ``lax.scan`` per chunk of steps, the progress bar,
Ctrl-C between chunks. Each step records the algorithm's info (ESS, log-Z increment, resampled
or not, ...) and the observables, never the population history: memory is that of one
population per replicate plus a few numbers per step.

Randomness depends on the step index alone (``fold_in(rng_key, step)``, then one key per
replicate), so the result does not depend on the chunking.

:class:`ParticleResult` holds the final populations with their weights and the evidence
estimates, with weighted estimates and their Monte Carlo errors (on the constrained scale for
NumPyro targets), equal-weight resampling and the ArviZ DataTree, laid out as PyMC's
``sample_smc`` (chain = independent replicate, draws at equal weights). Non-finite values of the
user's function (``info.num_nonfinite``) end the run with a warning, or an error when a
population has no finite weight left.

References
----------
.. [1] Anthony Lee and Nick Whiteley, "Variance estimation in the particle filter",
   Biometrika 105(3), 609-625, 2018. arXiv:1509.00394.
.. [2] Hock Peng Chan and Tze Leung Lai, "A general theory of particle filters in hidden
   Markov models and some applications", Annals of Statistics 41(6), 2877-2904, 2013.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

from psample.runtime import compiled, driver, sharding
from psample.errors import (
    InvalidTuningError,
    NonFiniteError,
    NumericalWarning,
    UnreliableErrorWarning,
    check_positive_int,
)
from psample.base import ParticleAlgorithm, resampling_fn

__all__ = ["run_particles", "ParticleResult", "ParticleAlgorithm"]

#: Steps per chunk of an unwatched "until done" run (watched runs are sized by time).
UNTIL_DONE_CHUNK_LENGTH = 8
_REQUIRED_STATE = ("particles", "log_weights", "log_Z")
_REQUIRED_INFO = ("ess", "log_Z_increment", "is_resampled")
#: The optional info field counting the user function's non-finite values per step.
NONFINITE_FIELD = "num_nonfinite"
#: Folded into ``rng_key`` for the key of the equal-weight posterior draws of
#: :meth:`ParticleResult.to_datatree` (independent of the run's own keys, which stay as they were).
_DRAWS_KEY_DATA = 0x0D4A


def _batched_init(algorithm, num_particles: int):
    build = lambda: jax.jit(jax.vmap(lambda key: algorithm.init(key, num_particles)))
    return compiled.cached(algorithm, ("init", num_particles), build)


def _build_chunk_runner(algorithm, observables: tuple, num_replicates: int):
    """``run_chunk((states, key), indices) -> ((states, key), (info, observables, valid))``.

    Records have the step axis first. Cached per (algorithm, observables, replicates).
    """
    build = lambda: _compile_chunk_runner(algorithm, observables, num_replicates)
    return compiled.cached(algorithm, ("chunks", observables, num_replicates), build)


def _compile_chunk_runner(algorithm, observables: tuple, num_replicates: int):
    step = jax.vmap(algorithm.step)
    is_done = None if algorithm.is_done is None else jax.vmap(algorithm.is_done)

    def one_step(carry, index):
        states, key = carry
        keys = jax.random.split(jax.random.fold_in(key, index), num_replicates)
        if is_done is None:
            new, info = step(keys, states)
            valid = jnp.ones((num_replicates,), bool)
        else:
            done = is_done(states)

            def advance(s):
                moved, info = step(keys, s)
                # Finished replicates keep their state: a step after "done" is a no-op.
                keep = lambda old, new: jnp.where(done.reshape(done.shape + (1,) * (new.ndim - 1)), old, new)
                return jax.tree.map(keep, s, moved), info

            info_shape = jax.eval_shape(lambda s: step(keys, s)[1], states)

            def skip(s):
                return s, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), info_shape)

            # Outside the vmap: once every replicate is done, steps cost nothing.
            new, info = lax.cond(jnp.all(done), skip, advance, states)
            valid = jnp.logical_not(done)
        obs = {name: jax.vmap(fn)(new) for name, fn in observables}
        return (new, key), (info, obs, valid)

    def run_chunk(carry, indices):
        return lax.scan(one_step, carry, indices)

    return jax.jit(run_chunk)


def _all_done(algorithm):
    build = lambda: jax.jit(lambda states: jnp.all(jax.vmap(algorithm.is_done)(states)))
    return compiled.cached(algorithm, ("all_done",), build)


def _bytes_per_step(algorithm, observables: tuple, num_replicates: int, carry) -> int:
    """Host bytes one step records; checks the info contract. Cached: tracing the chunk
    function to learn its output shapes costs as much as a small run."""

    def build():
        run_chunk = _build_chunk_runner(algorithm, observables, num_replicates)
        one = jax.eval_shape(run_chunk, carry, jnp.arange(1, dtype=jnp.int32))[1]
        missing = [f for f in _REQUIRED_INFO if not hasattr(one[0], f)]
        if missing:
            raise TypeError(f"a particle algorithm's info needs fields {list(_REQUIRED_INFO)}; it lacks {missing}")
        return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(one))

    shapes = (jax.tree.structure(carry), tuple((x.shape, x.dtype) for x in jax.tree.leaves(carry)))
    return compiled.cached(algorithm, ("record_bytes", observables, num_replicates, shapes), build)


def _check_state(states) -> None:
    missing = [f for f in _REQUIRED_STATE if not hasattr(states, f)]
    if missing:
        raise TypeError(
            f"a particle algorithm's state needs fields {list(_REQUIRED_STATE)}; "
            f"{type(states).__name__} lacks {missing}"
        )


def _mask_invalid(info, valid):
    """NaN (floats) / 0 (integers) / False (bools) where a replicate's step did not happen."""

    def mask(x):
        v = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
        if np.issubdtype(x.dtype, np.floating):
            return np.where(v, x, np.nan)
        return np.where(v, x, np.zeros((), x.dtype))

    return jax.tree.map(mask, info)


def run_particles(
    algorithm: ParticleAlgorithm,
    rng_key,
    num_particles: int,
    *,
    num_replicates: int = 1,
    observables: dict[str, Callable] | None = None,
    progress: bool = True,
    chunk_length: int | None = None,
) -> "ParticleResult":
    """Run ``num_replicates`` independent populations of a particle algorithm.

    Parameters
    ----------
    algorithm
        A :class:`psample.smc.ParticleAlgorithm` (e.g. :func:`psample.smc.tempered_smc`).
    rng_key
        A JAX PRNG key; the result depends on it alone (not on the chunking).
    num_particles
        Particles per population, ``>= 2``.
    num_replicates
        Independent populations (vmapped; placed over the local devices when their number
        divides ``num_replicates``). Several replicates give the Monte Carlo error of every
        estimate from their spread.
    observables
        ``{name: fn(state) -> array}`` evaluated on each replicate's population after every
        step, inside the scan (e.g. a weighted mean of the particles).
    progress
        Show a tqdm bar (only on a terminal).
    chunk_length
        Steps per jitted chunk; default: the driver's choice (bounded by memory and, with a
        bar, by time).

    Returns
    -------
    ParticleResult
        ``interrupted`` is set (and a warning issued) if Ctrl-C stopped the run between chunks;
        the populations and estimates are then those of the last completed step. ``complete``
        says which replicates reached the algorithm's target; when some did not (e.g. tempered
        SMC stopped by its ``max_steps`` below temperature 1) a ``NumericalWarning`` says so.

    Warns
    -----
    psample.errors.NumericalWarning
        The user's function returned non-finite values (the algorithm's ``info.num_nonfinite``,
        summed over the run; they count as zero density), or a population stopped before its
        target.

    Raises
    ------
    InvalidTuningError
        ``num_particles < 2``, ``num_replicates < 1``, a bad ``chunk_length``.
    psample.errors.NonFiniteError
        A replicate ended with no finite weight (or a non-finite ``log_Z``): no estimate can
        stand. ``error.result`` holds the :class:`ParticleResult`.
    psample.errors.RunError
        A failure while running (``.result`` holds what completed).
    """
    num_particles = check_positive_int("num_particles", num_particles, minimum=2)
    num_replicates = check_positive_int("num_replicates", num_replicates)
    if chunk_length is not None:
        chunk_length = check_positive_int("chunk_length", chunk_length)
    if not (hasattr(algorithm, "init") and hasattr(algorithm, "step") and hasattr(algorithm, "is_done")):
        raise TypeError(
            f"algorithm must be a psample.smc.ParticleAlgorithm (init, step, num_steps, is_done), "
            f"got {type(algorithm).__name__}"
        )
    if (algorithm.num_steps is None) == (algorithm.is_done is None):
        raise InvalidTuningError(
            "a particle algorithm needs exactly one of num_steps (a fixed schedule) and is_done "
            f"(until done); got num_steps={algorithm.num_steps!r}, is_done={algorithm.is_done!r}"
        )
    observables = dict(observables or {})
    for name, fn in observables.items():
        if not callable(fn):
            raise TypeError(f"observable {name!r} must be a function of the state, got {type(fn).__name__}")

    init_key, run_key = jax.random.split(rng_key)
    keys = jax.random.split(init_key, num_replicates)
    # Replicates are placed like chains: over all local devices when they divide evenly.
    keys = sharding.place(keys, sharding.chain_mesh(num_replicates))
    states = _batched_init(algorithm, num_particles)(keys)
    _check_state(states)
    if algorithm.check_initial is not None:
        algorithm.check_initial(jax.device_get(states))

    observables = tuple(observables.items())
    run_chunk = _build_chunk_runner(algorithm, observables, num_replicates)
    carry = (states, run_key)
    bytes_per_step = _bytes_per_step(algorithm, observables, num_replicates, carry)

    until = None
    if algorithm.is_done is not None:
        if chunk_length is None and not progress:
            # Unwatched open-ended runs: the driver would size chunks by memory alone (millions
            # of steps); a few steps per chunk stop soon after the last replicate is done.
            chunk_length = UNTIL_DONE_CHUNK_LENGTH
        done_fn = _all_done(algorithm)
        until = lambda c: bool(done_fn(c[0]))

    def postfix(records):
        ess = np.asarray(records[0].ess[-1])
        finite = ess[np.isfinite(ess)]
        return {"ess": f"{float(finite.mean()):.0f}" if finite.size else "nan"}

    result = driver.drive(
        run_chunk, carry, 0, algorithm.num_steps, chunk_length=chunk_length,
        bytes_per_step=bytes_per_step, until=until, progress=progress,
        desc="particles", unit="step", postfix=postfix,
    )  # fmt: skip
    info, obs, valid = driver.concatenate(result.records, axis=0)
    # Until-done runs end with steps where every replicate was already done: drop them.
    any_valid = np.flatnonzero(np.any(valid, axis=1))
    last = int(any_valid[-1]) + 1 if any_valid.size else 0
    to_replicate_major = lambda x: np.swapaxes(np.asarray(x)[:last], 0, 1)
    info = jax.tree.map(to_replicate_major, info)
    obs = {k: to_replicate_major(v) for k, v in obs.items()}
    valid = to_replicate_major(valid)
    final = jax.device_get(result.carry[0])
    if result.interrupted:
        warnings.warn(
            f"interrupted after {result.num_done} steps: the populations and log_Z are those of "
            "the last completed step (an intermediate distribution, not the target)",
            RuntimeWarning,
            stacklevel=2,
        )
    raw_log_weights = np.asarray(final.log_weights)
    log_weights = raw_log_weights - np.asarray(logsumexp(raw_log_weights, axis=1, keepdims=True))
    if algorithm.check_final is not None:
        complete, incomplete_message = algorithm.check_final(final)
        complete = np.asarray(complete, dtype=bool).reshape(num_replicates)
    else:
        complete, incomplete_message = np.full(num_replicates, not result.interrupted), None
    out = ParticleResult(
        particles=final.particles,
        log_weights=log_weights,
        log_Z=np.asarray(final.log_Z),
        info=_mask_invalid(info, valid),
        observables={k: _mask_invalid(v, valid) for k, v in obs.items()},
        valid=valid,
        final_state=final,
        interrupted=bool(result.interrupted),
        postprocess_fn=algorithm.postprocess_fn,
        resampling=algorithm.resampling,
        complete=complete,
        draws_key=jax.random.fold_in(rng_key, _DRAWS_KEY_DATA),
    )
    _check_nonfinite(out, raw_log_weights, algorithm.nonfinite_source)
    if not result.interrupted and not complete.all() and incomplete_message:
        warnings.warn(incomplete_message, NumericalWarning, stacklevel=2)
    return out


def _check_nonfinite(result: "ParticleResult", raw_log_weights: np.ndarray, source: str | None) -> None:
    """Refuse populations with no finite weight (or a non-finite ``log_Z``); warn with the count
    of the user function's non-finite values (``info.num_nonfinite``) otherwise."""
    source = source or "the algorithm's user function (log-density, log-likelihood or score)"
    counts = getattr(result.info, NONFINITE_FIELD, None)
    counts = None if counts is None else np.asarray(counts).reshape(result.num_replicates, -1)
    total = 0 if counts is None else int(counts.sum())
    # A NaN log_Z with no non-finite value met is an algorithm's "no estimate" (reverse
    # diffusion without correction has none); with them, or +-inf, it is a broken estimate.
    met = np.zeros(result.num_replicates, bool) if counts is None else counts.sum(axis=1) > 0
    log_Z = np.asarray(result.log_Z)
    dead = ~np.isfinite(raw_log_weights).any(axis=1) | np.isinf(log_Z) | (np.isnan(log_Z) & met)
    if dead.any():
        replicates = np.flatnonzero(dead).tolist()
        cause = (
            f"{source} returned {total} non-finite value(s) during the run (NaN or +inf; "
            "result.info.num_nonfinite has them per step)"
            if total
            else "the weights underflowed or overflowed"
        )
        raise NonFiniteError(
            f"{len(replicates)} of {result.num_replicates} replicate(s) {_first(replicates)} ended "
            f"with no finite weight (log_Z {result.log_Z[dead][:3].tolist()}): no estimate can "
            f"stand on them. {cause}. The result is attached as error.result.",
            result=result,
        )
    if total:
        steps = int((counts > 0).sum())
        replicates = np.flatnonzero(counts.sum(axis=1)).tolist()
        warnings.warn(
            f"{source} returned a non-finite value (NaN or +inf, or a non-finite score entry) at "
            f"{total} evaluation(s) in {steps} step(s) of {len(replicates)} of "
            f"{result.num_replicates} replicate(s) {_first(replicates)}. Those values count as "
            "zero density (weight zero, moves into them rejected), so every estimate is for the "
            "target restricted to where the function is finite, and is suspect: check the function "
            "for overflow or invalid parameter values. result.info.num_nonfinite has the counts "
            "per step.",
            NumericalWarning,
            stacklevel=3,
        )


def _first(items: list, limit: int = 10) -> list:
    return items if len(items) <= limit else items[:limit] + ["..."]


@dataclass
class ParticleResult:
    """The result of :func:`run_particles`: final weighted populations and their history.

    Attributes
    ----------
    particles
        Pytree of the final particles, leaves ``(replicate, particle, ...)`` (unconstrained).
    log_weights
        ``(replicate, particle)`` log-weights, normalised per replicate.
    log_Z
        ``(replicate,)`` log-normaliser estimates (the log evidence for tempered SMC).
    info
        The algorithm's info NamedTuple per step, leaves ``(replicate, step, ...)``; entries of
        steps a replicate did not take (it was done earlier) are NaN (floats), 0 or False.
    observables
        ``{name: (replicate, step, ...)}``, masked like ``info``.
    valid
        ``(replicate, step)`` bool: the replicate took that step.
    final_state
        The batched final state (host arrays).
    interrupted
        Ctrl-C stopped the run; everything here is from the last completed step.
    postprocess_fn
        ``particle -> dict`` of constrained named sites (deterministic sites included), or
        ``None``.
    resampling
        The algorithm's resampling scheme by name (``None`` if unknown).
    complete
        ``(replicate,)`` bool: the replicate reached the algorithm's target (tempered SMC:
        temperature 1). An incomplete replicate's particles and ``log_Z`` are those of an
        intermediate distribution.
    draws_key
        Key of the equal-weight draws of :meth:`to_datatree` (derived from the run's
        ``rng_key``), or ``None``.
    """

    particles: Any
    log_weights: np.ndarray
    log_Z: np.ndarray
    info: Any
    observables: dict
    valid: np.ndarray
    final_state: Any
    interrupted: bool = False
    postprocess_fn: Callable | None = field(default=None, repr=False)
    resampling: str | None = None
    complete: np.ndarray | None = None
    draws_key: Any = field(default=None, repr=False)

    @property
    def num_replicates(self) -> int:
        return int(self.log_weights.shape[0])

    @property
    def num_particles(self) -> int:
        return int(self.log_weights.shape[1])

    @property
    def num_steps(self) -> np.ndarray:
        """``(replicate,)`` steps each replicate took."""
        return self.valid.sum(axis=1)

    @property
    def ess(self) -> np.ndarray:
        """``(replicate, step)`` effective sample size after each step's reweighting."""
        return np.asarray(self.info.ess)

    @property
    def log_Z_mean(self) -> float:
        """Mean of the replicates' ``log_Z``."""
        return float(np.mean(self.log_Z))

    @property
    def log_Z_se(self) -> float:
        """Monte Carlo standard error of :attr:`log_Z_mean`.

        With several replicates: their standard deviation over ``sqrt(num_replicates)``. With
        one: :attr:`log_Z_se_single_run` of that replicate. :attr:`log_Z_se_method` says which.
        """
        if self.num_replicates > 1:
            return float(np.std(self.log_Z, ddof=1) / np.sqrt(self.num_replicates))
        self._warn_single_run("log_Z_se")
        return float(self.log_Z_se_single_run[0])

    @property
    def log_Z_se_single_run(self) -> np.ndarray:
        """``(replicate,)``: each replicate's own standard error of its ``log_Z``, from that run alone.

        Lee and Whiteley's (2018) estimator ``V`` of the relative variance ``Var(Z_hat)/Z^2``
        from the population's initial ancestors (Eve indices), reported as
        ``sqrt(log(1 + V))`` (the log-normal approximation); conservative (``V -> 1``) once
        every particle descends from one initial particle. NaN if the algorithm's state has no
        Eve indices.

        The estimator is valid for **multinomial** resampling, the default of
        :func:`psample.smc.tempered_smc` (the SMC tests hold its mean to the spread of
        ``log_Z`` over independent replicates). Systematic, stratified and residual resampling
        give offspring counts closer to their means than multinomial, which the estimator's
        collision correction does not know: it then comes out too small, by a factor that
        depends on the model, and a warning says so.
        """
        relative = self._lee_whiteley()
        if relative is None:
            return np.full(self.num_replicates, np.nan)
        return np.sqrt(np.log1p(np.maximum(relative, 0.0)))

    def _warn_single_run(self, what: str) -> None:
        # Without any resampling the estimator is plain importance sampling's, valid whatever
        # the scheme; the caveat is about the resampling scheme only.
        eve = self._eve()
        if self.resampling != "multinomial" and eve is not None and np.any(eve[1] > 0):
            warnings.warn(
                f"{what} of a single replicate uses a single-run estimator valid for multinomial "
                f"resampling; this run's algorithm resampled with {self.resampling!r}, where the "
                "estimate comes out too small. The spread of independent "
                "replicates is valid for every scheme: run_particles(..., num_replicates >= 2), or "
                "build the algorithm with multinomial resampling.",
                UnreliableErrorWarning,
                stacklevel=3,
            )

    @property
    def log_Z_se_method(self) -> str:
        """``"replicates"``, ``"lee-whiteley"`` (one replicate) or ``"unavailable"``."""
        if self.num_replicates > 1:
            return "replicates"
        return "lee-whiteley" if self._eve() is not None else "unavailable"

    def _eve(self):
        eve = getattr(self.final_state, "eve", None)
        count = getattr(self.final_state, "num_resampled", None)
        if eve is None or count is None:
            return None
        return np.asarray(eve), np.asarray(count)

    def _eve_sums(self, values: np.ndarray) -> np.ndarray:
        """``(replicate, ...)``: ``sum_k (sum_{i: E_i = k} values_i)^2`` per replicate."""
        eve, _ = self._eve()
        out = []
        for r in range(self.num_replicates):  # host-side, once per result
            sums = np.zeros((self.num_particles,) + values.shape[2:])
            np.add.at(sums, eve[r], values[r])
            out.append(np.sum(sums**2, axis=0))
        return np.stack(out)

    def _lee_whiteley(self):
        """``(replicate,)`` estimates of ``Var(Z_hat) / Z^2`` (Lee and Whiteley 2018)."""
        if self._eve() is None:
            return None
        _, count = self._eve()
        n = self.num_particles
        weights = np.exp(self.log_weights)
        same_eve = self._eve_sums(weights)
        return 1.0 - (n / (n - 1.0)) ** (count + 1.0) * (1.0 - same_eve)

    def _apply(self, fn):
        """``fn`` on every particle: leaves ``(replicate, particle, ...)``."""
        return jax.tree.map(np.asarray, self._mapped(fn)(self.particles))

    def _mapped(self, fn):
        """``jit(vmap(vmap(fn)))``; compiled once per target for its post-processing map
        (:mod:`psample.runtime.compiled`), afresh for any other function."""
        build = lambda: jax.jit(jax.vmap(jax.vmap(fn)))
        if fn is not None and fn is self.postprocess_fn:
            return compiled.cached(fn, ("particle_map",), build)
        return build()

    def weighted_mean(self, fn: Callable | None = None, *, unconstrained: bool = False):
        """Weighted mean of ``fn`` over the particles and its Monte Carlo standard error.

        Parameters
        ----------
        fn
            A jittable function of one particle returning an array (or a pytree of arrays).
            With a post-processing map (NumPyro targets) it receives the particle's
            **constrained** sites, deterministic sites included, as ``{site: value}`` (what
            NumPyro's ``get_samples()`` holds): ``lambda s: s["p"]`` is the mean of a Beta
            site ``p`` on its own scale. Default: every site (or the particle itself).
        unconstrained
            Give ``fn`` the unconstrained particle instead (the space the sampler moves in).
            Ignored without a post-processing map, where the two are the same.

        Returns
        -------
        mean, se
            Arrays shaped like ``fn``'s output. ``mean`` averages the replicates' weighted
            means; ``se`` is their standard deviation over ``sqrt(num_replicates)`` with several
            replicates, and with one the Chan and Lai (2013) estimator
            ``sqrt(sum_k (sum_{i: E_i = k} W_i (f_i - mean))^2)`` over the initial ancestors
            ``E_i`` (NaN without Eve indices). Like :attr:`log_Z_se_single_run` it is
            calibrated for multinomial resampling; with other schemes it may come out too
            small (a warning says the estimate assumes multinomial resampling).
        """
        if self.postprocess_fn is not None and not unconstrained:
            post = self.postprocess_fn
            values = self._apply(post if fn is None else (lambda z: fn(post(z))))
        else:
            values = self._apply(fn if fn is not None else (lambda x: x))
        weights = np.exp(self.log_weights)
        if self.num_replicates == 1:
            self._warn_single_run("weighted_mean's standard error")

        def one(v):
            v = np.asarray(v, dtype=np.float64)
            w = weights.reshape(weights.shape + (1,) * (v.ndim - 2))
            # A zero-weight particle contributes nothing, even where its value is NaN.
            means = np.sum(np.where(w > 0, w * v, 0.0), axis=1)
            if self.num_replicates > 1:
                return means.mean(0), means.std(0, ddof=1) / np.sqrt(self.num_replicates)
            if self._eve() is None:
                return means[0], np.full(means.shape[1:], np.nan)
            deviations = np.where(w > 0, w * (v - means[:, None]), 0.0)
            return means[0], np.sqrt(self._eve_sums(deviations)[0])

        pairs = jax.tree.map(one, values)
        is_pair = lambda x: isinstance(x, tuple)
        return (
            jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair),
            jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair),
        )

    def resample(self, rng_key, num: int | None = None, *, resampling: str = "systematic"):
        """Equal-weight draws from each replicate's weighted population.

        Parameters
        ----------
        rng_key
            A JAX PRNG key.
        num
            Draws per replicate (default: the number of particles).
        resampling
            A ``blackjax.smc.resampling`` scheme name.

        Returns
        -------
        Pytree with leaves ``(replicate, num, ...)``.
        """
        num = self.num_particles if num is None else check_positive_int("num", num)
        indices = self._resampled_indices(rng_key, num, resampling)
        rows = np.arange(self.num_replicates)[:, None]
        return jax.tree.map(lambda x: np.asarray(x)[rows, indices], self.particles)

    def _resampled_indices(self, rng_key, num: int, resampling: str = "systematic") -> np.ndarray:
        resample = resampling_fn(resampling)
        keys = jax.random.split(rng_key, self.num_replicates)
        return np.asarray(
            jax.vmap(lambda k, lw: resample(k, jnp.exp(lw), num))(keys, jnp.asarray(self.log_weights))
        )

    def equal_weight_draws(self, rng_key=None):
        """Each replicate's population at equal weights, in random order (the ``posterior`` of
        :meth:`to_datatree`).

        A replicate whose weights are already equal (tempered SMC resamples before its last
        moves) is kept as it is; the others are resampled (systematic) to as many draws as
        particles. The order is then shuffled, so that no draw's position says anything about
        its ancestry.

        Parameters
        ----------
        rng_key
            Key of the resampling and the shuffle; default: :attr:`draws_key`, derived from the
            run's ``rng_key`` (so the draws are reproducible from it).

        Returns
        -------
        Pytree with leaves ``(replicate, particle, ...)`` (unconstrained particles).
        """
        rng_key = self.draws_key if rng_key is None else rng_key
        if rng_key is None:
            raise InvalidTuningError(
                "rng_key: this result holds no draws_key (it was not made by run_particles); pass "
                "rng_key=jax.random.key(...), got rng_key=None"
            )
        resample_key, order_key = jax.random.split(rng_key)
        n = self.num_particles
        indices = self._resampled_indices(resample_key, n)
        uniform = np.ptp(self.log_weights, axis=1) <= 1e-6
        indices = np.where(uniform[:, None], np.arange(n), indices)
        order = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, n))(
            jax.random.split(order_key, self.num_replicates)))  # fmt: skip
        indices = np.take_along_axis(indices, order, axis=1)
        rows = np.arange(self.num_replicates)[:, None]
        return jax.tree.map(lambda x: np.asarray(x)[rows, indices], self.particles)

    def posterior(self, particles=None) -> dict[str, np.ndarray]:
        """Particles as ``{site: (replicate, particle, ...)}``, constrained when possible."""
        from psample.runtime.trace import named_leaves

        particles = self.particles if particles is None else particles
        if self.postprocess_fn is not None:
            out = self._mapped(self.postprocess_fn)(particles)
            return {k: np.asarray(v) for k, v in out.items()}
        if isinstance(particles, dict):
            return {k: np.asarray(v) for k, v in particles.items()}
        return named_leaves(particles)

    def to_datatree(self, *, rng_key=None):
        """The ArviZ 1.x ``xarray.DataTree`` of the final populations and the step history.

        The layout is PyMC's ``sample_smc``'s, which SMC users know:

        - ``posterior``: each replicate's population **at equal weights**
          (:meth:`equal_weight_draws`: resampled unless already equal, shuffled), dims
          ``chain`` = independent replicate, ``draw``; constrained sites for NumPyro targets.
          ``az.summary`` and the plots read it as they read MCMC draws.
        - ``sample_stats``: ``log_marginal_likelihood`` ``(chain,)``, the replicates' ``log_Z``.
        - ``particles``: the weighted populations themselves, the sites ``(chain, particle,
          ...)`` and ``log_weight`` ``(chain, particle)``.
        - ``particle_steps``: every info field ``(chain, step)`` (``ess``, ``log_Z_increment``,
          ``is_resampled``, ``num_nonfinite``, ...), ``valid``; ``log_Z`` and ``complete``
          ``(chain,)``.
        - ``observables``: ``(chain, step, ...)`` if any.

        What ArviZ's diagnostics mean on these draws: the draws of a replicate are
        exchangeable, not a Markov chain. ESS along ``draw`` sees shuffled draws, so it reports
        about the number of draws (``replicates x particles``), an upper bound that ignores
        resampled copies and shared ancestors: it is **not** the information in the
        population, and the MCSE derived from it is too small. Use :meth:`weighted_mean` (the
        replicates' spread) for Monte Carlo errors. R-hat compares independent replicates: a
        value above 1.01 means that they disagree (a population missed a mode, or stopped
        before its target), which is worth knowing.

        Parameters
        ----------
        rng_key
            Key of the equal-weight draws; default: the result's :attr:`draws_key`.
        """
        import arviz as az
        import xarray as xr

        from psample.runtime.trace import named_leaves

        tree = az.from_dict({"posterior": self.posterior(self.equal_weight_draws(rng_key))})
        chains = np.arange(self.num_replicates)
        tree["sample_stats"] = xr.DataTree(xr.Dataset(
            {"log_marginal_likelihood": (("chain",), self.log_Z)}, coords={"chain": chains}))  # fmt: skip
        weighted = {}
        for name, values in self.posterior().items():
            values = np.asarray(values)
            dims = ("chain", "particle") + tuple(f"{name}_dim_{i}" for i in range(values.ndim - 2))
            weighted[name] = (dims, values)
        weighted["log_weight"] = (("chain", "particle"), self.log_weights)
        tree["particles"] = xr.DataTree(xr.Dataset(
            weighted, coords={"chain": chains, "particle": np.arange(self.num_particles)}))  # fmt: skip
        steps = {}
        for name, values in named_leaves(self.info, default="info").items():
            dims = ("chain", "step") + tuple(f"{name}_dim_{i}" for i in range(values.ndim - 2))
            steps[name] = (dims, values)
        steps["valid"] = (("chain", "step"), self.valid)
        steps["log_Z"] = (("chain",), self.log_Z)
        if self.complete is not None:
            steps["complete"] = (("chain",), np.asarray(self.complete))
        coords = {"chain": chains, "step": np.arange(self.valid.shape[1])}
        tree["particle_steps"] = xr.DataTree(xr.Dataset(steps, coords=coords))
        if self.observables:
            obs = {}
            for name, values in self.observables.items():
                dims = ("chain", "step") + tuple(f"{name}_dim_{i}" for i in range(values.ndim - 2))
                obs[name] = (dims, values)
            tree["observables"] = xr.DataTree(xr.Dataset(obs, coords=coords))
        return tree

    def plot(self, path) -> None:
        """Write a figure of the ESS (as a fraction of the particles) and of the running log Z
        over the steps, one line per replicate, to ``path``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax_ess, ax_z) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
        steps = np.arange(1, self.valid.shape[1] + 1)
        increments = np.where(self.valid, np.asarray(self.info.log_Z_increment), 0.0)
        running = np.cumsum(increments, axis=1)
        for r in range(self.num_replicates):
            ax_ess.plot(steps, self.ess[r] / self.num_particles, lw=1)
            ax_z.plot(steps, np.where(self.valid[r], running[r], np.nan), lw=1)
        ax_ess.set_ylabel("ESS / particles")
        ax_ess.set_ylim(0, 1.05)
        ax_z.set_ylabel("running log Z")
        ax_z.set_xlabel("step")
        ax_z.set_title(f"log Z = {self.log_Z_mean:.3f} ± {self.log_Z_se:.3f} ({self.log_Z_se_method})", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def __repr__(self) -> str:
        state = ", interrupted" if self.interrupted else ""
        if self.complete is not None and not np.all(self.complete):
            state += f", incomplete in {int(np.sum(~np.asarray(self.complete)))} replicate(s)"
        return (
            f"ParticleResult(replicates={self.num_replicates}, particles={self.num_particles}, "
            f"log_Z={self.log_Z_mean:.4f} ± {self.log_Z_se:.4f}{state})"
        )
