"""Symbolic derivations: the constants of docs/theory.md, derived, and compared with the numerics."""

import math

import numpy as np
import pytest
import sympy as sp
import torch
from torch.func import jvp

from gammalimit import Circle, sample_pairs
from gammalimit import derivatives as D
from gammalimit import functional as F
from gammalimit import geometry as GEO
from gammalimit import penalties as P
from gammalimit import symbolic as S
from gammalimit.directional import directional_jet
from gammalimit.loss import pair_terms
from gammalimit.manifolds import Chart
from gammalimit.sampling import STRATEGIES

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

G = S.gram_symbol


# --------------------------------------------------------------------------
# Taylor coefficients of the pair penalties


def test_taylor_coefficients_along_a_geodesic():
    ser = S.pair_penalty_series(2)
    # |phi(y)-phi(x)|^2 - t^2 = t^2 v.Bv + t^3 <Dphi v, H(v,v)> + ...,  v.Bv = |Dphi v|^2 - 1
    assert ser.chord[0] == G(1, 1) - 1 and ser.chord[1] == G(1, 2)
    # phi(x) + phi(y) - 2 phi(av) = t^2/4 H(v,v) + t^3/8 T(v,v,v) + ...
    assert ser.midpoint_defect[:3] == (0, sp.Rational(1, 4), sp.Rational(1, 8))
    assert sp.expand(ser.distortion[0] - S.r**4 * (G(1, 1) - 1) ** 2) == 0
    assert S.limit_bending_coefficient() == sp.Rational(1, 16)
    assert float(S.limit_bending_coefficient()) == P.BENDING_FACTOR


def test_first_order_terms_are_odd_and_the_others_are_not():
    ser = S.pair_penalty_series(2)
    assert S.is_odd_in_v(ser.distortion[1]) and S.is_odd_in_v(ser.bending[1])
    for term in (ser.distortion[0], ser.bending[0], ser.distortion[2], ser.bending[2]):
        assert not S.is_odd_in_v(term)
        assert sp.expand(S.reverse_direction(term) - term) == 0  # even


def _geodesic_taylor_vectors(phi, M, x, v, K):
    """``a_k = d^k/dt^k phi(exp_x(t v))`` at ``t = 0``, ``k = 1..K`` (circle: exp is smooth at 0)."""
    def curve(s):
        return phi(M.exp(x, s * v))

    derivs, f = [], curve
    for _ in range(K):
        f = (lambda g: (lambda s: jvp(g, (s,), (torch.ones_like(s),))[1]))(f)
        derivs.append(f(torch.tensor(0.0)))
    return derivs


def test_series_predicts_the_pair_penalties_of_a_nonlinear_encoder():
    """``l(delta) = c0 + c1 delta + c2 delta^2 + O(delta^3)`` for one pair, with the
    coefficients evaluated at the encoder's own Taylor vectors."""
    M = Circle(1.2)
    W = torch.tensor([[0.7, -0.3], [0.2, 0.9], [0.5, 0.4]])

    def phi(x):
        z = x @ W.T
        return z + 0.3 * z**2 + 0.1 * z[:, :1] * z**2

    x = M.chart.embed(torch.tensor([[0.4]]))
    v = M.tangent_frame(x)[:, :, 0]
    a = _geodesic_taylor_vectors(phi, M, x, v, 4)
    gram = {G(j, k): float((a[j - 1] * a[k - 1]).sum()) for j in range(1, 5) for k in range(j, 5)}
    ser = S.pair_penalty_series(2)
    coeff = {name: [float(c.subs(gram).subs(S.r, 1)) for c in getattr(ser, name)] for name in ("distortion", "bending")}
    for delta in (2e-2, 1e-2):
        pairs = sample_pairs(M, 2, delta, seed=0)
        pairs.x, pairs.v = x.repeat(2, 1), torch.cat([v, -v])
        pairs.y, pairs.midpoint = M.exp(pairs.x, delta * pairs.v), M.exp(pairs.x, 0.5 * delta * pairs.v)
        terms = pair_terms(phi, pairs)
        for name in ("distortion", "bending"):
            c0, c1, c2 = coeff[name]
            got = getattr(terms, name)
            assert float(got[0]) == pytest.approx(c0 + c1 * delta + c2 * delta**2, abs=50 * delta**3 * abs(c0))
            assert float(got[1]) == pytest.approx(c0 - c1 * delta + c2 * delta**2, abs=50 * delta**3 * abs(c0))
    # and the numeric limit integrand is c0
    limit = P.get_penalty("squared").limit_values(directional_jet(phi, M, x, v), torch.ones(1))
    assert float(limit["distortion"][0]) == pytest.approx(coeff["distortion"][0], rel=1e-12)
    assert float(limit["bending"][0]) == pytest.approx(coeff["bending"][0], rel=1e-12)


# --------------------------------------------------------------------------
# direction averages and radial constants


