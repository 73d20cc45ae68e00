"""Encoder families and the minimisers of L_delta and L against the closed forms of docs/theory.md, section 6."""

import math

import numpy as np
import pytest
import torch

from gammalimit import (Circle, ClosedCurve, FlatTorus, Sphere, SwissRoll, continuum_loss, discrete_loss,
                        sample_pairs)
from gammalimit.embeddings import exact_continuum_loss, exact_discrete_loss, optimal_round_scale, optimal_torus_scales
from gammalimit.families import (FourierCurveMap, FourierTorusMap, SphericalHarmonicMap, differentiable_arclength,
                                 fit_coefficients, real_spherical_harmonics)
from gammalimit.functional import chart_quadrature
from gammalimit.minimize import (ContinuumObjective, DiscreteObjective, hessian_spectrum, minimize,
                                 minimize_multistart, quadrature_pairs)

ELLIPSE = ClosedCurve.ellipse(2.0, 1.0)


def round_scale_at_delta(radius, delta, lam):
    """Exact minimiser of the shell L_delta of ``a id`` on a circle: a quadratic in ``A = a^2``."""
    f0, f1, f2 = (exact_discrete_loss(Circle(radius), math.sqrt(A), delta=delta, lam=lam).total for A in (0, 1, 2))
    p, q = 0.5 * (f2 - 2 * f1 + f0), 0.5 * (4 * f1 - f2 - 3 * f0)
    return math.sqrt(max(0.0, -q / (2 * p)))


def _random_family(family, seed=0):
    family.coef.data = family.random_coefficients(torch.Generator().manual_seed(seed))
    return family


# --------------------------------------------------------------------------
# bases and families


def test_spherical_harmonics_are_orthonormal():
    S = Sphere(1.0)
    u, w = chart_quadrature(S.chart, (24, 48))
    w = w * S.chart.volume_weight(u) / S.chart.volume
    Y = real_spherical_harmonics(S.chart.embed(u), 4)
    gram = Y.T @ (w[:, None] * Y)
    assert torch.allclose(gram, torch.eye(25, dtype=gram.dtype), atol=1e-12)


@pytest.mark.parametrize("M", [Circle(1.3), ELLIPSE], ids=repr)
def test_round_circle_map_has_the_closed_form_losses(M):
    lam, a, delta = 0.8, 0.9, 0.3
    phi = FourierCurveMap.round_circle(M, 3, a)
    rho = phi.intrinsic_radius
    # continuum_loss sees phi as a function of ambient points (through the chart inverse)
    assert continuum_loss(phi, M, lam=lam).total == pytest.approx(
        exact_continuum_loss(Circle(rho), a, lam=lam).total, rel=1e-11)
    # the shell penalties of a round map are the same for every pair: MC is exact up to round-off
    est = discrete_loss(phi, M, delta=delta, lam=lam, n=2000, seed=1)
    assert est.total == pytest.approx(exact_discrete_loss(Circle(rho), a, delta=delta, lam=lam).total, rel=1e-9)
    fit = phi.circle_fit()
    assert fit["scale"] == pytest.approx(a, rel=1e-14) and fit["roundness"] < 1e-14


def test_differentiable_arclength_has_unit_derivative_along_the_curve():
    x = ELLIPSE.sample(7, torch.Generator().manual_seed(3))
    t = ELLIPSE.tangent_frame(x)[:, :, 0]
    s, ds = torch.func.jvp(lambda z: differentiable_arclength(ELLIPSE, z), (x,), (t,))
    assert torch.allclose(s, ELLIPSE.chart.inverse(x)[:, 0], atol=1e-10)
    assert torch.allclose(ds, torch.ones_like(ds), atol=1e-10)


def test_closed_form_maps_are_in_the_families():
    T = FlatTorus((1.0, 1.5))
    phi = FourierTorusMap.clifford(T, 2, (0.9, 1.1))
    x = T.sample(50, torch.Generator().manual_seed(0))
    expected = x * torch.tensor([0.9, 0.9, 1.1, 1.1])
    assert torch.allclose(phi(x), expected, atol=1e-13)
    assert phi.clifford_fit()["scales"] == pytest.approx([0.9, 1.1], rel=1e-13)
    S = Sphere(1.3)
    psi = SphericalHarmonicMap.round(S, 2, 0.8)
    y = S.sample(50, torch.Generator().manual_seed(0))
    assert torch.allclose(psi(y), 0.8 * y, atol=1e-12)
    assert psi.linear_fit()["singular_values"] == pytest.approx([0.8] * 3, rel=1e-12)


