"""The files of a run folder: ``config.json``, ``checkpoint.pt``, ``metrics.csv``,
``probes.json``, ``result.json``, ``log.jsonl`` and the lock file ``.lock``.

Every file but the growing ``metrics.csv`` and ``log.jsonl`` is written
atomically (:func:`gammalimit.fileio.write_atomic`), so an interrupted run
leaves the last complete version of each. A checkpoint holds the model,
optimiser, scheduler, RNG states, divergence monitor and step, and the config
it belongs to: resuming under a config that differs in a field other than
those of :data:`~gammalimit.train.config.RESUME_MAY_CHANGE` is an error that
names the field, its old and its new value. A run on samples also stores
their digest (:meth:`gammalimit.PointCloud.digest`): resuming after the data
file changed is an error too. Every file a resume reads is checked before
anything is written: a damaged one is an error that names it, and the folder
is left as it was. ``log.jsonl`` has one line per start, resume and end of a
segment of the run (with the step, the thread count and how it ended).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import torch

from ..fileio import write_atomic
from ..penalties import get_penalty
from .config import RESUME_MAY_CHANGE, TrainConfig, resume_conflicts

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"
RESULT = "result.json"
PROBES = "probes.json"
LOG = "log.jsonl"
LOCK = ".lock"
CHECKPOINT_FORMAT = "gammalimit-train-1"


def metric_fields(penalty="squared") -> tuple[str, ...]:
    """Columns of ``metrics.csv``: ``step``, ``loss``, one per term of the penalty, ``lr``, ``pairs``, ``seconds``."""
    return ("step", "loss", *get_penalty(penalty).names, "lr", "pairs", "seconds")


#: Columns of ``metrics.csv`` for the default penalty.
METRIC_FIELDS = metric_fields()


# --------------------------------------------------------------------------
# checkpoints


def save_checkpoint(path, config: TrainConfig, *, step: int, model, optimizer, scheduler, monitor: dict,
                    pairs: int, seconds: float, manifold=None, pool: dict | None = None,
                    start: dict | None = None) -> None:
    """Write the state of a run after ``step`` steps to ``path`` (atomically); ``pool`` and ``start``
    are the records of a run's pair pool and global start (:class:`gammalimit.train.TrainResult`)."""
    manifold = manifold if manifold is not None else config.make_manifold()
    cuda = torch.device(config.device).type == "cuda"
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "manifold": repr(manifold),
        "data_sha256": manifold.digest() if config.data is not None else None,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if cuda else None},
        "monitor": dict(monitor),
        "pairs": pairs,
        "seconds": seconds,
        "pool": pool,
        "start": start,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(Path(path), buf.getvalue())


#: The entries of a checkpoint.
CHECKPOINT_KEYS = ("format", "config", "step", "model", "optimizer", "scheduler", "rng", "monitor", "pairs", "seconds")

#: What to do about a damaged file of a run folder.
RESTORE = "restore it from a copy, or start a new run in another folder"


def _first_line(err: BaseException, limit: int = 120) -> str:
    text = str(err).strip().splitlines()
    text = text[0] if text else type(err).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def load_checkpoint(path, config: TrainConfig) -> dict:
    """The state stored in ``path``, checked to be whole and to belong to ``config`` (tensors on ``config.device``).

    ``config`` may differ from the checkpoint's in the fields of
    :data:`~gammalimit.train.config.RESUME_MAY_CHANGE`; ``steps`` must not be
    below the step the checkpoint reached.

    Raises
    ------
    ValueError
        If ``path`` does not exist, cannot be read (empty, truncated, not a
        checkpoint), lacks an entry, or belongs to another configuration.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no checkpoint to resume from: {path} does not exist; start the run without resume "
                         "(--resume), or give the folder that holds it")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty, not a checkpoint; {RESTORE}")
    try:
        state = torch.load(path, map_location=torch.device(config.device), weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... on damaged files
        raise ValueError(f"{path} cannot be read as a checkpoint (damaged or truncated: {_first_line(err)}); "
                         f"{RESTORE}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a checkpoint (a {type(state).__name__}, not a dict); {RESTORE}")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (format {state.get('format')!r}); "
                         f"{RESTORE}")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path} lacks {missing}: the checkpoint is incomplete; {RESTORE}")
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{path} holds step {step!r}, not a count of steps; {RESTORE}")
    try:
        saved = TrainConfig.from_dict(state["config"])
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path} holds an invalid config ({_first_line(err)}); {RESTORE}") from None
    conflicts = resume_conflicts(saved, config)
    if conflicts:
        listed = "; ".join(f"{k} = {old!r} in the run, {new!r} now" for k, (old, new) in conflicts.items())
        raise ValueError(f"the checkpoint in {path} belongs to another configuration: {listed}. Only "
                         f"{', '.join(RESUME_MAY_CHANGE)} may change on resume; start a new run in another "
                         "folder to change the others")
    if config.steps < step:
        raise ValueError(f"steps = {config.steps} is below step {step}, which the checkpoint in {path} has "
                         f"reached; give steps >= {step}")
    state["saved_config"] = saved
    return state


def restore(state: dict, path, model, optimizer, scheduler) -> None:
    """Load a checkpoint's model, optimiser, scheduler and RNG states, checking that each fits the run.

    Raises
    ------
    ValueError
        If a part is missing tensors or has tensors of the wrong shape (the
        message names ``path`` and the part).
    """
    part = "model"
    try:
        model.load_state_dict(state["model"])
        part = "optimizer"
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            for p in group["params"]:
                s = optimizer.state.get(p, {})
                if state["step"] > 0 and not all(k in s for k in ("step", "exp_avg", "exp_avg_sq")):
                    raise ValueError(f"no moments for a parameter of shape {tuple(p.shape)}")
                for k in ("exp_avg", "exp_avg_sq"):
                    if k in s and s[k].shape != p.shape:
                        raise ValueError(f"{k} of shape {tuple(s[k].shape)} for a parameter of shape "
                                         f"{tuple(p.shape)}")
        part = "scheduler"
        scheduler.load_state_dict(state["scheduler"])
        part = "RNG state"
        restore_rng(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise ValueError(f"the {part} in {path} does not fit this run ({_first_line(err)}); {RESTORE}") from None


def check_data(state: dict, manifold, path) -> None:
    """Raise ``ValueError`` if the samples of a run on data are not those the checkpoint was trained on."""
    stored = state.get("data_sha256")
    if stored is not None and stored != manifold.digest():
        raise ValueError(f"the samples differ from those the checkpoint in {path} was trained on (SHA-256 "
                         f"{stored[:12]}... then, {manifold.digest()[:12]}... now): the data file changed; "
                         "restore it, or start a new run")


def restore_rng(state: dict) -> None:
    """Set torch's generators to the states a checkpoint holds."""
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


