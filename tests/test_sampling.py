"""Pair sampling: laws, reproducibility, antithetic layout, QMC, validation."""

import math

import pytest
import torch

from gammalimit import Circle, FlatTorus, Sphere, SwissRoll, sample_pairs
from gammalimit.sampling import STRATEGIES, block_size, iter_pairs


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("M", [Circle(1.3), Sphere(1.0), FlatTorus((1.0, 2.0))], ids=repr)
def test_pairs_are_at_distance_delta_r(M, strategy):
    p = sample_pairs(M, 4000, 0.05, strategy=strategy, seed=1)
    assert p.x.shape == (4000, M.ambient_dim) and p.dist.shape == (4000,)
    assert torch.allclose(M.dist(p.x, p.y), p.dist, atol=1e-13)
    assert torch.allclose(p.dist, 0.05 * p.r, rtol=0, atol=0)
    assert torch.allclose(M.midpoint(p.x, p.y), p.midpoint, atol=1e-13)
    assert ((p.r > 0) & (p.r <= 1)).all()


@pytest.mark.parametrize("m", [1, 2])
def test_ball_radial_law_gives_kappa(m):
    M = Circle() if m == 1 else Sphere()
    p = sample_pairs(M, 200_000, 0.1, strategy="ball", seed=2)
    r4 = p.r**4
    kappa = STRATEGIES["ball"].kappa(m)
    assert kappa == m / (m + 4)
    assert abs(r4.mean() - kappa) < 5 * r4.std() / math.sqrt(r4.numel())
    # and the CDF of r is r^m: compare at the median
    assert abs((p.r <= 0.5 ** (1 / m)).double().mean() - 0.5) < 5 * 0.5 / math.sqrt(r4.numel())


def test_directions_are_isotropic_on_the_torus():
    T = FlatTorus((1.0, 2.0))
    p = sample_pairs(T, 100_000, 0.1, seed=4)
    c = torch.einsum("kni,kn->ki", T.tangent_frame(p.x), p.v)
    second = torch.einsum("ki,kj->ij", c, c) / c.shape[0]
    assert torch.allclose(second, 0.5 * torch.eye(2), atol=0.01)


def test_same_seed_same_pairs_bit_for_bit():
    S = Sphere()
    a = sample_pairs(S, 50_000, 0.01, seed=7, strategy="ball")
    b = sample_pairs(S, 50_000, 0.01, seed=7, strategy="ball")
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.midpoint, b.midpoint)
    c = sample_pairs(S, 50_000, 0.01, seed=8, strategy="ball")
    assert not torch.equal(a.x, c.x)


def test_common_random_numbers_across_delta():
    S = Sphere()
    a = sample_pairs(S, 1000, 0.1, seed=3)
    b = sample_pairs(S, 1000, 0.001, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.v, b.v) and torch.equal(a.r, b.r)


def test_antithetic_layout():
    S = Sphere()
    p = sample_pairs(S, 3 * block_size(S) + 10, 0.1, antithetic=True, seed=0)
    h = len(p) // 2
    assert len(p) % 2 == 0
    assert torch.equal(p.x[:h], p.x[h:]) and torch.equal(p.v[:h], -p.v[h:]) and torch.equal(p.r[:h], p.r[h:])


def test_blocks_bound_memory():
    S = Sphere()
    sizes = [len(b) for b in iter_pairs(S, 10 * block_size(S) + 3, 0.1, seed=0)]
    assert max(sizes) == block_size(S) and sum(sizes) == 10 * block_size(S) + 3


def test_qmc_replicates_are_balanced():
    S = Sphere()
    p = sample_pairs(S, 8 * 1024, 0.1, qmc=True, seed=0)
    counts = torch.bincount(p.replicate)
    assert counts.tolist() == [1024] * 8
    # Sobol points integrate z^2 over the sphere far better than N^-1/2
    z2 = p.x[:1024, 2] ** 2
    assert abs(z2.mean() - 1 / 3) < 1e-3


def test_qmc_refuses_an_unbalanced_n_and_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"n = 8 \* 2\^k.*got n=8000; use n=4096 or n=8192"):
        sample_pairs(Sphere(), 8 * 1000, 0.1, qmc=True)
    assert len(sample_pairs(Sphere(), 16, 0.01, qmc=True)) == 16


