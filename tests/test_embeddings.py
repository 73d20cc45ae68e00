"""Analytic embeddings of docs/theory.md, section 6: closed forms, checked against
the symbolic derivations, the quadrature of L, and the per-pair penalties."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp
import torch

from gammalimit import (Circle, ClosedCurve, FlatTorus, Sphere, SwissRoll, continuum_loss, discrete_loss,
                        limit_terms, sample_pairs)
from gammalimit import embeddings as E
from gammalimit import symbolic as S
from gammalimit.loss import pair_terms
from gammalimit.manifolds import Chart

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

CASES = [  # (manifold, scale)
    (Circle(1.3), 0.8),
    (Sphere(0.7), 1.2),
    (FlatTorus((1.0, 1.0)), (0.8, 1.1)),
    (FlatTorus((0.6, 1.9)), (1.3, 0.7)),
]


def _value(expr, at):
    """``expr`` at exact binary values of the floats ``at``, to 40 digits (the
    closed forms of ``L_delta`` cancel badly at small ``delta``)."""
    return float(sp.N(expr.subs({k: sp.Rational(v) for k, v in at.items()}), 40))


def _symbolic_values(manifold, scale, strategy):
    kind = {Circle: "circle", Sphere: "sphere", FlatTorus: "torus"}[type(manifold)]
    dist, bend = S.scaled_identity_limit(kind, strategy)
    if kind == "torus":
        at = {S.a1: scale[0], S.a2: scale[1], S.R1: manifold.radii[0], S.R2: manifold.radii[1]}
    else:
        at = {S.a: scale, S.R: manifold.radius}
    return float(dist.subs(at)), float(bend.subs(at))


@pytest.mark.parametrize("strategy", ["shell", "ball"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_scaled_identity_L_closed_form_symbolic_and_quadrature(case, strategy):
    manifold, scale = CASES[case]
    lam = 0.5
    exact = E.exact_continuum_loss(manifold, scale, lam=lam, strategy=strategy)
    dist, bend = _symbolic_values(manifold, scale, strategy)
    assert exact.distortion == pytest.approx(dist, rel=1e-14)
    assert exact.bending == pytest.approx(bend, rel=1e-14)
    L = continuum_loss(E.scaled_identity(manifold, scale), manifold, lam=lam, strategy=strategy)
    assert L.total == pytest.approx(exact.total, rel=1e-12)
    assert L.distortion == pytest.approx(exact.distortion, rel=1e-12)
    assert L.bending == pytest.approx(exact.bending, rel=1e-12)
    # a id has H(v,v) = a II(v,v): all of it normal to phi(M)
    assert L.bending_normal == pytest.approx(L.bending, rel=1e-12)
    assert abs(L.bending_tangential) <= 1e-14 * L.bending


@pytest.mark.parametrize("delta", [0.9, 0.3, 0.05])
def test_round_L_delta_matches_symbolic(delta):
    dist, bend = S.round_shell_discrete()
    for manifold, a in CASES[:2]:
        at = {S.a: a, S.R: manifold.radius, S.delta: delta}
        exact = E.exact_discrete_loss(manifold, a, delta=delta, lam=1.0)
        assert exact.distortion == pytest.approx(_value(dist, at), rel=1e-12)
        assert exact.bending == pytest.approx(_value(bend, at), rel=1e-12)


def test_round_ball_L_delta_matches_symbolic():
    manifold, a, delta = Circle(1.3), 0.8, 0.6
    for m, mf in ((1, manifold), (2, Sphere(1.3))):
        dist, bend = S.round_ball_discrete(m)
        at = {S.a: a, S.R: 1.3, S.delta: delta}
        exact = E.exact_discrete_loss(mf, a, delta=delta, lam=1.0, strategy="ball")
        assert exact.distortion == pytest.approx(_value(dist, at), rel=1e-12)
        assert exact.bending == pytest.approx(_value(bend, at), rel=1e-12)


@pytest.mark.parametrize("case", [2, 3])
def test_torus_L_delta_bessel_form_matches_trapezoid(case):
    manifold, (b1, b2) = CASES[case]
    dist, bend = S.torus_shell_discrete()
    for delta in (0.5, 0.2):
        at = {S.a1: b1, S.a2: b2, S.R1: manifold.radii[0], S.R2: manifold.radii[1], S.delta: delta}
        exact = E.exact_discrete_loss(manifold, (b1, b2), delta=delta, lam=1.0)
        assert exact.distortion == pytest.approx(_value(dist, at), rel=1e-12)
        assert exact.bending == pytest.approx(_value(bend, at), rel=1e-12)


def test_L_delta_tends_to_L_at_second_order():
    for manifold, scale in CASES:
        L = E.exact_continuum_loss(manifold, scale, lam=0.5).total
        gaps = [E.exact_discrete_loss(manifold, scale, delta=d, lam=0.5).total - L for d in (0.02, 0.01)]
        assert gaps[0] / gaps[1] == pytest.approx(4.0, rel=1e-2)


# --------------------------------------------------------------------------
# minimisers


def test_round_minimiser_matches_symbolic_and_minimises_quadrature_L():
    R, lam = 0.8, 2.0
    a = E.optimal_round_scale(R, lam)
    assert a**2 == pytest.approx(float(S.round_minimiser().subs({S.R: R, S.lam: lam})), rel=1e-15)
    M = Sphere(R)
    fam = E.ScaledIdentityFamily(M)
    assert fam.minimiser(lam=lam) == (a,)
    best = continuum_loss(fam.encoder(a), M, lam=lam).total
    for da in (-1e-3, 1e-3):
        assert continuum_loss(fam.encoder(a + da), M, lam=lam).total > best
    assert E.optimal_round_scale(R, 40 * R**2) == 0.0  # collapse beyond lam = 32 R^2


@pytest.mark.parametrize("radii,lam", [((1.0, 1.0), 0.5), ((0.7, 1.6), 3.0), ((1.0, 0.2), 1.0)])
def test_torus_minimiser(radii, lam):
    a1, a2 = E.optimal_torus_scales(radii, lam)
    b1, b2 = S.torus_minimiser()
    at = {S.R1: radii[0], S.R2: radii[1], S.lam: lam}
    stationary = (float(b1.subs(at)), float(b2.subs(at)))
    if min(stationary) > 0:
        assert (a1**2, a2**2) == pytest.approx(stationary, rel=1e-13)
    # the minimum over a grid of feasible scales is not below it
    M = FlatTorus(radii)
    best = E.exact_continuum_loss(M, (a1, a2), lam=lam).total
    grid = np.linspace(0, 1.6, 161)
    values = [E.exact_continuum_loss(M, (x, y), lam=lam).total for x in grid for y in grid]
    assert best <= min(values) + 1e-15
    if radii == (1.0, 1.0):
        assert a1 == a2 == pytest.approx(math.sqrt(1 - 3 * lam / 128), rel=1e-15)
        L = continuum_loss(E.scaled_identity(M, (a1, a2)), M, lam=lam)
        assert L.total == pytest.approx((a1**2 - 1) ** 2 + 3 * lam * a1**2 / 64, rel=1e-12)


# --------------------------------------------------------------------------
# flat charts: the Swiss roll


def test_swiss_roll_unrolling_has_zero_loss_for_every_delta():
    roll = SwissRoll(height=6.0)
    phi = E.unrolling(roll)
    L = continuum_loss(phi, roll, lam=1.0)
    assert L.total < 1e-20 and L.converged
    for delta in (0.5, 0.05):
        pairs = sample_pairs(roll, 2000, delta, seed=1)
        terms = pair_terms(phi, pairs)
        assert float(terms.distortion.abs().max()) < 1e-10
        assert float(terms.bending.abs().max()) < 1e-10
    assert discrete_loss(phi, roll, delta=0.3, lam=1.0, n=1000).total < 1e-12


def test_linear_chart_map_L_and_per_pair_L_delta():
    roll = SwissRoll(height=6.0)
    fam = E.LinearChartFamily(roll)
    A = torch.tensor([[1.2, 0.3], [0.1, 0.9], [0.2, -0.4]])
    phi = fam.encoder(A, b=[1.0, -2.0, 0.5])
    exact = fam.continuum_loss(A, lam=0.7)
    dist, bend, Asym = S.linear_chart_limit(2, 3)
    at = {Asym[i, j]: float(A[i, j]) for i in range(3) for j in range(2)}
    assert exact.distortion == pytest.approx(float(dist.subs(at)), rel=1e-14) and exact.bending == 0
    assert fam.discrete_loss(A, delta=0.4, lam=0.7).total == exact.total
    L = continuum_loss(phi, roll, lam=0.7)
    assert L.total == pytest.approx(exact.total, rel=1e-12)
    assert L.bending < 1e-20
    # every pair's penalties are exactly their limits: L_delta = L pair by pair
    for delta in (1.0, 0.1):
        pairs = sample_pairs(roll, 2000, delta, strategy="ball", seed=2)
        got, limit = pair_terms(phi, pairs), limit_terms(phi, roll, pairs)
        assert torch.allclose(got.distortion, limit.distortion, rtol=1e-9, atol=1e-11)
        assert float(got.bending.abs().max()) < 1e-10
    ball = fam.continuum_loss(A, lam=0.7, strategy="ball")
    assert ball.total == pytest.approx(exact.total / 3, rel=1e-14)
    assert fam.continuum_loss(fam.minimiser(lam=1.0), lam=1.0).total < 1e-28


# --------------------------------------------------------------------------
# closed curves onto round circles


@pytest.mark.parametrize("name", ["ellipse", "trefoil"])
def test_optimal_circle_embedding_of_a_closed_curve(name):
    curve = ClosedCurve.ellipse(2.0, 1.0) if name == "ellipse" else ClosedCurve.trefoil()
    lam = 3.0
    fam = E.CircleEmbeddingFamily(curve)
    (a,) = fam.minimiser(lam=lam)
    assert a**2 == pytest.approx(1 - lam * (2 * math.pi) ** 2 / (32 * curve.length**2), rel=1e-14)
    phi = E.optimal_circle_embedding(curve, lam)
    x = curve.sample(300, torch.Generator().manual_seed(0))
    assert torch.allclose(phi(x).norm(dim=1), torch.full((300,), a * curve.length / (2 * math.pi)), rtol=1e-13)
    exact = fam.continuum_loss(a, lam=lam)
    dist, bend, ell = S.circle_embedding_limit()
    at = {S.a: a, ell: curve.length}
    assert exact.total == pytest.approx(float((dist + lam * bend).subs(at)), rel=1e-13)
    L = continuum_loss(phi, curve, lam=lam)
    assert L.total == pytest.approx(exact.total, rel=1e-10)
    assert L.bending_normal == pytest.approx(L.bending, rel=1e-10)
    pairs = sample_pairs(curve, 200, 0.3, seed=0)
    per_pair = pair_terms(phi, pairs).total(lam)
    assert torch.allclose(per_pair, torch.full_like(per_pair, fam.discrete_loss(a, delta=0.3, lam=lam).total),
                          rtol=1e-9)


def test_family_inputs_are_validated():
    with pytest.raises(ValueError, match="closed forms"):
        E.ScaledIdentityFamily(SwissRoll())
    with pytest.raises(ValueError, match="periodic"):
        E.LinearChartFamily(FlatTorus())
    cap = Sphere().chart
    curved = SimpleNamespace(dim=2, chart=Chart(cap.embed, (0.1, 0.0), (1.0, 1.0), (False, False), cap.metric,
                                                 cap.inverse, 1.0))
    with pytest.raises(ValueError, match="not constant"):
        E.LinearChartFamily(curved)
    with pytest.raises(TypeError, match="ClosedCurve"):
        E.CircleEmbeddingFamily(Circle())
    with pytest.raises(ValueError, match="shape"):
        E.LinearChartFamily(SwissRoll()).encoder(torch.ones(3, 3))
    with pytest.raises(ValueError, match="scale"):
        E.scaled_identity(FlatTorus(), (1.0, 2.0, 3.0))


# --------------------------------------------------------------------------
# the ratio penalty's closed forms, the minimisers of L_delta, flat coordinates


@pytest.mark.parametrize("manifold", [Circle(1.5), Sphere(0.7)])
def test_exact_ratio_loss_against_the_losses(manifold):
    a, lam, delta = 1.3, 0.4, 0.2
    phi = E.scaled_identity(manifold, a)
    # shell: every pair has the same penalty, so the Monte Carlo mean is the closed form
    est = discrete_loss(phi, manifold, delta=delta, lam=lam, n=256, penalty="ratio", seed=1)
    exact = E.exact_ratio_loss(manifold, a, lam=lam, delta=delta)
    assert est.total == pytest.approx(exact.total, rel=1e-12)
    assert exact.bending == pytest.approx(E.exact_discrete_loss(manifold, a, delta=delta, lam=lam).bending, rel=1e-12)
    s = delta / (2 * manifold.radius)
    written = (2 * a * manifold.radius * math.sin(s) / delta - 1) ** 2 \
        + lam * 4 * a**2 * manifold.radius**2 * (1 - math.cos(s)) ** 2 / delta**4
    assert exact.total == pytest.approx(written, rel=1e-12)
    for strategy in ("shell", "ball"):
        L = continuum_loss(phi, manifold, lam=lam, penalty="ratio", strategy=strategy)
        kappa = 1.0 if strategy == "shell" else manifold.dim / (manifold.dim + 4)
        exact_L = E.exact_ratio_loss(manifold, a, lam=lam, strategy=strategy)
        assert exact_L.total == pytest.approx((a - 1) ** 2 + lam * kappa * a**2 / (16 * manifold.radius**2), rel=1e-14)
        assert L.total == pytest.approx(exact_L.total, rel=1e-12)
    # ball L_delta: a Monte Carlo estimate within 5 standard errors; the gap to L is O(delta^2)
    ball = E.exact_ratio_loss(manifold, a, lam=lam, delta=delta, strategy="ball")
    est = discrete_loss(phi, manifold, delta=delta, lam=lam, n=1 << 14, penalty="ratio", strategy="ball", seed=2)
    assert abs(est.total - ball.total) < 5 * est.stderr
    gaps = [E.exact_ratio_loss(manifold, a, lam=lam, delta=d, strategy="ball").total
            - E.exact_ratio_loss(manifold, a, lam=lam, strategy="ball").total for d in (0.02, 0.01)]
    assert math.log2(gaps[0] / gaps[1]) == pytest.approx(2.0, abs=0.01)
    with pytest.raises(ValueError, match="Circle and Sphere"):
        E.exact_ratio_loss(FlatTorus((1.0, 1.0)), a, lam=lam)


@pytest.mark.parametrize("strategy", ["shell", "ball"])
@pytest.mark.parametrize("lam", [0.5, 4.0, 40.0])
def test_round_scale_at_delta_minimises_the_exact_L_delta(strategy, lam):
    import scipy.optimize

    R, delta = 1.2, 0.4
    a = E.round_scale_at_delta(R, delta, lam, strategy)

    def f(s):
        return E.exact_discrete_loss(Circle(R), s, delta=delta, lam=lam, strategy=strategy).total

    best = scipy.optimize.minimize_scalar(f, bounds=(0.0, 2.0), method="bounded", options={"xatol": 1e-12})
    assert a == pytest.approx(best.x, abs=1e-6)
    assert f(a) <= best.fun + 1e-15
    # delta -> 0: the minimiser of L
    assert E.round_scale_at_delta(R, 1e-3, lam, strategy) == pytest.approx(E.optimal_round_scale(R, lam), abs=1e-6)


def test_clifford_scales_at_delta_minimise_the_exact_L_delta():
    import scipy.optimize

    T, delta, lam = FlatTorus((1.0, 1.5)), 0.3, 1.0
    a = E.clifford_scales_at_delta(T, delta, lam)

    def f(s):
        return E.exact_discrete_loss(T, tuple(s), delta=delta, lam=lam).total

    best = scipy.optimize.minimize(f, E.optimal_torus_scales(T.radii, lam), method="Nelder-Mead",
                                   options={"xatol": 1e-12, "fatol": 1e-16})
    assert a == pytest.approx(tuple(best.x), abs=1e-7)
    assert f(a) <= best.fun + 1e-15
    assert E.clifford_scales_at_delta(T, 1e-3, lam) == pytest.approx(E.optimal_torus_scales(T.radii, lam), abs=1e-6)
    with pytest.raises(ValueError, match="not in b > 0"):
        E.clifford_scales_at_delta(T, delta, 1e4)  # collapse: the minimiser is on a face


def test_flat_coordinates_are_isometric():
    from gammalimit.manifolds import TranslatingBlob

    for M in (SwissRoll(), TranslatingBlob(24)):
        pairs = sample_pairs(M, 64, 0.05, seed=0)
        cx, cy = E.flat_coordinates(M, pairs.x), E.flat_coordinates(M, pairs.y)
        assert cx.shape == (64, 2)
        assert torch.allclose(torch.linalg.vector_norm(cx - cy, dim=-1), pairs.dist, rtol=1e-9, atol=1e-12)
    assert E.flat_coordinates(Sphere(1.0), Sphere(1.0).sample(3)) is None
