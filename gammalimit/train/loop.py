"""The training loop: AdamW with warm-up and cosine decay on ``L_delta``, checkpoints, resume.

Step ``s`` draws its pairs with a seed derived from ``(seed, s)``
(:func:`~gammalimit.train.batches.step_seed`); with ``qmc``, the run's two Sobol sequences are scrambled
once, by ``seed``, and every step shifts them digitally by its step seed
(``scramble_seed`` of :func:`~gammalimit.sampling.sample_pairs`). A run is thus
a function of its config; resuming from a
checkpoint gives, on the same machine, the same weights bit for bit as a run
that was never interrupted. A run on samples (``config.data``) draws its pairs
from a pool of cloud pairs (:meth:`gammalimit.PointCloud.pair_pool`, seeded by
:func:`~gammalimit.train.batches.pool_seed`), computed when the run starts and again, identically, when
it resumes: the pool is a function of the config and the data, which the
checkpoint names by their digest. A non-finite or diverging loss stops training
with :class:`~gammalimit.train.stopping.TrainingDiverged`; the last checkpoint
(written only while the weights were finite) is kept. A run folder is created
with its missing parents, checked to be writable before anything runs, and
locked (an OS file lock, :class:`gammalimit.fileio.FolderLock`) for the whole
run: a second process writing the same folder is refused. Ctrl-C
(``KeyboardInterrupt``) ends a run with
:class:`~gammalimit.train.stopping.TrainingInterrupted`, which says which
checkpoint is kept.

Under ``torchrun`` (a ``torch.distributed`` group of K > 1 processes,
:mod:`gammalimit.distributed`) the run is data parallel: each step's global
batch is the single-process batch, each rank takes its share of its pairs
(:func:`~gammalimit.train.batches.step_pairs`) and ``DistributedDataParallel`` averages the
gradients; rank 0 alone writes the run folder (and holds its lock), every
rank loads the checkpoint on resume, and the final evaluation's estimates are
shared out among the ranks, as are the blocks of a run on samples' pair pool
(gathered in block order: the single-process pool, bit for bit).
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .. import distributed
from ..fileio import FolderLock, writable_folder
from ..loss import pair_terms
from ..manifolds.point_cloud import PairPool
from ..validation import check_count
from . import checkpoint as files
from .batches import check_shares, draw_pool, pool_seed, step_pairs
from .config import TrainConfig
from .evaluation import evaluate
from .data import given_pairs
from .networks import build_encoder, parameter_groups
from .start import global_start
from .stopping import TrainingDiverged, check_loss, diverged, interrupted

#: Seconds between progress lines when stderr is not a terminal (a log file).
LOG_INTERVAL = 30.0

#: Steps over which the progress bar reports the relative change of the smoothed loss.
PROGRESS_WINDOW = 100


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


def progress_bar(total: int, start: int, enabled: bool):
    """A tqdm bar on stderr: redrawn in place on a terminal, a line every
    :data:`LOG_INTERVAL` seconds otherwise. Its postfix (:func:`progress_postfix`)
    shows the loss, the learning rate and how much the smoothed loss moved."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=start, file=sys.stderr, disable=not enabled, unit="step",
                mininterval=0.1 if tty else LOG_INTERVAL, dynamic_ncols=tty)


def progress_postfix(loss: float, lr: float, smoothed: deque, first: float | None) -> str:
    """``loss 0.0123 | lr 9.9e-04 | -3.1%/100 steps | -97% overall``: the batch loss, the learning rate,
    and the relative change of the smoothed loss (the divergence monitor's moving average) over the
    last ``len(smoothed) - 1`` steps and since the first step, so that a slow run is seen to move."""
    text = f"loss {loss:.4g} | lr {lr:.2g}"
    if len(smoothed) > 1 and smoothed[0] > 0:
        text += f" | {100 * (smoothed[-1] / smoothed[0] - 1):+.2g}%/{len(smoothed) - 1} steps"
    if first and smoothed:
        text += f" | {100 * (smoothed[-1] / first - 1):+.3g}% overall"
    return text


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
    threads : int
        torch's intra-op threads in the last segment of the run (:class:`Trainer`'s ``threads``).
    start : dict or None
        The global start (:func:`~gammalimit.train.start.global_start`):
        method, points, the fit's ``relative_rms``, seconds (not counted in ``seconds``).
    timing : dict or None
        Of the steps of the last segment of the run (``steps`` of them):
        ``seconds_sampling``, drawing the pairs, and ``seconds_step``, the
        whole step (sampling, forward, backward, update; not logging or
        checkpoints).
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
    start: dict | None = None
    threads: int | None = None
    timing: dict | None = None

    def to_dict(self) -> dict:
        """Plain data (no model, no per-step history)."""
        return {"config": self.config.to_dict(), "steps": self.steps, "seconds": self.seconds,
                "pairs_per_second": self.pairs_per_second, "threads": self.threads, "pool": self.pool,
                "start": self.start, "timing": self.timing,
                "evaluation": self.evaluation,
                "final_loss": self.history[-1]["loss"] if self.history else None, "probes": self.probes}


