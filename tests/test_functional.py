"""The continuum functional L: pointwise geometry, two routes to H, quadrature, limit integrand."""

import copy
import json
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gammalimit import (Circle, ClosedCurve, FlatTorus, Sphere, SwissRoll, continuum_loss, discrete_loss,
                        discrete_minus_limit, encoder_geometry, limit_integrand, limit_terms, sample_pairs)
from gammalimit import functional as F
from gammalimit import geometry as GEO
from gammalimit import penalties as P
from gammalimit.directional import directional_derivatives, geodesic_jet
from gammalimit.embeddings import scaled_identity

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


class Polynomial(torch.nn.Module):
    """``phi_a(x) = W1_a.x + x.W2_a x + (W3_a.x)^3`` with its ambient derivatives in closed form."""

    def __init__(self, n, l=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W1 = torch.randn(l, n, generator=g)
        self.W2 = 0.5 * torch.randn(l, n, n, generator=g)
        self.W3 = 0.3 * torch.randn(l, n, generator=g)

    def forward(self, x):
        return x @ self.W1.T + torch.einsum("kn,anp,kp->ka", x, self.W2, x) + (x @ self.W3.T) ** 3

    def jacobian(self, x):
        """``Dphi`` ``shape=[k, l, n]``."""
        sym = self.W2 + self.W2.transpose(1, 2)
        return self.W1 + torch.einsum("anp,kp->kan", sym, x) + 3 * (x @ self.W3.T)[:, :, None] ** 2 * self.W3

    def hessian(self, x):
        """``D^2 phi`` ``shape=[k, l, n, n]``."""
        sym = self.W2 + self.W2.transpose(1, 2)
        return sym + 6 * (x @ self.W3.T)[:, :, None, None] * torch.einsum("an,ap->anp", self.W3, self.W3)


def ambient_densities(phi, x, P, second_form):
    """Direction-averaged integrands from ambient derivatives, frame-free.

    ``P`` ``shape=[k, n, n]`` projects onto ``T_x M``; ``second_form(D)`` gives
    the term ``Dphi(II(u, w))`` as a bilinear form on ambient vectors
    ``shape=[k, l, n, n]``. Then ``B = P D^T D P - P`` and
    ``H = P D^2phi P + Dphi(II)``.
    """
    D, D2 = phi.jacobian(x), phi.hessian(x)
    B = P @ D.transpose(1, 2) @ D @ P - P
    H = P[:, None] @ D2 @ P[:, None] + second_form(D)
    m = int(round(float(torch.diagonal(P[0]).sum())))
    trB, trH = torch.diagonal(B, dim1=-2, dim2=-1).sum(-1), torch.diagonal(H, dim1=-2, dim2=-1).sum(-1)
    c = 1.0 / (m * (m + 2))
    dist = c * (2 * (B**2).sum((-1, -2)) + trB**2)
    bend = c * (2 * (H**2).sum((-1, -2, -3)) + (trH**2).sum(-1)) / 16
    return dist, bend


def sphere_reference(phi, R, lam, nz=48, nphi=96):
    """``L`` on the round sphere by Gauss-Legendre in ``z`` (area = R dz dphi), trapezoid in ``phi``,
    and the sphere's own second fundamental form ``II(u, w) = -<u, w> x / R^2``."""
    z, wz = np.polynomial.legendre.leggauss(nz)
    z, wz = torch.from_numpy(R * z), torch.from_numpy(wz / 2)
    ang = 2 * math.pi * torch.arange(nphi) / nphi
    Z, A = torch.meshgrid(z, ang, indexing="ij")
    rho = torch.sqrt(R**2 - Z**2)
    x = torch.stack([rho * torch.cos(A), rho * torch.sin(A), Z], -1).reshape(-1, 3)
    w = (wz[:, None] * torch.full((nphi,), 1.0 / nphi)).reshape(-1)
    P = torch.eye(3) - x[:, :, None] * x[:, None, :] / R**2

    def second_form(D):
        return -(D @ x[:, :, None] / R**2)[..., None] * P[:, None]

    dist, bend = ambient_densities(phi, x, P, second_form)
    return float(w @ dist), float(w @ bend)


def torus_reference(phi, radii, lam, n=40):
    """``L`` on the flat torus from ambient derivatives and the circles'
    second fundamental forms, trapezoid rule in both angles."""
    ang = 2 * math.pi * torch.arange(n) / n
    A, Bb = torch.meshgrid(ang, ang, indexing="ij")
    R1, R2 = radii
    x = torch.stack([R1 * torch.cos(A), R1 * torch.sin(A), R2 * torch.cos(Bb), R2 * torch.sin(Bb)], -1).reshape(-1, 4)
    blocks = []
    for i, R in enumerate(radii):
        xi = torch.zeros_like(x)
        xi[:, 2 * i : 2 * i + 2] = x[:, 2 * i : 2 * i + 2]
        mask = torch.zeros(4)
        mask[2 * i : 2 * i + 2] = 1
        Pi = torch.diag(mask) - xi[:, :, None] * xi[:, None, :] / R**2
        blocks.append((xi, Pi, R))
    P = blocks[0][1] + blocks[1][1]

    def second_form(D):
        return sum(-(D @ xi[:, :, None] / R**2)[..., None] * Pi[:, None] for xi, Pi, R in blocks)

    dist, bend = ambient_densities(phi, x, P, second_form)
    return float(dist.mean()), float(bend.mean())


MANIFOLDS = {
    "circle": lambda: Circle(1.3),
    "sphere": lambda: Sphere(0.9),
    "torus": lambda: FlatTorus((1.0, 1.7)),
    "swissroll": lambda: SwissRoll(height=5.0),
    "ellipse": lambda: ClosedCurve.ellipse(2.0, 1.0),
}


# --------------------------------------------------------------------------
# pointwise geometry


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_chart_and_geodesic_routes_agree(name):
    M = MANIFOLDS[name]()
    phi = Polynomial(M.ambient_dim, seed=1)
    pairs = sample_pairs(M, 64, 0.01, seed=3)
    vBv_c, Hvv_c = directional_derivatives(phi, M, pairs.x, pairs.v, route="chart")
    vBv_g, Hvv_g = directional_derivatives(phi, M, pairs.x, pairs.v, route="geodesic")
    scale = float(Hvv_c.abs().max())
    assert float((vBv_c - vBv_g).abs().max()) <= 1e-12 * float(vBv_c.abs().max() + 1)
    assert float((Hvv_c - Hvv_g).abs().max()) <= 1e-12 * scale


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), theta=st.floats(0.05, math.pi - 0.05), ang=st.floats(0, 2 * math.pi),
       radius=st.floats(0.3, 3.0))
