"""The shape of learned codes, measured against the optimal embeddings of
:mod:`gammalimit.embeddings` (docs/theory.md, sections 6 and 7).

An encoder trained on ``L_delta`` is known only through its codes at sample
points. These functions read off what the closed forms predict:

- :func:`circle_fit`: a closed curve of codes against a round circle (radius,
  roundness, uniformity of speed);
- :func:`clifford_fit`: codes of a flat torus against a Clifford torus (the
  radii of its two circle factors and the angle between their planes);
- :func:`procrustes`: codes moved rigidly onto a target (flat coordinates).
"""

from __future__ import annotations

import math

import torch


def circle_fit(codes: torch.Tensor) -> dict:
    """Radius, roundness and speed uniformity of a closed curve of codes.

    Parameters
    ----------
    codes : tensor, shape=[k, 2]
        Codes of points spaced uniformly along a closed data curve, in order.

    Returns
    -------
    dict
        ``centre`` (the centroid, a list of 2), ``radius`` (mean distance from
        it), ``roundness`` (max/min distance: 1 for a circle) and
        ``speed_ratio`` (max/min step between consecutive codes: 1 for a
        uniformly parametrised curve).
    """
    centre = codes.mean(0)
    r = torch.linalg.vector_norm(codes - centre, dim=-1)
    speed = torch.linalg.vector_norm(torch.roll(codes, -1, 0) - codes, dim=-1)
    return {"centre": centre.tolist(), "radius": float(r.mean()), "roundness": float(r.max() / r.min()),
            "speed_ratio": float(speed.max() / speed.min())}


def clifford_fit(codes: torch.Tensor, t: torch.Tensor) -> dict:
    """Regress codes on ``(1, cos 2 pi t_1, sin 2 pi t_1, cos 2 pi t_2, sin 2 pi t_2)``.

    For a Clifford torus the two ``l x 2`` coefficient blocks are ``r_i``
    times orthonormal frames of orthogonal planes: their singular values are
    the radii of the circle factors, and the cosine of the smallest principal
    angle between their column spaces is 0.

    Parameters
    ----------
    codes : tensor, shape=[k, l]
        ``l >= 4``.
    t : tensor, shape=[k, 2]
        Torus coordinates of the points, periods 1.

    Returns
    -------
    dict
        ``radii_1``, ``radii_2`` (singular values of each block),
        ``plane_cosine``, ``residual`` (RMS of the regression residual over
        the RMS spread of the codes) and ``plane_1``, ``plane_2`` (the centred
        codes in each plane's orthonormal frame, ``k`` rows of 2).
    """
    a1, a2 = 2 * math.pi * t[:, 0], 2 * math.pi * t[:, 1]
    F = torch.stack([torch.ones_like(a1), a1.cos(), a1.sin(), a2.cos(), a2.sin()], -1)
    beta = torch.linalg.lstsq(F, codes).solution
    C1, C2 = beta[1:3].T, beta[3:5].T
    Q1, Q2 = torch.linalg.qr(C1).Q, torch.linalg.qr(C2).Q
    resid = codes - F @ beta
    return {
        "radii_1": torch.linalg.svdvals(C1).tolist(), "radii_2": torch.linalg.svdvals(C2).tolist(),
        "plane_cosine": float(torch.linalg.svdvals(Q1.T @ Q2)[0]),
        "residual": float(torch.sqrt((resid**2).sum(-1).mean()) / torch.sqrt(((codes - codes.mean(0)) ** 2).sum(-1).mean())),
        "plane_1": ((codes - beta[0]) @ Q1).tolist(), "plane_2": ((codes - beta[0]) @ Q2).tolist(),
    }


def procrustes(codes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``codes`` moved by the rigid motion (orthogonal map and translation, no
    scaling) that best fits ``target`` in least squares.

    Parameters
    ----------
    codes, target : tensor, shape=[k, l]

    Returns
    -------
    tensor, shape=[k, l]
    """
    mc, mt = codes.mean(0), target.mean(0)
    U, _, Vt = torch.linalg.svd((codes - mc).T @ (target - mt))
    return (codes - mc) @ (U @ Vt) + mt