class Trainer:
    """Train an encoder on ``L_delta = E[sum_t c_t l_t]`` with the config's penalty.

    Parameters
    ----------
    config : TrainConfig
    out : str or Path, optional
        Run folder (:mod:`gammalimit.train.checkpoint`), created with its
        missing parents; without it nothing is written and a run cannot be
        resumed. One process at a time may write it (a second is refused
        with :class:`gammalimit.fileio.FolderLocked`).
    progress : bool
        Draw a progress bar on stderr.
    callback : callable, optional
        ``callback(step, model) -> dict``, called every ``probe_every`` steps
        and at the last step (e.g. to follow the radius of a learned circle);
        its time counts in the wall time.
    probe_every : int
    threads : int, optional
        torch's intra-op threads for the run (``torch.set_num_threads``, the
        previous value restored afterwards); ``None`` leaves torch's setting
        (by default ``OMP_NUM_THREADS`` if set, else the number of cores).
        Two runs of many threads each on few cores slow each other down far
        more than twice; give each ``threads=1`` then.
    """

    def __init__(self, config: TrainConfig, *, out=None, progress: bool = True, callback=None,
                 probe_every: int = 100, threads: int | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.out = Path(out) if out is not None else None
        self.progress = progress
        self.callback = callback
        self.probe_every = check_count(probe_every, "probe_every")
        self.threads = None if threads is None else check_count(threads, "threads")
        self.manifold = config.make_manifold()
        self.device = torch.device(config.device)
        self.pool = None  # the record of the pair pool (result.json)
        self.start = None  # the record of the global start (result.json)
        self._pool_pairs = None

    def pair_source(self):
        """Where the training pairs come from: the manifold, or for a run on samples the pool of
        ``config.pool_pairs`` cloud pairs (a :class:`~gammalimit.manifolds.point_cloud.PairPool`),
        computed on the first call and timed in :attr:`pool`."""
        c = self.config
        if c.data is None:
            return self.manifold
        given = given_pairs(self.manifold, c.delta)
        if given is not None:  # a triplet file: its pairs are the pool
            self.pool = {"pairs": len(given), "triplets": c.data}
            return PairPool(given, c.strategy)
        if self._pool_pairs is None:
            t0 = time.perf_counter()
            pairs = draw_pool(c, self.manifold, self.progress)
            self.pool = {"pairs": len(pairs), "seed": pool_seed(c.seed), "seconds": time.perf_counter() - t0}
            if self.manifold.midpoint_rule == "projection":
                self.pool["fit"] = dict(self.manifold.last_fit)
            self._pool_pairs = PairPool(pairs, c.strategy)
        return self._pool_pairs

    def _fresh_state(self, start: bool = True):
        c = self.config
        model = build_encoder(c, self.manifold).to(self.device)
        if start:
            self.start = global_start(model, self.manifold, c, parameter_groups(model, c))
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
        model, opt, sched, monitor = self._fresh_state(start=False)
        files.restore(state, self._checkpoint_path(), model, opt, sched)
        if state["saved_config"].steps != self.config.steps:
            self._stretch_schedule(opt, sched)
        monitor.update(state["monitor"])
        self.pool = state.get("pool")  # recomputed, and its record renewed, if steps remain
        self.start = state.get("start")
        step = state["step"]
        history = files.read_metrics(self.out / files.METRICS, step, files.metric_fields(self.config.penalty))
        return step, model, opt, sched, monitor, state["pairs"], state["seconds"], history

    def _stretch_schedule(self, opt, sched) -> None:
        """A resume that changes ``steps``: the cosine runs to the new last step from here on (the
        learning rate jumps to the value the longer schedule has at this step)."""
        for fn in sched.lr_lambdas:
            fn.total = self.config.steps
        for group, base, fn in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * fn(sched.last_epoch)
        sched._last_lr = [group["lr"] for group in opt.param_groups]

    def run(self, *, resume: bool = False, evaluate_final: bool = True) -> TrainResult:
        """Train (from scratch, or from the last checkpoint with ``resume``).

        Raises
        ------
        ValueError
            An output folder that cannot be written; ``resume`` without a
            checkpoint, with a damaged file in the folder, or with a checkpoint
            of another configuration; a fresh run into a folder that holds a
            checkpoint (each checked before anything is written).
        gammalimit.fileio.FolderLocked
            If another process is writing the output folder.
        TrainingDiverged
            On a non-finite or diverging loss (the last good checkpoint is kept).
        TrainingInterrupted
            On ``KeyboardInterrupt`` (Ctrl-C); the last checkpoint is kept.
        """
        lock = None
        if self.out is not None:
            if resume and not self.out.is_dir():
                raise ValueError(f"no checkpoint to resume from: the run folder {self.out} does not exist; start "
                                 "the run without resume (--resume), or give the folder that holds it")
            lock = distributed.from_main(self._claim_folder)  # rank 0 writes; its refusal stops every rank
        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        self._done, self._last_good, self._started = 0, None, False
        try:
            result = self._run(resume, evaluate_final)
        except KeyboardInterrupt:
            self._log("interrupted")
            raise interrupted(self.config, self._done, self._last_good, self.out,
                              self._checkpoint_path()) from None
        except TrainingDiverged:
            self._log("diverged")
            raise
        except BaseException:
            self._log("failed")
            raise
        else:
            self._log("finished")
            return result
        finally:
            torch.set_num_threads(threads)
            if lock is not None:
                lock.release()

    def _claim_folder(self) -> FolderLock:
        writable_folder(self.out, "run folder")
        return FolderLock(self.out, files.LOCK, "run folder")

    def _writes(self) -> bool:
        """Whether this process writes the run folder (the only process, or rank 0)."""
        return self.out is not None and distributed.is_main()

    def _log(self, event: str, **fields) -> None:
        """A line of ``log.jsonl`` (only once the run has started writing its folder)."""
        if self._writes() and self._started:
            files.append_log(self.out, event, step=self._done, checkpoint_step=self._last_good, **fields)

    def _run(self, resume: bool, evaluate_final: bool) -> TrainResult:
        c = self.config
        if resume:
            start, model, opt, sched, monitor, pairs_seen, seconds, history = self._resume()
            probes = files.read_probes(self.out, start)
            self._done = self._last_good = start
        else:
            if self.out is not None and self._checkpoint_path().exists():
                raise ValueError(f"{self._checkpoint_path()} exists: pass resume=True (--resume) to continue "
                                 "that run, or choose another output folder")
            start, pairs_seen, seconds, history, probes = 0, 0, 0.0, [], []
            model, opt, sched, monitor = self._fresh_state()
        check_shares(self.config)
        distributed.barrier()  # every rank has read the folder before rank 0 rewrites metrics.csv
        net = distributed.wrap(model, self.device)  # gradients averaged over the ranks
        share = distributed.world_size()
        source = self.pair_source() if start < c.steps else None
        log = None
        if self._writes():
            files.write_config(self.out, c)
            log = files.MetricsLog(self.out / files.METRICS, files.metric_fields(c.penalty), history)
            self._started = True
            self._log("resume" if resume else "start", steps=c.steps, threads=torch.get_num_threads(),
                      torch=torch.__version__)
        bar = progress_bar(c.steps, start, self.progress and distributed.is_main())
        smoothed = deque(maxlen=PROGRESS_WINDOW + 1)
        first = history[0]["loss"] if history else None
        last_good = start if (resume or self.out is None) else None
        t_start = time.perf_counter() - seconds
        timing = {"seconds_sampling": 0.0, "seconds_step": 0.0, "steps": 0}
        model.train()
        try:
            for step in range(start, c.steps):
                t_step = time.perf_counter()
                pairs = step_pairs(c, source, step)
                timing["seconds_sampling"] += time.perf_counter() - t_step
                opt.zero_grad(set_to_none=True)
                lr = opt.param_groups[0]["lr"]
                try:
                    terms = pair_terms(net, pairs, c.penalty)
                except ValueError as err:  # non-finite codes or overflowing penalties
                    raise diverged(c, step + 1, f"the loss is not finite ({err})", last_good,
                                   self._checkpoint_path()) from None
                loss = terms.total(c.lam).mean()
                # the batch's loss and terms: the mean of the ranks' equal shares (all ranks decide alike)
                batch = distributed.all_mean(torch.stack([loss.detach(), *(v.detach().mean() for v in terms.values())]))
                try:
                    check_loss(batch[0], monitor, c.divergence_ratio)
                except ValueError as err:
                    raise diverged(c, step + 1, err, last_good, self._checkpoint_path()) from None
                loss.backward()
                opt.step()
                sched.step()
                timing["seconds_step"] += time.perf_counter() - t_step
                timing["steps"] += 1
                pairs_seen += len(pairs) * share
                row = {"step": step + 1, "loss": float(batch[0]),
                       **{name: float(value) for name, value in zip(terms, batch[1:])},
                       "lr": lr, "pairs": pairs_seen, "seconds": time.perf_counter() - t_start}
                history.append(row)
                if log:
                    log.write(row)
                done = self._done = step + 1
                first = row["loss"] if first is None else first
                smoothed.append(monitor["ema"])
                if self.callback is not None and (done % self.probe_every == 0 or done == c.steps):
                    probe = dict(self.callback(done, model) or {})
                    probes.append({"step": done, "seconds": time.perf_counter() - t_start, **probe})
                if self.out is not None and (done % c.checkpoint_every == 0 or done == c.steps):
                    if not all(torch.isfinite(p).all() for p in model.parameters()):
                        raise diverged(c, done, "the weights are not finite after the update", last_good,
                                       self._checkpoint_path())
                    if self._writes():
                        log.flush()
                        files.save_checkpoint(self._checkpoint_path(), c, step=done, model=model, optimizer=opt,
                                              scheduler=sched, monitor=monitor, pairs=pairs_seen,
                                              seconds=time.perf_counter() - t_start, manifold=self.manifold,
                                              pool=self.pool, start=self.start)
                        if self.callback is not None:
                            files.write_probes(self.out, probes)
                    last_good = self._last_good = done
                bar.set_postfix_str(progress_postfix(row["loss"], lr, smoothed, first), refresh=False)
                bar.update()
        finally:
            bar.close()
            if log:
                log.close()
        seconds = time.perf_counter() - t_start
        result = TrainResult(c, model, history, probes, {}, c.steps, seconds, pairs_seen / max(seconds, 1e-9),
                             self.pool, self.start, torch.get_num_threads(), timing)
        if evaluate_final:
            result.evaluation = evaluate(model, c, self.manifold)
        if self._writes():
            files.write_result(self.out, result.to_dict())
        return result


def train(config: TrainConfig, *, out=None, resume: bool = False, progress: bool = True, callback=None,
          probe_every: int = 100, evaluate_final: bool = True, threads: int | None = None) -> TrainResult:
    """Train an encoder on ``L_delta``; see :class:`Trainer`.

    Parameters
    ----------
    config : TrainConfig or None
        With ``resume`` and ``config=None``, the configuration stored in
        ``out`` is used.
    out, progress, callback, probe_every, threads
        See :class:`Trainer`.
    resume : bool
        Continue from ``out/checkpoint.pt``; the result equals that of an
        uninterrupted run (bit for bit on the same machine). ``config`` may
        differ from the stored one only in the fields of
        :data:`~gammalimit.train.config.RESUME_MAY_CHANGE`; a longer ``steps``
        extends a finished run, with the cosine schedule stretched to the new
        length from the resume point (so not bit for bit a run started with
        that many steps).
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
    return Trainer(config, out=out, progress=progress, callback=callback, probe_every=probe_every,
                   threads=threads).run(
        resume=resume, evaluate_final=evaluate_final)
