"""Property tests of the manifold protocol for every closed-form family."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gammalimit import Circle, ClosedCurve, FlatTorus, Sphere, SwissRoll
from gammalimit.manifolds import Manifold, make_manifold
from gammalimit.manifolds.registry import MANIFOLDS as REGISTRY
from geodesic_checks import check_exp_dist_midpoint, random_geodesic_starts

#: parameters other than the defaults, so that the properties are not tuned to them
PARAMS = {"circle": {"radius": 1.7}, "sphere": {"radius": 0.8}, "torus": {"radii": (1.0, 2.5)}}
#: property-tested in test_images.py with fewer, costlier examples
IMAGE_MANIFOLDS = {"rotating-ellipse", "translating-blob", "periodic-blob"}
#: every other registered manifold (a newly registered one is tested here without editing this file)
MANIFOLDS = {name: make_manifold(name, **PARAMS.get(name, {})) for name in REGISTRY if name not in IMAGE_MANIFOLDS}
NAMES = sorted(MANIFOLDS)

settings.register_profile("geometry", max_examples=15, deadline=None)
settings.load_profile("geometry")


def _pairs(M, seed, frac):
    """Points, unit directions and a step ``t = frac * min(injectivity radius, 5)``."""
    return random_geodesic_starts(M, seed, frac, 32, t_max=5.0)


@pytest.mark.parametrize("name", NAMES)
def test_protocol(name):
    M = MANIFOLDS[name]
    assert isinstance(M, Manifold)
    assert M.chart.dim == M.dim


@pytest.mark.parametrize("name", NAMES)
@given(seed=st.integers(0, 2**31 - 1), frac=st.floats(1e-4, 0.9))
def test_exp_dist_midpoint(name, seed, frac):
    M = MANIFOLDS[name]
    check_exp_dist_midpoint(M, *_pairs(M, seed, frac), half_step_with_boundary=False)


@pytest.mark.parametrize("name", NAMES)
@given(seed=st.integers(0, 2**31 - 1))
def test_frame_is_orthonormal_and_tangent(name, seed):
    M = MANIFOLDS[name]
    g = torch.Generator().manual_seed(seed)
    x = M.sample(32, g)
    E = M.tangent_frame(x)
    assert E.shape == (32, M.ambient_dim, M.dim)
    gram = E.transpose(1, 2) @ E
    assert torch.allclose(gram, torch.eye(M.dim).expand_as(gram), atol=1e-12)
    # tangent: moving along a frame vector stays on M to second order
    h = 1e-6
    for i in range(M.dim):
        y = M.exp(x, h * E[:, :, i])
        assert torch.allclose((y - x) / h, E[:, :, i], atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_random_unit_tangent_is_unit(name):
    M = MANIFOLDS[name]
    g = torch.Generator().manual_seed(3)
    x = M.sample(100, g)
    v = M.random_unit_tangent(x, g)
    assert torch.allclose(torch.linalg.vector_norm(v, dim=-1), torch.ones(100), atol=1e-14)


def _moment_check(sample_values, exact_mean, n_sigma=5.0):
    mean = sample_values.mean(0)
    se = sample_values.std(0) / math.sqrt(sample_values.shape[0])
    assert ((mean - exact_mean).abs() <= n_sigma * se + 1e-12).all(), (mean, exact_mean, se)


N_UNIFORM = 200_000


def test_uniform_circle_and_sphere_moments():
    g = torch.Generator().manual_seed(11)
    C = Circle(2.0)
    x = C.sample(N_UNIFORM, g)
    _moment_check(torch.cat([x, x**2], 1), torch.tensor([0.0, 0.0, 2.0, 2.0]))
    S = Sphere(1.5)
    x = S.sample(N_UNIFORM, g)
    # uniform on S^2(R): E x = 0, E x_i^2 = R^2/3, E z^4 = R^4/5
    _moment_check(torch.cat([x, x**2, x[:, 2:] ** 4], 1),
                  torch.tensor([0, 0, 0, 0.75, 0.75, 0.75, 1.5**4 / 5]))


def test_uniform_torus_and_swissroll_moments():
    g = torch.Generator().manual_seed(12)
    T = FlatTorus((1.0, 2.0))
    a = T.chart.inverse(T.sample(N_UNIFORM, g))
    _moment_check(a, torch.tensor([math.pi, math.pi]))
    _moment_check((a - math.pi) ** 2, torch.tensor([math.pi**2 / 3] * 2))
    R = SwissRoll()
    u = R.unrolled(R.sample(N_UNIFORM, g))
    L, H = R.length, R.height
    _moment_check(torch.cat([u, (u - u.new_tensor([L / 2, H / 2])) ** 2], 1),
                  torch.tensor([L / 2, H / 2, L**2 / 12, H**2 / 12]))


def test_uniform_closed_curve_is_arclength_uniform():
    g = torch.Generator().manual_seed(13)
    E = ClosedCurve.ellipse(2.0, 1.0)
    x = E.sample(50_000, g)
    s = E.chart.inverse(x)[:, 0]
    _moment_check(torch.stack([s, (s - E.length / 2) ** 2], 1),
                  torch.tensor([E.length / 2, E.length**2 / 12]))
    # E[x_1^2] for arclength-uniform points, by quadrature in t with the speed
    t = torch.linspace(0, 2 * math.pi, 4097)[:-1]
    speed = torch.sqrt(4 * torch.sin(t) ** 2 + torch.cos(t) ** 2)
    exact = float((4 * torch.cos(t) ** 2 * speed).mean() / speed.mean())
    _moment_check(x[:, :1] ** 2, torch.tensor([exact]))


def test_closed_curve_length_matches_elliptic_integral():
    from scipy.special import ellipe

    a, b = 2.0, 1.0
    exact = 4 * a * ellipe(1 - b**2 / a**2)
    E = ClosedCurve.ellipse(a, b)
    assert abs(E.length - exact) < 1e-13 * exact
    circle = ClosedCurve(lambda t: torch.stack([3 * torch.cos(t), 3 * torch.sin(t)], -1))
    assert abs(circle.length - 6 * math.pi) < 1e-13


def test_swiss_roll_chart_is_isometric():
    R = SwissRoll()
    u = torch.tensor([[0.3, 1.0], [40.0, 7.5], [R.length - 1e-3, 20.0]])
    J = torch.func.vmap(torch.func.jacfwd(lambda p: R.chart.embed(p[None])[0]))(u)
    assert torch.allclose(J.transpose(1, 2) @ J, torch.eye(2).expand(3, 2, 2), atol=1e-12)
    assert torch.allclose(R.chart.inverse(R.chart.embed(u)), u, atol=1e-11)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_radius(bad):
    with pytest.raises(ValueError, match="radius"):
        Sphere(bad)


def test_points_off_the_manifold_are_detected():
    S = Sphere(1.0)
    assert not S.contains(torch.tensor([[1.0, 1.0, 0.0]])).any()
    E = ClosedCurve.ellipse()
    assert not E.contains(torch.tensor([[0.0, 0.0]])).any()
    R = SwissRoll()
    assert not R.contains(torch.tensor([[0.0, 1.0, 0.0]])).any()


def test_open_curve_is_rejected():
    with pytest.raises(ValueError, match="not closed"):
        ClosedCurve(lambda t: torch.stack([t, t**2], -1))


def test_closed_curve_inverse_chart_is_forward_differentiable():
    E = ClosedCurve.trefoil()
    x = E.sample(3, torch.Generator().manual_seed(0))
    T = E.tangent_frame(x)[:, :, 0]
    J = torch.func.vmap(torch.func.jacfwd(lambda z: E.chart.inverse(z[None])[0]))(x)
    # d sigma / dx along the unit tangent is 1
    assert torch.allclose(torch.einsum("kin,kn->ki", J, T), torch.ones(3, 1), atol=1e-10)


def test_registry_builds_every_manifold_and_names_bad_parameters():
    for name in REGISTRY:
        assert isinstance(make_manifold(name), Manifold)
    with pytest.raises(ValueError, match=r"'swissroll' does not take \['radius'\]"):
        make_manifold("swissroll", radius=2.0)
    with pytest.raises(ValueError, match="unknown manifold 'nope'"):
        make_manifold("nope")
    assert make_manifold("sphere", radius=2.5).radius == 2.5
