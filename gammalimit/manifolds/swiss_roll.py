"""A flat rectangle rolled up along an Archimedean spiral in ``R^3``."""

from __future__ import annotations

import math

import torch

from ..validation import check_positive, check_reals
from .base import DTYPE, Chart, random_unit_tangent, sample


class SwissRoll:
    """The Swiss roll: the rectangle ``[0, L] x [0, H]`` rolled up in ``R^3``.

    The spiral is ``rho(theta) = pitch * theta`` for ``theta`` in ``turns``;
    the point with chart coordinates ``(s, h)`` is
    ``(rho cos theta, h, rho sin theta)`` where ``s`` is the exact arclength
    along the spiral from ``turns[0]``:
    ``S(theta) = (pitch/2) [theta sqrt(1+theta^2) + asinh(theta)]``, inverted
    by Newton's method to machine precision. The chart is therefore an
    isometry from the rectangle (``g = I``), and ``(s, h)`` are the true flat
    coordinates.

    Boundary policy: ``M`` has a boundary. The pair sampler rejects a pair
    whose end point leaves the rectangle and draws a new one (for antithetic
    pairs, both ends must stay inside); since the rectangle is convex the
    whole geodesic then stays inside. The ``x``-marginal of accepted pairs is
    therefore ``mu`` conditioned on a valid direction existing, which deviates
    from ``mu`` in a layer of width ``delta`` (docs/theory.md, section 5).

    Parameters
    ----------
    turns : pair of float, default (1.5 pi, 4.5 pi)
        Spiral angle range (as in scikit-learn's ``make_swiss_roll``).
    pitch : float, default 1.0
    height : float, default 21.0
    """

    dim = 2
    ambient_dim = 3
    has_boundary = True

    def __init__(self, turns=(1.5 * math.pi, 4.5 * math.pi), pitch: float = 1.0, height: float = 21.0):
        t0, t1 = check_reals(turns, "turns", 2, minimum=0.0, what="(theta_0, theta_1)")
        if not t0 < t1:
            raise ValueError(f"turns must satisfy 0 < turns[0] < turns[1], got {turns!r}")
        self.turns = (t0, t1)
        self.pitch = check_positive(pitch, "pitch")
        self.height = check_positive(height, "height")
        self.length = self._S(torch.tensor(t1, dtype=DTYPE)).item() - self._S(torch.tensor(t0, dtype=DTYPE)).item()
        # The rectangle is convex, so the scale is limited only by its size.
        self.injectivity_radius = 0.5 * min(self.length, self.height)
        self.chart = Chart(
            embed=self._embed,
            lower=(0.0, 0.0),
            upper=(self.length, self.height),
            periodic=(False, False),
            metric=lambda u: torch.eye(2, dtype=u.dtype).expand(u.shape[0], 2, 2).clone(),
            inverse=self._inverse,
            volume=self.length * self.height,
        )

    def __repr__(self) -> str:
        return f"SwissRoll(turns={self.turns}, pitch={self.pitch}, height={self.height})"

    def _S(self, theta):
        """Arclength of the spiral from angle 0, ``S(theta)``."""
        return 0.5 * self.pitch * (theta * torch.sqrt(1 + theta**2) + torch.asinh(theta))

    def theta_of_s(self, s):
        """Spiral angle at arclength ``s`` from ``turns[0]``, ``shape=[k]``.

        Newton's method on ``S(theta) = S(theta0) + s``; written without
        detaching so that autodiff (first and second derivatives) goes
        through the converged iteration.
        """
        t0 = self.turns[0]
        target = s + self._S(torch.tensor(t0, dtype=s.dtype))
        # S(theta) ~ pitch theta^2 / 2 gives a starting point within a few percent.
        theta = torch.sqrt(torch.clamp(t0**2 + 2 * s / self.pitch, min=1e-12))
        for _ in range(8):
            theta = theta - (self._S(theta) - target) / (self.pitch * torch.sqrt(1 + theta**2))
        return theta

    def _embed(self, u):
        theta = self.theta_of_s(u[:, 0])
        rho = self.pitch * theta
        return torch.stack([rho * torch.cos(theta), u[:, 1], rho * torch.sin(theta)], dim=-1)

    def _inverse(self, x):
        theta = torch.hypot(x[:, 0], x[:, 2]) / self.pitch
        s = self._S(theta) - self._S(torch.tensor(self.turns[0], dtype=x.dtype))
        return torch.stack([s, x[:, 1]], dim=-1)

    def unrolled(self, x):
        """The isometric unrolling ``(s, h)`` of points, ``shape=[k, 2]``."""
        return self._inverse(x)

    def point_from_cube(self, u):
        return self._embed(u * torch.tensor([self.length, self.height], dtype=u.dtype))

    def sample(self, n, generator=None):
        return sample(self, n, generator)

    def tangent_frame(self, x):
        theta = torch.hypot(x[:, 0], x[:, 2]) / self.pitch
        c, s = torch.cos(theta), torch.sin(theta)
        norm = torch.sqrt(1 + theta**2)
        e_s = torch.stack([(c - theta * s) / norm, torch.zeros_like(c), (s + theta * c) / norm], -1)
        e_h = torch.zeros_like(e_s)
        e_h[:, 1] = 1.0
        return torch.stack([e_s, e_h], dim=-1)

    def random_unit_tangent(self, x, generator=None):
        return random_unit_tangent(self, x, generator)

    def exp(self, x, v):
        """Straight line in the flat chart; may leave the rectangle (the
        spiral is continued), which :meth:`contains` detects."""
        c = torch.einsum("kni,kn->ki", self.tangent_frame(x), v)
        return self._embed(self._inverse(x) + c)

    def dist(self, x, y):
        return torch.linalg.vector_norm(self._inverse(x) - self._inverse(y), dim=-1)

    def midpoint(self, x, y):
        return self._embed(0.5 * (self._inverse(x) + self._inverse(y)))

    def contains(self, x, atol=1e-9):
        x = torch.as_tensor(x, dtype=DTYPE)
        u = self._inverse(x)
        scale = max(1.0, self.length, self.height)
        inside = ((u >= -atol * scale) & (u <= torch.tensor([self.length, self.height], dtype=DTYPE) + atol * scale)).all(-1)
        on_spiral = torch.linalg.vector_norm(self._embed(u) - x, dim=-1) <= atol * scale
        return inside & on_spiral
