"""Derivatives of an encoder along a data manifold, by forward-mode autodiff (``torch.func``).

Three routes give the covariant Hessian ``H``:

- chart derivatives with Christoffel symbols (:func:`encoder_jet`): the full
  ``Dphi`` and ``H`` at each point, per point through ``vmap``; the
  quadrature uses it, and it checks the others;
- ``H(v, v)`` as the second derivative of ``phi`` along the chart geodesic
  ``u(t) = u + t c - t^2 Gamma(c, c) / 2`` (:func:`curve_jet`): one nested
  ``jvp`` over the whole batch, no ``vmap``, so it needs an encoder that acts
  row by row (checked); the fast route for sampled pairs;
- the second derivative of ``t -> phi(exp_x(t v))`` at ``t = 0``
  (:func:`geodesic_jet`), through the manifold's ``exp`` only.

:func:`encoder_geometry` expresses a jet in a ``g``-orthonormal frame;
:func:`directional_jet` evaluates ``Dphi v`` and ``H(v, v)`` at the
``(x, v)`` of sampled pairs by any route.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import jacfwd, jvp, vmap

from .geometry import (EncoderGeometry, chart_orthonormal_frame, christoffel_from_metric, covariant_hessian,
                       geodesic_acceleration, metric_distortion, solve_small)
from .loss import evaluate_encoder
from .manifolds.base import DTYPE
from .penalties import DirectionalJet
from .validation import check_choice

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
        """Chart components ``c`` of ambient tangent vectors ``v = d_i X c^i``
        (:func:`tangent_components`), ``shape=[k, m]``."""
        return tangent_components(self.chart_jacobian, v, self.u, atol)


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
    bad = ~(resid <= atol * scale)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"{int(bad.sum())} vector(s) v are not tangent to M at x; first: residual "
            f"{resid[i].item():.3g} off the tangent plane at chart point {u[i].tolist()}"
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
    m = g.shape[-1]
    if m == 1:
        ok = g[:, 0, 0] > 0
    elif m == 2:  # Sylvester's criterion: cheaper than a batched Cholesky of tiny matrices
        ok = (g[:, 0, 0] > 0) & (g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0] > 0)
    else:
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
# jvp route: derivatives along the chart geodesic, one batched nested jvp

#: Ambient floats per batch of the jvp route: each ``torch.func`` call has a
#: large fixed cost (milliseconds), so batches are as large as memory allows.
JVP_FLOATS = 1 << 22


def chart_derivatives(chart, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Metric ``g``, ``d_i X`` and ``d_l g_ij`` at chart points, by one batched ``jvp``.

    Parameters
    ----------
    chart : Chart
    u : tensor, shape=[k, m]

    Returns
    -------
    metric : tensor, shape=[k, m, m]
    chart_jacobian : tensor, shape=[k, n, m]
        ``[:, :, i] = d_i X``.
    metric_derivative : tensor, shape=[k, m, m, m]
        ``[:, i, j, l] = d_l g_ij``.
    """
    k, m = u.shape
    # the m coordinate directions as one batch of m k rows
    basis = torch.eye(m, dtype=u.dtype).repeat_interleave(k, 0)
    (_, g), (dX, dg) = _differentiate(jvp, lambda z: (chart.embed(z), chart.metric(z)), (u.repeat(m, 1),), (basis,))
    return (g[:k], dX.reshape(m, k, -1).permute(1, 2, 0), dg.reshape(m, k, m, m).permute(1, 2, 3, 0))


