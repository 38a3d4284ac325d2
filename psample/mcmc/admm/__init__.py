"""Distributed MCMC with ADMM (D-ADMMS): one data shard per agent, agents on devices.

The posterior :math:`\\mu^*(x) \\propto \\exp(-\\sum_i f_i(x))` is split over ``N`` agents on an
undirected graph, agent ``i`` holding the data shard :math:`D_i` and the local potential
:math:`f_i(x) = -\\log p(D_i \\mid x) - \\tfrac{1}{N} \\log p(x)` (the prior is shared
equally). Every agent keeps a local sample and a dual; one synchronous iteration of Tzikas et
al. [1] is a noisy proximal step per agent, one message (a ``d``-vector) to its neighbours and
a dual step (:mod:`psample.mcmc.admm.kernel` states it exactly). ``psample.admm`` is
:func:`as_top_level_api`; its draws are the network average of the agents' samples.
See the :doc:`family page </families/admm>` for the method, tuning and measured limits.

Contract
--------
``psample.admm(logprior_fn, loglik_fn, data, *, rho, graph, prox, ...)`` returns a
:class:`psample.base.ChainAlgorithm`: ``init(position)`` starts every agent there,
``step(rng_key, state)`` is one iteration, ``state.position`` is the network average and
``state.local_positions`` ``(N, d)`` the agents' samples. ``data`` is a pytree with a leading
agent axis of equal-size shards (:func:`shard`, :func:`load_shards`); ``loglik_fn(position,
shard)`` is one agent's log-likelihood. The runner passes the data to its compiled functions as
arguments (``ChainAlgorithm.hoisted_arguments``) and ends every run with
:func:`check_mean_offset` (``ChainAlgorithm.check_trace``).

Known limits
------------
**Biased by design.** For Gaussian targets the agents' stationary mean is the posterior mean,
but the network average's covariance is not the posterior's: on a regular graph of degree ``D``
the average is an implicit Langevin chain with step ``eta = 1 / (2 rho D N)`` at temperature
``T = D / (2 rho)``, so for a posterior of precision ``H`` its covariance is
``T H^-1 (I + eta H / 2)^-1`` (exact for shards of equal curvature, a lower bound otherwise),
and it relaxes in about ``2 rho D N / lambda`` iterations (``lambda`` a precision eigenvalue).
With many agents on the complete graph no ``rho`` is both fast and accurate: prefer a sparse
graph. On non-Gaussian posteriors the mean moves off the posterior's too, less for larger
``rho``; :func:`check_mean_offset` flags the offset caused by the agents' disagreement (not a
too-narrow law's shift towards the mode). Noise-free ADMM (``noise=False``) converges to the
posterior mode; a graph without edges leaves every agent at its local MAP. The method is not
invariant to rescaling the parameters (the noise is fixed in their units). The neighbour sums
run over each agent's real neighbours, not over agents ``0 .. deg_i - 1`` as the authors' code
does, so its stored figures are not reproduced exactly.

Modules
-------
:mod:`~psample.mcmc.admm.kernel`
    State, info, ``init``, ``build_kernel`` and ``as_top_level_api`` (the iteration).
:mod:`~psample.mcmc.admm.network`
    The agents' graph and its layout on a mesh's ``"shards"`` axis (``build_network``).
:mod:`~psample.mcmc.admm.collectives`
    Sums over agents and neighbour sums, bit for bit the same on any device layout.
:mod:`~psample.mcmc.admm.prox`
    The proximal solvers: closed form (Gaussian), damped Newton, L-BFGS.
:mod:`~psample.mcmc.admm.data`
    Sharded targets and data: ``shard``, placement on the mesh, ``load_shards`` (multi-process).
:mod:`~psample.mcmc.admm.numpyro`
    A NumPyro model split over shards (``sharded_numpyro_model``).
:mod:`~psample.mcmc.admm.mean_offset`
    The end-of-run check of the network average's mean (``check_mean_offset``).

References
----------
.. [1] Vasileios Tzikas, Licio Romao, Mert Pilanci, Alessandro Abate and Mykel J.
   Kochenderfer, "Distributed Markov Chain Monte Carlo Sampling based on the Alternating
   Direction Method of Multipliers", arXiv:2401.15838, 2024. Code:
   https://github.com/sisl/Distributed_ADMM_Sampler
"""

from psample.mcmc.admm.data import ShardedTarget, load_shards, shard
from psample.mcmc.admm.kernel import ADMMInfo, ADMMState, as_top_level_api, build_kernel, init
from psample.mcmc.admm.mean_offset import MeanOffset, check_mean_offset
from psample.mcmc.admm.network import SHARD_AXIS, Network, build_network
from psample.mcmc.admm.numpyro import ShardedModel, sharded_numpyro_model

__all__ = [
    "ADMMState",
    "ADMMInfo",
    "ShardedTarget",
    "Network",
    "init",
    "build_kernel",
    "as_top_level_api",
    "build_network",
    "shard",
    "sharded_numpyro_model",
    "ShardedModel",
    "SHARD_AXIS",
    "load_shards",
    "MeanOffset",
    "check_mean_offset",
]
