"""Shared property check of a manifold's exp, dist and midpoint (imported by the tests here)."""

import torch


def check_exp_dist_midpoint(M, x, v, t: float, *, half_step_with_boundary: bool) -> None:
    """Geodesics of length ``t`` from points ``x`` along unit directions ``v``: ``dist`` returns
    ``t`` both ways, the midpoint halves it and is ``exp`` at half the step. On a manifold with a
    boundary only the pairs whose end stays in ``M`` are geodesics of ``M``, and the half-step check
    is made there only with ``half_step_with_boundary`` (a straight chart box: the image manifolds)."""
    y = M.exp(x, t * v)
    if M.has_boundary:
        keep = M.contains(y)
        x, v, y = x[keep], v[keep], y[keep]
    tol = 1e-12 * max(1.0, M.injectivity_radius)
    assert M.contains(x).all() and M.contains(y).all()
    d = M.dist(x, y)
    assert torch.allclose(d, torch.full_like(d, t), atol=tol, rtol=0)
    assert torch.allclose(d, M.dist(y, x), atol=tol, rtol=0)
    mid = M.midpoint(x, y)
    assert M.contains(mid).all()
    assert torch.allclose(M.dist(x, mid), d / 2, atol=tol, rtol=0)
    assert torch.allclose(M.dist(mid, y), d / 2, atol=tol, rtol=0)
    if half_step_with_boundary or not M.has_boundary:  # the midpoint is where the geodesic is at half time
        assert torch.allclose(M.exp(x, 0.5 * t * v), mid, atol=tol, rtol=0)


def random_geodesic_starts(M, seed: int, frac: float, n: int, t_max: float = float("inf")):
    """``n`` points, unit directions from them, and a step ``t = frac * min(injectivity radius, t_max)``."""
    g = torch.Generator().manual_seed(seed)
    x = M.sample(n, g)
    v = M.random_unit_tangent(x, g)
    return x, v, frac * min(M.injectivity_radius, t_max)
