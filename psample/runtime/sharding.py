"""Device placement for the runners: the ``"chains"`` mesh axis, written once.

Independent chains (:func:`psample.sample`) and independent particle populations
(:func:`psample.run_particles`, one per replicate) are both a leading batch axis of every
leaf, vmapped. With several devices that axis is sharded along the ``"chains"`` axis of a
``jax.sharding.Mesh`` (``jax.sharding.NamedSharding`` with ``PartitionSpec("chains")``), so each
device runs its share of the chains and no collective is needed: the draws are those of one
device. A sampler that distributes its own work (ADMM's agents on a ``"shards"`` axis) runs on a
two-dimensional mesh whose ``"chains"`` axis carries the chains.

Contract
--------
- :func:`chain_mesh` chooses the mesh: the user's (validated), or all local devices when the
  batch divides evenly among them, or ``None`` (one device, nothing placed).
- :func:`place` shards the leading axis of a pytree; :func:`place_replicated` puts a pytree
  whose leaves are not all per chain (a pooled adaptation's carry) whole on every device.
- :func:`placement` / :func:`mesh_from_placement` turn a mesh into the plain dictionary a
  checkpoint stores (device ids, shape, axis names) and back, on the same devices when they
  exist, so a resumed run is sharded as the original was.

One particle population can also be split over devices: :func:`population_mesh` validates a
mesh with a ``"particles"`` axis (and optionally ``"chains"`` for replicates) and
:func:`population_shardings` gives every leaf of a batch of particle states its
``NamedSharding``: the replicate axis on ``"chains"``, the particle axis (axis 1) on
``"particles"``, everything else replicated. Under ``jax.jit`` with these shardings XLA's SPMD
partitioner runs the per-particle work where the particles live and turns the reductions over
the particle axis (log-sum-exp for log Z and the ESS, the tempering bisection, the weighted
moments that tune the moves) into collectives. Resampling is global and exact
(:func:`psample.smc.base.resample_if`, traced under the mesh): the weights are all-gathered,
every device computes the ``blackjax.smc.resampling`` indices of the whole population (those of
one device, bit for bit), and the ancestors travel between devices in a ring of
``lax.ppermute`` (``jax.shard_map``), so no device ever holds the whole population.

Limits: one process's local devices by default for :func:`chain_mesh`; meshes spanning several
processes must be passed explicitly (``mesh=``), except for :func:`population_mesh`, which
spreads replicates over every process's devices under ``jax.distributed``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from psample.errors import CheckpointError, InvalidTuningError, ShapeError

__all__ = ["CHAIN_AXIS", "chain_mesh", "place", "place_replicated", "placement", "mesh_from_placement"]

#: The mesh axis chains (and particle replicates) are sharded along.
CHAIN_AXIS = "chains"
#: The mesh axis one particle population is split along.
PARTICLE_AXIS = "particles"


def chain_mesh(num_chains: int, mesh: Mesh | None = None, devices=None) -> Mesh | None:
    """The mesh whose ``"chains"`` axis ``num_chains`` chains are sharded along, or ``None``.

    Parameters
    ----------
    num_chains : int
        Size of the leading batch axis (chains or replicates).
    mesh : jax.sharding.Mesh, optional
        The user's mesh. A mesh without a ``"chains"`` axis, or with one of size 1, places
        nothing (``None``); the axis size must divide ``num_chains``.
    devices : sequence of jax.Device, optional
        The devices of a one-axis ``"chains"`` mesh (the deprecated ``devices=`` of
        :func:`psample.sample`); they must divide ``num_chains``.

    Returns
    -------
    jax.sharding.Mesh or None
        ``None`` means one device: leave the arrays where they are. Without ``mesh`` and
        ``devices``, all local devices when they divide ``num_chains`` evenly, else ``None``.

    Raises
    ------
    InvalidTuningError
        ``mesh`` and ``devices`` both given, or ``mesh`` not a ``Mesh``.
    ShapeError
        The chains cannot be split evenly over the given devices.
    """
    if mesh is not None:
        if devices is not None:
            raise InvalidTuningError("pass mesh= or devices= (deprecated), not both")
        if not isinstance(mesh, Mesh):
            raise InvalidTuningError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
        if CHAIN_AXIS not in mesh.axis_names:
            return None
        size = mesh.shape[CHAIN_AXIS]
        if num_chains % size:
            raise ShapeError(
                f"{num_chains} chains cannot be split evenly over the mesh's {size} {CHAIN_AXIS!r} devices"
            )
        return mesh if size > 1 else None
    if devices is None:
        devices = jax.local_devices()
        if len(devices) == 1 or num_chains % len(devices):
            return None
    devices = list(devices)
    if len(devices) == 1:
        return None
    if num_chains % len(devices):
        raise ShapeError(f"{num_chains} chains cannot be split evenly over {len(devices)} devices")
    return Mesh(np.array(devices), (CHAIN_AXIS,))


def place(tree, mesh: Mesh | None):
    """``tree`` as JAX arrays, every leaf's leading (chain) axis on the mesh's ``"chains"`` axis.

    Leaves ``(num_chains, ...)``; ``mesh=None`` only converts them to arrays.
    """
    tree = jax.tree.map(jnp.asarray, tree)
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(CHAIN_AXIS)))


def place_replicated(tree, mesh: Mesh | None):
    """``tree`` as JAX arrays, whole on every device of ``mesh`` (leaves of any shape)."""
    tree = jax.tree.map(jnp.asarray, tree)
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def placement(mesh: Mesh | None) -> dict | None:
    """What a checkpoint records of ``mesh``: ``{"device_ids", "shape", "axis_names"}`` (plain
    lists), or ``None`` for one device."""
    if mesh is None:
        return None
    return {
        "device_ids": [int(d.id) for d in mesh.devices.flat],
        "shape": list(mesh.devices.shape),
        "axis_names": list(mesh.axis_names),
    }


def mesh_from_placement(recorded: dict | None) -> Mesh | None:
    """The mesh a checkpoint recorded (:func:`placement`), on the same devices when they exist,
    else on as many local devices.

    Raises
    ------
    CheckpointError
        Fewer local devices than the run was sharded over.
    """
    if not recorded:
        return None
    by_id = {d.id: d for d in jax.devices()}
    ids = recorded["device_ids"]
    if all(i in by_id for i in ids):
        devices = [by_id[i] for i in ids]
    elif len(jax.local_devices()) >= len(ids):
        devices = jax.local_devices()[: len(ids)]
    else:
        raise CheckpointError(
            f"the run was sharded over {len(ids)} devices and only {len(jax.local_devices())} are "
            "available: pass mesh= to resume it on others"
        )
    return Mesh(np.array(devices).reshape(recorded["shape"]), tuple(recorded["axis_names"]))


# One population over devices (run_particles(..., mesh=)).
__all__ += ["PARTICLE_AXIS", "population_mesh", "population_shardings", "to_host"]


def population_mesh(num_replicates: int, num_particles: int, mesh: Mesh | None = None) -> Mesh | None:
    """The mesh :func:`psample.run_particles` places its populations on, or ``None``.

    Parameters
    ----------
    num_replicates : int
        Independent populations (sharded along ``"chains"``).
    num_particles : int
        Particles per population (sharded along ``"particles"``).
    mesh : jax.sharding.Mesh, optional
        The user's mesh: axes ``"chains"`` and/or ``"particles"`` (others must have size 1).
        Without it: replicates over all devices of all processes (under
        ``jax.distributed``, when they divide evenly), else over the local devices as
        :func:`chain_mesh` does.

    Returns
    -------
    jax.sharding.Mesh or None
        A mesh with ``Auto`` axis types (an ``Explicit`` mesh from ``jax.make_mesh`` is rebuilt
        on the same devices: the runner places arrays with ``NamedSharding`` and lets XLA
        partition), or ``None`` for one device.

    Raises
    ------
    InvalidTuningError
        ``mesh`` not a ``Mesh``, or with another axis of size > 1.
    ShapeError
        The replicates or the particles cannot be split evenly over their axis.
    """
    if mesh is None:
        devices = jax.devices()
        if jax.process_count() > 1 and len(devices) > 1 and num_replicates % len(devices) == 0:
            return Mesh(np.array(devices), (CHAIN_AXIS,))
        return chain_mesh(num_replicates)
    if not isinstance(mesh, Mesh):
        raise InvalidTuningError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    other = {name: size for name, size in mesh.shape.items() if name not in (CHAIN_AXIS, PARTICLE_AXIS) and size > 1}
    if other:
        raise InvalidTuningError(
            f"run_particles places replicates on a {CHAIN_AXIS!r} and particles on a {PARTICLE_AXIS!r} mesh "
            f"axis; this mesh also has {other}"
        )
    for axis, count, what in ((CHAIN_AXIS, num_replicates, "replicates"), (PARTICLE_AXIS, num_particles, "particles")):
        size = mesh.shape.get(axis, 1)
        if count % size:
            raise ShapeError(f"{count} {what} cannot be split evenly over the mesh's {size} {axis!r} devices")
    if mesh.shape.get(CHAIN_AXIS, 1) * mesh.shape.get(PARTICLE_AXIS, 1) == 1:
        return None
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def population_shardings(states, mesh: Mesh, num_particles: int):
    """``NamedSharding`` of every leaf of a batch of particle states (shapes or arrays).

    A leaf ``(replicate, ...)`` has its replicate axis on ``"chains"`` (when the mesh has it);
    a leaf ``(replicate, num_particles, ...)`` also has its axis 1 on ``"particles"``: the
    per-particle fields (``particles``, ``log_weights``, ``eve``, ...). Leaves are told apart by
    shape, so a per-replicate field whose second axis happens to equal ``num_particles`` is split
    too (harmless: only its placement changes).
    """
    chains = CHAIN_AXIS if CHAIN_AXIS in mesh.axis_names else None
    particles = PARTICLE_AXIS if PARTICLE_AXIS in mesh.axis_names else None

    def spec(leaf):
        shape = tuple(getattr(leaf, "shape", ()))
        if not shape:
            return NamedSharding(mesh, PartitionSpec())
        if len(shape) >= 2 and shape[1] == num_particles:
            return NamedSharding(mesh, PartitionSpec(chains, particles))
        return NamedSharding(mesh, PartitionSpec(chains))

    return jax.tree.map(spec, states)


def to_host(tree):
    """``tree`` as NumPy arrays on this process, whole: ``jax.device_get``, or
    ``jax.experimental.multihost_utils.process_allgather`` for arrays spread over processes."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree.map(get, tree)
