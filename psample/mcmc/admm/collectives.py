"""Communication between agents: sums over all agents and neighbour sums, layout-invariant.

Inside ``jax.shard_map`` over the mesh's ``"shards"`` axis each device holds a block of
consecutive agents; without a mesh the block is every agent and the same functions are plain
array operations. The complete graph communicates with one sum over all agents (which also
gives the network average), the ring with two ``ppermute`` of the block's end rows, any other
graph with an ``all_gather`` of the new local samples and the block's rows of the neighbour
table.

Layout invariance (``Network.exact_sums``, the default of ``layout_invariant=True``): the
results are bit for bit the same on any number of devices or processes, with any number of
agents or chains per device.

- Sums over all agents (complete graph, network average, dual sum) are exact fixed-point sums,
  a ``pmax`` and an integer ``psum`` (:func:`_fixed_point_total`): a float ``psum`` adds the
  block sums in another order than one device adds the agents, which changes the last bits.
- Other graphs add each agent's neighbours one by one in increasing order (a matrix product
  with the adjacency rows would sum in an order that depends on the block's shape).

Without it (``exact_sums=False``) sums over agents are plain float ``psum``s of the block sums:
the same to round-off, one ``pmax`` and one integer ``psum`` of ``4 d`` numbers cheaper per sum.
Limits of the exact sums: values below ``2**-96`` of the largest (float64) are truncated, and a
non-finite value makes the total NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec

from psample.mcmc.admm.network import SHARD_AXIS, Network

__all__: list[str] = []  # package-private: the kernel's communication


def _power_of_two(exponent, dtype):
    """``2.0 ** exponent`` built from its bits (exact; ``exponent`` clipped to the normal range)."""
    info = jnp.finfo(dtype)
    bits, mantissa = info.bits, info.nmant
    bias = info.maxexp - 1
    exponent = jnp.clip(exponent, info.minexp, info.maxexp - 1).astype(jnp.int64 if bits == 64 else jnp.int32)
    integer = jnp.int64 if bits == 64 else jnp.int32
    return lax.bitcast_convert_type((exponent + bias).astype(integer) << mantissa, dtype)


def _fixed_point_total(values, num_agents: int, sharded: bool):
    """``values.sum(axis=0)`` over every agent on every device, exactly and in no order at all.

    A float sum depends on the order of its terms, and XLA orders them by the shapes it sees
    (the agents per device, its vector width): the total of a run on four devices would differ
    from one device's in the last bits. Here every value is written as a few integer limbs on a
    grid fixed by the largest magnitude of all agents (a ``pmax``, exact), the limbs are summed
    as integers (a ``psum`` of integers: associative, exact) and the float is rebuilt once from
    the integer totals. So the total is a function of the set of values alone: bit for bit the
    same on any number of devices, with any number of agents per device. Values below
    ``2**-(limbs x bits)`` of the largest are truncated (for float64 and up to ``2**21`` agents:
    3 limbs of 32 bits, 96 bits below the largest, far below its round-off); a non-finite value
    makes the total NaN.
    """
    dtype = values.dtype
    info = jnp.finfo(dtype)
    integer = jnp.int64 if info.bits == 64 else jnp.int32
    int_bits = 64 if info.bits == 64 else 32
    # Limbs small enough that the sum of every agent's fits the integer type.
    limb_bits = min(32, int_bits - 2 - int(np.ceil(np.log2(num_agents + 1))))
    num_limbs = -(-(info.nmant + 1 + 40) // limb_bits)
    finite = jnp.isfinite(values)
    magnitude = jnp.max(jnp.where(finite, jnp.abs(values), 0), axis=0)
    bad = (~finite).astype(integer)
    if sharded:
        magnitude = lax.pmax(magnitude, SHARD_AXIS)
    _, exponent = jnp.frexp(magnitude)  # magnitude < 2 ** exponent (0 for 0 and subnormals)
    y = jnp.where(finite, values, 0) * _power_of_two(-exponent, dtype)  # |y| < 1, exact
    shift = jnp.asarray(2.0**limb_bits, dtype)
    limbs = []
    for _ in range(num_limbs):
        y = y * shift
        limb = jnp.trunc(y)
        y = y - limb  # exact: the integer part of a float is a float
        limbs.append(limb.astype(integer))
    sums = jnp.stack(limbs + [bad]).sum(axis=1)  # (num_limbs + 1, d) integers
    if sharded:
        sums = lax.psum(sums, SHARD_AXIS)
    total = sums[num_limbs - 1].astype(dtype)
    for k in range(num_limbs - 2, -1, -1):
        total = sums[k].astype(dtype) + total / shift
    total = total * _power_of_two(exponent - limb_bits, dtype)
    return jnp.where(sums[num_limbs] > 0, jnp.nan, total)


def _block_comm(network: Network, block: int):
    """Functions of one device's block of agents: first agent index, totals, neighbour sums.

    Inside ``shard_map`` they use collectives over ``"shards"``; without a mesh the block is
    every agent and they are plain array operations. ``total(values)`` sums ``(block, d)``
    per-agent values over all agents: exactly (:func:`_fixed_point_total`) when
    ``network.exact_sums``, else a float ``psum`` of the block sums.
    """
    sharded = network.mesh is not None
    size = network.mesh.shape[SHARD_AXIS] if sharded else 1

    def first_index():
        return lax.axis_index(SHARD_AXIS) * block if sharded else 0

    def total(values):
        if network.exact_sums:
            return _fixed_point_total(values, network.num_agents, sharded)
        block_sum = values.sum(axis=0)
        return lax.psum(block_sum, SHARD_AXIS) if sharded else block_sum

    def neighbour_sums(x, neighbour_rows):
        if network.kind == "none":
            return jnp.zeros_like(x)
        if network.kind == "complete":
            return total(x) - x
        if network.kind == "ring":
            if sharded:
                forward = [(s, (s + 1) % size) for s in range(size)]
                backward = [(s, (s - 1) % size) for s in range(size)]
                prev_last = lax.ppermute(x[-1:], SHARD_AXIS, forward)
                next_first = lax.ppermute(x[:1], SHARD_AXIS, backward)
            else:
                prev_last, next_first = x[-1:], x[:1]
            left = jnp.concatenate([prev_last, x[:-1]])
            right = jnp.concatenate([x[1:], next_first])
            return left + right
        everyone = lax.all_gather(x, SHARD_AXIS, tiled=True) if sharded else x
        everyone = jnp.concatenate([everyone, jnp.zeros_like(everyone[:1])])  # row N: padding
        columns = jnp.asarray(neighbour_rows).T  # (max degree, block)
        return lax.fori_loop(1, columns.shape[0], lambda k, acc: acc + everyone[columns[k]], everyone[columns[0]])

    return first_index, total, neighbour_sums


def _neighbour_rows(network: Network, num_agents: int):
    if network.neighbours is not None:
        return network.neighbours
    return np.zeros((num_agents, 0), np.int32)


def _communicate(network: Network, x):
    """Neighbour sums and network average of a full ``(N, d)`` array, both replicated."""
    n = network.num_agents
    block = n // (network.mesh.shape[SHARD_AXIS] if network.mesh is not None else 1)
    _, total, neighbour_sums = _block_comm(network, block)

    def fn(x_block, neighbour_rows):
        sums = neighbour_sums(x_block, neighbour_rows)
        if network.mesh is not None:
            # The initial state is replicated on every device (the runner's checks read it on
            # every process); the first step's shard_map hands each device its block.
            sums = lax.all_gather(sums, SHARD_AXIS, tiled=True)
        return sums, total(x_block) / n

    if network.mesh is None:
        return fn(x, _neighbour_rows(network, n))
    spec = PartitionSpec(SHARD_AXIS)
    return jax.shard_map(
        fn, mesh=network.mesh, in_specs=(spec, spec), out_specs=(PartitionSpec(), PartitionSpec()), check_vma=False
    )(x, _neighbour_rows(network, n))
