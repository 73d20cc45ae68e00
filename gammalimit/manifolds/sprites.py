"""A procedurally rendered sprite with four factors and exactly known flat geometry (issue 14).

The sprite is a "plus": two crossed anisotropic Gaussians,

    f(q) = exp(-q1^2/(2 s1^2) - q2^2/(2 s2^2)) + exp(-q1^2/(2 s2^2) - q2^2/(2 s1^2)),   s1 > s2,

moved, turned and scaled on the unit square (stored as in :mod:`.images`: ``h u(p_ij)``):

    u(p) = f(R(theta)^T (p - (1/2, 1/2) - t) / s).

Factors: position ``t`` (2), rotation ``theta``, scale ``s``. The continuum
``L^2`` pull-back metric in these factors is (``q`` integrals over ``R^2``)

    g = diag(m, m, a s^2, b),   m = int (d_1 f)^2,  a = int (grad f . J q)^2,  b = int (grad f . q)^2,

``J`` the quarter turn. Why: the translation block is ``R M R^T`` with
``M = int grad f grad f^T``, isotropic (``m I``) because ``f`` has four-fold
symmetry, and independent of ``s`` in two dimensions; the scale speed
``int (grad f . q)^2 / s^2`` times the area ``s^2`` is ``b``; the rotation
speed is ``s^2 a``; every cross term vanishes because ``f`` is even and
symmetric under ``q2 -> -q2``. So the metric is **not** ``c I`` in the factors:
``(s, theta)`` carries ``b ds^2 + a s^2 dtheta^2``, a flat cone. With

    w = k s (cos(alpha theta), sin(alpha theta)),   k = sqrt(b/m),  alpha = sqrt(a/b),

it is ``m (dw1^2 + dw2^2)``: in the chart ``(t1, t2, w1, w2)`` the metric is
``g = m I``, and the chart's domain, a box away from ``w = 0`` and inside the
wedge ``|alpha theta| < alpha pi/4`` (the plus repeats after a quarter turn), is
convex. The manifold is therefore a flat box of ``R^4``, the geometry that
:class:`~.image_base.ImageManifold` assumes: ``d = sqrt(m) |chart step|``, ``av``
the sprite at the mean chart point. Its injectivity radius, the bound on the
pair scale, is the smaller of half the box's shortest side and the distance from
the box to its copy turned by ``alpha pi/2`` (the same images: a step that long
could leave the box and land on ``M`` again, where :meth:`contains` cannot see
that it left). An ``angle`` close to ``pi/4`` brings the copy close: the
sprites turned by ``+angle`` and ``-angle`` then nearly coincide (a quarter
turn apart). ``m, a, b`` are computed once by the trapezoid rule on a fine grid
over ``R^2`` (spectrally accurate for Gaussians: round-off level).

Discretisation error: the pixel quadrature, ``~ exp(-(pi s2 s N)^2)``, and the
tails cut off by the border; :meth:`Sprite.metric_discretisation_error`
measures the relative deviation of the rendered Jacobian's Gram matrix from
``m I`` (module docstring of :mod:`.images`).
"""

from __future__ import annotations

import math

import torch

from ..validation import check_real, check_reals
from .base import DTYPE, as_points, check_positive
from .image_base import ImageManifold, check_sigma, pixel_centres

# Gauss-Newton steps of the inverse chart from the moment estimate, at most; it stops after a step
# below _GAUSS_NEWTON_TOL (quadratic convergence on M: the next step would be ~ tol^2, round-off)
_GAUSS_NEWTON_STEPS = 8
_GAUSS_NEWTON_TOL = 1e-9
# images per Gauss-Newton solve: the Jacobian of a block stays in cache
_BLOCK = 256


def _plus(q1: torch.Tensor, q2: torch.Tensor, s1: float, s2: float) -> torch.Tensor:
    return (torch.exp(-0.5 * ((q1 / s1) ** 2 + (q2 / s2) ** 2))
            + torch.exp(-0.5 * ((q1 / s2) ** 2 + (q2 / s1) ** 2)))


