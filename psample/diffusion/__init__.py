"""Diffusion samplers for unnormalized densities.

- :func:`reverse_diffusion` (:mod:`psample.diffusion.reverse`): training-free reverse diffusion
  with Monte Carlo scores of the noised target, with exact SMC weights and log Z.
- :func:`train_sampler` (:mod:`psample.diffusion.train`) -> :class:`TrainedSampler`
  (:mod:`psample.diffusion.trained`): learned DDS / PIS samplers, exact importance weights,
  log Z, ELBO and EUBO; networks in :mod:`psample.diffusion.networks`, reference processes in
  :mod:`psample.diffusion.processes`.
- The noise schedules :class:`VP` and :class:`VE` (:mod:`psample.schedules`, shared with FKC:
  ``t`` in ``[0, 1]``, ``t = 0`` is data), re-exported here.

See the :doc:`family page </families/diffusion>` for the methods, tuning and measured limits.
"""

import sys

from psample import _deprecated
from psample.diffusion import reverse
from psample.diffusion.reverse import reverse_diffusion
from psample.diffusion.train import train_sampler
from psample.diffusion.trained import SamplerResult, TrainedSampler
from psample.schedules import VE, VP, Schedule

__all__ = ["Schedule", "VP", "VE", "reverse_diffusion", "train_sampler", "TrainedSampler", "SamplerResult"]

# psample 0.1's module path of reverse_diffusion (the name is the function now, as it was then).
sys.modules.setdefault("psample.diffusion.reverse_diffusion", reverse)


def __getattr__(name):
    return _deprecated.moved_attribute(__name__, name)
