"""Point clouds: the sample surrogates of distance and midpoint against the
expansions of docs/theory.md section 8, the neighbour-pair law, and the errors."""

import math

import numpy as np
import pytest
import torch

import gammalimit as gl
from gammalimit import PairSample, PointCloud, Sphere, discrete_loss, sample_pairs
from gammalimit.manifolds import point_cloud
from gammalimit.manifolds.local_fit import fit_local, monomial_exponents
from gammalimit.manifolds.point_cloud import PairPool


@pytest.fixture(scope="module")
def sphere_cloud():
    S = Sphere(1.0)
    return S, S.sample(20000, torch.Generator().manual_seed(0))


def test_chord_and_chord_midpoint_expansions_on_the_sphere():
    """|x-y|^2 = d^2 - d^4 |II|^2/12 + O(d^5) and |(x+y)/2 - av| = d^2 |II| / 8 + O(d^4), |II| = 1/R."""
    S = Sphere(2.0)
    for d in (0.2, 0.1, 0.05):
        pairs = sample_pairs(S, 64, d, seed=1)
        chord2 = ((pairs.x - pairs.y) ** 2).sum(-1)
        rest = chord2 - (d**2 - d**4 / (12 * 4.0))
        assert rest.abs().max() < 0.01 * d**5
        offset = torch.linalg.vector_norm(0.5 * (pairs.x + pairs.y) - pairs.midpoint, dim=-1)
        assert (offset - d**2 / (8 * 2.0)).abs().max() < 0.1 * d**4


def test_projected_midpoint_converges_with_the_fit_degree(sphere_cloud):
    """On the sphere P_M((x+y)/2) is the Riemannian average itself: the surrogate's error is the fit's."""
    S, X = sphere_cloud
    errors = {}
    for degree in (1, 2, 3):
        C = PointCloud(X, dim=2, degree=degree)
        pairs = sample_pairs(C, 512, 0.3, strategy="ball", seed=2)
        exact = S.midpoint(pairs.x, pairs.y)
        errors[degree] = float(torch.linalg.vector_norm(pairs.midpoint - exact, dim=-1).median())
    chord = float(torch.linalg.vector_norm(0.5 * (pairs.x + pairs.y) - exact, dim=-1).median())
    # on the sphere the graph over the tangent plane is even to fourth order, so degree 3 gains
    # little over degree 2 here (the Swiss roll of the data_geometry study separates them)
    assert errors[1] < chord and errors[2] < errors[1] / 10 and errors[3] < 1.5 * errors[2] < 1e-3 * chord


def test_neighbour_pairs_follow_the_ball_law_and_the_band(sphere_cloud):
    S, X = sphere_cloud
    C = PointCloud(X, dim=2, midpoint="chord")
    ball = sample_pairs(C, 8192, 0.15, strategy="ball", seed=3)
    # uniform in the ball of a 2-D manifold: E[r^4] = kappa = m/(m+4) = 1/3 (up to curvature and sampling)
    assert float((ball.r**4).mean()) == pytest.approx(1 / 3, abs=0.02)
    assert float(ball.dist.max()) <= 0.15 and float(ball.dist.min()) > 0
    shell = sample_pairs(C, 1024, 0.15, strategy="shell", seed=3)
    assert float(shell.r.min()) >= 0.9 and float(shell.r.max()) <= 1.0


def test_same_seed_same_pairs_bit_for_bit(sphere_cloud):
    _, X = sphere_cloud
    a = sample_pairs(PointCloud(X, dim=2), 300, 0.2, strategy="ball", seed=5)
    b = sample_pairs(PointCloud(X, dim=2), 300, 0.2, strategy="ball", seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.midpoint, b.midpoint)


