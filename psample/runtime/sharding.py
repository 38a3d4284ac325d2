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

Several processes (``jax.distributed``)
---------------------------------------
Every process runs the same script with the same arguments. Without ``mesh=``, the chains go
over ``jax.devices()``, the devices of every process, in JAX's order (process 0's first), so
chain ``i`` sits on the same mesh position as in one process with as many devices, and the
draws are those of that run bit for bit (each chain's key depends on its index alone). The
helpers below are the only places the runners talk across processes:

- :func:`to_host` brings a pytree to the host whole on every process
  (``jax.experimental.multihost_utils.process_allgather`` for arrays spread over processes);
- :func:`broadcast_object` sends a picklable object from process 0 to all (a checkpoint read
  by process 0 alone, or the error it raised);
- :func:`on_first_process` runs an action on process 0 alone (the checkpoint's reads and
  writes) and raises its error on every process;
- :func:`any_process` tells every process whether any of them raised a flag (the chunk
  driver's Ctrl-C agreement);
- :func:`topology` is what a checkpoint records of the processes.

Each of them is a collective: every process must call it, in the same order, or they wait.

Limits: one process's local devices by default in one process; with several processes, chains
that do not divide evenly over all devices run whole on every process (each process computes
every chain, as one process would).

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

Without ``mesh=``, :func:`population_mesh` spreads replicates (never one population) over the
devices; a population split over devices, or over several processes' devices, needs an explicit
``mesh=`` with a ``"particles"`` axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from psample.errors import CheckpointError, InvalidTuningError, ShapeError

__all__ = [
    "CHAIN_AXIS", "chain_mesh", "place", "place_replicated", "placement", "mesh_from_placement",
    "is_multiprocess", "to_host", "broadcast_object", "any_process", "topology", "describe_topology", "on_first_process",
    "PARTICLE_AXIS", "population_mesh", "population_shardings",
]

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
        ``devices``, all devices when they divide ``num_chains`` evenly, else ``None``: the
        local ones in one process, those of every process under ``jax.distributed``.

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
        devices = jax.devices() if is_multiprocess() else jax.local_devices()
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


def is_multiprocess() -> bool:
    """Whether this is one of several processes joined by ``jax.distributed``."""
    return jax.process_count() > 1


def topology() -> dict:
    """What a checkpoint records of the processes: ``{"processes", "devices_per_process"}``."""
    return {"processes": int(jax.process_count()), "devices_per_process": int(jax.local_device_count())}


def describe_topology(recorded: dict | None) -> str:
    """``"2 processes x 2 devices"``: a topology (:func:`topology`) in words."""
    recorded = recorded or {"processes": 1, "devices_per_process": None}
    processes, devices = recorded["processes"], recorded.get("devices_per_process")
    words = f"{processes} process{'es' if processes != 1 else ''}"
    return words if devices is None else f"{words} x {devices} device{'s' if devices != 1 else ''}"


def to_host(tree):
    """``tree`` as NumPy arrays, whole on every process.

    Leaves split over several processes' devices are gathered with
    ``jax.experimental.multihost_utils.process_allgather`` (a collective: every process calls
    this with the same tree structure); the others (local, or whole on every device) are copied
    with ``jax.device_get``.
    ``None`` leaves stay ``None``.
    """
    leaves, treedef = jax.tree.flatten(tree)
    spread = [
        i for i, leaf in enumerate(leaves)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and not leaf.is_fully_replicated
    ]  # fmt: skip
    out = list(jax.device_get([None if i in spread else leaf for i, leaf in enumerate(leaves)]))
    if spread:
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather([leaves[i] for i in spread], tiled=True)
        for i, value in zip(spread, gathered):
            out[i] = value
    return jax.tree.unflatten(treedef, [np.asarray(x) if x is not None else x for x in out])


def broadcast_object(obj):
    """``obj`` (picklable) of process 0, returned on every process; ``obj`` itself in one process.

    A collective: every process calls it (what the others pass is ignored).
    """
    if not is_multiprocess():
        return obj
    import pickle

    from jax.experimental import multihost_utils

    first = jax.process_index() == 0
    payload = np.frombuffer(pickle.dumps(obj), dtype=np.uint8) if first else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(payload.size)))
    if not first:
        payload = np.zeros(size, np.uint8)
    data = np.asarray(multihost_utils.broadcast_one_to_all(payload), dtype=np.uint8)
    return obj if first else pickle.loads(data.tobytes())


def any_process(flag: bool, values=()) -> tuple[bool, tuple]:
    """Whether ``flag`` is true on any process, and process 0's ``values`` (small floats).

    In one process: ``(flag, values)``. A collective: every process calls it, with as many values.
    """
    if not is_multiprocess():
        return bool(flag), tuple(values)
    from jax.experimental import multihost_utils

    local = np.array([float(flag), *values], dtype=np.float32)
    gathered = np.asarray(multihost_utils.process_allgather(local))
    return bool(gathered[:, 0].any()), tuple(float(v) for v in gathered[0, 1:])


def on_first_process(action, what: str = "failed"):
    """``action()`` on process 0 alone (in one process: just called); its error raised on every process.

    Returns what ``action`` returned on process 0 and ``None`` on the others. The others raise
    the same exception (pickled), or a :class:`~psample.errors.RunError` saying that process 0
    ``what`` when it cannot be pickled. A collective: every process calls it at the same point.
    """
    if not is_multiprocess():
        return action()
    import pickle

    value, error, sent = None, None, None
    if jax.process_index() == 0:
        try:
            value = action()
        except Exception as exc:  # noqa: BLE001 - sent to the other processes, then re-raised
            error = exc
            try:
                sent = pickle.loads(pickle.dumps(exc))
            except Exception:  # noqa: BLE001
                sent = f"process 0 {what} ({type(exc).__name__}: {exc})"
    failure = broadcast_object(sent)
    if error is not None:
        raise error
    if isinstance(failure, BaseException):
        raise failure
    if failure is not None:
        from psample.errors import RunError

        raise RunError(failure)
    return value


# One population over devices (run_particles(..., mesh=)).


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

