"""Particle methods: tempered SMC with model evidence and Feynman–Kac correctors.

- :func:`tempered_smc`: likelihood-tempered SMC from the prior to the posterior, returning the
  log evidence (module :mod:`psample.smc.tempered`; mutation kernels in
  :mod:`psample.smc.mutations`).
- :func:`fkc_smc`: Feynman–Kac correctors over diffusion score models (annealing, products of
  experts, guidance; module :mod:`psample.smc.fkc`), with :func:`fkc_anneal`,
  :func:`fkc_product` and :func:`fkc_guidance`.
- :mod:`psample.smc.base`: the reweight/resample step they share; the contract they implement
  is :class:`psample.base.ParticleAlgorithm`.
"""

from psample import _deprecated
from psample.base import ParticleAlgorithm
from psample.smc import base, fkc, mutations, tempered
from psample.smc.fkc import as_top_level_api as fkc_smc
from psample.smc.fkc import fkc_anneal, fkc_guidance, fkc_product
from psample.smc.tempered import as_top_level_api as tempered_smc

__all__ = ["ParticleAlgorithm", "tempered_smc", "fkc_smc", "fkc_anneal", "fkc_product", "fkc_guidance", "base",
           "tempered", "mutations", "fkc"]

# psample 0.1 named the constructors like their modules; calling the module still works, with a warning.
_deprecated.deprecate_calling(tempered, "as_top_level_api", "psample.smc.tempered_smc")
_deprecated.deprecate_calling(fkc, "as_top_level_api", "psample.smc.fkc_smc")
