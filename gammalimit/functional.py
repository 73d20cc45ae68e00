"""The continuum functional ``L`` (the Gamma-limit, THEORY.md section 3).

Pointwise geometry of an encoder ``phi: R^n -> R^l`` along a data manifold
``M``, all by forward-mode automatic differentiation (``torch.func``)::

    B    = Dphi^T Dphi - I                       metric distortion
    H_ij = d_i d_j (phi o X) - Gamma^k_ij d_k (phi o X)   covariant Hessian
    H    = P_T H + P_N H                         tangential / normal parts,
                                                 P_T onto Dphi(T_x M)

and the limit they feed::

    per pair   l_D -> r^4 (v.Bv)^2,   l_B -> r^4 |H(v,v)|^2 / 16
    L[phi] = kappa int_M [ 2|B|^2 + (tr B)^2 + (lam/16)(2|H|^2 + |tr H|^2) ] / (m(m+2)) dmu

:func:`continuum_loss` integrates ``L`` by deterministic quadrature over the
manifold's chart; :func:`limit_terms` evaluates the per-pair limit at the
``(x, v, r)`` a :class:`~gammalimit.sampling.PairSample` drew, so that
``L_delta - L`` can be estimated with common random numbers
(:func:`discrete_minus_limit`).

Two independent routes give ``H``: chart derivatives with Christoffel symbols
(:func:`encoder_jet`, the primary route), and the second derivative of
``t -> phi(exp_x(t v))`` at ``t = 0`` (:func:`geodesic_jet`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.func import jacfwd, jvp, vmap

from .loss import PairTerms, UnitStatistics, check_lam, evaluate_encoder, pair_terms
from .manifolds.base import DTYPE
from .sampling import PairSample, get_strategy, iter_pairs

#: Coefficient of ``|H(v,v)|^2`` in the limit of the bending penalty,
#: ``l_B -> r^4 |H(v,v)|^2 / 16`` (THEORY.md section 3; derived in
#: :func:`gammalimit.symbolic.pair_penalty_series`).
BENDING_FACTOR = 1.0 / 16.0

#: Points per vectorised batch of second derivatives (bounds memory).
CHUNK = 2048

#: Activations whose first derivative jumps: ``H`` is then a measure, not a
#: function, and ``L`` is not defined (THEORY.md section 3 needs ``phi`` in H^2).
NONSMOOTH_MODULES = (
    torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU, torch.nn.PReLU, torch.nn.RReLU,
    torch.nn.Hardtanh, torch.nn.Hardswish, torch.nn.Hardsigmoid, torch.nn.Hardshrink,
    torch.nn.Softshrink, torch.nn.Threshold,
)


# --------------------------------------------------------------------------
# the formulas of THEORY.md section 3, each once


def metric_distortion(jacobian: torch.Tensor, metric: torch.Tensor | None = None) -> torch.Tensor:
    """``B = Dphi^T Dphi - g``: pull-back metric minus the manifold's metric.

    In a ``g``-orthonormal frame (``metric=None``) this is THEORY.md's
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
    """``H_ij = d_i d_j (phi o X) - Gamma^k_ij d_k (phi o X)`` (THEORY.md section 3).

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


def direction_average(A: torch.Tensor) -> torch.Tensor:
    """``E_v (v.Av)^2 = (2|A|^2 + (tr A)^2) / (m(m+2))`` over unit ``v`` (THEORY.md section 3).

    For a vector-valued form (``H``, with value axes between the batch axis
    and the two frame axes) the same formula gives
    ``E_v |H(v,v)|^2 = (2|H|^2 + |tr H|^2) / (m(m+2))``, with
    ``|H|^2 = sum_ij |H_ij|^2``. Both follow from the isotropic fourth moment
    ``E[v_i v_j v_k v_l] = (d_ij d_kl + d_ik d_jl + d_il d_jk) / (m(m+2))``
    (derived in :func:`gammalimit.symbolic.isotropic_fourth_moment`).

    Parameters
    ----------
    A : tensor, shape=[k, ..., m, m]
        Symmetric in the last two axes, in a ``g``-orthonormal frame.

    Returns
    -------
    tensor, shape=[k]
    """
    m = A.shape[-1]
    norm2 = (A**2).flatten(1).sum(-1)
    trace2 = (torch.diagonal(A, dim1=-2, dim2=-1).sum(-1) ** 2).reshape(A.shape[0], -1).sum(-1)
    return (2 * norm2 + trace2) / (m * (m + 2))


def distortion_limit(vBv: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Limit of the distortion penalty of one pair, ``r^4 (v.Bv)^2``, ``shape=[k]``."""
    return r**4 * vBv**2


