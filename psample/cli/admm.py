"""``psample admm``: distributed MCMC with ADMM (D-ADMMS) on a model whose data split into shards.

The model's observations are split into ``--agents`` equal shards, one per agent; the agents
sit on a graph (``--graph ring`` or ``complete``) and run :func:`psample.admm` (Tzikas et al.
2024, :mod:`psample.mcmc.admm`) through :func:`psample.sample`, ``--chains`` independent
networks of agents. The model is a NumPyro model with an ``obs=`` site in a plate over the
observations, split by :func:`psample.mcmc.admm.sharded_numpyro_model`: a built-in one with a
data-shard form (:data:`SHARDED_MODELS`) or the user's own
(``--model FILE.py:FUNCTION --data data.json|csv|npz``, :mod:`psample.cli.user_model`), whose
data arguments with an observation axis are the ones sharded (``--shard`` names them; default:
every array argument of one or more dimensions). With several local devices whose number
divides ``--agents``, the agents are placed in blocks on a ``"shards"`` mesh.

Prints, like ``psample run``, the ArviZ summary of the network-average draws (constrained sites)
and the convergence check, then the end-of-run check of the network average's mean
(:func:`psample.mcmc.admm.check_mean_offset`), on stderr as ``psample: warning: ...``.

Limits: D-ADMMS is biased by design: the network average's mean is close to the posterior's,
its spread is not the posterior's (it depends on ``--rho`` and on the graph;
:mod:`psample.mcmc.admm` explains it). ``--agents`` must divide the number of observations
(``--rows`` keeps the first rows of the data, e.g. 560 of the 569 of ``logistic_regression``).
"""

from __future__ import annotations

import sys
import warnings

from psample.cli.user_model import DATA_RULE, MODEL_HELP

__all__ = ["SHARDED_MODELS", "add_admm_parser", "run_admm"]


def _linear_regression():
    from psample.models import linear_regression_data, linear_regression_model

    design, y = linear_regression_data()
    return linear_regression_model, {"design": design, "y": y}


def _logistic_regression():
    from psample.models import logistic_regression_data, logistic_regression_model

    design, labels = logistic_regression_data()
    return logistic_regression_model, {"design": design, "labels": labels.astype(float)}


#: Built-in models with a data-shard form: name -> (description, () -> (NumPyro model, sharded data)).
SHARDED_MODELS = {
    "linear_regression": ("Bayesian linear regression, n=50, p=3 (the data of `psample models`)", _linear_regression),
    "logistic_regression": ("Bayesian logistic regression on breast cancer, 569 rows (use --rows 560)",
                            _logistic_regression),
}