def test_sphere_geometry_matches_ambient_formulas(seed, theta, ang, radius):
    """B and H in the manifold's frame from the chart route equal the
    extrinsic formulas ``B = E^T D^T D E - I``, ``H = E^T D^2phi E + Dphi(II)``."""
    M = Sphere(radius)
    phi = Polynomial(3, l=5, seed=seed)
    x = M.chart.embed(torch.tensor([[theta, ang]]))
    geo = encoder_geometry(phi, M, x)
    E = M.tangent_frame(x)
    D, D2 = phi.jacobian(x), phi.hessian(x)
    B = E.transpose(1, 2) @ D.transpose(1, 2) @ D @ E - torch.eye(2)
    H = E.transpose(1, 2)[:, None] @ D2 @ E[:, None] - (D @ x[0] / radius**2)[:, :, None, None] * torch.eye(2)
    assert torch.allclose(geo.distortion, B, rtol=1e-11, atol=1e-11 * float(B.abs().max()))
    assert torch.allclose(geo.hessian, H, rtol=1e-11, atol=1e-11 * float(H.abs().max()))
    assert torch.allclose(geo.jacobian, D @ E, rtol=1e-12, atol=1e-12)


def test_hessian_split_is_orthogonal_and_normal_part_is_second_fundamental_form():
    M = Sphere(1.0)
    x = M.sample(50, torch.Generator().manual_seed(0))
    # isometric phi: H is all normal, and equals II(e_a, e_b) = -delta_ab x
    geo = encoder_geometry(scaled_identity(M, 1.0), M, x)
    assert float(geo.hessian_tangential.abs().max()) < 1e-14
    assert torch.allclose(geo.hessian_normal, -x[:, :, None, None] * torch.eye(2), atol=1e-14)
    # generic phi: P_T H lies in the image of Dphi, P_N H is orthogonal to it
    geo = encoder_geometry(Polynomial(3, l=5), M, x)
    J = geo.jacobian
    normal_dot = torch.einsum("kai,kaxy->kixy", J, geo.hessian_normal)
    assert float(normal_dot.abs().max()) < 1e-12 * float(geo.hessian.abs().max())
    coeff = torch.linalg.lstsq(J, geo.hessian_tangential.flatten(2)).solution
    assert torch.allclose(J @ coeff, geo.hessian_tangential.flatten(2), atol=1e-12)
    assert torch.allclose(geo.hessian_tangential + geo.hessian_normal, geo.hessian, atol=0)
    d = geo.densities()
    assert torch.allclose(d["bending_tangential"] + d["bending_normal"], d["bending"], rtol=1e-13)


