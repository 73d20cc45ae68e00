"""The files of a run folder: ``config.json``, ``checkpoint.pt``, ``metrics.csv``,
``probes.json`` and ``result.json``.

Every file but the growing ``metrics.csv`` is written atomically
(:func:`gammalimit.fileio.write_atomic`), so an interrupted run leaves the
last complete version of each. A checkpoint holds the model, optimiser,
scheduler, RNG states, divergence monitor and step, and the config it belongs
to: resuming under another config is an error that lists the differences. A
run on samples also stores their digest (:meth:`gammalimit.PointCloud.digest`):
resuming after the data file changed is an error too.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import torch

from ..fileio import write_atomic
from ..penalties import get_penalty
from .config import TrainConfig

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"
RESULT = "result.json"
PROBES = "probes.json"
CHECKPOINT_FORMAT = "gammalimit-train-1"


def metric_fields(penalty="squared") -> tuple[str, ...]:
    """Columns of ``metrics.csv``: ``step``, ``loss``, one per term of the penalty, ``lr``, ``pairs``, ``seconds``."""
    return ("step", "loss", *get_penalty(penalty).names, "lr", "pairs", "seconds")


#: Columns of ``metrics.csv`` for the default penalty.
METRIC_FIELDS = metric_fields()


# --------------------------------------------------------------------------
# checkpoints


def save_checkpoint(path, config: TrainConfig, *, step: int, model, optimizer, scheduler, monitor: dict,
                    pairs: int, seconds: float, manifold=None, pool: dict | None = None) -> None:
    """Write the state of a run after ``step`` steps to ``path`` (atomically); ``pool`` is the record
    of a run's pair pool (:attr:`gammalimit.train.TrainResult.pool`)."""
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
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(Path(path), buf.getvalue())


def load_checkpoint(path, config: TrainConfig) -> dict:
    """The state stored in ``path``, checked to belong to ``config`` (tensors on ``config.device``).

    Raises
    ------
    ValueError
        If ``path`` does not exist, is not a checkpoint of this format, or
        belongs to another configuration.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no checkpoint to resume from: {path} does not exist")
    state = torch.load(path, map_location=torch.device(config.device), weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (format {state.get('format')!r})")
    saved = TrainConfig.from_dict(state["config"])
    if saved != config:
        diff = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved).items() if getattr(config, k) != v}
        raise ValueError(f"the checkpoint in {path} belongs to another configuration; "
                         f"differences (checkpoint, now): {diff}")
    return state


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


def read_metrics(path, upto: int) -> list[dict]:
    """The rows of ``metrics.csv`` up to step ``upto`` (``step`` and ``pairs`` as int, the rest as float)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if int(row["step"]) > upto:
                break
            rows.append({k: (int(v) if k in ("step", "pairs") else float(v)) for k, v in row.items()})
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
    """The configuration of the run in folder ``out`` (from its ``config.json``)."""
    path = Path(out) / CONFIG
    if not path.exists():
        raise ValueError(f"no run to resume in {out}: {path} does not exist")
    return TrainConfig.from_dict(json.loads(path.read_text()))


def read_probes(out, upto: int) -> list[dict]:
    """The callback's records of the run in ``out`` up to step ``upto`` (none if it kept none)."""
    path = Path(out) / PROBES
    return [p for p in json.loads(path.read_text()) if p["step"] <= upto] if path.exists() else []


def write_probes(out, probes: list[dict]) -> None:
    _write_json(Path(out) / PROBES, probes)


def write_result(out, result: dict) -> None:
    _write_json(Path(out) / RESULT, result, indent=1, default=str)
