"""The jvp route of the limit integrand (batched second derivatives along the geodesic)
against the chart route (full chart Hessian, point by point)."""

import pytest
import torch

from gammalimit import (Circle, FlatTorus, RotatingEllipse, Sphere, SwissRoll, continuum_loss, discrete_minus_limit,
                        limit_integrand, limit_terms, sample_pairs)
from gammalimit import directional as D
from gammalimit.derivatives import encoder_jet
from gammalimit.testmaps import random_mlp

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

MANIFOLDS = {
    "circle": lambda: Circle(1.3),
    "sphere": lambda: Sphere(0.9),
    "torus": lambda: FlatTorus((1.0, 1.7)),
    "swissroll": lambda: SwissRoll(height=5.0),
    "ellipse images": lambda: RotatingEllipse(n_pixels=12),
}


def linear(n, seed=0, l=3):
    A = torch.randn(l, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) / n**0.5
    return lambda x: x @ A.T


def polynomial(n, seed=0, l=3):
    g = torch.Generator().manual_seed(seed)
    W1, W2, W3 = (torch.randn(*s, generator=g, dtype=torch.float64) / n**0.5 for s in ((l, n), (l, n, n), (l, n)))
    return lambda x: x @ W1.T + 0.5 * torch.einsum("kn,anp,kp->ka", x, W2, x) + 0.3 * (x @ W3.T) ** 3


MAPS = {"linear": linear, "polynomial": polynomial, "mlp": lambda n, seed=0: random_mlp(seed=seed, dim=n)}


def relative_gap(a, b):
    return float((a - b).abs().max()) / float(b.abs().max())


@pytest.mark.parametrize("penalty", ["squared", "ratio"])
@pytest.mark.parametrize("map_name", sorted(MAPS))
@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_jvp_route_equals_chart_route(name, map_name, penalty):
    M = MANIFOLDS[name]()
    phi = MAPS[map_name](M.ambient_dim)
    pairs = sample_pairs(M, 64, 0.01, seed=3, antithetic=True)
    fast = limit_terms(phi, M, pairs, penalty=penalty)  # the default route
    slow = limit_terms(phi, M, pairs, penalty=penalty, route="chart")
    for term in ("distortion", "bending"):
        assert relative_gap(fast[term], slow[term]) < 1e-10, (term, relative_gap(fast[term], slow[term]))


@pytest.mark.parametrize("name", ["sphere", "torus", "ellipse images"])
def test_directional_jet_routes_agree(name):
    M = MANIFOLDS[name]()
    phi = polynomial(M.ambient_dim, seed=4)
    pairs = sample_pairs(M, 40, 0.05, seed=1)
    fast = D.directional_jet(phi, M, pairs.x, pairs.v, route="jvp")
    slow = D.directional_jet(phi, M, pairs.x, pairs.v, route="chart")
    for field in ("vBv", "velocity", "Hvv"):
        assert relative_gap(getattr(fast, field), getattr(slow, field)) < 1e-10


