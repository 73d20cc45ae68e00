"""The encoders the trainer builds, and their initialisation.

:class:`MLPEncoder` (any manifold) and :class:`ConvEncoder` (``N x N``
images) see inputs normalised to unit mean square per coordinate
(:func:`input_normalisation`); an optional linear path starts at the PCA
projection of the data (:func:`pca_projection`) and learns at its own rate
(:func:`parameter_groups`). Parameters are float32 (:data:`TRAIN_DTYPE`);
:func:`float64_copy` gives the same function in float64 for evaluation.
"""

from __future__ import annotations

import copy

import torch

from ..manifolds.base import DTYPE
from ..validation import check_positive
from .config import TrainConfig

#: Training precision (the forward and backward pass); evaluation is float64.
TRAIN_DTYPE = torch.float32

#: Points whose local-PCA frames set the scale of the PCA start on a point cloud
#: (a frame costs a fit of the nearest samples: about 1 ms for 32 x 32 images).
CLOUD_FRAMES = 512


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
        self.register_buffer("scale", torch.tensor(check_positive(scale, "scale"), dtype=dtype))

    def _encode(self, z):
        raise NotImplementedError

    def forward(self, x):
        """Codes of ambient points ``shape=[k, n]``, ``shape=[k, latent_dim]``."""
        z = (x - self.shift) * self.scale
        out = self._encode(z)
        if self.skip is not None:
            out = out + self.skip(z)
        return out / self.scale


def mlp_layers(widths, dtype, activation) -> torch.nn.Sequential:
    """Linear layers of widths ``widths[0] -> ... -> widths[-1]`` with ``activation`` between them."""
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
        self.mlp = mlp_layers((self.ambient_dim, *hidden, self.latent_dim), dtype, activation)
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
        self.head = mlp_layers((c_in * side * side, *hidden, self.latent_dim), dtype, activation)
        self.skip = _zero_linear(n, self.latent_dim, dtype) if linear_skip else None

    def _encode(self, z):
        images = z.reshape(z.shape[0], 1, self.n_pixels, self.n_pixels)
        return self.head(self.conv(images).flatten(1))


def pca_projection(manifold, points: torch.Tensor, latent_dim: int, frames: int | None = None) -> torch.Tensor:
    """The top ``latent_dim`` principal directions of ``points``, scaled so that
    unit tangent vectors of ``M`` keep unit length on average.

    Returns ``W`` ``shape=[latent_dim, n]`` (rows beyond ``n`` are zero):
    ``x -> W x`` is the PCA projection times ``c``, with
    ``c^2 = m / E_x sum_a |P e_a(x)|^2`` over the ``g``-orthonormal frame
    ``e_a`` of ``T_x M`` (:meth:`tangent_frame`), averaged over the first
    ``frames`` points (default all: a point cloud's frames are local fits).
    """
    points = torch.as_tensor(points, dtype=DTYPE)
    centred = points - points.mean(0)
    n = points.shape[1]
    k = min(latent_dim, n)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    P = vectors[:, -k:].flip(-1).T  # largest first
    frame = manifold.tangent_frame(points[:frames])  # (k_pts, n, m)
    stretch = (torch.einsum("ln,knm->klm", P, frame) ** 2).sum((1, 2)).mean() / manifold.dim
    W = torch.zeros(latent_dim, n, dtype=DTYPE)
    W[:k] = P / torch.sqrt(stretch)
    return W


def build_encoder(config: TrainConfig, manifold) -> torch.nn.Module:
    """The encoder a config asks for, initialised from ``config.seed`` (float32, on the CPU).

    The input normalisation comes from 4096 manifold points drawn with the
    seed, and so does the PCA start of the linear path (``init="pca"``,
    :func:`pca_projection`; on a point cloud, whose tangent frames are local
    fits, the scale of that start averages over the first
    :data:`CLOUD_FRAMES` of the points); the other weights come from torch's
    generator seeded with the seed (the global RNG state is restored afterwards).
    """
    g = torch.Generator().manual_seed(config.seed)
    points = manifold.sample(4096, generator=g)
    shift, scale = input_normalisation(points)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.encoder == "conv":
            model = ConvEncoder(config.n_pixels, config.latent_dim, config.channels, config.hidden,
                                linear_skip=config.linear_skip, shift=shift, scale=scale)
        else:
            model = MLPEncoder(manifold.ambient_dim, config.latent_dim, config.hidden,
                               linear_skip=config.linear_skip, shift=shift, scale=scale)
    if config.init == "pca":
        # skip(z) / scale = W (x - shift) with z = (x - shift) * scale: the weight is W itself
        with torch.no_grad():
            frames = CLOUD_FRAMES if config.data is not None else None
            model.skip.weight.copy_(pca_projection(manifold, points, config.latent_dim, frames))
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
