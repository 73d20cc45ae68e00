"""The manifold protocol and the small helpers every family shares.

A data manifold ``M`` (docs/theory.md, section 1) is an ``m``-dimensional Riemannian
manifold given as a subset of an ambient space ``R^n``. Points and tangent
vectors are ambient vectors, batched over the first axis, in torch float64.

Every family implements :class:`Manifold` directly (no deeper inheritance) and
provides a :class:`Chart` for quadrature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch

from ..validation import check_count, check_positive  # noqa: F401  (the families import them from here)

DTYPE = torch.float64


@dataclass(frozen=True)
class Chart:
    """A parametrisation ``X: U -> M`` with ``U`` a box in ``R^m``.

    Attributes
    ----------
    embed : callable
        ``X``, maps chart points ``shape=[k, m]`` to ambient points
        ``shape=[k, n]``. Differentiable with ``torch.func``.
    lower, upper : tuple of float, each of length m
        The box ``U = prod [lower_i, upper_i]``.
    periodic : tuple of bool, length m
        Whether coordinate ``i`` is periodic with period ``upper_i - lower_i``
        (quadrature then uses the trapezoid rule, otherwise Gauss-Legendre).
    metric : callable
        ``g_ij(u)``, chart points ``shape=[k, m]`` to ``shape=[k, m, m]``: the
        manifold's own metric (for image manifolds the exact continuum metric,
        not the Gram matrix of the discretised ``embed``).
    inverse : callable
        Ambient points on ``M`` ``shape=[k, n]`` to chart points ``shape=[k, m]``.
    volume : float
        Riemannian volume of ``M``, ``int_U sqrt(det g) du``.
    """

    embed: Callable[[torch.Tensor], torch.Tensor]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    periodic: tuple[bool, ...]
    metric: Callable[[torch.Tensor], torch.Tensor]
    inverse: Callable[[torch.Tensor], torch.Tensor]
    volume: float

    @property
    def dim(self) -> int:
        return len(self.lower)

    def volume_weight(self, u: torch.Tensor) -> torch.Tensor:
        """``sqrt(det g(u))``, ``shape=[k]`` for ``u`` of ``shape=[k, m]``."""
        return torch.sqrt(torch.linalg.det(self.metric(u)))

    def contains(self, u: torch.Tensor) -> torch.Tensor:
        """Whether chart points lie in the closed box, ``shape=[k]`` bool."""
        lo = torch.tensor(self.lower, dtype=u.dtype, device=u.device)
        hi = torch.tensor(self.upper, dtype=u.dtype, device=u.device)
        return ((u >= lo) & (u <= hi)).all(dim=-1)

    def check_domain(self, u: torch.Tensor) -> None:
        """Raise ``ValueError`` if a non-periodic coordinate leaves the box."""
        fixed = [i for i, p in enumerate(self.periodic) if not p]
        if not fixed:
            return
        lo = torch.tensor(self.lower, dtype=u.dtype, device=u.device)[fixed]
        hi = torch.tensor(self.upper, dtype=u.dtype, device=u.device)[fixed]
        uf = u[..., fixed]
        bad = ~((uf >= lo) & (uf <= hi)).all(dim=-1)
        if not torch.isfinite(u).all():
            raise ValueError("chart points contain non-finite values")
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(
                f"{int(bad.sum())} chart point(s) outside the chart domain "
                f"{list(zip(self.lower, self.upper))}; first: {u[i].tolist()}"
            )


@runtime_checkable
class Manifold(Protocol):
    """What a data manifold provides. See docs/theory.md, section 1.

    Attributes
    ----------
    dim : int
        Intrinsic dimension ``m``.
    ambient_dim : int
        Dimension ``n`` of the ambient space the points live in.
    injectivity_radius : float
        Pairs at distance below it are joined by a unique minimising geodesic.
    has_boundary : bool
        Whether ``M`` has a boundary; pairs leaving ``M`` are then rejected by
        the sampler (docs/theory.md, section 5).
    chart : Chart
        A parametrisation for quadrature.
    """

    dim: int
    ambient_dim: int
    injectivity_radius: float
    has_boundary: bool
    chart: Chart

    def point_from_cube(self, u: torch.Tensor) -> torch.Tensor:
        """Map uniform points of ``[0,1)^m`` ``shape=[k, m]`` to points of ``M``
        distributed by the normalised volume ``mu``, ``shape=[k, n]``."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` points drawn from ``mu``, ``shape=[n, ambient_dim]``."""

    def tangent_frame(self, x: torch.Tensor) -> torch.Tensor:
        """A ``g``-orthonormal frame of ``T_x M`` as ambient vectors,
        ``shape=[k, ambient_dim, dim]``."""

    def random_unit_tangent(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Directions uniform on the unit sphere of ``(T_x M, g)``,
        ``shape=[k, ambient_dim]``."""

    def exp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Exponential map ``exp_x(v)``, ``v`` tangent at ``x``; both
        ``shape=[k, ambient_dim]``."""

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Geodesic distance ``d(x, y)``, ``shape=[k]``."""

    def midpoint(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Riemannian average ``av(x, y)`` (geodesic midpoint), ``shape=[k, n]``."""

    def contains(self, x: torch.Tensor, atol: float = 1e-9) -> torch.Tensor:
        """Whether ambient points lie on ``M``, ``shape=[k]`` bool."""


# --------------------------------------------------------------------------
# shared helpers


def as_points(x, ambient_dim: int, name: str = "x") -> torch.Tensor:
    """Validate and convert ambient points to float64 ``shape=[k, ambient_dim]``."""
    x = torch.as_tensor(x, dtype=DTYPE)
    if x.ndim != 2 or x.shape[1] != ambient_dim:
        raise ValueError(
            f"{name} must have shape (k, {ambient_dim}), got {tuple(x.shape)}"
        )
    return x


def unit_vector_from_cube(u: torch.Tensor, m: int) -> torch.Tensor:
    """Map uniform cube points to uniform unit vectors of ``R^m``.

    Uses ``tangent_cube_dim(m)`` coordinates: a sign for ``m = 1``, an angle
    for ``m = 2`` (smooth in ``u``, which QMC needs), normalised Gaussians from
    the inverse normal CDF otherwise.

    Parameters
    ----------
    u : tensor, shape=[k, tangent_cube_dim(m)]

    Returns
    -------
    tensor, shape=[k, m]
    """
    if m == 1:
        return torch.where(u[:, :1] < 0.5, -1.0, 1.0).to(u.dtype)
    if m == 2:
        a = 2 * math.pi * u[:, 0]
        return torch.stack([torch.cos(a), torch.sin(a)], dim=-1)
    eps = torch.finfo(u.dtype).tiny
    z = math.sqrt(2) * torch.erfinv(2 * u.clamp(eps, 1 - 1e-16) - 1)
    return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)


