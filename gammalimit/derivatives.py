"""Derivatives of an encoder at points of a data manifold, by forward-mode autodiff (``torch.func``).

The chart route (:func:`encoder_jet`): the full ``Dphi`` and covariant
Hessian ``H_ij = d_i d_j (phi o X) - Gamma^k_ij d_k (phi o X)`` at each chart
point, per point through ``vmap`` (docs/theory.md, section 3). The quadrature
uses it, and it checks the faster routes along tangent directions
(:mod:`gammalimit.directional`). :func:`encoder_geometry` expresses a jet in a
``g``-orthonormal frame.

Also the plumbing every route shares: :func:`encoder_function` (``phi`` as a
float64 function ``torch.func`` can differentiate), :func:`differentiate`
(its failures as a clear ``TypeError``), :func:`chart_points_of` (ambient
points to chart points) and the checks of the derivatives, which name how
many points fail and the first (:func:`refuse_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch.func import jacfwd, vmap

from .geometry import EncoderGeometry, chart_orthonormal_frame, christoffel_from_metric, covariant_hessian, solve_small
from .loss import evaluate_encoder
from .manifolds.base import DTYPE

#: Points per vectorised batch of second derivatives (bounds memory).
CHUNK = 2048

#: Activations whose first derivative jumps: ``H`` is then a measure, not a
#: function, and ``L`` is not defined (docs/theory.md, section 3 needs ``phi`` in H^2).
NONSMOOTH_MODULES = (
    torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU, torch.nn.PReLU, torch.nn.RReLU,
    torch.nn.Hardtanh, torch.nn.Hardswish, torch.nn.Hardsigmoid, torch.nn.Hardshrink,
    torch.nn.Softshrink, torch.nn.Threshold,
)


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


def differentiate(fn, *args):
    """Run a ``torch.func`` transform, turning its failures into a clear ``TypeError``."""
    try:
        return fn(*args)
    except (RuntimeError, NotImplementedError) as err:
        raise TypeError(
            "could not differentiate phi o X twice with torch.func (forward-mode autodiff): phi must be "
            "a torch function of its input without in-place updates of captured tensors, .item(), numpy "
            f"round trips or data-dependent control flow. torch said: {err}"
        ) from err


def refuse_rows(bad: torch.Tensor, message) -> None:
    """Raise ``ValueError(message(count, first))`` if any entry of the row mask ``bad``
    (``shape=[k]``) is set: ``count`` of them are, the first at index ``first``."""
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(message(int(bad.sum()), i))


def check_latent_dim(l: int, m: int, needed_by: str = "the functional") -> None:
    """Raise ``ValueError`` if ``phi``'s latent dimension ``l`` is below ``m = dim M``."""
    if l < m:
        raise ValueError(f"phi has latent dimension l = {l}; {needed_by} needs l >= m = {m}")


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
        """Chart components ``c`` of ambient tangent vectors ``v = d_i X c^i``
        (:func:`tangent_components`), ``shape=[k, m]``."""
        return tangent_components(self.chart_jacobian, v, self.u, atol)

    @classmethod
    def cat(cls, parts: list["EncoderJet"]) -> "EncoderJet":
        """The jets of consecutive batches of points as one."""
        return cls(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)))


def tangent_components(chart_jacobian: torch.Tensor, v: torch.Tensor, u: torch.Tensor,
                       atol: float = 1e-8) -> torch.Tensor:
    """Chart components ``c`` of ambient tangent vectors ``v = d_i X c^i`` (least squares).

    ``chart_jacobian`` ``shape=[k, n, m]`` (``d_i X`` at chart points ``u``
    ``shape=[k, m]``), ``v`` ``shape=[k, n]``; returns ``shape=[k, m]``.
    Raises ``ValueError`` if ``v`` is not tangent (relative residual above ``atol``).
    """
    DX = chart_jacobian
    DXt = DX.transpose(1, 2)
    c = solve_small(DXt @ DX, (DXt @ v[:, :, None])[..., 0])
    resid = torch.linalg.vector_norm((DX @ c[:, :, None])[..., 0] - v, dim=-1)
    scale = torch.linalg.vector_norm(v, dim=-1).clamp_min(1.0)
    refuse_rows(~(resid <= atol * scale), lambda count, i: (
        f"{count} vector(s) v are not tangent to M at x; first: residual "
        f"{resid[i].item():.3g} off the tangent plane at chart point {u[i].tolist()}"))
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
    u = check_chart_points(chart, u)
    phi_fn = encoder_function(phi)
    values = evaluate_encoder(phi_fn, chart.embed(u))
    check_latent_dim(values.shape[1], chart.dim)
    jet = EncoderJet.cat([_jet_chunk(phi_fn, chart, u[i : i + CHUNK]) for i in range(0, u.shape[0], CHUNK)])
    check_finite_jet(jet)
    if check:
        check_against_values(phi_fn, chart, jet)
    return jet


