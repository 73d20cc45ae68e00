"""Image manifolds with exact geometry (docs/theory.md, section 7): the protocol
properties, the inverse chart, and the metric's discretisation error."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import hessian, jacfwd, vmap

from gammalimit import PeriodicBlob, RotatingEllipse, TranslatingBlob, discrete_loss, sample_pairs
from gammalimit.manifolds import Manifold
from gammalimit.manifolds.images import periodic_blob_metric_scale
from geodesic_checks import check_exp_dist_midpoint, random_geodesic_starts

DT = torch.float64
MANIFOLDS = {
    "blob": TranslatingBlob(),
    "periodic": PeriodicBlob(),
    "ellipse": RotatingEllipse(),
}
NAMES = sorted(MANIFOLDS)

settings.register_profile("images", max_examples=8, deadline=None)


def _chart_points(M, k, seed):
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(M.chart.lower, dtype=DT), torch.tensor(M.chart.upper, dtype=DT)
    return lo + (hi - lo) * torch.rand(k, M.dim, generator=g, dtype=DT)


def _chart_gap(M, u, w):
    """Chart differences, wrapped for periodic coordinates."""
    d = w - u
    for i, p in enumerate(M.chart.periodic):
        if p:
            P = M.chart.upper[i] - M.chart.lower[i]
            d[:, i] = torch.remainder(d[:, i] + P / 2, P) - P / 2
    return d


@pytest.mark.parametrize("name", NAMES)
def test_protocol(name):
    M = MANIFOLDS[name]
    assert isinstance(M, Manifold)
    assert M.chart.dim == M.dim
    assert M.ambient_dim == M.n_pixels**2 == 32 * 32
    x = M.sample(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, M.ambient_dim) and x.dtype == torch.float64
    assert M.pixels(x).shape == (8, 32, 32)
    vol = torch.sqrt(torch.linalg.det(M.chart.metric(torch.zeros(1, M.dim, dtype=DT))))[0]
    box = math.prod(h - l for l, h in zip(M.chart.lower, M.chart.upper))
    assert M.chart.volume == pytest.approx(float(vol) * box, rel=1e-14)


@pytest.mark.parametrize("n_pixels", [32, 64])
@pytest.mark.parametrize("name", NAMES)
def test_inverse_recovers_parameters(name, n_pixels):
    M = type(MANIFOLDS[name])(n_pixels)
    u = _chart_points(M, 256, 1)
    w = M.chart.inverse(M.chart.embed(u))
    assert w.shape == u.shape
    assert _chart_gap(M, u, w).abs().max() < 1e-14
    assert M.contains(M.chart.embed(u)).all()


@pytest.mark.parametrize("name", NAMES)
@settings(settings.get_profile("images"))
@given(seed=st.integers(0, 2**31 - 1), frac=st.floats(1e-4, 0.9))
def test_exp_dist_midpoint(name, seed, frac):
    M = MANIFOLDS[name]
    check_exp_dist_midpoint(M, *random_geodesic_starts(M, seed, frac, 32), half_step_with_boundary=True)


def test_exact_distances_and_midpoints():
    B = MANIFOLDS["blob"]
    t = torch.tensor([[0.35, 0.4], [0.5, 0.6]], dtype=DT)
    x, y = B.render(t[:1]), B.render(t[1:])
    assert B.dist(x, y).item() == pytest.approx(math.sqrt(math.pi / 2) * math.hypot(0.15, 0.2), rel=1e-14)
    assert torch.allclose(B.midpoint(x, y), B.render(t.mean(0, keepdim=True)), atol=1e-15)

    P = MANIFOLDS["periodic"]  # the shorter way round wraps across the border
    x, y = P.render(torch.tensor([[0.05, 0.5]], dtype=DT)), P.render(torch.tensor([[0.95, 0.45]], dtype=DT))
    assert P.dist(x, y).item() == pytest.approx(math.sqrt(P.metric_scale) * math.hypot(0.1, 0.05), rel=1e-13)
    assert torch.allclose(P.midpoint(x, y), P.render(torch.tensor([[0.0, 0.475]], dtype=DT)), atol=1e-15)

    E = MANIFOLDS["ellipse"]  # angles mod pi: 0.1 and pi - 0.1 are 0.2 apart
    x, y = E.render(torch.tensor([0.1], dtype=DT)), E.render(torch.tensor([math.pi - 0.1], dtype=DT))
    assert E.dist(x, y).item() == pytest.approx(math.sqrt(E.metric_scale) * 0.2, rel=1e-13)
    assert torch.allclose(E.midpoint(x, y), E.render(torch.tensor([0.0], dtype=DT)), atol=1e-15)
    assert E.length == pytest.approx(math.pi * math.sqrt(E.metric_scale))
    assert E.injectivity_radius == pytest.approx(E.length / 2)


# Measured relative errors |J^T J - g| / |g| (see the class docstrings):
#   blob 1.6e-11 / 3.2e-11, periodic 1.1e-15 / 1.4e-15, ellipse 1.0e-9 / 7.3e-11
# at N = 32 / 64; the bounds leave a factor of about three.
METRIC_ERROR_BOUND = {
    ("blob", 32): 1e-10, ("blob", 64): 1e-10,
    ("periodic", 32): 1e-14, ("periodic", 64): 1e-14,
    ("ellipse", 32): 3e-9, ("ellipse", 64): 3e-10,
}


@pytest.mark.parametrize("n_pixels", [32, 64])
@pytest.mark.parametrize("name", NAMES)
def test_metric_discretisation_error(name, n_pixels):
    M = type(MANIFOLDS[name])(n_pixels)
    err = M.metric_discretisation_error()
    assert err < METRIC_ERROR_BOUND[name, n_pixels]


def test_exact_metric_closed_forms():
    # the blob on R^2: (pi/2) I for every sigma (edge cut-off aside)
    for sigma in (0.04, 0.06, 0.08):
        assert TranslatingBlob(64, sigma, 5.0).metric_discretisation_error() < 1e-9
    # the rotating ellipse's speed^2 against the rendered derivative
    for sigmas in ((0.1, 0.05), (0.09, 0.06), (0.1, 0.03)):
        E = RotatingEllipse(64, sigmas)
        s1, s2 = sigmas
        assert E.metric_scale == pytest.approx(math.pi * (s1**2 - s2**2) ** 2 / (4 * s1 * s2), rel=1e-15)
        assert E.metric_discretisation_error() < 1e-8
    # periodised blob: lattice sum against the Fourier series (Parseval)
    for sigma in (0.07, 0.1, 0.2, 0.25):
        k = torch.arange(-60, 61, dtype=torch.float64)
        e = torch.exp(-4 * math.pi**2 * sigma**2 * k**2)
        fourier = 16 * math.pi**4 * sigma**4 * float((k**2 * e).sum() * e.sum())
        assert periodic_blob_metric_scale(sigma) == pytest.approx(fourier, rel=1e-14)
        assert PeriodicBlob(32, sigma).metric_discretisation_error() < 1e-13
    # flat and equal to pi/2 up to an exponentially small error
    assert abs(periodic_blob_metric_scale(0.07) / (math.pi / 2) - 1) < 1e-15
    assert periodic_blob_metric_scale(0.1) / (math.pi / 2) - 1 == pytest.approx(-1.33e-9, rel=0.01)


@pytest.mark.parametrize("name", NAMES)
def test_frame_tangent_and_nearly_orthonormal(name):
    M = MANIFOLDS[name]
    x = M.sample(16, torch.Generator().manual_seed(3))
    E = M.tangent_frame(x)
    assert E.shape == (16, M.ambient_dim, M.dim)
    gram = E.transpose(1, 2) @ E  # identity up to the metric's discretisation error
    assert torch.allclose(gram, torch.eye(M.dim, dtype=DT).expand_as(gram), atol=1e-8, rtol=0)
    h = 1e-6
    for i in range(M.dim):
        y = M.exp(x, h * E[:, :, i])
        assert torch.allclose((y - x) / h, E[:, :, i], atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_embed_differentiable_by_torch_func(name):
    M = MANIFOLDS[name]
    u = _chart_points(M, 3, 5)

    def f(v):
        return M.chart.embed(v[None])[0]

    J = vmap(jacfwd(f))(u)
    assert torch.allclose(J, M.jacobian(u if M.dim == 2 else u[:, 0]), atol=1e-14)
    W = torch.randn(4, M.ambient_dim, generator=torch.Generator().manual_seed(0), dtype=DT)
    H = vmap(hessian(lambda v: W @ f(v)))(u)
    assert H.shape == (3, 4, M.dim, M.dim) and torch.isfinite(H).all()


def test_off_manifold_points_are_rejected():
    for M in MANIFOLDS.values():
        x = M.sample(2, torch.Generator().manual_seed(7))
        chord_mid = 0.5 * (x[:1] + x[1:])
        assert not M.contains(chord_mid).any()
        assert not M.contains(torch.zeros(1, M.ambient_dim, dtype=DT)).any()
        assert not M.contains(1.01 * x).any()


def test_blob_boundary_policy():
    B = MANIFOLDS["blob"]
    lo, hi = B.centre_bounds
    x = B.render(torch.tensor([[hi - 0.01, 0.5]], dtype=DT))
    e1 = B.tangent_frame(x)[:, :, 0]
    assert not B.contains(B.exp(x, 0.05 * e1)).any()  # leaves the square
    assert B.contains(B.exp(x, -0.05 * e1)).all()
    pairs = sample_pairs(B, 512, 0.2, seed=1, antithetic=True)
    assert pairs.n_rejected > 0
    assert B.contains(pairs.y).all() and B.contains(pairs.midpoint).all()


@pytest.mark.parametrize("name", NAMES)
def test_discrete_loss_runs(name):
    M = MANIFOLDS[name]
    W = torch.randn(4, M.ambient_dim, generator=torch.Generator().manual_seed(0), dtype=DT) / math.sqrt(M.ambient_dim)

    def phi(x):
        return x @ W.T

    est = discrete_loss(phi, M, delta=0.3 * M.injectivity_radius, lam=0.1, n=256, antithetic=True)
    assert math.isfinite(est.total) and est.total >= 0 and est.n == 256


def test_bad_parameters():
    with pytest.raises(ValueError, match="n_pixels"):
        TranslatingBlob(4)
    with pytest.raises(ValueError, match="sigma"):
        TranslatingBlob(32, 0.2)  # square of centres empty
    with pytest.raises(ValueError, match="sigma"):
        TranslatingBlob(32, 0.01)  # under one pixel
    with pytest.raises(ValueError, match="margin"):
        TranslatingBlob(32, 0.06, 2.0)
    with pytest.raises(ValueError, match="sigma"):
        PeriodicBlob(32, 0.3)
    with pytest.raises(ValueError, match="sigma_1 > sigma_2"):
        RotatingEllipse(32, (0.05, 0.1))
    with pytest.raises(ValueError, match="sigma_1"):
        RotatingEllipse(32, (0.2, 0.05))
    # parameters of another dtype render in float64
    assert MANIFOLDS["ellipse"].render(torch.tensor([0.5], dtype=torch.float32)).dtype == DT
    with pytest.raises(ValueError, match="shape"):
        MANIFOLDS["blob"].contains(torch.zeros(3, 100, dtype=DT))