def test_isotropic_fourth_moment_for_general_m():
    m = S.m_sym
    assert sp.simplify(S.isotropic_fourth_moment() - 1 / (m * (m + 2))) == 0
    quad, Ssym, T = S.direction_average_quadratic()
    assert sp.simplify(quad - (2 * Ssym + T**2) / (m * (m + 2))) == 0
    hess, S2, T2 = S.direction_average_hessian(l=3)
    assert sp.simplify(hess - (2 * S2 + T2) / (m * (m + 2))) == 0


@pytest.mark.parametrize("m", [1, 2, 3])
def test_direction_average_against_explicit_sphere_integrals(m):
    A = sp.Matrix(m, m, lambda i, j: sp.Symbol(f"A{min(i, j)}{max(i, j)}", real=True))
    quad, Ssym, T = S.direction_average_quadratic(m)
    formula = quad.subs({Ssym: sum(e**2 for e in A), T: A.trace()}, simultaneous=True)
    assert sp.expand(S.direction_average_explicit(A) - formula) == 0


def test_direction_average_symbolic_matches_numeric():
    g = torch.Generator().manual_seed(0)
    for m in (1, 2, 4, 5):
        H = torch.randn(7, 3, m, m, generator=g)
        H = H + H.transpose(-1, -2)
        hess, S2, T2 = S.direction_average_hessian(m)
        f = S.lambdify(hess, S2, T2)
        trace = torch.diagonal(H, dim1=-2, dim2=-1).sum(-1)
        expected = f((H**2).sum((1, 2, 3)).numpy(), (trace**2).sum(1).numpy())
        np.testing.assert_allclose(P.direction_average(H).numpy(), expected, rtol=1e-14)


def test_kappa_of_each_strategy():
    m = S.m_sym
    assert S.kappa("shell") == 1
    assert sp.simplify(S.kappa("ball") - m / (m + 4)) == 0
    assert sp.simplify(S.radial_density("ball") - m * S.r ** (m - 1)) == 0
    w = torch.linspace(0.01, 1, 50)
    for name, strategy in STRATEGIES.items():
        for mm in range(1, 6):
            exact = float(S.kappa(name, mm))
            assert strategy.kappa(mm) == pytest.approx(exact, rel=1e-15)
    # the sampler's radius map is the inverse of the derived law's CDF P(r <= w) = w^m
    for mm in range(1, 6):
        cdf = sp.integrate(S.radial_density("ball", mm), (S.r, 0, S.r))
        assert sp.expand(cdf - S.r**mm) == 0
        assert torch.allclose(STRATEGIES["ball"].radius((1 - w**mm)[:, None], mm), w, rtol=1e-13)
    with pytest.raises(ValueError, match="strategy"):
        S.kappa("annulus")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_each_strategy_owns_a_radial_law_that_symbolic_confirms(name):
    """Moments, density and quadrature rule of every strategy against the law derived in sympy."""
    strategy = STRATEGIES[name]
    for mm in range(1, 5):
        density = S.radial_density(name, mm)
        rr = torch.linspace(0.05, 1.0, 7, dtype=torch.float64)
        if density is None:
            assert strategy.density(rr, mm) is None
        else:
            expected = sp.lambdify(S.r, density)(rr.numpy())
            np.testing.assert_allclose(strategy.density(rr, mm), expected, rtol=1e-14)
        r_nodes, weights = strategy.radial_rule(mm, 16)
        for p in (0, 1, 2, 4, 6):
            exact = float(S.radial_mean(S.r**p, name, mm))
            assert strategy.moment(p, mm) == pytest.approx(exact, rel=1e-14)
            assert float(weights @ r_nodes**p) == pytest.approx(exact, rel=1e-13)


# --------------------------------------------------------------------------
# the chart formulas, symbolically, against the numeric route


def test_continuum_density_on_a_curved_nonorthogonal_chart_matches_numeric():
    """A graph surface ``z = f(u)`` (non-diagonal, non-constant metric) and a
    polynomial encoder: the theory's chart formulas in sympy against the numeric
    frame computation with autodiff Christoffel symbols."""
    u1, u2 = sp.symbols("u1 u2", real=True)
    X = [u1, u2, sp.Rational(3, 10) * u1**2 - sp.Rational(1, 5) * u1 * u2 + sp.sin(u2) / 10]

    def phi_sym(x):
        return [x[0] + x[2] ** 2, x[1] * x[2], x[0] * x[1] - x[2]]

    g = S.induced_metric(X, (u1, u2), simplify=False)
    dist, bend = S.continuum_density(phi_sym(X), (u1, u2), g, simplify=False)

    def embed(u):
        height = 0.3 * u[:, 0] ** 2 - 0.2 * u[:, 0] * u[:, 1] + torch.sin(u[:, 1]) / 10
        return torch.stack([u[:, 0], u[:, 1], height], -1)

    def metric(u):
        DX = torch.func.vmap(torch.func.jacfwd(lambda z: embed(z[None])[0]))(u)
        return DX.transpose(1, 2) @ DX

    chart = Chart(embed=embed, lower=(-1.0, -1.0), upper=(1.0, 1.0), periodic=(False, False), metric=metric,
                  inverse=lambda x: x[:, :2], volume=1.0)
    point = (sp.Rational(3, 10), -sp.Rational(2, 5))
    jet = D.encoder_jet(lambda x: torch.stack(phi_sym([x[:, 0], x[:, 1], x[:, 2]]), -1), chart,
                        torch.tensor([[0.3, -0.4]]))
    numeric = GEO.EncoderGeometry.from_jet(jet, GEO.chart_orthonormal_frame(jet.metric)).densities()
    at = {u1: point[0], u2: point[1]}
    assert float(numeric["distortion"]) == pytest.approx(float(sp.N(dist.subs(at), 30)), rel=1e-13)
    assert float(numeric["bending"]) == pytest.approx(float(sp.N(bend.subs(at), 30)), rel=1e-13)


