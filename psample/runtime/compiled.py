"""The runners' cache of compiled functions, one entry per algorithm.

Compiling a chunk function costs far more than a short run, so a runner keeps what it compiled
for an algorithm and reuses it when the same algorithm runs again (same ``step`` function for a
chain, same :class:`psample.base.ParticleAlgorithm` for a population). The cache lives here, in
the runtime, never on the user's functions: it holds the compiled functions of the
:data:`MAX_ALGORITHMS` most recently run algorithms, so memory stays bounded however many
algorithms a session builds.
"""

from __future__ import annotations

import collections
from typing import Callable, Hashable

__all__ = ["MAX_ALGORITHMS", "cached", "clear"]

#: How many algorithms keep their compiled functions (least recently run dropped first).
MAX_ALGORITHMS = 16

_by_owner: collections.OrderedDict = collections.OrderedDict()


def cached(owner: Hashable, key: Hashable, build: Callable):
    """``build()``, compiled once per ``(owner, key)``.

    ``owner`` identifies the algorithm (a chain's ``step``, a particle algorithm); ``key`` what
    was built for it (shapes, options). An unhashable owner or key is built every time.
    """
    try:
        hash((owner, key))
    except TypeError:
        return build()
    entries = _by_owner.get(owner)
    if entries is None:
        entries = _by_owner[owner] = {}
        while len(_by_owner) > MAX_ALGORITHMS:
            _by_owner.popitem(last=False)
    else:
        _by_owner.move_to_end(owner)
    if key not in entries:
        entries[key] = build()  # an error while building (a user function's) propagates as is
    return entries[key]


def clear() -> None:
    """Drop every compiled function (frees the data they close over)."""
    _by_owner.clear()
