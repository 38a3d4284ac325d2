"""Global resampling of one population split over devices, against the same step on one device.

The step is :func:`psample.smc.base.resample_if` (what tempered SMC, FKC and reverse diffusion
call): indices from ``blackjax.smc.resampling`` on the whole population's weights, then the
ancestor gather. On the sharded side its inputs and outputs are laid out on a ``("particles",)``
mesh and the step is traced under it, as :func:`psample.run_particles` does: the weights are
all-gathered, every device computes the whole population's indices, and the ancestors move in a
ring of ``ppermute`` (the script prints the collectives of the compiled program). Both sides run in this one process, on the same
machine, timed as the best of ``--repeats`` calls after a warm-up call.

Usage (4 emulated CPU devices; the flag must be set before JAX starts)::

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python benchmarks/particles_sharded.py \
        --num-particles 1000000 --dim 2 --repeats 5
"""

import argparse
import re
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from psample.base import resampling_fn  # noqa: E402
from psample.smc.base import resample_if  # noqa: E402


def build(scheme: str, mesh: Mesh):
    resample = resampling_fn(scheme)
    split = NamedSharding(mesh, PartitionSpec("particles"))
    whole = NamedSharding(mesh, PartitionSpec())

    def step(key, particles, log_weights, eve):
        # As psample.run_particles traces its steps: under the mesh.
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return resample_if(key, jnp.asarray(True), particles, log_weights, eve, resample)

    shardings = (whole, split, split, split)
    return jax.jit(step, in_shardings=shardings, out_shardings=(split, split, split)), shardings


def best_time(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-particles", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--schemes", default="multinomial,systematic")
    args = parser.parse_args()
    devices = np.array(jax.devices())
    n, d = args.num_particles, args.dim
    print(f"jax {jax.__version__}, {len(devices)} {devices[0].platform} devices, N={n}, d={d}, float64")
    key = jax.random.PRNGKey(0)
    particles = jax.random.normal(jax.random.PRNGKey(1), (n, d))
    raw = -0.5 * jnp.sum((particles - 1.0) ** 2, axis=1)
    log_weights = raw - jax.scipy.special.logsumexp(raw)
    eve = jnp.arange(n, dtype=jnp.int32)
    for scheme in args.schemes.split(","):
        results = {}
        for label, mesh in (("1 device", Mesh(devices[:1], ("particles",))), (f"{len(devices)} devices", Mesh(devices, ("particles",)))):
            fn, shardings = build(scheme, mesh)
            placed = [jax.device_put(x, s) for x, s in zip((key, particles, log_weights, eve), shardings)]
            results[label] = (best_time(fn, placed, args.repeats), fn(*placed))
            hlo = fn.lower(*placed).compile().as_text()
            collectives = sorted(set(re.findall(r"\b(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)\(", hlo)))
            print(f"  {scheme:12s} {label:10s} {results[label][0] * 1e3:9.1f} ms   collectives: {collectives or 'none'}")
        (t1, r1), (tp, rp) = results.values()
        same = bool(np.array_equal(np.asarray(r1[2]), np.asarray(rp[2])))
        print(f"  {scheme:12s} ratio sharded / one device: {tp / t1:.2f}   same ancestors: {same}")


if __name__ == "__main__":
    main()
