"""Adapted polar slice against BlackJAX NUTS on the non-hierarchical inference-gym posteriors of issue #28.

Issue #28 lists posteriors where adapted polar slice beat NUTS in min-ESS per second and asks that
these wins be re-measured after the hierarchical work. ``benchmarks/hierarchical.py`` covers the
hierarchical ones and the Lorenz bridge; this script covers the others, on inference-gym's own
targets (``inference_gym.using_jax``, TFP's JAX substrate):

- ``gaussian``: ``IllConditionedGaussian`` (d = 100, the gym's defaults);
- ``banana``: ``Banana`` (d = 2);
- ``funnel``: ``NealsFunnel`` (d = 10);
- ``irt``: ``SyntheticItemResponseTheory`` (d = 501; its data ship with the gym);
- ``logreg``: ``GermanCreditNumericLogisticRegression`` (d = 25). The gym loads German credit
  through TensorFlow Datasets (not installed), so the gym's ``LogisticRegression`` model class is
  built from the shipped file instead (``psample.models.hierarchical.german_credit_numeric_data``
  reads ``psample/models/data/german_credit_numeric.csv`` as the gym's ``data.german_credit_numeric()``
  does: all 1,000 rows for training, features standardised, labels ``class - 1``), with the
  ground-truth module of the gym's ``GermanCreditNumericLogisticRegression``.

Log-density: on the unconstrained space, ``target.unnormalized_log_prob`` of
``target.default_event_space_bijector`` applied to the position, plus that bijector's
``forward_log_det_jacobian`` (every target here is unconstrained, the bijectors are identities), on a
flat 1-d position (the IRT target's dict of parts raveled). Positions, samplers and diagnostics run
in float64 (``jax_enable_x64``), but **these gym targets compute in float32**: the position is cast
to the target's dtype before the gym's log-density and the result cast back to float64.

Ground truth: the gym's ``sample_transformations['identity'].ground_truth_mean`` and
``ground_truth_standard_deviation`` (analytic for the Gaussian, banana and funnel; the gym's Stan
runs for IRT and the logistic regression; every case here has both).

Protocol (the issue's; the helpers ``warm_up``, ``chunk_runner`` and ``summarise`` are imported from
``benchmarks/hierarchical.py``): ``--chains`` chains (default 8) from the same starts, N(0, 1) in
the unconstrained space from one key; ``--warmup`` (default 500) warm-up steps each,
``blackjax.window_adaptation`` (diagonal mass matrix) for ``blackjax.nuts`` and
``psample.polar_slice(logdensity, w=10.0)``'s own adaptation for polar slice; then ``--draws``
draws per chain in 10 jitted ``lax.scan`` chunks, NUTS and polar slice alternating chunk by chunk,
each chunk compiled before it is timed (``block_until_ready``; compile time excluded). Reported per
sampler over every scalar component of the gym's ``identity`` transformation (constrained): mean
evaluations per step (NUTS: integration steps, i.e. gradient evaluations; polar slice:
log-density evaluations), sampling seconds, max rank-normalised R-hat, min ESS (the minimum over
components of ArviZ bulk and tail ESS), min-ESS per second, and the worst
``|z| = |mean - truth_mean| / (truth_sd / sqrt(bulk ESS))``; then polar / NUTS of min-ESS/s.

Run: ``python benchmarks/gym_wins.py`` (every case, 8 chains x 1,000 draws), or e.g.
``python benchmarks/gym_wins.py --cases banana funnel --draws 2000 --seed 1``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: case -> inference-gym target class name
CASES = {
    "gaussian": "IllConditionedGaussian",
    "banana": "Banana",
    "funnel": "NealsFunnel",
    "irt": "SyntheticItemResponseTheory",
    "logreg": "GermanCreditNumericLogisticRegression",
}
SAMPLERS = ("nuts", "polar")


def gym_target(case, german_data=None):
    """The case's inference-gym target (``inference_gym.using_jax``).

    ``german_data``: the logistic regression's ``{"features", "labels"}`` (default: read by
    ``psample.models.hierarchical.german_credit_numeric_data``).
    """
    import inference_gym.using_jax as gym

    if case == "logreg":
        if german_data is None:
            from psample.models.hierarchical import german_credit_numeric_data

            german_data = german_credit_numeric_data()
        data = german_data

        class ShippedGermanCreditLogisticRegression(gym.targets.LogisticRegression):
            # the gym's GermanCreditNumericLogisticRegression with its data from the shipped CSV (no TFDS)
            GROUND_TRUTH_MODULE = gym.targets.GermanCreditNumericLogisticRegression.GROUND_TRUTH_MODULE

        return ShippedGermanCreditLogisticRegression(
            train_features=data["features"].astype(np.float32), train_labels=data["labels"],
            name="german_credit_numeric_logistic_regression",
            pretty_name="German Credit Numeric Logistic Regression")
    if case == "gaussian":
        return gym.targets.IllConditionedGaussian(ndims=100)
    return getattr(gym.targets, CASES[case])()


def _parts(tree):
    """``[(key, leaf)]`` of a gym structure (a dict of parts or one array), keys sorted."""
    if isinstance(tree, dict):
        return sorted(tree.items())
    return [(None, tree)]


def flat_logdensity(target):
    """``(logdensity(flat), constrain(flat) -> flat identity components, dimension)``.

    The position is the unconstrained value raveled; the gym's float32 computation is wrapped
    (inputs cast to the target's dtype, the log-density cast to float64).
    """
    shapes = {k: tuple(s) for k, s in _parts(target.event_shape)}
    dtypes = dict(_parts(target.dtype))
    bijectors = dict(_parts(target.default_event_space_bijector))
    example = {k: jnp.zeros(s) for k, s in shapes.items()}
    _, unravel = ravel_pytree(example)
    structured = isinstance(target.event_shape, dict)

    def as_gym(parts):
        return parts if structured else parts[None]

    def logdensity(flat):
        parts = {k: v.astype(dtypes[k]) for k, v in unravel(flat).items()}
        constrained = {k: bijectors[k].forward(v) for k, v in parts.items()}
        log_det = sum(jnp.sum(bijectors[k].forward_log_det_jacobian(v, event_ndims=len(shapes[k])))
                      for k, v in parts.items())
        return (target.unnormalized_log_prob(as_gym(constrained)) + log_det).astype(jnp.float64)

    identity = target.sample_transformations["identity"]

    def constrain(flat):
        parts = {k: v.astype(dtypes[k]) for k, v in unravel(flat).items()}
        out = identity(as_gym({k: bijectors[k].forward(v) for k, v in parts.items()}))
        return jnp.concatenate([jnp.ravel(v).astype(jnp.float64) for _, v in _parts(out)])

    return logdensity, constrain, sum(int(np.prod(s)) for s in shapes.values())


def ground_truth(target):
    """Flat ``(mean, sd)`` of the identity transformation (``None`` where the gym has none), and labels."""
    identity = target.sample_transformations["identity"]
    mean = getattr(identity, "ground_truth_mean", None)
    sd = getattr(identity, "ground_truth_standard_deviation", None)
    labels = []
    for k, s in _parts(target.event_shape):
        size = int(np.prod(s))
        name = k or "x"
        labels += [f"{name}[{j}]" for j in range(size)] if len(s) else [name]
    flat = lambda tree: None if tree is None else np.concatenate(  # noqa: E731
        [np.ravel(np.asarray(v, np.float64)) for _, v in _parts(tree)])
    return flat(mean), flat(sd), labels


def run_case(case, num_chains, num_draws, num_warmup, num_chunks, seed):
    from hierarchical import chunk_runner, summarise, warm_up  # issue #28's protocol

    target = gym_target(case)
    logdensity, constrain, dim = flat_logdensity(target)
    truth_mean, truth_sd, labels = ground_truth(target)
    if truth_mean is None or truth_sd is None:
        print("  no ground truth in the gym: |z| not reported")
        truth_mean, truth_sd = np.zeros(len(labels)), np.full(len(labels), np.nan)
    init_key, warm_key, draw_key = jax.random.split(jax.random.key(seed), 3)
    flat0 = jax.random.normal(init_key, (num_chains, dim), jnp.float64)  # the same starts for both
    print(f"  d = {dim}; log-density at the first start {float(logdensity(flat0[0])):.3f}", flush=True)
    runs = {}
    for kind in SAMPLERS:
        carry, step, position, warm_seconds = warm_up(kind, logdensity, flat0, warm_key, num_warmup)
        run = chunk_runner(step, position, num_chains, num_draws // num_chunks)
        compiled = run.lower(carry, draw_key).compile()
        print(f"  {kind}: warm-up {warm_seconds:.0f} s incl. compile", flush=True)
        runs[kind] = dict(carry=carry, compiled=compiled, records=[], evals=[], seconds=0.0, warm=warm_seconds)
    for chunk in range(num_chunks):  # alternating, chunk by chunk
        chunk_key = jax.random.fold_in(draw_key, chunk)
        for kind in SAMPLERS:
            r = runs[kind]
            start = time.perf_counter()
            out = jax.block_until_ready(r["compiled"](r["carry"], chunk_key))
            r["seconds"] += time.perf_counter() - start
            r["carry"], (flat, evals) = out
            r["records"].append(np.asarray(flat))
            r["evals"].append(np.asarray(evals))
    results = {}
    to_identity = jax.jit(jax.vmap(jax.vmap(constrain)))
    for kind in SAMPLERS:
        r = runs[kind]
        flat = np.concatenate(r["records"]).swapaxes(0, 1)  # (chain, draw, d)
        values = np.asarray(to_identity(jnp.asarray(flat)))
        results[kind] = summarise(values, labels, truth_mean, truth_sd, r["seconds"], np.mean(r["evals"]))
        results[kind]["warm"] = r["warm"]
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), default=list(CASES))
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain (default 1000)")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from hierarchical import print_header

    num_chunks = 10
    print_header(argv, args.chains, args.warmup, args.draws, num_chunks,
                 "float64 samplers, the gym's float32 log-densities")
    for case in args.cases:
        print(f"== {case} (inference-gym {CASES[case]})", flush=True)
        results = run_case(case, args.chains, args.draws, args.warmup, num_chunks, args.seed)
        print(f"{'sampler':<7} {'evals/step':>10} {'time s':>8} {'max R-hat':>10} {'min ESS':>8} {'ESS/s':>9} "
              f"{'max |z|':>8}  worst (R-hat / ESS / z)")
        for kind, r in results.items():
            print(f"{kind:<7} {r['evals/step']:>10.1f} {r['seconds']:>8.2f} {r['max_rhat']:>10.3f} "
                  f"{r['min_ess']:>8.0f} {r['ess/s']:>9.2f} {r['max_z']:>8.1f}  {r['worst_rhat']} / "
                  f"{r['worst_ess']} / {r['worst_z']}   (warm-up {r['warm']:.0f} s incl. compile)")
        print(f"  polar / nuts: min-ESS/s x{results['polar']['ess/s'] / results['nuts']['ess/s']:.3g}\n", flush=True)


if __name__ == "__main__":
    main()
