"""The reweight/resample step every particle method shares.

The particle-algorithm contract itself (:class:`~psample.base.ParticleAlgorithm`, the resampling
schemes by name) is declared in :mod:`psample.base` and re-exported here. A particle algorithm
moves one weighted population; :func:`psample.run_particles` runs many independent populations
(replicates) of it.

State contract (field names, like ``position``/``logdensity`` for chains):

- ``particles``: pytree, every leaf with a leading particle axis ``(N, ...)``;
- ``log_weights``: ``(N,)``, normalised (``logsumexp(log_weights) == 0``);
- ``log_Z``: ``()``, the running estimate of ``log(Z_t / Z_0)``;
- optionally ``eve`` ``(N,)`` (index of each particle's ancestor in the initial population)
  and ``num_resampled`` ``()`` (resampling events so far), from which the runner computes the
  single-run variance estimator of Lee and Whiteley [2].

Info contract: ``ess`` (effective sample size after reweighting, before resampling),
``log_Z_increment`` and ``is_resampled``; optionally ``num_nonfinite`` (int: evaluations of the
user's function this step that returned NaN or ``+inf`` for a log-density, or any non-finite
entry for a score), which :func:`psample.run_particles` sums into an end-of-run warning.

The log-normaliser increment is ``log sum_i W_i g_i`` with the *normalised* weights ``W`` the
population carries into the step and the incremental weights ``g``: it is right whether or not
the previous step resampled. Writing ``log mean_i g_i`` instead (which assumes equal weights) is
the classic bug of adaptive-resampling code ([1], §3.5; [3], eq. 17).

See the :doc:`family page </families/tempered_smc>` for the method, tuning and measured limits.

References
----------
.. [1] Pierre Del Moral, Arnaud Doucet and Ajay Jasra, "Sequential Monte Carlo samplers",
   Journal of the Royal Statistical Society B 68(3), 411-436, 2006.
.. [2] Anthony Lee and Nick Whiteley, "Variance estimation in the particle filter",
   Biometrika 105(3), 609-625, 2018. arXiv:1509.00394.
.. [3] Yan Zhou, Adam M. Johansen and John A. D. Aston, "Toward automatic model comparison:
   an adaptive sequential Monte Carlo approach", Journal of Computational and Graphical
   Statistics 25(3), 701-726, 2016. arXiv:1303.3123.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.smc import ess as smc_ess
from blackjax.types import Array, ArrayTree, PRNGKey
from jax.scipy.special import logsumexp

from psample.base import RESAMPLING, ParticleAlgorithm, is_nonfinite_logdensity, resampling_fn

#: The mesh axis a population is split along (``psample.runtime.sharding.PARTICLE_AXIS``).
PARTICLE_AXIS = "particles"

__all__ = [
    "ParticleAlgorithm",
    "RESAMPLING",
    "resampling_fn",
    "Reweighted",
    "reweight",
    "resample_if",
    "count_nonfinite_logdensity",
    "count_nonfinite_score",
]


class Reweighted(NamedTuple):
    """A population reweighted by incremental log-weights (see :func:`reweight`)."""

    log_weights: Array  # (N,) normalised
    log_Z_increment: Array  # ()
    ess: Array  # ()

    def ess_below(self, threshold) -> Array:
        """Whether to resample at an ESS threshold (a fraction of ``N``, possibly traced):
        the ESS is below ``threshold * N``, or ``threshold >= 1`` (every step)."""
        return (self.ess < threshold * self.log_weights.shape[0]) | (threshold >= 1.0)


def reweight(log_weights: Array, log_increments: Array) -> Reweighted:
    """Multiply normalised weights by incremental weights ``exp(log_increments)``.

    Parameters
    ----------
    log_weights
        ``(N,)`` normalised log-weights the population carries into the step.
    log_increments
        ``(N,)`` incremental log-weights ``log g_i``; NaN and ``+inf`` count as ``-inf``
        (weight zero: an infinite weight would make every other weight NaN). Both come from
        non-finite user-function values, which the caller counts (``info.num_nonfinite``) so
        that the runner warns: they are never a silent zero.

    Returns
    -------
    Reweighted
        The new normalised log-weights, ``log sum_i W_i g_i`` (the log-normaliser increment,
        right whatever the previous step's resampling) and the ESS of the new weights
        (``blackjax.smc.ess``).
    """
    log_increments = jnp.where(is_nonfinite_logdensity(log_increments), -jnp.inf, log_increments)
    unnormalised = log_weights + log_increments
    increment = logsumexp(unnormalised)
    new = unnormalised - increment
    return Reweighted(new, increment, smc_ess.ess(new))


def resample_if(
    rng_key: PRNGKey,
    do_resample: Array,
    particles: ArrayTree,
    log_weights: Array,
    eve: Array,
    resample: Callable,
):
    """Resample the population when ``do_resample`` (a traced bool), else keep it.

    Traced under a mesh with a ``"particles"`` axis (:func:`psample.run_particles` with
    ``mesh=``), the resampling stays global and exact over the split population: the indices
    are computed on every device from all ``N`` weights, and the ancestors are copied between
    devices in a ring (:func:`_take_ancestors`); the result is that of one device, bit for bit.

    Returns
    -------
    particles, log_weights, eve
        Resampled particles with equal weights ``-log N`` and their ancestors' Eve indices, or
        the inputs unchanged.
    """
    num_particles = log_weights.shape[0]
    weights = _whole_population(jnp.exp(log_weights))
    indices = _whole_population(resample(rng_key, weights, num_particles))
    indices = jnp.where(do_resample, indices, jnp.arange(num_particles))
    particles, eve = _take_ancestors((particles, eve), indices)
    uniform = jnp.full_like(log_weights, -jnp.log(num_particles))
    return particles, jnp.where(do_resample, uniform, log_weights), eve


def _particle_axis_size() -> int:
    mesh = jax.sharding.get_abstract_mesh()
    return 1 if mesh.empty or PARTICLE_AXIS not in mesh.axis_names else mesh.shape[PARTICLE_AXIS]


def _take_ancestors(tree: ArrayTree, indices: Array) -> ArrayTree:
    """``x[indices]`` for every leaf ``(N, ...)``; ``indices`` ``(N,)`` whole on every device.

    Under a ``"particles"`` mesh axis of ``P`` devices (``jax.shard_map``), each device fills
    its own ``N/P`` output rows while the blocks of particles travel once around a ring
    (``P - 1`` ``lax.ppermute``): at any time a device holds two blocks, never the whole
    population, and the rows are copied, so the result is that of one device bit for bit.
    """
    size = _particle_axis_size()
    if size == 1:
        return jax.tree.map(lambda x: x[indices], tree)
    spec = jax.sharding.PartitionSpec(PARTICLE_AXIS)
    shift = [(j, (j - 1) % size) for j in range(size)]  # after r shifts, device i holds block i + r

    def local(blocks, indices):
        rows = jax.tree.leaves(blocks)[0].shape[0]
        me = jax.lax.axis_index(PARTICLE_AXIS)
        mine = jax.lax.dynamic_slice_in_dim(indices, me * rows, rows)

        def visit(r, carry):
            out, visiting = carry
            local = mine - ((me + r) % size) * rows
            hit = (local >= 0) & (local < rows)
            local = jnp.clip(local, 0, rows - 1)
            pick = lambda o, v: jnp.where(hit.reshape(hit.shape + (1,) * (v.ndim - 1)), v[local], o)
            out = jax.tree.map(pick, out, visiting)
            visiting = jax.lax.ppermute(visiting, PARTICLE_AXIS, shift)
            return out, visiting

        out, _ = jax.lax.fori_loop(0, size, visit, (jax.tree.map(jnp.zeros_like, blocks), blocks))
        return out

    specs = jax.tree.map(lambda _: spec, tree)
    return jax.shard_map(
        local, in_specs=(specs, jax.sharding.PartitionSpec()), out_specs=specs, axis_names={PARTICLE_AXIS}
    )(tree, indices)


def _whole_population(x: Array) -> Array:
    """``x`` whole on every device when the population is split over a ``"particles"`` mesh axis.

    The runner traces the step under the mesh (``jax.sharding.use_abstract_mesh``). Resampling
    then works on all ``N`` weights at once on every device (``N`` numbers, small next to the
    particles): the cumulative weights and the indices are those of one device, bit for bit,
    and cost no collective beyond one all-gather of the weights; left to the partitioner, the
    cumulative sum and ``searchsorted``'s binary search run as chains of collectives (hundreds
    of times slower on 4 emulated CPU devices). Without such a mesh ``x`` is returned as is.
    """
    if _particle_axis_size() == 1:
        return x
    return jax.lax.with_sharding_constraint(x, jax.sharding.PartitionSpec())


def count_nonfinite_logdensity(values: Array) -> Array:
    """Number of NaN or ``+inf`` entries of log-density values (``-inf``, zero density, is
    legitimate and not counted), as ``int32``."""
    return jnp.sum(is_nonfinite_logdensity(values)).astype(jnp.int32)


def count_nonfinite_score(values: Array) -> Array:
    """Number of particles (rows of the leading axis) whose score has any non-finite entry, as
    ``int32``."""
    bad = ~jnp.isfinite(jnp.reshape(values, (values.shape[0], -1)))
    return jnp.sum(jnp.any(bad, axis=1)).astype(jnp.int32)
