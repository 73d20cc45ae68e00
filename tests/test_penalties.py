"""Pair penalties (gammalimit.penalties): the ratio variant against its closed forms,
the direction rule against the closed-form averages, and a penalty and a
manifold defined outside the package, registered and used like the built-in ones."""

import math
from dataclasses import dataclass

import pytest
import torch

import gammalimit as gl
from gammalimit import penalties as P
from gammalimit.derivatives import encoder_geometry
from gammalimit.embeddings import scaled_identity
from gammalimit.manifolds import Circle, Sphere, make_manifold, register_manifold
from gammalimit.manifolds.registry import MANIFOLDS
from gammalimit.sampling import STRATEGIES, direction_rule


def ratio_shell_exact(a, R, delta, lam):
    """Shell ``L_delta`` of the ratio penalty for ``phi = a id`` on a round circle/sphere of radius ``R``."""
    s = delta / (2 * R)
    return (2 * a * R * math.sin(s) / delta - 1) ** 2 + lam * 4 * a**2 * R**2 * (2 * math.sin(s / 2) ** 2) ** 2 / delta**4


def ratio_limit_exact(a, R, lam, kappa):
    return (a - 1) ** 2 + lam * kappa * a**2 / (16 * R**2)


@pytest.mark.parametrize("manifold", [Circle(1.5), Sphere(0.7)])
def test_ratio_penalty_shell_loss_is_its_closed_form(manifold):
    a, lam, delta = 1.3, 0.4, 0.2
    phi = scaled_identity(manifold, (a,))
    est = gl.discrete_loss(phi, manifold, delta=delta, lam=lam, n=512, penalty="ratio", seed=3)
    # every shell pair of a round manifold has the same penalties: no Monte Carlo noise at all
    assert est.total == pytest.approx(ratio_shell_exact(a, manifold.radius, delta, lam), rel=1e-12)
    assert est.penalty == "ratio" and set(est.terms) == {"distortion", "bending"}


@pytest.mark.parametrize("manifold", [Circle(1.5), Sphere(0.7)])
@pytest.mark.parametrize("strategy", ["shell", "ball"])
def test_ratio_penalty_limit_is_its_closed_form(manifold, strategy):
    a, lam = 1.3, 0.4
    phi = scaled_identity(manifold, (a,))
    L = gl.continuum_loss(phi, manifold, lam=lam, penalty="ratio", strategy=strategy)
    kappa = STRATEGIES[strategy].kappa(manifold.dim)
    assert L.total == pytest.approx(ratio_limit_exact(a, manifold.radius, lam, kappa), rel=1e-12)
    # the ratio distortion's limit does not depend on r: radial weight 1 for every strategy
    assert L.radial_weights == {"distortion": 1.0, "bending": kappa}


def test_ratio_gap_is_second_order_in_delta():
    S, a, lam = Sphere(1.0), 1.2, 0.5
    limit = ratio_limit_exact(a, 1.0, lam, 1.0)
    gaps = [abs(ratio_shell_exact(a, 1.0, d, lam) - limit) for d in (0.02, 0.01)]
    assert math.log2(gaps[0] / gaps[1]) == pytest.approx(2.0, abs=0.01)
    # and the discrete loss of the library at delta = 0.01 agrees with the closed form
    est = gl.discrete_loss(scaled_identity(S, (a,)), S, delta=0.01, lam=lam, n=64, penalty="ratio")
    assert abs(est.total - limit) == pytest.approx(gaps[1], rel=1e-6)


def test_direction_rule_reproduces_the_closed_form_averages():
    """The quadrature route of a term equals its closed form where both exist."""
    S = Sphere(1.0)

    def phi(x):
        return torch.stack([x[:, 0] + 0.3 * x[:, 1] ** 2, x[:, 1] * x[:, 2], x[:, 2] - 0.2 * x[:, 0] ** 2], -1)

    geo = encoder_geometry(phi, S, u=torch.tensor([[0.7, 0.3], [1.9, -2.0]], dtype=torch.float64))

    @dataclass(frozen=True)
    class ByQuadrature(P.SquaredDistortion):
        def direction_average(self, geometry):
            return None

    closed = P.average_over_directions(P.SquaredDistortion(), geo)
    by_rule = P.average_over_directions(ByQuadrature(), geo)
    torch.testing.assert_close(by_rule, closed, rtol=1e-13, atol=0)
    for m in (1, 2, 3):
        c, w = direction_rule(m, 16)
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-15)
        # E[v_1^4] = 3 / (m (m + 2))
        assert float(w @ c[:, 0] ** 4) == pytest.approx(3 / (m * (m + 2)), rel=1e-13)


