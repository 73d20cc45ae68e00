"""What determines a training run: :class:`TrainConfig`, validated on construction.

The manifold is named from the registry (:data:`gammalimit.manifolds.MANIFOLDS`)
with its parameters, or the run learns from samples alone (``data``, a ``.npy``
file, and ``dim``: a :class:`gammalimit.PointCloud`, :mod:`~gammalimit.train.data`);
the penalty comes from :data:`gammalimit.penalties.PENALTIES`; every other value
is checked by :mod:`gammalimit.validation`. A config is plain data
(``to_dict``/``from_dict``, the run's ``config.json``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from ..manifolds import registry
from ..manifolds.registry import MANIFOLDS, manifold_parameters
from ..manifolds.registry import default_delta
from ..penalties import PENALTIES
from ..sampling import STRATEGIES
from ..validation import (check_choice, check_count, check_delta, check_int, check_lam, check_positive, check_real,
                          check_seed, check_widths)
from .data import CLOUD_OPTIONS, image_side, load_cloud
from .start import STARTS

#: The manifold of a config that names neither a manifold nor data.
DEFAULT_MANIFOLD = "rotating-ellipse"

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


def _cloud_options(options) -> dict:
    """``options`` as a dict of PointCloud keyword options to plain values, sorted by name."""
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise TypeError(f"cloud must be a dict of PointCloud options, got {options!r}")
    unknown = sorted(set(options) - set(CLOUD_OPTIONS))
    if unknown:
        raise ValueError(f"cloud options {unknown} are not PointCloud options; allowed: {list(CLOUD_OPTIONS)}")
    plain = {}
    for name, value in sorted(options.items()):
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, (str, int, float)):
            raise TypeError(f"cloud[{name!r}] must be a string or a number, got {value!r}")
        plain[name] = value
    return plain


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (validated on construction).

    Parameters
    ----------
    manifold : str, optional
        One of :data:`gammalimit.manifolds.MANIFOLDS` (default
        :data:`DEFAULT_MANIFOLD`, the rotating ellipse). Not with ``data``.
    manifold_params : dict
        Its parameters (:func:`gammalimit.manifolds.manifold_parameters`),
        e.g. ``{"radius": 2.0}``; a name the manifold does not take is an
        error. With ``data``, the parameters of ``reference``.
    data : str, optional
        Learn from samples alone: a ``.npy`` file of samples ``shape=[N, n]``
        or images ``shape=[N, H, W]`` (flattened row-major). The manifold is
        then ``PointCloud(samples, dim, **cloud)``: chord distances, midpoints
        from local fits (docs/theory.md, section 8). Pairs come from a pool of
        ``pool_pairs`` cloud pairs computed once (the trainer draws each
        step's batch from it with the step's seed); ``strategy`` defaults to
        ``"ball"`` (``"shell"``: the band ``[(1 - band) delta, delta]``), pairs
        are not antithetic, and ``L`` is not available (``limit="none"``).
    dim : int, optional
        The samples' intrinsic dimension ``m``; required with ``data``.
    cloud : dict
        :class:`gammalimit.PointCloud` options (``midpoint``, ``degree``,
        ``distance``, ``band``, ...); with ``data`` only.
    reference : str, optional
        With ``data``: the registered manifold whose exact geometry generated
        the samples (built with ``manifold_params`` and ``n_pixels``), for
        studies; the evaluation then also reports the trained encoder's exact
        ``L_delta`` on it. It is never used in training.
    pool_pairs : int
        Pairs in the pool of a ``data`` run.
    latent_dim : int
        ``l``, at least the manifold's dimension ``m``.
    delta : float, optional
        Pair scale, ``0 < delta < injectivity radius``; ``None`` (default):
        :func:`gammalimit.manifolds.default_delta` of the manifold (for
        ``data``, :meth:`gammalimit.PointCloud.default_delta`: 0.05 times the
        cloud's extent, raised where the samples are sparser), resolved here,
        so the stored config records the number.
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
    start : {"auto", "none", "isomap"}
        A global start before training on ``L_delta``
        (:mod:`gammalimit.train.start`): ``"isomap"`` fits the whole encoder
        (``start_steps`` full-batch Adam steps at ``10 lr``) to an Isomap
        embedding of ``start_points`` training points with
        ``start_neighbors`` neighbours. ``L_delta`` sees only pairs at scale
        ``delta`` and cannot undo a fold; on the Swiss roll the PCA start is
        folded and stays so. ``"auto"`` (the default) runs the fold check
        (:func:`~gammalimit.train.evaluation.fold_check`) on the initial
        encoder and starts from Isomap only where it folds: the Isomap start
        costs the closed image manifolds accuracy in ``L`` (the fit to
        Isomap's codes leaves wiggles below ``delta``: ``L`` of the trained
        rotating-ellipse encoder 1.21 times the optimum, against 1.0006 from
        the PCA start), and their PCA start does not fold.
    start_points, start_steps, start_neighbors : int
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
    strategy : str, optional
        One of :data:`gammalimit.sampling.STRATEGIES` (default ``"shell"``;
        ``"ball"`` with ``data``).
    antithetic : bool, optional
        Training pairs come in antithetic couples (``v`` and ``-v``); default
        true, and false (the only choice) with ``data``.
    qmc : bool
        Each batch is two scrambled Sobol sequences instead of pseudo-random
        points: the run's two sequences, scrambled once by ``seed``, with a
        fresh random digital shift every step (each batch an unbiased,
        balanced randomised QMC sample). The points of a batch then
        cover ``M`` evenly, so the batch loss has no low-frequency sampling
        noise; with plain Monte Carlo that noise pushes the codes along
        directions where the loss is nearly flat (the roundness of a learned
        circle), and Adam's normalised steps do not let it die down.
        ``batch_size`` must be ``2 * 2^k`` (``4 * 2^k`` with ``antithetic``).
    seed : int
        Fixes initial weights and all training pairs.
    n_pixels : int, optional
        Grid size of the image manifolds (their ``n_pixels`` parameter; the
        other manifolds ignore it); default 32. With ``data``, the side of
        square images (``[N, H, H]`` or ``n = H^2``), read from the file.
    checkpoint_every : int
        Steps between checkpoints (when the run has an output folder).
    eval_pairs : int
        Pairs of the final float64 ``L_delta`` estimate.
    eval_seed : int
        Seed of the evaluation pairs (the same for every run, so runs compare).
    limit : {"quadrature", "monte-carlo", "none"}, optional
        How the final evaluation gets ``L`` (:func:`~gammalimit.train.limit_estimate`):
        ``continuum_loss`` quadrature (the default), the mean of the limit
        integrand over ``eval_pairs // 4`` sampled pairs, or not at all (the
        only choice with ``data``: a cloud has no chart).
    divergence_ratio : float
        Stop when the smoothed loss exceeds this multiple of its lowest value
        (``inf`` disables; non-finite losses always stop).
    device : str
        ``"cpu"`` or ``"cuda"`` (pairs are drawn on the CPU in float64).
    """

    manifold: str | None = None
    manifold_params: dict = field(default_factory=dict, hash=False)
    data: str | None = None
    dim: int | None = None
    cloud: dict = field(default_factory=dict, hash=False)
    reference: str | None = None
    pool_pairs: int = 1 << 14
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
    start: str = "auto"
    start_points: int = 2000
    start_steps: int = 500
    start_neighbors: int = 10
    lr: float = 1e-3
    skip_lr_ratio: float = 10.0
    weight_decay: float = 0.0
    warmup: int = 100
    final_lr_ratio: float = 0.01
    strategy: str | None = None
    antithetic: bool | None = None
    qmc: bool = True
    seed: int = 0
    n_pixels: int | None = None
    checkpoint_every: int = 500
    eval_pairs: int = 1 << 14
    eval_seed: int = 2**31 - 1
    limit: str | None = None
    divergence_ratio: float = 1e3
    device: str = "cpu"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        manifold = self._data_geometry() if self.data is not None else self._manifold_geometry()
        set_("latent_dim", check_count(self.latent_dim, "latent_dim"))
        if self.latent_dim < manifold.dim:
            raise ValueError(f"latent_dim = {self.latent_dim} is below the dimension m = {manifold.dim} of "
                             f"{manifold!r}: an encoder into R^l needs l >= m")
        triplets = getattr(manifold, "triplets", None)
        default = default_delta(manifold) if triplets is None else triplets.delta
        set_("delta", check_delta(manifold, default if self.delta is None else self.delta))
        set_("lam", check_lam(self.lam))
        check_choice(self.penalty, "penalty", PENALTIES)
        for name, minimum in (("steps", 1), ("batch_size", 2), ("checkpoint_every", 1), ("eval_pairs", 2)):
            set_(name, check_count(getattr(self, name), name, minimum))
        set_("seed", check_seed(self.seed))
        set_("eval_seed", check_seed(self.eval_seed, "eval_seed"))
        check_choice(self.encoder, "encoder", ENCODERS)
        check_choice(self.start, "start", STARTS)
        for name, minimum in (("start_points", 8), ("start_steps", 1), ("start_neighbors", 2)):
            set_(name, check_count(getattr(self, name), name, minimum))
        if self.encoder == "conv" and self.data is not None and self.n_pixels is None:
            raise ValueError(f"encoder 'conv' needs square images; the samples in {self.data!r} have "
                             f"{manifold.ambient_dim} values, not H^2 (or shape (N, H, H))")
        if self.encoder == "conv" and self.data is None and self.manifold not in image_manifolds():
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

    def _manifold_geometry(self):
        """Resolve the defaults of a run on a registered manifold, and build it."""
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        for name in ("dim", "reference"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name} applies to a run on samples (data=...); a manifold knows its geometry")
        if self.cloud:
            raise ValueError("cloud options apply to a run on samples (data=...)")
        set_("manifold", DEFAULT_MANIFOLD if self.manifold is None else self.manifold)
        check_choice(self.manifold, "manifold", MANIFOLDS)
        set_("manifold_params", _manifold_params(self.manifold_params))
        set_("n_pixels", check_count(32 if self.n_pixels is None else self.n_pixels, "n_pixels", 8))
        set_("strategy", "shell" if self.strategy is None else self.strategy)
        set_("antithetic", True if self.antithetic is None else bool(self.antithetic))
        set_("limit", "quadrature" if self.limit is None else self.limit)
        return self.make_manifold()

    def _data_geometry(self):
        """Resolve the defaults of a run on samples, and load their point cloud."""
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.manifold is not None:
            raise ValueError(f"give manifold (exact geometry) or data (samples), not both: got manifold="
                             f"{self.manifold!r} and data={self.data!r}; name the manifold that generated the "
                             "data as reference to compare with its exact geometry")
        if not isinstance(self.data, (str, os.PathLike)):
            raise TypeError(f"data must be the path of a .npy file (samples) or an .npz file (triplets), "
                            f"got {self.data!r}")
        set_("data", os.fspath(self.data))
        if self.dim is None:
            raise ValueError(f"data={self.data!r} needs dim, the intrinsic dimension m of the samples")
        set_("dim", check_int(self.dim, "dim", minimum=1))
        set_("cloud", _cloud_options(self.cloud))
        set_("pool_pairs", check_count(self.pool_pairs, "pool_pairs", 2))
        cloud = load_cloud(self.data, self.dim, self.cloud)
        side = image_side(self.data)
        if self.n_pixels is not None and self.n_pixels != side:
            raise ValueError(f"n_pixels = {self.n_pixels!r} does not match the samples in {self.data!r} "
                             + (f"(images of {side} x {side} pixels)" if side else "(not square images)")
                             + "; leave it out: it is read from the data")
        set_("n_pixels", side)
        set_("strategy", "ball" if self.strategy is None else self.strategy)
        if self.antithetic:
            raise ValueError("antithetic pairs (v and -v) need an exponential map; a point cloud has none: "
                             "leave antithetic out (or False) with data")
        set_("antithetic", False)
        if self.limit not in (None, "none"):
            raise ValueError(f"limit={self.limit!r}: L needs a chart of the manifold, which samples do not give; "
                             "with data, limit must be 'none'")
        set_("limit", "none")
        if self.reference is None:
            if self.manifold_params:
                raise ValueError("manifold_params with data set the parameters of the reference manifold; "
                                 "name it (reference=...) or leave them out")
        else:
            check_choice(self.reference, "reference", MANIFOLDS)
            set_("manifold_params", _manifold_params(self.manifold_params))
            exact = self.make_reference()
            if (exact.ambient_dim, exact.dim) != (cloud.ambient_dim, cloud.dim):
                raise ValueError(f"reference {exact!r} has dimension {exact.dim} in R^{exact.ambient_dim}, the "
                                 f"samples dimension {cloud.dim} in R^{cloud.ambient_dim}")
        return cloud

    def make_manifold(self):
        """The manifold of this run, from the registry; with ``data``, the
        :class:`gammalimit.PointCloud` of the samples (built once per file, :func:`~gammalimit.train.data.load_cloud`)."""
        if self.data is not None:
            return load_cloud(self.data, self.dim, self.cloud)
        return make_manifold(self.manifold, self.n_pixels, **self.manifold_params)

    def make_reference(self):
        """The exact manifold that generated the data (``reference``), or ``None``."""
        if self.reference is None:
            return None
        return make_manifold(self.reference, self.n_pixels, **self.manifold_params)

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


#: Fields that ``--resume`` may change: the length of the run and what does not touch the weights (when
#: checkpoints are written, the final evaluation, the divergence guard). ``steps`` may be raised to
#: extend a run (or lowered, not below the checkpoint's step); the cosine schedule is then stretched to
#: the new length from the resume point on (:class:`~gammalimit.train.WarmupCosine`), so an extended run is
#: not bit for bit a run started with that many steps. Any other field is the run's identity.
RESUME_MAY_CHANGE = ("steps", "checkpoint_every", "eval_pairs", "eval_seed", "limit", "divergence_ratio")


def resume_conflicts(saved: TrainConfig, new: TrainConfig) -> dict:
    """The fields outside :data:`RESUME_MAY_CHANGE` in which ``new`` differs from ``saved``:
    ``{name: (saved value, new value)}``."""
    return {f.name: (getattr(saved, f.name), getattr(new, f.name)) for f in dataclasses.fields(TrainConfig)
            if f.name not in RESUME_MAY_CHANGE and getattr(saved, f.name) != getattr(new, f.name)}


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