def test_large_batch_is_split_and_agrees():
    """Batches beyond JVP_FLOATS ambient floats go in several jvp calls."""
    M = RotatingEllipse(n_pixels=12)
    phi = polynomial(M.ambient_dim, seed=2)
    pairs = sample_pairs(M, 2 * (D.JVP_FLOATS // M.ambient_dim) + 8, 0.01, seed=0)
    fast = limit_integrand(phi, M, pairs, lam=0.3)
    idx = torch.arange(0, len(pairs), 997)
    x, v = pairs.x[idx], pairs.v[idx]
    slow = D.directional_jet(phi, M, x, v, route="chart")
    ref = D.directional_jet(phi, M, x, v, route="jvp")
    assert relative_gap(ref.Hvv, slow.Hvv) < 1e-10
    assert fast.shape == (len(pairs),) and torch.isfinite(fast).all()


def test_gap_estimate_unchanged_by_route():
    M = Sphere(1.0)
    phi = polynomial(3, seed=5)
    kw = dict(delta=0.05, lam=0.7, n=1024, antithetic=True, seed=2)
    fast, slow = discrete_minus_limit(phi, M, **kw), discrete_minus_limit(phi, M, route="chart", **kw)
    assert abs(fast.total - slow.total) <= 1e-10 * abs(slow.total)
    assert abs(fast.limit_total - slow.limit_total) <= 1e-10 * abs(slow.limit_total)


class BatchMixer(torch.nn.Module):
    """A tanh layer with BatchNorm: in training mode each row depends on the whole batch."""

    def __init__(self, n=3):
        super().__init__()
        self.lin = torch.nn.Linear(n, 4).double()
        self.norm = torch.nn.BatchNorm1d(4).double()

    def forward(self, x):
        return torch.tanh(self.norm(self.lin(x)))


def test_batch_mixing_encoder_is_refused():
    M = Sphere(1.0)
    pairs = sample_pairs(M, 32, 0.01, seed=0)
    phi = BatchMixer().train()
    with pytest.raises(ValueError, match="mixes the rows of its batch.*eval"):
        limit_terms(phi, M, pairs)
    # in evaluation mode it acts row by row: accepted, equal to the chart route
    phi.eval()
    assert relative_gap(limit_integrand(phi, M, pairs, lam=1.0),
                        limit_integrand(phi, M, pairs, lam=1.0, route="chart")) < 1e-10


def test_mixing_by_batch_mean_is_refused():
    M = FlatTorus((1.0, 1.0))
    pairs = sample_pairs(M, 16, 0.01, seed=0)
    with pytest.raises(ValueError, match="mixes the rows"):
        limit_terms(lambda x: x - x.mean(0), M, pairs)


def test_detached_encoder_is_refused():
    M = Sphere(1.0)
    pairs = sample_pairs(M, 16, 0.01, seed=0)
    with pytest.raises(ValueError, match="central differences"):
        limit_terms(lambda x: x + x.detach() ** 2, M, pairs)


@pytest.mark.parametrize("call", [
    lambda M, p: limit_terms(lambda x: x, M, p, route="fast"),
    lambda M, p: limit_integrand(lambda x: x, M, p, lam=1.0, route="jacobian"),
    lambda M, p: discrete_minus_limit(lambda x: x, M, delta=0.1, lam=1.0, n=16, route=None),
])
def test_bad_route_is_named(call):
    M = Sphere(1.0)
    with pytest.raises(ValueError, match=r"route must be one of \['chart', 'geodesic', 'jvp'\]"):
        call(M, sample_pairs(M, 8, 0.1, seed=0))


def test_jvp_route_needs_tangent_v():
    M = Sphere(1.0)
    pairs = sample_pairs(M, 8, 0.1, seed=0)
    with pytest.raises(ValueError, match="not tangent"):
        D.directional_jet(lambda x: x, M, pairs.x, pairs.x)


def test_monte_carlo_limit_estimates_quadrature():
    """The mean jvp-route integrand over QMC pairs estimates L (no boundary)."""
    M = FlatTorus((1.0, 1.0))
    phi = random_mlp(seed=2)
    L = continuum_loss(phi, M, lam=0.5).total
    gap = discrete_minus_limit(phi, M, delta=0.01, lam=0.5, n=1 << 12, antithetic=True, qmc=True, seed=0)
    assert abs(gap.limit_total - L) < 5 * gap.limit_stderr + 1e-3 * L


# --------------------------------------------------------------------------
# the quadrature's full jet by the jvp route


@pytest.mark.parametrize("penalty", ["squared", "ratio"])
@pytest.mark.parametrize("name", ["circle", "sphere", "torus", "swissroll", "ellipse images"])
def test_continuum_loss_routes_agree(name, penalty):
    M = MANIFOLDS[name]()
    phi = polynomial(M.ambient_dim, seed=6) if name != "torus" else random_mlp(seed=1)
    kw = dict(lam=0.7, penalty=penalty, nodes=8)
    fast, slow = continuum_loss(phi, M, **kw), continuum_loss(phi, M, route="chart", **kw)
    for key, value in slow.to_dict().items():
        if isinstance(value, float) and key not in ("error", "error_split"):
            assert abs(fast.to_dict()[key] - value) <= 1e-10 * abs(value), key


def test_jet_by_jvp_equals_chart_jet():
    M = Sphere(1.3)
    phi = polynomial(3, seed=7, l=4)
    u = torch.tensor([[0.3, 0.1], [1.2, 4.0], [2.9, 6.0]], dtype=torch.float64)
    fast, slow = D.encoder_jet_jvp(phi, M.chart, u, manifold=M), encoder_jet(phi, M.chart, u)
    assert relative_gap(fast.jacobian, slow.jacobian) < 1e-12
    assert relative_gap(fast.hessian, slow.hessian) < 1e-12
    assert torch.equal(fast.hessian, fast.hessian.transpose(-1, -2))


def test_continuum_loss_refuses_mixing_encoder_and_bad_route():
    M = Sphere(1.0)
    with pytest.raises(ValueError, match="mixes the rows"):
        continuum_loss(lambda x: x - 0.5 * x.mean(0), M, lam=1.0, nodes=4)
    with pytest.raises(ValueError, match=r"route must be one of \['chart', 'jvp'\], got 'geodesic'"):
        continuum_loss(lambda x: x, M, lam=1.0, route="geodesic")
