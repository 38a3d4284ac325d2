"""A trained diffusion sampler: exact importance-weighted draws, log Z, ELBO/EUBO, save/load.

:meth:`TrainedSampler.sample` runs the learned kernels as a particle algorithm through
:func:`psample.run_particles`: one step per sampler step, each reweighting by
``B_n(x_n | x_{n+1}) / F_n(x_{n+1} | x_n)`` (and ``γ(x_K) / p_0(x_0)`` at the ends), never
resampling, so the final weights are the exact extended-space importance weights of
:mod:`psample.diffusion.processes` and ``log_Z`` is their log-mean-exp (an unbiased estimate of
``Z`` for any network, trained or not, stopped early or not).

Contract
--------
``TrainedSampler.sample(rng_key, num_particles, *, num_replicates=1, exact_samples=None,
progress=True) -> SamplerResult``, a :class:`psample.ParticleResult` with the sampler's bounds
(``log_w``, ``elbo``, ``eubo`` from backward paths at exact draws, Pareto ``khat``). The same
key gives the same draws and weights, whatever the chunking. ``save``/``load`` keep the
parameters and the target (exported StableHLO), so a loaded sampler reproduces the original's
draws bit for bit.

Limits
------
The weights are exact but may be heavy-tailed: an undertrained sampler, or one that misses a
mode, gives a ``log Z`` whose error bar cannot be trusted (``sample`` warns when the Pareto
k-hat is above the PSIS threshold) or that is low by the missed mass, which no error bar shows.
Particles whose final log-density is NaN or ``+inf`` get weight zero and are counted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from psample import _deprecated
from psample.diffusion.networks import DriftNetwork
from psample.diffusion.processes import Process, nonfinite_value
from psample.schedules import VP
from psample.errors import (
    user_stacklevel,
    CheckpointError,
    ModelError,
    NonFiniteError,
    NumericalWarning,
    ShapeError,
    UnreliableErrorWarning,
    check_positive_int,
)
from psample.runtime.particles import ParticleResult, run_particles
from psample.smc.base import ParticleAlgorithm, reweight

__all__ = ["TrainedSampler", "SamplerResult", "SamplerState", "SamplerInfo"]

_FORMAT = "psample.diffusion.TrainedSampler/1"
#: Platforms the saved log-density is lowered for (``jax.export``; lowering for CUDA needs no GPU).
_EXPORT_PLATFORMS = ("cpu", "cuda")
#: Points where a saved sampler records its log-density, to check the one given to ``load``.
_FINGERPRINT_POINTS = 4


class SamplerState(NamedTuple):
    """State of one population of a learned sampler.

    particles
        ``(N, d)`` the particles ``x_n``.
    log_weights
        ``(N,)`` normalised log-weights.
    log_Z
        ``()`` running log-mean-exp of the accumulated weights.
    log_w
        ``(N,)`` unnormalised accumulated log-weights (the full ``log w`` after the last step).
    step
        ``()`` int32, the sampler step ``n``.
    eve, num_resampled
        ``(N,)`` and ``()``: initial ancestors (the identity: no resampling) for the
        single-run standard error of ``log_Z``.
    """

    particles: Any
    log_weights: Any
    log_Z: Any
    log_w: Any
    step: Any
    eve: Any
    num_resampled: Any


class SamplerInfo(NamedTuple):
    """Per step: ``ess`` ``()`` of the weights so far, ``log_Z_increment`` ``()``,
    ``is_resampled`` ``()`` (always False), ``num_nonfinite`` ``()`` int32: the step's target
    evaluations (the gradient at every particle, and the log-density at the final particles on
    the last step) that were NaN or ``+inf``, or a non-finite gradient at a finite value; a
    particle whose final log-density is NaN or ``+inf`` gets weight zero."""

    ess: Any
    log_Z_increment: Any
    is_resampled: Any
    num_nonfinite: Any


class SamplerResult(ParticleResult):
    """A :class:`psample.ParticleResult` with the bounds of a learned sampler.

    Its attributes are :class:`~psample.ParticleResult`'s and those below.

    Attributes
    ----------
    log_w
        ``(replicate, particle)`` unnormalised log importance weights.
    elbo, elbo_se
        ``mean(log w)`` over every particle (``<= log Z``) and its standard error.
    eubo, eubo_se
        ``mean(log w)`` over backward paths from exact target draws (``>= log Z``), or NaN
        when no exact draws were given.
    khat
        Pareto k-hat of the right tail of the importance weights ``w`` (all replicates
        pooled; ``arviz_stats``); above :attr:`khat_threshold` ``log_Z_se`` and the weighted
        means' errors cannot be trusted (:meth:`TrainedSampler.sample` warns).
    """

    __slots__ = ("log_w", "elbo", "elbo_se", "eubo", "eubo_se", "khat")

    def __init__(self, *args, log_w: np.ndarray | None = None, elbo: float = float("nan"),
                 elbo_se: float = float("nan"), eubo: float = float("nan"), eubo_se: float = float("nan"),
                 khat: float = float("nan"), **fields):
        super().__init__(*args, **fields)
        self.log_w, self.elbo, self.elbo_se, self.eubo, self.eubo_se, self.khat = log_w, elbo, elbo_se, eubo, eubo_se, khat

    def __repr__(self) -> str:
        if self.particles is None:
            return super().__repr__()
        flag = f" (unreliable: k-hat {self.khat:.2f})" if self.unreliable else ""
        return (f"SamplerResult(replicates={self.num_replicates}, particles={self.num_particles}, "
                f"log_Z={self.log_Z_mean:.4f} ± {self.log_Z_se:.4f}{flag}, ELBO={self.elbo:.4f}, EUBO={self.eubo:.4f})")

    @property
    def khat_threshold(self) -> float:
        """``min(1 - 1/log10(N), 0.7)`` (Vehtari et al., PSIS): the k-hat above which ``N``
        importance weights give an estimate whose error is unreliable."""
        from psample.diagnostics.batch_means import khat_threshold

        return khat_threshold(self.num_particles)

    @property
    def unreliable(self) -> bool:
        """The weights are too heavy-tailed for the standard errors (``khat > khat_threshold``)."""
        return bool(self.khat > self.khat_threshold)

    @property
    def final_ess(self) -> np.ndarray:
        """``(replicate,)`` ESS of the final importance weights."""
        return np.asarray(self.info.ess)[:, -1]


@dataclasses.dataclass
class TrainedSampler:
    """A DDS/PIS sampler with trained parameters (see :func:`psample.diffusion.train_sampler`).

    Attributes
    ----------
    logdensity_fn
        The target's unnormalised log-density ``(d,) -> scalar``.
    process
        The reference process and network (:class:`psample.diffusion.processes.Process`).
    params
        The network parameters (pytree of arrays); ``params["log_Z"]`` is the learned scalar of
        the trajectory-balance loss (0 for the others).
    losses
        ``(iterations,)`` training losses.
    loss
        The loss trained with.
    interrupted
        Ctrl-C stopped training early (the parameters are those trained so far).
    train_seconds
        Wall time of the training loop.
    history
        ``{"elbo": (iterations,), "log_Z": (iterations,)}``: each batch's mean and
        log-mean-exp of ``log w`` during training.
    """

    logdensity_fn: Callable
    process: Process
    params: Any
    losses: np.ndarray
    loss: str
    interrupted: bool = False
    train_seconds: float = float("nan")
    history: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def dim(self) -> int:
        return self.process.dim

    @property
    def method(self) -> str:
        return self.process.method

    @property
    def num_iterations(self) -> int:
        return int(len(self.losses))

    # --- sampling --------------------------------------------------------------------------

    def algorithm(self) -> ParticleAlgorithm:
        """The learned kernels as a :class:`psample.smc.ParticleAlgorithm` (no resampling).

        Built once per parameter set, so repeated :meth:`sample` calls reuse its compilation."""
        cached = getattr(self, "_algorithm_cache", None)
        if cached is None or cached[0] is not self.params:
            cached = (self.params, _algorithm(self.process, self.logdensity_fn, self.params))
            self._algorithm_cache = cached
        return cached[1]

    @_deprecated.renamed_keywords(num="num_particles")
    def sample(self, rng_key, num_particles: int, *, num_replicates: int = 1, exact_samples=None,
               progress: bool = True) -> SamplerResult:  # fmt: skip
        """Draw ``num_particles`` weighted particles per replicate.

        Parameters
        ----------
        rng_key
            A JAX PRNG key.
        num_particles
            Particles per replicate (``>= 2``). The old keyword ``num=`` works for one release
            with a ``DeprecationWarning``.
        num_replicates
            Independent populations (``log_Z_se`` from their spread when ``> 1``).
        exact_samples
            Optional ``(M, d)`` exact target draws: the EUBO is then estimated from backward
            paths started at them.
        progress
            A progress bar over the sampler steps (shown only where someone watches: a
            terminal or a notebook).

        Returns
        -------
        SamplerResult
            A :class:`psample.ParticleResult` (``log_Z``, ``log_Z_se``, weights, ESS per step,
            ``info.num_nonfinite``, ``to_datatree()``) with ``log_w``, ``elbo``, ``eubo``,
            ``final_ess``, ``khat``.

        Warns
        -----
        UnreliableErrorWarning
            The weights' Pareto k-hat exceeds ``min(1 - 1/log10(num_particles), 0.7)``: ``log_Z_se`` and
            the weighted means' errors cannot be trusted (k-hat and the final ESS are given).
        NumericalWarning
            The target's log-density was NaN or ``+inf`` (or its gradient non-finite) at some
            evaluations; final particles where it was get weight zero.

        Raises
        ------
        NonFiniteError
            A replicate has no particle with a finite weight (``error.result`` holds the run).
        """
        num_particles = check_positive_int("num_particles", num_particles, minimum=2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run_particles(self.algorithm(), rng_key, num_particles, num_replicates=num_replicates,
                                   progress=progress)  # fmt: skip
        for w in caught:
            # The runner's own warning about non-finite values is replaced by the one below,
            # which speaks of this call; the others (Ctrl-C) pass through.
            if not issubclass(w.category, NumericalWarning):
                warnings.warn(w.message, w.category, stacklevel=user_stacklevel())
        fields = {name: getattr(result, name) for name in ParticleResult.FIELDS}
        fields["observables"] = result._raw_observables
        log_w = np.asarray(result.final_state.log_w)
        with np.errstate(invalid="ignore"):  # a weight-zero particle: ELBO -inf, its error NaN
            elbo_se = float(log_w.std(ddof=1) / math.sqrt(log_w.size))
        out = SamplerResult(**fields, log_w=log_w, elbo=float(log_w.mean()), elbo_se=elbo_se, khat=_khat(log_w))
        _check_result(out)
        if exact_samples is not None:
            values = self.eubo_terms(jax.random.fold_in(rng_key, 1), exact_samples)
            out.eubo = float(values.mean())
            out.eubo_se = float(values.std(ddof=1) / math.sqrt(values.size))
        return out

    def eubo_terms(self, rng_key, exact_samples) -> np.ndarray:
        """``log w`` along backward paths from each exact draw ``(M, d)``: their mean is the EUBO."""
        x = jnp.asarray(exact_samples)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"exact_samples must have shape (M, {self.dim}), got {tuple(x.shape)}")
        return np.asarray(_eubo_fn(self.process, self.logdensity_fn)(self.params, rng_key, x))

    # --- persistence -----------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the parameters, the losses, the process and the target to ``path`` (a ``.npz``
        file; written to a temporary file and renamed, so a crash never leaves half a file).

        The target's log-density and its gradient are stored as compiled StableHLO
        (:mod:`jax.export`, lowered for CPU and CUDA, for a batch of any size of ``(dim,)``
        points in the current float precision), so that :meth:`load` needs only the path.
        A log-density that cannot be exported (it calls back into Python, say) is left out
        with a warning; such a file loads with ``logdensity_fn`` given.
        """
        leaves = jax.tree.leaves(self.params)
        config = _process_config(self.process)
        config.update(format=_FORMAT, loss=self.loss, interrupted=self.interrupted,
                      train_seconds=self.train_seconds, fingerprint=_fingerprint(self.logdensity_fn, self.dim).tolist())  # fmt: skip
        arrays = {f"leaf_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
        exported = getattr(self.logdensity_fn, "_psample_exported", None) or _export_logdensity(self.logdensity_fn, self.dim)
        if exported is not None:
            arrays["logdensity_value"] = np.frombuffer(exported[0], np.uint8)
            arrays["logdensity_grad"] = np.frombuffer(exported[1], np.uint8)
        _atomic_savez(path, config=np.array(json.dumps(config)), losses=np.asarray(self.losses), **arrays)

    @classmethod
    def load(cls, path, logdensity_fn: Callable | None = None) -> "TrainedSampler":
        """Read a sampler written by :meth:`save`.

        Without ``logdensity_fn`` the sampler uses the target stored in the file (exported
        StableHLO: it runs under ``jit`` and ``vmap`` and has a gradient, and gives the same
        draws and weights as the original). With ``logdensity_fn`` (a Python callable or a
        :class:`psample.Target`) that function is used instead, after a check of its values
        against those recorded at a few fixed points.

        Raises
        ------
        CheckpointError
            ``path`` is missing, empty, truncated, corrupted (every array and the config are
            checked against the CRC-32 the file holds for them) or not a saved sampler; the
            message names the file.
        ModelError
            ``logdensity_fn`` differs from the one trained on, or is missing when the file
            holds no exported target.
        """
        config, arrays = _read(path)
        try:
            process = _process_from_config(config)
            loss, losses = config["loss"], np.asarray(arrays["losses"], dtype=np.float64)
            interrupted, train_seconds = bool(config["interrupted"]), float(config["train_seconds"])
            recorded = np.asarray(config["fingerprint"], dtype=np.float64).reshape(_FINGERPRINT_POINTS)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{str(path)!r} is not a complete saved sampler ({type(exc).__name__}: {exc})") from None
        if logdensity_fn is None:
            if "logdensity_value" not in arrays:
                raise ModelError(
                    f"TrainedSampler.load({str(path)!r}) needs logdensity_fn, the target it was trained "
                    "on: this file holds no exported log-density (it could not be exported when saved)"
                )
            try:
                logdensity_fn = _import_logdensity(arrays["logdensity_value"].tobytes(),
                                                   arrays["logdensity_grad"].tobytes())  # fmt: skip
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - the exported module does not deserialise
                raise CheckpointError(f"{str(path)!r}: its saved log-density cannot be read ({type(exc).__name__}: "
                                      f"{exc}); load it with logdensity_fn given") from None  # fmt: skip
        else:
            logdensity_fn = getattr(logdensity_fn, "logdensity_fn", logdensity_fn)
            now = _fingerprint(logdensity_fn, process.dim)
            if not np.allclose(recorded, now, rtol=1e-5, atol=1e-6, equal_nan=True):
                raise ModelError(
                    f"logdensity_fn differs from the target saved in {str(path)!r}: log-densities "
                    f"{now.tolist()} at the check points, saved {recorded.tolist()}"
                )
        template = _init_params(process, loss, jax.random.key(0))
        params = _unflatten(template, arrays, path)
        return cls(logdensity_fn, process, params, losses, loss, interrupted=interrupted, train_seconds=train_seconds)

    def __repr__(self) -> str:
        state = ", interrupted" if self.interrupted else ""
        return (f"TrainedSampler(method={self.method!r}, loss={self.loss!r}, dim={self.dim}, "
                f"num_steps={self.process.num_steps}, iterations={self.num_iterations}{state})")  # fmt: skip


# ----------------------------------------------------------------------------------------------


def _khat(log_w: np.ndarray) -> float:
    """Pareto k-hat of the right tail of ``exp(log_w)``, all replicates pooled (the tail's
    shape is the sampler's, the same in every replicate); NaN when no tail can be fitted
    (equal weights)."""
    from psample.diagnostics.batch_means import tail_shape

    finite = log_w[np.isfinite(log_w)]
    if finite.size < 2:
        return float("nan")
    return tail_shape(np.exp(log_w - finite.max()).ravel())


def _check_result(result: SamplerResult) -> None:
    """Refuse populations with no finite weight, and warn (once each) about non-finite target
    values and about weights too heavy-tailed for their standard errors."""
    counts = np.asarray(result.info.num_nonfinite)
    num_bad = int(counts.sum())
    finite = np.isfinite(result.log_w)
    empty = np.flatnonzero(~finite.any(axis=1))
    if empty.size:
        raise NonFiniteError(
            f"TrainedSampler.sample: replicate(s) {empty.tolist()} have no particle with a finite weight "
            f"(logdensity_fn was NaN or +inf at {num_bad} evaluations, -inf at the others): no log_Z can stand",
            result=result,
        )
    if num_bad:
        final = int(counts[:, -1].sum())
        warnings.warn(
            f"TrainedSampler.sample: the target's log-density was NaN or +inf (or its gradient non-finite) at "
            f"{num_bad} evaluations ({final} of them at the {result.num_replicates * result.num_particles} "
            "final particles, which get weight zero): log_Z and the weights are those of the target restricted "
            "to where it is finite, not of the target; info.num_nonfinite counts them per step",
            NumericalWarning, stacklevel=user_stacklevel(),
        )  # fmt: skip
    if result.unreliable:
        ess = float(np.min(result.final_ess))
        warnings.warn(
            f"TrainedSampler.sample: the importance weights are too heavy-tailed for log_Z_se (or any weighted "
            f"mean's error) to hold: Pareto k-hat {result.khat:.2f} > {result.khat_threshold:.2f}, final ESS "
            f"{ess:.1f} of num_particles={result.num_particles} (smallest over the replicates); log_Z is then "
            "likely below the truth by more than its error bar. Raise num_particles, or train the sampler longer "
            "(train_sampler's num_iterations)",
            UnreliableErrorWarning, stacklevel=user_stacklevel(),
        )  # fmt: skip


def _init_params(process: Process, loss: str, rng_key):
    dtype = jnp.zeros(()).dtype
    return {"net": process.network.init(rng_key, dtype), "log_Z": jnp.zeros((), dtype)}


def _process_config(process: Process) -> dict:
    net = process.network
    return {
        "method": process.method, "dim": process.dim, "num_steps": process.num_steps,
        "init_std": process.init_std, "horizon": process.horizon,
        "beta_min": process.schedule.beta_min, "beta_max": process.schedule.beta_max,
        "width": net.width, "depth": net.depth, "harmonics": net.harmonics, "grad_clip": net.grad_clip,
    }  # fmt: skip


def _process_from_config(config: dict) -> Process:
    network = DriftNetwork(config["dim"], width=config["width"], depth=config["depth"],
                           harmonics=config["harmonics"], grad_clip=config["grad_clip"])  # fmt: skip
    return Process(config["method"], config["dim"], config["num_steps"], config["init_std"],
                   config["horizon"], VP(config["beta_min"], config["beta_max"]), network)  # fmt: skip


def _fingerprint(logdensity_fn, dim: int) -> np.ndarray:
    points = np.linspace(-1.0, 1.0, _FINGERPRINT_POINTS * dim).reshape(_FINGERPRINT_POINTS, dim)
    points = points * np.arange(1, _FINGERPRINT_POINTS + 1)[:, None] / _FINGERPRINT_POINTS
    return np.asarray(jax.vmap(logdensity_fn)(jnp.asarray(points)), dtype=np.float64)


def _export_logdensity(logdensity_fn, dim: int):
    """``(value, grad)``: serialised :mod:`jax.export` modules of ``vmap(logdensity_fn)`` and
    ``vmap(grad(logdensity_fn))`` on a ``(batch, dim)`` array of symbolic batch size, or None
    (with a warning) when the function cannot be exported."""
    from jax import export

    dtype = jnp.zeros(()).dtype
    spec = jax.ShapeDtypeStruct(export.symbolic_shape(f"b, {dim}"), dtype)
    fns = (jax.jit(jax.vmap(logdensity_fn)), jax.jit(jax.vmap(jax.grad(logdensity_fn))))
    failure = None
    # CUDA too, so a file saved on a CPU machine runs on a GPU; CPU alone if that lowering fails.
    for platforms in (_EXPORT_PLATFORMS, ("cpu",)):
        try:
            return tuple(bytes(export.export(fn, platforms=platforms)(spec).serialize()) for fn in fns)
        except Exception as exc:  # noqa: BLE001 - any lowering failure means "not exportable"
            failure = exc
    warnings.warn(f"TrainedSampler.save: the log-density could not be exported ({type(failure).__name__}: "
                  f"{failure}); load this file with TrainedSampler.load(path, logdensity_fn)", RuntimeWarning,
                  stacklevel=3)  # fmt: skip
    return None


def _import_logdensity(value_bytes: bytes, grad_bytes: bytes):
    """A ``(d,) -> scalar`` log-density from :func:`_export_logdensity`'s modules.

    An exported module has no batching rule and no derivative of its own: the point function is
    a ``custom_jvp`` whose tangent is the exported gradient, and both batched calls are
    ``custom_vmap`` functions that flatten any number of ``vmap`` levels into the exported
    batch axis, so the result works under ``jit``, (nested) ``vmap``, ``grad`` and ``scan``.
    """
    from jax import export
    from jax.custom_batching import custom_vmap

    value_exp, grad_exp = export.deserialize(bytearray(value_bytes)), export.deserialize(bytearray(grad_bytes))
    dtype = value_exp.in_avals[0].dtype
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ModelError("the saved log-density takes float64 (it was saved with jax_enable_x64): enable "
                         "jax.config.update('jax_enable_x64', True) or pass logdensity_fn to load")  # fmt: skip

    def batched(exp):
        @custom_vmap
        def call(xs):  # (n, d) -> exp's output (n, ...)
            return exp.call(xs.astype(dtype))

        @call.def_vmap
        def _rule(axis_size, in_batched, xs):
            if not in_batched[0]:
                out = call(xs)
                return jnp.broadcast_to(out, (axis_size, *out.shape)), True
            m, n = xs.shape[:2]
            out = call(xs.reshape(m * n, *xs.shape[2:]))
            return out.reshape(m, n, *out.shape[1:]), True

        return call

    value, grad = batched(value_exp), batched(grad_exp)

    @jax.custom_jvp
    def logdensity_fn(x):
        return value(x[None])[0]

    @logdensity_fn.defjvp
    def _jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return logdensity_fn(x), jnp.dot(grad(x[None])[0], t)

    logdensity_fn._psample_exported = (value_bytes, grad_bytes)
    return logdensity_fn


def _atomic_savez(path, **arrays) -> None:
    path = os.fspath(path)
    tmp = path + ".tmp.npz"
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def _read(path, expected_format: str = _FORMAT, what: str = "a saved psample diffusion sampler"):
    """``(config, arrays)`` of an ``.npz`` written with :func:`_atomic_savez` and a JSON
    ``config`` whose ``format`` is ``expected_format``; ``CheckpointError`` naming ``what`` else."""
    try:
        # Reading every member in full checks its CRC-32 (zipfile), so a flipped byte in any
        # array or in the config is caught here, before anything is deserialised.
        with np.load(os.fspath(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        config = json.loads(str(arrays.pop("config")))
        if not isinstance(config, dict):
            raise ValueError(f"its config is a {type(config).__name__}, not a dict")
    except Exception as exc:  # noqa: BLE001 - truncated, empty, garbage or corrupted: all mean "not a file of ours"
        # NumPy's refusal of pickled data advises an argument of np.load: say what it means.
        reason = "not a NumPy .npz archive" if "allow_pickle" in str(exc) else str(exc)
        raise CheckpointError(f"{str(path)!r} is not {what}, or is damaged ({type(exc).__name__}: {reason})") from None
    if config.get("format") != expected_format:
        raise CheckpointError(f"{str(path)!r} is not {what} (format {config.get('format')!r})")
    return config, arrays


def _unflatten(template, arrays: dict, path):
    leaves, treedef = jax.tree.flatten(template)
    try:
        new = [jnp.asarray(arrays[f"leaf_{i}"], dtype=leaf.dtype) for i, leaf in enumerate(leaves)]
    except KeyError:
        raise CheckpointError(f"{str(path)!r} holds {len(arrays)} arrays, fewer than the network needs") from None
    for i, (a, b) in enumerate(zip(leaves, new)):
        if a.shape != b.shape:
            raise CheckpointError(f"{str(path)!r}: array {i} has shape {b.shape}, the network needs {a.shape}")
    return jax.tree.unflatten(treedef, new)


# One jitted function per (process, log-density): the particle step and the EUBO.

_CACHE: dict = {}


def _cached(kind, process, logdensity_fn, build):
    key = (kind, process, logdensity_fn)
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = build()
    return _CACHE[key]


def _eubo_fn(process: Process, logdensity_fn):
    def build():
        def one(params, key, x_k):
            path = process.backward_path(key, x_k)
            return process.path_log_weight(params["net"], path, logdensity_fn)

        def run(params, rng_key, xs):
            keys = jax.random.split(rng_key, xs.shape[0])
            return jax.vmap(lambda key, x: one(params, key, x))(keys, xs)

        return jax.jit(run)

    return _cached("eubo", process, logdensity_fn, build)


def _algorithm(process: Process, logdensity_fn, params) -> ParticleAlgorithm:
    k = process.num_steps

    def init(rng_key, num_particles):
        dtype = jnp.zeros(()).dtype
        x0 = process.sample_initial(rng_key, num_particles, dtype)
        log_w = -process.log_initial(x0)
        return SamplerState(
            particles=x0,
            log_weights=jnp.full((num_particles,), -jnp.log(num_particles), dtype),
            log_Z=jnp.zeros((), dtype),
            log_w=log_w.astype(dtype),
            step=jnp.zeros((), jnp.int32),
            eve=jnp.arange(num_particles, dtype=jnp.int32),
            num_resampled=jnp.zeros((), jnp.int32),
        )

    def step(rng_key, state):
        n = state.step
        x = state.particles
        drift, bad = jax.vmap(lambda xi: process.drift_and_check(params["net"], n, xi, logdensity_fn))(x)
        mean, var = process.forward(n, x, drift)
        eps = jax.random.normal(rng_key, x.shape, x.dtype)
        x_next = mean + jnp.sqrt(var) * eps
        log_f = -0.5 * (jnp.sum(eps**2, axis=1) + x.shape[1] * jnp.log(2 * math.pi * var))
        increment = jax.vmap(lambda a, b: process.log_backward(n, a, b))(x, x_next) - log_f
        # The first step carries 1 / p_0(x_0) (in log_w from init), the last one γ(x_K).
        last = n == k - 1
        log_target = jax.vmap(logdensity_fn)(x_next)
        bad_target = last & nonfinite_value(log_target)
        # NaN or +inf is not a density: the particle gets weight zero, counted in the info.
        log_target = jnp.where(bad_target, -jnp.inf, log_target)
        increment = increment + jnp.where(last, log_target, 0.0)
        increment = increment + jnp.where(n == 0, state.log_w, 0.0)
        new = reweight(state.log_weights, increment)
        log_w = jnp.where(n == 0, 0.0, state.log_w) + increment
        new_state = state._replace(particles=x_next, log_weights=new.log_weights, log_Z=state.log_Z + new.log_Z_increment,
                                   log_w=log_w, step=n + 1)  # fmt: skip
        num_nonfinite = (jnp.sum(bad) + jnp.sum(bad_target)).astype(jnp.int32)
        return new_state, SamplerInfo(new.ess, new.log_Z_increment, jnp.zeros((), bool), num_nonfinite)

    return ParticleAlgorithm(init=init, step=step, num_steps=k)
