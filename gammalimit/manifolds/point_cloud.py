"""Samples of an unknown manifold standing in for it in the discrete loss (docs/theory.md, section 8).

A :class:`PointCloud` knows only its samples ``X`` ``shape=[N, n]`` and the
intrinsic dimension ``m``. It replaces the Riemannian distance and average by
surrogates computed from the data:

- pairs: an anchor ``x`` drawn uniformly from the samples and a neighbour
  ``y`` drawn uniformly among the samples within chord distance ``delta``
  (strategy ``"ball"``; for locally uniform data the radius factor then has
  the ball's law ``m r^(m-1)`` and ``kappa = m/(m+4)``), or within the band
  ``[(1 - band) delta, delta]`` (strategy ``"shell"``);
- distance: the chord ``|x - y|`` (``O(delta^2)`` change of ``l_D``), or the
  shortest path in the ``k``-nearest-neighbour graph (``"graph"``: biased by
  its relative error, which does not vanish with ``delta``);
- midpoint: the chord midpoint projected onto a local polynomial fit of the
  samples (``"projection"``, degree 3 by default, which keeps the
  ``O(delta^2)`` rate), the nearest sample to the chord midpoint
  (``"nearest"``: bias about ``4 s^2 / delta^4`` for sample spacing ``s``),
  or the chord midpoint itself (``"chord"``: off ``M`` by ``O(delta^2)``, an
  ``O(1)`` bending bias; for comparison only).

Neighbour search uses scikit-learn's ``BallTree`` (no ``N x N`` matrix), which
prunes well when the intrinsic dimension is low, however many pixels a
sample has. The same seed gives the same pairs bit for bit: the pair of a
uniform cube point ``(u_anchor, u_neighbour)`` is a deterministic function of it.
"""

from __future__ import annotations

import copy
import hashlib
import math

import numpy as np
import torch

from ..validation import check_choice, check_count, check_int, check_real
from .base import DTYPE, random_unit_tangent
from .local_fit import fit_local, monomial_exponents, principal_directions

MIDPOINTS = ("projection", "nearest", "chord")
DISTANCES = ("chord", "graph")

#: Anchors per neighbour query (bounds the memory of the query results).
QUERY_CHUNK = 4096

#: Gathered neighbour coordinates per chunk of local fits (128 MiB of float64), which bounds the
#: peak memory: a block of 4096 pairs of 32 x 32 images would otherwise gather 2 GiB of neighbours
#: at once. Each point's fit is computed on its own; the chunk size changes at most the last bit
#: (batched kernels may round a short batch differently). Samples in ``n <= 4`` dimensions are
#: never chunked (a block of 65536 pairs gathers at most 64 x 65536 x 4 floats).
FIT_CHUNK_FLOATS = 1 << 24

#: :meth:`PointCloud.default_delta`: this fraction of the cloud's extent, unless the samples are
#: too sparse for it (their 4th-neighbour distance, over this many samples).
DEFAULT_DELTA_FRACTION = 0.05
DEFAULT_DELTA_PROBES = 1024


def as_samples(X, name: str = "X") -> torch.Tensor:
    """Validate samples: a finite float64 array ``shape=[N, n]``."""
    try:
        X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(DTYPE)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a numeric array of shape (N, n), got {type(X).__name__}") from None
    if X.ndim != 2:
        raise ValueError(f"{name} must have shape (N, n), got {tuple(X.shape)}")
    bad = ~torch.isfinite(X).all(-1)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} row(s) with NaN or infinite values; first: row "
                         f"{int(bad.nonzero()[0])}. Remove or repair them")
    return X.contiguous()


