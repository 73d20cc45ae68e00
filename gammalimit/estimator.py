"""A scikit-learn style estimator for the ``L_delta`` encoder, and the measures
that compare embeddings on a data manifold (issue 7).

:class:`GammaEncoder` offers the encoder of :mod:`gammalimit.train` with the
``fit``/``transform`` interface of ``sklearn.manifold`` (parameters stored by
``__init__``, validated in ``fit``, ``random_state``, fitted attributes ending
in ``_``), so that it can stand in a table beside Isomap or LLE.

It works in two modes. ``L_delta`` (docs/theory.md, section 2) needs the Riemannian
distance ``d(x, y)`` and average ``av(x, y)`` of the data manifold.

- With ``manifold`` named, ``fit(X)`` checks that ``X`` lies on it and then
  trains on pairs drawn afresh from that manifold's measure ``mu`` at every
  step; the values of ``X`` do not enter the training. A comparison with
  methods that see only ``X`` must say so: the encoder then has an oracle for
  the geometry and unlimited samples.
- Without it, ``fit(X)`` learns from ``X`` alone, like Isomap or LLE: ``X``
  becomes a :class:`gammalimit.PointCloud` of intrinsic dimension ``dim``,
  whose surrogates (chord distance, midpoints projected onto local fits,
  neighbour pairs: docs/theory.md, section 8) stand in for ``d`` and ``av``,
  exactly as ``gammalimit train --data``.

The measures (float64, on codes ``shape=[k, l]``):

- :func:`local_isometry_error`: RMS relative error of code distances against
  geodesic distances, ``|s |c(x) - c(y)| / d(x, y) - 1|``, after the best
  single global scale ``s`` (reported: an encoder that is isometric as it
  stands has ``s = 1``, other methods fix their scale by convention);
- :func:`gammalimit.autoencoder.midpoint_defect`: the bending, scale free;
- :func:`procrustes_error`: relative error after the best similarity transform
  (rotation or reflection, one scale, a shift) onto true flat coordinates;
- :func:`overlap_fraction`: how many far-apart pairs the codes bring within
  ``delta`` of each other (folds, which the local measures cannot see).

Requires scikit-learn (the optional extra ``compare``: ``pip install -e .[compare]``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

try:
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_array, check_is_fitted
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("gammalimit.estimator needs scikit-learn: pip install -e '.[compare]'") from err

from .loss import evaluate_encoder
from .manifolds.registry import MANIFOLDS
# the measures of codes live in gammalimit.shapes; imported here, where they were first defined
from .shapes import local_isometry_error, overlap_fraction, procrustes_error  # noqa: F401
from .train import TrainConfig, float64_copy, make_manifold, train
from .validation import check_choice, check_count, check_int

# --------------------------------------------------------------------------
# the estimator


def resolve_manifold(manifold, n_pixels: int, params=None):
    """``(name, manifold)`` for a name in :data:`gammalimit.manifolds.MANIFOLDS`
    (built with ``params``, and ``n_pixels`` where it takes that), or a
    manifold equal (by ``repr``) to the one a name builds with its defaults."""
    if manifold is None:
        raise ValueError(
            f"no manifold given: name the one the samples come from (one of {sorted(MANIFOLDS)}), or learn "
            "from the samples alone (GammaEncoder(manifold=None, dim=m))")
    if isinstance(manifold, str):
        return manifold, make_manifold(check_choice(manifold, "manifold", MANIFOLDS), n_pixels, **(params or {}))
    if params:
        raise ValueError(f"manifold_params applies to a manifold given by name, not to {manifold!r}")
    for name in MANIFOLDS:
        candidate = make_manifold(name, n_pixels)
        if type(candidate) is type(manifold) and repr(candidate) == repr(manifold):
            return name, candidate
    raise ValueError(
        f"manifold {manifold!r} is not one the registry builds with its default parameters (and "
        f"n_pixels={n_pixels}); pass its name, one of {sorted(MANIFOLDS)}, and its parameters as manifold_params")


def _check_random_state(random_state):
    """``None``, a seed (an integer in ``[0, 2^32)``, numpy's range) or a ``RandomState``."""
    if random_state is None or isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return check_int(random_state, "GammaEncoder: random_state", minimum=0, maximum=2**32 - 1)
    raise TypeError(f"GammaEncoder: random_state must be None, an integer in [0, 2^32) or a "
                    f"numpy.random.RandomState, got {random_state!r}")


class GammaEncoder(TransformerMixin, BaseEstimator):
    """An encoder trained by ``L_delta`` with the scikit-learn estimator interface.

    See the module docstring: with ``manifold``, ``fit`` trains on pairs drawn
    from it, not on the values of ``X``; without it, on ``X`` alone.

    Parameters
    ----------
    manifold : str or Manifold, optional
        The data manifold: a name in :data:`gammalimit.manifolds.MANIFOLDS`,
        or a manifold equal to the one such a name builds with its default
        parameters. ``None`` (default): learn from ``X`` alone (needs ``dim``).
    dim : int, optional
        Without ``manifold``: the intrinsic dimension ``m`` of the samples.
    cloud_params : dict, optional
        Without ``manifold``: :class:`gammalimit.PointCloud` options
        (``midpoint``, ``degree``, ``distance``, ``band``, ...).
    pool_pairs : int, optional
        Without ``manifold``: pairs of the pool computed once from ``X``
        (default: :class:`~gammalimit.train.TrainConfig`'s).
    start : {"auto", "none", "isomap"}, default "auto"
        A global start: the encoder is first fitted to an Isomap embedding
        of training points (:mod:`gammalimit.train.start`); ``"auto"`` does
        so only where the initial encoder folds ``M`` (the Swiss roll).
    latent_dim : int, default 2
        ``l >= m``.
    delta : float, optional
        Pair scale, ``0 < delta <`` the manifold's injectivity radius
        (default: :func:`gammalimit.manifolds.default_delta`, which follows
        the manifold's size; without ``manifold``,
        :meth:`gammalimit.PointCloud.default_delta`).
    lam : float, default 0.01
        Bending weight, ``>= 0`` (units of length^2).
    penalty : str, default "squared"
        The pair terms, one of :data:`gammalimit.penalties.PENALTIES`.
    steps : int, default 1000
        Optimiser steps.
    batch_size : int, default 64
        Pairs per step.
    encoder : {"mlp", "conv"}, default "mlp"
    hidden : tuple of int, default (128, 128)
    lr : float, optional
        AdamW's peak learning rate (default: :class:`~gammalimit.train.TrainConfig`'s).
    warmup : int, default 50
    strategy : str, optional
        One of :data:`gammalimit.sampling.STRATEGIES` (default ``"shell"``;
        ``"ball"`` without ``manifold``).
    n_pixels : int, optional
        Grid size of the image manifolds (default 32); without ``manifold``,
        read from ``X`` (rows of ``H^2`` values) for the ``conv`` encoder.
    manifold_params : dict, optional
        Parameters of the named manifold (:func:`gammalimit.manifolds.manifold_parameters`).
    random_state : int, RandomState instance or None
        Seeds the initial weights and every training pair (``None``: a fresh
        seed from numpy's global generator); an integer must lie in ``[0, 2^32)``.
    progress : bool, default False
        Draw the trainer's progress bar.

    Attributes
    ----------
    encoder_ : torch.nn.Module
        The trained encoder, as a float64 copy.
    config_ : gammalimit.train.TrainConfig
        Without ``manifold``, its ``data`` names the temporary file ``fit``
        wrote ``X`` to for the trainer (removed when ``fit`` returns).
    manifold_ : Manifold or PointCloud
    n_features_in_ : int
    loss_curve_ : list of float
        Float32 training loss at every step.
    fit_seconds_ : float
        Wall time of ``fit`` (training included).
    """

    def __init__(self, manifold=None, latent_dim=2, delta=None, lam=0.01, penalty="squared", steps=1000,
                 batch_size=64, encoder="mlp", hidden=(128, 128), lr=None, warmup=50, strategy=None, n_pixels=None,
                 manifold_params=None, dim=None, cloud_params=None, pool_pairs=None, start="auto",
                 random_state=None, progress=False):
        self.manifold = manifold
        self.latent_dim = latent_dim
        self.delta = delta
        self.lam = lam
        self.penalty = penalty
        self.steps = steps
        self.batch_size = batch_size
        self.encoder = encoder
        self.hidden = hidden
        self.lr = lr
        self.warmup = warmup
        self.strategy = strategy
        self.n_pixels = n_pixels
        self.manifold_params = manifold_params
        self.dim = dim
        self.cloud_params = cloud_params
        self.pool_pairs = pool_pairs
        self.start = start
        self.random_state = random_state
        self.progress = progress

    def _config(self, seed: int, **geometry) -> TrainConfig:
        """The trainer's config: ``geometry`` names the manifold or the data, the rest is this estimator's."""
        extra = {} if self.lr is None else {"lr": self.lr}
        try:
            return TrainConfig(**geometry, latent_dim=self.latent_dim, delta=self.delta, lam=self.lam,
                               penalty=self.penalty, steps=self.steps, batch_size=self.batch_size,
                               encoder=self.encoder, hidden=self.hidden, warmup=self.warmup, strategy=self.strategy,
                               start=self.start, seed=seed, limit="none", **extra)
        except (ValueError, TypeError) as err:
            raise type(err)(f"GammaEncoder: {err}") from None

    def fit(self, X, y=None):
        """Train the encoder: on pairs from ``manifold`` (``X`` is checked, not trained on), or
        without ``manifold`` on ``X`` alone.

        Parameters
        ----------
        X : array, shape=[n_samples, ambient_dim]
            Samples of the manifold; with ``manifold``, every row must lie on it.
        y : ignored

        Returns
        -------
        self
        """
        t0 = time.perf_counter()
        X = check_array(X, dtype=np.float64)
        seed = int(check_random_state(_check_random_state(self.random_state)).randint(0, 2**31 - 1))
        if self.manifold is None:
            result, config, manifold = self._fit_samples(X, seed)
        else:
            result, config, manifold = self._fit_manifold(X, seed)
        self.encoder_ = float64_copy(result.model)
        self.config_ = config
        self.manifold_ = manifold
        self.n_features_in_ = X.shape[1]
        self.loss_curve_ = [row["loss"] for row in result.history]
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _fit_manifold(self, X, seed):
        n_pixels = 32 if self.n_pixels is None else self.n_pixels
        name, manifold = resolve_manifold(self.manifold, check_count(n_pixels, "n_pixels", 8), self.manifold_params)
        for param in ("dim", "cloud_params", "pool_pairs"):
            if getattr(self, param) is not None:
                raise ValueError(f"GammaEncoder: {param} applies to learning from X alone (manifold=None); "
                                 f"{manifold!r} knows its geometry")
        if X.shape[1] != manifold.ambient_dim:
            raise ValueError(f"X has {X.shape[1]} features, but {manifold!r} lives in R^{manifold.ambient_dim}")
        off = ~manifold.contains(torch.from_numpy(X), atol=1e-6)
        if off.any():
            i = int(off.nonzero()[0])
            raise ValueError(f"{int(off.sum())} of {X.shape[0]} rows of X do not lie on {manifold!r} (first: row "
                             f"{i}); GammaEncoder trains on pairs from that manifold, so X must be its samples")
        config = self._config(seed, manifold=name, manifold_params=self.manifold_params or {}, n_pixels=n_pixels)
        return train(config, progress=bool(self.progress), evaluate_final=False), config, manifold

    def _fit_samples(self, X, seed):
        if self.dim is None:
            raise ValueError("GammaEncoder without a manifold learns from X alone and needs dim, the intrinsic "
                             "dimension m of the samples (or name the manifold they lie on: manifold=...)")
        if self.manifold_params:
            raise ValueError("GammaEncoder: manifold_params needs a manifold named by manifold=...")
        extra = {} if self.pool_pairs is None else {"pool_pairs": self.pool_pairs}
        # the trainer reads samples from a file (the config records it); the cloud is built once
        with tempfile.TemporaryDirectory(prefix="gammaencoder-") as folder:
            path = Path(folder) / "X.npy"
            np.save(path, X)
            config = self._config(seed, data=str(path), dim=self.dim, cloud=self.cloud_params or {},
                                  n_pixels=self.n_pixels, **extra)
            cloud = config.make_manifold()
            return train(config, progress=bool(self.progress), evaluate_final=False), config, cloud

    def transform(self, X):
        """Codes of ``X``: the trained encoder applied to its rows.

        Unlike :meth:`fit`, ``transform`` takes any point of the ambient space,
        on the manifold or not: the encoder is a map of the whole of ``R^n``,
        and codes of points off ``M`` (noisy or held-out samples, a probe of
        how the map extends) are well defined, if not trained. ``fit`` checks
        that ``X`` lies on the named manifold because there ``X`` only
        identifies the manifold that training draws from; a mismatch is a
        mistake. Test membership with ``manifold_.contains(X)`` where it matters.

        Parameters
        ----------
        X : array, shape=[n_samples, ambient_dim]
            Any finite points of ``R^n`` (``n = n_features_in_``).

        Returns
        -------
        ndarray, shape=[n_samples, latent_dim], float64
        """
        check_is_fitted(self, "encoder_")
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but GammaEncoder was fitted with "
                             f"{self.n_features_in_}")
        with torch.no_grad():
            return evaluate_encoder(self.encoder_, torch.from_numpy(X)).numpy()