def test_direction_average_matches_monte_carlo_over_directions():
    A = torch.tensor([[[1.0, 0.3, -0.2], [0.3, -0.5, 0.7], [-0.2, 0.7, 0.4]]])
    v = torch.randn(400_000, 3, generator=torch.Generator().manual_seed(0))
    v = v / v.norm(dim=1, keepdim=True)
    mc = ((v @ A[0] * v).sum(1) ** 2)
    assert abs(float(P.direction_average(A)) - float(mc.mean())) < 4 * float(mc.std()) / math.sqrt(len(v))


# --------------------------------------------------------------------------
# the functional by quadrature


def test_quadrature_integrates_the_volume():
    for name, make in MANIFOLDS.items():
        M = make()
        u, w = F.chart_quadrature(M.chart, (20,) * M.dim)
        assert float(w @ M.chart.volume_weight(u)) == pytest.approx(M.chart.volume, rel=1e-13), name


def test_continuum_loss_on_sphere_matches_independent_computation():
    R, lam = 0.9, 0.7
    phi = Polynomial(3, seed=2)
    L = continuum_loss(phi, Sphere(R), lam=lam)
    dist, bend = sphere_reference(phi, R, lam)
    assert L.converged
    assert L.distortion == pytest.approx(dist, rel=1e-11)
    assert L.bending == pytest.approx(bend, rel=1e-11)
    assert L.total == pytest.approx(dist + lam * bend, rel=1e-11)
    assert L.bending_normal + L.bending_tangential == pytest.approx(L.bending, rel=1e-10)
    ball = continuum_loss(phi, Sphere(R), lam=lam, strategy="ball")
    assert ball.total == pytest.approx(L.total / 3, rel=1e-12)  # kappa = m / (m + 4) = 1/3


def test_continuum_loss_on_flat_torus_matches_independent_computation():
    radii, lam = (1.0, 1.7), 0.4
    phi = Polynomial(4, seed=5)
    L = continuum_loss(phi, FlatTorus(radii), lam=lam)
    dist, bend = torus_reference(phi, radii, lam)
    assert L.distortion == pytest.approx(dist, rel=1e-11)
    assert L.bending == pytest.approx(bend, rel=1e-11)


def test_error_estimate_bounds_the_error_of_a_coarse_rule():
    phi = Polynomial(3, seed=2)
    converged = continuum_loss(phi, Sphere(0.9), lam=0.7)
    for nodes in (4, 6, 8):
        coarse = continuum_loss(phi, Sphere(0.9), lam=0.7, nodes=nodes)
        assert coarse.n_nodes == (2 * nodes) ** 2
        assert abs(coarse.total - converged.total) <= coarse.error
        assert coarse.error > 1e-14  # a real estimate, not zero


def test_chunking_and_float32_modules_do_not_change_the_result(monkeypatch):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)).float()
    M = FlatTorus((1.0, 1.0))
    ref = continuum_loss(copy.deepcopy(net).double(), M, lam=0.3, nodes=12)
    monkeypatch.setattr(F, "CHUNK", 37)
    assert continuum_loss(net, M, lam=0.3, nodes=12).total == pytest.approx(ref.total, rel=1e-14)
    assert next(net.parameters()).dtype == torch.float32  # the module itself is untouched


