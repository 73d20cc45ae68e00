"""Analytic encoders and their exact losses (docs/theory.md, section 6).

Each closed form here is a plain formula, checked in the tests against the
symbolic derivation (:mod:`gammalimit.symbolic`), against the quadrature of
the functional (:func:`gammalimit.continuum_loss`) and against Monte Carlo
(:func:`gammalimit.discrete_loss`).

Families of encoders, each with its exact ``L``, exact (or quadrature-exact)
``L_delta`` and the minimiser of ``L`` over the family, share one interface
(:class:`EmbeddingFamily`):

- :class:`ScaledIdentityFamily`: ``a id`` on a circle or sphere,
  ``diag(a1 I2, a2 I2)`` on the flat torus;
- :class:`LinearChartFamily`: ``A u + b`` in a flat chart (the isometric
  unrolling of the Swiss roll is :func:`unrolling`);
- :class:`CircleEmbeddingFamily`: a closed curve of length ``ell`` mapped onto
  a round circle of radius ``a ell / (2 pi)`` (:func:`optimal_circle_embedding`).

Beside them: the ``ratio`` penalty's closed forms (:func:`exact_ratio_loss`),
the minimisers of the exact ``L_delta`` (:func:`round_scale_at_delta`,
:func:`clifford_scales_at_delta`), and the isometric coordinates of the flat
manifolds (:func:`flat_coordinates`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .manifolds import Circle, ClosedCurve, FlatTorus, Sphere, SwissRoll, TranslatingBlob
from .manifolds.base import DTYPE
from .sampling import get_strategy


class ScaledIdentity(torch.nn.Module):
    """``phi = a * id`` on the data representation; on the flat torus
    ``phi = diag(a1 I2, a2 I2)`` (one scale per circle factor).

    Parameters
    ----------
    scales : float or sequence of float
        One scale, or one per block of ``block`` ambient coordinates.
    block : int, default 2
        Ambient coordinates per scale when several scales are given.
    """

    def __init__(self, scales, block: int = 2):
        super().__init__()
        s = torch.as_tensor(scales, dtype=torch.float64).reshape(-1)
        self.register_buffer("scales", s)
        self.block = block

    def forward(self, x):
        if self.scales.numel() == 1:
            return self.scales * x
        return x * self.scales.repeat_interleave(self.block).to(x.dtype)


@dataclass(frozen=True)
class ExactLoss:
    """An exact value of ``L_delta`` or ``L``: ``total = distortion + lam * bending``."""

    distortion: float
    bending: float
    lam: float

    @property
    def total(self) -> float:
        return self.distortion + self.lam * self.bending

    def to_dict(self) -> dict:
        return {"total": self.total, "distortion": self.distortion, "bending": self.bending}


def _scales(manifold, scale) -> tuple[float, ...]:
    s = tuple(float(a) for a in np.atleast_1d(scale))
    want = 2 if isinstance(manifold, FlatTorus) else 1
    if len(s) == 1 and want == 2:
        s = s * 2
    if len(s) != want:
        raise ValueError(f"{manifold!r} takes {want} scale(s), got {len(s)}: {scale!r}")
    return s


def scaled_identity(manifold, scale) -> ScaledIdentity:
    """The scaled identity of section 5 for a circle, sphere or flat torus."""
    _check_closed_form_manifold(manifold)
    return ScaledIdentity(_scales(manifold, scale))


def _check_closed_form_manifold(manifold):
    if not isinstance(manifold, (Circle, Sphere, FlatTorus)):
        raise ValueError(f"closed forms exist for Circle, Sphere and FlatTorus, not {manifold!r}")


def _round_shell(a: float, R: float, rho: np.ndarray, delta: float):
    """Per-pair ``(l_D, l_B)`` of ``a * id`` on a round circle/sphere of radius
    ``R`` for pairs at distance ``rho`` (docs/theory.md, section 6), normalised by
    ``delta^4``."""
    s = rho / R
    chord2 = 4 * a**2 * R**2 * np.sin(s / 2) ** 2
    # 1 - cos(s/2) = 2 sin^2(s/4): the left side loses all digits as s -> 0 (6e-10 relative at s = 1e-3)
    return (chord2 - rho**2) ** 2 / delta**4, 4 * a**2 * R**2 * (2 * np.sin(s / 4) ** 2) ** 2 / delta**4


def _torus_shell(scales, radii, rho: np.ndarray, angle: np.ndarray, delta: float):
    """Per-pair ``(l_D, l_B)`` of ``diag(a1 I, a2 I)`` on the flat torus for a
    pair at distance ``rho`` in direction ``angle`` (chart-orthonormal)."""
    steps = (rho * np.cos(angle), rho * np.sin(angle))
    chord2, bend = 0.0, 0.0
    for a, R, t in zip(scales, radii, steps):
        chord2 = chord2 + 4 * a**2 * R**2 * np.sin(t / (2 * R)) ** 2
        bend = bend + 4 * a**2 * R**2 * (2 * np.sin(t / (4 * R)) ** 2) ** 2
    return (chord2 - rho**2) ** 2 / delta**4, bend / delta**4


def exact_discrete_loss(manifold, scale, *, delta: float, lam: float, strategy="shell") -> ExactLoss:
    """Exact ``L_delta`` of the scaled identity on a circle, sphere or flat torus.

    Shell: the closed form of section 5 (circle, sphere), the periodic
    trapezoid rule over the direction angle (torus, 512 nodes: machine
    precision). Ball: Gauss-Legendre over the radial law ``m r^(m-1)``
    (80 nodes, machine precision for these analytic integrands); any
    strategy through its own ``radial_rule``.
    """
    _check_closed_form_manifold(manifold)
    strat = get_strategy(strategy)
    scales = _scales(manifold, scale)
    m = manifold.dim
    r, w = (t.numpy() for t in strat.radial_rule(m, 80))
    rho = delta * r
    if isinstance(manifold, FlatTorus):
        angle = 2 * np.pi * np.arange(512) / 512
        dist, bend = _torus_shell(scales, manifold.radii, rho[:, None], angle[None, :], delta)
        dist, bend = dist.mean(1), bend.mean(1)
    else:
        dist, bend = _round_shell(scales[0], manifold.radius, rho, delta)
    return ExactLoss(float(w @ dist), float(w @ bend), float(lam))


def exact_continuum_loss(manifold, scale, *, lam: float, strategy="shell") -> ExactLoss:
    """Exact Gamma-limit ``L`` of the scaled identity (docs/theory.md, section 6).

    Circle, sphere: ``kappa [(a^2-1)^2 + lam a^2 / (16 R^2)]``; flat torus:
    ``kappa [(3 B1^2 + 3 B2^2 + 2 B1 B2)/8 + (3 lam / 128)(k1 + k2)]``.
    """
    _check_closed_form_manifold(manifold)
    kappa = get_strategy(strategy).kappa(manifold.dim)
    scales = _scales(manifold, scale)
    if isinstance(manifold, FlatTorus):
        (a1, a2), (R1, R2) = scales, manifold.radii
        B1, B2 = a1**2 - 1, a2**2 - 1
        dist = (3 * B1**2 + 3 * B2**2 + 2 * B1 * B2) / 8
        bend = 3 / 128 * (a1**2 / R1**2 + a2**2 / R2**2)
    else:
        a, R = scales[0], manifold.radius
        dist, bend = (a**2 - 1) ** 2, a**2 / (16 * R**2)
    return ExactLoss(kappa * dist, kappa * bend, float(lam))


def exact_ratio_loss(manifold, scale, *, lam: float, delta: float | None = None, strategy="shell") -> ExactLoss:
    """Exact ``L`` (``delta=None``) or ``L_delta`` of ``a id`` on a circle or sphere of
    radius ``R`` under the ``ratio`` penalty (:data:`gammalimit.penalties.PENALTIES`).

    A pair at distance ``rho = delta r`` has chord ``2 a R sin(rho/2R)`` and
    the same bending as under ``squared``, so on the shell
    ``L_delta = (2aR sin(delta/2R)/delta - 1)^2 + lam 4a^2R^2 (1-cos(delta/2R))^2/delta^4``
    (evaluated with ``1 - cos(s/2) = 2 sin^2(s/4)``, accurate to rounding at
    every ``delta``); other strategies average it over their radial rule
    (80 nodes). The limit
    ``L = (a-1)^2 + lam kappa a^2/(16 R^2)``: the ratio distortion's limit
    ``(|Dphi v| - 1)^2`` does not depend on ``r`` (radial weight 1), the
    bending keeps ``kappa = E[r^4]``.
    """
    if not isinstance(manifold, (Circle, Sphere)):
        raise ValueError(f"the ratio closed forms exist for Circle and Sphere, not {manifold!r}")
    strat = get_strategy(strategy)
    a, R = abs(_scales(manifold, scale)[0]), manifold.radius
    if delta is None:
        return ExactLoss((a - 1) ** 2, strat.kappa(manifold.dim) * a**2 / (16 * R**2), float(lam))
    r, w = (t.numpy() for t in strat.radial_rule(manifold.dim, 80))
    rho = delta * r
    dist = (2 * a * R * np.sin(rho / (2 * R)) / rho - 1) ** 2
    # 1 - cos(s/2) = 2 sin^2(s/4): no cancellation at small delta
    bend = 16 * a**2 * R**2 * np.sin(rho / (4 * R)) ** 4 / delta**4
    return ExactLoss(float(w @ dist), float(w @ bend), float(lam))


def optimal_round_scale(radius: float, lam: float) -> float:
    """Minimiser of ``L`` over ``a`` for ``a * id`` on a circle or sphere:
    ``a^2 = 1 - lam / (32 R^2)``, and ``0`` (collapse) for ``lam >= 32 R^2``."""
    return math.sqrt(max(0.0, 1 - lam / (32 * radius**2)))


def optimal_torus_scales(radii, lam: float) -> tuple[float, float]:
    """Minimiser of ``L`` over ``(a1, a2)`` for ``diag(a1 I2, a2 I2)`` on the flat torus.

    ``L`` is a convex quadratic in ``b_i = a_i^2 >= 0`` (docs/theory.md, section 6);
    where the stationary point
    ``b1 = 1 + 3 lam / (256 R2^2) - 9 lam / (256 R1^2)`` (and ``1 <-> 2``)
    is feasible it is the minimiser, otherwise the best point of the faces
    ``b1 = 0`` or ``b2 = 0`` is.
    """
    (R1, R2), lam = (float(x) for x in radii), float(lam)
    k1, k2 = 3 * lam / (128 * R1**2), 3 * lam / (128 * R2**2)

    def value(b1, b2):
        B1, B2 = b1 - 1, b2 - 1
        return (3 * B1**2 + 3 * B2**2 + 2 * B1 * B2) / 8 + k1 * b1 + k2 * b2

    # stationarity: (6 B1 + 2 B2)/8 + k1 = 0, (2 B1 + 6 B2)/8 + k2 = 0; on a face b_j = 0:
    # (6 B_i - 2)/8 + k_i = 0
    B1, B2 = np.linalg.solve([[6 / 8, 2 / 8], [2 / 8, 6 / 8]], [-k1, -k2])
    candidates = [(1 + B1, 1 + B2), (0.0, max(0.0, 4 / 3 - 8 * k2 / 6)), (max(0.0, 4 / 3 - 8 * k1 / 6), 0.0)]
    feasible = [c for c in candidates if min(c) >= 0]
    b1, b2 = min(feasible, key=lambda c: value(*c))
    return math.sqrt(b1), math.sqrt(b2)


def round_scale_at_delta(radius: float, delta: float, lam: float, strategy="shell") -> float:
    """Minimiser over ``a >= 0`` of the exact ``L_delta`` of ``a id`` on a circle of radius ``radius``.

    ``L_delta`` (:func:`exact_discrete_loss`) is a quadratic in ``A = a^2``
    (the chord is ``a`` times that of the identity); three exact values give
    its coefficients, and ``A* = max(0, -q / 2p)``.
    """
    C = Circle(radius)
    f0, f1, f2 = (exact_discrete_loss(C, math.sqrt(A), delta=delta, lam=lam, strategy=strategy).total
                  for A in (0.0, 1.0, 2.0))
    p, q = 0.5 * (f2 - 2 * f1 + f0), 0.5 * (4 * f1 - f2 - 3 * f0)
    return math.sqrt(max(0.0, -q / (2 * p)))


def clifford_scales_at_delta(torus: FlatTorus, delta: float, lam: float, strategy="shell") -> tuple[float, float]:
    """Minimiser over ``(a1, a2)`` of the exact ``L_delta`` of ``diag(a1 I2, a2 I2)`` on the flat torus.

    ``L_delta`` is a quadratic in ``b = (a1^2, a2^2)``: six exact values give
    it, and its stationary point is returned.

    Raises
    ------
    ValueError
        If the stationary point is not in ``b > 0`` (the minimiser is then on a face).
    """
    def f(b1, b2):
        return exact_discrete_loss(torus, (math.sqrt(b1), math.sqrt(b2)), delta=delta, lam=lam,
                                   strategy=strategy).total

    f00, f10, f01, f20, f02, f11 = f(0, 0), f(1, 0), f(0, 1), f(2, 0), f(0, 2), f(1, 1)
    h11, h22 = f20 - 2 * f10 + f00, f02 - 2 * f01 + f00
    h12 = f11 - f10 - f01 + f00
    g = np.array([f10 - f00 - h11 / 2, f01 - f00 - h22 / 2])
    b = np.linalg.solve([[h11, h12], [h12, h22]], -g)
    if b.min() <= 0:
        raise ValueError(f"the stationary point b = {b} of L_delta is not in b > 0 (delta={delta}, lam={lam})")
    return float(math.sqrt(b[0])), float(math.sqrt(b[1]))


def flat_coordinates(manifold, x: torch.Tensor) -> torch.Tensor | None:
    """Global isometric coordinates of a flat manifold, ``shape=[k, 2]`` from
    points ``shape=[k, ambient_dim]``; ``None`` where there are none.

    :class:`SwissRoll`: the unrolling ``(s, h)``; :class:`TranslatingBlob`:
    ``sqrt(g) t`` with ``t`` the blob centres and ``g`` the metric scale.
    As an encoder this is an isometry (``L_delta = L = 0``); on a flat torus or
    a closed curve no global flat chart exists.
    """
    if isinstance(manifold, SwissRoll):
        return manifold.unrolled(x)
    if isinstance(manifold, TranslatingBlob):
        return math.sqrt(manifold.metric_scale) * manifold.centres(x)
    return None


# --------------------------------------------------------------------------
# families of analytic encoders


class EmbeddingFamily(Protocol):
    """A family of encoders with exact losses (docs/theory.md, section 6)."""

    manifold: object

    def encoder(self, params) -> torch.nn.Module:
        """The encoder with these parameters."""

    def continuum_loss(self, params, *, lam: float, strategy="shell") -> ExactLoss:
        """Exact ``L``."""

    def discrete_loss(self, params, *, delta: float, lam: float, strategy="shell") -> ExactLoss:
        """Exact (or quadrature-exact) ``L_delta``."""

    def minimiser(self, *, lam: float, strategy="shell"):
        """Parameters minimising ``L`` over the family."""


class ScaledIdentityFamily:
    """``a id`` on a circle or sphere, ``diag(a1 I2, a2 I2)`` on the flat torus.

    ``params`` is a scale or a pair of scales (:func:`scaled_identity`).
    """

    def __init__(self, manifold):
        _check_closed_form_manifold(manifold)
        self.manifold = manifold

    def __repr__(self) -> str:
        return f"ScaledIdentityFamily({self.manifold!r})"

    def encoder(self, params) -> ScaledIdentity:
        return scaled_identity(self.manifold, params)

    def continuum_loss(self, params, *, lam, strategy="shell") -> ExactLoss:
        return exact_continuum_loss(self.manifold, params, lam=lam, strategy=strategy)

    def discrete_loss(self, params, *, delta, lam, strategy="shell") -> ExactLoss:
        return exact_discrete_loss(self.manifold, params, delta=delta, lam=lam, strategy=strategy)

    def minimiser(self, *, lam, strategy="shell") -> tuple[float, ...]:
        """``(a,)`` on a circle or sphere, ``(a1, a2)`` on the torus (``kappa`` does not move it)."""
        if isinstance(self.manifold, FlatTorus):
            return optimal_torus_scales(self.manifold.radii, lam)
        return (optimal_round_scale(self.manifold.radius, lam),)


class ChartLinearMap(torch.nn.Module):
    """``phi(x) = A u(x) + b`` with ``u`` the chart coordinates of ``x`` on ``M``.

    Parameters
    ----------
    manifold : Manifold
        With a flat, non-periodic chart (constant metric), e.g. :class:`SwissRoll`.
    A : array_like, shape=[l, m]
    b : array_like, shape=[l], optional
    """

    def __init__(self, manifold, A, b=None):
        super().__init__()
        A = torch.as_tensor(np.asarray(A, dtype=np.float64), dtype=DTYPE)
        m = manifold.dim
        if A.ndim != 2 or A.shape[1] != m:
            raise ValueError(f"A must have shape (l, {m}) for {manifold!r}, got {tuple(A.shape)}")
        self.manifold = manifold
        self.register_buffer("A", A)
        self.register_buffer("b", torch.zeros(A.shape[0], dtype=DTYPE) if b is None
                             else torch.as_tensor(np.asarray(b, dtype=np.float64), dtype=DTYPE))

    def forward(self, x):
        return self.manifold.chart.inverse(x) @ self.A.T + self.b


def flat_chart_metric(manifold) -> torch.Tensor:
    """The constant metric ``g`` ``shape=[m, m]`` of a flat, non-periodic chart.

    Raises ``ValueError`` if a coordinate is periodic (a linear function of
    an angle is not a function on ``M``) or ``g`` varies over the chart.
    """
    chart = manifold.chart
    if any(chart.periodic):
        raise ValueError(f"{manifold!r} has periodic chart coordinates: linear maps of them are not "
                         "functions on M")
    lo, hi = torch.tensor(chart.lower, dtype=DTYPE), torch.tensor(chart.upper, dtype=DTYPE)
    u = lo + (hi - lo) * torch.tensor([[0.0] * chart.dim, [0.5] * chart.dim, [1.0] * chart.dim,
                                       [0.3, 0.8][: chart.dim] + [0.1] * max(0, chart.dim - 2)], dtype=DTYPE)
    g = chart.metric(u)
    if not torch.allclose(g, g[:1].expand_as(g), rtol=1e-12, atol=1e-14):
        raise ValueError(f"the chart metric of {manifold!r} is not constant: linear maps have H != 0 there")
    return g[0]


class LinearChartFamily:
    """``phi(x) = A u(x) + b`` on a flat chart (docs/theory.md, section 6).

    ``H = 0`` (flat coordinates are geodesic), so
    ``L = kappa (2|B|^2 + (tr B)^2) / (m(m+2))`` with ``B = E^T A^T A E - I``,
    ``E = g^(-1/2)``. Each pair's penalties equal their limits exactly
    (``|phi(y) - phi(x)| = delta r |A c|``, ``phi(av)`` is the midpoint), so
    ``L_delta = L`` for every ``delta`` where pairs are not redrawn; near a
    boundary the sampler's redraws bias the directions, and a Monte Carlo
    ``L_delta`` of an anisotropic ``B`` differs by ``O(delta)``.
    ``params`` is ``A`` (``shape=[l, m]``).
    """

    def __init__(self, manifold):
        self.manifold = manifold
        self.metric = flat_chart_metric(manifold)

    def __repr__(self) -> str:
        return f"LinearChartFamily({self.manifold!r})"

    def encoder(self, params, b=None) -> ChartLinearMap:
        return ChartLinearMap(self.manifold, params, b)

    def distortion(self, params) -> torch.Tensor:
        """``B = E^T A^T A E - I`` ``shape=[m, m]``, ``E = g^(-1/2)``."""
        A = torch.as_tensor(np.asarray(params, dtype=np.float64), dtype=DTYPE)
        w, V = torch.linalg.eigh(self.metric)
        E = V @ torch.diag(w**-0.5) @ V.T
        return E.T @ A.T @ A @ E - torch.eye(self.manifold.dim, dtype=DTYPE)

    def continuum_loss(self, params, *, lam, strategy="shell") -> ExactLoss:
        m = self.manifold.dim
        B = self.distortion(params)
        value = (2 * float((B**2).sum()) + float(torch.trace(B)) ** 2) / (m * (m + 2))
        return ExactLoss(get_strategy(strategy).kappa(m) * value, 0.0, float(lam))

    def discrete_loss(self, params, *, delta, lam, strategy="shell") -> ExactLoss:
        """Equal to :meth:`continuum_loss` for every ``delta`` (no boundary redraws)."""
        return self.continuum_loss(params, lam=lam, strategy=strategy)

    def minimiser(self, *, lam, strategy="shell") -> torch.Tensor:
        """An isometric ``A = g^(1/2)`` (``L = 0``; any ``Q g^(1/2)``, ``Q`` orthogonal, is one too)."""
        w, V = torch.linalg.eigh(self.metric)
        return V @ torch.diag(w**0.5) @ V.T


def unrolling(manifold) -> ChartLinearMap:
    """The isometric unrolling ``phi(x) = u(x)`` of a flat manifold with ``g = I``
    (the Swiss roll's ``(s, h)``): ``L_delta = L = 0`` for every ``delta``."""
    family = LinearChartFamily(manifold)
    if not torch.allclose(family.metric, torch.eye(manifold.dim, dtype=DTYPE), rtol=1e-12, atol=1e-14):
        raise ValueError(f"the chart of {manifold!r} is flat but not isometric (g != I)")
    return family.encoder(torch.eye(manifold.dim, dtype=DTYPE))


class CircleEmbedding(torch.nn.Module):
    """A closed curve of length ``ell`` onto the round circle of radius ``a ell / (2 pi)``:
    ``phi(x) = a rho (cos(s/rho), sin(s/rho))``, ``rho = ell / (2 pi)``, ``s`` the
    arclength coordinate of ``x``.

    ``phi o X`` is ``a id`` of the intrinsic circle of radius ``rho``, so its
    losses are those of the scaled identity on ``Circle(rho)``, whatever the
    curve looks like in the data space. The curve parameter of ``x`` is the
    curve's own :meth:`~ClosedCurve.parameter_of` (held constant) refined by
    two Newton steps on ``<c(t) - x, c'(t)> = 0``: from a converged start
    they carry the implicit function's derivatives exactly up to third order.

    Parameters
    ----------
    curve : ClosedCurve
    scale : float
    """

    def __init__(self, curve: ClosedCurve, scale: float):
        super().__init__()
        if not isinstance(curve, ClosedCurve):
            raise TypeError(f"curve must be a ClosedCurve, got {type(curve).__name__}")
        self.curve = curve
        self.scale = float(scale)
        self.rho = curve.length / (2 * math.pi)

    def parameter(self, x):
        """Curve parameter ``t`` of points on the curve, ``shape=[k]``, differentiable in ``x``."""
        return self.curve.differentiable_parameter(x, newton_steps=2)

    def forward(self, x):
        angle = self.curve.sigma_of_t(self.parameter(x)) / self.rho
        return self.scale * self.rho * torch.stack([torch.cos(angle), torch.sin(angle)], -1)


class CircleEmbeddingFamily:
    """Round-circle embeddings of a closed curve (docs/theory.md, section 6): ``params`` is ``a``."""

    def __init__(self, curve: ClosedCurve):
        if not isinstance(curve, ClosedCurve):
            raise TypeError(f"curve must be a ClosedCurve, got {type(curve).__name__}")
        self.manifold = curve
        self.intrinsic = Circle(curve.length / (2 * math.pi))

    def __repr__(self) -> str:
        return f"CircleEmbeddingFamily({self.manifold!r})"

    def encoder(self, params) -> CircleEmbedding:
        return CircleEmbedding(self.manifold, float(np.asarray(params).reshape(-1)[0]))

    def continuum_loss(self, params, *, lam, strategy="shell") -> ExactLoss:
        return exact_continuum_loss(self.intrinsic, params, lam=lam, strategy=strategy)

    def discrete_loss(self, params, *, delta, lam, strategy="shell") -> ExactLoss:
        return exact_discrete_loss(self.intrinsic, params, delta=delta, lam=lam, strategy=strategy)

    def minimiser(self, *, lam, strategy="shell") -> tuple[float]:
        """``a^2 = 1 - lam (2 pi)^2 / (32 ell^2)``."""
        return (optimal_round_scale(self.intrinsic.radius, lam),)


def optimal_circle_embedding(curve: ClosedCurve, lam: float) -> CircleEmbedding:
    """The round-circle embedding of ``curve`` that minimises ``L``: radius
    ``a ell / (2 pi)`` with ``a^2 = 1 - lam (2 pi)^2 / (32 ell^2)``."""
    family = CircleEmbeddingFamily(curve)
    return family.encoder(family.minimiser(lam=lam)[0])
