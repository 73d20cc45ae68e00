"""How a training run stops before its last step, and what it says about the checkpoint it keeps.

Ctrl-C (``KeyboardInterrupt``) ends a run with :class:`TrainingInterrupted`.
A non-finite loss, weights that are not finite after an update, or a loss
that diverges end it with :class:`TrainingDiverged`; divergence is watched by
:func:`check_loss`, which keeps a moving average of the batch loss and stops
when it exceeds ``divergence_ratio`` times its lowest value (a safeguard, not
early stopping on a validation score). Each exception names the last
checkpoint kept (written only while the weights were finite) and how to go
on, or says why there is none.
"""

from __future__ import annotations

import math

from .config import TrainConfig


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (``KeyboardInterrupt``) ended a run after ``step`` of ``steps`` steps; ``checkpoint``
    is the path of the checkpoint kept (``None`` if none was written), at step ``checkpoint_step``.
    ``first_checkpoint`` is the step at which the first checkpoint would have been written."""

    def __init__(self, message: str, *, step: int, steps: int, out, checkpoint: str | None,
                 checkpoint_step: int | None, first_checkpoint: int):
        super().__init__(message)
        self.step, self.steps, self.out, self.checkpoint = step, steps, out, checkpoint
        self.checkpoint_step, self.first_checkpoint = checkpoint_step, first_checkpoint


class TrainingDiverged(ValueError):
    """The loss became non-finite or diverged; ``step`` is where, ``checkpoint``
    the last good checkpoint (or ``None``)."""

    def __init__(self, message: str, step: int, checkpoint: str | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


def check_loss(loss, monitor: dict, divergence_ratio: float) -> None:
    """Update the divergence monitor ``{"ema", "best"}`` with a batch loss (a tensor); ``ValueError`` if the
    loss is not finite or its moving average exceeds ``divergence_ratio`` times its lowest value."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise ValueError(f"the loss is not finite ({value})")
    monitor["ema"] = value if monitor["ema"] is None else 0.9 * monitor["ema"] + 0.1 * value
    monitor["best"] = min(monitor["best"], monitor["ema"])
    if monitor["ema"] > divergence_ratio * monitor["best"]:
        raise ValueError(f"the smoothed loss {monitor['ema']:.4g} exceeds divergence_ratio = "
                         f"{divergence_ratio:g} times its lowest value {monitor['best']:.4g}")


def interrupted(config: TrainConfig, step: int, good: int | None, out, checkpoint) -> TrainingInterrupted:
    """The :class:`TrainingInterrupted` of a run stopped by Ctrl-C after ``step`` steps, whose last checkpoint
    (at ``checkpoint``, in the run folder ``out``; both ``None`` without one) was written at step ``good``."""
    first = min(config.checkpoint_every, config.steps)
    if out is None:
        kept, path = "the run has no output folder, so nothing is kept", None
    elif good is None:
        kept, path = f"no checkpoint was written yet (the first comes at step {first})", None
    else:
        path = str(checkpoint)
        kept = f"the last checkpoint (step {good}) is kept at {path}; resume=True continues from it"
    return TrainingInterrupted(f"training interrupted at step {step} of {config.steps}: {kept}", step=step,
                               steps=config.steps, out=out, checkpoint=path, checkpoint_step=good,
                               first_checkpoint=first)


def diverged(config: TrainConfig, step: int, err, last_good: int | None, checkpoint) -> TrainingDiverged:
    """The :class:`TrainingDiverged` of a run stopped at ``step`` for the reason ``err``, whose last good
    checkpoint (at ``checkpoint``, ``None`` without a run folder) was written at step ``last_good``."""
    if checkpoint is None:
        kept, path = "No checkpoint is kept (the run has no output folder)", None
    elif last_good is None:
        kept, path = "No checkpoint was written yet", None
    else:
        path = str(checkpoint)
        kept = f"The last good checkpoint (step {last_good}) is kept at {path}"
    return TrainingDiverged(
        f"training stopped at step {step} of {config.steps}: {err}. {kept}. "
        f"Lower the learning rate (lr = {config.lr:g}) or the scale of the problem and start again.",
        step, path)
