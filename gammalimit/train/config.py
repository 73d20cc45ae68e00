"""What determines a training run: :class:`TrainConfig`, validated on construction.

The manifold is named from the registry (:data:`gammalimit.manifolds.MANIFOLDS`)
with its parameters; the penalty from :data:`gammalimit.penalties.PENALTIES`;
every other value is checked by :mod:`gammalimit.validation`. A config is plain
data (``to_dict``/``from_dict``, the run's ``config.json``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from ..manifolds import registry
from ..manifolds.registry import MANIFOLDS, default_delta, manifold_parameters
from ..penalties import PENALTIES
from ..sampling import STRATEGIES
from ..validation import (check_choice, check_count, check_delta, check_lam, check_positive, check_real, check_seed,
                          check_widths)

ENCODERS = ("mlp", "conv")
INITS = ("pca", "zero")
LIMIT_METHODS = ("quadrature", "monte-carlo", "none")


def make_manifold(name: str, n_pixels: int | None = None, **params):
    """The registered manifold ``name`` built with ``params``, and with
    ``n_pixels`` where the manifold takes that parameter (the image manifolds;
    the others ignore it).

    Raises
    ------
    ValueError
        On an unknown name or a parameter the manifold does not take
        (:func:`gammalimit.manifolds.make_manifold`).
    """
    if n_pixels is not None and "n_pixels" in manifold_parameters(name):
        params = {**params, "n_pixels": n_pixels}
    return registry.make_manifold(name, **params)


def image_manifolds() -> list[str]:
    """Names of the registered manifolds of ``N x N`` images (those that take ``n_pixels``)."""
    return sorted(name for name in MANIFOLDS if "n_pixels" in manifold_parameters(name))


def check_schedule(lr, warmup, final_lr_ratio) -> tuple[float, int, float]:
    """The learning-rate schedule (:class:`~gammalimit.train.WarmupCosine`): peak
    rate ``lr > 0``, ``warmup >= 0`` steps, ``final_lr_ratio`` in ``[0, 1]``."""
    ratio = check_real(final_lr_ratio, "final_lr_ratio", minimum=0.0, strict=False)
    if ratio > 1:
        raise ValueError(f"final_lr_ratio must lie in [0, 1], got {ratio!r}")
    return check_positive(lr, "lr"), check_count(warmup, "warmup", 0), ratio


def _manifold_params(params) -> dict:
    """``params`` as a dict of numbers and tuples of numbers, sorted by name (config.json records it)."""
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise TypeError(f"manifold_params must be a dict of parameter names to values, got {params!r}")
    if "n_pixels" in params:
        raise ValueError("give n_pixels as TrainConfig's n_pixels field, not in manifold_params")

    def number(name, v):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"manifold_params[{name!r}] must be a number or a sequence of numbers, got {v!r}")
        return v.item() if isinstance(v, np.generic) else v

    return {name: tuple(number(name, v) for v in value) if isinstance(value, (list, tuple)) else number(name, value)
            for name, value in sorted(params.items())}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (validated on construction).

    Parameters
    ----------
    manifold : str
        One of :data:`gammalimit.manifolds.MANIFOLDS`.
    manifold_params : dict
        Its parameters (:func:`gammalimit.manifolds.manifold_parameters`),
        e.g. ``{"radius": 2.0}``; a name the manifold does not take is an error.
    latent_dim : int
        ``l``, at least the manifold's dimension ``m``.
    delta : float, optional
        Pair scale, ``0 < delta < injectivity radius``; ``None`` (default):
        :func:`gammalimit.manifolds.default_delta` of the manifold, resolved
        here, so the stored config records the number.
    lam : float
        Bending weight ``lam >= 0`` (units of length^2).
    penalty : str
        The pair terms, one of :data:`gammalimit.penalties.PENALTIES`.
    steps : int
        Optimiser steps.
    batch_size : int
        Pairs per step (rounded up to even with ``antithetic``).
    encoder : {"mlp", "conv"}
        :class:`~gammalimit.train.MLPEncoder`, or
        :class:`~gammalimit.train.ConvEncoder` (image manifolds only).
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
        (:func:`~gammalimit.train.pca_projection`), or zero. Starting from
        (near) zero, the codes grow along the directions that stretch tangent
        vectors most, which on the image manifolds are higher harmonics: the
        encoder then learns a folded map or a multiple cover (a Clifford torus
        wound twice) and stays in that local minimum. The top principal
        directions of these image families have the right topology (for the
        rotating ellipse and the periodic blob they are the first Fourier
        modes). Needs ``linear_skip``.
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
    strategy : str
        One of :data:`gammalimit.sampling.STRATEGIES`.
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
        Grid size of the image manifolds (their ``n_pixels`` parameter; the
        other manifolds ignore it).
    checkpoint_every : int
        Steps between checkpoints (when the run has an output folder).
    eval_pairs : int
        Pairs of the final float64 ``L_delta`` estimate.
    eval_seed : int
        Seed of the evaluation pairs (the same for every run, so runs compare).
    limit : {"quadrature", "monte-carlo", "none"}
        How the final evaluation gets ``L`` (:func:`~gammalimit.train.limit_estimate`):
        ``continuum_loss`` quadrature, the mean of the limit integrand over
        ``eval_pairs // 4`` sampled pairs, or not at all.
    divergence_ratio : float
        Stop when the smoothed loss exceeds this multiple of its lowest value
        (``inf`` disables; non-finite losses always stop).
    device : str
        ``"cpu"`` or ``"cuda"`` (pairs are drawn on the CPU in float64).
    """

    manifold: str = "rotating-ellipse"
    manifold_params: dict = field(default_factory=dict, hash=False)
    latent_dim: int = 2
    delta: float | None = None
    lam: float = 0.01
    penalty: str = "squared"
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
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        check_choice(self.manifold, "manifold", MANIFOLDS)
        set_("manifold_params", _manifold_params(self.manifold_params))
        set_("n_pixels", check_count(self.n_pixels, "n_pixels", 8))
        manifold = self.make_manifold()
        set_("latent_dim", check_count(self.latent_dim, "latent_dim"))
        if self.latent_dim < manifold.dim:
            raise ValueError(f"latent_dim = {self.latent_dim} is below the dimension m = {manifold.dim} of "
                             f"{manifold!r}: an encoder into R^l needs l >= m")
        set_("delta", check_delta(manifold, default_delta(manifold) if self.delta is None else self.delta))
        set_("lam", check_lam(self.lam))
        check_choice(self.penalty, "penalty", PENALTIES)
        for name, minimum in (("steps", 1), ("batch_size", 2), ("checkpoint_every", 1), ("eval_pairs", 2)):
            set_(name, check_count(getattr(self, name), name, minimum))
        set_("seed", check_seed(self.seed))
        set_("eval_seed", check_seed(self.eval_seed, "eval_seed"))
        check_choice(self.encoder, "encoder", ENCODERS)
        if self.encoder == "conv" and self.manifold not in image_manifolds():
            raise ValueError(f"encoder 'conv' needs an image manifold {image_manifolds()}, got {self.manifold!r}")
        set_("hidden", check_widths(self.hidden, "hidden"))
        set_("channels", check_widths(self.channels, "channels"))
        if self.encoder == "conv" and not self.channels:
            raise ValueError("encoder 'conv' needs at least one convolutional layer (channels)")
        for name, value in zip(("lr", "warmup", "final_lr_ratio"),
                               check_schedule(self.lr, self.warmup, self.final_lr_ratio)):
            set_(name, value)
        set_("skip_lr_ratio", check_positive(self.skip_lr_ratio, "skip_lr_ratio"))
        set_("weight_decay", check_real(self.weight_decay, "weight_decay", minimum=0.0, strict=False))
        check_choice(self.strategy, "strategy", STRATEGIES)
        check_choice(self.limit, "limit", LIMIT_METHODS)
        set_("divergence_ratio", check_real(self.divergence_ratio, "divergence_ratio", minimum=1.0, allow_inf=True))
        set_("antithetic", bool(self.antithetic))
        set_("qmc", bool(self.qmc))
        if self.qmc:
            per_unit = 2 * (2 if self.antithetic else 1)
            units = self.batch_size // per_unit
            if units < 1 or units & (units - 1) or units * per_unit != self.batch_size:
                raise ValueError(f"with qmc, batch_size must be {per_unit} times a power of two (two Sobol "
                                 f"replicates of 2^k points), got {self.batch_size}")
        set_("linear_skip", bool(self.linear_skip))
        check_choice(self.init, "init", INITS)
        if self.init == "pca" and not self.linear_skip:
            raise ValueError("init='pca' starts the linear skip path at the PCA projection; it needs "
                             "linear_skip=True (or use init='zero')")
        _check_device(self.device)

    def make_manifold(self):
        """The manifold of this run, from the registry."""
        return make_manifold(self.manifold, self.n_pixels, **self.manifold_params)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["hidden"], out["channels"] = list(self.hidden), list(self.channels)
        out["manifold_params"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.manifold_params.items()}
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


def _check_device(device) -> None:
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}") from None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA device "
                         f"(torch {torch.__version__}); use device='cpu'")