def check_chart_points(chart, u) -> torch.Tensor:
    """``u`` as float64 chart points ``shape=[k, m]`` inside the chart's domain (``ValueError`` otherwise)."""
    u = torch.as_tensor(u, dtype=DTYPE)
    m = chart.dim
    if u.ndim != 2 or u.shape[1] != m:
        raise ValueError(f"chart points u must have shape (k, {m}), got {tuple(u.shape)}")
    chart.check_domain(u)
    return u


def _jet_chunk(phi_fn, chart, u):
    f = _chart_point_function(phi_fn, chart)

    def first(z):
        J = jacfwd(f)(z)
        return J, J

    with torch.no_grad():
        second, J = differentiate(vmap(jacfwd(first, has_aux=True)), u)
        DX = differentiate(vmap(jacfwd(_single(chart.embed))), u)
        dg = differentiate(vmap(jacfwd(_single(chart.metric))), u)
        g = chart.metric(u)
    check_metric(g, u)
    H = covariant_hessian(second, J, christoffel_from_metric(g, dg))
    return EncoderJet(u, g, DX, J, H)


def check_metric(g, u):
    """Raise ``ValueError`` if a chart metric ``g`` ``shape=[k, m, m]`` at ``u`` is not positive definite."""
    m = g.shape[-1]
    if m == 1:
        ok = g[:, 0, 0] > 0
    elif m == 2:  # Sylvester's criterion: cheaper than a batched Cholesky of tiny matrices
        ok = (g[:, 0, 0] > 0) & (g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0] > 0)
    else:
        ok = torch.linalg.cholesky_ex(g).info == 0
    refuse_rows(~ok, lambda count, i: (
        f"the chart metric is singular at {count} point(s) (e.g. a pole of polar "
        f"coordinates), first at u = {u[i].tolist()}; move the point or use route='geodesic'"))


def check_finite_jet(jet: EncoderJet) -> None:
    """Raise ``ValueError`` if a jet has non-finite first or second derivatives."""
    bad = ~(torch.isfinite(jet.jacobian).flatten(1).all(-1) & torch.isfinite(jet.hessian).flatten(1).all(-1))
    refuse_rows(bad, lambda count, i: (
        f"phi has non-finite first or second derivatives at {count} of {bad.shape[0]} "
        f"points; first at chart point u = {jet.u[i].tolist()}: phi must be twice differentiable on M"))


def check_against_values(phi_fn, chart, jet, n_probe: int = 3, rtol: float = 1e-4):
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


def chart_points_of(manifold, x, atol=1e-9):
    """Chart coordinates of ambient points, which must lie on ``M`` (``ValueError`` otherwise)."""
    x = torch.as_tensor(x, dtype=DTYPE)
    if x.ndim != 2 or x.shape[1] != manifold.ambient_dim:
        raise ValueError(f"x must have shape (k, {manifold.ambient_dim}), got {tuple(x.shape)}")
    refuse_rows(~manifold.contains(x, atol=atol), lambda count, i: (
        f"{count} of {x.shape[0]} point(s) are not on {manifold!r} "
        f"(tolerance {atol:g}); first: x = {x[i].tolist()[:8]}"))
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
        jet = encoder_jet(phi, manifold.chart, chart_points_of(manifold, x), check=check)
        ambient = manifold.tangent_frame(manifold.chart.embed(jet.u))
        frame = torch.stack([jet.tangent_components(ambient[:, :, a]) for a in range(ambient.shape[-1])], -1)
    else:
        jet = encoder_jet(phi, manifold.chart, u, check=check)
        frame = chart_orthonormal_frame(jet.metric)
    return EncoderGeometry.from_jet(jet, frame)
