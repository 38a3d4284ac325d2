"""Training learned diffusion samplers (DDS, PIS) with optax, driven by the chunk driver.

:func:`train_sampler` fits the drift network of :mod:`psample.diffusion.networks` so that the
sampler's path law matches the target's extended-space law (the path-space importance weight
``log w`` of :mod:`psample.diffusion.processes`, ``E[w] = Z``), with one of three losses:
``"kl"``, the reverse KL ``-E[log w]`` by reparameterisation through the simulated path (PIS
[1], DDS [2]); ``"log_variance"``, ``Var_batch(log w)`` on paths simulated with frozen
parameters (Richter et al. [3]); ``"trajectory_balance"``, ``mean((log Z_φ - log w)²)`` with a
learned scalar ``log Z_φ`` (Malkin et al. [4]; Sendera et al. [5]). The two off-policy losses
accept paths from any law: ``exploration`` widens the sampler's own paths, and
``target_samples`` adds backward paths started at rough target draws, which teach the sampler
modes its own paths never visit. Every pair of ``method`` and ``loss`` is supported. One jitted
optax step per iteration; the chunk driver (:func:`psample.runtime.driver.drive`) runs
``lax.scan`` chunks of iterations with the loss on a progress bar, turns Ctrl-C into "return
the parameters trained so far", and, with ``checkpoint=path``, saves the parameters and the
optimizer state after every chunk, from which a later call with the same arguments resumes
(iteration ``i`` uses ``fold_in(key, i)``, so a resumed run reproduces an uninterrupted one).

See the :doc:`family page </families/diffusion>` for the losses, tuning and measured limits.

Contract
--------
``train_sampler(logdensity_fn, dim, rng_key, ...) -> TrainedSampler``. ``logdensity_fn`` maps a
``(dim,)`` vector to a scalar and is differentiable; it is checked at reference draws before
any training. Training only shapes the proposal: whatever the loss, the number of iterations
or an interruption, the trained sampler's importance weights are exact and its ``log Z``
estimate unbiased (:mod:`psample.diffusion.trained`).

Limits
------
Each iteration costs ``batch_size · num_steps`` evaluations of the target's gradient. The
reverse KL (``"kl"``) is mode-seeking: a sampler trained on its own paths alone can drop modes
it never visits, which its weights cannot restore; the off-policy losses with
``target_samples`` are the remedy. The network is a small MLP on flat vectors (no pytree
positions, no symmetries); a briefly trained sampler in high dimension has few effective
particles, which :meth:`TrainedSampler.sample` reports (Pareto k-hat).

References
----------
.. [1] Qinsheng Zhang and Yongxin Chen, "Path integral sampler: a stochastic control approach
   for sampling", ICLR 2022. arXiv:2111.15141.
.. [2] Francisco Vargas, Will Grathwohl and Arnaud Doucet, "Denoising diffusion samplers",
   ICLR 2023. arXiv:2302.13834.
.. [3] Lorenz Richter, Ayman Boustati, Nikolas Nüsken, Francisco J. R. Ruiz and Ömer Deniz
   Akyildiz, "VarGrad: a low-variance gradient estimator for variational inference",
   NeurIPS 2020. arXiv:2010.10436.
.. [4] Nikolay Malkin, Moksh Jain, Emmanuel Bengio, Chen Sun and Yoshua Bengio, "Trajectory
   balance: improved credit assignment in GFlowNets", NeurIPS 2022. arXiv:2201.13259.
.. [5] Marcin Sendera et al., "Improved off-policy training of diffusion samplers",
   NeurIPS 2024. arXiv:2402.05098.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp

from psample.runtime import driver
from psample.diffusion.networks import DriftNetwork
from psample.diffusion.processes import METHODS, Process
from psample.schedules import VP
from psample.diffusion.trained import (
    TrainedSampler,
    _atomic_savez,
    _fingerprint,
    _init_params,
    _process_config,
    _read,
    _unflatten,
)
from psample.diffusion.validation import check_logdensity, check_reference_finite
from psample.errors import (
    CheckpointError,
    InvalidTuningError,
    NonFiniteError,
    NumericalWarning,
    ShapeError,
    check_positive,
    check_positive_int,
)

__all__ = ["train_sampler", "LOSSES", "TrainRecord"]

LOSSES = ("kl", "log_variance", "trajectory_balance")
_FORMAT = "psample.diffusion.train_checkpoint/1"


class TrainRecord(NamedTuple):
    """Per iteration: ``loss``, ``elbo`` (batch mean of ``log w``), ``log_Z`` (batch
    log-mean-exp of ``log w``), ``num_nonfinite`` (int32: the batch's target evaluations,
    value or gradient, that were NaN or ``+inf`` / non-finite) and ``skipped`` (bool: the loss
    or its gradient was not finite, so the update was not applied)."""

    loss: jax.Array
    elbo: jax.Array
    log_Z: jax.Array
    num_nonfinite: jax.Array
    skipped: jax.Array


class _TargetSamples:
    """Approximate target draws ``(M, d)`` for backward training paths, hashable by content so
    that the jitted chunk is cached per set of draws."""

    def __init__(self, samples: np.ndarray, num_backward: int):
        self.samples = samples
        self.num_backward = num_backward
        self.digest = hashlib.sha1(samples.tobytes() + str(samples.shape).encode()).hexdigest()

    def __hash__(self):
        return hash((self.digest, self.num_backward))

    def __eq__(self, other):
        return isinstance(other, _TargetSamples) and (self.digest, self.num_backward) == (other.digest, other.num_backward)


def _outside_support(log_w):
    """``(keep, safe, kept)``: the paths whose ``log w`` is not ``-inf``, ``log w`` with 0 at the
    others, and their number.

    A path that ends where the target is zero (``log γ = -inf``, a legitimate value) has an
    infinite reverse KL and no gradient, and would make the variance and trajectory-balance
    losses NaN: the losses average over the other paths (any path law is valid for the
    off-policy ones). A NaN ``log w`` stays in and makes the loss NaN, so the iteration is
    skipped (see :func:`_make_chunk`)."""
    keep = log_w != -jnp.inf
    return keep, jnp.where(keep, log_w, 0.0), jnp.sum(keep)


def _loss_fn(process: Process, logdensity_fn, loss: str, batch_size: int, target_samples=None):
    rollout = jax.vmap(process.rollout, in_axes=(None, 0, 0, None, None))
    path_log_weight = jax.vmap(lambda p, path, f: process.path_log_weight(p, path, f, count=True),
                               in_axes=(None, 0, None))
    backward_path = jax.vmap(process.backward_path)

    def fn(params, rng_key, exploration):
        init_key, path_key = jax.random.split(rng_key)
        dtype = params["log_Z"].dtype
        x0 = process.sample_initial(init_key, batch_size, dtype)
        keys = jax.random.split(path_key, batch_size)
        if loss == "kl":
            _, log_w, _, bad = rollout(params["net"], keys, x0, logdensity_fn, 0.0)
            keep, safe, kept = _outside_support(log_w)
            value = -jnp.sum(safe) / kept
        else:
            # Off-policy: any path law is valid for these losses, so the paths may explore
            # with extra noise; their log w is recomputed under the current kernels.
            frozen = jax.lax.stop_gradient(params["net"])
            _, _, paths, bad = rollout(frozen, keys, x0, logdensity_fn, exploration)
            if target_samples is not None:
                # Backward (noising) paths from approximate target draws: they show the loss
                # the modes the sampler's own paths miss, and change nothing else (any path law
                # is valid for these losses).
                pick_key, noise_key = jax.random.split(jax.random.fold_in(rng_key, 1))
                draws = jnp.asarray(target_samples.samples, dtype)
                rows = jax.random.randint(pick_key, (target_samples.num_backward,), 0, draws.shape[0])
                back = backward_path(jax.random.split(noise_key, target_samples.num_backward), draws[rows])
                paths = jnp.concatenate([paths, back])
            log_w, bad_again = path_log_weight(params["net"], jax.lax.stop_gradient(paths), logdensity_fn)
            # The simulation's evaluations and the recomputation's (at the same points for
            # the sampler's own paths) are counted alike: each one is an evaluation.
            bad = jnp.sum(bad) + jnp.sum(bad_again)
            keep, safe, kept = _outside_support(log_w)
            if loss == "log_variance":
                value = jnp.sum(jnp.where(keep, safe - jnp.sum(safe) / kept, 0.0) ** 2) / (kept - 1)
            else:
                value = jnp.sum(jnp.where(keep, params["log_Z"] - safe, 0.0) ** 2) / kept
        log_w = jax.lax.stop_gradient(log_w)[:batch_size]  # the forward paths
        record = TrainRecord(value, jnp.mean(log_w), logsumexp(log_w) - jnp.log(batch_size),
                             jnp.sum(bad).astype(jnp.int32), jnp.zeros((), bool))  # fmt: skip
        return value, record

    return fn


_CHUNKS: dict = {}


def _build_chunk(process, logdensity_fn, loss, batch_size, optimizer, exploration, target_samples=None):
    """The jitted chunk of training iterations, one per set of arguments, so that a training
    resumed in the same process (more iterations, a checkpoint) does not compile again."""
    key = (process, logdensity_fn, loss, batch_size, optimizer, exploration, target_samples)
    try:
        hash(key)
    except TypeError:  # an unhashable optimizer or schedule: build afresh
        return _make_chunk(*key)
    if key not in _CHUNKS:
        if len(_CHUNKS) > 16:
            _CHUNKS.clear()
        _CHUNKS[key] = _make_chunk(*key)
    return _CHUNKS[key]


def _make_chunk(process, logdensity_fn, loss, batch_size, optimizer, exploration, target_samples=None):
    value_and_grad = jax.value_and_grad(_loss_fn(process, logdensity_fn, loss, batch_size, target_samples),
                                        has_aux=True)  # fmt: skip

    def one(carry, index):
        params, opt_state, key = carry
        explore = exploration(index) if callable(exploration) else exploration
        (value, record), grads = value_and_grad(params, jax.random.fold_in(key, index), explore)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        # A non-finite loss (a path through a NaN of the target: its gradient is that of the
        # target truncated to where it is finite) or gradient leaves parameters and optimizer
        # state as they were: no step toward a truncated target, no NaN in Adam's moments.
        finite = jnp.isfinite(value) & jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        keep = lambda new, old: jnp.where(finite, new, old)
        params = jax.tree.map(keep, new_params, params)
        opt_state = jax.tree.map(keep, new_opt_state, opt_state)
        return (params, opt_state, key), record._replace(skipped=~finite)

    def run_chunk(carry, indices):
        return jax.lax.scan(one, carry, indices)

    return jax.jit(run_chunk)


def _check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidTuningError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def train_sampler(
    logdensity_fn: Callable,
    dim: int,
    rng_key,
    *,
    method: str = "dds",
    loss: str = "kl",
    num_steps: int = 100,
    batch_size: int = 300,
    optimizer: optax.GradientTransformation = optax.adam(1e-3),
    num_iterations: int = 1000,
    init_std: float = 1.0,
    horizon: float = 1.0,
    schedule: VP | None = None,
    width: int = 64,
    depth: int = 2,
    grad_clip: float = 100.0,
    checkpoint=None,
    progress: bool = True,
    chunk_length: int | None = None,
    max_nonfinite_fraction: float = 0.0,
    exploration=0.0,
    target_samples=None,
    num_backward: int | None = None,
) -> TrainedSampler:
    """Train a DDS or PIS sampler of the unnormalised density ``exp(logdensity_fn)``.

    Examples
    --------
    .. code::

        target = psample.models.many_well()
        sampler = psample.diffusion.train_sampler(target.logdensity_fn, 32, jax.random.key(0),
                                                  method="dds", num_iterations=5000)
        result = sampler.sample(jax.random.key(1), 2000)
        print(result.log_Z_mean, "+-", result.log_Z_se, "ELBO", result.elbo)

    Parameters
    ----------
    logdensity_fn
        ``(dim,) -> scalar`` unnormalised log-density (or a :class:`psample.Target` on a flat
        vector).
    dim
        Dimension of the target.
    rng_key
        A JAX PRNG key (network initialisation and every path); required.
    method
        ``"dds"`` (OU reference from ``N(0, init_std² I)``) or ``"pis"`` (Brownian reference
        from 0); see :mod:`psample.diffusion.processes`.
    loss
        ``"kl"``, ``"log_variance"`` or ``"trajectory_balance"``
        (:doc:`family page </families/diffusion>`).
    num_steps
        Sampler steps ``K >= 1``.
    batch_size
        Paths per iteration (``>= 2``).
    optimizer
        An optax optimizer (default ``optax.adam(1e-3)``).
    num_iterations
        Optimizer steps (``>= 1``); with a checkpoint, the total including resumed ones.
    init_std
        ``s``: DDS's reference standard deviation, PIS's diffusion coefficient.
    horizon
        PIS's time horizon ``T`` (its reference ends at ``N(0, s² T I)``).
    schedule
        DDS's :class:`psample.diffusion.VP` schedule (default ``VP()``: ``beta`` 0.1 to 20).
    width, depth, grad_clip
        The drift network (:class:`psample.diffusion.networks.DriftNetwork`).
    checkpoint
        Path of a ``.npz`` file: written after every chunk (parameters, optimizer state, losses);
        if it exists, training resumes from it (same arguments required).
    progress
        A progress bar with the loss (in a terminal or a notebook; off in pipes and CI).
    chunk_length
        Iterations per jitted chunk (default: the driver's, about a second each when watched).
    max_nonfinite_fraction
        Largest fraction of the reference process's draws at which ``logdensity_fn`` (or its
        gradient) may be non-finite before training starts (default 0: any is refused). During
        training, an iteration whose batch meets a NaN or ``+inf`` (its loss or gradient is not
        finite) is skipped: parameters and optimizer state stay as they were, since its
        gradient would be that of the target truncated to where it is finite.
    exploration
        Off-policy exploration of the ``"log_variance"`` and ``"trajectory_balance"`` losses:
        a standard deviation added (in quadrature) to every step's noise of the training paths,
        either a float ``>= 0`` or a function of the iteration index (an optax schedule, e.g.
        ``optax.linear_schedule(0.2, 0.0, 5000)``, Sendera et al.'s decaying exploration). The
        trained sampler's own kernels, and so its weights, are unaffected.
    target_samples
        Optional ``(M, dim)`` approximate draws from the target (an MCMC or SMC population,
        points found by a search; exact draws are not needed) for the off-policy losses: every
        batch also holds ``num_backward`` paths of the backward (noising) process started at
        uniformly chosen rows (Sendera et al.'s backward paths from a buffer). They teach the
        sampler modes that its own paths miss, which the reverse-KL-like on-policy signal
        cannot (an on-policy sampler of a many-well target drops its light wells); the losses are valid under any path law, so the draws need not be exact and the
        sampler's weights stay exact.
    num_backward
        Backward paths per batch (default ``batch_size // 2``); only with ``target_samples``.

    Returns
    -------
    TrainedSampler
        ``sample(rng_key, num_particles)``, ``save(path)``, ``TrainedSampler.load(path)``; ``interrupted``
        when Ctrl-C stopped training (the parameters are those trained so far);
        ``history["num_nonfinite"]`` and ``history["skipped"]`` per iteration
        (:class:`TrainRecord`).

    Warns
    -----
    NumericalWarning
        Some iterations were skipped or some target evaluations were NaN or ``+inf`` (a
        non-finite gradient at a finite value too): both counts. Paths ending where the target
        is ``-inf`` (zero density) are legitimate: they leave the loss and are not counted.

    Raises
    ------
    InvalidTuningError
        An unknown method or loss, ``num_steps < 1``, ``batch_size < 2``, bad values,
        ``target_samples`` with the KL loss or with non-finite rows, ``num_backward`` without
        ``target_samples``.
    ShapeError
        ``logdensity_fn`` does not map a ``(dim,)`` vector to a scalar; ``target_samples`` not
        shaped ``(M, dim)``.
    ModelError
        ``logdensity_fn`` or its gradient is not finite at too many reference draws (the
        message gives the fraction).
    CheckpointError
        ``checkpoint`` holds another run, or is damaged.
    NonFiniteError
        No iteration had a finite loss (``error.result`` is the untrained sampler).
    """
    logdensity_fn = getattr(logdensity_fn, "logdensity_fn", logdensity_fn)
    method = _check_choice("method", method, METHODS)
    loss = _check_choice("loss", loss, LOSSES)
    num_steps = check_positive_int("num_steps", num_steps)
    batch_size = check_positive_int("batch_size", batch_size, minimum=2)
    num_iterations = check_positive_int("num_iterations", num_iterations)
    if chunk_length is not None:
        chunk_length = check_positive_int("chunk_length", chunk_length)
    init_std = check_positive("init_std", init_std)
    horizon = check_positive("horizon", horizon)
    schedule = VP() if schedule is None else schedule
    if not isinstance(schedule, VP):
        raise InvalidTuningError(
            f"schedule must be a psample.diffusion.VP (DDS's reference is the stationary OU process), got {schedule!r}"
        )
    if not hasattr(optimizer, "init") or not hasattr(optimizer, "update"):
        raise InvalidTuningError(f"optimizer must be an optax.GradientTransformation, got {optimizer!r}")
    if callable(exploration):
        if loss == "kl":
            raise InvalidTuningError("exploration needs an off-policy loss ('log_variance' or 'trajectory_balance'), "
                                     "got loss='kl'")  # fmt: skip
    else:
        try:
            exploration = float(exploration)
        except (TypeError, ValueError):
            raise InvalidTuningError(f"exploration must be a number >= 0 or a schedule, got {exploration!r}") from None
        if not 0.0 <= exploration < float("inf"):
            raise InvalidTuningError(f"exploration must be a finite number >= 0, got {exploration!r}")
        if exploration > 0 and loss == "kl":
            raise InvalidTuningError(f"exploration={exploration} needs an off-policy loss ('log_variance' or "
                                     "'trajectory_balance'), got loss='kl'")  # fmt: skip
    dim = check_logdensity(logdensity_fn, dim)
    target_samples = _check_target_samples(target_samples, num_backward, dim, loss, batch_size)
    network = DriftNetwork(dim, width=check_positive_int("width", width), depth=check_positive_int("depth", depth),
                           grad_clip=check_positive("grad_clip", grad_clip))  # fmt: skip
    process = Process(method, dim, num_steps, init_std, horizon, schedule, network)
    check_reference_finite(logdensity_fn, dim, process.terminal_reference(), rng_key,
                           max_fraction=max_nonfinite_fraction, gradient=True)  # fmt: skip

    init_key, train_key = jax.random.split(rng_key)
    params = _init_params(process, loss, init_key)
    opt_state = optimizer.init(params)
    start, losses = 0, np.zeros((0, len(TrainRecord._fields)))
    config = _process_config(process)
    config.update(loss=loss, batch_size=batch_size, fingerprint=_fingerprint(logdensity_fn, dim).tolist())
    if callable(exploration) or exploration > 0:
        config["exploration"] = "schedule" if callable(exploration) else exploration
    if target_samples is not None:
        config.update(target_samples=target_samples.digest, num_backward=target_samples.num_backward)
    if checkpoint is not None and os.path.exists(checkpoint):
        params, opt_state, train_key, start, losses = _resume(checkpoint, config, params, opt_state)
    carry = (params, opt_state, train_key)

    on_chunk = None
    if checkpoint is not None:
        history = [losses]

        def on_chunk(carry, records, num_done):
            history.append(_record_array(records))
            _write_checkpoint(checkpoint, config, carry, start + num_done, np.concatenate(history))

    def postfix(records):
        return {"loss": f"{float(records.loss[-1]):.4g}", "elbo": f"{float(records.elbo[-1]):.4g}"}

    began = time.perf_counter()
    if start < num_iterations:
        chunk = _build_chunk(process, logdensity_fn, loss, batch_size, optimizer, exploration, target_samples)
        result = driver.drive(chunk, carry, start,
                              num_iterations, chunk_length=chunk_length, bytes_per_step=8 * len(TrainRecord._fields), progress=progress, desc="training",
                              unit="it", on_chunk=on_chunk, postfix=postfix)  # fmt: skip
        params = result.carry[0]
        new = [_record_array(r) for r in result.records]
        losses = np.concatenate([losses] + new) if new else losses
        interrupted = result.interrupted
    else:
        interrupted = False
    seconds = time.perf_counter() - began
    if interrupted:
        warnings.warn(f"training interrupted after {len(losses)} of {num_iterations} iterations: the "
                      "sampler has the parameters trained so far (its weights stay exact)", RuntimeWarning,
                      stacklevel=2)  # fmt: skip
    sampler = TrainedSampler(logdensity_fn, process, jax.device_get(params), losses[:, 0], loss,
                             interrupted=interrupted, train_seconds=seconds,
                             history={"elbo": losses[:, 1], "log_Z": losses[:, 2], "num_nonfinite": losses[:, 3],
                                      "skipped": losses[:, 4].astype(bool)})  # fmt: skip
    _check_nonfinite(sampler)
    return sampler


def _check_nonfinite(sampler: TrainedSampler) -> None:
    """Warn (:class:`NumericalWarning`) when training met non-finite losses or target values;
    refuse (:class:`NonFiniteError`, the sampler attached) when no iteration had a finite loss."""
    skipped = sampler.history["skipped"]
    count = sampler.history["num_nonfinite"]
    num_skipped, num_bad = int(np.sum(skipped)), int(np.nansum(count))
    if num_skipped == 0 and num_bad == 0:
        return
    total = len(skipped)
    what = (f"{num_skipped} of {total} iterations had a non-finite loss or gradient (their updates were "
            f"skipped: parameters and optimizer state left as they were); logdensity_fn returned NaN or "
            f"+inf, or a non-finite gradient at a finite value, at {num_bad} evaluations along the training "
            "paths (a batch whose paths all end where logdensity_fn is -inf, zero density, has no finite loss either)")  # fmt: skip
    if num_skipped == total:
        raise NonFiniteError(f"train_sampler: no iteration had a finite loss: {what}. NaN is not zero density: "
                             "make logdensity_fn finite where the paths go (-inf for zero density is fine for the "
                             "off-policy losses), or lower the learning rate of optimizer", result=sampler)  # fmt: skip
    warnings.warn(f"train_sampler: {what}. The sampler trained on the other iterations, and its weights stay "
                  "exact where logdensity_fn is finite; a NaN is not zero density, so make logdensity_fn finite "
                  "where the paths go (-inf where the density is zero), or, if it is, lower the learning rate of "
                  "optimizer", NumericalWarning, stacklevel=3)  # fmt: skip


def _check_target_samples(target_samples, num_backward, dim: int, loss: str, batch_size: int):
    """Validate ``target_samples``/``num_backward``; returns a :class:`_TargetSamples` or None."""
    if target_samples is None:
        if num_backward is not None:
            raise InvalidTuningError(f"num_backward={num_backward!r} needs target_samples, got target_samples=None")
        return None
    if loss == "kl":
        raise InvalidTuningError("target_samples needs an off-policy loss ('log_variance' or 'trajectory_balance'), "
                                 "got loss='kl'")  # fmt: skip
    samples = np.asarray(target_samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] != dim or samples.shape[0] < 1:
        raise ShapeError(f"target_samples must have shape (M, dim={dim}) with M >= 1, got {samples.shape}")
    if not np.all(np.isfinite(samples)):
        bad = int(np.sum(~np.all(np.isfinite(samples), axis=1)))
        raise InvalidTuningError(f"target_samples must be finite, got {bad} rows with NaN or inf")
    num_backward = max(batch_size // 2, 1) if num_backward is None else check_positive_int("num_backward", num_backward)
    return _TargetSamples(samples, num_backward)


def _record_array(records: TrainRecord) -> np.ndarray:
    """``(iterations, 5)`` float64: the :class:`TrainRecord` fields as columns."""
    return np.stack([np.asarray(x, dtype=np.float64) for x in records], axis=1)


def _write_checkpoint(path, config, carry, iteration: int, losses) -> None:
    params, opt_state, key = carry
    leaves = jax.tree.leaves((params, opt_state))
    meta = dict(config, format=_FORMAT, iteration=int(iteration))
    arrays = {f"leaf_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    _atomic_savez(path, config=np.array(json.dumps(meta)), losses=np.asarray(losses),
                  key=np.asarray(jax.random.key_data(key)), **arrays)  # fmt: skip


def _resume(path, config, params, opt_state):
    saved, arrays = _read(path, _FORMAT, "a psample training checkpoint")
    differ = {k: (saved.get(k), v) for k, v in config.items()
              if k != "fingerprint" and saved.get(k) != v}  # fmt: skip
    if differ or not np.allclose(saved.get("fingerprint"), config["fingerprint"], rtol=1e-5, atol=1e-6):
        what = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in differ.items()) or "the log-density differs"
        raise CheckpointError(f"checkpoint {str(path)!r} holds another training run ({what})")
    params, opt_state = _unflatten((params, opt_state), arrays, path)
    key = jax.random.wrap_key_data(jnp.asarray(arrays["key"]))
    losses = np.asarray(arrays["losses"], dtype=np.float64)
    columns = len(TrainRecord._fields)
    if losses.ndim == 2 and losses.shape[1] == 3:
        # A checkpoint written before the counts were recorded: unknown counts (NaN), and an
        # iteration with a non-finite loss was not skipped then, but is marked as such.
        losses = np.concatenate([losses, np.full((len(losses), 1), np.nan), ~np.isfinite(losses[:, :1])], axis=1)
    return params, opt_state, key, int(saved["iteration"]), losses.reshape(-1, columns)
