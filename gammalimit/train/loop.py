"""The training loop: AdamW with warm-up and cosine decay on ``L_delta``, checkpoints, resume.

Step ``s`` draws its pairs with a seed derived from ``(seed, s)``
(:func:`step_seed`), so a run is a function of its config; resuming from a
checkpoint gives, on the same machine, the same weights bit for bit as a run
that was never interrupted. A run on samples (``config.data``) draws its pairs
from a pool of cloud pairs (:meth:`gammalimit.PointCloud.pair_pool`, seeded by
:func:`pool_seed`), computed when the run starts and again, identically, when
it resumes: the pool is a function of the config and the data, which the
checkpoint names by their digest. A non-finite or diverging loss stops training
with :class:`TrainingDiverged`; the last checkpoint (written only while the
weights were finite) is kept.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..loss import pair_terms
from ..manifolds.point_cloud import PairPool
from ..sampling import sample_pairs
from ..validation import check_count
from . import checkpoint as files
from .config import TrainConfig
from .evaluation import evaluate
from .networks import build_encoder, parameter_groups

#: Seconds between progress lines when stderr is not a terminal (a log file).
LOG_INTERVAL = 30.0


class WarmupCosine:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then a
    cosine from 1 down to ``floor`` at step ``total``. A picklable callable,
    so that ``LambdaLR`` can hold it in a checkpoint."""

    def __init__(self, warmup: int, total: int, floor: float):
        self.warmup, self.total, self.floor = warmup, total, floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


