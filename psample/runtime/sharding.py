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

Limits: one process's local devices by default; meshes spanning several processes must be
passed explicitly (``mesh=``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from psample.errors import CheckpointError, InvalidTuningError, ShapeError

__all__ = ["CHAIN_AXIS", "chain_mesh", "place", "place_replicated", "placement", "mesh_from_placement"]

#: The mesh axis chains (and particle replicates) are sharded along.
CHAIN_AXIS = "chains"


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
