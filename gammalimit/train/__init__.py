"""Training encoders with ``L_delta`` alone (docs/theory.md, section 2).

An encoder ``phi`` (a ``torch.nn`` module: :class:`MLPEncoder` or, for image
manifolds, :class:`ConvEncoder`) is trained to minimise

    L_delta[phi] = E[ sum_t c_t l_t ]    (default: E[ l_D + lam * l_B ])

with the pair terms of the config's penalty (:mod:`gammalimit.penalties`) on
pairs drawn afresh every step from the manifold (or, for a run on samples,
from a pool of point-cloud pairs computed once): float64 pairs from
:func:`gammalimit.sampling.sample_pairs` (two scrambled Sobol sequences per
batch, antithetic), cast to float32 for the forward pass. No decoder. The
optimiser is AdamW with a linear warm-up and a cosine decay of the learning
rate; the encoder's linear path starts at the PCA projection of the data and
learns at a higher rate than its hidden layers (:class:`TrainConfig` says
why). The trained encoder is evaluated in float64 (:func:`evaluate`).

One job per module:

- :mod:`~gammalimit.train.config`: :class:`TrainConfig` and its validation;
- :mod:`~gammalimit.train.data`: the samples of a run that learns from data
  alone (``TrainConfig(data=..., dim=...)``) and their point cloud;
- :mod:`~gammalimit.train.networks`: the encoders and their initialisation;
- :mod:`~gammalimit.train.loop`: :class:`Trainer`, :func:`train`, the schedule;
- :mod:`~gammalimit.train.batches`: where a run's pairs come from (the step and
  pool seeds, a step's sampling arguments, each process's share under torchrun);
- :mod:`~gammalimit.train.stopping`: how a run stops early (Ctrl-C, a
  diverging loss) and which checkpoint it keeps;
- :mod:`~gammalimit.train.checkpoint`: the run folder (``config.json``,
  ``checkpoint.pt``, ``metrics.csv`` with one column per penalty term,
  ``probes.json``, ``result.json``);
- :mod:`~gammalimit.train.evaluation`: :func:`evaluate`, :func:`limit_estimate`.
"""

from ..manifolds.registry import MANIFOLDS
from .checkpoint import (CHECKPOINT, CHECKPOINT_FORMAT, CONFIG, METRIC_FIELDS, METRICS, PROBES, RESULT, load_config,
                         metric_fields)
from .config import ENCODERS, INITS, LIMIT_METHODS, TrainConfig, check_schedule, image_manifolds, make_manifold
from .data import CLOUD_OPTIONS, load_cloud, load_samples
from .evaluation import FLOAT32_PAIRS, evaluate, limit_estimate
from .batches import pool_seed, step_sampling, step_seed
from .loop import Trainer, TrainResult, WarmupCosine, train
from .networks import (TRAIN_DTYPE, ConvEncoder, MLPEncoder, build_encoder, float64_copy, input_normalisation,
                       mlp_layers, parameter_groups, pca_projection)
from .stopping import TrainingDiverged

__all__ = [
    "MANIFOLDS", "ENCODERS", "INITS", "LIMIT_METHODS", "TrainConfig", "check_schedule", "make_manifold",
    "image_manifolds", "CLOUD_OPTIONS", "load_cloud", "load_samples",
    "TRAIN_DTYPE", "MLPEncoder", "ConvEncoder", "input_normalisation", "mlp_layers", "pca_projection",
    "build_encoder", "parameter_groups", "float64_copy",
    "Trainer", "train", "TrainResult", "TrainingDiverged", "WarmupCosine", "step_seed", "step_sampling", "pool_seed",
    "CHECKPOINT", "CHECKPOINT_FORMAT", "CONFIG", "METRICS", "PROBES", "RESULT", "METRIC_FIELDS", "metric_fields",
    "load_config",
    "FLOAT32_PAIRS", "evaluate", "limit_estimate",
]
