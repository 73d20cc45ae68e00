"""Analytic encoders and their exact losses (THEORY.md section 5).

Each closed form here is checked in the tests against Monte Carlo
(:func:`gammalimit.discrete_loss`) and, where :mod:`gammalimit.symbolic`
derives it, against the symbolic derivation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .manifolds import Circle, FlatTorus, Sphere
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
    ``R`` for pairs at distance ``rho`` (THEORY.md section 5), normalised by
    ``delta^4``."""
    s = rho / R
    chord2 = 4 * a**2 * R**2 * np.sin(s / 2) ** 2
    return (chord2 - rho**2) ** 2 / delta**4, 4 * a**2 * R**2 * (1 - np.cos(s / 2)) ** 2 / delta**4


def _torus_shell(scales, radii, rho: np.ndarray, angle: np.ndarray, delta: float):
    """Per-pair ``(l_D, l_B)`` of ``diag(a1 I, a2 I)`` on the flat torus for a
    pair at distance ``rho`` in direction ``angle`` (chart-orthonormal)."""
    steps = (rho * np.cos(angle), rho * np.sin(angle))
    chord2, bend = 0.0, 0.0
    for a, R, t in zip(scales, radii, steps):
        chord2 = chord2 + 4 * a**2 * R**2 * np.sin(t / (2 * R)) ** 2
        bend = bend + 4 * a**2 * R**2 * (1 - np.cos(t / (2 * R))) ** 2
    return (chord2 - rho**2) ** 2 / delta**4, bend / delta**4


def exact_discrete_loss(manifold, scale, *, delta: float, lam: float, strategy="shell") -> ExactLoss:
    """Exact ``L_delta`` of the scaled identity on a circle, sphere or flat torus.

    Shell: the closed form of section 5 (circle, sphere), the periodic
    trapezoid rule over the direction angle (torus, 512 nodes: machine
    precision). Ball: Gauss-Legendre over the radial law ``m r^(m-1)``
    (80 nodes, machine precision for these analytic integrands).
    """
    _check_closed_form_manifold(manifold)
    strat = get_strategy(strategy)
    scales = _scales(manifold, scale)
    m = manifold.dim
    if strat.name == "shell":
        r, w = np.ones(1), np.ones(1)
    elif strat.name == "ball":
        nodes, weights = np.polynomial.legendre.leggauss(80)
        r, w = 0.5 * (nodes + 1), 0.5 * weights * m * (0.5 * (nodes + 1)) ** (m - 1)
    else:
        raise ValueError(f"exact L_delta is implemented for 'shell' and 'ball', not {strat.name!r}")
    rho = delta * r
    if isinstance(manifold, FlatTorus):
        angle = 2 * np.pi * np.arange(512) / 512
        dist, bend = _torus_shell(scales, manifold.radii, rho[:, None], angle[None, :], delta)
        dist, bend = dist.mean(1), bend.mean(1)
    else:
        dist, bend = _round_shell(scales[0], manifold.radius, rho, delta)
    return ExactLoss(float(w @ dist), float(w @ bend), float(lam))


def exact_continuum_loss(manifold, scale, *, lam: float, strategy="shell") -> ExactLoss:
    """Exact Gamma-limit ``L`` of the scaled identity (THEORY.md section 5).

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


def optimal_round_scale(radius: float, lam: float) -> float:
    """Minimiser of ``L`` over ``a`` for ``a * id`` on a circle or sphere:
    ``a^2 = 1 - lam / (32 R^2)``, and ``0`` (collapse) for ``lam >= 32 R^2``."""
    return math.sqrt(max(0.0, 1 - lam / (32 * radius**2)))
