"""Any smooth closed curve in ``R^n``, reparametrised by arclength."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..validation import check_count, check_positive
from .base import DTYPE, Chart, random_unit_tangent, sample, wrap_angle


def _points(curve, t):
    """``curve(t)`` ``shape=[k, n]``, checked: a float64 torch tensor of finite points."""
    try:
        pts = curve(t)
    except Exception as err:
        raise TypeError(f"curve must map a float64 torch tensor t of shape (k,) to points of shape (k, n); "
                        f"calling it raised {type(err).__name__}: {err}") from err
    if not isinstance(pts, torch.Tensor):
        raise TypeError(f"curve must return a torch tensor (written in torch, e.g. torch.cos, so that it can be "
                        f"differentiated), got {type(pts).__name__}")
    if pts.dtype != DTYPE:
        raise TypeError(f"curve must return float64 points for float64 t, got {pts.dtype}")
    if pts.ndim != 2 or pts.shape[0] != t.shape[0]:
        raise ValueError(f"curve(t) must return shape (k, n) for t of shape (k,), got {tuple(pts.shape)}")
    if not torch.isfinite(pts).all():
        raise ValueError("curve(t) must be finite for every t in [0, period)")
    return pts


def _foot_point_step(t, gap, vel, acc):
    """One Newton step on ``f(t) = <c(t) - x, c'(t)> = 0`` (the foot of ``x`` on
    the curve), ``f'(t) = |c'(t)|^2 + <c(t) - x, c''(t)>``; ``gap = c(t) - x``,
    ``vel = c'(t)``, ``acc = c''(t)`` ``shape=[k, n]``, ``t`` ``shape=[k]``."""
    return t - (gap * vel).sum(-1) / ((vel * vel).sum(-1) + (gap * acc).sum(-1))