def plus_metric_constants(s1: float, s2: float) -> tuple[float, float, float]:
    """``(m, a, b)`` of the plus ``f`` (module docstring) by the trapezoid rule on
    ``[-10 s1, 10 s1]^2`` with spacing ``s2 / 8``: the integrands are smooth and
    decay like Gaussians, so the rule is accurate to round-off."""
    L, h = 10 * s1, s2 / 8
    q = torch.arange(-math.ceil(L / h), math.ceil(L / h) + 1, dtype=DTYPE) * h
    Q1, Q2 = torch.meshgrid(q, q, indexing="ij")
    g1 = torch.exp(-0.5 * ((Q1 / s1) ** 2 + (Q2 / s2) ** 2))
    g2 = torch.exp(-0.5 * ((Q1 / s2) ** 2 + (Q2 / s1) ** 2))
    f1 = -(g1 / s1**2 + g2 / s2**2) * Q1
    f2 = -(g1 / s2**2 + g2 / s1**2) * Q2
    integral = lambda F: float(F.sum()) * h * h  # noqa: E731
    return integral(f1 * f1), integral((f2 * Q1 - f1 * Q2) ** 2), integral((f1 * Q1 + f2 * Q2) ** 2)


class Sprite(ImageManifold):
    """A plus-shaped sprite moved, turned and scaled: a flat box, ``m = 4``
    (module docstring for the geometry and the chart).

    Chart ``(t1, t2, w1, w2)``: ``t`` in ``[-shift, shift]^2`` (the offset of
    the centre from the middle of the image), ``w1`` in ``[k s_lo, k s_hi]``,
    ``w2`` in ``[-W, W]`` with ``W = k s_lo tan(alpha angle)``: at the smallest
    scale the sprite turns by ``+-angle``, and its scale runs from ``s_lo`` to
    ``sqrt(s_hi^2 + (s_lo tan(alpha angle))^2)`` at the corners. ``g = m I``.

    Parameters
    ----------
    n_pixels : int, default 64
    sigmas : pair of float, optional
        Arm length and width ``s1 > s2`` at scale 1; default ``(1.6 w, w)``
        with ``w = max(2/64, 1/N)`` (two pixels at ``N = 64``, one pixel on
        coarser grids); ``s2 * s_lo`` must span a pixel.
    scales : pair of float, default (1.0, 1.5)
    angle : float, default 0.5
        Half-range of the turn, in ``(0, pi/4)`` (the plus repeats after a quarter turn;
        near ``pi/4`` the injectivity radius shrinks, module docstring).
    shift : float, default 0.05
        Half-side of the square of centres; the border must stay at least
        ``3 s1 s_max`` from the centre.
    """

    dim = 4
    has_boundary = True

    def __init__(self, n_pixels: int = 64, sigmas=None, scales=(1.0, 1.5), angle: float = 0.5, shift: float = 0.05):
        super().__init__(n_pixels)
        if sigmas is None:
            w = max(2 / 64, 1 / self.n_pixels)
            sigmas = (1.6 * w, w)
        s1, s2 = check_reals(sigmas, "sigmas", 2, minimum=0.0, what="(s1, s2)")
        s_lo, s_hi = check_reals(scales, "scales", 2, minimum=0.0, what="(s_lo, s_hi)")
        if not s1 > s2:
            raise ValueError(f"sigmas must satisfy s1 > s2 (a plus with long arms), got {sigmas!r}")
        if not s_hi > s_lo:
            raise ValueError(f"scales must satisfy s_lo < s_hi, got {scales!r}")
        check_sigma(s2 * s_lo, "sigmas[1] * scales[0]", self.n_pixels, 0.25, "(the arm's width)")
        self.angle = check_real(angle, "angle", minimum=0.0)
        if self.angle >= math.pi / 4:
            raise ValueError(f"angle must lie in (0, pi/4) (the plus repeats after a quarter turn), got {angle!r}")
        self.shift = check_positive(shift, "shift")
        self.sigmas, self.scales = (s1, s2), (s_lo, s_hi)
        m, a, b = plus_metric_constants(s1, s2)
        self.metric_scale, self.k, self.alpha = m, math.sqrt(b / m), math.sqrt(a / b)
        W = self.k * s_lo * math.tan(self.alpha * self.angle)
        self.max_scale = math.hypot(s_hi, s_lo * math.tan(self.alpha * self.angle))
        self.margin = (0.5 - self.shift) / (s1 * self.max_scale)
        if self.margin < 3:
            raise ValueError(f"the sprite does not fit: the border is {self.margin:.3g} arm lengths from the "
                             f"farthest centre at the largest scale (at least 3 needed); lower shift, "
                             f"scales or sigmas")
        lower = (-self.shift, -self.shift, self.k * s_lo, -W)
        upper = (self.shift, self.shift, self.k * s_hi, W)
        sides = [u - l for l, u in zip(lower, upper)]
        # The box turned by alpha pi/2 about w = 0 renders the same images (a quarter turn of the
        # plus). Its distance from the box is at least k s_lo sin(alpha (pi/2 - 2 angle)) (two
        # wedges at that angle, radii >= k s_lo), which also keeps w = 0 away. A step shorter than
        # that cannot land on the copy, so `contains` sees every step that leaves the box.
        gap = self.alpha * (math.pi / 2 - 2 * self.angle)  # the angle between the wedges in the w-plane
        self.alias_distance = math.sqrt(m) * self.k * s_lo * math.sin(min(gap, math.pi / 2))
        self.injectivity_radius = min(0.5 * math.sqrt(m) * min(sides), self.alias_distance)
        self.chart = self._chart(lower, upper, volume=m**2 * math.prod(sides))
        p = pixel_centres(self.n_pixels) - 0.5
        P = torch.cartesian_prod(p, p)
        q = pixel_centres(4 * self.n_pixels) - 0.5  # the second moment of f at scale 1, on a fine grid
        Q1, Q2 = torch.meshgrid(q, q, indexing="ij")
        f = _plus(Q1, Q2, s1, s2)
        self._r2_at_scale_one = float((f * (Q1**2 + Q2**2)).sum() / f.sum())
        self._p1, self._p2 = P[:, 0], P[:, 1]

    def __repr__(self) -> str:
        return (f"Sprite(n_pixels={self.n_pixels}, sigmas={self.sigmas}, scales={self.scales}, "
                f"angle={self.angle}, shift={self.shift})")

    def factors(self, u: torch.Tensor) -> torch.Tensor:
        """Chart points ``(t1, t2, w1, w2)`` to factors ``(t1, t2, theta, s)``, ``shape=[k, 4]``."""
        theta = torch.atan2(u[:, 3], u[:, 2]) / self.alpha
        s = torch.linalg.vector_norm(u[:, 2:], dim=-1) / self.k
        return torch.stack([u[:, 0], u[:, 1], theta, s], -1)

    def chart_of_factors(self, f: torch.Tensor) -> torch.Tensor:
        """Factors ``(t1, t2, theta, s)`` to chart points, ``shape=[k, 4]``."""
        phi = self.alpha * f[:, 2]
        return torch.stack([f[:, 0], f[:, 1], self.k * f[:, 3] * torch.cos(phi), self.k * f[:, 3] * torch.sin(phi)], -1)

    def render(self, u: torch.Tensor) -> torch.Tensor:
        """Sprite images at chart points ``u`` ``shape=[k, 4]``, ``shape=[k, N^2]``
        (any ``u`` with ``w != 0``; differentiable by ``torch.func``)."""
        u = u.to(DTYPE) if isinstance(u, torch.Tensor) else torch.as_tensor(u, dtype=DTYPE)
        q1, q2, _ = self._local(u)
        return self.h * _plus(q1, q2, *self.sigmas)

    def _local(self, u: torch.Tensor):
        """The sprite's own coordinates ``q = R(theta)^T (p - t) / s`` of every pixel,
        ``q1, q2`` ``shape=[k, N^2]``, and the factors ``shape=[k, 4]``."""
        f = self.factors(u)
        c, s_ = torch.cos(f[:, 2:3]), torch.sin(f[:, 2:3])
        d1, d2 = self._p1 - f[:, 0:1], self._p2 - f[:, 1:2]
        return (c * d1 + s_ * d2) / f[:, 3:4], (-s_ * d1 + c * d2) / f[:, 3:4], f

    def _local_in_place(self, u: torch.Tensor):
        """:meth:`_local` in fewer passes over the pixels (no autodiff: the sampler and the
        Jacobian), with the two Gaussians ``g1, g2`` of the plus, each ``shape=[k, N^2]``."""
        f = self.factors(as_points(u, 4, "u"))
        c, sn, s = torch.cos(f[:, 2:3]), torch.sin(f[:, 2:3]), f[:, 3:4]
        d1, d2 = self._p1 - f[:, 0:1], self._p2 - f[:, 1:2]
        q1 = torch.mul(d1, c / s).addcmul_(d2, sn / s)
        q2 = d2.mul_(c / s).addcmul_(d1, -sn / s)
        a, b = q1 * q1, q2 * q2
        s1, s2 = self.sigmas
        g1 = torch.mul(a, -0.5 / s1**2).add_(b, alpha=-0.5 / s2**2).exp_()
        g2 = a.mul_(-0.5 / s2**2).add_(b, alpha=-0.5 / s1**2).exp_()
        return q1, q2, g1, g2, f

    def _render_samples(self, u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``render(u)`` for the sampler, in place (no autodiff), ``shape=[k, N^2]``; in ``out`` if given."""
        _, _, g1, g2, _ = self._local_in_place(u)
        return g1.add_(g2).mul_(self.h) if out is None else torch.add(g1, g2, out=out).mul_(self.h)

    def point_from_cube(self, u):
        """Uniform in the chart box (``g`` is constant), rendered without autodiff."""
        lo, hi = self._box()
        return self._render_samples(lo + (hi - lo) * u)

    def _render_and_jacobian(self, u: torch.Tensor):
        """``render(u)`` and ``d render / d u`` ``shape=[k, N^2, 4]`` in closed form.

        With ``F = h grad f(q)``: ``d/dt = -F . R^T e_i / s``, ``d/dtheta = F . (q2, -q1)``,
        ``d/ds = -F . q / s`` (module docstring), then the chain rule through
        ``theta = arg(w) / alpha``, ``s = |w| / k``. The Jacobian is a view of a
        ``shape=[k, 4, N^2]`` tensor."""
        u = as_points(u, 4, "u")
        q1, q2, g1, g2, f = self._local_in_place(u)
        s1, s2 = self.sigmas
        h = self.h
        F1 = torch.mul(g1, -h / s1**2).add_(g2, alpha=-h / s2**2).mul_(q1)
        F2 = torch.mul(g1, -h / s2**2).add_(g2, alpha=-h / s1**2).mul_(q2)
        c, sn, s = torch.cos(f[:, 2:3]), torch.sin(f[:, 2:3]), f[:, 3:4]
        w1, w2 = u[:, 2:3], u[:, 3:4]
        r2 = w1 * w1 + w2 * w2
        r = torch.sqrt(r2)
        # d/dtheta = F1 q2 - F2 q1 (turn), d/ds = -(F1 q1 + F2 q2) / s (radial)
        turn = torch.mul(F1, q2).addcmul_(F2, q1, value=-1.0)
        radial = q1.mul_(F1).addcmul_(F2, q2)
        J = torch.empty(u.shape[0], 4, q1.shape[1], dtype=DTYPE)
        torch.mul(F1, -c / s, out=J[:, 0]).addcmul_(F2, sn / s)
        torch.mul(F1, -sn / s, out=J[:, 1]).addcmul_(F2, -c / s)
        torch.mul(turn, -w2 / (self.alpha * r2), out=J[:, 2]).addcmul_(radial, -w1 / (self.k * r * s))
        torch.mul(turn, w1 / (self.alpha * r2), out=J[:, 3]).addcmul_(radial, -w2 / (self.k * r * s))
        return g1.add_(g2).mul_(h), J.transpose(1, 2)

    def jacobian(self, u: torch.Tensor) -> torch.Tensor:
        """``d render / d u`` (pixel-weighted) in closed form, ``shape=[k, N^2, 4]``."""
        return self._render_and_jacobian(u)[1]

    def _render_and_frame(self, u: torch.Tensor):
        x, J = self._render_and_jacobian(u)
        return x, J / math.sqrt(self.metric_scale)

    def _moments(self, x: torch.Tensor) -> torch.Tensor:
        """Factor estimates from moments: centroid, ``arg(int u z^4) / 4``, and
        ``s`` from ``int u |p - c|^2 / int u``, ``shape=[k, 4]`` (chart points)."""
        mass = x.sum(-1)
        t1, t2 = (x @ self._p1) / mass, (x @ self._p2) / mass
        d1, d2 = self._p1 - t1[:, None], self._p2 - t2[:, None]
        z2 = torch.complex(d1, d2) ** 2
        m4 = (x * (z2 * z2)).sum(-1)
        theta = torch.angle(m4) / 4
        r2 = (x * (d1 * d1 + d2 * d2)).sum(-1) / mass
        s = torch.sqrt(r2 / self._r2_at_scale_one)
        return self.chart_of_factors(torch.stack([t1, t2, theta, s], -1))

    def params_of(self, x: torch.Tensor) -> torch.Tensor:
        """Chart points of images ``shape=[k, N^2]``, ``shape=[k, 4]``: moments,
        refined by Gauss-Newton on the rendering residual."""
        x = as_points(x, self.ambient_dim)
        if x.shape[0] == 0:
            return x.new_zeros(0, 4)
        return torch.cat([self._gauss_newton(block) for block in x.split(_BLOCK)])

    def _gauss_newton(self, x: torch.Tensor) -> torch.Tensor:
        u = self._moments(x)
        for _ in range(_GAUSS_NEWTON_STEPS):
            rendered, J = self._render_and_jacobian(u)
            step = torch.linalg.solve(J.transpose(1, 2) @ J, torch.einsum("kni,kn->ki", J, rendered - x))
            u = u - step
            if float(step.abs().max()) <= _GAUSS_NEWTON_TOL:
                break
        return u

    def flat_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """Global isometric coordinates ``sqrt(m) (t1, t2, w1, w2)`` of images ``shape=[k, N^2]``,
        ``shape=[k, 4]``: the chart scaled so that Euclidean distances are geodesic distances
        (``g = m I``); as an encoder, an isometry (``L_delta = L = 0``)."""
        return math.sqrt(self.metric_scale) * self.params_of(x)

    def metric_discretisation_error(self, u: torch.Tensor | None = None) -> float:
        """Largest relative error ``|J^T J - m I|_2 / m`` of the rendered Jacobian's
        Gram matrix; default over the ``2^4`` corners of the box and its centre."""
        if u is None:
            lo, hi = self._box()
            corners = torch.cartesian_prod(*[torch.stack([a, b]) for a, b in zip(lo, hi)])
            u = torch.cat([corners, (0.5 * (lo + hi))[None]])
        from .image_base import relative_gram_error
        return relative_gram_error(self.jacobian(u), self.chart.metric(u))
