"""Command line: ``gammalimit {loss, limit, train, reproduce}``. Parses arguments, calls the library.

``loss`` and ``train`` also take ``--data FILE.npy --dim m``: samples alone
(a :class:`gammalimit.PointCloud`) in place of a registered manifold.

An input the tool refuses (README, "What the tool refuses, and why") is one
line on stderr naming the file or parameter and what to do, with exit status
2; Ctrl-C is one line saying what was kept (for ``train``: the checkpoint and
the command that resumes it), with exit status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shlex
import sys

from . import embeddings
from .functional import continuum_loss
from .loss import discrete_loss
from .manifolds import Circle, FlatTorus, Sphere
from .manifolds.registry import MANIFOLDS, default_delta, make_manifold, manifold_parameters
from .penalties import PENALTIES
from .sampling import STRATEGIES

#: Default pairs of ``loss`` on a manifold, and on samples (each pair of samples costs a local fit).
LOSS_PAIRS = 100_000
SAMPLE_LOSS_PAIRS = 1 << 14
#: With --qmc the count must be (replicates x 2^k): the default becomes 2^17.
QMC_LOSS_PAIRS = 1 << 17


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"values must be finite, got {text!r}")
    return values


def _value(text: str):
    """A number, or a comma list of numbers as a tuple."""
    values = _floats(text)
    return values[0] if len(values) == 1 else values


def _param(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip().replace("-", "_"), _value(value)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def manifold_params(args, name: str) -> dict:
    """The parameters of manifold ``name`` given by ``--radius``, ``--n-pixels`` and ``--param``.

    ``--radius`` sets the manifold's ``radii`` where it has them (one value
    for all, or one each), else its one ``radius``; given to a manifold
    without a radius, or with more values than it has radii, it is an error
    that names the flag.
    """
    params = {}
    takes = manifold_parameters(name)
    given = list(args.param or [])
    if args.radius is not None:
        values = tuple(args.radius)
        shown = ",".join(f"{v:g}" for v in values)
        if "radii" in takes:
            count = len(takes["radii"])
            if len(values) not in (1, count):
                raise ValueError(f"--radius takes 1 or {count} values for manifold {name!r} (its radii), got {shown}")
            given.append(("radii", values * count if len(values) == 1 else values))
        elif "radius" in takes:
            if len(values) != 1:
                raise ValueError(f"--radius takes one value for manifold {name!r} (it has one radius), got {shown}")
            given.append(("radius", values[0]))
        else:
            rest = (f"its parameters, {sorted(takes)}, are set with --param NAME=VALUE" if takes
                    else "it takes no parameters")
            raise ValueError(f"--radius does not apply to manifold {name!r}, which has no radius; {rest}")
    if args.n_pixels is not None:
        given.append(("n_pixels", args.n_pixels))
    for key, value in given:
        if key in params:
            raise ValueError(f"manifold parameter {key!r} is given twice")
        params[key] = value
    return params


def _encoder(manifold, scale):
    if isinstance(manifold, (Circle, Sphere, FlatTorus)):
        return embeddings.scaled_identity(manifold, scale)
    if len(scale) != 1:
        raise ValueError(f"{manifold!r} takes one scale, got {scale}")
    return embeddings.ScaledIdentity(scale[0])


def _has_closed_form(manifold, penalty: str) -> bool:
    """The closed forms of :mod:`gammalimit.embeddings` are for the squared penalty on these manifolds."""
    return penalty == "squared" and isinstance(manifold, (Circle, Sphere, FlatTorus))


def _add_manifold_args(p, default="sphere", penalty="squared"):
    p.add_argument("--manifold", choices=sorted(MANIFOLDS), default=None,
                   help=f"a registered manifold (default {default})")
    p.add_argument("--radius", type=_floats, default=None,
                   help="the manifold's radius, or its radii R1,R2 (torus; one value sets both)")
    p.add_argument("--n-pixels", type=int, default=None, help="image size N of the image manifolds")
    p.add_argument("--param", type=_param, action="append", metavar="NAME=VALUE",
                   help="a manifold parameter (a number or a comma list), e.g. --param a=3; repeatable")
    p.add_argument("--penalty", choices=sorted(PENALTIES), default=penalty, help="pair penalty (default squared)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _add_encoder_args(p):
    _add_manifold_args(p)
    p.add_argument("--scale", type=_floats, default=(1.0,),
                   help="phi = scale * id; 'a1,a2' on the torus (default 1)")
    p.add_argument("--lam", type=float, default=1.0, help="bending weight lam >= 0 (default 1)")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default=None,
                   help="radial law of the pairs (default shell; ball with --data)")


def _add_data_args(p):
    from .manifolds.point_cloud import DISTANCES, MIDPOINTS

    g = p.add_argument_group("samples alone (instead of --manifold)")
    g.add_argument("--data", default=None, metavar="FILE.npy",
                   help="samples of shape (N, n), or images (N, H, W), saved with numpy.save")
    g.add_argument("--dim", type=int, default=None, help="intrinsic dimension m of the samples (with --data)")
    g.add_argument("--midpoint", choices=MIDPOINTS, default=None,
                   help="midpoint surrogate (default projection onto a local fit)")
    g.add_argument("--degree", type=int, default=None, help="degree of the local fit (default 3)")
    g.add_argument("--distance", choices=DISTANCES, default=None, help="distance surrogate (default chord)")
    g.add_argument("--band", type=float, default=None, help="relative width of the shell strategy's band (0.1)")


def _cloud_options(args) -> dict:
    """The PointCloud options given on the command line."""
    return {k: getattr(args, k) for k in ("midpoint", "degree", "distance", "band") if getattr(args, k) is not None}


def _manifold_name(args) -> str:
    """The manifold of ``loss``/``limit``: ``--manifold``, default the sphere."""
    return args.manifold or "sphere"


def cmd_loss(args) -> dict:
    if args.data is not None:
        return _loss_on_samples(args)
    name = _manifold_name(args)
    manifold = make_manifold(name, **manifold_params(args, name))
    phi = _encoder(manifold, args.scale)
    delta = default_delta(manifold) if args.delta is None else args.delta
    strategy = args.strategy or "shell"
    est = discrete_loss(phi, manifold, delta=delta, lam=args.lam, n=args.n or (QMC_LOSS_PAIRS if args.qmc else LOSS_PAIRS),
                        penalty=args.penalty,
                        strategy=strategy, antithetic=args.antithetic, qmc=args.qmc, seed=args.seed)
    out = {"manifold": repr(manifold), "scale": list(args.scale), **est.to_dict()}
    if _has_closed_form(manifold, args.penalty):
        exact = embeddings.exact_discrete_loss(manifold, args.scale, delta=delta, lam=args.lam, strategy=strategy)
        out["L_delta_exact"] = exact.to_dict()
        out["L_exact"] = embeddings.exact_continuum_loss(manifold, args.scale, lam=args.lam,
                                                         strategy=strategy).to_dict()
    L = continuum_loss(phi, manifold, lam=args.lam, penalty=args.penalty, strategy=strategy)
    out["L"] = {"total": L.total, **L.terms, **L.parts, "error": L.error}
    return out


def _loss_on_samples(args) -> dict:
    """``loss --data``: ``L_delta`` of ``phi = scale * id`` with the point cloud's surrogates (no closed
    forms, no limit)."""
    from .train.data import load_cloud
    from .train.evaluation import NO_LIMIT

    _refuse_manifold_args(args, "loss")
    if args.dim is None:
        raise ValueError(f"--data {args.data} needs --dim, the intrinsic dimension m of the samples")
    cloud = load_cloud(args.data, args.dim, _cloud_options(args))
    if len(args.scale) != 1:
        raise ValueError(f"phi = scale * id on samples takes one scale, got {list(args.scale)}")
    delta = default_delta(cloud) if args.delta is None else args.delta
    est = discrete_loss(embeddings.ScaledIdentity(args.scale[0]), cloud, delta=delta, lam=args.lam,
                        n=args.n or (QMC_LOSS_PAIRS if args.qmc else SAMPLE_LOSS_PAIRS), penalty=args.penalty, strategy=args.strategy or "ball",
                        antithetic=args.antithetic, qmc=args.qmc, seed=args.seed)
    out = {"data": args.data, "cloud": repr(cloud), "scale": list(args.scale), **est.to_dict()}
    if cloud.midpoint_rule == "projection":
        out["fit"] = dict(cloud.last_fit)
    out["L"] = NO_LIMIT
    return out


def _refuse_manifold_args(args, command: str) -> None:
    """With ``--data`` the samples are the manifold: ``--manifold`` and its parameters are errors."""
    given = [flag for flag, value in (("--manifold", args.manifold), ("--radius", args.radius),
                                      ("--param", args.param), ("--n-pixels", args.n_pixels)) if value]
    if given:
        raise ValueError(f"{command} --data learns the geometry from the samples; {', '.join(given)} "
                         "describe a registered manifold and cannot be combined with it")


def cmd_limit(args) -> dict:
    name = _manifold_name(args)
    manifold = make_manifold(name, **manifold_params(args, name))
    phi = _encoder(manifold, args.scale)
    strategy = args.strategy or "shell"
    L = continuum_loss(phi, manifold, lam=args.lam, penalty=args.penalty, strategy=strategy, nodes=args.nodes)
    out = {"manifold": repr(manifold), "scale": list(args.scale), **L.to_dict()}
    if _has_closed_form(manifold, args.penalty):
        out["L_exact"] = embeddings.exact_continuum_loss(manifold, args.scale, lam=args.lam,
                                                         strategy=strategy).to_dict()
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gammalimit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("loss", help="Monte Carlo estimate of L_delta for phi = scale * id")
    _add_encoder_args(p)
    _add_data_args(p)
    p.add_argument("--delta", type=float, default=None,
                   help="pair scale, 0 < delta < injectivity radius (default: 0.05 injectivity radius; with "
                        "--data, 0.05 times the extent of the samples, or more where they are sparse)")
    p.add_argument("--n", "--pairs", dest="n", type=int, default=None,
                   help=f"number of pairs (default {LOSS_PAIRS}; {SAMPLE_LOSS_PAIRS} with --data; "
                        f"{QMC_LOSS_PAIRS} with --qmc)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--antithetic", action="store_true", help="pair v with -v")
    p.add_argument("--qmc", action="store_true", help="scrambled Sobol points")
    p.set_defaults(func=cmd_loss)

    p = sub.add_parser("limit", help="the Gamma-limit L (continuum functional) for phi = scale * id, by quadrature")
    _add_encoder_args(p)
    p.add_argument("--nodes", type=int, default=None,
                   help="quadrature nodes per chart coordinate (default: doubled until converged)")
    p.set_defaults(func=cmd_limit)
    from .reproduce import default_studies, long_studies

    p = sub.add_parser("reproduce", help="run the studies and regenerate figures/")
    p.add_argument("studies", nargs="*", help="study names (default: all but the long modes, in this order): "
                   f"{', '.join(default_studies())}; long modes, run only when named: {', '.join(long_studies())}")
    p.add_argument("--jobs", type=int, default=None, help="studies run at once, each in its own process on one "
                   "thread; the figures are the same for any value (default: the number of CPU cores)")
    p.add_argument("--quick", action="store_true", help="small sizes, as the tests run them")
    p.add_argument("--out", default=None, help="output folder, created with its missing parents and checked to "
                   "be writable before any study runs (default: figures/ of the repository)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any study check fails")
    p.set_defaults(func=cmd_reproduce)
    p = sub.add_parser("train", help="train an encoder on L_delta alone (gammalimit.train)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)
    return parser


def _add_train_args(p):
    from .train import ENCODERS, LIMIT_METHODS

    # default None: the value of TrainConfig, or of the stored run with --resume
    _add_manifold_args(p, default="rotating-ellipse", penalty=None)
    _add_data_args(p)
    p.add_argument("--reference", choices=sorted(MANIFOLDS), default=None,
                   help="with --data: the manifold that generated the samples, for an exact L_delta of the "
                        "trained encoder (never used in training); --radius/--param set its parameters")
    p.add_argument("--pool-pairs", type=int, default=None,
                   help="with --data: pairs in the pool computed once (default 16384)")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default=None,
                   help="radial law of the pairs (default shell; ball with --data)")
    p.add_argument("--latent-dim", type=int, default=None, help="latent dimension l >= m (default 2)")
    p.add_argument("--delta", type=float, default=None, help="pair scale (default: 0.05 injectivity radius)")
    p.add_argument("--lam", type=float, default=None, help="bending weight (default 0.01)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimiser steps (default 3000); with --resume, a larger value extends the run (the cosine "
                        "schedule is stretched from the resume point on: not the same as a run started that long)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step (default 256)")
    p.add_argument("--encoder", choices=ENCODERS, default=None, help="default mlp")
    p.add_argument("--start", choices=("auto", "none", "isomap"), default=None,
                   help="global start: fit the encoder to an Isomap embedding first; auto (default) does so "
                        "where the initial encoder folds M")
    p.add_argument("--hidden", type=_ints, default=None, help="hidden widths, e.g. 128,128")
    p.add_argument("--lr", type=float, default=None, help="AdamW peak learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 100)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default 500)")
    p.add_argument("--eval-pairs", type=int, default=None, help="pairs of the final float64 L_delta")
    p.add_argument("--limit", choices=LIMIT_METHODS, default=None, help="how to evaluate L (default quadrature)")
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--out", default=None,
                   help="run folder (created with its missing parents): config.json, checkpoint.pt, metrics.csv, "
                        "result.json, log.jsonl; locked while the run writes it, so a second run into it is refused")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint; only --steps, --checkpoint-every, "
                        "--eval-pairs, --limit may differ from the stored run")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: OMP_NUM_THREADS if set, else half of torch's default of one per "
                        "core, at least 1, so that a second run fits); give 1 to each of several runs on few cores")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def default_threads() -> int | None:
    """Threads of ``train`` without ``--threads``: ``None`` (torch's, i.e. ``OMP_NUM_THREADS``) if that
    variable is set, else half of torch's default (one per core), at least 1. Two runs of one thread per
    core each on a shared machine oversubscribe it and run many times slower (README, "What the tool
    refuses, and why"); half leaves room for a second run."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    return max(1, torch.get_num_threads() // 2)


def cmd_train(args) -> dict:
    from . import train as training

    names = {f.name for f in dataclasses.fields(training.TrainConfig)} - {"n_pixels", "cloud"}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out, the folder of the run to continue")
    stored = training.load_config(args.out) if args.resume else None
    cloud = _cloud_options(args)
    if cloud:
        given["cloud"] = {**(stored.cloud if stored else {}), **cloud}
    if args.n_pixels is not None:
        given["n_pixels"] = args.n_pixels
    if args.data or (stored and stored.data and not args.manifold):
        # the manifold parameters belong to the reference, if any; n_pixels is checked against the data
        name = args.reference or (stored.reference if stored else None)
        if name is None and (args.radius is not None or args.param):
            raise ValueError("--radius and --param set parameters of a manifold; with --data, of --reference")
    else:
        name = args.manifold or (stored.manifold if stored else training.config.DEFAULT_MANIFOLD)
    if name is not None:
        params = manifold_params(args, name)
        make_manifold(name, **params)  # a parameter the manifold does not take is an error here
        params.pop("n_pixels", None)
        if params:
            given["manifold_params"] = params
    config = dataclasses.replace(stored, **given) if args.resume else training.TrainConfig(**given)
    result = training.train(config, out=args.out, resume=args.resume, progress=not args.no_progress,
                            threads=default_threads() if args.threads is None else args.threads)
    ev = result.evaluation
    out = {"out": args.out, "manifold": config.manifold, "data": config.data, "penalty": config.penalty,
           "delta": config.delta, "strategy": config.strategy, "steps": result.steps, "seconds": result.seconds,
           "pairs_per_second": result.pairs_per_second, "threads": result.threads,
           "final_batch_loss": result.history[-1]["loss"],
           "L_delta": ev["L_delta"]["total"], "L_delta_stderr": ev["L_delta"]["stderr"],
           "L": ev["L"]["total"] if "L" in ev else None,
           "float32_relative_error": ev["float32_relative_error"]["total"]}
    if config.data is not None:
        pool = result.pool or {}
        out.update(pool_pairs=pool.get("pairs"), pool_seconds=pool.get("seconds"), limit=ev["limit"])
        if "L_delta_reference" in ev:
            out["L_delta_reference"] = ev["L_delta_reference"]["total"]
    return out


def cmd_reproduce(args):
    from . import reproduce

    out = args.out or reproduce.FIGURES
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    records = reproduce.reproduce(args.studies, quick=args.quick, out_dir=out, jobs=jobs)
    ok = reproduce.print_summary(records)
    failed = sum(not row["passed"] for r in records for row in r["summary"])
    print(f"\nwrote the figures and JSON of {len(records)} studies to {out}; "
          + ("all checks passed" if ok else f"{failed} check(s) FAIL: measured, not met (see the table)"))
    if not ok and args.strict:
        raise SystemExit(1)
    return None


def _print_human(result: dict) -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v:.12g}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.12g}"
        print(f"{key:>18}: {value}")


def _interrupted(args, err: KeyboardInterrupt) -> str:
    """The line printed on Ctrl-C: for ``train``, where the last checkpoint is and how to resume."""
    from .train.stopping import TrainingInterrupted

    if not isinstance(err, TrainingInterrupted):
        return f"gammalimit {args.command}: interrupted (Ctrl-C); files already written are complete"
    where = f"interrupted at step {err.step} of {err.steps}"
    if err.out is None:
        return f"gammalimit train: {where}; without --out nothing was saved"
    if err.checkpoint is None:
        return (f"gammalimit train: {where}, before the first checkpoint (step {err.first_checkpoint}): nothing "
                "to resume; run the same command again to start over")
    command = f"gammalimit train --out {shlex.quote(str(err.out))} --resume"
    if args.threads is not None:
        command += f" --threads {args.threads}"
    return (f"gammalimit train: {where}; the last checkpoint (step {err.checkpoint_step}) is {err.checkpoint}; "
            f"continue with: {command}")


def main(argv=None) -> int:
    """Run the command line; return the exit status (0, 1 for a failed --strict check, 2 for a refused
    input, 130 for Ctrl-C).

    Started by ``torchrun`` with ``WORLD_SIZE > 1``, the processes join one ``torch.distributed``
    group (:func:`gammalimit.distributed.init_from_env`) for the command and leave it at exit; rank 0
    alone prints (README, "Scale-out").
    """
    from . import distributed

    args = build_parser().parse_args(argv)
    try:
        if distributed.init_from_env(getattr(args, "device", None) or "cpu") and not distributed.is_main():
            import warnings

            warnings.simplefilter("ignore")  # rank 0 says it
        return _run(args)
    finally:
        distributed.destroy()


def _run(args) -> int:
    from . import distributed

    rank = distributed.rank()

    def error(text: str, err: BaseException) -> None:
        # a refused input is refused by every rank alike: rank 0 says so; a file another rank cannot use
        # (another node's disk) is that rank's to say
        if rank == 0:
            print(f"gammalimit {args.command}: error: {text}", file=sys.stderr)
        elif isinstance(err, OSError) and not getattr(err, "from_main", False):
            print(f"gammalimit {args.command} (rank {rank}): error: {text}", file=sys.stderr)

    try:
        if rank == 0:
            result = args.func(args)
        else:  # the other ranks work alongside rank 0 and print nothing
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                result = args.func(args)
    except KeyboardInterrupt as err:
        if rank == 0:
            print(_interrupted(args, err), file=sys.stderr)
        return 130
    except (ValueError, TypeError) as err:
        error(str(err), err)
        return 2
    except OSError as err:  # a folder or file that cannot be written or read: one line, no traceback
        where = f" {err.filename!s}" if err.filename else ""
        error(f"cannot use{where}: {err.strerror or err}", err)
        return 2
    if result is not None and rank == 0:
        if getattr(args, "json", False):
            print(json.dumps(result))
        else:
            _print_human(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