def test_cloud_loss_matches_the_exact_loss_to_the_predicted_order(sphere_cloud):
    """phi = a id on the unit sphere: per pair, the chord distance changes l_D by O(delta^2)
    relative and the projected midpoint leaves l_B exact up to the fit error."""
    S, X = sphere_cloud
    C = PointCloud(X, dim=2)
    a, lam = 1.1, 1.0
    for delta in (0.3, 0.15):
        pairs = sample_pairs(C, 2048, delta, strategy="ball", seed=6)
        d = 2 * torch.asin(pairs.dist / 2)  # the pairs' geodesic distances
        exact = PairSample(pairs.x, pairs.y, S.midpoint(pairs.x, pairs.y), d, pairs.v, d / delta, delta)
        phi = lambda x: a * x  # noqa: E731
        got, want = gl.pair_terms(phi, pairs), gl.pair_terms(phi, exact)
        rel_d = float(((got.distortion - want.distortion).abs() / want.distortion).max())
        # chord^2 = d^2 (1 - d^2/12 + ...): l_D changes by about 2 (d^2/12) / (a^2 - 1) relative
        assert rel_d < delta**2 / (4 * (a**2 - 1))
        # the fit error e (~3e-6 here) changes l_B by about 8 e / delta^2 relative
        assert float(((got.bending - want.bending).abs() / want.bending).median()) < 5e-3


def test_local_fit_is_exact_on_a_plane_and_converges_at_order_p_plus_1():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(1, 40, 2, generator=g, dtype=torch.float64) - 0.5
    plane = torch.cat([t, 0.3 * t[..., :1] - 0.2 * t[..., 1:]], -1)
    fit = fit_local(plane, torch.ones(1, 40, dtype=torch.bool), dim=2, degree=1)
    assert float(fit.residual) < 1e-12
    q = torch.tensor([[0.1, -0.2, 5.0]], dtype=torch.float64)
    normal = torch.tensor([0.3, -0.2, -1.0], dtype=torch.float64)
    p = fit.project(q)[0]
    assert abs(float(p[2] - 0.3 * p[0] + 0.2 * p[1])) < 1e-12  # on the plane
    assert float(torch.linalg.vector_norm(torch.linalg.cross(q[0] - p, normal))) < 1e-12  # q - p is normal
    assert len(monomial_exponents(2, 3)) == 10
    # a curved graph: residual ~ h^(p+1)
    for degree in (2, 3):
        res = []
        for h in (0.4, 0.2):
            s = h * t
            graph = torch.cat([s, torch.sin(s[..., :1] + 2 * s[..., 1:]) ** 2 + s[..., :1] ** 3], -1)
            res.append(float(fit_local(graph, torch.ones(1, 40, dtype=torch.bool), 2, degree).residual))
        assert math.log2(res[0] / res[1]) == pytest.approx(degree + 1, abs=0.6)


def test_graph_distance_is_close_to_geodesic_for_dense_data():
    S = Sphere(1.0)
    X = S.sample(4000, torch.Generator().manual_seed(1))
    C = PointCloud(X, dim=2, distance="graph", midpoint="chord")
    pairs = sample_pairs(C, 256, 0.3, strategy="shell", seed=0)
    chord = torch.linalg.vector_norm(pairs.x - pairs.y, dim=-1)
    rel = pairs.dist / (2 * torch.asin(chord / 2)) - 1
    # a graph path is never shorter than the chord, and overestimates the geodesic by a few percent
    assert bool((pairs.dist >= chord * (1 - 1e-12)).all()) and 0 < float(rel.median()) < 0.1


def test_path_length_measures_far_pairs_where_the_chord_saturates():
    """Images of a translating blob: the chord never exceeds sqrt(2) |u| (0.157 here), while the
    geodesic reaches 0.66; the graph's shortest path follows the geodesic (docs/theory.md, section 8)."""
    M = gl.TranslatingBlob(n_pixels=16)
    X = M.sample(400, torch.Generator().manual_seed(3))
    C = PointCloud(X, dim=2)
    i, j = (C.sample_indices(2000, torch.Generator().manual_seed(s)) for s in (0, 1))
    exact, chord = M.dist(X[i], X[j]), torch.linalg.vector_norm(X[i] - X[j], dim=-1)
    assert float(chord.max()) < 1.01 * math.sqrt(2 * math.pi) * M.sigma < 0.2 < float(exact.max())
    path = C.path_length(i, j)
    far = exact > 0.2
    rel = path[far] / exact[far] - 1
    # each edge is a chord, up to 3% shorter than its arc; the path's zigzag makes it longer
    assert int(far.sum()) > 500 and 0 < float(rel.median()) < 0.1 and float(rel.min()) > -0.05
    # a limit leaves the pairs beyond it at inf and the others as they were
    bounded = C.path_length(i, j, limit=0.2)
    inside = path <= 0.2
    assert torch.equal(bounded[inside], path[inside]) and bool(torch.isinf(bounded[~inside]).all())
    # the distance rule "graph" is the same search, bounded at 8 delta
    assert torch.equal(C.graph_distance(i[inside], j[inside], 0.2 / 8), path[inside])


