"""Sharded targets and their data: split, laid out on a mesh, loaded per process.

A D-ADMMS target is a prior and a per-shard log-likelihood (:class:`ShardedTarget`); the data
is a pytree whose leaves have a leading agent axis of equal-size shards (:func:`shard` splits an
array; shards are never padded, since a padded observation would change the likelihood).

Placement: the data (and the closed-form prox matrices) are laid out along the mesh's
``"shards"`` axis, a block of consecutive agents per device (:func:`_place`). On a mesh that
spans several processes (under ``jax.distributed.initialize``) they are global arrays of which
every process holds only its own devices' blocks: :func:`load_shards` asks a user ``loader``
for exactly those agents, so no process ever reads another's shards. Such arrays cannot be
constants of a compiled function; the runner passes them as arguments
(``ChainAlgorithm.hoisted_arguments``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from psample.errors import ShapeError, check_positive_int
from psample.mcmc.admm.network import SHARD_AXIS

__all__ = ["ShardedTarget", "shard", "load_shards"]


class ShardedTarget(NamedTuple):
    """A posterior split over data shards: ``logprior_fn(x) + sum_i loglik_fn(x, data_i)``."""

    logprior_fn: Callable
    loglik_fn: Callable


def shard(array, num_agents: int, *, name: str = "data"):
    """Split ``array`` along its first axis into ``num_agents`` equal shards.

    Returns an array of shape ``(num_agents, n / num_agents, ...)``. Shards must be of equal
    size (no padding: a padded observation would change the likelihood); drop or add
    observations so that ``num_agents`` divides their number.
    """
    num_agents = check_positive_int("num_agents", num_agents)
    array = jnp.asarray(array)
    if array.ndim == 0 or array.shape[0] % num_agents:
        raise ShapeError(
            f"{name} with {array.shape[0] if array.ndim else 0} observations (shape {array.shape}) cannot "
            f"be split into num_agents={num_agents} shards of equal size; shards are not padded"
        )
    return array.reshape(num_agents, array.shape[0] // num_agents, *array.shape[1:])


def _num_agents(data) -> int:
    leaves = jax.tree_util.tree_flatten_with_path(data)[0]
    if not leaves:
        raise ShapeError("data must be a pytree of arrays with a leading agent axis, got no arrays")
    sizes = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ShapeError(f"data leaf {jax.tree_util.keystr(path) or 'data'} is a scalar: it needs a leading agent axis")
        sizes[jax.tree_util.keystr(path) or "data"] = shape
    leading = {s[0] for s in sizes.values()}
    if len(leading) > 1:
        raise ShapeError(
            f"data leaves disagree on the number of agents (leading axis): {sizes}; every leaf needs "
            "the shape (num_agents, ...) with equal-size shards (see psample.mcmc.admm.shard)"
        )
    return leading.pop()


def _spans_processes(mesh: Mesh | None) -> bool:
    return mesh is not None and any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def _place(tree, mesh: Mesh | None):
    """Lay a pytree's leading (agent) axis out on the mesh's ``"shards"`` axis.

    Host arrays on a mesh that spans several processes become global arrays of which every
    process keeps only its own devices' blocks (copied from its host array); global arrays
    (e.g. from :func:`load_shards`) stay where they are when already laid out so.
    """
    if mesh is None:
        return jax.tree.map(jnp.asarray, tree)
    sharding = NamedSharding(mesh, PartitionSpec(SHARD_AXIS))

    def leaf(x):
        if isinstance(x, jax.Array):
            if x.sharding.is_equivalent_to(sharding, x.ndim):
                return x
            return jax.device_put(x, sharding)
        if _spans_processes(mesh):
            host = np.asarray(x)
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
        return jax.device_put(jnp.asarray(x), sharding)

    return jax.tree.map(leaf, tree)


def load_shards(loader: Callable, num_agents: int, mesh: Mesh | None = None):
    """Data for :func:`~psample.mcmc.admm.kernel.as_top_level_api` of which every process loads only its own agents.

    Parameters
    ----------
    loader
        ``loader(agents: slice) -> pytree of arrays`` with leading axis ``agents.stop -
        agents.start``: the shards of those agents (read from disk, a database, ...). It is
        called only for the blocks of agents on this process's devices (once per block).
    num_agents
        ``N``, the number of agents of the whole run.
    mesh
        The mesh whose ``"shards"`` axis holds the agents (it may span several processes, under
        ``jax.distributed.initialize``); ``None``: one device, ``loader(slice(0, N))``.

    Returns
    -------
    A pytree of global ``jax.Array`` of shape ``(N, ...)`` laid out on ``"shards"``; on a
    multi-process mesh no process holds another's blocks. Every process calls this (and
    :func:`~psample.mcmc.admm.kernel.as_top_level_api`, and ``psample.sample``) with the same arguments but its own data.
    """
    num_agents = check_positive_int("num_agents", num_agents)
    if mesh is None or SHARD_AXIS not in mesh.axis_names:
        return jax.tree.map(jnp.asarray, loader(slice(0, num_agents)))
    size = mesh.shape[SHARD_AXIS]
    if num_agents % size:
        raise ShapeError(
            f"{num_agents} agents cannot be laid out on the mesh's {size} {SHARD_AXIS!r} devices: "
            f"use a number of agents divisible by {size}"
        )
    sharding = NamedSharding(mesh, PartitionSpec(SHARD_AXIS))
    blocks = {}

    def load(agents: slice):
        key = (agents.start or 0, num_agents if agents.stop is None else agents.stop)
        if key not in blocks:
            tree = jax.tree.map(np.asarray, loader(slice(*key)))
            for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
                if x.ndim == 0 or x.shape[0] != key[1] - key[0]:
                    raise ShapeError(
                        f"loader(slice{key}) returned {jax.tree_util.keystr(path) or 'data'} of shape {x.shape}: "
                        f"its leading axis must be the {key[1] - key[0]} agents asked for"
                    )
            blocks[key] = tree
        return blocks[key]

    local = sharding.addressable_devices_indices_map((num_agents,))
    first = load(next(iter(local.values()))[0])
    leaves, structure = jax.tree.flatten(first)
    arrays = [
        jax.make_array_from_callback(
            (num_agents,) + x.shape[1:], sharding,
            lambda index, i=i: jax.tree.leaves(load(index[0]))[i][(slice(None),) + tuple(index[1:])],
        )  # fmt: skip
        for i, x in enumerate(leaves)
    ]
    return jax.tree.unflatten(structure, arrays)