def test_family_errors():
    with pytest.raises(ValueError, match="closed curve"):
        FourierCurveMap(Sphere(1.0), 2)
    with pytest.raises(ValueError, match="doubly periodic"):
        FourierTorusMap(Sphere(1.0), 2)
    with pytest.raises(ValueError, match="coef"):
        FourierCurveMap(Circle(1.0), 2, coef=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="degree"):
        SphericalHarmonicMap(Sphere(1.0), 0)
    phi = FourierCurveMap(Circle(1.0), 1)
    with pytest.raises(ValueError, match="span"):
        fit_coefficients(phi, lambda x: x**2, Circle(1.0).sample(20, torch.Generator().manual_seed(0)))


# --------------------------------------------------------------------------
# objectives


@pytest.mark.parametrize("case", ["circle", "ellipse", "sphere", "torus"])
def test_quadrature_L_delta_matches_the_closed_form(case):
    lam, delta = 0.7, 0.25
    if case in ("circle", "ellipse"):
        M = Circle(1.2) if case == "circle" else ELLIPSE
        phi = FourierCurveMap.round_circle(M, 3, 0.9)
        exact = exact_discrete_loss(Circle(phi.intrinsic_radius), 0.9, delta=delta, lam=lam)
    elif case == "sphere":
        M = Sphere(1.0)
        phi = SphericalHarmonicMap.round(M, 2, 0.9)
        exact = exact_discrete_loss(M, 0.9, delta=delta, lam=lam)
    else:
        M = FlatTorus((1.0, 1.5))
        phi = FourierTorusMap.clifford(M, 1, (0.9, 1.1))
        exact = exact_discrete_loss(M, (0.9, 1.1), delta=delta, lam=lam)
    terms = DiscreteObjective(phi, delta=delta, lam=lam, n_directions=24).evaluate(phi.coef)
    assert terms.total == pytest.approx(exact.total, rel=1e-11)
    assert terms.bending == pytest.approx(exact.bending, rel=1e-11)


@pytest.mark.parametrize("case", ["ellipse", "torus"])
def test_quadrature_L_delta_of_a_generic_map_matches_monte_carlo(case):
    lam, delta = 0.5, 0.3
    if case == "ellipse":
        M, phi = ELLIPSE, _random_family(FourierCurveMap(ELLIPSE, 3, 2))
    else:
        M, phi = FlatTorus((1.0, 1.5)), _random_family(FourierTorusMap(FlatTorus((1.0, 1.5)), 1, 3))
    quad = DiscreteObjective(phi, delta=delta, lam=lam, n_directions=32).evaluate(phi.coef).total
    est = discrete_loss(phi, M, delta=delta, lam=lam, n=40_000, antithetic=True, seed=2)
    assert abs(quad - est.total) <= 4 * est.stderr, (quad, est.total, est.stderr)


def test_fixed_sample_objective_is_the_monte_carlo_estimate():
    M, lam, delta = Circle(1.0), 0.5, 0.2
    phi = _random_family(FourierCurveMap(M, 2, 2), seed=4)
    pairs = sample_pairs(M, 4096, delta, antithetic=True, seed=7)
    obj = DiscreteObjective(phi, delta=delta, lam=lam, pairs=pairs)
    est = discrete_loss(phi, M, delta=delta, lam=lam, n=4096, antithetic=True, seed=7)
    assert obj.evaluate(phi.coef).total == pytest.approx(est.total, rel=1e-10)
    with pytest.raises(ValueError, match="delta"):
        DiscreteObjective(phi, delta=0.1, lam=lam, pairs=pairs)


@pytest.mark.parametrize("case", ["ellipse", "sphere", "torus"])
def test_continuum_objective_matches_continuum_loss(case):
    lam = 0.9
    if case == "ellipse":
        M, phi = ELLIPSE, _random_family(FourierCurveMap(ELLIPSE, 3, 2))
    elif case == "sphere":
        M, phi = Sphere(1.0), _random_family(SphericalHarmonicMap(Sphere(1.0), 2, 3))
    else:
        M, phi = FlatTorus((1.0, 1.5)), _random_family(FourierTorusMap(FlatTorus((1.0, 1.5)), 1, 3))
    obj = ContinuumObjective(phi, lam=lam, nodes=32)
    ref = continuum_loss(phi, M, lam=lam)
    terms = obj.evaluate(phi.coef)
    assert terms.total == pytest.approx(ref.total, rel=1e-10)
    assert terms.distortion == pytest.approx(ref.distortion, rel=1e-10)
    assert obj.with_lam(2 * lam).evaluate(phi.coef).total == pytest.approx(ref.distortion + 2 * lam * ref.bending,
                                                                           rel=1e-10)


