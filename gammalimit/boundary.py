"""The boundary layer of a flat rectangle: what the rejection sampler does to ``L_delta``
(docs/theory.md, section 5).

On a manifold with boundary the pair sampler redraws pairs that leave ``M``,
so the ``x``-marginal of its pairs is not ``mu`` within ``delta`` of the
boundary. Beside the ``O(delta^2)`` gap of the pair penalties this adds
``E_sampler[l_0] - L``, of order ``delta``. For a rectangle in flat
coordinates (the unrolled :class:`~gammalimit.manifolds.SwissRoll`) the
accepted set is known exactly, and :func:`boundary_bias` computes this part
by deterministic quadrature.
"""

from __future__ import annotations

import numpy as np
import torch

from .derivatives import encoder_geometry
from .penalties import DirectionalJet, get_penalty
from .sampling import get_strategy


def _flat_rectangle(manifold) -> tuple[tuple[float, float], tuple[float, float]]:
    """Lower and upper corners of a 2-D chart that is an isometric, non-periodic rectangle."""
    chart = getattr(manifold, "chart", None)
    if chart is None or chart.dim != 2 or any(chart.periodic):
        raise ValueError(f"boundary_bias needs a 2-D non-periodic chart (a flat rectangle), got {manifold!r}")
    lo, hi = tuple(float(t) for t in chart.lower), tuple(float(t) for t in chart.upper)
    corners = torch.tensor([lo, hi, [0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1])]], dtype=torch.float64)
    if not torch.allclose(chart.metric(corners), torch.eye(2, dtype=torch.float64).expand(3, 2, 2), atol=1e-12):
        raise ValueError(f"boundary_bias needs flat chart coordinates (metric = I), not those of {manifold!r}")
    return lo, hi


def boundary_bias(phi, manifold, *, delta: float, lam: float, strategy="shell", penalty="squared",
                  n_angle: int = 8, n_radius: int = 6, n_s: int = 24, n_h: int = 12) -> float:
    """``E_sampler[l_0] - L``: the bias of the rejection sampler's law, by quadrature.

    For antithetic pairs in direction ``alpha`` at radius ``delta r``, the
    sampler accepts exactly the ``x`` in the rectangle ``[0, W] x [0, H]``
    shrunk by ``delta r |cos alpha|`` in ``s`` and ``delta r |sin alpha|`` in
    ``h``. So ``E_sampler[l_0]`` is the integral of the per-pair limit
    ``l_0 = sum_t c_t r^p_t f_t(v)`` (for ``squared``:
    ``r^4 [(v.Bv)^2 + lam |H(v,v)|^2/16]``) over these shrunk rectangles,
    divided by their mean area; the same rule with no shrinking gives ``L``,
    so quadrature errors cancel in the difference.

    Rules: Gauss-Legendre in ``x`` (``n_s x n_h`` nodes on each rectangle),
    in ``alpha`` on each quadrant of ``[0, pi)`` (``n_angle`` nodes each: the
    law of ``v`` is uniform and ``l_0`` is even in ``v``), and the strategy's
    own radial rule (``strategy.radial_rule(2, n_radius)``).

    Parameters
    ----------
    phi : callable
        Encoder, points ``shape=[k, ambient_dim]`` to codes ``shape=[k, l]``.
    manifold : Manifold
        With a flat 2-D rectangular chart (metric ``I``), e.g. :class:`SwissRoll`.
    delta, lam : float
    strategy : str or strategy object
    penalty : str or Penalty

    Returns
    -------
    float
    """
    (s0, h0), (s1, h1) = _flat_rectangle(manifold)
    L, H = s1 - s0, h1 - h0
    pen = get_penalty(penalty)
    coef = pen.coefficients(lam)
    ga, wa = np.polynomial.legendre.leggauss(n_angle)
    alpha = np.concatenate([(ga + 1) * np.pi / 4, (ga + 1) * np.pi / 4 + np.pi / 2])
    w_alpha = np.concatenate([wa, wa]) * np.pi / 4 / np.pi  # uniform law on [0, pi)
    r, w_r = (t.numpy() for t in get_strategy(strategy).radial_rule(manifold.dim, n_radius))
    xs, ws = np.polynomial.legendre.leggauss(n_s)
    xh, wh = np.polynomial.legendre.leggauss(n_h)

    def integrals(shrink):
        rows_u, rows_w, rows_v, rows_r = [], [], [], []
        for al, wal in zip(alpha, w_alpha):
            for rr, wrr in zip(r, w_r):
                a, b = shrink * rr * abs(np.cos(al)), shrink * rr * abs(np.sin(al))
                s_nodes = s0 + a + (xs + 1) / 2 * (L - 2 * a)
                h_nodes = h0 + b + (xh + 1) / 2 * (H - 2 * b)
                w = np.outer(ws * (L - 2 * a) / 2, wh * (H - 2 * b) / 2).ravel() / (L * H)
                rows_u.append(np.stack(np.meshgrid(s_nodes, h_nodes, indexing="ij"), -1).reshape(-1, 2))
                rows_w.append(w * wal * wrr)
                rows_v.append(np.tile([np.cos(al), np.sin(al)], (w.size, 1)))
                rows_r.append(np.full(w.size, rr))
        u, w, v, rad = (torch.from_numpy(np.concatenate(z)) for z in (rows_u, rows_w, rows_v, rows_r))
        geo = encoder_geometry(phi, manifold, u=u, check=False)
        c = torch.linalg.solve(geo.frame, v.unsqueeze(-1)).squeeze(-1)  # frame components of v
        jet = DirectionalJet.from_frame(geo.distortion, geo.jacobian, geo.hessian, c)
        l0 = sum(ct * value for ct, value in zip(coef, pen.limit_values(jet, rad).values()))
        return float((w * l0).sum()), float(w.sum())

    num, den = integrals(delta)
    num0, den0 = integrals(0.0)
    return num / den - num0 / den0
