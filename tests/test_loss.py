"""The discrete loss L_delta against the closed forms of docs/theory.md, section 6."""

import math
import warnings

import pytest
import torch

from gammalimit import Circle, FlatTorus, Sphere, SwissRoll, discrete_loss, pair_terms, sample_pairs
from gammalimit.embeddings import exact_continuum_loss, exact_discrete_loss, scaled_identity

CASES = [
    (Circle(1.0), 0.9, 0.2),
    (Circle(2.0), 1.2, 0.05),
    (Sphere(1.0), 0.9, 0.1),
    (Sphere(0.7), 1.1, 0.02),
    (FlatTorus((1.0, 1.0)), (0.8, 1.1), 0.3),
    (FlatTorus((1.0, 2.0)), (1.05, 0.9), 0.01),
]


@pytest.mark.parametrize("strategy", ["shell", "ball"])
@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("M, scale, delta", CASES, ids=lambda c: repr(c) if not isinstance(c, float) else None)
def test_monte_carlo_matches_exact_L_delta(M, scale, delta, strategy, antithetic):
    lam = 0.7
    phi = scaled_identity(M, scale)
    est = discrete_loss(phi, M, delta=delta, lam=lam, n=60_000, strategy=strategy, antithetic=antithetic, seed=5)
    exact = exact_discrete_loss(M, scale, delta=delta, lam=lam, strategy=strategy)
    # per-pair values are constant for the shell on round manifolds: then only round-off remains
    tol = 4 * est.stderr + 1e-11 * abs(exact.total)
    assert abs(est.total - exact.total) <= tol, (est.total, exact.total, est.stderr)
    assert abs(est.distortion - exact.distortion) <= 4 * est.stderr_distortion + 1e-11 * exact.total
    assert abs(est.bending - exact.bending) <= 4 * est.stderr_bending + 1e-11 * exact.total
    assert est.n == 60_000


@pytest.mark.parametrize("M, scale, delta", CASES[:4] + CASES[4:5], ids=repr)
def test_exact_L_delta_tends_to_L(M, scale, delta):
    lam = 0.7
    limit = exact_continuum_loss(M, scale, lam=lam, strategy="ball").total
    errors = [abs(exact_discrete_loss(M, scale, delta=d, lam=lam, strategy="ball").total - limit)
              for d in (1e-1, 1e-2)]
    # O(delta^2): a factor 10 in delta gives about 100 in the error
    assert 50 < errors[0] / errors[1] < 200


def test_shell_closed_form_is_the_theory_formula():
    a, R, delta, lam = 0.9, 1.3, 0.2, 0.5
    s = delta / R
    formula = ((4 * a**2 * R**2 * math.sin(s / 2) ** 2 - delta**2) ** 2 / delta**4
               + lam * 4 * a**2 * R**2 * (1 - math.cos(s / 2)) ** 2 / delta**4)
    assert exact_discrete_loss(Sphere(R), a, delta=delta, lam=lam).total == pytest.approx(formula, rel=1e-14)


def test_swiss_roll_isometric_unrolling_has_zero_loss():
    R = SwissRoll()
    for strategy in ("shell", "ball"):
        est = discrete_loss(R.unrolled, R, delta=0.3, lam=1.0, n=20_000, strategy=strategy, antithetic=True)
        assert est.n_rejected > 0
        assert est.total < 1e-18 and est.distortion < 1e-18 and est.bending < 1e-18


def test_linear_map_on_flat_chart_per_pair_is_exact():
    R = SwissRoll(height=5.0)
    A = torch.tensor([[1.2, 0.3], [-0.4, 0.8], [0.1, 0.5]])
    B = A.T @ A - torch.eye(2)

    def phi(x):
        return R.unrolled(x) @ A.T

    p = sample_pairs(R, 5_000, 0.4, strategy="ball", seed=1)
    terms = pair_terms(phi, p)
    c = torch.einsum("kni,kn->ki", R.tangent_frame(p.x), p.v)
    expected = p.r**4 * torch.einsum("ki,ij,kj->k", c, B, c) ** 2
    assert torch.allclose(terms.distortion, expected, rtol=1e-9, atol=1e-12)
    assert terms.bending.max() < 1e-18


def test_same_seed_same_number_bit_for_bit():
    S = Sphere()
    phi = lambda x: torch.stack([x[:, 0] * x[:, 1], x[:, 2], x[:, 0] ** 2], -1)  # noqa: E731
    a = discrete_loss(phi, S, delta=0.05, lam=1.0, n=70_000, strategy="ball", seed=11)
    b = discrete_loss(phi, S, delta=0.05, lam=1.0, n=70_000, strategy="ball", seed=11)
    assert a.to_dict() == b.to_dict()


def test_pair_terms_are_differentiable():
    S = Sphere()
    lin = torch.nn.Linear(3, 3).double()
    p = sample_pairs(S, 256, 0.1, seed=0)
    loss = pair_terms(lin, p).total(0.5).mean()
    loss.backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()


def test_float32_phi_warns_at_small_delta():
    S = Sphere()
    with pytest.warns(UserWarning, match="eps/delta"):
        discrete_loss(lambda x: x.float(), S, delta=1e-3, lam=1.0, n=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        discrete_loss(lambda x: x.float(), S, delta=0.1, lam=1.0, n=100)
        discrete_loss(lambda x: x, S, delta=1e-4, lam=1.0, n=100)


def test_float32_module_gets_float32_inputs():
    lin = torch.nn.Linear(3, 2)  # float32 parameters
    est = discrete_loss(lin, Sphere(), delta=0.1, lam=1.0, n=1000)
    assert math.isfinite(est.total)


def test_wrong_shape_is_reported():
    with pytest.raises(ValueError, match=r"to \(\d+, l\)"):
        discrete_loss(lambda x: x[:, 0], Sphere(), delta=0.1, lam=1.0, n=100)
    with pytest.raises(TypeError, match="callable"):
        discrete_loss(3.0, Sphere(), delta=0.1, lam=1.0, n=100)


def test_non_finite_values_are_reported_with_count():
    def phi(x):
        out = x.clone()
        out[x[:, 2] > 0.99] = float("nan")
        return out

    with pytest.raises(ValueError, match=r"non-finite values for \d+ of \d+ pairs; first pair index"):
        discrete_loss(phi, Sphere(), delta=0.01, lam=1.0, n=10_000)


@pytest.mark.parametrize("lam", [-1.0, float("nan"), float("inf")])
def test_bad_lam(lam):
    with pytest.raises(ValueError, match="lam"):
        discrete_loss(lambda x: x, Sphere(), delta=0.1, lam=lam, n=100)
