"""psample: modern samplers behind one BlackJAX-style ``init``/``step`` contract.

Public API
----------
- :func:`from_numpyro`, :class:`Target`: targets from NumPyro models or plain log-densities.
"""

from psample import errors
from psample.targets import Target, from_logdensity, from_numpyro

__all__ = ["errors", "Target", "from_numpyro", "from_logdensity"]
__version__ = "0.1.0"