def bending_limit(Hvv: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Limit of the bending penalty of one pair, ``r^4 |H(v,v)|^2 / 16``, ``shape=[k]``.

    ``Hvv`` ``shape=[k, l]``, ``r`` ``shape=[k]``.
    """
    return r**4 * BENDING_FACTOR * (Hvv**2).sum(-1)


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
# encoders as differentiable functions


def encoder_function(phi):
    """``phi`` as a float64 function of a batch ``shape=[k, n] -> shape=[k, l]``
    that ``torch.func`` can differentiate.

    A ``torch.nn.Module`` is called through :func:`torch.func.functional_call`
    with float64 CPU copies of its parameters and buffers (derivatives of a
    float32 network are taken in float64; the module itself is not changed).

    Raises
    ------
    TypeError
        If ``phi`` is not callable.
    ValueError
        If ``phi`` contains an activation whose derivative jumps
        (:data:`NONSMOOTH_MODULES`): ``L`` needs a twice differentiable ``phi``.
    """
    if not callable(phi):
        raise TypeError(f"phi must be callable, got {type(phi).__name__}")
    if not isinstance(phi, torch.nn.Module):
        return phi
    rough = sorted({type(mod).__name__ for mod in phi.modules() if isinstance(mod, NONSMOOTH_MODULES)})
    if rough:
        raise ValueError(
            f"phi contains {rough}: its derivative jumps, so the covariant Hessian is not a function "
            "and L is not defined; use twice differentiable activations (Tanh, Softplus, GELU; SiLU fails in torch.func forward mode under torch 2.13)"
        )

    def cast(t):
        return t.detach().to(device="cpu", dtype=DTYPE if t.is_floating_point() else t.dtype)

    params = {k: cast(v) for k, v in phi.named_parameters()}
    buffers = {k: cast(v) for k, v in phi.named_buffers()}

    def f(x):
        return torch.func.functional_call(phi, (params, buffers), (x,))

    return f


def _single(f):
    """A batch function seen as a function of one point."""
    return lambda z: f(z[None])[0]


def _differentiate(fn, *args):
    """Run a ``torch.func`` transform, turning its failures into a clear ``TypeError``."""
    try:
        return fn(*args)
    except (RuntimeError, NotImplementedError) as err:
        raise TypeError(
            "could not differentiate phi o X twice with torch.func (forward-mode autodiff): phi must be "
            "a torch function of its input without in-place updates of captured tensors, .item(), numpy "
            f"round trips or data-dependent control flow. torch said: {err}"
        ) from err


# --------------------------------------------------------------------------
# chart route


@dataclass
class EncoderJet:
    """First and covariant second derivatives of ``phi`` at chart points.

    Attributes
    ----------
    u : tensor, shape=[k, m]
        Chart points.
    metric : tensor, shape=[k, m, m]
        ``g_ij(u)``.
    chart_jacobian : tensor, shape=[k, n, m]
        ``d_i X``, the chart's coordinate vectors in ambient space.
    jacobian : tensor, shape=[k, l, m]
        ``d_i (phi o X)``.
    hessian : tensor, shape=[k, l, m, m]
        ``H_ij``, chart components of the covariant Hessian.
    """

    u: torch.Tensor
    metric: torch.Tensor
    chart_jacobian: torch.Tensor
    jacobian: torch.Tensor
    hessian: torch.Tensor

    def tangent_components(self, v: torch.Tensor, atol: float = 1e-8) -> torch.Tensor:
        """Chart components ``c`` of ambient tangent vectors ``v = d_i X c^i``.

        ``v`` ``shape=[k, n]``; returns ``shape=[k, m]``. Raises ``ValueError``
        if ``v`` is not tangent (relative residual above ``atol``).
        """
        DX = self.chart_jacobian
        c = torch.linalg.solve(torch.einsum("kni,knj->kij", DX, DX), torch.einsum("kni,kn->ki", DX, v))
        resid = torch.linalg.vector_norm(torch.einsum("kni,ki->kn", DX, c) - v, dim=-1)
        scale = torch.linalg.vector_norm(v, dim=-1).clamp_min(1.0)
        bad = ~(resid <= atol * scale)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(
                f"{int(bad.sum())} vector(s) v are not tangent to M at x; first: residual "
                f"{resid[i].item():.3g} off the tangent plane at chart point {self.u[i].tolist()}"
            )
        return c


def _chart_point_function(phi_fn, chart):
    return _single(lambda u: phi_fn(chart.embed(u)))


def encoder_jet(phi, chart, u: torch.Tensor, *, check: bool = True) -> EncoderJet:
    """Derivatives of ``phi o X`` at chart points, by ``torch.func``.

    Parameters
    ----------
    phi : callable or torch.nn.Module
        Encoder ``shape=[k, n] -> shape=[k, l]``, ``l >= m``.
    chart : Chart
    u : tensor, shape=[k, m]
        Chart points inside the chart's box (periodic coordinates may wrap).
    check : bool, default True
        Compare the derivatives at a few points with central differences of
        the values and raise if they disagree (a ``detach`` inside ``phi``
        would otherwise give silently wrong zeros).

    Returns
    -------
    EncoderJet

    Raises
    ------
    ValueError
        On chart points outside the domain, a singular metric, ``l < m``,
        non-finite values or derivatives, or derivatives inconsistent with
        the values.
    TypeError
        If ``phi o X`` cannot be differentiated with ``torch.func``.
    """
    u = torch.as_tensor(u, dtype=DTYPE)
    m = chart.dim
    if u.ndim != 2 or u.shape[1] != m:
        raise ValueError(f"chart points u must have shape (k, {m}), got {tuple(u.shape)}")
    chart.check_domain(u)
    phi_fn = encoder_function(phi)
    values = evaluate_encoder(phi_fn, chart.embed(u))
    if values.shape[1] < m:
        raise ValueError(f"phi has latent dimension l = {values.shape[1]}; the functional needs l >= m = {m}")
    parts = [_jet_chunk(phi_fn, chart, u[i : i + CHUNK]) for i in range(0, u.shape[0], CHUNK)]
    jet = EncoderJet(*(torch.cat([getattr(p, f) for p in parts]) for f in
                       ("u", "metric", "chart_jacobian", "jacobian", "hessian")))
    _check_finite(jet)
    if check:
        _check_against_values(phi_fn, chart, jet)
    return jet


def _jet_chunk(phi_fn, chart, u):
    f = _chart_point_function(phi_fn, chart)

    def first(z):
        J = jacfwd(f)(z)
        return J, J

    with torch.no_grad():
        second, J = _differentiate(vmap(jacfwd(first, has_aux=True)), u)
        DX = _differentiate(vmap(jacfwd(_single(chart.embed))), u)
        dg = _differentiate(vmap(jacfwd(_single(chart.metric))), u)
        g = chart.metric(u)
    _check_metric(g, u)
    H = covariant_hessian(second, J, christoffel_from_metric(g, dg))
    return EncoderJet(u, g, DX, J, H)


def _check_metric(g, u):
    ok = torch.linalg.cholesky_ex(g).info == 0
    if not ok.all():
        i = int((~ok).nonzero()[0])
        raise ValueError(
            f"the chart metric is singular at {int((~ok).sum())} point(s) (e.g. a pole of polar "
            f"coordinates), first at u = {u[i].tolist()}; move the point or use route='geodesic'"
        )


def _check_finite(jet):
    bad = ~(torch.isfinite(jet.jacobian).flatten(1).all(-1) & torch.isfinite(jet.hessian).flatten(1).all(-1))
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"phi has non-finite first or second derivatives at {int(bad.sum())} of {bad.shape[0]} "
            f"points; first at chart point u = {jet.u[i].tolist()}: phi must be twice differentiable on M"
        )


def _check_against_values(phi_fn, chart, jet, n_probe: int = 3, rtol: float = 1e-4):
    """Raise if the derivatives of ``phi o X`` at ``n_probe`` of the points
    disagree with central differences of its values and of its first
    derivatives (relative deviation above ``rtol``; the differences
    themselves are accurate to about ``1e-10``)."""
    idx = torch.linspace(0, jet.u.shape[0] - 1, min(n_probe, jet.u.shape[0])).round().long()
    u0, k, m = jet.u[idx], len(idx), jet.u.shape[1]
    h = 1e-5 * (torch.tensor(chart.upper, dtype=DTYPE) - torch.tensor(chart.lower, dtype=DTYPE))
    up = (u0[:, None, :] + torch.diag(h)).reshape(-1, m)
    down = (u0[:, None, :] - torch.diag(h)).reshape(-1, m)
    f = _chart_point_function(phi_fn, chart)
    with torch.no_grad():
        # [k, step i, value a] and [k, step i, value a, j]
        diff1 = (vmap(f)(up) - vmap(f)(down)).reshape(k, m, -1) / (2 * h[:, None])
        diff2 = (vmap(jacfwd(f))(up) - vmap(jacfwd(f))(down)).reshape(k, m, -1, m) / (2 * h[:, None, None])
        dg = vmap(jacfwd(_single(chart.metric)))(u0)
    first = jet.jacobian[idx].transpose(1, 2)
    # the plain second derivative is the covariant Hessian plus the Christoffel term
    gamma = christoffel_from_metric(jet.metric[idx], dg)
    plain = jet.hessian[idx] + torch.einsum("kpij,kap->kaij", gamma, jet.jacobian[idx])
    err1 = (diff1 - first).abs().max() / (first.abs().max() + diff1.abs().max() + 1e-300)
    err2 = (diff2 - plain.transpose(1, 2)).abs().max() / (
        plain.abs().max() + diff2.abs().max() + first.abs().max() + 1e-300)
    if not (err1 <= rtol and err2 <= rtol):
        raise ValueError(
            "phi's autodiff derivatives disagree with central differences of its values (relative "
            f"deviation {max(err1, err2).item():.3g} > {rtol}): phi is not twice differentiable where "
            "needed, or it detaches its input from the computation (.detach(), .data, no_grad inside)"
        )


# --------------------------------------------------------------------------
# pointwise geometry in an orthonormal frame


@dataclass
class EncoderGeometry:
    """Pointwise geometry of ``phi`` along ``M`` in a ``g``-orthonormal frame (THEORY.md section 3).

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

    def densities(self) -> dict[str, torch.Tensor]:
        """Direction-averaged integrands of ``L`` without ``kappa``, each ``shape=[k]``:
        ``distortion = E_v (v.Bv)^2`` and ``bending = E_v |H(v,v)|^2 / 16``,
        with ``bending = bending_tangential + bending_normal``."""
        return {
            "distortion": direction_average(self.distortion),
            "bending": BENDING_FACTOR * direction_average(self.hessian),
            "bending_tangential": BENDING_FACTOR * direction_average(self.hessian_tangential),
            "bending_normal": BENDING_FACTOR * direction_average(self.hessian_normal),
        }


def chart_orthonormal_frame(metric: torch.Tensor) -> torch.Tensor:
    """A ``g``-orthonormal frame from the Cholesky factor ``g = C C^T``: ``E = C^-T``.

    ``metric`` ``shape=[k, m, m]``; returns chart components ``shape=[k, m, m]``
    (columns are the frame vectors), ``E^T g E = I``.
    """
    C = torch.linalg.cholesky(metric)
    eye = torch.eye(metric.shape[-1], dtype=metric.dtype).expand_as(metric)
    return torch.linalg.solve_triangular(C.transpose(-1, -2), eye, upper=True)


def _chart_points_of(manifold, x, atol=1e-9):
    """Chart coordinates of ambient points, which must lie on ``M`` (``ValueError`` otherwise)."""
    x = torch.as_tensor(x, dtype=DTYPE)
    if x.ndim != 2 or x.shape[1] != manifold.ambient_dim:
        raise ValueError(f"x must have shape (k, {manifold.ambient_dim}), got {tuple(x.shape)}")
    on = manifold.contains(x, atol=atol)
    if not on.all():
        i = int((~on).nonzero()[0])
        raise ValueError(
            f"{int((~on).sum())} of {x.shape[0]} point(s) are not on {manifold!r} "
            f"(tolerance {atol:g}); first: x = {x[i].tolist()[:8]}"
        )
    u = manifold.chart.inverse(x)
    manifold.chart.check_domain(u)
    return u


def encoder_geometry(phi, manifold, x=None, *, u=None, check: bool = True) -> EncoderGeometry:
    """Metric distortion ``B`` and covariant Hessian ``H`` of ``phi`` at points of ``M``.

    Give either ambient points ``x`` (the frame is then the manifold's own
    :meth:`tangent_frame`) or chart points ``u`` (the frame is
    :func:`chart_orthonormal_frame`).

    Parameters
    ----------
    phi : callable or torch.nn.Module
        Encoder ``shape=[k, n] -> shape=[k, l]``, ``l >= m``.
    manifold : Manifold
    x : tensor, shape=[k, ambient_dim], optional
    u : tensor, shape=[k, m], optional
    check : bool
        See :func:`encoder_jet`.

    Returns
    -------
    EncoderGeometry
    """
    if (x is None) == (u is None):
        raise TypeError("give exactly one of x (ambient points) and u (chart points)")
    if x is not None:
        jet = encoder_jet(phi, manifold.chart, _chart_points_of(manifold, x), check=check)
        ambient = manifold.tangent_frame(manifold.chart.embed(jet.u))
        frame = torch.stack([jet.tangent_components(ambient[:, :, a]) for a in range(ambient.shape[-1])], -1)
    else:
        jet = encoder_jet(phi, manifold.chart, u, check=check)
        frame = chart_orthonormal_frame(jet.metric)
    return EncoderGeometry.from_jet(jet, frame)


# --------------------------------------------------------------------------
# geodesic route


def geodesic_jet(phi, manifold, x, v, *, offset: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``Dphi v`` and ``H(v, v)`` as derivatives of ``t -> phi(exp_x(t v))`` at ``t = 0``.

    Along a geodesic ``gamma``, ``d^2/dt^2 phi(gamma(t)) = H(gamma', gamma')``
    since ``gamma`` has no covariant acceleration: an independent route to
    ``H`` that needs only :meth:`exp`. Exponential maps written through
    ``|v|`` (the sphere's ``cos|v|``, ``sin|v|/|v|``) have no usable
    derivatives at ``v = 0``, so the same geodesic is parametrised from the
    point ``x0 = gamma(-offset)`` with velocity ``v0 = gamma'(-offset)``:
    ``gamma(t) = exp_x0((offset + t) v0)``, differentiated at ``t = 0``.

    Parameters
    ----------
    phi : callable or torch.nn.Module
    manifold : Manifold
    x : tensor, shape=[k, ambient_dim]
        Points on ``M``.
    v : tensor, shape=[k, ambient_dim]
        Tangent vectors at ``x``.
    offset : float, optional
        Geodesic length parameter of the shift, default
        ``0.1 * injectivity_radius``; ``0`` differentiates at ``x`` itself.

    Returns
    -------
    velocity, acceleration : tensor, each shape=[k, l]
        ``Dphi v`` and ``H(v, v)``.
    """
    phi_fn = encoder_function(phi)
    x = torch.as_tensor(x, dtype=DTYPE)
    v = torch.as_tensor(v, dtype=DTYPE)
    _chart_points_of(manifold, x)
    offset = 0.1 * manifold.injectivity_radius if offset is None else float(offset)
    with torch.no_grad():
        def shifted(z, w):
            return jvp(lambda t: manifold.exp(z[None], (t * w)[None])[0], (torch.tensor(-offset),),
                       (torch.tensor(1.0),))

        x0, v0 = _differentiate(vmap(shifted), x, v) if offset else (x, v)

        def curve(z, w, t):
            return phi_fn(manifold.exp(z[None], ((offset + t) * w)[None]))[0]

        def velocity(z, w, t):
            return jvp(lambda s: curve(z, w, s), (t,), (torch.ones_like(t),))[1]

        def jet(z, w):
            return jvp(lambda s: velocity(z, w, s), (torch.tensor(0.0),), (torch.tensor(1.0),))

        parts = [_differentiate(vmap(jet), x0[i : i + CHUNK], v0[i : i + CHUNK]) for i in range(0, x.shape[0], CHUNK)]
    velocity, acceleration = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    bad = ~(torch.isfinite(velocity).all(-1) & torch.isfinite(acceleration).all(-1))
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"phi has non-finite derivatives along the geodesic at {int(bad.sum())} of {x.shape[0]} points; "
            f"first at x = {x[i].tolist()[:8]}: phi must be twice differentiable on M"
        )
    return velocity, acceleration


# --------------------------------------------------------------------------
# the per-pair limit


ROUTES = ("chart", "geodesic")


def directional_derivatives(phi, manifold, x, v, *, route: str = "chart", check: bool = True):
    """``v.Bv`` and ``H(v, v)`` for unit tangent vectors ``v`` at ``x``.

    Parameters
    ----------
    phi : callable or torch.nn.Module
    manifold : Manifold
    x, v : tensor, each shape=[k, ambient_dim]
        Points on ``M`` and ``g``-unit tangent vectors at them.
    route : {"chart", "geodesic"}
        Chart derivatives with Christoffel symbols (:func:`encoder_jet`), or
        derivatives along the geodesic (:func:`geodesic_jet`; there
        ``|v|_g = 1`` is taken as given and ``v.Bv = |Dphi v|^2 - 1``).
    check : bool
        See :func:`encoder_jet`.

    Returns
    -------
    vBv : tensor, shape=[k]
    Hvv : tensor, shape=[k, l]
    """
    if route == "chart":
        jet = encoder_jet(phi, manifold.chart, _chart_points_of(manifold, x), check=check)
        c = jet.tangent_components(torch.as_tensor(v, dtype=DTYPE))
        vBv = torch.einsum("ki,kij,kj->k", c, metric_distortion(jet.jacobian, jet.metric), c)
        return vBv, torch.einsum("ki,kaij,kj->ka", c, jet.hessian, c)
    if route == "geodesic":
        velocity, acceleration = geodesic_jet(phi, manifold, x, v)
        return (velocity**2).sum(-1) - 1.0, acceleration
    raise ValueError(f"route must be one of {ROUTES}, got {route!r}")


def limit_terms(phi, manifold, pairs: PairSample, *, route: str = "chart", check: bool = True) -> PairTerms:
    """The per-pair limit of the penalties at the pairs' own ``(x, v, r)``.

    ``distortion = r^4 (v.Bv)^2`` and ``bending = r^4 |H(v,v)|^2 / 16``
    (THEORY.md section 3): the ``delta -> 0`` limits of ``l_D`` and ``l_B``
    of :func:`gammalimit.loss.pair_terms` for the same pairs, so that
    ``pair_terms(phi, pairs).total(lam) - limit_terms(phi, M, pairs).total(lam)``
    estimates ``L_delta - L`` with common random numbers.

    Parameters
    ----------
    phi : callable or torch.nn.Module
    manifold : Manifold
    pairs : PairSample
    route, check
        See :func:`directional_derivatives`.

    Returns
    -------
    PairTerms
        ``distortion, bending`` each ``shape=[k]``.
    """
    vBv, Hvv = directional_derivatives(phi, manifold, pairs.x, pairs.v, route=route, check=check)
    r = pairs.r.to(DTYPE)
    return PairTerms(distortion_limit(vBv, r), bending_limit(Hvv, r))


def limit_integrand(phi, manifold, pairs: PairSample, *, lam: float, route: str = "chart") -> torch.Tensor:
    """``r^4 [ (v.Bv)^2 + lam |H(v,v)|^2 / 16 ]`` at each pair's ``(x, v, r)``, ``shape=[k]``.

    Its mean over pairs from :func:`~gammalimit.sampling.sample_pairs` is an
    unbiased estimate of ``L`` (on a manifold without boundary).
    """
    return limit_terms(phi, manifold, pairs, route=route).total(check_lam(lam))


# --------------------------------------------------------------------------
# quadrature over the chart and the functional


def chart_quadrature(chart, counts) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensor-product rule over the chart's box: the periodic trapezoid rule
    for periodic coordinates, Gauss-Legendre otherwise.

    Parameters
    ----------
    chart : Chart
    counts : sequence of int, length m
        Nodes per coordinate.

    Returns
    -------
    nodes : tensor, shape=[N, m]
    weights : tensor, shape=[N]
        Weights for ``du`` (the volume factor ``sqrt(det g)`` is not included).
    """
    axes, weights = [], []
    for lo, hi, periodic, n in zip(chart.lower, chart.upper, chart.periodic, counts):
        if periodic:
            h = (hi - lo) / n
            axes.append(lo + h * torch.arange(n, dtype=DTYPE))
            weights.append(torch.full((n,), h, dtype=DTYPE))
        else:
            t, w = np.polynomial.legendre.leggauss(n)
            axes.append(torch.from_numpy(lo + 0.5 * (hi - lo) * (t + 1)))
            weights.append(torch.from_numpy(0.5 * (hi - lo) * w))
    nodes = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    w = weights[0]
    for wi in weights[1:]:
        w = (w[:, None] * wi[None, :]).reshape(-1)
    return nodes, w


@dataclass
class ContinuumLoss:
    """The Gamma-limit ``L[phi]`` and its parts (THEORY.md section 3).

    ``total = distortion + lam * bending`` and
    ``bending = bending_tangential + bending_normal``; every part includes
    ``kappa``. ``error`` estimates the quadrature error of ``total`` as its
    change from the rule with half the nodes per coordinate; ``error_split``
    is the larger such change of ``bending_tangential`` and
    ``bending_normal``, which converge more slowly than their sum where
    ``Dphi(T_x M)`` turns fast (the adaptation watches ``distortion`` and
    ``bending`` only). ``n_nodes`` and ``nodes`` describe the finer rule,
    whose values are reported; ``converged`` says whether the tolerance was met.
    """

    total: float
    distortion: float
    bending: float
    bending_normal: float
    bending_tangential: float
    error: float
    error_split: float
    n_nodes: int
    nodes: tuple[int, ...]
    converged: bool
    lam: float
    kappa: float
    strategy: str

    def to_dict(self) -> dict:
        out = asdict(self)
        out["nodes"] = list(self.nodes)
        return out


_PARTS = ("distortion", "bending", "bending_tangential", "bending_normal")


def _integrate(phi_fn, chart, counts, check):
    """``int_M density dmu`` of each part (without ``kappa``), as floats."""
    u, w = chart_quadrature(chart, counts)
    sums = dict.fromkeys(_PARTS, 0.0)
    for i in range(0, u.shape[0], CHUNK):
        jet = encoder_jet(phi_fn, chart, u[i : i + CHUNK], check=check and i == 0)
        densities = EncoderGeometry.from_jet(jet, chart_orthonormal_frame(jet.metric)).densities()
        weight = w[i : i + CHUNK] * torch.sqrt(torch.linalg.det(jet.metric)) / chart.volume
        for key in _PARTS:
            sums[key] += float(weight @ densities[key])
    return sums


def continuum_loss(phi, manifold, *, lam: float, strategy="shell", nodes=None, rtol: float = 1e-12,
                   atol: float = 1e-20, max_nodes: int = 1 << 18, check: bool = True) -> ContinuumLoss:
    """The Gamma-limit ``L[phi]`` by deterministic quadrature over the chart (THEORY.md section 3).

    ``L = kappa int_M [E_v (v.Bv)^2 + lam E_v |H(v,v)|^2 / 16] dmu`` with the
    direction averages of :func:`direction_average`; the bending part is split
    into its parts tangent and normal to ``phi(M)``. The rule
    (:func:`chart_quadrature`) is the periodic trapezoid rule or
    Gauss-Legendre per chart coordinate, weighted by ``sqrt(det g) / volume``;
    both converge exponentially for smooth ``phi``. Starting from ``nodes``
    per coordinate (default 16), the node counts are doubled until two
    successive rules agree to ``rtol`` relative (or ``atol`` absolute, for
    integrals that vanish); the finer value is returned, and their
    difference is the error estimate. Points are evaluated in chunks of
    :data:`CHUNK`, so memory stays bounded.

    Parameters
    ----------
    phi : callable or torch.nn.Module
        Encoder ``shape=[k, ambient_dim] -> shape=[k, l]``, ``l >= m``,
        twice differentiable on ``M`` (written in torch).
    manifold : Manifold
    lam : float, >= 0
        Weight of the bending term.
    strategy : {"shell", "ball"} or strategy object
        Sets ``kappa = E[r^4]``.
    nodes : int or sequence of int, optional
        If given, no adaptation: the rule with these nodes per coordinate is
        compared with the one with twice as many.
    rtol, atol : float
        Tolerances of the adaptation.
    max_nodes : int
        Largest total number of nodes of a rule; a warning says when the
        tolerance was not met within it.
    check : bool
        Probe the derivatives against central differences (:func:`encoder_jet`).

    Returns
    -------
    ContinuumLoss

    Raises
    ------
    ValueError, TypeError
        On bad arguments or an encoder that is not twice differentiable on ``M``.
    """
    lam = check_lam(lam)
    strat = get_strategy(strategy)
    chart = manifold.chart
    m = chart.dim
    kappa = float(strat.kappa(m))
    fixed = nodes is not None
    counts = _node_counts(nodes, m)
    phi_fn = encoder_function(phi)
    coarse = _integrate(phi_fn, chart, counts, check)
    while True:
        counts = tuple(2 * c for c in counts)
        fine = _integrate(phi_fn, chart, counts, False)
        scale = abs(fine["distortion"]) + abs(fine["bending"])
        change = max(abs(fine[k] - coarse[k]) for k in ("distortion", "bending"))
        converged = change <= max(rtol * scale, atol)
        if fixed or converged:
            break
        if math.prod(2 * c for c in counts) > max_nodes:
            warnings.warn(
                f"continuum_loss did not reach rtol={rtol:g} within max_nodes={max_nodes} "
                f"(nodes {counts}, relative change {change / max(scale, 1e-300):.2g})", stacklevel=2)
            break
        coarse = fine
    parts = {k: kappa * fine[k] for k in _PARTS}
    error = kappa * abs(fine["distortion"] - coarse["distortion"] + lam * (fine["bending"] - coarse["bending"]))
    error_split = kappa * max(abs(fine[k] - coarse[k]) for k in ("bending_tangential", "bending_normal"))
    return ContinuumLoss(
        total=parts["distortion"] + lam * parts["bending"],
        error=error,
        error_split=error_split,
        n_nodes=math.prod(counts),
        nodes=counts,
        converged=bool(converged),
        lam=lam,
        kappa=kappa,
        strategy=strat.name,
        **parts,
    )


def _node_counts(nodes, m):
    if nodes is None:
        return (16,) * m
    counts = (nodes,) * m if isinstance(nodes, (int, np.integer)) and not isinstance(nodes, bool) else tuple(nodes)
    if len(counts) != m or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 2
                                   for c in counts):
        raise ValueError(f"nodes must be an integer >= 2 or {m} such integers, got {nodes!r}")
    return tuple(int(c) for c in counts)


# --------------------------------------------------------------------------
# L_delta - L with common random numbers


@dataclass
class GapEstimate:
    """Monte Carlo estimate of ``E[l - l_0]``: the per-pair penalties minus
    their limits at the same pairs (:func:`discrete_minus_limit`).

    ``total = distortion + lam * bending``; ``stderr*`` are standard errors
    from the sampling units. ``limit_total`` is the same pairs' mean of the
    limit integrand (an estimate of ``L`` on a manifold without boundary).
    """

    total: float
    distortion: float
    bending: float
    stderr: float
    stderr_distortion: float
    stderr_bending: float
    limit_total: float
    limit_stderr: float
    n: int
    n_units: int
    delta: float
    lam: float
    strategy: str
    antithetic: bool
    qmc: bool
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def discrete_minus_limit(phi, manifold, *, delta: float, lam: float, n: int, strategy="shell",
                         antithetic: bool = False, qmc: bool = False, seed: int = 0,
                         qmc_replicates: int = 8, route: str = "chart") -> GapEstimate:
    """Estimate ``L_delta - L`` with common random numbers (THEORY.md section 2).

    Each pair contributes ``l(x, y) - l_0(x, v, r)``: its penalties
    (:func:`gammalimit.loss.pair_terms`) minus their limits at the same
    ``(x, v, r)`` (:func:`limit_terms`). The difference is ``O(delta)`` per
    pair and ``O(delta^2)`` per antithetic couple, so its standard error
    shrinks with ``delta`` instead of stalling at the Monte Carlo noise of
    either loss. On a manifold with boundary the sampler's ``x``-marginal is
    not ``mu`` (THEORY.md section 4): the estimate is then of
    ``L_delta - E_sampler[l_0]``, and ``E_sampler[l_0] - L`` (compare
    ``limit_total`` with :func:`continuum_loss`) is the rest of the gap.

    Parameters are those of :func:`gammalimit.discrete_loss`; ``route`` is
    that of :func:`limit_terms`.

    Returns
    -------
    GapEstimate
    """
    lam = check_lam(lam)
    strat = get_strategy(strategy)
    phi_fn = encoder_function(phi)
    stats = UnitStatistics(3, antithetic=antithetic, qmc=qmc)
    n_pairs, first = 0, True
    for pairs in iter_pairs(manifold, n, delta, strategy=strat, antithetic=antithetic, qmc=qmc, seed=seed,
                            qmc_replicates=qmc_replicates):
        with torch.no_grad():
            terms = pair_terms(phi_fn, pairs)
        limit = limit_terms(phi_fn, manifold, pairs, route=route, check=first)
        first = False
        stats.add(torch.stack([terms.distortion - limit.distortion, terms.bending - limit.bending,
                               limit.total(lam)], -1), pairs.replicate[0])
        n_pairs += len(pairs)
    mean, cov, _ = stats.result()
    w = torch.tensor([1.0, lam, 0.0], dtype=DTYPE)
    return GapEstimate(
        total=float(w @ mean),
        distortion=float(mean[0]),
        bending=float(mean[1]),
        stderr=math.sqrt(max(0.0, float(w @ cov @ w))),
        stderr_distortion=math.sqrt(max(0.0, float(cov[0, 0]))),
        stderr_bending=math.sqrt(max(0.0, float(cov[1, 1]))),
        limit_total=float(mean[2]),
        limit_stderr=math.sqrt(max(0.0, float(cov[2, 2]))),
        n=n_pairs,
        n_units=stats.n_units,
        delta=float(delta),
        lam=lam,
        strategy=strat.name,
        antithetic=bool(antithetic),
        qmc=bool(qmc),
        seed=int(seed),
    )