def test_wide_latent_space_on_the_circle():
    """``l = 3000`` (an image-sized latent space): the split never forms an
    ``l x l`` projector. Linear ``phi = W x`` on a circle of radius ``R``:
    ``v.Bv = |W t|^2 - 1`` and ``H(v,v) = W II(v,v) = -W x / R^2``."""
    R, lam = 1.4, 0.3
    W = torch.randn(3000, 2, generator=torch.Generator().manual_seed(0)) / 40
    L = continuum_loss(lambda x: x @ W.T, Circle(R), lam=lam)
    ang = 2 * math.pi * torch.arange(64) / 64
    t = torch.stack([-torch.sin(ang), torch.cos(ang)], -1)
    dist = ((((t @ W.T) ** 2).sum(1) - 1) ** 2).mean()
    bend = ((R * t.flip(1) * torch.tensor([-1.0, 1.0]) @ W.T / R**2) ** 2).sum(1).mean() / 16
    assert L.distortion == pytest.approx(float(dist), rel=1e-12)
    assert L.bending == pytest.approx(float(bend), rel=1e-12)
    assert L.bending_tangential + L.bending_normal == pytest.approx(L.bending, rel=1e-12)


# --------------------------------------------------------------------------
# the per-pair limit integrand, and L_delta -> L


def test_limit_integrand_uses_the_drawn_pairs():
    M = Sphere(1.0)
    phi = Polynomial(3, seed=4)
    pairs = sample_pairs(M, 4000, 0.2, strategy="ball", seed=7)
    terms = limit_terms(phi, M, pairs)
    vBv, Hvv = directional_derivatives(phi, M, pairs.x, pairs.v)
    assert torch.allclose(terms.distortion, pairs.r**4 * vBv**2, rtol=1e-14)
    assert torch.allclose(limit_integrand(phi, M, pairs, lam=0.5), terms.total(0.5), rtol=1e-14)
    # its mean estimates L
    L = continuum_loss(phi, M, lam=0.5, strategy="ball")
    values = limit_integrand(phi, M, pairs, lam=0.5)
    assert abs(float(values.mean()) - L.total) < 4 * float(values.std()) / math.sqrt(len(values))


@pytest.mark.parametrize("name", ["sphere", "torus"])
def test_discrete_loss_converges_to_continuum_loss(name):
    """At delta = 1e-3: |L_delta - L| within O(delta^2) + 4 standard errors, for
    plain Monte Carlo and for the common-random-number difference."""
    M = MANIFOLDS[name]()
    phi = Polynomial(M.ambient_dim, seed=6)
    lam, delta = 0.5, 1e-3
    L = continuum_loss(phi, M, lam=lam)
    est = discrete_loss(phi, M, delta=delta, lam=lam, n=20_000, seed=1)
    slack = 10 * delta**2 * L.total
    assert abs(est.total - L.total) <= slack + 4 * est.stderr
    gap = discrete_minus_limit(phi, M, delta=delta, lam=lam, n=20_000, seed=1, antithetic=True)
    assert abs(gap.total) <= slack + 4 * gap.stderr
    assert gap.stderr < 1e-4 * est.stderr  # common random numbers remove the MC noise floor
    assert abs(gap.limit_total - L.total) <= 4 * gap.limit_stderr


def test_gap_is_second_order_with_antithetic_pairs():
    M = Sphere(1.0)
    phi = Polynomial(3, seed=8)
    gaps = [discrete_minus_limit(phi, M, delta=d, lam=0.5, n=4000, antithetic=True, seed=2).total
            for d in (0.08, 0.04)]
    assert gaps[0] / gaps[1] == pytest.approx(4.0, rel=0.1)


# --------------------------------------------------------------------------
# bad input


