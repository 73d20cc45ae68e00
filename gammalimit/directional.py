"""Derivatives of an encoder along tangent directions: ``Dphi v`` and ``H(v, v)``
at the ``(x, v)`` of sampled pairs (docs/theory.md, section 3.1).

Along a geodesic ``gamma(t) = exp_x(t v)``, ``H(v, v) = d^2/dt^2 phi(gamma(t))``
at ``t = 0``, so no ``m x m`` Hessian per point is needed:

- the jvp route (:func:`jvp_jet`, the default and the fastest): ``phi o X``
  along the chart curve ``u(t) = u + t c - t^2 Gamma(c, c) / 2``, which has the
  geodesic's velocity and acceleration at ``t = 0`` (:func:`curve_jet`), by
  one nested ``jvp`` over the whole batch, no ``vmap``; it therefore needs an
  encoder that maps each point on its own (:func:`check_rowwise`).
  :func:`encoder_jet_jvp` builds the full chart jet the same way, from the
  ``m (m + 1) / 2`` directions ``e_i`` and ``e_i + e_j``;
- the geodesic route (:func:`geodesic_jet`): ``t -> phi(exp_x(t v))``
  through the manifold's ``exp`` only.

:func:`directional_jet` evaluates ``v.Bv``, ``Dphi v`` and ``H(v, v)`` by
either, or by contracting the full chart jet of
:func:`gammalimit.derivatives.encoder_jet` (the checking route); the three
agree to round-off.
"""

from __future__ import annotations

import torch
from torch.func import jvp, vmap

from .derivatives import (CHUNK, EncoderJet, chart_points_of, check_against_values, check_chart_points,
                          check_finite_jet, check_latent_dim, check_metric, differentiate, encoder_function,
                          encoder_jet, refuse_rows, tangent_components)
from .geometry import geodesic_acceleration, metric_distortion
from .manifolds.base import DTYPE
from .penalties import DirectionalJet
from .validation import check_choice

ROUTES = ("jvp", "chart", "geodesic")


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
    (_, g), (dX, dg) = differentiate(jvp, lambda z: (chart.embed(z), chart.metric(z)), (u.repeat(m, 1),), (basis,))
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

    return differentiate(jvp, along, (u, c), (c, acceleration))


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
    u = check_chart_points(chart, u)
    m = chart.dim
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
            check_metric(g, uc)
            c = directions.repeat_interleave(k, 0)  # direction-major
            U, G, dG = uc.repeat(nd, 1), g.repeat(nd, 1, 1), dg.repeat(nd, 1, 1, 1)
            velocity, acc = curve_jet(phi_fn, chart, U, c, geodesic_acceleration(G, dG, c))
            velocity, acc = velocity.reshape(nd, k, -1), acc.reshape(nd, k, -1)
            J = velocity[:m].permute(1, 2, 0)  # [k, l, m]
            H = torch.diag_embed(acc[:m].permute(1, 2, 0))  # [k, l, m, m]
            for p, (i, j) in enumerate(pairs):
                H[:, :, i, j] = H[:, :, j, i] = 0.5 * (acc[m + p] - acc[i] - acc[j])
            parts.append(EncoderJet(uc, g, DX, J, H))
    jet = EncoderJet.cat(parts)
    check_latent_dim(jet.jacobian.shape[1], m)
    check_finite_jet(jet)
    if check:
        check_against_values(phi_fn, chart, jet)
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
        _, moved = differentiate(jvp, phi_fn, (x,), (tangent,))
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
    u_all = chart_points_of(manifold, x)
    if check:
        check_rowwise(phi_fn, manifold)
    rows = max(256, JVP_FLOATS // max(1, manifold.ambient_dim))
    parts = []
    with torch.no_grad():
        for i in range(0, x.shape[0], rows):
            u = u_all[i : i + rows]
            g, DX, dg = chart_derivatives(chart, u)
            check_metric(g, u)
            c = tangent_components(DX, v[i : i + rows], u)
            a = geodesic_acceleration(g, dg, c)
            velocity, Hvv = curve_jet(phi_fn, chart, u, c, a)
            if check and i == 0:
                _check_along_curves(phi_fn, chart, u, c, a, velocity, Hvv,
                                    step=1e-4 * min(1.0, manifold.injectivity_radius))
            cgc = (c * (g @ c[:, :, None])[..., 0]).sum(-1)
            parts.append((torch.einsum("ka,ka->k", velocity, velocity) - cgc, velocity, Hvv))
    jet = DirectionalJet(*(torch.cat(p) for p in zip(*parts)))
    check_latent_dim(jet.velocity.shape[1], chart.dim, "the limit")
    check_finite_along(jet.velocity, jet.Hvv, x, "first or second derivatives")
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
    chart_points_of(manifold, x)
    offset = 0.1 * manifold.injectivity_radius if offset is None else float(offset)
    with torch.no_grad():
        def shifted(z, w):
            return jvp(lambda t: manifold.exp(z[None], (t * w)[None])[0], (torch.tensor(-offset),),
                       (torch.tensor(1.0),))

        x0, v0 = differentiate(vmap(shifted), x, v) if offset else (x, v)

        def curve(z, w, t):
            return phi_fn(manifold.exp(z[None], ((offset + t) * w)[None]))[0]

        def velocity(z, w, t):
            return jvp(lambda s: curve(z, w, s), (t,), (torch.ones_like(t),))[1]

        def jet(z, w):
            return jvp(lambda s: velocity(z, w, s), (torch.tensor(0.0),), (torch.tensor(1.0),))

        parts = [differentiate(vmap(jet), x0[i : i + CHUNK], v0[i : i + CHUNK]) for i in range(0, x.shape[0], CHUNK)]
    velocity, acceleration = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    check_finite_along(velocity, acceleration, x, "derivatives along the geodesic")
    return velocity, acceleration


def check_finite_along(velocity: torch.Tensor, acceleration: torch.Tensor, x: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` if ``Dphi v`` or ``H(v, v)`` (``shape=[k, l]``) is not finite at a point ``x``."""
    bad = ~(torch.isfinite(velocity).all(-1) & torch.isfinite(acceleration).all(-1))
    refuse_rows(bad, lambda count, i: (
        f"phi has non-finite {what} at {count} of {x.shape[0]} points; "
        f"first at x = {x[i].tolist()[:8]}: phi must be twice differentiable on M"))


# --------------------------------------------------------------------------
# the choice of route


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
        jet = encoder_jet(phi, manifold.chart, chart_points_of(manifold, x), check=check)
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
