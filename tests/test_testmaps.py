"""The studies' test encoders (gammalimit.testmaps): shapes, formulas, and
weights that do not depend on torch's default dtype."""

import math

import torch

from gammalimit import Sphere, SwissRoll
from gammalimit import testmaps as T


def test_polynomial_maps_shapes_and_values():
    x = Sphere(1.0).sample(5, torch.Generator().manual_seed(0))
    for f in (T.sphere_polynomial, T.sphere_shear):
        assert f(x).shape == (5, 3) and f(x).dtype == torch.float64
    e3 = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.equal(T.sphere_polynomial(e3), torch.tensor([[0.0, 0.0, 0.7]], dtype=torch.float64))
    assert torch.equal(T.sphere_shear(e3), torch.tensor([[0.0, 0.0, 0.8]], dtype=torch.float64))
    y = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    assert torch.allclose(T.torus_polynomial(y), torch.tensor([[1 + 0.2 * 6, 2.0, 2.7 + 0.1, 4 - 0.8]],
                                                              dtype=torch.float64))


def test_random_mlp_is_fixed_by_its_seed_whatever_the_default_dtype():
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reference = T.random_mlp(seed=2)(x)
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float32)
        again = T.random_mlp(seed=2)(x)
    finally:
        torch.set_default_dtype(previous)
    assert again.dtype == torch.float64 and torch.equal(again, reference)
    assert not torch.equal(T.random_mlp(seed=3)(x), reference)


def test_swiss_roll_map_reads_the_unrolled_coordinates():
    roll = SwissRoll(turns=(2 * math.pi, 3 * math.pi), pitch=0.2, height=1.5)
    x = roll.sample(6, torch.Generator().manual_seed(0))
    s, h = roll.unrolled(x).unbind(-1)
    expected = torch.stack([s + 0.2 * torch.sin(h), h, 0.5 * torch.exp(-2 * s)], -1)
    assert torch.allclose(T.swiss_roll_map(roll)(x), expected, rtol=0, atol=0)
    assert T.swiss_roll_map(roll)(x).shape == (6, 3)