class PointCloud:
    """Samples ``X`` of an unknown ``m``-dimensional manifold in ``R^n``.

    Stands wherever a manifold stands for the discrete loss
    (:func:`gammalimit.discrete_loss`, :func:`gammalimit.sample_pairs`, the
    trainer); :func:`gammalimit.continuum_loss` needs a chart and refuses it.

    Parameters
    ----------
    X : array, shape=[N, n]
        The samples (numpy or torch; stored as float64).
    dim : int
        Intrinsic dimension ``m``, ``1 <= m < n``.
    midpoint : {"projection", "nearest", "chord"}
    degree : int, default 3
        Degree ``p`` of the local fit (``"projection"``).
    distance : {"chord", "graph"}
    band : float, default 0.1
        Relative width of the distance band of strategy ``"shell"``.
    fit_scale : float, default 1.0
        The local fit uses the samples within ``fit_scale * delta`` of the chord midpoint
        (at most ``max_fit_points`` of them, the nearest; at least ``min_fit_points``).
    max_fit_points, min_fit_points : int
        Default 64 and twice the number of monomials of degree ``<= p`` in ``m`` variables.
    graph_neighbors : int, default 10
        ``k`` of the neighbour graph of ``distance="graph"``.
    """

    has_boundary = False
    chart = None

    def __init__(self, X, dim: int, *, midpoint: str = "projection", degree: int = 3, distance: str = "chord",
                 band: float = 0.1, fit_scale: float = 1.0, max_fit_points: int = 64, min_fit_points=None,
                 graph_neighbors: int = 10):
        from sklearn.neighbors import BallTree

        self.points = as_samples(X)
        N, n = self.points.shape
        self.dim = check_int(dim, "dim", minimum=1)
        if self.dim >= n:
            raise ValueError(f"dim must be below the ambient dimension n = {n} of the samples, got dim = {dim}")
        self.ambient_dim = n
        self.midpoint_rule = check_choice(midpoint, "midpoint", MIDPOINTS)
        self.distance_rule = check_choice(distance, "distance", DISTANCES)
        self.degree = check_int(degree, "degree", minimum=1, maximum=6)
        self.band = check_real(band, "band", minimum=0.0)
        if self.band >= 1:
            raise ValueError(f"band must lie in (0, 1), got {band!r}")
        self.fit_scale = check_real(fit_scale, "fit_scale", minimum=0.0)
        n_terms = len(monomial_exponents(self.dim, self.degree))
        self.min_fit_points = check_count(2 * n_terms if min_fit_points is None else min_fit_points,
                                          "min_fit_points", minimum=n_terms + 1)
        self.max_fit_points = check_count(max_fit_points, "max_fit_points", minimum=self.min_fit_points)
        self.graph_neighbors = check_count(graph_neighbors, "graph_neighbors", minimum=1)
        need = max(self.min_fit_points, self.graph_neighbors + 1, 2)
        if N < need:
            raise ValueError(f"X has {N} samples; a point cloud of dimension {self.dim} with degree-{self.degree} "
                             f"fits needs at least {need}")
        self.injectivity_radius = math.inf  # unknown: the neighbour search says when delta is too small
        self._tree = BallTree(self.points.numpy())
        self._graph = None
        self.last_fit = {}
        self.triplets = None  # the given pairs of a cloud built from a triplet file (gammalimit.train.data)

    def __repr__(self) -> str:
        N, n = self.points.shape
        return (f"PointCloud(N={N}, n={n}, dim={self.dim}, midpoint={self.midpoint_rule!r}, "
                f"degree={self.degree}, distance={self.distance_rule!r})")

    def __len__(self) -> int:
        return self.points.shape[0]

    # -- what the samplers use -----------------------------------------------

    def cube_dim(self, strategy) -> int:
        """Uniform coordinates per pair: the anchor and the choice of neighbour."""
        return 2

    def point_from_cube(self, u: torch.Tensor) -> torch.Tensor:
        """The samples at ``floor(u N)``, ``shape=[k, n]`` (``u`` ``shape=[k, >=1]``)."""
        return self.points[self._index(u[:, 0])]

    def sample(self, n: int, generator=None) -> torch.Tensor:
        """``n`` samples drawn uniformly with replacement, ``shape=[n, ambient_dim]``."""
        return self.points[self.sample_indices(n, generator)]

    def sample_indices(self, n: int, generator=None) -> torch.Tensor:
        """The indices of the samples :meth:`sample` draws with the same generator, ``shape=[n]``."""
        check_count(n)
        return self._index(torch.rand(n, 1, generator=generator, dtype=DTYPE)[:, 0])

    def contains(self, x, atol: float = 1e-9) -> torch.Tensor:
        """Whether points coincide with a sample (to ``atol``), ``shape=[k]``."""
        d, _ = self._tree.query(torch.as_tensor(x, dtype=DTYPE).numpy(), k=1)
        return torch.from_numpy(d[:, 0] <= atol)

    def pairs_from_cube(self, u: torch.Tensor, delta: float, strategy):
        """Pairs from uniform cube points ``shape=[k, 2]``: ``(x, y, midpoint, dist, v, r)``.

        ``v`` is the unit chord direction and ``r = |x - y| / delta``.
        """
        name = getattr(strategy, "name", strategy)
        if name not in ("ball", "shell"):
            raise ValueError(f"a point cloud draws pairs for the strategies 'ball' and 'shell', not {name!r}")
        anchors = self._index(u[:, 0])
        inner = (1 - self.band) * delta if name == "shell" else 0.0
        partner = self._neighbour(anchors, u[:, 1], delta, inner)
        x, y = self.points[anchors], self.points[partner]
        chord = torch.linalg.vector_norm(x - y, dim=-1)
        dist = self.graph_distance(anchors, partner, delta) if self.distance_rule == "graph" else chord
        return x, y, self.midpoint(x, y, delta), dist, (y - x) / chord[:, None], chord / delta

    # -- what the trainer uses -------------------------------------------------

    def extent(self) -> float:
        """``2 max_i |x_i - mean(x)|``, the size of the cloud: at least its extrinsic diameter
        ``max |x_i - x_j|`` and at most twice it (one pass over the samples, no pair distances)."""
        return 2 * float(torch.linalg.vector_norm(self.points - self.points.mean(0), dim=-1).max())

    def default_delta(self) -> float:
        """The pair scale used where none is given:
        ``max(DEFAULT_DELTA_FRACTION * extent(), s_4)``.

        A cloud has no injectivity radius to scale by (a manifold's default is 0.05 of it), so its
        extent stands in: on a round circle or sphere of radius ``R`` the first term is ``0.1 R``
        (the exact sphere gets ``0.157 R``), whatever the sampling density. ``s_4`` is the largest
        distance from a sample to its 4th nearest other sample, over
        ``DEFAULT_DELTA_PROBES`` samples spread evenly through ``X``: below it some anchors would have
        no neighbour to pair with, so sparse data raise the default to it (2000 points of the unit
        sphere: 0.17). Too coarse a scale for the local fits shows in :meth:`fit_report`.
        """
        probes = np.unique(np.linspace(0, len(self) - 1, min(len(self), DEFAULT_DELTA_PROBES)).astype(np.int64))
        dist, _ = self._tree.query(self.points[probes].numpy(), k=min(5, len(self)))
        return max(DEFAULT_DELTA_FRACTION * self.extent(), float(dist[:, -1].max()))

    def tangent_frame(self, x) -> torch.Tensor:
        """Orthonormal frames of the tangent planes at points ``x`` ``shape=[k, n]``, ``shape=[k, n, m]``.

        Local PCA (:func:`~gammalimit.manifolds.local_fit.principal_directions`) of the
        ``min(max_fit_points, N)`` samples nearest to each point, the neighbourhood the fits of
        :meth:`project` use at most. The orientation of each frame is arbitrary.
        """
        x = as_samples(x, "x")
        if x.shape[1] != self.ambient_dim:
            raise ValueError(f"x must have shape (k, {self.ambient_dim}), got {tuple(x.shape)}")
        k = min(self.max_fit_points, len(self))
        _, idx = self._tree.query(x.numpy(), k=k)
        frames = []
        for rows in self._fit_chunks(len(x), k):
            near = self.points[torch.from_numpy(idx[rows])]
            frames.append(principal_directions(near - near.mean(1, keepdim=True), self.dim))
        return torch.cat(frames)

    def random_unit_tangent(self, x, generator=None) -> torch.Tensor:
        """Directions uniform on the unit sphere of the local-PCA tangent plane, ``shape=[k, n]``."""
        return random_unit_tangent(self, as_samples(x, "x"), generator)

    def pair_pool(self, delta: float, n: int, *, strategy="ball", seed: int = 0, progress: bool = False):
        """``n`` pairs at scale ``delta`` drawn once, for the trainer to draw its batches from
        (:class:`PairPool`) instead of fitting the samples afresh at every step.

        The pairs are those of ``sample_pairs(self, n, delta, strategy=strategy, seed=seed)``: they
        come in the sampler's fixed-seed blocks, so the same arguments give the same pool bit for bit.
        ``progress`` draws a bar on stderr (a pool of image pairs takes minutes).

        Returns
        -------
        PairSample
        """
        from ..sampling import PairSample

        return PairSample.concat([b for _, b in self.pool_blocks(delta, n, strategy=strategy, seed=seed,
                                                                 progress=progress)])

    def pool_blocks(self, delta: float, n: int, *, strategy="ball", seed: int = 0, owns=None,
                    progress: bool = False):
        """The fixed-seed blocks of :meth:`pair_pool` as ``(index, PairSample)``, drawn one after another;
        with ``owns(index) -> bool`` only those it picks (:func:`gammalimit.sampling.iter_blocks`), so that
        K processes can each draw a share of the pool and gather the blocks in index order (the trainer
        under ``torchrun``). :attr:`last_fit` describes the block just yielded.
        """
        from tqdm import tqdm

        from ..sampling import iter_blocks

        total = check_count(n, "n", 2) if owns is None else None  # a share's size is known once drawn
        with tqdm(total=total, unit="pair", desc="pair pool", disable=not progress, leave=False) as bar:
            for index, block in iter_blocks(self, n, delta, strategy=strategy, seed=seed, owns=owns):
                bar.update(len(block))
                yield index, block

    def digest(self) -> str:
        """SHA-256 of the samples (float64, row-major): names the data a run was trained on."""
        if getattr(self, "_digest", None) is None:
            self._digest = hashlib.sha256(self.points.numpy().tobytes()).hexdigest()
        return self._digest

    # -- the surrogates --------------------------------------------------------

    def midpoint(self, x: torch.Tensor, y: torch.Tensor, delta: float) -> torch.Tensor:
        """The midpoint surrogate of ``midpoint_rule`` for pairs ``shape=[k, n]``."""
        q = 0.5 * (x + y)
        if self.midpoint_rule == "chord":
            return q
        if self.midpoint_rule == "nearest":
            _, idx = self._tree.query(q.numpy(), k=1)
            return self.points[torch.from_numpy(idx[:, 0])]
        return self.project(q, delta)

    def project(self, q: torch.Tensor, delta: float) -> torch.Tensor:
        """Projection of points ``shape=[k, n]`` onto local degree-``p`` fits of the samples
        within ``fit_scale * delta``; records the fits' residuals in :attr:`last_fit`."""
        k = min(self.max_fit_points, len(self))
        dist, idx = self._tree.query(q.numpy(), k=k)
        weights = torch.from_numpy(dist <= self.fit_scale * delta)
        weights[:, : self.min_fit_points] = True
        # neighbours come sorted by distance, so the fitted ones are a prefix: drop the unweighted tail
        k = int(weights.sum(1).max())
        idx, weights = idx[:, :k], weights[:, :k]
        projected, residual, n_points = [], [], []
        for rows in self._fit_chunks(len(q), k):
            fit = fit_local(self.points[torch.from_numpy(idx[rows])], weights[rows], self.dim, self.degree)
            projected.append(fit.project(q[rows]))
            residual.append(fit.residual)
            n_points.append(fit.n_points)
        residual, n_points = torch.cat(residual), torch.cat(n_points)
        self.last_fit = {"residual_median": float(residual.median()),
                         "residual_max": float(residual.max()),
                         "residual_over_delta2": float(residual.median()) / delta**2,
                         "points_median": float(n_points.double().median()),
                         "at_min_points": float((n_points <= self.min_fit_points).double().mean())}
        return torch.cat(projected)

    def smoothed(self, delta: float) -> "PointCloud":
        """The cloud of the samples projected onto their own local fits at scale ``delta`` (one
        moving-least-squares step), with the same options.

        Noise normal to ``M`` of size ``sigma`` enters every chord distance of
        a pair at scale ``delta`` with a relative size ``~ (sigma/delta)^2``
        and its midpoint with ``sigma/delta^2`` (docs/theory.md, section 8);
        an encoder trained on noisy samples also follows the noise of each
        sample. Projecting first removes most of the normal noise (the fit
        averages over the ``~ delta^m`` samples near a point) at a bias of
        the fit's order. Measured on the Swiss roll from 2000 samples at
        ``delta = 4`` (studies/train_from_samples.py): the Procrustes error of
        the trained encoder falls from 0.049 to 0.012 at noise 0.1 (800
        steps), from 0.22 to 0.081 at 0.5 (500 steps).
        """
        delta = check_real(delta, "delta", minimum=0.0)
        X = torch.cat([self.project(block, delta) for block in self.points.split(QUERY_CHUNK)])
        return PointCloud(X, self.dim, midpoint=self.midpoint_rule, degree=self.degree,
                          distance=self.distance_rule, band=self.band, fit_scale=self.fit_scale,
                          max_fit_points=self.max_fit_points, min_fit_points=self.min_fit_points,
                          graph_neighbors=self.graph_neighbors)

    def graph_distance(self, anchors: torch.Tensor, partners: torch.Tensor, delta: float) -> torch.Tensor:
        """Shortest-path length in the symmetric ``graph_neighbors``-nearest-neighbour graph, ``shape=[k]``
        (the distance rule ``"graph"``: every pair must be joined within ``8 delta``)."""
        out = self.path_length(anchors, partners, limit=8 * delta)
        if not torch.isfinite(out).all():
            raise ValueError(f"{int((~torch.isfinite(out)).sum())} pair(s) are not joined within 8 delta in the "
                             f"{self.graph_neighbors}-neighbour graph; raise graph_neighbors")
        return out

    def path_length(self, i: torch.Tensor, j: torch.Tensor, limit: float = math.inf) -> torch.Tensor:
        """Shortest-path lengths between samples ``i`` and ``j`` (indices ``shape=[k]``) in the symmetric
        ``graph_neighbors``-nearest-neighbour graph, ``shape=[k]``; ``inf`` where longer than ``limit``
        or not joined.

        The graph distance of docs/theory.md, section 8: an estimate of the geodesic distance whose
        relative error does not vanish with the scale, fit for telling far pairs from near ones
        (:func:`~gammalimit.train.evaluation.fold_check`), where the chord may not: between images
        of a translating blob it never exceeds ``sqrt(2) |u|``, however far apart the centres. A
        finite ``limit`` bounds each search to the ball it spans.
        """
        from scipy.sparse.csgraph import dijkstra
        from sklearn.neighbors import kneighbors_graph

        if self._graph is None:
            graph = kneighbors_graph(self.points.numpy(), self.graph_neighbors, mode="distance")
            self._graph = graph.maximum(graph.T).tocsr()
        out = torch.empty(len(i), dtype=DTYPE)
        a, b = torch.as_tensor(i).numpy(), torch.as_tensor(j).numpy()
        for start in range(0, len(a), 64):
            rows, inverse = np.unique(a[start : start + 64], return_inverse=True)
            table = dijkstra(self._graph, indices=rows, limit=limit)
            out[start : start + 64] = torch.from_numpy(table[inverse, b[start : start + 64]])
        return out

    def with_midpoint(self, rule: str) -> "PointCloud":
        """The same cloud (samples, neighbour index, graph shared, not rebuilt) with the midpoint
        rule ``rule``: ``with_midpoint("chord")`` draws the same pairs, with the same distances,
        without the local fits, for uses that need no midpoint."""
        other = copy.copy(self)
        other.midpoint_rule = check_choice(rule, "midpoint", MIDPOINTS)
        other.last_fit = {}
        return other

    def fit_report(self, delta: float, n: int = 256, seed: int = 0) -> dict:
        """Residuals of the local fits at ``n`` random chord midpoints at scale ``delta``:
        a residual comparable to ``delta^2`` means the data are too sparse or noisy for that ``delta``."""
        from ..sampling import sample_pairs

        if self.midpoint_rule != "projection":
            raise ValueError(f"fit_report needs midpoint='projection', not {self.midpoint_rule!r}")
        sample_pairs(self, n, delta, strategy="ball", seed=seed)
        return dict(self.last_fit, delta=float(delta))

    # -- helpers ---------------------------------------------------------------

    def _index(self, u: torch.Tensor) -> torch.Tensor:
        return (u * len(self)).long().clamp_(0, len(self) - 1)

    def _fit_chunks(self, k: int, neighbours: int):
        """Row slices of ``k`` points whose ``neighbours`` gathered samples fit in :data:`FIT_CHUNK_FLOATS`."""
        size = max(1, FIT_CHUNK_FLOATS // (neighbours * self.ambient_dim))
        return [slice(i, i + size) for i in range(0, k, size)]

    def _neighbour(self, anchors: torch.Tensor, u: torch.Tensor, delta: float, inner: float) -> torch.Tensor:
        """For each anchor, the neighbour with chord distance in ``(inner, delta]`` picked by ``u``
        (duplicates of the anchor, at distance 0, are never picked)."""
        out = torch.empty(len(anchors), dtype=torch.long)
        a = anchors.numpy()
        for start in range(0, len(a), QUERY_CHUNK):
            idx, dist = self._tree.query_radius(self.points[a[start : start + QUERY_CHUNK]].numpy(), r=delta,
                                                return_distance=True)
            counts = np.array([np.count_nonzero((d > inner) & (d > 0)) for d in dist])
            if (counts == 0).any():
                lonely = int((counts == 0).sum())
                spacing = float(np.median(self._tree.query(self.points[a[:256]].numpy(), k=2)[0][:, 1]))
                where = "within" if inner == 0 else f"in the band ({inner:.4g}, {delta:.4g}] of"
                raise ValueError(
                    f"{lonely} of {len(idx)} anchors have no neighbour {where} chord distance delta = {delta:.4g} "
                    f"(median nearest-neighbour distance {spacing:.3g}); use a larger delta, or more samples")
            pick = np.minimum((u[start : start + QUERY_CHUNK].numpy() * counts).astype(np.int64), counts - 1)
            out[start : start + QUERY_CHUNK] = torch.from_numpy(np.array(
                [i[(d > inner) & (d > 0)][np.argsort(i[(d > inner) & (d > 0)])][p]
                 for i, d, p in zip(idx, dist, pick)]))
        return out


class PairPool:
    """A fixed :class:`~gammalimit.PairSample` standing in for a manifold in
    :func:`gammalimit.sample_pairs`: each uniform cube point picks one of its pairs (with replacement).

    The trainer draws each step's batch from a pool of cloud pairs
    (:meth:`PointCloud.pair_pool`) with the step's seed, so that the local fits
    are computed once, not at every step; ``qmc`` then stratifies the choice of
    pool pairs. A pair is returned as the pool holds it: ``delta`` and the
    strategy must be the pool's.

    Parameters
    ----------
    pairs : PairSample
        Not antithetic.
    strategy : str
        The strategy the pairs were drawn with.
    """

    has_boundary = False
    chart = None
    injectivity_radius = math.inf

    def __init__(self, pairs, strategy: str):
        if pairs.antithetic:
            raise ValueError("a pair pool holds single pairs; antithetic couples would be split when drawn")
        self.pairs = pairs
        self.strategy = strategy
        self.ambient_dim = pairs.x.shape[1]

    def __repr__(self) -> str:
        return f"PairPool(n={len(self)}, delta={self.pairs.delta:.6g}, strategy={self.strategy!r})"

    def __len__(self) -> int:
        return len(self.pairs)

    def cube_dim(self, strategy) -> int:
        """One uniform coordinate per pair: which pair of the pool."""
        return 1

    def pairs_from_cube(self, u: torch.Tensor, delta: float, strategy):
        """The pool's pairs at ``floor(u N)``: ``(x, y, midpoint, dist, v, r)``."""
        name = getattr(strategy, "name", strategy)
        if delta != self.pairs.delta or name != self.strategy:
            raise ValueError(f"{self!r} holds pairs at delta = {self.pairs.delta:.6g} drawn with strategy "
                             f"{self.strategy!r}, not delta = {delta:.6g} with {name!r}")
        i = (u[:, 0] * len(self)).long().clamp_(0, len(self) - 1)
        p = self.pairs
        return p.x[i], p.y[i], p.midpoint[i], p.dist[i], p.v[i], p.r[i]