class ClosedCurve:
    """A smooth closed curve ``c: [0, T) -> R^n``, intrinsically a circle of length ``l``.

    The arclength reparametrisation is computed spectrally: the speed
    ``|c'(t)|`` (by forward-mode autodiff) is sampled at ``resolution``
    equispaced points, expanded in a Fourier series (exact for trigonometric
    polynomials, spectrally accurate for analytic curves), and integrated
    term by term, giving ``sigma(t)`` everywhere; ``t(sigma)`` is found by
    Newton's method. The chart coordinate is the arclength ``sigma in [0, l)``.

    Parameters
    ----------
    curve : callable
        ``t`` ``shape=[k]`` float64 -> points ``shape=[k, n]``; periodic with
        period ``period``, smooth, regular (non-zero speed) and without
        self-intersections, written in torch so that it can be differentiated.
    period : float, default 2 pi
    resolution : int, default 1024
        Number of Fourier samples of the speed; the achieved accuracy is
        reported as :attr:`arclength_error` (the size of the highest Fourier
        modes relative to the mean speed).
    name : str, optional

    Raises
    ------
    TypeError
        If ``curve`` is not a torch function of ``t`` (a numpy function, say).
    ValueError
        If the curve is not closed, not regular (its speed vanishes, also
        between grid points: a cusp or a segment such as ``ellipse(0, 1)``),
        traversed more than once (``period`` a multiple of the minimal period)
        or not simple (it crosses or touches itself, like a figure eight): a
        closed curve manifold is an embedded circle.
    """

    dim = 1
    has_boundary = False

    def __init__(self, curve: Callable[[torch.Tensor], torch.Tensor], period: float = 2 * math.pi,
                 resolution: int = 1024, name: str = "curve"):
        if not callable(curve):
            raise TypeError(f"curve must be a callable t -> points (a torch function), got {type(curve).__name__}")
        check_count(resolution, "resolution", minimum=16)
        self.curve = curve
        self.period = check_positive(period, "period")
        self.name = name
        t = torch.arange(resolution, dtype=DTYPE) * (self.period / resolution)
        pts = _points(curve, t)
        self.ambient_dim = pts.shape[1]
        closure = torch.linalg.vector_norm(curve(torch.tensor([0.0, self.period], dtype=DTYPE)).diff(dim=0))
        if closure > 1e-9 * (1 + pts.abs().max()):
            raise ValueError(f"curve is not closed with period {self.period}: |c(T) - c(0)| = {closure:.3g}")
        self._check_regular(resolution)
        speed = self._speed(t)
        coef = torch.fft.rfft(speed) / resolution
        self._mean_speed = coef[0].real.item()
        self.length = self._mean_speed * self.period
        tail = coef[-max(2, resolution // 16):].abs().max().item()
        self.arclength_error = tail / self._mean_speed
        k = torch.arange(1, coef.shape[0], dtype=DTYPE)
        self._omega = 2 * math.pi * k / self.period
        # non-constant modes, doubling all but a Nyquist mode
        scale = torch.full_like(k, 2.0)
        if resolution % 2 == 0:
            scale[-1] = 1.0
        coef = scale * coef[1:]
        # drop modes below round-off: they cost time and add nothing
        big = (coef.abs() > 1e-15 * self._mean_speed).nonzero()
        keep = int(big.max()) + 1 if big.numel() else 1
        self._omega, self._coef = self._omega[:keep], coef[:keep]
        # the curve's own Fourier series: cheap first and second derivatives
        # for the Newton iteration of the inverse chart
        cc = torch.fft.rfft(pts, dim=0) / resolution
        cc[1:] *= 2
        if resolution % 2 == 0:
            cc[-1] /= 2
        big = (cc.abs() > 1e-15 * pts.abs().max()).any(-1).nonzero()
        self._curve_coef = cc[: int(big.max()) + 1 if big.numel() else 1]
        self._check_minimal_period(pts, cc)
        grid = torch.linspace(0, self.period, 4097, dtype=DTYPE)
        self._grid_t, self._grid_sigma = grid, self.sigma_of_t(grid)
        self.injectivity_radius = self.length / 2
        self._check_simple(4 * resolution)
        # coarse table for the nearest-point search of the inverse chart
        self._table_t = torch.arange(256, dtype=DTYPE) * (self.period / 256)
        self._table_x = curve(self._table_t)
        self.chart = Chart(
            embed=lambda u: self.curve(self.t_of_sigma(u[:, 0])),
            lower=(0.0,),
            upper=(self.length,),
            periodic=(True,),
            metric=lambda u: torch.ones(u.shape[0], 1, 1, dtype=u.dtype),
            inverse=lambda x: self.sigma_of_t(self.parameter_of(x))[:, None],
            volume=self.length,
        )

    def __repr__(self) -> str:
        return f"ClosedCurve({self.name}, length={self.length:.6g}, ambient_dim={self.ambient_dim})"

    # ---- what makes c a closed curve manifold: regular, traversed once, simple
    def _check_regular(self, resolution):
        """``|c'| > 0`` everywhere, not only on the grid: on a grid of step ``h`` four times
        finer, ``|c'(t)| > h |c''(t)|`` (twice the first-order drop of the speed within
        half a step), so that a zero of the speed between grid points is found too."""
        t = torch.arange(4 * resolution, dtype=DTYPE) * (self.period / (4 * resolution))
        try:
            vel, acc = torch.func.jvp(self._velocity, (t,), (torch.ones_like(t),))
        except Exception as err:
            raise TypeError(f"curve must be differentiable by torch.func (written in torch, not numpy): "
                            f"{type(err).__name__}: {err}") from err
        speed, margin = torch.linalg.vector_norm(vel, dim=-1), self.period / t.shape[0] * torch.linalg.vector_norm(acc, dim=-1)
        if not (torch.isfinite(speed).all() and torch.isfinite(margin).all()):
            raise ValueError("curve must be regular: its speed |c'(t)| is not finite everywhere")
        worst = int(torch.argmin(speed - margin))
        if speed[worst] <= margin[worst]:
            raise ValueError(
                f"curve must be regular (|c'(t)| > 0): its speed nearly vanishes at t = {t[worst].item():.6g} "
                f"(|c'| = {speed[worst].item():.3g} <= h |c''| = {margin[worst].item():.3g}, h = {self.period / t.shape[0]:.3g}):"
                " a cusp, or a degenerate curve such as a segment (raise resolution if it only turns sharply there)")

    def _check_minimal_period(self, pts, coef):
        """``period`` is the minimal period: if ``c`` has period ``T/k`` only the
        Fourier modes that are multiples of ``k`` appear, so ``k`` is the gcd of the
        modes present (confirmed by ``c(t + T/k) = c(t)`` on the grid)."""
        size = coef[1:].abs().amax(-1)
        modes = (size > 1e-8 * size.max()).nonzero()[:, 0] + 1
        k = math.gcd(*modes.tolist()) if modes.numel() else 1
        if k > 1:
            t = torch.arange(pts.shape[0], dtype=DTYPE) * (self.period / pts.shape[0])
            shift = torch.linalg.vector_norm(self.curve(t + self.period / k) - pts, dim=-1).max()
            if shift <= 1e-9 * (1 + pts.abs().max()):
                raise ValueError(
                    f"period={self.period:.17g} is {k} times the curve's minimal period: c(t + period/{k}) = c(t), "
                    f"so the curve is traversed {k} times; pass period={self.period / k:.17g}")

    def _check_simple(self, n_points):
        """No self-intersection: on a polyline of ``n_points`` points equispaced in
        arclength (step ``s``), no two points more than ``8 s`` apart along the curve
        lie within ``s`` of each other. Two branches that cross or touch have such a
        pair (each has a point within ``s/2`` of the common point); a k-d tree finds
        the close pairs without an ``N x N`` matrix."""
        step = self.length / n_points
        sigma = torch.arange(n_points, dtype=DTYPE) * step
        pts = self._point(sigma).detach().numpy()
        pairs = cKDTree(pts).query_pairs(step, output_type="ndarray")
        gap = np.abs(pairs[:, 0] - pairs[:, 1])
        far = np.minimum(gap, n_points - gap) > 8
        if far.any():
            i, j = pairs[far][0]
            ti, tj = self.t_of_sigma(sigma[[i, j]]).tolist()
            arc = min(abs(i - j), n_points - abs(i - j)) * step
            raise ValueError(
                f"curve must be simple (no self-intersection): c(t) at t = {ti:.6g} and t = {tj:.6g} are "
                f"{np.linalg.norm(pts[i] - pts[j]):.3g} apart in R^{self.ambient_dim} but {arc:.6g} apart along the "
                f"curve (polyline step {step:.3g}): it crosses or touches itself")

    # ---- classic examples
    @classmethod
    def ellipse(cls, a: float = 2.0, b: float = 1.0, **kw) -> "ClosedCurve":
        """The ellipse ``(a cos t, b sin t)`` in ``R^2``."""
        a, b = check_positive(a, "a"), check_positive(b, "b")
        return cls(lambda t: torch.stack([a * torch.cos(t), b * torch.sin(t)], -1), name=f"ellipse({a}, {b})", **kw)

    @classmethod
    def trefoil(cls, **kw) -> "ClosedCurve":
        """The trefoil knot ``(sin t + 2 sin 2t, cos t - 2 cos 2t, -sin 3t)`` in ``R^3``."""
        def c(t):
            return torch.stack([torch.sin(t) + 2 * torch.sin(2 * t), torch.cos(t) - 2 * torch.cos(2 * t),
                                -torch.sin(3 * t)], -1)
        return cls(c, name="trefoil", **kw)

    # ---- arclength
    def _velocity(self, t):
        return torch.func.jvp(self.curve, (t,), (torch.ones_like(t),))[1]

    def _speed(self, t):
        return torch.linalg.vector_norm(self._velocity(t), dim=-1)

    def _speed_series(self, t):
        ph = self._omega * t[:, None]
        return self._mean_speed + (self._coef.real * torch.cos(ph) - self._coef.imag * torch.sin(ph)).sum(-1)

    def sigma_of_t(self, t):
        """Arclength from ``t = 0``, ``shape=[k]`` (spectral integral of the speed)."""
        ph = self._omega * t[:, None]
        integral = (self._coef.real * torch.sin(ph) + self._coef.imag * (torch.cos(ph) - 1)) / self._omega
        return self._mean_speed * t + integral.sum(-1)

    def t_of_sigma(self, sigma):
        """Curve parameter at arclength ``sigma``; Newton's method, differentiable."""
        # start from a table of sigma(t), then Newton (quadratic convergence)
        turns = torch.floor(sigma / self.length)
        rest = (sigma - turns * self.length).detach().clamp(0, self.length)
        j = torch.searchsorted(self._grid_sigma, rest).clamp(1, self._grid_t.shape[0] - 1)
        s0, s1 = self._grid_sigma[j - 1], self._grid_sigma[j]
        t0, t1 = self._grid_t[j - 1], self._grid_t[j]
        t = t0 + (t1 - t0) * (rest - s0) / (s1 - s0) + turns * self.period
        for _ in range(4):
            t = t - (self.sigma_of_t(t) - sigma) / self._speed_series(t)
        return t

    def parameter_of(self, x):
        """Curve parameter ``t`` of points on the curve, ``shape=[k]``: nearest
        point of a table, refined by Newton on ``<c(t) - x, c'(t)> = 0``."""
        # the table start is a constant (detached: cdist has no forward-mode
        # derivative); the Newton steps carry the derivatives of t(x)
        t = torch.cat([self._table_t[torch.cdist(xc, self._table_x).argmin(dim=1)]
                       for xc in x.detach().split(8192)])
        w = 2 * math.pi / self.period * torch.arange(self._curve_coef.shape[0], dtype=DTYPE)
        for _ in range(5):
            e = torch.exp(1j * w * t[:, None])  # (k, modes)
            vel = ((1j * w * e) @ self._curve_coef).real
            acc = ((-(w**2) * e) @ self._curve_coef).real
            t = _foot_point_step(t, self.curve(t) - x, vel, acc)
        return torch.remainder(t, self.period)

    def differentiable_parameter(self, x, newton_steps: int = 3):
        """Curve parameter ``t`` of points on the curve, ``shape=[k]``,
        differentiable in ``x`` in forward and reverse mode.

        :meth:`parameter_of` cannot be differentiated in forward mode
        (``torch.cdist`` has no forward derivative); it is used, detached, as a
        converged start. ``newton_steps`` further Newton steps on
        ``<c(t) - x, c'(t)> = 0`` with ``x`` attached, the curve's derivatives
        taken by autodiff, carry the derivatives of the implicit function
        ``t(x)``: each step squares the error, so ``n`` steps make them exact
        up to order ``2^n - 1``.

        Parameters
        ----------
        x : tensor, shape=[k, ambient_dim]
        newton_steps : int, default 3

        Returns
        -------
        tensor, shape=[k]
        """
        t = self.parameter_of(x.detach())
        for _ in range(newton_steps):
            (c, vel), (_, acc) = torch.func.jvp(lambda s: (self.curve(s), self._velocity(s)),
                                                (t,), (torch.ones_like(t),))
            t = _foot_point_step(t, c - x, vel, acc)
        return t

    # ---- protocol
    def _point(self, sigma):
        return self.curve(self.t_of_sigma(torch.remainder(sigma, self.length)))

    def _unit_tangent(self, t):
        vel = self._velocity(t)
        return vel / torch.linalg.vector_norm(vel, dim=-1, keepdim=True)

    def point_from_cube(self, u):
        return self._point(self.length * u[:, 0])

    def sample(self, n, generator=None):
        return sample(self, n, generator)

    def tangent_frame(self, x):
        return self._unit_tangent(self.parameter_of(x))[:, :, None]

    def random_unit_tangent(self, x, generator=None):
        return random_unit_tangent(self, x, generator)

    def _signed_gap(self, x, y):
        """Arclength from ``x`` to ``y`` along the shorter arc, signed, ``shape=[k]``."""
        sx, sy = self.sigma_of_t(self.parameter_of(x)), self.sigma_of_t(self.parameter_of(y))
        return self.length / (2 * math.pi) * wrap_angle((sy - sx) * (2 * math.pi / self.length)), sx

    def exp(self, x, v):
        t = self.parameter_of(x)
        step = (v * self._unit_tangent(t)).sum(-1)
        return self._point(self.sigma_of_t(t) + step)

    def dist(self, x, y):
        return self._signed_gap(x, y)[0].abs()

    def midpoint(self, x, y):
        gap, sx = self._signed_gap(x, y)
        return self._point(sx + gap / 2)

    def contains(self, x, atol=1e-9):
        x = torch.as_tensor(x, dtype=DTYPE)
        t = self.parameter_of(x)
        scale = max(1.0, self._table_x.abs().max().item())
        return torch.linalg.vector_norm(self.curve(t) - x, dim=-1) <= atol * scale