def test_boundary_pairs_stay_inside():
    R = SwissRoll(height=2.0)
    p = sample_pairs(R, 20_000, 0.5, seed=0, antithetic=True)
    assert p.n_rejected > 0
    assert R.contains(p.y).all()
    assert torch.allclose(R.dist(p.x, p.y), p.dist, atol=1e-12)
    # rejection thins the x-marginal within delta of the border (docs/theory.md, section 5)
    h = R.unrolled(p.x)[:, 1]
    near = ((h < 0.5) | (h > 1.5)).double().mean()
    assert near < 0.5 - 0.05  # uniform would give 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(delta=0.0), "delta"),
        (dict(delta=-1.0), "delta"),
        (dict(delta=float("nan")), "delta"),
        (dict(delta=4.0), "injectivity radius"),
        (dict(n=1), "n must be"),
        (dict(strategy="cube"), "unknown strategy"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(n=100, delta=0.1) | kwargs
    with pytest.raises(ValueError, match=match):
        sample_pairs(Sphere(), args.pop("n"), args.pop("delta"), **args)


def test_candidates_without_rejection_mark_the_accepted_ones():
    R = SwissRoll(height=2.0)
    cand = sample_pairs(R, 4000, 0.5, seed=0, antithetic=True, reject=False)
    h = len(cand) // 2
    both = R.contains(cand.y[:h]) & R.contains(cand.y[h:])
    assert torch.equal(cand.inside[:h], both) and torch.equal(cand.inside[h:], both)
    assert 0 < int((~both).sum()) < h
    # on a manifold without boundary every candidate is inside
    assert sample_pairs(Sphere(), 100, 0.1, reject=False).inside.all()


def test_qmc_points_carry_full_double_precision():
    # 30-bit Sobol points (scipy's default) bias this integral by ~1e-9 relative
    from gammalimit import discrete_loss
    from gammalimit.embeddings import exact_discrete_loss

    C = Circle(1.0)
    exact = exact_discrete_loss(C, 0.9, delta=0.2, lam=1.0, strategy="ball").total
    est = discrete_loss(lambda x: 0.9 * x, C, delta=0.2, lam=1.0, n=8 * 2**16, strategy="ball", qmc=True)
    assert abs(est.total - exact) <= 4 * est.stderr + 1e-15
    assert est.stderr < 1e-10 * exact


def _grid(u):
    """Sobol points as the integers of scipy's 2^-30 grid (the dither inside a cell dropped)."""
    return (u * 2.0**30).floor().long()


def test_a_kept_scrambling_is_digitally_shifted_per_seed():
    from gammalimit.blocks import CubeSource

    a, b = (CubeSource(3, seed, True, replicate=1, scramble_seed=9).draw(64) for seed in (5, 6))
    # one scrambled sequence, shifted: the bitwise difference of the two draws is one shift for every point
    xor = _grid(a) ^ _grid(b)
    assert (xor == xor[0]).all() and (xor[0] != 0).all()
    # a digitally shifted net is a net: each coordinate puts one point in each of 64 equal cells
    for u in (a, b):
        assert all(len(set((u[:, j] * 64).floor().long().tolist())) == 64 for j in range(3))
    # the same seeds give the same bits, drawn in one piece or two; another scrambling differs
    c = CubeSource(3, 5, True, replicate=1, scramble_seed=9)
    assert torch.equal(torch.cat([c.draw(20), c.draw(44)]), a)
    other = _grid(CubeSource(3, 6, True, replicate=1, scramble_seed=10).draw(64)) ^ _grid(a)
    assert not (other == other[0]).all()


def test_kept_scramblings_are_uniform_over_shifts():
    from gammalimit.blocks import CubeSource

    # the first point over 4000 step seeds: uniform in each coordinate (Kolmogorov-Smirnov)
    from scipy.stats import kstest

    first = torch.stack([CubeSource(2, s, True, scramble_seed=3).draw(4)[0] for s in range(4000)])
    assert min(kstest(first[:, j].numpy(), "uniform").pvalue for j in range(2)) > 1e-3


def test_pairs_with_a_kept_scrambling():
    S = Sphere()
    kw = dict(qmc=True, qmc_replicates=2, antithetic=True, scramble_seed=4)
    p, q = sample_pairs(S, 256, 0.1, seed=1, **kw), sample_pairs(S, 256, 0.1, seed=2, **kw)
    assert torch.equal(p.x, sample_pairs(S, 256, 0.1, seed=1, **kw).x) and not torch.equal(p.x, q.x)
    assert torch.bincount(p.replicate).tolist() == [128, 128]
    assert abs(float((p.x[:, 2] ** 2).mean()) - 1 / 3) < 0.02
    with pytest.raises(ValueError, match="scramble_seed.*needs qmc=True"):
        sample_pairs(S, 256, 0.1, scramble_seed=4)
    with pytest.raises(ValueError, match="scramble_seed"):
        sample_pairs(S, 256, 0.1, qmc=True, qmc_replicates=2, scramble_seed=-1)


def test_stacked_points_are_a_view_when_drawn_into_one_buffer():
    from gammalimit import RotatingEllipse

    for M, view in ((RotatingEllipse(n_pixels=16), True), (Sphere(), False)):
        p = sample_pairs(M, 64, 0.01, antithetic=True, qmc=True, qmc_replicates=2, seed=0)
        s = p.stacked()
        assert torch.equal(s, torch.cat([p.x, p.y, p.midpoint]))
        assert (s.data_ptr() == p.x.data_ptr()) is view
    # a batch taken apart (rows of a share) is copied, not viewed past its end
    p = sample_pairs(RotatingEllipse(n_pixels=16), 64, 0.01, qmc=True, qmc_replicates=2, seed=0)
    rows = slice(0, None, 2)
    half = type(p)(p.x[rows], p.y[rows], p.midpoint[rows], p.dist[rows], p.v[rows], p.r[rows], p.delta)
    assert torch.equal(half.stacked(), torch.cat([half.x, half.y, half.midpoint]))


@pytest.mark.parametrize("qmc", [False, True])
def test_pairs_without_tangents_are_the_same_pairs(qmc):
    from gammalimit import RotatingEllipse, TranslatingBlob

    for M, delta in ((RotatingEllipse(n_pixels=16), 0.01), (TranslatingBlob(n_pixels=16), 0.02), (Sphere(), 0.1),
                     (SwissRoll(height=2.0), 0.5)):
        kw = dict(antithetic=True, qmc=qmc, qmc_replicates=2, seed=3)
        full, bare = sample_pairs(M, 64, delta, **kw), sample_pairs(M, 64, delta, tangents=False, **kw)
        assert full.v is not None and bare.v is None
        for name in ("x", "y", "midpoint", "dist", "r", "replicate"):
            assert torch.equal(getattr(full, name), getattr(bare, name)), (M, name)
