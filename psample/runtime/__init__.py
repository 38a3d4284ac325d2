"""The runtime: everything written once around the sampler contracts of :mod:`psample.base`.

- :mod:`~psample.runtime.driver`: the one Python loop (chunks, progress bar, Ctrl-C).
- :mod:`~psample.runtime.chains`: :func:`~psample.sample` and :func:`~psample.resume` (many chains), with the
  end-of-run checks; :mod:`~psample.runtime.plan`: the run plan and its jitted chunk functions.
- :mod:`~psample.runtime.particles`: :func:`~psample.run_particles`; :mod:`~psample.runtime.particle_result`:
  :class:`~psample.ParticleResult` (weighted estimates, resampling, the DataTree).
- :mod:`~psample.runtime.sharding`: device placement of chains and replicates (the
  ``"chains"`` mesh axis), written once for both runners and the checkpoint.
- :mod:`~psample.runtime.warmup`: warm-up adaptation; :mod:`~psample.runtime.checkpoint`,
  :mod:`~psample.runtime.trace`, :mod:`~psample.runtime.datatree` (the groups ArviZ reads of a
  ``Trace`` and a ``ParticleResult``, both ``xarray.DataTree`` s), :mod:`~psample.runtime.observables`,
  :mod:`~psample.runtime.checks` (validation before any work), :mod:`~psample.runtime.compiled`
  (the cache of compiled functions).

The runtime knows the contracts, never a sampler by name.
"""
