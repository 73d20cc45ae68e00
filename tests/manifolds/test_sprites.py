"""The plus-shaped sprite (gammalimit.manifolds.sprites): rendering, Jacobian,
inverse chart, the metric in factors and in the flat chart, and its geometry."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gammalimit import discrete_loss
from gammalimit.manifolds import Manifold, Sprite
from gammalimit.manifolds.sprites import plus_metric_constants
from geodesic_checks import check_exp_dist_midpoint, random_geodesic_starts

DT = torch.float64
M = Sprite()
#: a coarser grid with a wider sprite (the one studies/beyond.py trains on), and the default widths there
COARSE = {"wide-32": Sprite(32, sigmas=(0.08, 0.04), scales=(1.0, 1.4), angle=0.5, shift=0.04),
          "default-32": Sprite(32)}


def _chart_points(k, seed, M=M):
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(M.chart.lower, dtype=DT), torch.tensor(M.chart.upper, dtype=DT)
    return lo + (hi - lo) * torch.rand(k, 4, generator=g, dtype=DT)


def test_protocol_and_box():
    assert isinstance(M, Manifold) and M.dim == 4 and M.ambient_dim == 64 * 64
    x = M.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 4096) and x.dtype == DT
    assert M.contains(x).all()
    assert M.margin >= 5.9  # the border at least 5.9 arm lengths away: tails below round-off


def test_jacobian_matches_finite_differences():
    """Fourth-order central differences, step 1e-5, column by column."""
    u = _chart_points(3, 1)
    J = M.jacobian(u)
    h = 1e-5
    for i in range(4):
        e = torch.zeros(4, dtype=DT)
        e[i] = h
        fd = (-M.render(u + 2 * e) + 8 * M.render(u + e) - 8 * M.render(u - e) + M.render(u - 2 * e)) / (12 * h)
        assert float((fd - J[:, :, i]).abs().max()) < 1e-10 * float(J[:, :, i].abs().max())


def test_factor_metric_is_diag_m_m_as2_b():
    """In the factors (t1, t2, theta, s) the rendered Gram matrix is
    diag(m, m, a s^2, b): not conformal, which is why the chart is (t, w)."""
    m, a, b = plus_metric_constants(*M.sigmas)
    f = M.factors(_chart_points(4, 2))
    J = torch.func.vmap(torch.func.jacfwd(lambda v: M.render(M.chart_of_factors(v[None]))[0]))(f)
    G = J.transpose(1, 2) @ J
    expected = torch.zeros_like(G)
    expected[:, 0, 0] = expected[:, 1, 1] = m
    expected[:, 2, 2] = a * f[:, 3] ** 2
    expected[:, 3, 3] = b
    assert torch.allclose(G, expected, atol=1e-13 * m, rtol=0)
    assert a * f[0, 3] ** 2 < 0.1 * b < 0.01 * m  # far from c I


def test_chart_metric_is_m_times_identity_to_round_off():
    assert M.metric_discretisation_error() < 1e-14
    assert M.metric_discretisation_error(_chart_points(8, 3)) < 1e-14
    # on a coarse grid the pixel quadrature shows
    assert 1e-5 < Sprite(20).metric_discretisation_error() < 1e-2


def test_metric_constants_scale_with_the_size():
    """In two dimensions int |grad f|^2 is scale invariant; a and b carry q^2: size^2."""
    m1, a1, b1 = plus_metric_constants(0.05, 0.03125)
    m2, a2, b2 = plus_metric_constants(0.1, 0.0625)
    assert (m2, a2, b2) == pytest.approx((m1, 4 * a1, 4 * b1), rel=1e-12)


@pytest.mark.parametrize("n_pixels", [32, 64])
def test_params_of_inverts_render(n_pixels):
    S = Sprite(n_pixels)
    u = _chart_points(6, 4, S)
    assert torch.allclose(S.params_of(S.render(u)), u, atol=1e-13, rtol=0)
    f = S.factors(u)
    assert torch.allclose(S.chart_of_factors(f), u, atol=1e-15, rtol=0)
    assert (f[:, 2].abs() <= S.angle + 1e-12).all()
    assert ((f[:, 3] >= S.scales[0] - 1e-12) & (f[:, 3] <= S.max_scale + 1e-12)).all()


def test_dist_exp_midpoint_are_consistent():
    g = torch.Generator().manual_seed(5)
    x = M.sample(6, g)
    v = M.random_unit_tangent(x, g)
    t = 0.3 * M.injectivity_radius
    y = M.exp(x, t * v)
    keep = M.contains(y)
    assert keep.any()
    x, y = x[keep], y[keep]
    d = M.dist(x, y)
    assert torch.allclose(d, torch.full_like(d, t), atol=1e-13, rtol=0)
    mid = M.midpoint(x, y)
    assert torch.allclose(M.dist(x, mid), d / 2, atol=1e-13, rtol=0)
    assert torch.allclose(M.dist(mid, y), d / 2, atol=1e-13, rtol=0)
    # the distance is that of the flat chart: sqrt(m) |u - u'|
    du = M.params_of(x) - M.params_of(y)
    assert torch.allclose(d, math.sqrt(M.metric_scale) * torch.linalg.vector_norm(du, dim=-1), atol=1e-14)


def test_short_chords_approach_the_geodesic_distance():
    """|x - y| = d (1 - O(d^2)): the rendered images realise the metric."""
    u = _chart_points(4, 6)
    step = torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=DT) / 2 * 1e-4
    x, y = M.render(u), M.render(u + step)
    d = math.sqrt(M.metric_scale) * float(torch.linalg.vector_norm(step))
    chord = torch.linalg.vector_norm(x - y, dim=-1)
    assert torch.allclose(chord, torch.full_like(chord, d), rtol=1e-3)


@pytest.mark.parametrize("kwargs, message", [
    ({"sigmas": (0.03, 0.05)}, "s1 > s2"),
    ({"scales": (1.5, 1.0)}, "s_lo < s_hi"),
    ({"angle": 0.8}, "quarter turn"),
    ({"shift": 0.3}, "does not fit"),
    ({"sigmas": (0.02, 0.01)}, "at least one pixel"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Sprite(**kwargs)


def test_closed_form_jacobian_matches_autodiff():
    u = _chart_points(5, 7)
    J_auto = torch.func.vmap(torch.func.jacfwd(lambda v: M.render(v[None])[0]))(u)
    J = M.jacobian(u)
    assert J.shape == (5, M.ambient_dim, 4)
    assert float((J - J_auto).abs().max()) < 1e-12 * float(J_auto.abs().max())
    x, frame = M._render_and_frame(u)  # rendered in place, in another order: equal to round-off
    assert torch.allclose(x, M.render(u), atol=1e-15, rtol=0)
    assert torch.allclose(M._render_samples(u), M.render(u), atol=1e-15, rtol=0)
    assert torch.allclose(frame, J / math.sqrt(M.metric_scale), atol=0, rtol=1e-15)


def test_flat_coordinates_are_an_isometry():
    """Euclidean distances of the flat coordinates are the geodesic distances."""
    g = torch.Generator().manual_seed(8)
    x, y = M.sample(10, g), M.sample(10, g)
    fx, fy = M.flat_coordinates(x), M.flat_coordinates(y)
    assert fx.shape == (10, 4)
    assert torch.allclose(torch.linalg.vector_norm(fx - fy, dim=-1), M.dist(x, y), atol=1e-13, rtol=0)


@pytest.mark.parametrize("name", sorted(COARSE))
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), frac=st.floats(1e-4, 0.9))
def test_exp_dist_midpoint_property(name, seed, frac):
    M = COARSE[name]
    check_exp_dist_midpoint(M, *random_geodesic_starts(M, seed, frac, 16), half_step_with_boundary=True)


@pytest.mark.parametrize("name", sorted(COARSE))
def test_frame_tangent_and_orthonormal_up_to_the_discretisation(name):
    S = COARSE[name]
    x = S.sample(16, torch.Generator().manual_seed(3))
    E = S.tangent_frame(x)
    assert E.shape == (16, S.ambient_dim, 4)
    # the frame is J / sqrt(m): orthonormal up to the pixel quadrature's metric error
    err = S.metric_discretisation_error(S.params_of(x))
    gram = E.transpose(1, 2) @ E
    assert float(torch.linalg.matrix_norm(gram - torch.eye(4, dtype=DT), ord=2).max()) <= err + 1e-14
    # the random unit tangent is unit in the metric, so its ambient length is off by at most err
    v = S.random_unit_tangent(x, torch.Generator().manual_seed(4))
    assert (torch.linalg.vector_norm(v, dim=-1) - 1).abs().max() <= err + 1e-14
    # tangent: (exp(x, h e) - x) / h = e + O(h |II|); the sprite's curvature, ~ 1/(arm width), is
    # some 20x the blob's, so the step is 1e-7 rather than test_images.py's 1e-6
    h = 1e-7
    for i in range(4):
        y = S.exp(x, h * E[:, :, i])
        assert torch.allclose((y - x) / h, E[:, :, i], atol=1e-5)


def test_discretisation_error_of_the_coarse_sprites():
    """The wide sprite keeps the metric error near 1e-7 on 32 pixels at the box corners and centre,
    and below about 1e-5 at other sub-pixel positions (measured 1.0e-5 at most over 2000 random chart
    points); the default widths (arm width one pixel at N = 32) do not: about 8e-4."""
    S = COARSE["wide-32"]
    assert S.metric_discretisation_error() < 5e-7
    assert S.metric_discretisation_error(_chart_points(200, 11, S)) < 3e-5
    assert 1e-4 < COARSE["default-32"].metric_discretisation_error() < 3e-3


def test_discrete_loss_runs_on_the_sprite():
    S = COARSE["wide-32"]
    W = torch.randn(5, S.ambient_dim, generator=torch.Generator().manual_seed(0), dtype=DT)
    est = discrete_loss(lambda x: x @ W.T, S, delta=0.3 * S.injectivity_radius, lam=0.1, n=128, antithetic=True)
    assert math.isfinite(est.total) and est.total > 0 and est.n == 128
    # the flat coordinates are an isometric affine encoder: L_delta = 0 up to round-off
    flat = discrete_loss(S.flat_coordinates, S, delta=0.3 * S.injectivity_radius, lam=0.1, n=64, antithetic=True)
    assert flat.total < 1e-20


def test_injectivity_radius_keeps_steps_off_the_quarter_turned_copy():
    """A chart point turned by a quarter turn renders the same image; the injectivity radius
    stays below the distance to that copy, which shrinks as angle approaches pi/4."""
    S = COARSE["wide-32"]
    u = _chart_points(4, 9, S)
    f = S.factors(u)
    f[:, 2] += math.pi / 2
    turned = S.chart_of_factors(f)
    assert torch.allclose(S.render(turned), S.render(u), atol=1e-15)
    lo, hi = S._box()
    gap = math.sqrt(S.metric_scale) * torch.linalg.vector_norm(turned - turned.clamp(lo, hi), dim=-1)
    assert (gap >= S.alias_distance).all() and S.injectivity_radius <= S.alias_distance
    near = Sprite(32, sigmas=(0.08, 0.04), scales=(1.0, 1.4), angle=0.78, shift=0.04)
    assert near.injectivity_radius == near.alias_distance < 0.1 * S.injectivity_radius
