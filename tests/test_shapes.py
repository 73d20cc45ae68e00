"""Shapes of codes (gammalimit.shapes): exact circles, Clifford tori and rigid
motions are recognised exactly; deformations are seen."""

import math

import pytest
import torch

from gammalimit.shapes import circle_fit, clifford_fit, procrustes


def _rotation(l, seed=0):
    q, _ = torch.linalg.qr(torch.randn(l, l, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_circle_fit_of_a_circle_and_of_an_ellipse():
    theta = 2 * math.pi * torch.arange(200, dtype=torch.float64) / 200
    circle = torch.stack([3 + 2 * theta.cos(), -1 + 2 * theta.sin()], -1)
    fit = circle_fit(circle)
    assert fit["centre"] == pytest.approx([3.0, -1.0], abs=1e-13)
    assert fit["radius"] == pytest.approx(2.0, rel=1e-13)
    assert fit["roundness"] == pytest.approx(1.0, abs=1e-13) and fit["speed_ratio"] == pytest.approx(1.0, abs=1e-12)
    ellipse = torch.stack([2 * theta.cos(), theta.sin()], -1)
    assert circle_fit(ellipse)["roundness"] == pytest.approx(2.0, rel=1e-12)
    # a circle run at non-uniform speed is round but not uniformly parametrised
    assert circle_fit(circle[(torch.arange(200) ** 2) % 200])["speed_ratio"] > 1.5


def test_clifford_fit_of_a_rotated_clifford_torus():
    s = torch.arange(16, dtype=torch.float64) / 16
    t = torch.cartesian_prod(s, s)
    a1, a2 = 2 * math.pi * t[:, 0], 2 * math.pi * t[:, 1]
    codes = torch.stack([0.7 * a1.cos(), 0.7 * a1.sin(), 1.3 * a2.cos(), 1.3 * a2.sin()], -1)
    fit = clifford_fit(codes @ _rotation(4) + 5.0, t)
    assert fit["radii_1"] == pytest.approx([0.7, 0.7], rel=1e-12)
    assert fit["radii_2"] == pytest.approx([1.3, 1.3], rel=1e-12)
    assert fit["plane_cosine"] < 1e-12 and fit["residual"] < 1e-12
    assert len(fit["plane_1"]) == t.shape[0] and len(fit["plane_1"][0]) == 2
    # both factors in one plane: cosine 1
    flat = torch.stack([0.7 * a1.cos() + 1.3 * a2.cos(), 0.7 * a1.sin() + 1.3 * a2.sin(), 0 * a1, 0 * a1], -1)
    assert clifford_fit(flat, t)["plane_cosine"] == pytest.approx(1.0, abs=1e-12)


def test_procrustes_undoes_a_rigid_motion_but_not_a_scaling():
    target = torch.randn(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    moved = target @ _rotation(3, 2) + torch.tensor([1.0, -2.0, 0.5])
    assert torch.allclose(procrustes(moved, target), target, atol=1e-12)
    reflected = target * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(procrustes(reflected, target), target, atol=1e-12)  # reflections allowed
    scaled = procrustes(2 * moved, target)
    assert torch.allclose(scaled - scaled.mean(0), 2 * (target - target.mean(0)), atol=1e-12)
