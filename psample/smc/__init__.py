"""Particle methods: the particle-algorithm contract and tempered SMC with model evidence.

- :class:`ParticleAlgorithm`: what :func:`psample.run_particles` runs.
- :func:`tempered`: likelihood-tempered SMC from the prior to the posterior, returning the log
  evidence (``psample.smc.tempered``, module :mod:`psample.smc.tempered`).
"""

from psample.smc import base
from psample.smc.base import ParticleAlgorithm
from psample.smc.tempered import as_top_level_api as tempered

__all__ = ["ParticleAlgorithm", "tempered", "base"]