@pytest.mark.parametrize("kind", ["discrete", "continuum"])
def test_objective_gradients_match_finite_differences(kind):
    phi = _random_family(FourierCurveMap(Circle(1.0), 2, 2), seed=5)
    obj = (DiscreteObjective(phi, delta=0.3, lam=0.5) if kind == "discrete"
           else ContinuumObjective(phi, lam=0.5))
    c = phi.coef.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(obj, (c,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_objective_errors():
    phi = FourierCurveMap(Circle(1.0), 2)
    with pytest.raises(TypeError, match="linear encoder family"):
        DiscreteObjective(lambda x: x, delta=0.1, lam=1.0)
    with pytest.raises(ValueError, match="quadrature"):
        DiscreteObjective(phi, delta=0.1, lam=1.0, pairs="sobol")
    with pytest.raises(ValueError, match="lam"):
        ContinuumObjective(phi, lam=-1.0)
    with pytest.raises(ValueError, match="boundary"):
        quadrature_pairs(SwissRoll(), 0.1, nodes=8)
    with pytest.raises(ValueError, match="starts"):
        minimize_multistart(ContinuumObjective(phi, lam=1.0), phi, n_starts=0)


# --------------------------------------------------------------------------
# minimisers


@pytest.mark.parametrize("M", [Circle(1.0), ELLIPSE], ids=repr)
def test_minimiser_of_L_is_the_optimal_round_circle(M):
    lam = 4.0
    fam = FourierCurveMap(M, 3, 2)
    ms = minimize_multistart(ContinuumObjective(fam, lam=lam), fam, n_starts=2, seed=0)
    best = ms.best
    assert best.converged and best.grad_norm <= 1e-8 and best.iterations > 0
    fit = fam.circle_fit(best.params)
    a = optimal_round_scale(fam.intrinsic_radius, lam)
    assert fit["scale"] == pytest.approx(a, abs=1e-8)
    assert fit["roundness"] < 1e-7
    assert best.value == pytest.approx(exact_continuum_loss(Circle(fam.intrinsic_radius), a, lam=lam).total,
                                       abs=1e-13)


def test_minimisers_of_L_delta_converge_like_delta_squared():
    M, lam = Circle(1.0), 4.0
    fam = FourierCurveMap(M, 2, 2)
    a = optimal_round_scale(1.0, lam)
    errors = []
    for delta in (0.4, 0.2, 0.1):
        res = minimize_multistart(DiscreteObjective(fam, delta=delta, lam=lam), fam, n_starts=2, seed=1).best
        scale = fam.circle_fit(res.params)["scale"]
        # the minimiser is the best round circle for this delta...
        assert scale == pytest.approx(round_scale_at_delta(1.0, delta, lam), rel=1e-7)
        errors.append(abs(scale - a))
    # ...and its radius tends to the limit one as delta^2
    assert 3.8 < errors[0] / errors[1] < 4.2 and 3.8 < errors[1] / errors[2] < 4.2


def test_minimiser_of_L_on_the_torus_in_R4_is_the_clifford_torus():
    T, lam = FlatTorus((1.0, 1.5)), 1.0
    fam = FourierTorusMap(T, 1, 4)
    best = minimize_multistart(ContinuumObjective(fam, lam=lam), fam, n_starts=3, seed=0).best
    fit = fam.clifford_fit(best.params)
    assert fit["scales"] == pytest.approx(list(optimal_torus_scales(T.radii, lam)), abs=1e-7)
    assert fit["overlap"] < 1e-6 and fit["anisotropy"] < 1e-6


def test_round_sphere_is_a_local_minimiser_with_only_symmetry_zero_modes():
    S, lam = Sphere(1.0), 8.0
    obj = ContinuumObjective(SphericalHarmonicMap(S, 2, 3), lam=lam)
    ev = hessian_spectrum(obj, SphericalHarmonicMap.round(S, 2, optimal_round_scale(1.0, lam)).coef)
    zero = np.abs(ev) < 1e-9 * np.abs(ev).max()
    assert zero.sum() == 6  # three translations, three rotations
    assert ev[~zero].min() > 0


def test_minimize_stops_on_the_gradient_and_is_reproducible():
    fam = SphericalHarmonicMap(Sphere(1.0), 2, 3)
    obj = ContinuumObjective(fam, lam=8.0)
    a = minimize_multistart(obj, fam, n_starts=2, seed=3)
    b = minimize_multistart(obj, fam, n_starts=2, seed=3)
    assert a.values == b.values
    for run in a.runs:
        assert run.converged and run.grad_norm <= 1e-8
    # a stationary start is returned as it is
    r = minimize(obj, a.best.params, gtol=1e-3)
    assert r.iterations == 0 and r.converged
    # a run cut short says so
    short = minimize(obj, fam.random_coefficients(torch.Generator().manual_seed(0)), max_iter=2, newton_steps=0)
    assert not short.converged and short.grad_norm > 1e-8
