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

import math

import numpy as np
import torch

from ..validation import check_choice, check_count, check_int, check_real
from .base import DTYPE
from .local_fit import fit_local, monomial_exponents

MIDPOINTS = ("projection", "nearest", "chord")
DISTANCES = ("chord", "graph")

#: Anchors per neighbour query (bounds the memory of the query results).
QUERY_CHUNK = 4096


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
        check_count(n)
        return self.point_from_cube(torch.rand(n, 1, generator=generator, dtype=DTYPE))

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
        idx = torch.from_numpy(idx)
        # fits in chunks of about 2^24 neighbour coordinates (128 MiB), whatever k and n
        chunk = max(1, (1 << 24) // (k * self.ambient_dim))
        out, residual, used = [], [], []
        for i in range(0, q.shape[0], chunk):
            fit = fit_local(self.points[idx[i : i + chunk]], weights[i : i + chunk], self.dim, self.degree)
            out.append(fit.project(q[i : i + chunk]))
            residual.append(fit.residual)
            used.append(fit.n_points)
        residual, used = torch.cat(residual), torch.cat(used)
        self.last_fit = {"residual_median": float(residual.median()),
                         "residual_max": float(residual.max()),
                         "residual_over_delta2": float(residual.median()) / delta**2,
                         "points_median": float(used.double().median()),
                         "at_min_points": float((used <= self.min_fit_points).double().mean())}
        return torch.cat(out)

    def graph_distance(self, anchors: torch.Tensor, partners: torch.Tensor, delta: float) -> torch.Tensor:
        """Shortest-path length in the symmetric ``graph_neighbors``-nearest-neighbour graph, ``shape=[k]``."""
        from scipy.sparse.csgraph import dijkstra
        from sklearn.neighbors import kneighbors_graph

        if self._graph is None:
            graph = kneighbors_graph(self.points.numpy(), self.graph_neighbors, mode="distance")
            self._graph = graph.maximum(graph.T).tocsr()
        out = torch.empty(len(anchors), dtype=DTYPE)
        a, b = anchors.numpy(), partners.numpy()
        for start in range(0, len(a), 64):
            rows, inverse = np.unique(a[start : start + 64], return_inverse=True)
            table = dijkstra(self._graph, indices=rows, limit=8 * delta)
            out[start : start + 64] = torch.from_numpy(table[inverse, b[start : start + 64]])
        if not torch.isfinite(out).all():
            raise ValueError(f"{int((~torch.isfinite(out)).sum())} pair(s) are not joined within 8 delta in the "
                             f"{self.graph_neighbors}-neighbour graph; raise graph_neighbors")
        return out

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
