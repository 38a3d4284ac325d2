"""Distributed MCMC with ADMM (D-ADMMS): one data shard per agent, agents on devices.

The posterior :math:`\\mu^*(x) \\propto \\exp(-\\sum_i f_i(x))` is split over ``N`` agents on an
undirected graph, agent ``i`` holding the data shard :math:`D_i` and the local potential
:math:`f_i(x) = -\\log p(D_i \\mid x) - \\tfrac{1}{N} \\log p(x)` (the prior is shared
equally). Every agent keeps a local sample and a dual; one synchronous iteration of Tzikas et
al. [1] is a noisy proximal step per agent, one message (a ``d``-vector) to its neighbours and
a dual step (:mod:`psample.mcmc.admm.kernel` states it exactly). ``psample.admm`` is
:func:`as_top_level_api`; its draws are the network average of the agents' samples.

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
**The method is biased by design.** For Gaussian targets the stationary mean of every agent is
the posterior mean, but the stationary covariance is not the posterior's: it depends on ``rho``
and on the graph (the tests compare it with the exact law of the linear recursion). Noise-free
ADMM (``noise=False``) converges to the posterior mode with the agents in consensus. A graph
without edges leaves every agent at its local MAP (no noise enters: the noise only acts through
edges).

**rho on a regular graph** (degree ``D``: ``N - 1`` for the complete graph, 2 for the ring).
Summing the agents' prox optimality conditions (``sum_i p_i = 0`` and ``sum_i c_i = N x̄``)
gives the network average's update exactly:

.. math::

    \\bar x^{k+1} = \\bar x^k - \\eta \\sum_i \\nabla f_i(x_i^{k+1})
                    - \\bar\\xi, \\qquad \\eta = \\frac{1}{2\\rho D N}, \\quad
                    \\bar\\xi \\sim N\\big(0, \\tfrac{1}{2\\rho^2 N} I\\big),

an implicit Langevin step on the posterior potential (when the agents' gradients act as one
gradient at the average) at temperature :math:`T = D/(2\\rho)`: the noise variance is
:math:`2\\eta T`. For a Gaussian posterior of precision ``H`` its stationary covariance is
:math:`T H^{-1} (I + \\eta H / 2)^{-1}`: exact when every shard has the same curvature, and a
lower bound of the exact law, a few per cent to tens of per cent below it, when the shards'
curvatures differ (checked against the exact recursion in ``tests/mcmc/admm``). So the
variance is ``T`` times the posterior's only while ``eta lambda << 1`` (``lambda`` a posterior
precision eigenvalue); ``rho = D / 2`` gives ``T = 1`` but not the posterior's variance when
``lambda`` is comparable to ``2 rho D N``. The average relaxes in about ``2 rho D N / lambda``
iterations; with many agents on the complete graph no ``rho`` is both fast (small ``rho D N``)
and accurate (``T`` near 1): prefer a sparse graph.

**rho and the mean.** For a non-Gaussian posterior the gradients at the agents' own positions
(spread around the average by the noise, sd ``1 / (sqrt(2) rho)`` per agent and step) do not
act as one gradient at the average, and the average's mean moves off the posterior's. A larger
``rho`` shrinks that offset and, by the rule above, the variance with it. The default stays the
paper's ``rho = 5``, and the offset is flagged at the end of the run: :func:`check_mean_offset`
tests the mean of the posterior's score at the network average (``info.average_score``; 0 when
the gradients act as one) against its Monte Carlo error and warns naming ``rho``. It sees the
offset that the agents' disagreement causes, not the shift of a too-narrow law's mean towards
the posterior's mode: the variance error of the rule above remains the method's, by design.
The parameters' scale matters: the noise is fixed in the parameters' units, so the method is
not invariant to rescaling them.

**Not the reference code.** The neighbour sums run over each agent's real neighbours. The
authors' code (``sisl/Distributed_ADMM_Sampler``) sums the quadratic term over agents
``0 .. deg_i - 1`` instead (its dual step does use the real neighbours); that index slip is not
copied, so its stored figures are not reproduced exactly. Nor is the baseline-only slip of its
logistic script (the prior gradient of D-SGLD taken at the true parameter).

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