def test_sample_indices_are_those_of_sample_and_with_midpoint_keeps_the_pairs(sphere_cloud):
    _, X = sphere_cloud
    C = PointCloud(X[:3000], dim=2)
    idx = C.sample_indices(100, torch.Generator().manual_seed(4))
    assert torch.equal(C.points[idx], C.sample(100, torch.Generator().manual_seed(4)))
    chord = C.with_midpoint("chord")
    a, b = sample_pairs(C, 64, 0.2, strategy="ball", seed=2), sample_pairs(chord, 64, 0.2, strategy="ball", seed=2)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.dist, b.dist)
    assert torch.equal(b.midpoint, 0.5 * (b.x + b.y)) and not torch.allclose(a.midpoint, b.midpoint)
    assert C.midpoint_rule == "projection" and chord.points is C.points
    with pytest.raises(ValueError, match="midpoint"):
        C.with_midpoint("average")


def test_triplets_from_arrays_are_averaged_pair_by_pair():
    S = Sphere(1.0)
    pairs = sample_pairs(S, 100, 0.1, seed=0)
    given = PairSample.from_arrays(pairs.x.numpy(), pairs.y.numpy(), pairs.midpoint.numpy(), pairs.dist.numpy(),
                                   delta=0.1)
    est = discrete_loss(lambda x: 1.2 * x, given, lam=0.5)
    ref = gl.pair_terms(lambda x: 1.2 * x, pairs).total(0.5)
    assert est.total == pytest.approx(float(ref.mean()), rel=1e-14) and est.n == 100
    with pytest.raises(ValueError, match="dist must be 100 finite distances"):
        PairSample.from_arrays(pairs.x, pairs.y, pairs.midpoint, -pairs.dist)


def test_duplicates_are_never_paired_with_themselves():
    X = np.repeat(np.stack([np.cos(np.linspace(0, 6, 200)), np.sin(np.linspace(0, 6, 200))], -1), 2, axis=0)
    X = np.concatenate([X, np.zeros((400, 1))], -1)
    C = PointCloud(X, dim=1, midpoint="nearest")
    pairs = sample_pairs(C, 500, 0.2, strategy="ball", seed=0)
    assert float(pairs.dist.min()) > 0
    assert math.isfinite(discrete_loss(lambda x: x, C, delta=0.2, lam=1.0, n=200, strategy="ball").total)