# --------------------------------------------------------------------------
# metrics.csv


def read_metrics(path, upto: int, fields=None) -> list[dict]:
    """The rows of ``metrics.csv`` for steps 1 to ``upto`` (``step`` and ``pairs`` as int, the rest as float).

    Rows after step ``upto`` (steps after the last checkpoint, redone on
    resume; the last of them possibly cut short by a crash) are not read.

    Raises
    ------
    ValueError
        If the file is missing (for ``upto > 0``), has other columns than
        ``fields``, or a row up to ``upto`` is garbled or out of order.
    """
    path = Path(path)
    if upto == 0 and not path.exists():
        return []
    if not path.exists():
        raise ValueError(f"{path} is missing: the checkpoint is at step {upto}, and the per-step record of the "
                         f"run is gone; {RESTORE}")
    rows = []
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if fields is not None and tuple(reader.fieldnames or ()) != tuple(fields):
                raise ValueError(f"its columns are {reader.fieldnames}, expected {list(fields)}")
            for row in reader:
                if len(rows) == upto:
                    break
                if None in row or None in row.values():
                    n = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or ())
                    raise ValueError(f"line {reader.line_num} has {n} values for {len(reader.fieldnames)} columns")
                try:
                    row = {k: (int(v) if k in ("step", "pairs") else float(v)) for k, v in row.items()}
                except ValueError as err:
                    raise ValueError(f"line {reader.line_num}: {err}") from None
                if row["step"] != len(rows) + 1:
                    raise ValueError(f"line {reader.line_num} is step {row['step']}, expected {len(rows) + 1}")
                rows.append(row)
    except (ValueError, csv.Error, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is garbled ({_first_line(err)}); {RESTORE}") from None
    if len(rows) < upto:
        raise ValueError(f"{path} holds {len(rows)} steps, but the checkpoint is at step {upto}: the per-step "
                         f"record is cut short; {RESTORE}")
    return rows


class MetricsLog:
    """``metrics.csv``, rewritten with ``rows`` on opening, then appended one row per step."""

    def __init__(self, path, fields, rows=()):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(Path(path), buf.getvalue().encode())
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fields, lineterminator="\n")

    def write(self, row: dict) -> None:
        self.writer.writerow(row)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


# --------------------------------------------------------------------------
# config.json, probes.json, result.json


def _write_json(path, data, **kw) -> None:
    write_atomic(Path(path), (json.dumps(data, **kw) + "\n").encode())


def write_config(out, config: TrainConfig) -> None:
    _write_json(Path(out) / CONFIG, config.to_dict(), indent=1)


def load_config(out) -> TrainConfig:
    """The configuration of the run in folder ``out`` (from its ``config.json``).

    Raises
    ------
    ValueError
        If there is no ``config.json``, or it is not valid JSON, or not a valid :class:`TrainConfig`.
    """
    path = Path(out) / CONFIG
    if not Path(out).is_dir():
        raise ValueError(f"no run to resume in {out}: the folder does not exist; give the folder of the run")
    if not path.exists():
        raise ValueError(f"no run to resume in {out}: {path} does not exist; start the run without --resume")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({_first_line(err)}); {RESTORE}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a run configuration; {RESTORE}")
    try:
        return TrainConfig.from_dict(data)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a valid run configuration ({_first_line(err)}); {RESTORE}") from None


def read_probes(out, upto: int) -> list[dict]:
    """The callback's records of the run in ``out`` up to step ``upto`` (none if it kept none)."""
    path = Path(out) / PROBES
    if not path.exists():
        return []
    try:
        probes = json.loads(path.read_text())
        return [p for p in probes if p["step"] <= upto]
    except (ValueError, UnicodeDecodeError, TypeError, KeyError) as err:
        raise ValueError(f"{path} is garbled ({_first_line(err)}); {RESTORE}") from None


def write_probes(out, probes: list[dict]) -> None:
    _write_json(Path(out) / PROBES, probes)


def write_result(out, result: dict) -> None:
    _write_json(Path(out) / RESULT, result, indent=1, default=str)


def append_log(out, event: str, **fields) -> None:
    """Append one line ``{"event", "time", **fields}`` to the run's ``log.jsonl`` (flushed at once)."""
    record = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(), **fields}
    with open(Path(out) / LOG, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
