"""Projection onto a local polynomial fit of a sampled manifold (docs/theory.md, section 8).

Near a query point ``q`` the samples ``x_j`` of an ``m``-dimensional manifold
are fitted as a polynomial graph over their tangent plane: local PCA gives a
centre ``c`` and an orthonormal tangent basis ``T`` ``shape=[n, m]``, every
sample gets tangent coordinates ``t_j = T^T (x_j - c)``, and least squares
fits ``x_j ~ f(t_j) = sum_alpha C_alpha t_j^alpha`` over the monomials of
degree ``<= p`` (vector coefficients ``C_alpha in R^n``: the normal offset and
the tangential correction at once). The projection of ``q`` is ``f(t*)`` with
``t* = argmin |q - f(t)|`` (Gauss-Newton from ``T^T (q - c)``).

A fit of degree ``p`` over a neighbourhood of size ``h`` is accurate to
``O(h^(p+1))``; with ``h ~ delta`` the bending term sees that error divided by
``delta^2``, so ``p = 3`` keeps the ``O(delta^2)`` rate of the exact midpoint
and ``p = 2`` gives ``O(delta)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .base import DTYPE

#: Gauss-Newton steps of the projection (the start is within O(h^2) of the answer).
GAUSS_NEWTON_STEPS = 6


def monomial_exponents(m: int, degree: int) -> torch.Tensor:
    """Exponents ``alpha`` of the monomials of ``m`` variables with ``|alpha| <= degree``,
    ``shape=[M, m]``, sorted by total degree (the constant first)."""
    rows = [a for a in itertools.product(range(degree + 1), repeat=m) if sum(a) <= degree]
    rows.sort(key=lambda a: (sum(a), [-e for e in a]))
    return torch.tensor(rows, dtype=torch.long)


def monomials(t: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """``t^alpha`` for each exponent row, ``shape=[..., M]`` from ``t`` ``shape=[..., m]``."""
    return torch.prod(t[..., None, :] ** exponents.to(t.dtype), dim=-1)


def monomial_jacobian(t: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """``d t^alpha / d t_i``, ``shape=[..., M, m]``."""
    e = exponents.to(t.dtype)
    cols = []
    for i in range(t.shape[-1]):
        lowered = e.clone()
        lowered[:, i] = (lowered[:, i] - 1).clamp_min(0)
        cols.append(e[:, i] * torch.prod(t[..., None, :] ** lowered, dim=-1))
    return torch.stack(cols, -1)


@dataclass
class LocalFit:
    """Polynomial fits around a batch of query points.

    Attributes
    ----------
    centre : tensor, shape=[B, n]
    tangent : tensor, shape=[B, n, m]
        Orthonormal tangent basis from local PCA.
    scale : tensor, shape=[B]
        The largest tangent coordinate of a fitted sample: the monomials are
        of ``s = t / scale``, which keeps the normal equations well
        conditioned however small the neighbourhood (``t^3`` of a
        neighbourhood of size ``1e-3`` is ``1e-9``).
    coefficients : tensor, shape=[B, M, n]
        ``C_alpha`` of ``f(s) = centre + sum_alpha C_alpha s^alpha``.
    residual : tensor, shape=[B]
        Root mean square distance of the fitted samples from the fit.
    n_points : tensor of int, shape=[B]
        Samples that entered each fit.
    """

    centre: torch.Tensor
    tangent: torch.Tensor
    scale: torch.Tensor
    coefficients: torch.Tensor
    residual: torch.Tensor
    n_points: torch.Tensor
    exponents: torch.Tensor

    def surface(self, t: torch.Tensor) -> torch.Tensor:
        """``f(s)``, ``shape=[B, n]`` for scaled tangent coordinates ``s`` ``shape=[B, m]``."""
        return self.centre + torch.einsum("bM,bMn->bn", monomials(t, self.exponents), self.coefficients)

    def project(self, q: torch.Tensor) -> torch.Tensor:
        """Closest points of the fitted surfaces to ``q`` ``shape=[B, n]``, ``shape=[B, n]``."""
        t = torch.einsum("bnm,bn->bm", self.tangent, q - self.centre) / self.scale[:, None]
        for _ in range(GAUSS_NEWTON_STEPS):
            J = torch.einsum("bMm,bMn->bnm", monomial_jacobian(t, self.exponents), self.coefficients)
            r = q - self.surface(t)
            step = torch.linalg.solve(J.transpose(1, 2) @ J, torch.einsum("bnm,bn->bm", J, r)[..., None])[..., 0]
            t = t + step
        return self.surface(t)


def principal_directions(dev: torch.Tensor, dim: int, iterations: int = 12) -> torch.Tensor:
    """The top-``dim`` principal directions of centred rows ``dev`` ``shape=[B, K, n]``, ``shape=[B, n, dim]``.

    For ``n <= K`` the eigenvectors of the ``n x n`` covariance; otherwise subspace iteration on the ``K x K`` Gram matrix (``n`` may be the pixel
    count; batched dense eigen- or singular value solvers of that size are
    slow on a CPU): the tangent variances ``~ h^2`` dominate the normal ones
    ``~ h^4 / R^2`` by far, so a dozen steps settle the plane, and the
    polynomial fit absorbs any remaining tilt.
    """
    if dev.shape[2] <= dev.shape[1]:  # few ambient coordinates: the n x n covariance directly
        _, evecs = torch.linalg.eigh(dev.transpose(1, 2) @ dev)
        return evecs[:, :, -dim:].flip(-1)
    gram = dev @ dev.transpose(1, 2)
    basis = gram[:, :, : min(dim + 2, gram.shape[-1])]
    for _ in range(iterations):
        basis = torch.linalg.qr(gram @ basis).Q
    # Rayleigh-Ritz in the small subspace, largest first
    evals, evecs = torch.linalg.eigh(basis.transpose(1, 2) @ gram @ basis)
    top = basis @ evecs[:, :, -dim:].flip(-1)
    directions = dev.transpose(1, 2) @ top
    return directions / torch.linalg.vector_norm(directions, dim=1, keepdim=True).clamp_min(torch.finfo(DTYPE).tiny)


def fit_local(neighbours: torch.Tensor, weights: torch.Tensor, dim: int, degree: int) -> LocalFit:
    """Weighted local polynomial fits, one per batch row.

    Parameters
    ----------
    neighbours : tensor, shape=[B, K, n]
        Samples around each query.
    weights : tensor, shape=[B, K]
        1 for the samples that enter the fit, 0 for padding.
    dim : int
        Intrinsic dimension ``m``.
    degree : int
        Polynomial degree ``p >= 1``.

    Returns
    -------
    LocalFit
    """
    w = weights.to(DTYPE)
    count = w.sum(1)
    centre = (w[..., None] * neighbours).sum(1) / count[:, None]
    dev = (neighbours - centre[:, None, :]) * w[..., None].sqrt()
    tangent = principal_directions(dev, dim)
    t = torch.einsum("bnm,bkn->bkm", tangent, neighbours - centre[:, None, :])
    scale = (t.abs() * w[..., None]).amax((1, 2)).clamp_min(torch.finfo(DTYPE).tiny)
    t = t / scale[:, None, None]
    exponents = monomial_exponents(dim, degree)
    A = monomials(t, exponents) * w[..., None].sqrt()
    target = (neighbours - centre[:, None, :]) * w[..., None].sqrt()
    gram = A.transpose(1, 2) @ A
    # a tiny ridge keeps a fit with barely enough points solvable; it is far below any fitted term
    ridge = 1e-14 * gram.diagonal(dim1=1, dim2=2).amax(-1).clamp_min(1e-300)[:, None, None]
    # the inverse of the small M x M normal matrix, then one product: a batched solve with n right-hand
    # sides (n = pixels) is far slower on a CPU
    inverse = torch.linalg.inv(gram + ridge * torch.eye(A.shape[-1], dtype=DTYPE))
    coefficients = inverse @ (A.transpose(1, 2) @ target)
    misfit = ((A @ coefficients - target) ** 2).sum((1, 2))
    return LocalFit(centre, tangent, scale, coefficients, torch.sqrt(misfit / count), count.long(), exponents)
