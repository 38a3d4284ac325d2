"""Random graph homomorphisms: Glauber and pivot chains and network observables.

Lyu, Mémoli and Sivakoff, "Sampling random graph homomorphisms and applications to network
data analysis", JMLR 24(9), 2023 (arXiv:1910.09483).

- :class:`Network` (weighted, directed or not, node weights) and :class:`Motif` (small graph,
  usually a rooted tree: :meth:`Motif.path`, :meth:`Motif.star`, :meth:`Motif.cycle`).
- :func:`glauber` (any motif) and :func:`pivot` (tree motifs, exact Metropolis–Hastings)
  return BlackJAX ``SamplingAlgorithm`` s whose state is the embedding motif-node -> network-node.
- One-call estimates with Monte Carlo standard errors (batch means across chains):
  :func:`macc`, :func:`hom_density`, :func:`conditional_density`, :func:`chd_profile`,
  :func:`sample_patches`; exact reference values in :mod:`psample.graphs.exact`.
"""

from psample.graphs import exact
from psample.graphs.estimate import (
    chd_profile,
    conditional_density,
    hom_density,
    macc,
    run_observables,
    sample_patches,
)
from psample.graphs.homomorphism import (
    GlauberInfo,
    HomomorphismState,
    PivotInfo,
    glauber,
    initial_embeddings,
    is_homomorphism,
    log_weight,
    pivot,
)
from psample.graphs.motif import MAX_MOTIF_NODES, Motif
from psample.graphs.network import Network, edge_weight, sample_neighbour
from psample.graphs.observables import Estimate

__all__ = [
    "exact",
    "Network",
    "Motif",
    "MAX_MOTIF_NODES",
    "edge_weight",
    "sample_neighbour",
    "glauber",
    "pivot",
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
