"""The round sphere ``S^2`` of radius ``R`` in ``R^3``."""

from __future__ import annotations

import math

import torch

from ..validation import check_positive
from .base import DTYPE, Chart, random_unit_tangent, sample


class Sphere:
    """``S^2(R) = {x in R^3 : |x| = R}``, ``m = 2``, ``n = 3``.

    Chart: polar angle ``theta in [0, pi]`` (Gauss-Legendre; the integrand of
    a smooth function is smooth in ``theta``) and azimuth ``phi in [0, 2 pi)``
    (periodic), ``g = diag(R^2, R^2 sin^2 theta)``.

    Parameters
    ----------
    radius : float, default 1.0
    """

    dim = 2
    ambient_dim = 3
    has_boundary = False

    def __init__(self, radius: float = 1.0):
        self.radius = check_positive(radius, "radius")
        self.injectivity_radius = math.pi * self.radius
        R = self.radius

        def embed(u):
            st = torch.sin(u[:, 0])
            return R * torch.stack(
                [st * torch.cos(u[:, 1]), st * torch.sin(u[:, 1]), torch.cos(u[:, 0])], dim=-1
            )

        def metric(u):
            z = torch.zeros_like(u[:, 0])
            g11 = torch.full_like(z, R**2)
            g22 = R**2 * torch.sin(u[:, 0]) ** 2
            return torch.stack([torch.stack([g11, z], -1), torch.stack([z, g22], -1)], -2)

        self.chart = Chart(
            embed=embed,
            lower=(0.0, 0.0),
            upper=(math.pi, 2 * math.pi),
            periodic=(False, True),
            metric=metric,
            inverse=self._inverse,
            volume=4 * math.pi * R**2,
        )

    def __repr__(self) -> str:
        return f"Sphere(radius={self.radius})"

    @staticmethod
    def _inverse(x):
        rho = torch.linalg.vector_norm(x[:, :2], dim=-1)
        theta = torch.atan2(rho, x[:, 2])
        phi = torch.remainder(torch.atan2(x[:, 1], x[:, 0]), 2 * math.pi)
        return torch.stack([theta, phi], dim=-1)

    def point_from_cube(self, u):
        # Archimedes: z uniform in [-R, R] and phi uniform give the area measure.
        z = 1 - 2 * u[:, 0]
        rho = torch.sqrt((1 - z) * (1 + z))
        phi = 2 * math.pi * u[:, 1]
        return self.radius * torch.stack([rho * torch.cos(phi), rho * torch.sin(phi), z], dim=-1)

    def sample(self, n, generator=None):
        return sample(self, n, generator)

    def tangent_frame(self, x):
        # the polar frame (e_theta, e_phi), from x without trigonometry;
        # at the poles phi = 0 is taken, which still gives an orthonormal frame
        rho = torch.linalg.vector_norm(x[:, :2], dim=-1)
        safe = torch.where(rho > 0, rho, 1.0)
        cp = torch.where(rho > 0, x[:, 0] / safe, 1.0)
        sp = torch.where(rho > 0, x[:, 1] / safe, 0.0)
        ct, st = x[:, 2] / self.radius, rho / self.radius
        e_theta = torch.stack([ct * cp, ct * sp, -st], dim=-1)
        e_phi = torch.stack([-sp, cp, torch.zeros_like(sp)], dim=-1)
        return torch.stack([e_theta, e_phi], dim=-1)

    def random_unit_tangent(self, x, generator=None):
        return random_unit_tangent(self, x, generator)

    def exp(self, x, v):
        t = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        a = t / self.radius
        # sin(a)/a written to stay exact as t -> 0
        sinc = torch.where(a > 0, torch.sin(a) / torch.where(a > 0, a, 1.0), 1.0)
        return x * torch.cos(a) + v * sinc

    def dist(self, x, y):
        cross = torch.linalg.vector_norm(torch.linalg.cross(x, y), dim=-1)
        return self.radius * torch.atan2(cross, (x * y).sum(-1))

    def midpoint(self, x, y):
        s = x + y
        return self.radius * s / torch.linalg.vector_norm(s, dim=-1, keepdim=True)

    def contains(self, x, atol=1e-9):
        x = torch.as_tensor(x, dtype=DTYPE)
        return (torch.linalg.vector_norm(x, dim=-1) - self.radius).abs() <= atol * max(1.0, self.radius)