def step_seed(seed: int, step: int) -> int:
    """Seed of the training pairs of step ``step`` of a run with seed ``seed``."""
    state = np.random.SeedSequence([int(seed), int(step), 0x7A1]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def pool_seed(seed: int) -> int:
    """Seed of the pair pool of a run on samples with seed ``seed`` (apart from every step's seed)."""
    state = np.random.SeedSequence([int(seed), 0x9001]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def progress_bar(total: int, start: int, enabled: bool):
    """A tqdm bar on stderr: redrawn in place on a terminal, a line every
    :data:`LOG_INTERVAL` seconds otherwise."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=start, file=sys.stderr, disable=not enabled, unit="step",
                mininterval=0.1 if tty else LOG_INTERVAL, dynamic_ncols=tty)


class TrainingDiverged(ValueError):
    """The loss became non-finite or diverged; ``step`` is where, ``checkpoint``
    the last good checkpoint (or ``None``)."""

    def __init__(self, message: str, step: int, checkpoint: str | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


@dataclass
class TrainResult:
    """What a run returns.

    Attributes
    ----------
    config : TrainConfig
    model : torch.nn.Module
        The trained encoder (float32, on ``config.device``).
    history : list of dict
        One row per step (:func:`~gammalimit.train.metric_fields`); ``loss``
        and the terms are float32 batch means at the weights before that
        step's update.
    probes : list of dict
        What the callback returned, with ``step`` and ``seconds``.
    evaluation : dict
        :func:`~gammalimit.train.evaluate` of the final encoder (empty if ``evaluate_final=False``).
    steps : int
    seconds : float
        Wall time of the optimisation (summed over resumed segments), without evaluation.
    pairs_per_second : float
    pool : dict or None
        For a run on samples: the pair pool's ``pairs``, ``seed``, ``seconds``
        (to compute it, in the last segment of the run that trained; not counted in ``seconds``)
        and, for projected midpoints, ``fit`` (the residuals of the local fits
        of its last block, :attr:`gammalimit.PointCloud.last_fit`).
    """

    config: TrainConfig
    model: torch.nn.Module
    history: list = field(default_factory=list)
    probes: list = field(default_factory=list)
    evaluation: dict = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    pairs_per_second: float = 0.0
    pool: dict | None = None

    def to_dict(self) -> dict:
        """Plain data (no model, no per-step history)."""
        return {"config": self.config.to_dict(), "steps": self.steps, "seconds": self.seconds,
                "pairs_per_second": self.pairs_per_second, "pool": self.pool, "evaluation": self.evaluation,
                "final_loss": self.history[-1]["loss"] if self.history else None, "probes": self.probes}


class Trainer:
    """Train an encoder on ``L_delta = E[sum_t c_t l_t]`` with the config's penalty.

    Parameters
    ----------
    config : TrainConfig
    out : str or Path, optional
        Run folder (:mod:`gammalimit.train.checkpoint`); without it nothing
        is written and a run cannot be resumed.
    progress : bool
        Draw a progress bar on stderr.
    callback : callable, optional
        ``callback(step, model) -> dict``, called every ``probe_every`` steps
        and at the last step (e.g. to follow the radius of a learned circle);
        its time counts in the wall time.
    probe_every : int
    """

    def __init__(self, config: TrainConfig, *, out=None, progress: bool = True, callback=None,
                 probe_every: int = 100):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.out = Path(out) if out is not None else None
        self.progress = progress
        self.callback = callback
        self.probe_every = check_count(probe_every, "probe_every")
        self.manifold = config.make_manifold()
        self.device = torch.device(config.device)
        self.pool = None  # the record of the pair pool (result.json)
        self._pool_pairs = None

    def pair_source(self):
        """Where the training pairs come from: the manifold, or for a run on samples the pool of
        ``config.pool_pairs`` cloud pairs (a :class:`~gammalimit.manifolds.point_cloud.PairPool`),
        computed on the first call and timed in :attr:`pool`."""
        c = self.config
        if c.data is None:
            return self.manifold
        if self._pool_pairs is None:
            t0 = time.perf_counter()
            pairs = self.manifold.pair_pool(c.delta, c.pool_pairs, strategy=c.strategy, seed=pool_seed(c.seed),
                                            progress=self.progress)
            self.pool = {"pairs": len(pairs), "seed": pool_seed(c.seed), "seconds": time.perf_counter() - t0}
            if self.manifold.midpoint_rule == "projection":
                self.pool["fit"] = dict(self.manifold.last_fit)
            self._pool_pairs = PairPool(pairs, c.strategy)
        return self._pool_pairs

    def _fresh_state(self):
        c = self.config
        model = build_encoder(c, self.manifold).to(self.device)
        opt = torch.optim.AdamW(parameter_groups(model, c), lr=c.lr, weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(c.warmup, c.steps, c.final_lr_ratio))
        monitor = {"ema": None, "best": math.inf}
        return model, opt, sched, monitor

    def _checkpoint_path(self) -> Path | None:
        return self.out / files.CHECKPOINT if self.out is not None else None

    def _resume(self):
        if self.out is None:
            raise ValueError("resume needs an output folder (out) holding a checkpoint")
        state = files.load_checkpoint(self._checkpoint_path(), self.config)
        files.check_data(state, self.manifold, self._checkpoint_path())
        model, opt, sched, monitor = self._fresh_state()
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        files.restore_rng(state)
        monitor.update(state["monitor"])
        self.pool = state.get("pool")  # recomputed, and its record renewed, if steps remain
        step = state["step"]
        history = files.read_metrics(self.out / files.METRICS, step) if (self.out / files.METRICS).exists() else []
        return step, model, opt, sched, monitor, state["pairs"], state["seconds"], history

    def run(self, *, resume: bool = False, evaluate_final: bool = True) -> TrainResult:
        """Train (from scratch, or from the last checkpoint with ``resume``).

        Raises
        ------
        ValueError
            ``resume`` without a checkpoint or with a checkpoint of another
            configuration; a fresh run into a folder that holds a checkpoint.
        TrainingDiverged
            On a non-finite or diverging loss (the last good checkpoint is kept).
        """
        c = self.config
        if resume:
            start, model, opt, sched, monitor, pairs_seen, seconds, history = self._resume()
            probes = files.read_probes(self.out, start)
        else:
            if self.out is not None and self._checkpoint_path().exists():
                raise ValueError(f"{self._checkpoint_path()} exists: pass resume=True (--resume) to continue "
                                 "that run, or choose another output folder")
            start, pairs_seen, seconds, history, probes = 0, 0, 0.0, [], []
            model, opt, sched, monitor = self._fresh_state()
        source = self.pair_source() if start < c.steps else None
        log = None
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            files.write_config(self.out, c)
            log = files.MetricsLog(self.out / files.METRICS, files.metric_fields(c.penalty), history)
        bar = progress_bar(c.steps, start, self.progress)
        last_good = start if (resume or self.out is None) else None
        t_start = time.perf_counter() - seconds
        model.train()
        try:
            for step in range(start, c.steps):
                pairs = sample_pairs(source, c.batch_size, c.delta, strategy=c.strategy,
                                     antithetic=c.antithetic, qmc=c.qmc, qmc_replicates=2,
                                     seed=step_seed(c.seed, step))
                opt.zero_grad(set_to_none=True)
                lr = opt.param_groups[0]["lr"]
                try:
                    terms = pair_terms(model, pairs, c.penalty)
                except ValueError as err:  # non-finite codes or overflowing penalties
                    raise self._diverged(step + 1, f"the loss is not finite ({err})", last_good) from None
                loss = terms.total(c.lam).mean()
                try:
                    self._check_loss(loss, monitor, step)
                except ValueError as err:
                    raise self._diverged(step + 1, err, last_good) from None
                loss.backward()
                opt.step()
                sched.step()
                pairs_seen += len(pairs)
                row = {"step": step + 1, "loss": float(loss.detach()),
                       **{name: float(value.detach().mean()) for name, value in terms.items()},
                       "lr": lr, "pairs": pairs_seen, "seconds": time.perf_counter() - t_start}
                history.append(row)
                if log:
                    log.write(row)
                done = step + 1
                if self.callback is not None and (done % self.probe_every == 0 or done == c.steps):
                    probe = dict(self.callback(done, model) or {})
                    probes.append({"step": done, "seconds": time.perf_counter() - t_start, **probe})
                if self.out is not None and (done % c.checkpoint_every == 0 or done == c.steps):
                    if not all(torch.isfinite(p).all() for p in model.parameters()):
                        raise self._diverged(done, "the weights are not finite after the update", last_good)
                    log.flush()
                    files.save_checkpoint(self._checkpoint_path(), c, step=done, model=model, optimizer=opt,
                                          scheduler=sched, monitor=monitor, pairs=pairs_seen,
                                          seconds=time.perf_counter() - t_start, manifold=self.manifold,
                                          pool=self.pool)
                    if self.callback is not None:
                        files.write_probes(self.out, probes)
                    last_good = done
                bar.set_postfix_str(f"loss {row['loss']:.4g}", refresh=False)
                bar.update()
        finally:
            bar.close()
            if log:
                log.close()
        seconds = time.perf_counter() - t_start
        result = TrainResult(c, model, history, probes, {}, c.steps, seconds, pairs_seen / max(seconds, 1e-9),
                             self.pool)
        if evaluate_final:
            result.evaluation = evaluate(model, c, self.manifold)
        if self.out is not None:
            files.write_result(self.out, result.to_dict())
        return result

    def _check_loss(self, loss, monitor, step):
        value = float(loss.detach())
        if not math.isfinite(value):
            raise ValueError(f"the loss is not finite ({value})")
        monitor["ema"] = value if monitor["ema"] is None else 0.9 * monitor["ema"] + 0.1 * value
        monitor["best"] = min(monitor["best"], monitor["ema"])
        if monitor["ema"] > self.config.divergence_ratio * monitor["best"]:
            raise ValueError(f"the smoothed loss {monitor['ema']:.4g} exceeds divergence_ratio = "
                             f"{self.config.divergence_ratio:g} times its lowest value {monitor['best']:.4g}")

    def _diverged(self, step, err, last_good):
        if self.out is None:
            kept, path = "No checkpoint is kept (the run has no output folder)", None
        elif last_good is None:
            kept, path = "No checkpoint was written yet", None
        else:
            path = str(self._checkpoint_path())
            kept = f"The last good checkpoint (step {last_good}) is kept at {path}"
        return TrainingDiverged(
            f"training stopped at step {step} of {self.config.steps}: {err}. {kept}. "
            f"Lower the learning rate (lr = {self.config.lr:g}) or the scale of the problem and start again.",
            step, path)


def train(config: TrainConfig, *, out=None, resume: bool = False, progress: bool = True, callback=None,
          probe_every: int = 100, evaluate_final: bool = True) -> TrainResult:
    """Train an encoder on ``L_delta``; see :class:`Trainer`.

    Parameters
    ----------
    config : TrainConfig or None
        With ``resume`` and ``config=None``, the configuration stored in
        ``out`` is used.
    out, progress, callback, probe_every
        See :class:`Trainer`.
    resume : bool
        Continue from ``out/checkpoint.pt``; the result equals that of an
        uninterrupted run (bit for bit on the same machine).
    evaluate_final : bool
        Evaluate the trained encoder in float64 (:func:`~gammalimit.train.evaluate`).

    Returns
    -------
    TrainResult
    """
    if config is None:
        if not resume or out is None:
            raise TypeError("config is required unless resuming from an output folder")
        config = files.load_config(out)
    return Trainer(config, out=out, progress=progress, callback=callback, probe_every=probe_every).run(
        resume=resume, evaluate_final=evaluate_final)
