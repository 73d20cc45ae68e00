"""The boundary layer's bias E_sampler[l_0] - L (gammalimit.boundary) against
Monte Carlo, its order in delta, and its use of the strategy's own radial law."""

import math
from dataclasses import dataclass

import pytest
import torch

from gammalimit import Sphere, SwissRoll, continuum_loss, discrete_minus_limit
from gammalimit.boundary import boundary_bias
from gammalimit.embeddings import unrolling
from gammalimit.sampling import DTYPE
from gammalimit.testmaps import swiss_roll_map

ROLL = SwissRoll(turns=(2 * math.pi, 3 * math.pi), pitch=0.2, height=1.5)
RULE = dict(n_angle=6, n_radius=4, n_s=16, n_h=8)


@pytest.mark.parametrize("strategy", ["shell", "ball"])
def test_boundary_bias_matches_the_sampler_and_is_first_order(strategy):
    phi, lam, delta = swiss_roll_map(ROLL), 1.0, 0.2
    bias = boundary_bias(phi, ROLL, delta=delta, lam=lam, strategy=strategy, **RULE)
    # the sampler's own mean of l_0 (QMC, rejection) minus L by quadrature
    gap = discrete_minus_limit(phi, ROLL, delta=delta, lam=lam, n=1 << 12, strategy=strategy, antithetic=True,
                               qmc=True, seed=0)
    measured = gap.limit_total - continuum_loss(phi, ROLL, lam=lam, strategy=strategy, nodes=16).total
    assert abs(measured - bias) < 5 * gap.limit_stderr + 1e-3 * abs(bias)
    small, half = (boundary_bias(phi, ROLL, delta=d, lam=lam, strategy=strategy, **RULE) for d in (0.01, 0.005))
    assert math.log2(small / half) == pytest.approx(1.0, abs=0.05)
    assert boundary_bias(phi, ROLL, delta=0.0, lam=lam, strategy=strategy, **RULE) == 0.0


@dataclass(frozen=True)
class HalfShell:
    """A strategy that is neither shell nor ball: every pair at distance delta / 2."""

    name: str = "half-shell"
    cube_dim: int = 0

    def radius(self, u, m):
        return torch.full((u.shape[0],), 0.5, dtype=u.dtype)

    def density(self, r, m):
        return None

    def radial_rule(self, m, n=16):
        return torch.full((1,), 0.5, dtype=DTYPE), torch.ones(1, dtype=DTYPE)

    def moment(self, p, m):
        return 0.5**p

    def kappa(self, m):
        return self.moment(4, m)


def test_boundary_bias_uses_the_strategy_radial_law():
    # l_0 = r^4 f(x, v): pairs at delta/2 weigh 1/16 and shrink the rectangle by delta/2
    phi = swiss_roll_map(ROLL)
    half = boundary_bias(phi, ROLL, delta=0.2, lam=0.5, strategy=HalfShell(), **RULE)
    shell = boundary_bias(phi, ROLL, delta=0.1, lam=0.5, strategy="shell", **RULE)
    assert half == pytest.approx(shell / 16, rel=1e-12)


def test_boundary_bias_of_an_isometry_is_zero_and_curved_charts_are_refused():
    assert abs(boundary_bias(unrolling(ROLL), ROLL, delta=0.2, lam=1.0, **RULE)) < 1e-14
    with pytest.raises(ValueError, match="non-periodic chart"):
        boundary_bias(lambda x: x, Sphere(1.0), delta=0.1, lam=1.0)
