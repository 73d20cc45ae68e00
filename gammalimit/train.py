"""Training encoders with ``L_delta`` alone (THEORY.md section 2).

An encoder ``phi`` (a ``torch.nn`` module: :class:`MLPEncoder` or, for image
manifolds, :class:`ConvEncoder`) is trained to minimise

    L_delta[phi] = E[ l_D + lam * l_B ]

on pairs drawn afresh every step from the manifold: float64 pairs from
:func:`gammalimit.sampling.sample_pairs` (two scrambled Sobol sequences per
batch, antithetic), cast to float32 for the forward pass, with the per-pair
form :func:`gammalimit.loss.pair_terms`. No decoder. The optimiser is AdamW
with a linear warm-up and a cosine decay of the learning rate; the encoder's
linear path starts at the PCA projection of the data and learns at a higher
rate than its hidden layers (:class:`TrainConfig` says why). The trained
encoder is evaluated in float64: ``L_delta`` by :func:`gammalimit.discrete_loss`
(a fixed evaluation seed, antithetic pairs) and ``L`` by
:func:`gammalimit.continuum_loss` quadrature (or the mean of
:func:`gammalimit.limit_integrand` over sampled pairs, see :func:`limit_estimate`).

Reproducibility: the seed fixes the initial weights and the pairs of every
step (step ``s`` draws its pairs with a seed derived from ``(seed, s)``), so a
run is a function of its :class:`TrainConfig`. Checkpoints hold the model,
optimiser, scheduler, RNG states, divergence monitor and step; resuming from
one gives, on the same machine, the same weights bit for bit as a run that was
never interrupted. A non-finite or diverging loss stops training with
:class:`TrainingDiverged`; the last checkpoint (written only while the
weights were finite) is kept.

Files in the output folder: ``config.json``, ``checkpoint.pt`` (the latest,
written atomically), ``metrics.csv`` (one row per step: loss terms, learning
rate, pairs seen, seconds) and ``result.json`` (final float64 evaluation and
throughput).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .fileio import write_atomic
from .functional import continuum_loss, limit_integrand
from .loss import discrete_loss, pair_terms, roundoff_error
from .manifolds import (Circle, ClosedCurve, FlatTorus, PeriodicBlob, RotatingEllipse, Sphere, SwissRoll,
                        TranslatingBlob)
from .manifolds.base import DTYPE
from .sampling import STRATEGIES, sample_pairs
from .validation import check_delta, check_lam

#: Training precision (the forward and backward pass); evaluation is float64.
TRAIN_DTYPE = torch.float32

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"
RESULT = "result.json"
PROBES = "probes.json"
CHECKPOINT_FORMAT = "gammalimit-train-1"

METRIC_FIELDS = ("step", "loss", "distortion", "bending", "lr", "pairs", "seconds")

# --------------------------------------------------------------------------
# manifolds by name


def _image(cls):
    return lambda n_pixels: cls(n_pixels=n_pixels)


#: CLI names of the manifolds the trainer knows; each maps ``n_pixels`` (used
#: by the image manifolds only) to a manifold.
MANIFOLDS: dict[str, Callable[[int], object]] = {
    "rotating-ellipse": _image(RotatingEllipse),
    "translating-blob": _image(TranslatingBlob),
    "periodic-blob": _image(PeriodicBlob),
    "circle": lambda n_pixels: Circle(1.0),
    "sphere": lambda n_pixels: Sphere(1.0),
    "torus": lambda n_pixels: FlatTorus((1.0, 1.0)),
    "swissroll": lambda n_pixels: SwissRoll(),
    "ellipse": lambda n_pixels: ClosedCurve.ellipse(2.0, 1.0),
}

IMAGE_MANIFOLDS = ("rotating-ellipse", "translating-blob", "periodic-blob")
ENCODERS = ("mlp", "conv")
INITS = ("pca", "zero")
LIMIT_METHODS = ("quadrature", "monte-carlo", "none")


def make_manifold(name: str, n_pixels: int = 32):
    """The manifold called ``name`` (one of :data:`MANIFOLDS`)."""
    if name not in MANIFOLDS:
        raise ValueError(f"unknown manifold {name!r}; allowed: {sorted(MANIFOLDS)}")
    return MANIFOLDS[name](n_pixels)


# --------------------------------------------------------------------------
# configuration


def _positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _positive_float(value, name, *, allow_zero=False, allow_inf=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    ok = (value >= 0 if allow_zero else value > 0) and (math.isfinite(value) or (allow_inf and value > 0))
    if not ok or math.isnan(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {'' if allow_inf else 'finite and '}{bound}, got {value!r}")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (validated on construction).

    Parameters
    ----------
    manifold : str
        One of :data:`MANIFOLDS`.
    latent_dim : int
        ``l``, at least the manifold's dimension ``m``.
    delta : float
        Pair scale, ``0 < delta < injectivity radius``.
    lam : float
        Bending weight ``lam >= 0`` (units of length^2).
    steps : int
        Optimiser steps.
    batch_size : int
        Pairs per step (rounded up to even with ``antithetic``).
    encoder : {"mlp", "conv"}
        :class:`MLPEncoder`, or :class:`ConvEncoder` (image manifolds only).
    hidden : tuple of int
        Hidden widths of the MLP (or of the convolutional encoder's head).
    channels : tuple of int
        Channels of the convolutional layers (``conv`` only).
    linear_skip : bool
        Add a linear map of the (normalised) input to the output. For the
        Gaussian image manifolds the optimal encoders are, to the
        discretisation error, linear in the pixels (moments of the image), so
        this path makes the optimum reachable in few steps.
    init : {"pca", "zero"}
        Start of the linear path: the PCA projection of the data
        (:func:`pca_projection`), or zero. Starting from (near) zero, the
        codes grow along the directions that stretch tangent vectors most,
        which on the image manifolds are higher harmonics: the encoder then
        learns a folded map or a multiple cover (a Clifford torus wound twice)
        and stays in that local minimum. The top principal directions of
        these image families have the right topology (for the rotating
        ellipse and the periodic blob they are the first Fourier modes).
        Needs ``linear_skip``.
    lr, weight_decay : float
        AdamW's peak learning rate and decoupled weight decay (default 0: any
        decay moves the minimiser away from that of ``L_delta``).
    skip_lr_ratio : float
        The linear path learns at ``lr * skip_lr_ratio``. Adam's steps have a
        fixed size in parameter units, so a layer should get a rate in
        proportion to the size of its weights: the hidden layers' weights are
        ``~ 1/sqrt(n)``, while the linear path of an image encoder needs
        weights of order one (the centroid of a blob weights pixel ``p`` by
        ``~ p``). One rate for both either leaves the linear path crawling or
        makes the hidden layers learn wiggles below the scale ``delta``, which
        ``L_delta`` does not see but ``L`` does.
    warmup : int
        Steps of linear warm-up; a cosine decay to ``lr * final_lr_ratio``
        follows.
    final_lr_ratio : float
    strategy : {"shell", "ball"}
    antithetic : bool
        Training pairs come in antithetic couples (``v`` and ``-v``).
    qmc : bool
        Each batch is two scrambled Sobol sequences (a fresh scrambling every
        step) instead of pseudo-random points. The points of a batch then
        cover ``M`` evenly, so the batch loss has no low-frequency sampling
        noise; with plain Monte Carlo that noise pushes the codes along
        directions where the loss is nearly flat (the roundness of a learned
        circle), and Adam's normalised steps do not let it die down.
        ``batch_size`` must be ``2 * 2^k`` (``4 * 2^k`` with ``antithetic``).
    seed : int
        Fixes initial weights and all training pairs.
    n_pixels : int
        Grid size of the image manifolds.
    checkpoint_every : int
        Steps between checkpoints (when the run has an output folder).
    eval_pairs : int
        Pairs of the final float64 ``L_delta`` estimate.
    eval_seed : int
        Seed of the evaluation pairs (the same for every run, so runs compare).
    limit : {"quadrature", "monte-carlo", "none"}
        How the final evaluation gets ``L`` (:func:`limit_estimate`):
        ``continuum_loss`` quadrature, the mean of the limit integrand over
        ``eval_pairs // 4`` sampled pairs, or not at all.
    divergence_ratio : float
        Stop when the smoothed loss exceeds this multiple of its lowest value
        (``inf`` disables; non-finite losses always stop).
    device : str
        ``"cpu"`` or ``"cuda"`` (pairs are drawn on the CPU in float64).
    """

    manifold: str = "rotating-ellipse"
    latent_dim: int = 2
    delta: float = 0.05
    lam: float = 0.01
    steps: int = 3000
    batch_size: int = 256
    encoder: str = "mlp"
    hidden: tuple[int, ...] = (128, 128)
    channels: tuple[int, ...] = (16, 32)
    linear_skip: bool = True
    init: str = "pca"
    lr: float = 1e-3
    skip_lr_ratio: float = 10.0
    weight_decay: float = 0.0
    warmup: int = 100
    final_lr_ratio: float = 0.01
    strategy: str = "shell"
    antithetic: bool = True
    qmc: bool = True
    seed: int = 0
    n_pixels: int = 32
    checkpoint_every: int = 500
    eval_pairs: int = 1 << 14
    eval_seed: int = 2**31 - 1
    limit: str = "quadrature"
    divergence_ratio: float = 1e3
    device: str = "cpu"

    def __post_init__(self):
        if self.manifold not in MANIFOLDS:
            raise ValueError(f"unknown manifold {self.manifold!r}; allowed: {sorted(MANIFOLDS)}")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("n_pixels", _positive_int(self.n_pixels, "n_pixels", 8))
        manifold = self.make_manifold()
        set_("latent_dim", _positive_int(self.latent_dim, "latent_dim"))
        if self.latent_dim < manifold.dim:
            raise ValueError(f"latent_dim = {self.latent_dim} is below the dimension m = {manifold.dim} of "
                             f"{manifold!r}: an encoder into R^l needs l >= m")
        set_("delta", check_delta(manifold, self.delta))
        set_("lam", check_lam(self.lam))
        for name, minimum in (("steps", 1), ("batch_size", 2), ("warmup", 0), ("checkpoint_every", 1),
                              ("eval_pairs", 2)):
            set_(name, _positive_int(getattr(self, name), name, minimum))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if isinstance(self.eval_seed, bool) or not isinstance(self.eval_seed, (int, np.integer)) or self.eval_seed < 0:
            raise ValueError(f"eval_seed must be an integer >= 0, got {self.eval_seed!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; allowed: {list(ENCODERS)}")
        if self.encoder == "conv" and self.manifold not in IMAGE_MANIFOLDS:
            raise ValueError(f"encoder 'conv' needs an image manifold {list(IMAGE_MANIFOLDS)}, got {self.manifold!r}")
        for name in ("hidden", "channels"):
            widths = tuple(getattr(self, name))
            if not all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1 for w in widths):
                raise ValueError(f"{name} must be a tuple of integers >= 1, got {getattr(self, name)!r}")
            set_(name, tuple(int(w) for w in widths))
        if self.encoder == "conv" and not self.channels:
            raise ValueError("encoder 'conv' needs at least one convolutional layer (channels)")
        set_("lr", _positive_float(self.lr, "lr"))
        set_("skip_lr_ratio", _positive_float(self.skip_lr_ratio, "skip_lr_ratio"))
        set_("weight_decay", _positive_float(self.weight_decay, "weight_decay", allow_zero=True))
        ratio = _positive_float(self.final_lr_ratio, "final_lr_ratio", allow_zero=True)
        if ratio > 1:
            raise ValueError(f"final_lr_ratio must lie in [0, 1], got {ratio!r}")
        set_("final_lr_ratio", ratio)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; allowed: {sorted(STRATEGIES)}")
        if self.limit not in LIMIT_METHODS:
            raise ValueError(f"limit must be one of {list(LIMIT_METHODS)}, got {self.limit!r}")
        set_("divergence_ratio", _positive_float(self.divergence_ratio, "divergence_ratio", allow_inf=True))
        if self.divergence_ratio <= 1:
            raise ValueError(f"divergence_ratio must be > 1, got {self.divergence_ratio!r}")
        set_("antithetic", bool(self.antithetic))
        set_("qmc", bool(self.qmc))
        if self.qmc:
            units = self.batch_size // (2 * (2 if self.antithetic else 1))
            if units < 1 or units & (units - 1) or units * 2 * (2 if self.antithetic else 1) != self.batch_size:
                raise ValueError(f"with qmc, batch_size must be {2 * (2 if self.antithetic else 1)} times a power "
                                 f"of two (two Sobol replicates of 2^k points), got {self.batch_size}")
        set_("linear_skip", bool(self.linear_skip))
        if self.init not in INITS:
            raise ValueError(f"init must be one of {list(INITS)}, got {self.init!r}")
        if self.init == "pca" and not self.linear_skip:
            raise ValueError("init='pca' starts the linear skip path at the PCA projection; it needs "
                             "linear_skip=True (or use init='zero')")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {self.device!r}") from None
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {self.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} was asked for, but torch sees no CUDA device "
                             f"(torch {torch.__version__}); use device='cpu'")

    def make_manifold(self):
        return make_manifold(self.manifold, self.n_pixels)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["hidden"], out["channels"] = list(self.hidden), list(self.channels)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; allowed: {sorted(names)}")
        data = dict(data)
        for key in ("hidden", "channels"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


# --------------------------------------------------------------------------
# encoders


def input_normalisation(points: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Centre and isotropic scale that give data points unit mean square per coordinate.

    Returns ``shift = mean(points)`` ``shape=[n]`` and
    ``scale = sqrt(n / E|x - shift|^2)``: an isotropic scale keeps the
    geometry of the data, and ``(x - shift) * scale`` has ``E|.|^2 = n``.
    """
    points = torch.as_tensor(points, dtype=DTYPE)
    shift = points.mean(0)
    spread = ((points - shift) ** 2).sum(-1).mean()
    return shift, float(torch.sqrt(points.shape[1] / spread))


class _Normalised(torch.nn.Module):
    """``phi(x) = f((x - shift) * scale) / scale``: the network ``f`` sees
    inputs with unit mean square per coordinate, and an ``f`` that keeps
    distances gives a ``phi`` that keeps them (the scale is isotropic)."""

    def _init_normalisation(self, n, shift, scale, dtype):
        shift = torch.zeros(n, dtype=DTYPE) if shift is None else torch.as_tensor(shift, dtype=DTYPE)
        if shift.shape != (n,):
            raise ValueError(f"shift must have shape ({n},), got {tuple(shift.shape)}")
        self.register_buffer("shift", shift.to(dtype))
        self.register_buffer("scale", torch.tensor(_positive_float(scale, "scale"), dtype=dtype))

    def _encode(self, z):
        raise NotImplementedError

    def forward(self, x):
        """Codes of ambient points ``shape=[k, n]``, ``shape=[k, latent_dim]``."""
        z = (x - self.shift) * self.scale
        out = self._encode(z)
        if self.skip is not None:
            out = out + self.skip(z)
        return out / self.scale


def _mlp(widths, dtype, activation):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b, dtype=dtype))
        if i < len(widths) - 2:
            layers.append(activation())
    return torch.nn.Sequential(*layers)


def _zero_linear(n_in, n_out, dtype):
    """A linear map without bias that starts at zero: a random start would put
    a little of every direction of the data into the codes, and the loss is
    nearly flat in the directions that only change the shape a little (the
    roundness of a learned circle), so that noise would stay."""
    layer = torch.nn.Linear(n_in, n_out, bias=False, dtype=dtype)
    torch.nn.init.zeros_(layer.weight)
    return layer


class MLPEncoder(_Normalised):
    """A fully connected encoder ``R^n -> R^l`` with smooth activations.

    ``phi(x) = [mlp(z) + A z] / scale`` with ``z = (x - shift) * scale``
    (:func:`input_normalisation`); ``A z`` is the optional linear skip path.
    Tanh activations keep ``phi`` smooth, as the Gamma-limit ``L`` needs
    (``H`` must be a function); SiLU would too, but torch cannot take its
    second forward-mode derivative under ``no_grad``, which
    :func:`gammalimit.continuum_loss` uses.

    Parameters
    ----------
    ambient_dim, latent_dim : int
    hidden : tuple of int
        Hidden widths.
    linear_skip : bool
    shift : tensor, shape=[ambient_dim], optional
    scale : float
    dtype : torch.dtype, default float32
        Parameters are created in this dtype (so that a seed gives the same
        weights whatever torch's default dtype is).
    """

    def __init__(self, ambient_dim: int, latent_dim: int, hidden=(128, 128), *, linear_skip: bool = True,
                 shift=None, scale: float = 1.0, dtype=TRAIN_DTYPE, activation=torch.nn.Tanh):
        super().__init__()
        self.ambient_dim, self.latent_dim = int(ambient_dim), int(latent_dim)
        self._init_normalisation(self.ambient_dim, shift, scale, dtype)
        self.mlp = _mlp((self.ambient_dim, *hidden, self.latent_dim), dtype, activation)
        self.skip = _zero_linear(self.ambient_dim, self.latent_dim, dtype) if linear_skip else None

    def _encode(self, z):
        return self.mlp(z)


class ConvEncoder(_Normalised):
    """A small convolutional encoder for ``N x N`` images stored as ambient
    vectors of length ``N^2`` (row-major, as the image manifolds store them).

    Convolutions (5x5 then 3x3, stride 2, tanh) feed a fully connected head;
    the spatial map is flattened, not pooled, because the codes of a
    translating blob must know where the blob is. With ``linear_skip`` a
    linear map of the flattened image is added, as in :class:`MLPEncoder`.

    Parameters
    ----------
    n_pixels, latent_dim : int
    channels : tuple of int
        Output channels of each convolution.
    hidden : tuple of int
        Hidden widths of the head.
    linear_skip, shift, scale, dtype
        As for :class:`MLPEncoder`.
    """

    def __init__(self, n_pixels: int, latent_dim: int, channels=(16, 32), hidden=(128,), *,
                 linear_skip: bool = True, shift=None, scale: float = 1.0, dtype=TRAIN_DTYPE,
                 activation=torch.nn.Tanh):
        super().__init__()
        self.n_pixels, self.latent_dim = int(n_pixels), int(latent_dim)
        n = self.n_pixels**2
        self._init_normalisation(n, shift, scale, dtype)
        layers, c_in, side = [], 1, self.n_pixels
        for i, c_out in enumerate(channels):
            k = 5 if i == 0 else 3
            layers += [torch.nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2, dtype=dtype), activation()]
            c_in, side = c_out, (side + 1) // 2
        self.conv = torch.nn.Sequential(*layers)
        self.head = _mlp((c_in * side * side, *hidden, self.latent_dim), dtype, activation)
        self.skip = _zero_linear(n, self.latent_dim, dtype) if linear_skip else None

    def _encode(self, z):
        images = z.reshape(z.shape[0], 1, self.n_pixels, self.n_pixels)
        return self.head(self.conv(images).flatten(1))


def pca_projection(manifold, points: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """The top ``latent_dim`` principal directions of ``points``, scaled so that
    unit tangent vectors of ``M`` keep unit length on average.

    Returns ``W`` ``shape=[latent_dim, n]`` (rows beyond ``n`` are zero):
    ``x -> W x`` is the PCA projection times ``c``, with
    ``c^2 = m / E_x sum_a |P e_a(x)|^2`` over the ``g``-orthonormal frame
    ``e_a`` of ``T_x M`` (:meth:`tangent_frame`).
    """
    points = torch.as_tensor(points, dtype=DTYPE)
    centred = points - points.mean(0)
    n = points.shape[1]
    k = min(latent_dim, n)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    P = vectors[:, -k:].flip(-1).T  # largest first
    frame = manifold.tangent_frame(points)  # (k_pts, n, m)
    stretch = (torch.einsum("ln,knm->klm", P, frame) ** 2).sum((1, 2)).mean() / manifold.dim
    W = torch.zeros(latent_dim, n, dtype=DTYPE)
    W[:k] = P / torch.sqrt(stretch)
    return W


def build_encoder(config: TrainConfig, manifold) -> torch.nn.Module:
    """The encoder a config asks for, initialised from ``config.seed`` (float32, on the CPU).

    The input normalisation comes from 4096 manifold points drawn with the
    seed, and so does the PCA start of the linear path (``init="pca"``,
    :func:`pca_projection`); the other weights come from torch's generator
    seeded with the seed (the global RNG state is restored afterwards).
    """
    g = torch.Generator().manual_seed(config.seed)
    points = manifold.sample(4096, generator=g)
    shift, scale = input_normalisation(points)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.encoder == "conv":
            model = ConvEncoder(manifold.n_pixels, config.latent_dim, config.channels, config.hidden,
                                linear_skip=config.linear_skip, shift=shift, scale=scale)
        else:
            model = MLPEncoder(manifold.ambient_dim, config.latent_dim, config.hidden,
                               linear_skip=config.linear_skip, shift=shift, scale=scale)
    if config.init == "pca":
        # skip(z) / scale = W (x - shift) with z = (x - shift) * scale: the weight is W itself
        with torch.no_grad():
            model.skip.weight.copy_(pca_projection(manifold, points, config.latent_dim))
    return model


def parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict]:
    """AdamW parameter groups: the linear path at ``lr * skip_lr_ratio``, the rest at ``lr``."""
    skip = [p for name, p in model.named_parameters() if name.startswith("skip.")]
    rest = [p for name, p in model.named_parameters() if not name.startswith("skip.")]
    groups = [{"params": rest, "lr": config.lr}]
    if skip:
        groups.append({"params": skip, "lr": config.lr * config.skip_lr_ratio})
    return groups


def float64_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 CPU copy of ``model`` (same function, float64 arithmetic)."""
    return copy.deepcopy(model).to(device="cpu", dtype=DTYPE).eval()


# --------------------------------------------------------------------------
# schedule, seeds, progress


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


class ProgressBar:
    """A one-line progress bar on ``stream`` (default stderr).

    On a terminal the line is redrawn at most every ``interval`` seconds;
    otherwise (a log file) a line is written at every tenth of the run.
    """

    def __init__(self, total: int, *, start: int = 0, stream=None, interval: float = 0.2, width: int = 24):
        self.total, self.stream, self.interval, self.width = total, stream or sys.stderr, interval, width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_draw, self.last_tenth = 0.0, start * 10 // max(1, total)
        self.t0, self.start = time.perf_counter(), start

    def update(self, step: int, text: str = "") -> None:
        now = time.perf_counter()
        tenth = step * 10 // max(1, self.total)
        if self.tty:
            if now - self.last_draw < self.interval and step < self.total:
                return
        elif tenth == self.last_tenth and step < self.total:
            return
        self.last_draw, self.last_tenth = now, tenth
        done = int(self.width * step / max(1, self.total))
        rate = (step - self.start) / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        line = (f"[{'#' * done}{'.' * (self.width - done)}] {step}/{self.total} {text} "
                f"{now - self.t0:.0f}s, {rate:.1f} it/s, eta {eta:.0f}s")
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------
# evaluation


def limit_estimate(phi, manifold, *, lam: float, strategy: str = "shell", method: str = "quadrature",
                   n: int = 4096, seed: int = 0, delta: float | None = None) -> dict:
    """``L[phi]`` by ``continuum_loss`` quadrature or as the mean limit integrand.

    ``method="quadrature"``: :func:`gammalimit.continuum_loss` from 16 nodes
    per chart coordinate, doubled while the relative change exceeds ``1e-5``
    and the finer rule has at most 2048 nodes (1-D: up to 2048 nodes; 2-D:
    ``16^2`` against ``32^2``); ``error`` is the change between the last two
    rules and ``converged`` says whether it met the tolerance.
    ``method="monte-carlo"``: the mean of ``r^4 [(v.Bv)^2 + lam |H(v,v)|^2/16]``
    over ``n`` antithetic pairs drawn at scale ``delta`` with ``seed``
    (:func:`gammalimit.limit_integrand`): an unbiased estimate of ``L`` on a
    manifold without boundary; with a boundary, of the average over the
    sampler's ``x``-marginal (THEORY.md section 4). Measured on the image
    manifolds with a 1024-pixel MLP, quadrature is both faster (1-3 s) and
    far more accurate than 4096 Monte Carlo pairs (5-15 s, 1e-4 relative).

    Returns
    -------
    dict
        ``total``, ``distortion``, ``bending`` (quadrature), ``error`` or
        ``stderr``, ``method``, ``seconds``.
    """
    t0 = time.perf_counter()
    if method == "quadrature":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported as converged=False instead
            L = continuum_loss(phi, manifold, lam=lam, strategy=strategy, rtol=1e-5, max_nodes=2048)
        out = {"total": L.total, "distortion": L.distortion, "bending": L.bending, "error": L.error,
               "n_nodes": L.n_nodes, "converged": L.converged, "method": "quadrature"}
    elif method == "monte-carlo":
        if delta is None:
            raise TypeError("method='monte-carlo' needs the scale delta of the pairs")
        pairs = sample_pairs(manifold, n, delta, strategy=strategy, antithetic=True, seed=seed)
        values = limit_integrand(phi, manifold, pairs, lam=lam)
        h = values.shape[0] // 2
        couples = 0.5 * (values[:h] + values[h:])
        out = {"total": float(couples.mean()), "stderr": float(couples.std() / math.sqrt(h)), "n": len(pairs),
               "method": "monte-carlo"}
    else:
        raise ValueError(f"method must be 'quadrature' or 'monte-carlo', got {method!r}")
    out["seconds"] = time.perf_counter() - t0
    return out


#: Pairs on which the float32 and float64 encoders are compared.
FLOAT32_PAIRS = 4096


def evaluate(model: torch.nn.Module, config: TrainConfig, manifold=None) -> dict:
    """Float64 evaluation of a trained encoder, and the cost of float32.

    Returns
    -------
    dict
        ``L_delta``: :func:`gammalimit.discrete_loss` of a float64 copy of
        ``model`` with ``config.eval_pairs`` antithetic pairs and
        ``config.eval_seed`` (``total``, ``stderr``, ...).
        ``float32_relative_error``: ``|mean(l32) - mean(l64)| / mean(l64)``
        of the penalties of the float32 and float64 encoders on the same
        :data:`FLOAT32_PAIRS` pairs (``total``, ``distortion``, ``bending``),
        and ``float32_pair_rms_error``, the root mean square of the per-pair
        differences over the same mean (round-off that averages out in the
        mean shows here), beside ``float32_roundoff_bound = eps_32 / delta^2``,
        THEORY.md section 4's estimate for the bending term.
        ``L``: :func:`limit_estimate` with ``config.limit`` (absent for ``"none"``).
    """
    manifold = manifold or config.make_manifold()
    phi64 = float64_copy(model)
    phi32 = copy.deepcopy(model).to(device="cpu", dtype=TRAIN_DTYPE).eval()
    t0 = time.perf_counter()
    L64 = discrete_loss(phi64, manifold, delta=config.delta, lam=config.lam, n=config.eval_pairs,
                        strategy=config.strategy, antithetic=True, seed=config.eval_seed)
    out = {"L_delta": {**L64.to_dict(), "seconds": time.perf_counter() - t0}}
    pairs = sample_pairs(manifold, min(config.eval_pairs, FLOAT32_PAIRS), config.delta, strategy=config.strategy,
                         antithetic=True, seed=config.eval_seed)
    with torch.no_grad():
        t64, t32 = pair_terms(phi64, pairs), pair_terms(phi32, pairs)
    rel, per_pair = {}, {}
    for key in ("total", "distortion", "bending"):
        a, b = ((t.total(config.lam) if key == "total" else getattr(t, key)).to(DTYPE) for t in (t64, t32))
        scale = max(abs(float(a.mean())), 1e-300)
        rel[key] = float(abs(b.mean() - a.mean())) / scale
        per_pair[key] = float(torch.sqrt(((b - a) ** 2).mean())) / scale
    out["float32_relative_error"] = rel
    out["float32_pair_rms_error"] = per_pair
    out["float32_roundoff_bound"] = roundoff_error(TRAIN_DTYPE, config.delta)
    if config.limit != "none":
        out["L"] = limit_estimate(phi64, manifold, lam=config.lam, strategy=config.strategy, method=config.limit,
                                  n=max(2, config.eval_pairs // 4), seed=config.eval_seed, delta=config.delta)
    return out


# --------------------------------------------------------------------------
# the trainer


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
        One row per step (:data:`METRIC_FIELDS`); ``loss`` etc. are the
        float32 batch means at the weights before that step's update.
    probes : list of dict
        What the callback returned, with ``step`` and ``seconds``.
    evaluation : dict
        :func:`evaluate` of the final encoder (empty if ``evaluate=False``).
    steps : int
    seconds : float
        Wall time of the optimisation (summed over resumed segments), without evaluation.
    pairs_per_second : float
    """

    config: TrainConfig
    model: torch.nn.Module
    history: list = field(default_factory=list)
    probes: list = field(default_factory=list)
    evaluation: dict = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    pairs_per_second: float = 0.0

    def to_dict(self) -> dict:
        """Plain data (no model, no per-step history)."""
        return {"config": self.config.to_dict(), "steps": self.steps, "seconds": self.seconds,
                "pairs_per_second": self.pairs_per_second, "evaluation": self.evaluation,
                "final_loss": self.history[-1]["loss"] if self.history else None, "probes": self.probes}


def _read_metrics(path: Path, upto: int) -> list[dict]:
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if int(row["step"]) > upto:
                break
            rows.append({k: (int(v) if k in ("step", "pairs") else float(v)) for k, v in row.items()})
    return rows


def _metrics_text(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, METRIC_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


class Trainer:
    """Train an encoder on ``L_delta`` (see the module docstring).

    Parameters
    ----------
    config : TrainConfig
    out : str or Path, optional
        Output folder for ``config.json``, ``checkpoint.pt``, ``metrics.csv``
        and ``result.json``; without it nothing is written and a run cannot be
        resumed.
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
        self.probe_every = _positive_int(probe_every, "probe_every")
        self.manifold = config.make_manifold()
        self.device = torch.device(config.device)

    # -- state -------------------------------------------------------------

    def _fresh_state(self):
        c = self.config
        model = build_encoder(c, self.manifold).to(self.device)
        opt = torch.optim.AdamW(parameter_groups(model, c), lr=c.lr, weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(c.warmup, c.steps, c.final_lr_ratio))
        monitor = {"ema": None, "best": math.inf}
        return model, opt, sched, monitor

    def _checkpoint_path(self) -> Path | None:
        return self.out / CHECKPOINT if self.out is not None else None

    def _save(self, step, model, opt, sched, monitor, pairs, seconds):
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "manifold": repr(self.manifold),
            "step": step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
            "monitor": dict(monitor),
            "pairs": pairs,
            "seconds": seconds,
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        write_atomic(self._checkpoint_path(), buf.getvalue())

    def _load(self):
        path = self._checkpoint_path()
        if path is None:
            raise ValueError("resume needs an output folder (out) holding a checkpoint")
        if not path.exists():
            raise ValueError(f"no checkpoint to resume from: {path} does not exist")
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (format {state.get('format')!r})")
        saved = TrainConfig.from_dict(state["config"])
        if saved != self.config:
            diff = {k: (v, getattr(self.config, k)) for k, v in dataclasses.asdict(saved).items()
                    if getattr(self.config, k) != v}
            raise ValueError(f"the checkpoint in {path} belongs to another configuration; "
                             f"differences (checkpoint, now): {diff}")
        model, opt, sched, monitor = self._fresh_state()
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        monitor.update(state["monitor"])
        return state["step"], model, opt, sched, monitor, state["pairs"], state["seconds"]

    # -- the loop ----------------------------------------------------------

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
        history, probes = [], []
        if resume:
            start, model, opt, sched, monitor, pairs_seen, seconds = self._load()
            if (self.out / METRICS).exists():
                history = _read_metrics(self.out / METRICS, start)
            if (self.out / PROBES).exists():
                probes = [p for p in json.loads((self.out / PROBES).read_text()) if p["step"] <= start]
        else:
            if self.out is not None and (self.out / CHECKPOINT).exists():
                raise ValueError(f"{self.out / CHECKPOINT} exists: pass resume=True (--resume) to continue "
                                 "that run, or choose another output folder")
            start, pairs_seen, seconds = 0, 0, 0.0
            model, opt, sched, monitor = self._fresh_state()
        metrics_file = None
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            write_atomic(self.out / CONFIG, (json.dumps(c.to_dict(), indent=1) + "\n").encode())
            write_atomic(self.out / METRICS, _metrics_text(history).encode())
            metrics_file = open(self.out / METRICS, "a", newline="")
        writer = csv.DictWriter(metrics_file, METRIC_FIELDS, lineterminator="\n") if metrics_file else None
        bar = ProgressBar(c.steps, start=start) if self.progress else None
        last_good = start if (resume or self.out is None) else None
        t_start = time.perf_counter() - seconds
        model.train()
        try:
            for step in range(start, c.steps):
                pairs = sample_pairs(self.manifold, c.batch_size, c.delta, strategy=c.strategy,
                                     antithetic=c.antithetic, qmc=c.qmc, qmc_replicates=2,
                                     seed=step_seed(c.seed, step))
                opt.zero_grad(set_to_none=True)
                lr = opt.param_groups[0]["lr"]
                try:
                    terms = pair_terms(model, pairs)
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
                       "distortion": float(terms.distortion.detach().mean()),
                       "bending": float(terms.bending.detach().mean()), "lr": lr, "pairs": pairs_seen,
                       "seconds": time.perf_counter() - t_start}
                history.append(row)
                if writer:
                    writer.writerow(row)
                done = step + 1
                if self.callback is not None and (done % self.probe_every == 0 or done == c.steps):
                    probe = dict(self.callback(done, model) or {})
                    probes.append({"step": done, "seconds": time.perf_counter() - t_start, **probe})
                if self.out is not None and (done % c.checkpoint_every == 0 or done == c.steps):
                    if not all(torch.isfinite(p).all() for p in model.parameters()):
                        raise self._diverged(done, "the weights are not finite after the update", last_good)
                    metrics_file.flush()
                    self._save(done, model, opt, sched, monitor, pairs_seen, time.perf_counter() - t_start)
                    if self.callback is not None:
                        write_atomic(self.out / PROBES, json.dumps(probes).encode())
                    last_good = done
                if bar:
                    bar.update(done, f"loss {row['loss']:.4g}")
        finally:
            if bar:
                bar.close()
            if metrics_file:
                metrics_file.close()
        seconds = time.perf_counter() - t_start
        result = TrainResult(c, model, history, probes, {}, c.steps, seconds, pairs_seen / max(seconds, 1e-9))
        if evaluate_final:
            result.evaluation = evaluate(model, c, self.manifold)
        if self.out is not None:
            write_atomic(self.out / RESULT, (json.dumps(result.to_dict(), indent=1, default=str) + "\n").encode())
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
            kept = "No checkpoint is kept (the run has no output folder)"
            path = None
        elif last_good is None:
            kept = "No checkpoint was written yet"
            path = None
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
        Evaluate the trained encoder in float64 (:func:`evaluate`).

    Returns
    -------
    TrainResult
    """
    if config is None:
        if not resume or out is None:
            raise TypeError("config is required unless resuming from an output folder")
        config = load_config(out)
    return Trainer(config, out=out, progress=progress, callback=callback, probe_every=probe_every).run(
        resume=resume, evaluate_final=evaluate_final)


def load_config(out) -> TrainConfig:
    """The configuration of the run in folder ``out`` (from its ``config.json``)."""
    path = Path(out) / CONFIG
    if not path.exists():
        raise ValueError(f"no run to resume in {out}: {path} does not exist")
    return TrainConfig.from_dict(json.loads(path.read_text()))
