"""The flat torus ``S^1(R1) x S^1(R2)``, represented as the Clifford torus in ``R^4``."""

from __future__ import annotations

import math

import torch

from ..validation import check_reals
from .base import (
    DTYPE,
    Chart,
    circle_angle,
    circle_angle_between,
    circle_point,
    circle_tangent,
    random_unit_tangent,
    sample,
)


class FlatTorus:
    """``T^2 = S^1(R1) x S^1(R2) subset R^4``: intrinsically flat, ``m = 2``.

    A point is ``(R1 cos a, R1 sin a, R2 cos b, R2 sin b)``. Chart: the angles
    ``(a, b)``, both periodic, ``g = diag(R1^2, R2^2)``.

    Parameters
    ----------
    radii : pair of float, default (1.0, 1.0)
    """

    dim = 2
    ambient_dim = 4
    has_boundary = False

    def __init__(self, radii: tuple[float, float] = (1.0, 1.0)):
        self.radii = check_reals(radii, "radii", 2, minimum=0.0, what="(R1, R2)")
        R1, R2 = self.radii
        self.injectivity_radius = math.pi * min(R1, R2)

        def metric(u):
            g = torch.zeros(u.shape[0], 2, 2, dtype=u.dtype)
            g[:, 0, 0], g[:, 1, 1] = R1**2, R2**2
            return g

        self.chart = Chart(
            embed=lambda u: torch.cat([circle_point(R1, u[:, 0]), circle_point(R2, u[:, 1])], -1),
            lower=(0.0, 0.0),
            upper=(2 * math.pi, 2 * math.pi),
            periodic=(True, True),
            metric=metric,
            inverse=lambda x: torch.remainder(
                torch.stack([circle_angle(x[:, :2]), circle_angle(x[:, 2:])], -1), 2 * math.pi
            ),
            volume=4 * math.pi**2 * R1 * R2,
        )

    def __repr__(self) -> str:
        return f"FlatTorus(radii={self.radii})"

    def point_from_cube(self, u):
        return self.chart.embed(2 * math.pi * u)

    def sample(self, n, generator=None):
        return sample(self, n, generator)

    def tangent_frame(self, x):
        t1, t2 = circle_tangent(circle_angle(x[:, :2])), circle_tangent(circle_angle(x[:, 2:]))
        z = torch.zeros_like(t1)
        return torch.stack([torch.cat([t1, z], -1), torch.cat([z, t2], -1)], dim=-1)

    def random_unit_tangent(self, x, generator=None):
        return random_unit_tangent(self, x, generator)

    def exp(self, x, v):
        out = []
        for k, R in enumerate(self.radii):
            xs, vs = x[:, 2 * k : 2 * k + 2], v[:, 2 * k : 2 * k + 2]
            a = circle_angle(xs)
            out.append(circle_point(R, a + (vs * circle_tangent(a)).sum(-1) / R))
        return torch.cat(out, dim=-1)

    def dist(self, x, y):
        d1 = self.radii[0] * circle_angle_between(x[:, :2], y[:, :2])
        d2 = self.radii[1] * circle_angle_between(x[:, 2:], y[:, 2:])
        return torch.sqrt(d1**2 + d2**2)

    def midpoint(self, x, y):
        out = []
        for k, R in enumerate(self.radii):
            s = x[:, 2 * k : 2 * k + 2] + y[:, 2 * k : 2 * k + 2]
            out.append(R * s / torch.linalg.vector_norm(s, dim=-1, keepdim=True))
        return torch.cat(out, dim=-1)

    def contains(self, x, atol=1e-9):
        x = torch.as_tensor(x, dtype=DTYPE)
        ok = torch.ones(x.shape[0], dtype=torch.bool)
        for k, R in enumerate(self.radii):
            r = torch.linalg.vector_norm(x[:, 2 * k : 2 * k + 2], dim=-1)
            ok &= (r - R).abs() <= atol * max(1.0, R)
        return ok
