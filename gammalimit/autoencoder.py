"""Decoders for trained encoders, the plain autoencoder baseline, and latent
interpolation on a data manifold (issue 7).

Two autoencoders ``D o phi`` on a data manifold ``M``:

- *frozen encoder*: ``phi`` trained by ``L_delta`` (:mod:`gammalimit.train`)
  stays fixed, and a :class:`Decoder` ``D: R^l -> R^n`` is trained afterwards
  on reconstruction (:func:`fit_decoder`);
- *plain autoencoder*, the baseline: the same encoder architecture with the
  same initial weights (:func:`gammalimit.train.build_encoder` of the same
  :class:`~gammalimit.train.TrainConfig`) and the same decoder architecture,
  trained jointly on reconstruction only (:func:`train_plain_autoencoder`).

Reconstruction loss ``E_{x ~ mu} |D(phi(x)) - x|^2`` in the ambient norm. For
the image manifolds (docs/theory.md, section 7) an ambient vector is ``h u(p_ij)``,
so this is the pixel-weighted ``L^2`` norm ``h^2 sum |u - u'|^2 ~ int |u - u'|^2``.
Points are drawn afresh from ``mu`` every step (step ``s`` from a seed derived
from ``(seed, s)``, :func:`gammalimit.train.step_seed`), so a run is a function
of its configuration. Training is float32 (:data:`gammalimit.train.TRAIN_DTYPE`),
as for the encoder; every measure below is evaluated in float64.

Latent interpolation, for a pair ``x, y = exp_x(d v)`` at geodesic distance ``d``:

    midpoint defect     |phi(av(x,y)) - (phi(x) + phi(y))/2| / |phi(x) - phi(y)|
    interpolation error |D((1-t) phi(x) + t phi(y)) - gamma(t)| / |gamma(t)|

with ``gamma(t) = exp_x(t d v)`` the geodesic (``gamma(1/2) = av(x, y)``). The
defect is scale free; it vanishes for every pair exactly when ``phi`` maps
geodesics to straight lines at constant speed (an isometric, extrinsically flat
``phi``), and for a smooth ``phi`` it is ``|H(v,v)| d / (8 |Dphi v|) + O(d^2)``
(docs/theory.md, section 3). The interpolation error mixes two things: the
decoder's own error at ``gamma(t)`` (the *reconstruction floor*)

    reconstruction      |D(phi(gamma(t))) - gamma(t)| / |gamma(t)|

and the latent geometry, which the *decoded defect* isolates,

    decoded defect      |D((1-t) phi(x) + t phi(y)) - D(phi(gamma(t)))| / |gamma(t)|:

the distance, seen through the decoder, between the latent straight line and
the code of the true interpolant. It vanishes whatever the decoder when ``phi``
maps the geodesic to the straight segment at constant speed; a decoder enters
it only through its stretch near the codes, and since ``D o phi ~ id`` on ``M``
that stretch undoes the encoder's scale (the measure is in image units for
every encoder). The triangle inequality ties the three:
``|interpolation error - reconstruction| <= decoded defect <= interpolation error + reconstruction``.
:func:`interpolation_errors` reports them, together with the error of plain
linear interpolation in the ambient space, ``(1-t) x + t y``.

The joint mode, an autoencoder trained on reconstruction plus ``L_delta``, is
:func:`gammalimit.neural_peers.train_neural_peer` ``("gamma", ...)``; any
trained encoder, frozen, gets a fresh decoder from :func:`fit_decoder`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch

from .loss import evaluate_encoder
from .manifolds.base import DTYPE
from .sampling import PairSample
from .train import (TRAIN_DTYPE, TrainConfig, WarmupCosine, build_encoder, check_schedule, float64_copy,
                    input_normalisation, mlp_layers, step_seed)
from .validation import check_count, check_positive, check_seed, check_widths

# --------------------------------------------------------------------------
# the decoder


class Decoder(torch.nn.Module):
    """A fully connected decoder ``R^l -> R^n`` with normalised inputs and outputs.

    ``D(c) = data_shift + mlp((c - code_shift) * code_scale) / data_scale``:
    the network sees codes with unit mean square per coordinate and predicts
    data points normalised the same way (:func:`gammalimit.train.input_normalisation`
    gives both shifts and scales). SiLU activations, a linear output layer.

    Parameters
    ----------
    latent_dim, ambient_dim : int
    hidden : tuple of int
        Hidden widths.
    code_shift : tensor, shape=[latent_dim], optional
    code_scale : float
    data_shift : tensor, shape=[ambient_dim], optional
    data_scale : float
    dtype : torch.dtype, default float32
    """

    def __init__(self, latent_dim: int, ambient_dim: int, hidden=(256, 256), *, code_shift=None,
                 code_scale: float = 1.0, data_shift=None, data_scale: float = 1.0, dtype=TRAIN_DTYPE,
                 activation=torch.nn.SiLU):
        super().__init__()
        self.latent_dim, self.ambient_dim = int(latent_dim), int(ambient_dim)
        for name, shift, n in (("code_shift", code_shift, self.latent_dim), ("data_shift", data_shift,
                                                                            self.ambient_dim)):
            shift = torch.zeros(n, dtype=DTYPE) if shift is None else torch.as_tensor(shift, dtype=DTYPE)
            if shift.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {tuple(shift.shape)}")
            self.register_buffer(name, shift.to(dtype))
        self.register_buffer("code_scale", torch.tensor(check_positive(code_scale, "code_scale"), dtype=dtype))
        self.register_buffer("data_scale", torch.tensor(check_positive(data_scale, "data_scale"), dtype=dtype))
        self.mlp = mlp_layers((self.latent_dim, *hidden, self.ambient_dim), dtype, activation)

    def forward(self, codes):
        """Data points ``shape=[k, ambient_dim]`` of codes ``shape=[k, latent_dim]``."""
        return self.data_shift + self.mlp((codes - self.code_shift) * self.code_scale) / self.data_scale


@dataclass(frozen=True)
class DecoderConfig:
    """How a decoder is trained (validated on construction).

    Parameters
    ----------
    hidden : tuple of int
        Hidden widths of the :class:`Decoder`.
    steps : int
        Optimiser steps.
    batch_size : int
        Manifold points per step.
    lr : float
        AdamW's peak learning rate (linear warm-up, cosine decay to
        ``lr * final_lr_ratio``).
    warmup : int
    final_lr_ratio : float
    seed : int
        Fixes the decoder's initial weights and the points of every step.
    eval_points : int
        Points of the float64 reconstruction error before and after training.
    eval_seed : int
    """

    hidden: tuple[int, ...] = (256, 256)
    steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-3
    warmup: int = 50
    final_lr_ratio: float = 0.01
    seed: int = 0
    eval_points: int = 1024
    eval_seed: int = 2**31 - 2

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("hidden", check_widths(self.hidden, "hidden"))
        for name, minimum in (("steps", 1), ("batch_size", 1), ("eval_points", 1)):
            set_(name, check_count(getattr(self, name), name, minimum))
        set_("seed", check_seed(self.seed))
        set_("eval_seed", check_seed(self.eval_seed, "eval_seed"))
        for name, value in zip(("lr", "warmup", "final_lr_ratio"),
                               check_schedule(self.lr, self.warmup, self.final_lr_ratio)):
            set_(name, value)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out


@dataclass
class ReconstructionResult:
    """An autoencoder and how it was trained.

    Attributes
    ----------
    encoder, decoder : torch.nn.Module
        Float32, as trained; :func:`float64_copy` them for evaluation.
    losses : list of float
        Float32 batch mean of ``|D(phi(x)) - x|^2`` at every step.
    error_before, error_after : float
        Float64 mean relative reconstruction error ``|D(phi(x)) - x| / |x|``
        on ``eval_points`` fixed points, before and after training.
    steps : int
    seconds : float
        Wall time of the optimisation.
    joint : bool
        Whether the encoder was trained too (plain autoencoder) or frozen.
    regulariser_losses : list of float
        Float32 batch value of the regulariser at every step, for an
        autoencoder trained with one (:mod:`gammalimit.neural_peers`; ``losses``
        then holds the total); empty otherwise.
    """

    encoder: torch.nn.Module
    decoder: torch.nn.Module
    losses: list = field(default_factory=list)
    error_before: float = math.nan
    error_after: float = math.nan
    steps: int = 0
    seconds: float = 0.0
    joint: bool = False
    regulariser_losses: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"error_before": self.error_before, "error_after": self.error_after, "steps": self.steps,
                "seconds": self.seconds, "joint": self.joint,
                "final_loss": self.losses[-1] if self.losses else None}


def _points(manifold, n: int, seed: int) -> torch.Tensor:
    return manifold.sample(n, generator=torch.Generator().manual_seed(int(seed)))


def build_decoder(encoder: torch.nn.Module, manifold, config: DecoderConfig) -> Decoder:
    """A :class:`Decoder` for ``encoder``'s codes, initialised from ``config.seed``.

    The code normalisation comes from ``encoder``'s codes of 4096 manifold
    points drawn with the seed, the data normalisation from the points
    themselves (for the plain autoencoder: the codes of its initial encoder).
    """
    x = _points(manifold, 4096, config.seed)
    with torch.no_grad():
        codes = evaluate_encoder(float64_copy(encoder), x)
    code_shift, code_scale = input_normalisation(codes)
    data_shift, data_scale = input_normalisation(x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Decoder(codes.shape[1], manifold.ambient_dim, config.hidden, code_shift=code_shift,
                       code_scale=code_scale, data_shift=data_shift, data_scale=data_scale)


def reconstruct(encoder, decoder, points: torch.Tensor) -> torch.Tensor:
    """``D(phi(x))`` in float64, ``shape=[k, ambient_dim]``, for ``points`` ``shape=[k, ambient_dim]``."""
    enc, dec = float64_copy(encoder), float64_copy(decoder)
    with torch.no_grad():
        return dec(evaluate_encoder(enc, points.to(DTYPE)))


def reconstruction_error(encoder, decoder, points: torch.Tensor) -> torch.Tensor:
    """Relative reconstruction error ``|D(phi(x)) - x| / |x|`` in float64, ``shape=[k]``.

    Parameters
    ----------
    encoder, decoder : torch.nn.Module
    points : tensor, shape=[k, ambient_dim]
    """
    out = reconstruct(encoder, decoder, points)
    return torch.linalg.vector_norm(out - points, dim=-1) / torch.linalg.vector_norm(points, dim=-1)


def _train_reconstruction(encoder, decoder, manifold, config: DecoderConfig, steps: int, encoder_lr=None,
                          regulariser=None, weight: float = 0.0):
    """Minimise ``E |D(phi(x)) - x|^2``; the encoder too when ``encoder_lr`` is given.

    With ``regulariser``, a callable ``(encoder, decoder, x, codes, step) ->``
    scalar tensor, the objective is ``E |D(phi(x)) - x|^2 + weight * regulariser``
    (``codes = phi(x)`` of the step's batch ``x``); without it the steps are
    bit for bit those of the reconstruction alone.
    """
    joint = encoder_lr is not None
    eval_x = _points(manifold, config.eval_points, config.eval_seed)
    before = float(reconstruction_error(encoder, decoder, eval_x).mean())
    groups = [{"params": decoder.parameters(), "lr": config.lr}]
    if joint:
        groups.append({"params": encoder.parameters(), "lr": encoder_lr})
    for p in encoder.parameters():
        p.requires_grad_(joint)
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(config.warmup, steps, config.final_lr_ratio))
    encoder.train(joint)
    decoder.train()
    losses, reg_losses = [], []
    t0 = time.perf_counter()
    try:
        for step in range(steps):
            x = _points(manifold, config.batch_size, step_seed(config.seed, step)).to(TRAIN_DTYPE)
            opt.zero_grad(set_to_none=True)
            if regulariser is None:
                loss = ((decoder(encoder(x)) - x) ** 2).sum(-1).mean()
            else:
                codes = encoder(x)
                reg = regulariser(encoder, decoder, x, codes, step)
                loss = ((decoder(codes) - x) ** 2).sum(-1).mean() + weight * reg
                reg_losses.append(float(reg.detach()))
            if not torch.isfinite(loss):
                raise ValueError(f"the reconstruction loss is {float(loss)} at step {step}; lower lr "
                                 f"(lr = {config.lr:g})")
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    finally:
        for p in encoder.parameters():
            p.requires_grad_(True)
    seconds = time.perf_counter() - t0
    encoder.eval()
    decoder.eval()
    after = float(reconstruction_error(encoder, decoder, eval_x).mean())
    return ReconstructionResult(encoder, decoder, losses, before, after, steps, seconds, joint, reg_losses)


def fit_decoder(encoder: torch.nn.Module, manifold, config: DecoderConfig | None = None) -> ReconstructionResult:
    """Train a decoder on reconstruction with ``encoder`` frozen.

    Parameters
    ----------
    encoder : torch.nn.Module
        E.g. :attr:`gammalimit.train.TrainResult.model`; its weights are not
        changed (a copy is trained against).
    manifold : Manifold
    config : DecoderConfig, optional

    Returns
    -------
    ReconstructionResult
    """
    config = config or DecoderConfig()
    if not isinstance(config, DecoderConfig):
        raise TypeError(f"config must be a DecoderConfig, got {type(config).__name__}")
    encoder = copy.deepcopy(encoder).to(device="cpu", dtype=TRAIN_DTYPE)
    decoder = build_decoder(encoder, manifold, config)
    return _train_reconstruction(encoder, decoder, manifold, config, config.steps)


def train_plain_autoencoder(encoder_config: TrainConfig, config: DecoderConfig | None = None, *,
                            steps: int | None = None, encoder_lr: float | None = None) -> ReconstructionResult:
    """The baseline: encoder and decoder trained jointly on reconstruction only.

    The encoder is :func:`gammalimit.train.build_encoder` of ``encoder_config``
    (the architecture and initial weights of the ``L_delta`` encoder of the
    same seed); the decoder is :func:`build_decoder` with ``config``. Both are
    trained by one AdamW (one schedule; the decoder at ``config.lr``, the
    encoder at ``encoder_lr``) on ``config.batch_size`` points per step.

    Parameters
    ----------
    encoder_config : TrainConfig
    config : DecoderConfig, optional
    steps : int, optional
        Default ``encoder_config.steps + config.steps``: the optimiser steps of
        the ``L_delta`` encoder and of its decoder together (same budget).
    encoder_lr : float, optional
        Default ``config.lr``: the reconstruction objective gets the learning
        rate tuned for reconstruction, not the one tuned for ``L_delta``.

    Returns
    -------
    ReconstructionResult
    """
    config = config or DecoderConfig()
    if not isinstance(encoder_config, TrainConfig):
        raise TypeError(f"encoder_config must be a TrainConfig, got {type(encoder_config).__name__}")
    steps = encoder_config.steps + config.steps if steps is None else check_count(steps, "steps")
    manifold = encoder_config.make_manifold()
    encoder = build_encoder(encoder_config, manifold)
    decoder = build_decoder(encoder, manifold, config)
    encoder_lr = config.lr if encoder_lr is None else check_positive(encoder_lr, "encoder_lr")
    return _train_reconstruction(encoder, decoder, manifold, config, steps, encoder_lr=encoder_lr)


# --------------------------------------------------------------------------
# interpolation


def midpoint_defect(code_x: torch.Tensor, code_y: torch.Tensor, code_mid: torch.Tensor) -> torch.Tensor:
    """``|c(av) - (c(x) + c(y))/2| / |c(x) - c(y)|``, ``shape=[k]``, for codes ``shape=[k, l]``."""
    return (torch.linalg.vector_norm(code_mid - 0.5 * (code_x + code_y), dim=-1)
            / torch.linalg.vector_norm(code_x - code_y, dim=-1))


def latent_midpoint_defect(encoder, pairs: PairSample) -> torch.Tensor:
    """:func:`midpoint_defect` of ``encoder`` (evaluated in float64) on pairs, ``shape=[k]``."""
    phi = float64_copy(encoder) if isinstance(encoder, torch.nn.Module) else encoder
    k = len(pairs)
    with torch.no_grad():
        c = evaluate_encoder(phi, torch.cat([pairs.x, pairs.y, pairs.midpoint])).to(DTYPE)
    return midpoint_defect(c[:k], c[k:2 * k], c[2 * k:])


def geodesic_interpolant(manifold, pairs: PairSample, t: float) -> torch.Tensor:
    """``gamma(t) = exp_x(t d(x, y) v)``, the point a fraction ``t`` along the
    geodesic from ``x`` to ``y``, ``shape=[k, ambient_dim]``; ``t = 1/2`` gives
    ``av(x, y)``."""
    return manifold.exp(pairs.x, (t * pairs.dist)[:, None] * pairs.v)


def decode_latent_path(encoder, decoder, x: torch.Tensor, y: torch.Tensor, ts) -> torch.Tensor:
    """``D((1-t) phi(x) + t phi(y))`` in float64 for each ``t``,
    ``shape=[len(ts), k, ambient_dim]`` for ``x, y`` ``shape=[k, ambient_dim]``."""
    enc, dec = float64_copy(encoder), float64_copy(decoder)
    with torch.no_grad():
        cx, cy = evaluate_encoder(enc, x.to(DTYPE)), evaluate_encoder(enc, y.to(DTYPE))
        return torch.stack([dec((1 - t) * cx + t * cy) for t in ts])


@dataclass
class InterpolationErrors:
    """Relative errors against the geodesic interpolants, each ``shape=[len(ts), k]``.

    Attributes
    ----------
    ts : tuple of float
    decoded : tensor
        ``|D((1-t) phi(x) + t phi(y)) - gamma(t)| / |gamma(t)|``.
    reconstruction : tensor
        ``|D(phi(gamma(t))) - gamma(t)| / |gamma(t)|``: the decoder's own error
        at the true interpolant, the floor of ``decoded``.
    decoded_defect : tensor
        ``|D((1-t) phi(x) + t phi(y)) - D(phi(gamma(t)))| / |gamma(t)|``: the
        latent path's distance from the code of the true interpolant, through
        the decoder (module docstring); ``|decoded - reconstruction| <=
        decoded_defect <= decoded + reconstruction``.
    ambient_linear : tensor
        ``|(1-t) x + t y - gamma(t)| / |gamma(t)|``: interpolating the data
        directly, without an encoder.
    """

    ts: tuple
    decoded: torch.Tensor
    reconstruction: torch.Tensor
    decoded_defect: torch.Tensor
    ambient_linear: torch.Tensor


def interpolation_errors(encoder, decoder, manifold, pairs: PairSample, ts=(0.25, 0.5, 0.75)) -> InterpolationErrors:
    """Image-space error of decoding the latent linear interpolation (module docstring).

    Parameters
    ----------
    encoder, decoder : torch.nn.Module
    manifold : Manifold
    pairs : PairSample
        ``y = exp_x(d v)`` with ``d = pairs.dist`` (as :func:`gammalimit.sample_pairs` draws them).
    ts : sequence of float in [0, 1]

    Returns
    -------
    InterpolationErrors
    """
    ts = tuple(float(t) for t in ts)
    if not all(0.0 <= t <= 1.0 for t in ts):
        raise ValueError(f"ts must lie in [0, 1], got {ts!r}")
    truth = torch.stack([geodesic_interpolant(manifold, pairs, t) for t in ts])
    norm = torch.linalg.vector_norm(truth, dim=-1)
    decoded = decode_latent_path(encoder, decoder, pairs.x, pairs.y, ts)
    recon = torch.stack([reconstruct(encoder, decoder, g) for g in truth])
    linear = torch.stack([(1 - t) * pairs.x + t * pairs.y for t in ts])
    rel = lambda a, b: torch.linalg.vector_norm(a - b, dim=-1) / norm  # noqa: E731
    return InterpolationErrors(ts, rel(decoded, truth), rel(recon, truth), rel(decoded, recon), rel(linear, truth))
