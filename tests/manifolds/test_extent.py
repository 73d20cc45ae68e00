"""Intrinsic diameters (gammalimit.manifolds.extent): no sampled distance
exceeds them, and far pairs come close to them."""

import math

import pytest
import torch

from gammalimit.manifolds import make_manifold
from gammalimit.manifolds.extent import diameter

NAMES = ["circle", "sphere", "torus", "swissroll", "ellipse", "trefoil", "rotating-ellipse", "translating-blob",
         "periodic-blob"]


def _manifold(name):
    return make_manifold(name, n_pixels=24) if name in ("rotating-ellipse", "translating-blob", "periodic-blob") \
        else make_manifold(name)


@pytest.mark.parametrize("name", NAMES)
def test_diameter_bounds_every_distance_and_is_nearly_attained(name):
    M = _manifold(name)
    g = torch.Generator().manual_seed(0)
    x, y = M.sample(2000, g), M.sample(2000, g)
    d = M.dist(x, y)
    D = diameter(M)
    assert float(d.max()) <= D * (1 + 1e-9)
    assert float(d.max()) >= 0.8 * D


def test_diameter_closed_forms():
    assert diameter(make_manifold("sphere", radius=2.0)) == pytest.approx(2 * math.pi)
    assert diameter(make_manifold("torus", radii=(1.0, 2.0))) == pytest.approx(math.pi * math.sqrt(5))
    with pytest.raises(TypeError, match="no diameter"):
        diameter(object())
