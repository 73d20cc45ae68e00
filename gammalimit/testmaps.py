"""Smooth test encoders for the convergence studies: explicit maps whose
distortion and bending vary over ``M``, so that no closed form hides an error.

Each map takes points ``shape=[k, ambient_dim]`` (a batch) and returns codes
``shape=[k, l]``; they are plain torch functions, differentiable to any order.

- :func:`sphere_polynomial`, :func:`sphere_shear` — two quadratic maps of the
  sphere in ``R^3`` into ``R^3``;
- :func:`torus_polynomial` — a quadratic map of the flat torus in ``R^4`` into ``R^4``;
- :func:`random_mlp` — a fixed float64 tanh network ``R^4 -> R^4``;
- :func:`swiss_roll_map` — a map of the unrolled Swiss roll into ``R^3``, bent
  most near the edge ``s = 0``.
"""

from __future__ import annotations

import math

import torch

from .manifolds.base import DTYPE


def sphere_polynomial(x: torch.Tensor) -> torch.Tensor:
    """``(x1 (1 + x3/2), x2 (1 + x3/2), 0.7 x3 + 0.2 x1 x2)``; ``shape=[k, 3] -> [k, 3]``."""
    return torch.stack([x[:, 0] * (1 + 0.5 * x[:, 2]), x[:, 1] * (1 + 0.5 * x[:, 2]),
                        0.7 * x[:, 2] + 0.2 * x[:, 0] * x[:, 1]], -1)


def sphere_shear(x: torch.Tensor) -> torch.Tensor:
    """``(x1 + 0.3 x2 x3, x2 + 0.2 x1^2, 0.8 x3 - 0.1 x1 x2)``; ``shape=[k, 3] -> [k, 3]``."""
    return torch.stack([x[:, 0] + 0.3 * x[:, 1] * x[:, 2], x[:, 1] + 0.2 * x[:, 0] ** 2,
                        0.8 * x[:, 2] - 0.1 * x[:, 0] * x[:, 1]], -1)


def torus_polynomial(x: torch.Tensor) -> torch.Tensor:
    """``(x1 + 0.2 x3 x2, x2, 0.9 x3 + 0.1 x1^2, x4 - 0.2 x1 x4)``; ``shape=[k, 4] -> [k, 4]``."""
    return torch.stack([x[:, 0] + 0.2 * x[:, 2] * x[:, 1], x[:, 1], 0.9 * x[:, 2] + 0.1 * x[:, 0] ** 2,
                        x[:, 3] - 0.2 * x[:, 0] * x[:, 3]], -1)


def random_mlp(seed: int = 2, width: int = 32, dim: int = 4) -> torch.nn.Sequential:
    """A float64 MLP ``R^dim -> R^dim`` (one tanh layer of ``width``), weights
    ``N(0, 1/4)`` and ``N(0, 1/width)``, first bias ``N(0, 1/4)``, last bias 0.

    The weights are drawn in float64 explicitly from ``seed``: the draws do
    not depend on torch's default dtype.
    """
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(width, dim, generator=g, dtype=DTYPE) / 2
    b1 = torch.randn(width, generator=g, dtype=DTYPE) / 2
    w2 = torch.randn(dim, width, generator=g, dtype=DTYPE) / math.sqrt(width)
    mlp = torch.nn.Sequential(torch.nn.Linear(dim, width), torch.nn.Tanh(), torch.nn.Linear(width, dim)).double()
    with torch.no_grad():
        mlp[0].weight.copy_(w1), mlp[0].bias.copy_(b1), mlp[2].weight.copy_(w2), mlp[2].bias.zero_()
    return mlp


def swiss_roll_map(roll):
    """``(s + 0.2 sin h, h, exp(-2 s) / 2)`` in the unrolled coordinates ``(s, h)`` of
    a :class:`~gammalimit.manifolds.SwissRoll`: a map ``shape=[k, 3] -> [k, 3]``."""
    def phi(x):
        u = roll.unrolled(x)
        s, h = u[:, 0], u[:, 1]
        return torch.stack([s + 0.2 * torch.sin(h), h, 0.5 * torch.exp(-2 * s)], -1)
    return phi