def test_bad_encoders_get_clear_errors():
    M = Sphere(1.0)
    u = torch.tensor([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(ValueError, match="ReLU"):
        continuum_loss(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU()), M, lam=1.0)
    with pytest.raises(TypeError, match="callable"):
        continuum_loss(3.0, M, lam=1.0)
    with pytest.raises(TypeError, match="torch.func"):
        encoder_geometry(lambda x: torch.from_numpy(np.sin(x.numpy())), M, u=u)
    with pytest.raises(ValueError, match="central differences"):
        encoder_geometry(lambda x: x.detach() ** 2 + 0 * x, M, u=u)
    with pytest.raises(ValueError, match="latent dimension"):
        continuum_loss(lambda x: x[:, :1], M, lam=1.0)
    c = float(M.chart.embed(u)[0, 0])
    with pytest.raises(ValueError, match="non-finite first or second derivatives"):
        encoder_geometry(lambda x: x * (x[:, :1] - c).abs() ** 0.5, M, u=u)
    x = M.chart.embed(u)
    with pytest.raises(ValueError, match="non-finite derivatives along the geodesic"):
        geodesic_jet(lambda x: x * (x[:, :1] - c).abs() ** 0.5, M, x, M.tangent_frame(x)[:, :, 0], offset=0)


def test_points_outside_the_domain_are_errors_not_nan():
    M = Sphere(1.0)
    phi = Polynomial(3)
    with pytest.raises(ValueError, match="outside the chart domain"):
        encoder_geometry(phi, M, u=torch.tensor([[3.5, 0.0]]))
    with pytest.raises(ValueError, match="not on"):
        encoder_geometry(phi, M, torch.tensor([[0.0, 0.0, 1.5]]))
    with pytest.raises(ValueError, match="singular"):
        encoder_geometry(phi, M, torch.tensor([[0.0, 0.0, 1.0]]))  # the pole of polar coordinates
    pole, v = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.isfinite(directional_derivatives(phi, M, pole, v, route="geodesic")[1]).all()
    with pytest.raises(ValueError, match="not tangent"):
        directional_derivatives(phi, M, pole * 0 + torch.tensor([[1.0, 0, 0]]), v)
    roll = SwissRoll(height=5.0)
    with pytest.raises(ValueError, match="outside the chart domain"):
        encoder_geometry(phi, roll, u=torch.tensor([[-1.0, 2.0]]))
    with pytest.raises(ValueError, match="route"):
        directional_derivatives(phi, M, pole, v, route="finite-differences")
    with pytest.raises(ValueError, match="nodes"):
        continuum_loss(phi, M, lam=1.0, nodes=(8,))
    with pytest.raises(ValueError, match="lam"):
        continuum_loss(phi, M, lam=-1.0)


# --------------------------------------------------------------------------
# command line


def test_cli_limit_prints_L_and_its_parts(capsys):
    from gammalimit.cli import main

    assert main(["limit", "--manifold", "torus", "--scale", "0.8,1.1", "--lam", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    B1, B2 = 0.64 - 1, 1.21 - 1
    expected = (3 * B1**2 + 3 * B2**2 + 2 * B1 * B2) / 8 + 0.5 * 3 / 128 * (0.64 + 1.21)
    assert out["total"] == pytest.approx(expected, rel=1e-12)
    assert out["total"] == pytest.approx(out["L_exact"]["total"], rel=1e-12)
    assert out["bending_normal"] + out["bending_tangential"] == pytest.approx(out["bending"], rel=1e-12)
    for key in ("distortion", "error", "n_nodes", "strategy"):
        assert key in out
    assert main(["limit", "--manifold", "sphere", "--scale", "0.8", "--lam", "-1"]) == 2
    assert "lam" in capsys.readouterr().err


def test_cli_loss_also_reports_L(capsys):
    from gammalimit.cli import main

    assert main(["loss", "--manifold", "sphere", "--scale", "0.9", "--delta", "0.01", "--n", "2000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["L"]["total"] == pytest.approx(out["L_exact"]["total"], rel=1e-12)
    assert main(["loss", "--manifold", "ellipse", "--delta", "0.05", "--n", "2000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["total"] - out["L"]["total"]) < 4 * out["stderr"] + 0.05 * out["L"]["total"]


def test_max_nodes_holds_from_the_first_comparison_on_a_4d_chart():
    # a 4-D chart: the default start (16^4, then 32^4 nodes) would pass any sensible cap at once
    from gammalimit.manifolds import Sprite

    S = Sprite(n_pixels=32, sigmas=(0.08, 0.04), scales=(1.0, 1.4), shift=0.04)
    W = torch.randn(S.ambient_dim, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tolerance is not met on 4^4 nodes: a warning says so
        result = continuum_loss(lambda x: x @ W, S, lam=0.1, max_nodes=256)
    assert result.nodes == (4, 4, 4, 4) and result.n_nodes <= 256
    with pytest.raises(ValueError, match=r"max_nodes must be an integer >= 256"):
        continuum_loss(lambda x: x @ W, S, lam=0.1, max_nodes=100)