def tangent_cube_dim(m: int) -> int:
    """Number of uniform coordinates :func:`unit_vector_from_cube` consumes."""
    return 1 if m <= 2 else m


def random_unit_tangent(manifold, x: torch.Tensor, generator=None) -> torch.Tensor:
    """Uniform unit tangent vectors at ``x`` via the manifold's frame."""
    u = torch.rand(x.shape[0], tangent_cube_dim(manifold.dim), generator=generator, dtype=x.dtype)
    c = unit_vector_from_cube(u, manifold.dim)
    return torch.einsum("kni,ki->kn", manifold.tangent_frame(x), c)


def sample(manifold, n: int, generator=None) -> torch.Tensor:
    """``n`` points from ``mu`` via the manifold's ``point_from_cube``."""
    check_count(n)
    return manifold.point_from_cube(torch.rand(n, manifold.dim, generator=generator, dtype=DTYPE))


# circle arithmetic shared by Circle, FlatTorus and ClosedCurve


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    """Angles mapped to ``[-pi, pi)``."""
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def circle_point(radius: float, angle: torch.Tensor) -> torch.Tensor:
    """``radius (cos a, sin a)``, ``shape=[k, 2]``."""
    return radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)


def circle_tangent(angle: torch.Tensor) -> torch.Tensor:
    """Unit tangent ``(-sin a, cos a)``, ``shape=[k, 2]``."""
    return torch.stack([-torch.sin(angle), torch.cos(angle)], dim=-1)


def circle_angle(x: torch.Tensor) -> torch.Tensor:
    """Polar angle of planar points ``shape=[k, 2]``, ``shape=[k]``."""
    return torch.atan2(x[:, 1], x[:, 0])


def circle_angle_between(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unsigned angle between planar vectors, accurate for tiny angles."""
    cross = x[:, 0] * y[:, 1] - x[:, 1] * y[:, 0]
    dot = (x * y).sum(-1)
    return torch.atan2(cross.abs(), dot)