def test_closed_forms_of_section_5_are_derived():
    dist, bend = S.scaled_identity_limit("sphere")
    assert sp.simplify(dist - (S.a**2 - 1) ** 2) == 0 and sp.simplify(bend - S.a**2 / (16 * S.R**2)) == 0
    assert S.scaled_identity_limit("circle") == (dist, bend)
    dist_b, bend_b = S.scaled_identity_limit("sphere", "ball")
    assert sp.simplify(dist_b - dist / 3) == 0 and sp.simplify(bend_b - bend / 3) == 0
    dist, bend = S.scaled_identity_limit("torus")
    B1, B2 = S.a1**2 - 1, S.a2**2 - 1
    assert sp.expand(dist - (3 * B1**2 + 3 * B2**2 + 2 * B1 * B2) / 8) == 0
    assert sp.simplify(bend - sp.Rational(3, 128) * (S.a1**2 / S.R1**2 + S.a2**2 / S.R2**2)) == 0
    assert sp.simplify(S.round_minimiser() - (1 - S.lam / (32 * S.R**2))) == 0
    b1, b2 = S.torus_minimiser()
    assert sp.simplify(b1.subs({S.R1: 1, S.R2: 1}) - (1 - 3 * S.lam / 128)) == 0
    assert sp.simplify((b1 - b2).subs({S.R1: 1, S.R2: 1})) == 0
    with pytest.raises(ValueError, match="kind"):
        S.scaled_identity_limit("klein")


def test_round_shell_discrete_matches_theory():
    dist, bend = S.round_shell_discrete()
    s = S.delta / S.R
    theory_d = (4 * S.a**2 * S.R**2 * sp.sin(s / 2) ** 2 - S.delta**2) ** 2 / S.delta**4
    theory_b = 4 * S.a**2 * S.R**2 * (1 - sp.cos(s / 2)) ** 2 / S.delta**4
    assert sp.simplify(sp.expand_trig(dist - theory_d)) == 0
    assert sp.simplify(sp.expand_trig(bend - theory_b)) == 0
    # and its delta -> 0 limit is L
    assert sp.expand(sp.limit(dist, S.delta, 0) - (S.a**2 - 1) ** 2) == 0
    assert sp.simplify(sp.limit(bend, S.delta, 0) - S.a**2 / (16 * S.R**2)) == 0


def test_linear_maps_have_no_higher_order_terms():
    ser = S.linear_discrete_series(4)
    assert sp.expand(ser.distortion[0] - S.r**4 * (G(1, 1) - 1) ** 2) == 0
    assert all(c == 0 for c in ser.distortion[1:]) and all(c == 0 for c in ser.bending)
    dist, bend, A = S.linear_chart_limit(2, 3)
    assert bend == 0
    B = A.T * A - sp.eye(2)
    assert sp.expand(dist - (2 * sum(e**2 for e in B) + B.trace() ** 2) / 8) == 0


def test_circle_embedding_limit_is_the_round_circle_of_the_same_length():
    dist, bend, ell = S.circle_embedding_limit()
    rho = ell / (2 * sp.pi)
    sphere_d, sphere_b = S.scaled_identity_limit("circle")
    assert sp.simplify(dist - sphere_d) == 0 and sp.simplify(bend - sphere_b.subs(S.R, rho)) == 0
    b = sp.Symbol("b", positive=True)
    (best,) = sp.solve(sp.diff((dist + S.lam * bend).subs(S.a, sp.sqrt(b)), b), b)
    assert sp.simplify(best - (1 - S.lam * (2 * sp.pi) ** 2 / (32 * ell**2))) == 0
    assert math.isclose(float((dist + S.lam * bend).subs({S.a: 0.9, ell: 7.0, S.lam: 0.3})),
                        (0.81 - 1) ** 2 + 0.3 * 0.81 * 4 * math.pi**2 / (16 * 49), rel_tol=1e-14)
