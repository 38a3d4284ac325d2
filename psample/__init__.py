"""psample: modern samplers behind one BlackJAX-style ``init``/``step`` contract.

Public API
----------
- :func:`from_numpyro`, :func:`from_logdensity`, :class:`Target`: targets from NumPyro models
  or plain log-densities; :func:`noncentered` non-centres a NumPyro model's location-scale sites.
- :func:`sample`, :func:`resume`, :class:`Trace`: the chain runner (many chains, chunks,
  checkpoints); :func:`run_particles`, :class:`ParticleResult`: the particle runner.
- :func:`polar_slice`: Gibbsian polar slice sampling, with an affine preconditioner adapted
  during warm-up (:mod:`psample.mcmc.polar_slice`); :func:`flow_polar_slice`, the same in the base
  space of a normalizing flow fitted during warm-up (:mod:`psample.mcmc.flow_preconditioning`);
  :func:`blocked_polar_slice`, polar slice moves on blocks of coordinates in turn, each block
  with its own adapted preconditioner (:mod:`psample.mcmc.blocked_polar_slice`);
  :func:`interweaved_polar_slice`, polar slice with the hyperparameters interweaved between a
  model's centred and non-centred forms (ASIS; :mod:`psample.mcmc.interweaved_polar_slice`);
  :func:`fit_partial_noncentering`, coordinates in which a hierarchical model's latents and
  hyperparameters decouple (:mod:`psample.mcmc.partial_noncentering`), with
  :func:`latent_gaussian` reading what it needs from a NumPyro model;
  :func:`partially_noncentered_polar_slice`, polar slice in those coordinates, fitted during its
  warm-up (:mod:`psample.mcmc.pncp_polar_slice`).
- :func:`logconcave_chain`: chain of log-concave Markov chains / walk-jump sampling
  (:mod:`psample.mcmc.logconcave_chain`); :func:`logconcave_chain_samples` runs it in one call.
- :func:`admm`: distributed MCMC with ADMM, one data shard per agent, agents over the devices of
  a mesh's ``"shards"`` axis (:mod:`psample.mcmc.admm`; Tzikas et al. 2024).
- :mod:`psample.smc`: tempered SMC with model evidence (:func:`psample.smc.tempered_smc`) and
  Feynman–Kac correctors over score models (:func:`psample.smc.fkc_smc`).
- :mod:`psample.diffusion`: diffusion samplers for unnormalized densities
  (``reverse_diffusion``, ``train_sampler``); noise schedules in :mod:`psample.schedules`.
- :mod:`psample.graphs`: graph-homomorphism chains and network observables.
- :mod:`psample.base`: every contract the runners consume; :mod:`psample.errors`.
- :mod:`psample.diagnostics` (ArviZ summaries and plots), :mod:`psample.models` (the model zoo),
  :mod:`psample.numpyro` (psample samplers as NumPyro ``MCMCKernel`` s).

Layers
------
``base``, ``errors``, ``rng`` (ground floor) < ``targets``, ``schedules`` < the samplers
(``mcmc``, ``smc``, ``diffusion``, ``graphs``) and the runtime (``runtime``) < one-call
conveniences < ``cli``. A module imports only from its own floor or below.
"""

from psample import _deprecated, base, diagnostics, diffusion, errors, smc
from psample.mcmc.admm import as_top_level_api as admm
from psample.mcmc.logconcave_chain import as_top_level_api as logconcave_chain
from psample.mcmc.logconcave_samples import logconcave_chain_samples
from psample.mcmc.blackjax_window import window_adaptation
from psample.mcmc.blocked_polar_slice import as_top_level_api as blocked_polar_slice
from psample.mcmc.interweaved_polar_slice import as_top_level_api as interweaved_polar_slice
from psample.mcmc.partial_noncentering import PartialNoncentering, fit_partial_noncentering
from psample.mcmc.pncp_polar_slice import partially_noncentered_polar_slice
from psample.mcmc.flow_preconditioning import flow_polar_slice
from psample.mcmc.polar_slice import as_top_level_api as polar_slice
from psample.runtime.chains import resume, sample
from psample.runtime.particles import ParticleResult, run_particles
from psample.runtime.trace import Trace
from psample.targets import LatentGaussian, Target, from_logdensity, from_numpyro, latent_gaussian, noncentered

__all__ = ["base", "diagnostics", "diffusion", "errors", "smc", "Target", "Trace", "from_numpyro",
           "from_logdensity", "noncentered", "latent_gaussian", "LatentGaussian", "sample", "resume", "polar_slice", "flow_polar_slice", "blocked_polar_slice", "interweaved_polar_slice", "fit_partial_noncentering", "PartialNoncentering", "partially_noncentered_polar_slice", "window_adaptation", "logconcave_chain",
           "logconcave_chain_samples", "run_particles", "ParticleResult", "admm"]
__version__ = "0.1.0"

_deprecated.install()


def __getattr__(name):
    # ``psample.numpyro`` (NumPyro MCMC kernels) is imported on first use: it needs numpyro.
    if name == "numpyro":
        import importlib

        return importlib.import_module("psample.numpyro")
    return _deprecated.moved_attribute(__name__, name)