def add_admm_parser(sub) -> None:
    """Add the ``admm`` sub-command to an ``argparse`` sub-parser set."""
    p = sub.add_parser("admm", help="distributed MCMC with ADMM: the data split over agents, ArviZ summary")
    p.add_argument("--model", default="linear_regression",
                   help=f"{MODEL_HELP}; built in with a data-shard form: {', '.join(SHARDED_MODELS)} "
                        "(default linear_regression)")  # fmt: skip
    p.add_argument("--data", default=None, metavar="DATA.json|csv|npz", help=DATA_RULE)
    p.add_argument("--shard", default=None, metavar="NAME[,NAME...]",
                   help="data arguments split over the agents along their first axis (default: every "
                        "array argument of the data with one or more dimensions)")
    p.add_argument("--rows", type=int, default=None, help="use the first ROWS observations (default all)")
    p.add_argument("--agents", type=int, default=5, help="agents, one data shard each (default 5); must divide the rows")
    p.add_argument("--graph", default="ring", choices=["ring", "complete"], help="the agents' graph (default ring)")
    p.add_argument("--rho", type=float, default=5.0, help="ADMM penalty, also setting the noise (default 5, the paper's)")
    p.add_argument("--prox", default="newton", choices=["newton", "lbfgs"], help="proximal solver (default newton)")
    p.add_argument("--chains", type=int, default=4, help="independent networks of agents (default 4)")
    p.add_argument("--draws", type=int, default=500, help="draws per chain (default 500)")
    p.add_argument("--warmup", type=int, default=100, help="burn-in iterations per chain (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _sharded_model(args):
    """``(name, ShardedModel)`` of ``--model``/``--data``/``--shard``/``--rows``/``--agents``."""
    import numpy as np

    from psample.cli.user_model import check_keywords, is_model_file, load_data, load_function
    from psample.errors import ModelError, check_positive_int
    from psample.mcmc.admm import sharded_numpyro_model

    agents = check_positive_int("--agents", args.agents)
    if is_model_file(args.model):
        model = load_function(args.model)
        data = load_data(args.data)
        check_keywords(model, data, args.model)
        name = model.__name__
    elif args.model in SHARDED_MODELS:
        if args.data is not None:
            raise ModelError(f"--data is for a model of your own (--model FILE.py:FUNCTION); {args.model!r} is built in")
        model, data = SHARDED_MODELS[args.model][1]()
        name = args.model
    else:
        raise ModelError(f"model {args.model!r} has no data-shard form; `psample admm` takes "
                         f"{', '.join(SHARDED_MODELS)} or --model FILE.py:FUNCTION --data ...")  # fmt: skip
    if args.shard is not None:
        names = [n.strip() for n in args.shard.split(",") if n.strip()]
        missing = [n for n in names if n not in data]
        if missing:
            raise ModelError(f"--shard {args.shard!r}: {', '.join(map(repr, missing))} not in the data "
                             f"(its keys: {', '.join(data) or 'none'})")  # fmt: skip
    else:
        names = [k for k, v in data.items() if np.ndim(v) >= 1]
        if not names:
            raise ModelError(f"model {args.model!r}: no data array to split over the agents (give --data)")
    sharded = {n: np.asarray(data[n]) for n in names}
    sizes = {n: v.shape[0] for n, v in sharded.items() if v.ndim}
    if len(sizes) != len(sharded) or len(set(sizes.values())) != 1:
        raise ModelError(f"the sharded data arguments must share one observation axis: first-axis lengths {sizes}")
    rows = next(iter(sizes.values()))
    if args.rows is not None:
        keep = check_positive_int("--rows", args.rows)
        if keep > rows:
            raise ModelError(f"--rows {keep}: the data has {rows} rows")
        sharded = {n: v[:keep] for n, v in sharded.items()}
        rows = keep
    if rows % agents:
        divisors = [k for k in range(2, min(rows, 64) + 1) if rows % k == 0]
        raise ModelError(
            f"--agents {agents} does not divide the {rows} observations (equal shards, no padding); agents that "
            f"do: {', '.join(map(str, divisors)) or 'none up to 64'}, or keep fewer rows with --rows"
        )
    rest = {k: v for k, v in data.items() if k not in sharded}
    return name, sharded_numpyro_model(model, agents, sharded, **rest)


def run_admm(args) -> int:
    """Run the ``admm`` sub-command; returns the exit status (130 if interrupted)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    import psample
    from psample.cli.common import print_summary

    name, model = _sharded_model(args)
    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("shards",)) if len(devices) > 1 and args.agents % len(devices) == 0 else None
    algorithm = psample.admm(model.logprior_fn, model.loglik_fn, model.data, rho=args.rho, graph=args.graph,
                             prox=args.prox, mesh=mesh)  # fmt: skip
    init_key, run_key = jax.random.split(jax.random.PRNGKey(args.seed))
    positions = model.target.initial_positions(init_key, args.chains)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trace = psample.sample(algorithm, positions, run_key, args.draws, num_warmup=args.warmup,
                                   target=model.target, mesh=mesh, progress=not args.no_progress,
                                   compute_convergence_checks=False)  # fmt: skip
        except KeyboardInterrupt:
            print("interrupted before the first draw", file=sys.stderr)
            return 130
    if trace.num_draws == 0:
        print(f"interrupted during burn-in after {trace.num_steps} of {args.warmup} steps: no draws", file=sys.stderr)
        return 130
    status = "interrupted" if trace.interrupted else "done"
    shard_rows = jax.tree.leaves(model.data)[0].shape[1]
    print(f"{name}: admm, {args.agents} agents x {shard_rows} rows, {args.graph} graph, rho {args.rho:g}"
          f"{f', {len(devices)} devices' if mesh is not None else ''}; {trace.num_chains} chains x "
          f"{trace.num_draws} draws ({status})", flush=True)  # fmt: skip
    print("network-average draws (D-ADMMS is biased by design: the means are close to the posterior's, "
          "the spread is not; see psample.mcmc.admm)")  # fmt: skip
    warned = [w for w in caught if not (issubclass(w.category, RuntimeWarning) and "interrupt" in str(w.message))]
    print_summary(trace, "Draw more (--draws) or burn in longer (--warmup).", warned=warned,
                  rewrite=lambda message: message.replace("rho in psample.admm", "--rho"))  # fmt: skip
    return 130 if trace.interrupted else 0