@pytest.mark.parametrize("make, match", [
    (lambda: PointCloud(np.array([[0.0, 1.0, 1.0]] * 29 + [[0.0, np.nan, 1.0]]), dim=1), r"1 row\(s\) with NaN or infinite values; first: row 29"),
    (lambda: PointCloud(np.ones((30, 2)) * np.inf, dim=1), "30 row"),
    (lambda: PointCloud(np.random.default_rng(0).random((50, 2)), dim=2), "dim must be below"),
    (lambda: PointCloud(np.random.default_rng(0).random((5, 3)), dim=1), "needs at least"),
    (lambda: PointCloud(np.random.default_rng(0).random((50, 3)), dim=1, midpoint="mean"), "midpoint must be one of"),
    (lambda: PointCloud(np.random.default_rng(0).random((50, 3)), dim=0), "dim must be an integer >= 1"),
])
def test_bad_clouds_are_refused_with_the_reason(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_no_neighbour_within_delta_and_unsupported_uses_are_clear_errors(sphere_cloud):
    _, X = sphere_cloud
    C = PointCloud(X[:200], dim=2)
    with pytest.raises(ValueError, match=r"anchors have no neighbour within chord distance delta = 0.001.*larger delta"):
        sample_pairs(C, 64, 0.001, strategy="ball")
    with pytest.raises(ValueError, match="antithetic"):
        sample_pairs(C, 64, 0.5, antithetic=True)
    with pytest.raises(TypeError, match="needs a manifold with a chart"):
        gl.continuum_loss(lambda x: x, C, lam=1.0)
    assert math.isinf(C.injectivity_radius)


# --------------------------------------------------------------------------
# what the trainer uses: frames, default scale, the pair pool


def test_tangent_frames_are_orthonormal_and_tangent(sphere_cloud):
    S, X = sphere_cloud
    C = PointCloud(X, dim=2)
    x = S.sample(50, torch.Generator().manual_seed(9))  # not samples of the cloud
    F = C.tangent_frame(x)
    assert F.shape == (50, 3, 2)
    assert torch.allclose(F.transpose(1, 2) @ F, torch.eye(2, dtype=F.dtype).expand(50, 2, 2), atol=1e-12)
    # the normal of the unit sphere at x is x: local PCA of ~64 neighbours tilts the plane by O(h^2)
    assert float(torch.einsum("knm,kn->km", F, x).abs().max()) < 0.02
    v = C.random_unit_tangent(x, torch.Generator().manual_seed(0))
    assert torch.allclose(torch.linalg.vector_norm(v, dim=-1), torch.ones(50, dtype=v.dtype), atol=1e-12)
    with pytest.raises(ValueError, match=r"x must have shape \(k, 3\)"):
        C.tangent_frame(x[:, :2])


def test_default_delta_follows_the_extent_unless_the_samples_are_sparse(sphere_cloud):
    _, X = sphere_cloud
    dense = PointCloud(X, dim=2)
    assert 2.0 <= dense.extent() < 2.03  # twice the largest distance from the centroid (near 0)
    assert dense.default_delta() == pytest.approx(0.05 * dense.extent(), rel=1e-12)
    scaled = PointCloud(3 * X, dim=2)
    assert scaled.default_delta() == pytest.approx(3 * dense.default_delta(), rel=1e-12)
    sparse = PointCloud(X[:300], dim=2)
    assert sparse.default_delta() > 0.05 * sparse.extent()
    sample_pairs(sparse, 4096, sparse.default_delta(), strategy="ball")  # every anchor has a neighbour


def test_the_pair_pool_is_the_sampler_s_pairs_and_pairpool_draws_from_it(sphere_cloud):
    _, X = sphere_cloud
    C = PointCloud(X, dim=2)
    pool = C.pair_pool(0.2, 300, seed=4)
    ref = sample_pairs(C, 300, 0.2, strategy="ball", seed=4)
    assert all(torch.equal(getattr(pool, f), getattr(ref, f)) for f in ("x", "y", "midpoint", "dist", "v", "r"))
    P = PairPool(pool, "ball")
    a = sample_pairs(P, 64, 0.2, strategy="ball", qmc=True, qmc_replicates=2, seed=1)
    b = sample_pairs(P, 64, 0.2, strategy="ball", qmc=True, qmc_replicates=2, seed=1)
    assert torch.equal(a.midpoint, b.midpoint) and len(a) == 64
    rows = (a.x[:, None] == pool.x[None]).all(-1) & (a.y[:, None] == pool.y[None]).all(-1)
    assert bool(rows.any(1).all())  # every drawn pair is a pair of the pool
    with pytest.raises(ValueError, match="holds pairs at delta = 0.2 drawn with strategy 'ball', not delta = 0.3"):
        sample_pairs(P, 8, 0.3, strategy="ball")
    with pytest.raises(ValueError, match="not delta = 0.2 with 'shell'"):
        sample_pairs(P, 8, 0.2, strategy="shell")


def test_projection_in_chunks_changes_at_most_the_last_bit(sphere_cloud, monkeypatch):
    _, X = sphere_cloud
    C = PointCloud(X, dim=2)
    pairs = sample_pairs(C, 200, 0.2, strategy="ball", seed=2)
    whole = C.project(0.5 * (pairs.x + pairs.y), 0.2)
    fit = dict(C.last_fit)
    monkeypatch.setattr(point_cloud, "FIT_CHUNK_FLOATS", 7 * 64 * 3)  # chunks of 7 points
    chunked = C.project(0.5 * (pairs.x + pairs.y), 0.2)
    assert float((chunked - whole).abs().max()) <= 2 * torch.finfo(torch.float64).eps
    assert C.last_fit == pytest.approx(fit, rel=1e-12)


def test_digest_names_the_samples(sphere_cloud):
    _, X = sphere_cloud
    assert PointCloud(X[:500], dim=2).digest() == PointCloud(X[:500].clone(), dim=2).digest()
    assert PointCloud(X[:500], dim=2).digest() != PointCloud(X[1:501], dim=2).digest()
