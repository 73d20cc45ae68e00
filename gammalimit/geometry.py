"""Pointwise geometry of an encoder along a data manifold (docs/theory.md, section 3).

The formulas, each once::

    B    = Dphi^T Dphi - I                                   metric distortion
    H_ij = d_i d_j (phi o X) - Gamma^k_ij d_k (phi o X)      covariant Hessian
    H    = P_T H + P_N H                                     tangential / normal parts,
                                                             P_T onto Dphi(T_x M)
    u''  = -Gamma(u', u')                                    geodesic acceleration in a chart

and :class:`EncoderGeometry`, which holds them in a ``g``-orthonormal frame.
The derivatives themselves come from :mod:`gammalimit.derivatives` and
:mod:`gammalimit.directional`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .penalties import get_penalty

if TYPE_CHECKING:  # the jets come from gammalimit.derivatives, which imports this module
    from .derivatives import EncoderJet


# --------------------------------------------------------------------------
# the formulas of docs/theory.md, section 3, each once


def metric_distortion(jacobian: torch.Tensor, metric: torch.Tensor | None = None) -> torch.Tensor:
    """``B = Dphi^T Dphi - g``: pull-back metric minus the manifold's metric.

    In a ``g``-orthonormal frame (``metric=None``) this is the theory's
    ``B = Dphi^T Dphi - I``; with chart components it is the tensor
    ``B_ij = <d_i phi, d_j phi> - g_ij``.

    Parameters
    ----------
    jacobian : tensor, shape=[k, l, m]
        ``Dphi`` applied to the basis vectors.
    metric : tensor, shape=[k, m, m], optional
        ``g`` in the same basis; the identity if omitted.

    Returns
    -------
    tensor, shape=[k, m, m]
    """
    pullback = jacobian.transpose(-1, -2) @ jacobian
    if metric is None:
        return pullback - torch.eye(jacobian.shape[-1], dtype=jacobian.dtype)
    return pullback - metric


def covariant_hessian(second: torch.Tensor, first: torch.Tensor, christoffel: torch.Tensor) -> torch.Tensor:
    """``H_ij = d_i d_j (phi o X) - Gamma^k_ij d_k (phi o X)`` (docs/theory.md, section 3).

    Parameters
    ----------
    second : tensor, shape=[k, l, m, m]
        ``d_i d_j (phi o X)``.
    first : tensor, shape=[k, l, m]
        ``d_k (phi o X)``.
    christoffel : tensor, shape=[k, m, m, m]
        ``Gamma[:, k, i, j] = Gamma^k_ij``.

    Returns
    -------
    tensor, shape=[k, l, m, m]
        ``H[:, :, i, j] = H_ij``, chart components.
    """
    k, m = christoffel.shape[:2]
    return second - (first @ christoffel.reshape(k, m, m * m)).reshape(second.shape)


def christoffel_from_metric(metric: torch.Tensor, metric_derivative: torch.Tensor) -> torch.Tensor:
    """``Gamma^k_ij = g^kl (d_i g_jl + d_j g_il - d_l g_ij) / 2``.

    Parameters
    ----------
    metric : tensor, shape=[k, m, m]
    metric_derivative : tensor, shape=[k, m, m, m]
        ``metric_derivative[:, i, j, l] = d_l g_ij``.

    Returns
    -------
    tensor, shape=[k, m, m, m]
        ``Gamma[:, k, i, j] = Gamma^k_ij``.
    """
    d = metric_derivative
    first_kind = 0.5 * (
        torch.einsum("kjli->klij", d) + torch.einsum("kilj->klij", d) - torch.einsum("kijl->klij", d)
    )
    return torch.einsum("kpl,klij->kpij", torch.linalg.inv(metric), first_kind)


def geodesic_acceleration(metric: torch.Tensor, metric_derivative: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``u''(0) = -Gamma^p_ij c^i c^j`` of the chart geodesic with ``u'(0) = c``.

    ``Gamma^p_ij c^i c^j = g^pl (c^i d_i g_jl c^j - c^i c^j d_l g_ij / 2)``:
    the contraction of :func:`christoffel_from_metric` with ``c`` twice,
    without forming ``Gamma``. Along ``u(t) = u + t c + t^2 u''(0) / 2`` the
    second derivative of ``phi o X`` at ``t = 0`` is ``H(c, c)``
    (docs/theory.md, section 3.1).

    Parameters
    ----------
    metric : tensor, shape=[k, m, m]
    metric_derivative : tensor, shape=[k, m, m, m]
        ``metric_derivative[:, i, j, l] = d_l g_ij``.
    c : tensor, shape=[k, m]
        Chart components of the velocity.

    Returns
    -------
    tensor, shape=[k, m]
    """
    d = metric_derivative
    along = (d * c[:, None, None, :]).sum(-1)  # d_c g, [k, j, l]
    lowered = (along @ c[:, :, None])[..., 0] - 0.5 * (d * (c[:, :, None] * c[:, None, :])[..., None]).sum((1, 2))
    return -solve_small(metric, lowered)


