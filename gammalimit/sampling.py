"""Pair sampling strategies at scale ``delta`` (docs/theory.md, section 2).

A strategy draws ``x ~ mu``, a direction ``v`` uniform on the unit sphere of
``(T_x M, g)``, a radius factor ``r`` from its radial law, and sets
``y = exp_x(delta r v)`` and ``av(x, y) = exp_x(delta r v / 2)``, so that
``d(x, y) = delta r`` exactly.

The uniform points that ``x``, ``v`` and ``r`` are made of come in fixed
blocks (:mod:`gammalimit.blocks`), so results do not depend on how the
consumer chunks its work, and the same seed gives the same pairs bit for
bit. With the same seed, every ``delta`` of a sweep sees the same
``(x, v, r)`` (common random numbers), except where boundary rejection
(manifolds with ``has_boundary``) redraws a pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch

from .blocks import block_plan, block_size, check_qmc_n  # noqa: F401 (check_qmc_n: part of this module's API)
from .manifolds.base import DTYPE, tangent_cube_dim, unit_vector_from_cube
from .validation import check_count, check_delta, check_manifold, check_positive, check_seed

# --------------------------------------------------------------------------
# strategies: each owns its radial law (radius map, density, quadrature rule, moments)


@dataclass(frozen=True)
class Shell:
    """All pairs at distance exactly ``delta``: ``r = 1``, ``E[r^p] = 1``."""

    name: str = "shell"
    cube_dim: int = 0

    def radius(self, u: torch.Tensor, m: int) -> torch.Tensor:
        """Radius factors from uniform cube points ``shape=[k, cube_dim]``, ``shape=[k]``."""
        return torch.ones(u.shape[0], dtype=u.dtype)

    def density(self, r: torch.Tensor, m: int) -> None:
        """The law of ``r`` is a point mass at 1 (no density)."""
        return None

    def radial_rule(self, m: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """Nodes ``r`` and weights of ``E[f(r)]``: the single node 1."""
        return torch.ones(1, dtype=DTYPE), torch.ones(1, dtype=DTYPE)

    def moment(self, p: float, m: int) -> float:
        """``E[r^p] = 1``."""
        return 1.0

    def kappa(self, m: int) -> float:
        """``kappa = E[r^4]``."""
        return self.moment(4, m)


@dataclass(frozen=True)
class Ball:
    """``y`` uniform in the normal-coordinate ball of radius ``delta``:
    density ``m r^(m-1)`` on ``(0, 1]``, ``E[r^p] = m/(m+p)``, ``kappa = m/(m+4)``."""

    name: str = "ball"
    cube_dim: int = 1

    def radius(self, u: torch.Tensor, m: int) -> torch.Tensor:
        # inverse CDF of m r^(m-1); 1 - u keeps r in (0, 1] for u in [0, 1)
        return (1 - u[:, 0]) ** (1.0 / m)

    def density(self, r: torch.Tensor, m: int) -> torch.Tensor:
        """``m r^(m-1)``, the volume ratio of the ball's shells."""
        return m * r ** (m - 1)

    def radial_rule(self, m: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """Gauss-Legendre on ``(0, 1)`` times the density: exact for ``E[r^p]``, integer ``p < 2n - m + 1``."""
        t, w = np.polynomial.legendre.leggauss(check_count(n, "n_radial"))
        r = 0.5 * (t + 1)
        return torch.from_numpy(r), torch.from_numpy(0.5 * w * self.density(r, m))

    def moment(self, p: float, m: int) -> float:
        return m / (m + p)

    def kappa(self, m: int) -> float:
        return self.moment(4, m)


STRATEGIES = {s.name: s for s in (Shell(), Ball())}

_STRATEGY_METHODS = ("name", "cube_dim", "radius", "density", "radial_rule", "moment", "kappa")


def register_strategy(strategy) -> None:
    """Make a strategy object known by its ``name`` everywhere a strategy is named
    (:func:`sample_pairs`, the losses, the trainer, the CLI).

    A strategy provides ``name``, ``cube_dim`` (uniform coordinates its radius
    map consumes) and ``radius(u, m)``, ``density(r, m)``, ``radial_rule(m, n)``,
    ``moment(p, m)`` and ``kappa(m)``; see :class:`Ball`.
    """
    missing = [a for a in _STRATEGY_METHODS if not hasattr(strategy, a)]
    if missing:
        raise TypeError(f"a strategy needs {list(_STRATEGY_METHODS)}; {strategy!r} lacks {missing}")
    STRATEGIES[strategy.name] = strategy


def get_strategy(strategy):
    """Look up a strategy by name (or pass a strategy object through)."""
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; allowed: {sorted(STRATEGIES)}")
        return STRATEGIES[strategy]
    if all(hasattr(strategy, a) for a in _STRATEGY_METHODS):
        return strategy
    raise TypeError(f"strategy must be a name in {sorted(STRATEGIES)} or a strategy object, got {strategy!r}")


def direction_rule(m: int, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic rule for averages over unit directions of ``R^m``.

    ``m = 1``: the two directions ``+-1``. ``m = 2``: ``n`` equispaced angles
    (the trapezoid rule, exponentially accurate for smooth periodic
    integrands). ``m = 3``: Gauss-Legendre in ``cos(theta)`` (``n // 2``
    nodes) times ``n`` equispaced longitudes.

    Returns
    -------
    directions : tensor, shape=[k, m]
    weights : tensor, shape=[k]
        Sum to 1.
    """
    n = check_count(n, "n_directions", minimum=2)
    if m == 1:
        return torch.tensor([[1.0], [-1.0]], dtype=DTYPE), torch.full((2,), 0.5, dtype=DTYPE)
    a = 2 * math.pi * torch.arange(n, dtype=DTYPE) / n
    if m == 2:
        return torch.stack([torch.cos(a), torch.sin(a)], -1), torch.full((n,), 1 / n, dtype=DTYPE)
    if m == 3:
        z, wz = (torch.from_numpy(t) for t in np.polynomial.legendre.leggauss(max(2, n // 2)))
        s = torch.sqrt(1 - z**2)
        c = torch.stack([s[:, None] * torch.cos(a), s[:, None] * torch.sin(a), z[:, None].expand(-1, n)], -1)
        return c.reshape(-1, 3), (wz[:, None] / 2 / n).expand(-1, n).reshape(-1)
    raise ValueError(f"a direction rule is implemented for m = 1, 2, 3, got m = {m}")


# --------------------------------------------------------------------------
# pairs


@dataclass
class PairSample:
    """A batch of pairs at scale ``delta``.

    Attributes
    ----------
    x, y, midpoint : tensor, shape=[k, ambient_dim]
        End points and their Riemannian average ``av(x, y)``.
    dist : tensor, shape=[k]
        ``d(x, y) = delta r``.
    v : tensor, shape=[k, ambient_dim], or None
        The unit tangent direction at ``x`` that produced ``y``; ``None`` when
        drawn with ``tangents=False``.
    r : tensor, shape=[k]
        Radius factor in ``(0, 1]``.
    delta : float
    antithetic : bool
        If true, ``k`` is even and pair ``i + k/2`` is pair ``i`` with ``-v``.
    replicate : tensor of int, shape=[k]
        QMC replicate index of each pair (all zero for plain MC).
    n_rejected : int
        Pairs redrawn because they left a manifold with boundary.
    inside : tensor of bool, shape=[k], optional
        Only with ``reject=False``: whether the pair (for antithetic pairs,
        both pairs of the couple) stays in ``M``, i.e. would be accepted.
    """

    x: torch.Tensor
    y: torch.Tensor
    midpoint: torch.Tensor
    dist: torch.Tensor
    v: torch.Tensor | None
    r: torch.Tensor
    delta: float
    antithetic: bool = False
    replicate: torch.Tensor | None = None
    n_rejected: int = 0
    inside: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def stacked(self) -> torch.Tensor:
        """``[x; y; midpoint]``, ``shape=[3k, ambient_dim]``: a view when the sampler drew the three
        into one buffer, one after the other (image manifolds), else a copy."""
        x, y, mid = self.x, self.y, self.midpoint
        step = x.numel() * x.element_size()
        if (x.dim() == 2 and x.shape == y.shape == mid.shape and all(t.is_contiguous() for t in (x, y, mid))
                and x.untyped_storage().data_ptr() == y.untyped_storage().data_ptr() == mid.untyped_storage().data_ptr()
                and y.data_ptr() == x.data_ptr() + step and mid.data_ptr() == y.data_ptr() + step):
            return x.as_strided((3 * x.shape[0], x.shape[1]), x.stride())
        return torch.cat([x, y, mid])

    @classmethod
    def from_arrays(cls, x, y, midpoint, dist, *, delta: float | None = None) -> "PairSample":
        """Pairs given by the user, e.g. triplets of video frames (``midpoint`` the middle frame).

        Parameters
        ----------
        x, y, midpoint : array, shape=[k, n]
        dist : array, shape=[k]
            ``d(x, y)``, positive.
        delta : float, optional
            The scale that normalises the penalties; default ``max(dist)``.

        Returns
        -------
        PairSample
            ``v`` is the unit chord direction and ``r = dist / delta``.
        """
        from .manifolds.point_cloud import as_samples

        x, y, mid = (as_samples(a, name) for a, name in ((x, "x"), (y, "y"), (midpoint, "midpoint")))
        if not (x.shape == y.shape == mid.shape):
            raise ValueError(f"x, y and midpoint must have one shape (k, n), got {tuple(x.shape)}, "
                             f"{tuple(y.shape)}, {tuple(mid.shape)}")
        dist = torch.as_tensor(np.asarray(dist) if not isinstance(dist, torch.Tensor) else dist).to(DTYPE)
        if dist.shape != (x.shape[0],) or not (torch.isfinite(dist).all() and (dist > 0).all()):
            raise ValueError(f"dist must be {x.shape[0]} finite distances > 0 (one per pair), got shape "
                             f"{tuple(dist.shape)}" + ("" if dist.shape != (x.shape[0],) else
                                                      f" with {int((~(dist > 0)).sum())} not > 0 or non-finite"))
        delta = float(dist.max()) if delta is None else check_positive(delta, "delta")
        chord = torch.linalg.vector_norm(y - x, dim=-1).clamp_min(torch.finfo(DTYPE).tiny)
        return cls(x, y, mid, dist, (y - x) / chord[:, None], dist / delta, delta,
                   replicate=torch.zeros(x.shape[0], dtype=torch.long))

    def blocks(self, size: int) -> Iterator["PairSample"]:
        """The pairs in consecutive blocks of ``size`` (the last may be shorter)."""
        for i in range(0, len(self), size):
            part = slice(i, i + size)
            rep = None if self.replicate is None else self.replicate[part]
            yield PairSample(self.x[part], self.y[part], self.midpoint[part], self.dist[part], self.v[part],
                             self.r[part], self.delta, False, rep)

    @staticmethod
    def concat(parts: list["PairSample"]) -> "PairSample":
        """Join batches; antithetic batches keep the layout ``[all +v; all -v]``."""
        if len(parts) == 1:
            return parts[0]
        anti = parts[0].antithetic
        names = ("x", "y", "midpoint", "dist", "v", "r", "replicate") + (("inside",) if parts[0].inside is not None else ())
        fields = []
        for name in names:
            pieces = [getattr(p, name) for p in parts]
            if any(t is None for t in pieces):  # v without tangents
                fields.append(None)
                continue
            if anti:
                pieces = [t[: t.shape[0] // 2] for t in pieces] + [t[t.shape[0] // 2 :] for t in pieces]
            fields.append(torch.cat(pieces))
        return PairSample(*fields[:6], parts[0].delta, anti, fields[6], sum(p.n_rejected for p in parts),
                          fields[7] if len(fields) > 7 else None)


def _pairs_from_cube(manifold, strategy, delta, u, antithetic, tangents=True):
    """Pair fields ``(x, y, midpoint, dist, v, r)`` from cube points, and the mask of pairs inside a
    manifold with boundary (``None``: ask :func:`_accepted`). Without ``tangents`` a sampler that
    need not compute ``v`` (one drawing in its chart) may leave it ``None``."""
    if hasattr(manifold, "pairs_from_cube"):  # samples standing for a manifold (PointCloud)
        return manifold.pairs_from_cube(u, delta, strategy), None
    m = manifold.dim
    tc = tangent_cube_dim(m)
    c = unit_vector_from_cube(u[:, m : m + tc], m)
    r = strategy.radius(u[:, m + tc :], m)
    if hasattr(manifold, "pairs_in_chart"):  # the sampler renders from parameters (image manifolds)
        return manifold.pairs_in_chart(u[:, :m], c, r, delta, antithetic, tangents)
    x = manifold.point_from_cube(u[:, :m])
    if antithetic:
        x, c, r = torch.cat([x, x]), torch.cat([c, -c]), torch.cat([r, r])
    v = torch.einsum("kni,ki->kn", manifold.tangent_frame(x), c)
    step = (delta * r)[:, None] * v
    y = manifold.exp(x, step)
    mid = manifold.exp(x, 0.5 * step)
    return (x, y, mid, delta * r, v, r), None


def _accepted(manifold, y, antithetic):
    if not manifold.has_boundary:
        return None
    ok = manifold.contains(y)
    if antithetic:
        h = ok.shape[0] // 2
        ok = ok[:h] & ok[h:]
    return ok


def _halves(fields, antithetic):
    """Split pair fields into the ``+v`` and ``-v`` halves (one half if not antithetic)."""
    if not antithetic:
        return [fields]
    h = fields[0].shape[0] // 2
    return [[f[:h] for f in fields], [f[h:] for f in fields]]


def _draw_block(manifold, strategy, delta, source, k, antithetic, replicate, reject=True):
    """``k`` sampling units (``2k`` pairs if antithetic), redrawing units whose
    pairs leave a manifold with boundary (unless ``reject`` is false: then
    all candidates come back, with the mask ``inside``)."""
    if not reject:
        fields, ok = _pairs_from_cube(manifold, strategy, delta, source.draw(k), antithetic)
        ok = _accepted(manifold, fields[1], antithetic) if ok is None else ok
        ok = torch.ones(k, dtype=torch.bool) if ok is None else ok
        rep = torch.full((fields[0].shape[0],), replicate, dtype=torch.long)
        return PairSample(*fields, delta, antithetic, rep, 0, torch.cat([ok, ok]) if antithetic else ok)
    kept, have, rejected = [], 0, 0
    while have < k:
        u = source.draw(k - have)
        fields, ok = _pairs_from_cube(manifold, strategy, delta, u, antithetic)
        ok = _accepted(manifold, fields[1], antithetic) if ok is None else ok
        if not kept and (ok is None or bool(ok.all())):  # all of the first draw: no copy
            rep = torch.full((fields[0].shape[0],), replicate, dtype=torch.long)
            return PairSample(*fields, delta, antithetic, rep, 0)
        parts = _halves(fields, antithetic)
        if ok is not None:
            rejected += int((~ok).sum())
            parts = [[f[ok] for f in half] for half in parts]
        kept.append(parts)
        have += parts[0][0].shape[0]
        if len(kept) > 1000:
            raise RuntimeError(f"could not draw {k} pairs inside {manifold!r} at delta={delta}")
    # all +v halves first, then all -v halves: pair i + k pairs with pair i
    x, y, mid, dist, v, r = (
        torch.cat([part[h][i] for h in range(len(kept[0])) for part in kept]) for i in range(6)
    )
    rep = torch.full((x.shape[0],), replicate, dtype=torch.long)
    return PairSample(x, y, mid, dist, v, r, delta, antithetic, rep, rejected)


def iter_pairs(manifold, n: int, delta: float, *, strategy="shell", antithetic: bool = False,
               qmc: bool = False, seed: int = 0, qmc_replicates: int = 8,
               reject: bool = True, scramble_seed: int | None = None, tangents: bool = True) -> Iterator[PairSample]:
    """Stream ``n`` pairs in blocks of :func:`~gammalimit.blocks.block_size` pairs.

    Parameters are those of :func:`sample_pairs`. With ``antithetic``, ``n``
    is rounded up to even; with ``qmc``, ``n`` must be ``qmc_replicates * 2^k``
    (times 2 with ``antithetic``: :func:`~gammalimit.blocks.check_qmc_n`) and is split evenly over
    ``qmc_replicates`` independently scrambled Sobol sequences; blocks never
    mix replicates.

    Yields
    ------
    PairSample
    """
    for _, pairs in iter_blocks(manifold, n, delta, strategy=strategy, antithetic=antithetic, qmc=qmc, seed=seed,
                                qmc_replicates=qmc_replicates, reject=reject, scramble_seed=scramble_seed,
                                tangents=tangents):
        yield pairs


def iter_blocks(manifold, n: int, delta: float, *, strategy="shell", antithetic: bool = False,
                qmc: bool = False, seed: int = 0, qmc_replicates: int = 8, reject: bool = True,
                owns=None, scramble_seed: int | None = None, tangents: bool = True) -> Iterator[tuple[int, PairSample]]:
    """The blocks of :func:`iter_pairs` with their index in its stream, optionally only those of some sources.

    A *source* is a part of the stream that can be drawn without drawing the
    rest: with ``qmc`` each replicate (one scrambled Sobol sequence, which
    draws its blocks one after the other); for plain Monte Carlo each block
    (block ``i`` has its own generator, :func:`~gammalimit.blocks.block_generator`), except
    on a manifold with boundary, where a redrawn pair takes the next
    generator, so that the whole stream is one source. ``owns(source) -> bool``
    picks the sources to draw (default: all); the blocks of the others are
    skipped without drawing them, and those drawn are the very blocks (same
    index, same bits) that :func:`iter_pairs` yields.

    Yields
    ------
    (int, PairSample)
        The block's index in :func:`iter_pairs`'s order, and the block.
    """
    manifold, delta, strat, plan = _block_plan(manifold, n, delta, strategy, antithetic, qmc, seed,
                                               qmc_replicates, owns, scramble_seed)
    independent = not getattr(manifold, "has_boundary", False)
    for index, src, k, rep in plan:
        start = src.block
        pairs = _draw_block(manifold, strat, delta, src, k, antithetic, rep, reject)
        if not src.qmc and independent and src.block != start + 1:
            raise RuntimeError(f"{manifold!r} redrew pairs but does not declare has_boundary: its blocks are "
                               "not independent")
        yield index, pairs if tangents else replace(pairs, v=None)


def _block_plan(manifold, n, delta, strategy, antithetic, qmc, seed, qmc_replicates, owns, scramble_seed):
    """Checked arguments and the blocks of the stream: ``(index, source, units, replicate)`` for each block
    of the sources ``owns`` picks, the source positioned to draw that block (:func:`gammalimit.blocks.block_plan`;
    see :func:`iter_blocks`)."""
    manifold = check_manifold(manifold)
    delta = check_delta(manifold, delta)
    check_count(n, "n", minimum=2)
    strat = get_strategy(strategy)
    seed = check_seed(seed)
    if scramble_seed is not None:
        if not qmc:
            raise ValueError(f"scramble_seed re-uses scrambled Sobol sequences: it needs qmc=True, got "
                             f"scramble_seed={scramble_seed!r} with qmc=False")
        scramble_seed = check_seed(scramble_seed, "scramble_seed")
    if hasattr(manifold, "pairs_from_cube"):
        if antithetic:
            raise ValueError(f"antithetic pairs (v and -v) need an exponential map; {manifold!r} has none: "
                             "use antithetic=False")
        dim = manifold.cube_dim(strat)
    else:
        dim = manifold.dim + tangent_cube_dim(manifold.dim) + strat.cube_dim
    block = block_size(manifold) // (2 if antithetic else 1)
    if qmc:
        check_count(qmc_replicates, "qmc_replicates", minimum=2)
    plan = block_plan(n, dim, block, antithetic=antithetic, qmc=qmc, seed=seed, qmc_replicates=qmc_replicates,
                      owns=owns, independent=not getattr(manifold, "has_boundary", False), scramble_seed=scramble_seed)
    return manifold, delta, strat, plan


def _chart_sample(manifold, n, delta, strategy, antithetic, qmc, seed, qmc_replicates, scramble_seed,
                  tangents) -> PairSample:
    """:func:`sample_pairs` on a manifold that draws pairs in its chart and has no boundary: the cube
    points of every block first, then one call of ``pairs_in_chart``. The pairs are those of the
    blocks joined (:meth:`PairSample.concat`), without rendering and copying block by block."""
    manifold, delta, strat, plan = _block_plan(manifold, n, delta, strategy, antithetic, qmc, seed,
                                               qmc_replicates, None, scramble_seed)
    u, reps = [], []
    for _, src, k, rep in plan:
        u.append(src.draw(k))
        reps.append(torch.full((k,), rep, dtype=torch.long))
    fields, _ = _pairs_from_cube(manifold, strat, delta, torch.cat(u), antithetic, tangents)
    rep = torch.cat(reps)
    return PairSample(*fields, delta, antithetic, torch.cat([rep, rep]) if antithetic else rep, 0)


def sample_pairs(manifold, n: int, delta: float, *, strategy="shell", antithetic: bool = False,
                 qmc: bool = False, seed: int = 0, qmc_replicates: int = 8, reject: bool = True,
                 scramble_seed: int | None = None, tangents: bool = True) -> PairSample:
    """Draw ``n`` pairs at scale ``delta`` (docs/theory.md, section 2).

    Parameters
    ----------
    manifold : Manifold or PointCloud
        ``TypeError`` for anything else (a name: build it with
        :func:`gammalimit.manifolds.make_manifold`).
    n : int, >= 2
        Number of pairs (rounded up to even with ``antithetic``).
    delta : float
        Scale, ``0 < delta < manifold.injectivity_radius``.
    strategy : {"shell", "ball"} or strategy object
        Radial law of ``r``.
    antithetic : bool
        Pair each direction ``v`` with ``-v`` at the same ``x`` and ``r``.
    qmc : bool
        Scrambled Sobol points (``scipy.stats.qmc``) instead of pseudo-random;
        ``n`` must then be ``qmc_replicates * 2^k`` (times 2 with
        ``antithetic``), or ``ValueError`` names the nearest valid ``n``:
        exactly ``n`` pairs come back, never a rounded count.
    seed : int
    qmc_replicates : int
        Independent scramblings for QMC (their spread gives the error).
    reject : bool, default True
        On a manifold with boundary, redraw pairs that leave it. With
        ``False`` every candidate is returned (``y`` may lie outside ``M``) and
        ``inside`` marks the ones the sampler would keep: the same candidates
        then give both the sampler's law and ``mu``, which estimates the
        boundary bias ``E_sampler[f] - E_mu[f]`` with little noise.
    scramble_seed : int, optional
        With ``qmc``: keep the Sobol sequences scrambled by ``scramble_seed``
        (once per process) and re-randomise them by a random digital shift
        drawn from ``seed`` (:class:`~gammalimit.blocks.CubeSource`); each
        draw is still a balanced, unbiased randomised QMC sample. For a
        caller that draws many batches (a trainer: new ``seed`` every step,
        the same ``scramble_seed``): it saves building two scipy engines per
        draw. Default: each draw scrambled afresh by ``seed``.
    tangents : bool, default True
        Return each pair's unit tangent ``v``; ``False`` returns ``v = None``,
        and an image manifold without boundary, which draws in its chart, then
        does not render it (its ``d render``; elsewhere ``v`` is computed, as
        the exponential map needs it, and dropped): for a caller that needs
        only ``x``, ``y``, the midpoint and ``d`` (a trainer).

    Returns
    -------
    PairSample
        ``x, y, midpoint`` ``shape=[n, ambient_dim]``, ``dist, r`` ``shape=[n]``,
        ``v`` ``shape=[n, ambient_dim]`` (or ``None``). With ``antithetic``, pair
        ``i + n/2`` is pair ``i`` with ``-v``.
    """
    if reject and hasattr(manifold, "pairs_in_chart") and not manifold.has_boundary:
        return _chart_sample(manifold, n, delta, strategy, antithetic, qmc, seed, qmc_replicates, scramble_seed,
                             tangents)
    return PairSample.concat(list(iter_pairs(manifold, n, delta, strategy=strategy, antithetic=antithetic,
                                             qmc=qmc, seed=seed, qmc_replicates=qmc_replicates, reject=reject,
                                             scramble_seed=scramble_seed, tangents=tangents)))
