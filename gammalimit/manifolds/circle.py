"""The round circle of radius ``R`` in ``R^2``."""

from __future__ import annotations

import math

import torch

from .base import (
    DTYPE,
    Chart,
    check_positive,
    circle_angle,
    circle_angle_between,
    circle_point,
    circle_tangent,
    random_unit_tangent,
    sample,
)


class Circle:
    """``S^1(R) = {x in R^2 : |x| = R}``, ``m = 1``, ``n = 2``.

    Chart: the polar angle ``theta in [0, 2 pi)`` (periodic), ``g = R^2``.

    Parameters
    ----------
    radius : float, default 1.0
    """

    dim = 1
    ambient_dim = 2
    has_boundary = False

    def __init__(self, radius: float = 1.0):
        self.radius = check_positive(radius, "radius")
        self.injectivity_radius = math.pi * self.radius
        R = self.radius
        self.chart = Chart(
            embed=lambda u: circle_point(R, u[:, 0]),
            lower=(0.0,),
            upper=(2 * math.pi,),
            periodic=(True,),
            metric=lambda u: torch.full((u.shape[0], 1, 1), R**2, dtype=u.dtype),
            inverse=lambda x: torch.remainder(circle_angle(x), 2 * math.pi)[:, None],
            volume=2 * math.pi * R,
        )

    def __repr__(self) -> str:
        return f"Circle(radius={self.radius})"

    @property
    def length(self) -> float:
        return 2 * math.pi * self.radius

    def point_from_cube(self, u):
        return circle_point(self.radius, 2 * math.pi * u[:, 0])

    def sample(self, n, generator=None):
        return sample(self, n, generator)

    def tangent_frame(self, x):
        return circle_tangent(circle_angle(x))[:, :, None]

    def random_unit_tangent(self, x, generator=None):
        return random_unit_tangent(self, x, generator)

    def exp(self, x, v):
        a = circle_angle(x)
        s = (v * circle_tangent(a)).sum(-1)
        return circle_point(self.radius, a + s / self.radius)

    def dist(self, x, y):
        return self.radius * circle_angle_between(x, y)

    def midpoint(self, x, y):
        s = x + y
        return self.radius * s / torch.linalg.vector_norm(s, dim=-1, keepdim=True)

    def contains(self, x, atol=1e-9):
        x = torch.as_tensor(x, dtype=DTYPE)
        r = torch.linalg.vector_norm(x, dim=-1)
        return (r - self.radius).abs() <= atol * max(1.0, self.radius)
