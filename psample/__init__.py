"""psample: modern samplers behind one BlackJAX-style ``init``/``step`` contract.

Public API
----------
- :func:`from_numpyro`, :class:`Target`: targets from NumPyro models or plain log-densities.
- :func:`sample`, :func:`resume`, :class:`Trace`: the runner (many chains, chunks, checkpoints).
"""

from psample import diagnostics, errors
from psample.run import resume, sample
from psample.targets import Target, from_logdensity, from_numpyro
from psample.trace import Trace

__all__ = ["diagnostics", "errors", "Target", "Trace", "from_numpyro", "from_logdensity", "sample", "resume"]
__version__ = "0.1.0"
