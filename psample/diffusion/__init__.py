"""Diffusion processes and samplers.

- :mod:`psample.diffusion.schedules`: the noise schedules :class:`VP` and :class:`VE` (one time
  convention for the library: ``t`` in ``[0, 1]``, ``t = 0`` is data).
"""

from psample.diffusion import schedules
from psample.diffusion.schedules import VE, VP, Schedule

__all__ = ["schedules", "Schedule", "VP", "VE"]