# --------------------------------------------------------------------------
# extending from outside the package: a toy penalty and a toy manifold


@dataclass(frozen=True)
class LogRatio:
    """A penalty term written by a user: ``(log(|phi(x)-phi(y)| / d))^2``, limit ``(log |Dphi v|)^2``."""

    name: str = "distortion"
    radial_power: int = 0
    lam_weighted: bool = False

    def pair(self, first, second, dist, delta):
        return torch.log(torch.linalg.vector_norm(first, dim=-1) / dist) ** 2

    def direction_limit(self, jet):
        return torch.log(torch.linalg.vector_norm(jet.velocity, dim=-1)) ** 2

    def direction_average(self, geometry):
        return None


class Ring:
    """A toy manifold written by a user: the circle of radius ``R`` in the plane ``z = 1`` of ``R^3``."""

    def __init__(self, R=2.0):
        self._circle = Circle(R)
        self.radius = R
        self.dim, self.ambient_dim, self.has_boundary = 1, 3, False
        self.injectivity_radius = self._circle.injectivity_radius
        c = self._circle.chart
        self.chart = gl.manifolds.Chart(embed=lambda u: self._lift(c.embed(u)), lower=c.lower, upper=c.upper,
                                        periodic=c.periodic, metric=c.metric,
                                        inverse=lambda x: c.inverse(x[:, :2]), volume=c.volume)

    def _lift(self, p):
        return torch.cat([p, torch.ones_like(p[:, :1])], -1)

    def __repr__(self):
        return f"Ring({self.radius})"

    def point_from_cube(self, u):
        return self._lift(self._circle.point_from_cube(u))

    def sample(self, n, generator=None):
        return self._lift(self._circle.sample(n, generator))

    def tangent_frame(self, x):
        return torch.cat([self._circle.tangent_frame(x[:, :2]), torch.zeros(x.shape[0], 1, 1, dtype=x.dtype)], 1)

    def random_unit_tangent(self, x, generator=None):
        return self._lift(self._circle.random_unit_tangent(x[:, :2], generator)) - self._lift(0 * x[:, :2])

    def exp(self, x, v):
        return self._lift(self._circle.exp(x[:, :2], v[:, :2]))

    def dist(self, x, y):
        return self._circle.dist(x[:, :2], y[:, :2])

    def midpoint(self, x, y):
        return self._lift(self._circle.midpoint(x[:, :2], y[:, :2]))

    def contains(self, x, atol=1e-9):
        return self._circle.contains(x[:, :2], atol) & ((x[:, 2] - 1).abs() <= atol)


@pytest.fixture
def toy_registrations():
    gl.register_penalty(gl.Penalty("log-ratio", (LogRatio(), P.Bending())))
    register_manifold("ring", lambda R=2.0: Ring(R))
    yield
    gl.PENALTIES.pop("log-ratio")
    MANIFOLDS.pop("ring")


def test_a_penalty_and_a_manifold_defined_outside_the_package(toy_registrations):
    ring = make_manifold("ring", R=2.0)
    a, lam, delta = 1.25, 0.3, 0.1

    def phi(x):  # a * (planar part): a scaled circle of radius 2a
        return a * x[:, :2]

    est = gl.discrete_loss(phi, ring, delta=delta, lam=lam, n=256, penalty="log-ratio")
    chord = 2 * a * 2.0 * math.sin(delta / 4)
    bend = 4 * a**2 * 4.0 * (2 * math.sin(delta / 8) ** 2) ** 2 / delta**4
    assert est.total == pytest.approx(math.log(chord / delta) ** 2 + lam * bend, rel=1e-10)
    L = gl.continuum_loss(phi, ring, lam=lam, penalty="log-ratio")
    assert L.total == pytest.approx(math.log(a) ** 2 + lam * a**2 / (16 * 4.0), rel=1e-12)
    assert L.penalty == "log-ratio"
    with pytest.raises(ValueError, match="does not take"):
        make_manifold("ring", radius=2.0)


def test_unknown_penalty_and_bad_terms_are_clear_errors():
    with pytest.raises(ValueError, match="penalty must be one of"):
        gl.discrete_loss(lambda x: x, Circle(1.0), delta=0.1, lam=0.0, n=4, penalty="nope")
    with pytest.raises(ValueError, match="distinct names"):
        gl.Penalty("twice", (P.Bending(), P.Bending()))
    with pytest.raises(TypeError, match="lacks|terms lack"):
        gl.Penalty("broken", (object(),))