def solve_small(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``A^-1 b`` for a batch of small systems, ``A`` ``shape=[k, m, m]``, ``b`` ``shape=[k, m]``.

    Cramer's rule for ``m <= 2`` (several times faster than a batched LAPACK
    call on many tiny systems), ``torch.linalg.solve`` otherwise.
    """
    m = A.shape[-1]
    if m == 1:
        return b / A[:, 0]
    if m == 2:
        a, q, r, s = A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1]
        return torch.stack([s * b[:, 0] - q * b[:, 1], a * b[:, 1] - r * b[:, 0]], -1) / (a * s - q * r)[:, None]
    return torch.linalg.solve(A, b[..., None])[..., 0]


def tangent_basis(jacobian: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """An orthonormal basis of ``Dphi(T_x M)`` in ``R^l``, ``shape=[k, l, m]``.

    ``jacobian`` ``shape=[k, l, m]`` (any basis of ``T_x M``). Directions with
    singular values below ``rtol`` times the largest are zeroed, so that
    ``P_T = U U^T`` projects onto the image of ``Dphi`` also where ``phi`` is
    not an immersion. (``P_T`` itself, ``shape=[k, l, l]``, is never formed:
    ``l`` may be the number of pixels.)
    """
    U, s, _ = torch.linalg.svd(jacobian, full_matrices=False)
    keep = s > rtol * s[:, :1].clamp_min(torch.finfo(s.dtype).tiny)
    return U * keep[:, None, :].to(U.dtype)


def split_hessian(H: torch.Tensor, jacobian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``H = P_T H + P_N H``: parts tangent and normal to ``phi(M)``.

    ``P_T`` projects ``R^l`` orthogonally onto ``Dphi(T_x M)``
    (:func:`tangent_basis`). Where ``phi`` is an immersion, ``P_N H`` is the
    second fundamental form ``II`` of the embedded manifold ``phi(M)``,
    evaluated on the frame; for an isometric ``phi`` it is ``H``'s only part.
    Since the parts are orthogonal, ``|H(v,v)|^2 = |P_T H(v,v)|^2 + |P_N H(v,v)|^2``.

    Parameters
    ----------
    H : tensor, shape=[k, l, m, m]
    jacobian : tensor, shape=[k, l, m]

    Returns
    -------
    tangential, normal : tensor, each shape=[k, l, m, m]
    """
    k, l, m = jacobian.shape
    U = tangent_basis(jacobian)
    tangential = (U @ (U.transpose(1, 2) @ H.reshape(k, l, m * m))).reshape(H.shape)
    return tangential, H - tangential


# --------------------------------------------------------------------------
# pointwise geometry in an orthonormal frame


@dataclass
class EncoderGeometry:
    """Pointwise geometry of ``phi`` along ``M`` in a ``g``-orthonormal frame (docs/theory.md, section 3).

    Attributes
    ----------
    u : tensor, shape=[k, m]
        Chart points.
    frame : tensor, shape=[k, m, m]
        Chart components of the frame vectors (columns): ``e_a = frame[:, i, a] d_i X``,
        with ``frame^T g frame = I``.
    jacobian : tensor, shape=[k, l, m]
        ``Dphi e_a``.
    pullback : tensor, shape=[k, m, m]
        ``Dphi^T Dphi``, the pull-back metric in the frame.
    distortion : tensor, shape=[k, m, m]
        ``B = Dphi^T Dphi - I``.
    hessian : tensor, shape=[k, l, m, m]
        ``H_ab = H(e_a, e_b)``.
    hessian_tangential, hessian_normal : tensor, shape=[k, l, m, m]
        ``P_T H`` and ``P_N H`` (:func:`split_hessian`); where ``phi`` is an
        immersion ``P_N H`` is the second fundamental form of ``phi(M)``.
    """

    u: torch.Tensor
    frame: torch.Tensor
    jacobian: torch.Tensor
    pullback: torch.Tensor
    distortion: torch.Tensor
    hessian: torch.Tensor
    hessian_tangential: torch.Tensor
    hessian_normal: torch.Tensor

    @classmethod
    def from_jet(cls, jet: EncoderJet, frame: torch.Tensor) -> "EncoderGeometry":
        """Express a jet in the frame ``shape=[k, m, m]`` (chart components, columns)."""
        J = jet.jacobian @ frame
        H = frame.transpose(-1, -2)[:, None] @ jet.hessian @ frame[:, None]
        tangential, normal = split_hessian(H, J)
        return cls(jet.u, frame, J, J.transpose(-1, -2) @ J, metric_distortion(J), H, tangential, normal)

    def densities(self, penalty="squared") -> dict[str, torch.Tensor]:
        """Direction-averaged integrands of ``L`` without the radial weights, each ``shape=[k]``:
        one per term of ``penalty`` (default: ``distortion = E_v (v.Bv)^2`` and
        ``bending = E_v |H(v,v)|^2 / 16``), plus ``bending_tangential`` and
        ``bending_normal``, which add up to ``bending``."""
        return get_penalty(penalty).densities(self)


def chart_orthonormal_frame(metric: torch.Tensor) -> torch.Tensor:
    """A ``g``-orthonormal frame from the Cholesky factor ``g = C C^T``: ``E = C^-T``.

    ``metric`` ``shape=[k, m, m]``; returns chart components ``shape=[k, m, m]``
    (columns are the frame vectors), ``E^T g E = I``.
    """
    C = torch.linalg.cholesky(metric)
    eye = torch.eye(metric.shape[-1], dtype=metric.dtype).expand_as(metric)
    return torch.linalg.solve_triangular(C.transpose(-1, -2), eye, upper=True)


