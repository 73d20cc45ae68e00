"""The shape of learned codes, measured against the optimal embeddings of
:mod:`gammalimit.embeddings` (docs/theory.md, sections 6 and 7).

An encoder trained on ``L_delta`` is known only through its codes at sample
points. These functions read off what the closed forms predict:

- :func:`circle_fit`: a closed curve of codes against a round circle (radius,
  roundness, uniformity of speed);
- :func:`clifford_fit`: codes of a flat torus against a Clifford torus (the
  radii of its two circle factors and the angle between their planes);
- :func:`procrustes`: codes moved rigidly onto a target (flat coordinates);
- :func:`local_isometry_error`, :func:`procrustes_error`, :func:`overlap_fraction`:
  how far codes are from isometric at scale ``delta``, from the true flat
  coordinates, and whether they fold ``M`` onto itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .manifolds.base import DTYPE


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


def _codes(c) -> torch.Tensor:
    c = torch.as_tensor(np.asarray(c) if not isinstance(c, torch.Tensor) else c).to(DTYPE)
    if c.ndim != 2:
        raise ValueError(f"codes must have shape (k, l), got {tuple(c.shape)}")
    return c


def local_isometry_error(code_x, code_y, dist, scale: float | None = None) -> dict:
    """RMS relative distance error after the best global scale.

    With ``q_i = |c(x_i) - c(y_i)| / d(x_i, y_i)``, the scale
    ``s = sum q_i / sum q_i^2`` minimises ``sum (s q_i - 1)^2``, and

        error = sqrt(mean((s q_i - 1)^2)).

    Given ``scale``, that ``s`` is used instead (e.g. the in-sample scale for
    held-out pairs).

    Parameters
    ----------
    code_x, code_y : array, shape=[k, l]
    dist : array, shape=[k]
        Geodesic distances ``d(x_i, y_i) > 0``.
    scale : float, optional

    Returns
    -------
    dict
        ``error`` (with the best or the given scale), ``scale`` ``s``, and
        ``error_unscaled`` (``s = 1``: the codes as they stand).
    """
    cx, cy = _codes(code_x), _codes(code_y)
    d = torch.as_tensor(np.asarray(dist) if not isinstance(dist, torch.Tensor) else dist).to(DTYPE)
    q = torch.linalg.vector_norm(cx - cy, dim=-1) / d
    s = q.sum() / (q**2).sum() if scale is None else torch.tensor(float(scale), dtype=DTYPE)
    return {"error": float(((s * q - 1) ** 2).mean().sqrt()), "scale": float(s),
            "error_unscaled": float(((q - 1) ** 2).mean().sqrt())}


def procrustes_error(codes, flat) -> float:
    """``min |s c R + b - u|_F / |u - mean(u)|_F`` over rotations and reflections
    ``R``, scales ``s`` and shifts ``b``.

    Parameters
    ----------
    codes : array, shape=[k, l]
    flat : array, shape=[k, m]
        True flat coordinates (an isometric chart), ``m <= l``; padded with
        zeros to ``l`` columns.

    Returns
    -------
    float
        0 for codes that are a similarity transform of ``flat``; 1 for codes
        carrying no linear information about it.
    """
    c, u = _codes(codes), _codes(flat)
    if c.shape[0] != u.shape[0] or u.shape[1] > c.shape[1]:
        raise ValueError(f"codes {tuple(c.shape)} and flat coordinates {tuple(u.shape)} must have the same "
                         f"number of rows and no more columns than the codes")
    c, u = c - c.mean(0), u - u.mean(0)
    u = torch.cat([u, u.new_zeros(u.shape[0], c.shape[1] - u.shape[1])], 1)
    # c^T u = U S V^T: the best R is U V^T, the best s is tr(S) / |c|^2; the
    # residual is formed explicitly (|u|^2 - tr(S)^2/|c|^2 would cancel)
    U, S, Vh = torch.linalg.svd(c.T @ u)
    fitted = (S.sum() / (c**2).sum()) * c @ (U @ Vh)
    return float(torch.linalg.matrix_norm(fitted - u) / torch.linalg.matrix_norm(u))


def overlap_fraction(code_a, code_b, dist, delta: float, scale: float = 1.0) -> float:
    """Fraction of far pairs that the codes bring close: a symptom of folds.

    Over pairs with ``d(a, b) > 4 delta``, the fraction with
    ``scale |c(a) - c(b)| < delta``. An injective, nearly isometric embedding
    has none; one that folds ``M`` onto itself (locally isometric, globally
    not injective) has a positive fraction.

    Parameters
    ----------
    code_a, code_b : array, shape=[k, l]
    dist : array, shape=[k]
    delta : float
    scale : float
        E.g. the scale from :func:`local_isometry_error`.

    Returns
    -------
    float, or nan if no pair is farther than ``4 delta``
    """
    ca, cb = _codes(code_a), _codes(code_b)
    d = torch.as_tensor(np.asarray(dist) if not isinstance(dist, torch.Tensor) else dist).to(DTYPE)
    far = d > 4 * delta
    if not far.any():
        return float("nan")
    close = scale * torch.linalg.vector_norm(ca - cb, dim=-1) < delta
    return int((close & far).sum()) / int(far.sum())  # exact in float64, whatever torch's default dtype
