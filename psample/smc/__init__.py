"""Particle methods: the particle-algorithm contract and tempered SMC with model evidence.

- :class:`ParticleAlgorithm`: what :func:`psample.run_particles` runs.
- :func:`tempered`: likelihood-tempered SMC from the prior to the posterior, returning the log
  evidence (``psample.smc.tempered``, module :mod:`psample.smc.tempered`).
- :func:`fkc`: Feynman–Kac correctors over diffusion score models (annealing, products of
  experts, guidance; module :mod:`psample.smc.fkc`), with :func:`fkc_anneal`,
  :func:`fkc_product` and :func:`fkc_guidance`.
"""

from psample.smc import base
from psample.smc.base import ParticleAlgorithm
from psample.smc.fkc import as_top_level_api as fkc
from psample.smc.fkc import fkc_anneal, fkc_guidance, fkc_product
from psample.smc.tempered import as_top_level_api as tempered

__all__ = ["ParticleAlgorithm", "tempered", "base", "fkc", "fkc_anneal", "fkc_product", "fkc_guidance"]
