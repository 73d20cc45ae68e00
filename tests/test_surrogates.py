"""surrogate_bias: the bias of a point cloud's surrogates, pair by pair against the exact geometry."""

import pytest
import torch

from gammalimit import PairSample, PointCloud, Sphere, pair_terms, sample_pairs
from gammalimit.surrogates import surrogate_bias


def test_bias_is_the_mean_per_pair_difference_and_the_chord_term_has_its_leading_order():
    S, a, lam, delta = Sphere(1.0), 1.1, 1.0, 0.3
    cloud = PointCloud(S.sample(8000, torch.Generator().manual_seed(0)), dim=2)
    phi = lambda x: a * x  # noqa: E731
    b = surrogate_bias(phi, S, cloud, delta=delta, lam=lam, n=512, seed=4)
    # the same pairs by hand
    pairs = sample_pairs(cloud, 512, delta, strategy="ball", seed=4)
    d = S.dist(pairs.x, pairs.y)
    exact = PairSample(pairs.x, pairs.y, S.midpoint(pairs.x, pairs.y), d, pairs.v, pairs.r, delta)
    by_hand = float((pair_terms(phi, pairs).total(lam) - pair_terms(phi, exact).total(lam)).mean())
    assert b.bias["both"] == pytest.approx(by_hand, rel=1e-12)
    # chord distance: l_D changes by (a^2 - 1) d^6 / (6 delta^4) to leading order
    leading = float(((a**2 - 1) * d**6 / (6 * delta**4)).mean())
    assert b.bias["distance"] == pytest.approx(leading, rel=0.1)
    assert b.n == 512 and b.exact > 0


def test_noise_needs_a_clean_map_and_then_only_adds_bias():
    S = Sphere(1.0)
    X = S.sample(4000, torch.Generator().manual_seed(1))
    noisy = X + 3e-3 * torch.randn(X.shape, generator=torch.Generator().manual_seed(2), dtype=X.dtype)
    clean = lambda x: x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # noqa: E731
    quiet = surrogate_bias(lambda x: x, S, PointCloud(X, dim=2), delta=0.3, lam=1.0, n=1024, seed=0)
    loud = surrogate_bias(lambda x: x, S, PointCloud(noisy, dim=2), delta=0.3, lam=1.0, n=1024, seed=0,
                          clean=clean)
    assert loud.bias["both"] > quiet.bias["both"] + 3 * loud.stderr["both"]