def curve_jet(phi_fn, chart, u: torch.Tensor, c: torch.Tensor, acceleration: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """First and second derivatives of ``t -> phi(X(u(t)))`` at ``t = 0`` for the
    curves ``u(t) = u + t c + t^2 a / 2``, by one nested ``jvp`` over the batch.

    ``d/dt = D(phi o X) c`` and ``d^2/dt^2 = D^2(phi o X)[c, c] + D(phi o X) a``:
    with ``a = -Gamma(c, c)`` (:func:`~gammalimit.geometry.geodesic_acceleration`)
    the curve is the geodesic to second order and these are ``Dphi v`` and
    ``H(v, v)``, equal to the chart route's up to round-off. No ``vmap``: the
    batch is differentiated as one function, so ``phi`` must act row by row
    (:func:`check_rowwise`).

    Parameters
    ----------
    phi_fn : callable
        ``shape=[k, n] -> shape=[k, l]`` (see :func:`encoder_function`).
    chart : Chart
    u, c, acceleration : tensor, each shape=[k, m]

    Returns
    -------
    velocity, acceleration : tensor, each shape=[k, l]
    """
    def along(z, w):  # D(phi o X)(z) w
        return jvp(lambda y: phi_fn(chart.embed(y)), (z,), (w,))[1]

    return _differentiate(jvp, along, (u, c), (c, acceleration))


def encoder_jet_jvp(phi, chart, u: torch.Tensor, *, check: bool = True, manifold=None) -> EncoderJet:
    """:func:`encoder_jet` by the jvp route: the full ``Dphi`` and ``H`` from
    second derivatives along chart geodesics, one batched nested ``jvp``.

    The ``m (m + 1) / 2`` directions ``e_i`` and ``e_i + e_j`` (``i < j``) go
    in one call, the batch repeated once per direction; ``H_ii = H(e_i, e_i)``,
    ``H_ij = (H(e_i + e_j, e_i + e_j) - H_ii - H_jj) / 2`` and
    ``d_i (phi o X)`` the first derivatives along ``e_i``. ``phi`` must act row
    by row (checked with ``check`` on points of ``manifold``, if given, as are
    the derivatives against central differences, as in :func:`encoder_jet`).

    Parameters and return value as :func:`encoder_jet`.
    """
    u = torch.as_tensor(u, dtype=DTYPE)
    m = chart.dim
    if u.ndim != 2 or u.shape[1] != m:
        raise ValueError(f"chart points u must have shape (k, {m}), got {tuple(u.shape)}")
    chart.check_domain(u)
    phi_fn = encoder_function(phi)
    if check and manifold is not None:
        check_rowwise(phi_fn, manifold)
    eye = torch.eye(m, dtype=DTYPE)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    directions = torch.cat([eye] + [(eye[i] + eye[j])[None] for i, j in pairs])  # [d, m]
    nd = directions.shape[0]
    n_ambient = chart.embed(u[:1]).shape[1]
    rows = max(64, JVP_FLOATS // (n_ambient * nd))
    parts = []
    with torch.no_grad():
        for s in range(0, u.shape[0], rows):
            uc = u[s : s + rows]
            k = uc.shape[0]
            g, DX, dg = chart_derivatives(chart, uc)
            _check_metric(g, uc)
            c = directions.repeat_interleave(k, 0)  # direction-major
            U, G, dG = uc.repeat(nd, 1), g.repeat(nd, 1, 1), dg.repeat(nd, 1, 1, 1)
            velocity, acc = curve_jet(phi_fn, chart, U, c, geodesic_acceleration(G, dG, c))
            velocity, acc = velocity.reshape(nd, k, -1), acc.reshape(nd, k, -1)
            J = velocity[:m].permute(1, 2, 0)  # [k, l, m]
            H = torch.diag_embed(acc[:m].permute(1, 2, 0))  # [k, l, m, m]
            for p, (i, j) in enumerate(pairs):
                H[:, :, i, j] = H[:, :, j, i] = 0.5 * (acc[m + p] - acc[i] - acc[j])
            parts.append(EncoderJet(uc, g, DX, J, H))
    jet = EncoderJet(*(torch.cat([getattr(p, f) for p in parts]) for f in
                       ("u", "metric", "chart_jacobian", "jacobian", "hessian")))
    if jet.jacobian.shape[1] < m:
        raise ValueError(f"phi has latent dimension l = {jet.jacobian.shape[1]}; the functional needs l >= m = {m}")
    _check_finite(jet)
    if check:
        _check_against_values(phi_fn, chart, jet)
    return jet


def check_rowwise(phi_fn, manifold, n_probe: int = 8, rtol: float = 1e-9) -> None:
    """Raise ``ValueError`` if ``phi`` mixes the rows of its batch.

    The jvp route differentiates a whole batch as one function: that gives
    each point's own derivatives only if row ``i`` of ``phi(x)`` depends on
    ``x_i`` alone (not so for BatchNorm in training mode, or for anything
    that normalises over the batch). Checked on ``n_probe`` points of ``M``:
    ``phi`` on the batch against ``phi`` on its two halves, and the ``jvp``
    of a tangent in the first row only, which must leave the other rows at 0.
    """
    x = manifold.sample(n_probe, torch.Generator().manual_seed(0)).to(DTYPE)
    half = n_probe // 2

    def refuse(what):
        raise ValueError(
            f"phi mixes the rows of its batch ({what}): it is not a function of one point, e.g. BatchNorm in "
            "training mode or Dropout. Call phi.eval() first; route='chart' differentiates each point alone "
            "(through vmap)"
        )

    with torch.no_grad():
        whole = phi_fn(x)
        split = torch.cat([phi_fn(x[:half]), phi_fn(x[half:])])
        gap = float((whole - split).abs().max()) / (float(whole.abs().max()) + 1e-300)
        if not gap <= rtol:
            refuse(f"a row's code changed by {gap:.2g} relative when the batch was split in two")
        tangent = torch.zeros_like(x)
        tangent[0] = 1.0
        _, moved = _differentiate(jvp, phi_fn, (x,), (tangent,))
    leak = float(moved[1:].abs().max()) / (float(moved.abs().max()) + 1e-300)
    if not leak <= rtol:
        refuse(f"a tangent in one row moved the others' codes by {leak:.2g} relative")


def jvp_jet(phi, manifold, x, v, *, check: bool = True) -> DirectionalJet:
    """``v.Bv``, ``Dphi v`` and ``H(v, v)`` by the jvp route (:func:`curve_jet`).

    ``c`` are the chart components of ``v`` (as in the chart route), and
    ``v.Bv = |Dphi v|^2 - c.g c``. With ``check``, ``phi`` is checked to act
    row by row (:func:`check_rowwise`) and the derivatives at three points
    are compared with central differences of ``phi`` along the curve (a
    ``detach`` inside ``phi`` would otherwise give silently wrong zeros).

    Parameters and return value as :func:`directional_jet`.
    """
    phi_fn = encoder_function(phi)
    x = torch.as_tensor(x, dtype=DTYPE)
    v = torch.as_tensor(v, dtype=DTYPE)
    if v.shape != x.shape:
        raise ValueError(f"v must have the shape of x, {tuple(x.shape)}, got {tuple(v.shape)}")
    chart = manifold.chart
    u_all = _chart_points_of(manifold, x)
    if check:
        check_rowwise(phi_fn, manifold)
    rows = max(256, JVP_FLOATS // max(1, manifold.ambient_dim))
    parts = []
    with torch.no_grad():
        for i in range(0, x.shape[0], rows):
            u = u_all[i : i + rows]
            g, DX, dg = chart_derivatives(chart, u)
            _check_metric(g, u)
            c = tangent_components(DX, v[i : i + rows], u)
            a = geodesic_acceleration(g, dg, c)
            velocity, Hvv = curve_jet(phi_fn, chart, u, c, a)
            if check and i == 0:
                _check_along_curves(phi_fn, chart, u, c, a, velocity, Hvv,
                                    step=1e-4 * min(1.0, manifold.injectivity_radius))
            cgc = (c * (g @ c[:, :, None])[..., 0]).sum(-1)
            parts.append((torch.einsum("ka,ka->k", velocity, velocity) - cgc, velocity, Hvv))
    jet = DirectionalJet(*(torch.cat(p) for p in zip(*parts)))
    if jet.velocity.shape[1] < chart.dim:
        raise ValueError(f"phi has latent dimension l = {jet.velocity.shape[1]}; the limit needs l >= m = {chart.dim}")
    bad = ~(torch.isfinite(jet.velocity).all(-1) & torch.isfinite(jet.Hvv).all(-1))
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"phi has non-finite first or second derivatives at {int(bad.sum())} of {x.shape[0]} points; "
            f"first at x = {x[i].tolist()[:8]}: phi must be twice differentiable on M"
        )
    return jet


def _check_along_curves(phi_fn, chart, u, c, a, velocity, Hvv, step: float, n_probe: int = 3,
                        rtol: float = 1e-4):
    """Raise if ``Dphi v`` and ``H(v, v)`` at ``n_probe`` of the points disagree with
    central differences of ``phi(X(u + t c + t^2 a / 2))`` at ``t = 0, +-step``
    (relative deviation above ``rtol``; the differences are accurate to about
    ``1e-8``)."""
    idx = torch.linspace(0, u.shape[0] - 1, min(n_probe, u.shape[0])).round().long()
    t = torch.tensor([-step, 0.0, step], dtype=DTYPE)[:, None, None]
    curve = (u[idx] + t * c[idx] + 0.5 * t**2 * a[idx]).reshape(-1, u.shape[1])
    with torch.no_grad():
        down, mid, up = phi_fn(chart.embed(curve)).reshape(3, len(idx), -1)
    diff1, diff2 = (up - down) / (2 * step), (up - 2 * mid + down) / step**2
    scale = float(Hvv[idx].abs().max() + velocity[idx].abs().max() + diff2.abs().max()) + 1e-300
    err = max(float((diff1 - velocity[idx]).abs().max()), float((diff2 - Hvv[idx]).abs().max())) / scale
    if not err <= rtol:
        raise ValueError(
            "phi's autodiff derivatives along the geodesic disagree with central differences of its values "
            f"(relative deviation {err:.3g} > {rtol}): phi is not twice differentiable where needed, or it "
            "detaches its input from the computation (.detach(), .data, no_grad inside)"
        )


# --------------------------------------------------------------------------
# the per-pair limit


ROUTES = ("jvp", "chart", "geodesic")


def directional_jet(phi, manifold, x, v, *, route: str = "jvp", check: bool = True) -> DirectionalJet:
    """``v.Bv``, ``Dphi v`` and ``H(v, v)`` for unit tangent vectors ``v`` at ``x``.

    Parameters
    ----------
    phi : callable or torch.nn.Module
    manifold : Manifold
    x, v : tensor, each shape=[k, ambient_dim]
        Points on ``M`` and ``g``-unit tangent vectors at them.
    route : {"jvp", "chart", "geodesic"}
        Second derivatives along the chart geodesic by one batched nested
        ``jvp`` (:func:`jvp_jet`, the default and the fastest; ``phi`` must
        act row by row), full chart derivatives with Christoffel symbols
        (:func:`encoder_jet`), or derivatives along the geodesic through the
        manifold's ``exp`` (:func:`geodesic_jet`; there ``|v|_g = 1`` is taken
        as given and ``v.Bv = |Dphi v|^2 - 1``). The three agree to round-off.
    check : bool
        See :func:`encoder_jet` and :func:`jvp_jet`.

    Returns
    -------
    DirectionalJet
        ``vBv`` ``shape=[k]``, ``velocity`` and ``Hvv`` ``shape=[k, l]``.
    """
    check_choice(route, "route", ROUTES)
    if route == "jvp":
        return jvp_jet(phi, manifold, x, v, check=check)
    if route == "chart":
        jet = encoder_jet(phi, manifold.chart, _chart_points_of(manifold, x), check=check)
        c = jet.tangent_components(torch.as_tensor(v, dtype=DTYPE))
        vBv = torch.einsum("ki,kij,kj->k", c, metric_distortion(jet.jacobian, jet.metric), c)
        return DirectionalJet(vBv, torch.einsum("kai,ki->ka", jet.jacobian, c),
                              torch.einsum("ki,kaij,kj->ka", c, jet.hessian, c))
    if route == "geodesic":
        velocity, acceleration = geodesic_jet(phi, manifold, x, v)
        return DirectionalJet((velocity**2).sum(-1) - 1.0, velocity, acceleration)


def directional_derivatives(phi, manifold, x, v, *, route: str = "jvp", check: bool = True):
    """``(v.Bv, H(v, v))`` of :func:`directional_jet`, ``shape=[k]`` and ``shape=[k, l]``."""
    jet = directional_jet(phi, manifold, x, v, route=route, check=check)
    return jet.vBv, jet.Hvv
