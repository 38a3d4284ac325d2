"""Diffusion processes and samplers.

- :mod:`psample.diffusion.schedules`: the noise schedules :class:`VP` and :class:`VE` (one time
  convention for the library: ``t`` in ``[0, 1]``, ``t = 0`` is data).
- :func:`reverse_diffusion` (:mod:`psample.diffusion.reverse_diffusion`): training-free reverse
  diffusion with Monte Carlo scores of the noised target, with exact SMC weights and log Z.
- :func:`train_sampler` (:mod:`psample.diffusion.train`) -> :class:`TrainedSampler`
  (:mod:`psample.diffusion.trained`): learned DDS / PIS samplers, exact importance weights,
  log Z, ELBO and EUBO; networks in :mod:`psample.diffusion.networks`, reference processes in
  :mod:`psample.diffusion.processes`.
"""

from psample.diffusion import schedules
from psample.diffusion.reverse_diffusion import reverse_diffusion
from psample.diffusion.schedules import VE, VP, Schedule
from psample.diffusion.train import train_sampler
from psample.diffusion.trained import SamplerResult, TrainedSampler

__all__ = ["schedules", "Schedule", "VP", "VE", "reverse_diffusion", "train_sampler", "TrainedSampler",
           "SamplerResult"]
