"""Random graph homomorphisms: Glauber and pivot chains and network observables.

Lyu, Mémoli and Sivakoff, "Sampling random graph homomorphisms and applications to network
data analysis", JMLR 24(9), 2023 (arXiv:1910.09483).

- :class:`Network` (weighted, directed or not, node weights; three :class:`~psample.graphs.csr.Csr`
  structures and an edge hash table) and :class:`Motif` (small graph, usually a rooted tree:
  :meth:`Motif.path`, :meth:`Motif.star`, :meth:`Motif.cycle`); :func:`as_network` and
  :func:`as_motif` convert and check every input.
- :func:`glauber_chain` (any motif, module :mod:`psample.graphs.glauber`) and
  :func:`pivot_chain` (tree motifs, exact Metropolis–Hastings, module :mod:`psample.graphs.pivot`)
  return BlackJAX ``SamplingAlgorithm`` s whose state's ``position`` is the embedding motif-node -> network-node
  (:mod:`psample.graphs.homomorphism`); :func:`initial_embeddings` starts them.
- One-call estimates with Monte Carlo standard errors (batch means across chains):
  :func:`macc`, :func:`hom_density`, :func:`conditional_density`, :func:`chd_profile`,
  :func:`sample_patches`; exact reference values in :mod:`psample.graphs.exact`, exact one-step
  kernels in :mod:`psample.graphs.transitions`.

See the :doc:`family page </families/graphs>` for the method, tuning and measured limits.
"""

from psample import _deprecated
from psample.diagnostics.batch_means import Estimate
from psample.graphs import exact, glauber, pivot
from psample.graphs.embeddings import initial_embeddings
from psample.graphs.estimate import (
    SAMPLERS,
    chd_profile,
    conditional_density,
    hom_density,
    macc,
    run_observables,
    sample_patches,
)
from psample.graphs.glauber import GlauberInfo
from psample.graphs.glauber import as_top_level_api as glauber_chain
from psample.graphs.homomorphism import HomomorphismState, is_homomorphism, log_weight
from psample.graphs.motif import MAX_MOTIF_NODES, Motif, as_motif
from psample.graphs.network import Network, as_network, edge_weight, sample_neighbour
from psample.graphs.pivot import PivotInfo
from psample.graphs.pivot import as_top_level_api as pivot_chain

__all__ = [
    "exact",
    "Network",
    "Motif",
    "MAX_MOTIF_NODES",
    "as_network",
    "as_motif",
    "edge_weight",
    "sample_neighbour",
    "SAMPLERS",
    "glauber_chain",
    "pivot_chain",
    "initial_embeddings",
    "HomomorphismState",
    "GlauberInfo",
    "PivotInfo",
    "log_weight",
    "is_homomorphism",
    "Estimate",
    "macc",
    "hom_density",
    "conditional_density",
    "chd_profile",
    "sample_patches",
    "run_observables",
]

# psample 0.1 named the constructors like their modules; calling the module still works, with a warning.
_deprecated.deprecate_calling(glauber, "as_top_level_api", "psample.graphs.glauber_chain")
_deprecated.deprecate_calling(pivot, "as_top_level_api", "psample.graphs.pivot_chain")
