"""Any smooth closed curve in ``R^n``, reparametrised by arclength."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..validation import check_count
from .base import DTYPE, Chart, random_unit_tangent, sample, wrap_angle


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
    """

    dim = 1
    has_boundary = False

    def __init__(self, curve: Callable[[torch.Tensor], torch.Tensor], period: float = 2 * math.pi,
                 resolution: int = 1024, name: str = "curve"):
        check_count(resolution, "resolution", minimum=16)
        self.curve = curve
        self.period = float(period)
        self.name = name
        t = torch.arange(resolution, dtype=DTYPE) * (self.period / resolution)
        pts = curve(t)
        if pts.ndim != 2 or pts.shape[0] != resolution:
            raise ValueError(f"curve(t) must return shape (k, n) for t of shape (k,), got {tuple(pts.shape)}")
        self.ambient_dim = pts.shape[1]
        closure = torch.linalg.vector_norm(curve(torch.tensor([0.0, self.period], dtype=DTYPE)).diff(dim=0))
        if closure > 1e-9 * (1 + pts.abs().max()):
            raise ValueError(f"curve is not closed with period {self.period}: |c(T) - c(0)| = {closure:.3g}")
        speed = self._speed(t)
        if not torch.isfinite(speed).all() or speed.min() <= 0:
            raise ValueError("curve must be regular: its speed |c'(t)| must be finite and > 0")
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
        grid = torch.linspace(0, self.period, 4097, dtype=DTYPE)
        self._grid_t, self._grid_sigma = grid, self.sigma_of_t(grid)
        self.injectivity_radius = self.length / 2
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

    # ---- classic examples
    @classmethod
    def ellipse(cls, a: float = 2.0, b: float = 1.0, **kw) -> "ClosedCurve":
        """The ellipse ``(a cos t, b sin t)`` in ``R^2``."""
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
