"""Symbolic chart formulas of the functional and the closed forms used by tests and studies.

See :mod:`gammalimit.symbolic`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import sympy as sp

from .derivations import (R1, R2, PenaltySeries, R, a, a1, a2, delta, direction_average_hessian,
                          direction_average_quadratic, gram_symbol, kappa, lam, limit_bending_coefficient,
                          pair_penalty_series, r, radial_density)

# --------------------------------------------------------------------------
# 4. the functional in a chart, and the closed forms of section 5


def _tidy(expr, simplify: bool):
    return sp.simplify(expr) if simplify else expr


def induced_metric(embedding: Sequence[sp.Expr], coords: Sequence[sp.Symbol], simplify: bool = True) -> sp.Matrix:
    """``g_ij = <d_i X, d_j X>`` of a chart ``X(u)`` given by its ambient components."""
    DX = sp.Matrix(embedding).jacobian(list(coords))
    return _tidy(DX.T * DX, simplify)


def christoffel(metric: sp.Matrix, coords: Sequence[sp.Symbol], simplify: bool = True):
    """``Gamma[k][i][j] = Gamma^k_ij = g^kl (d_i g_jl + d_j g_il - d_l g_ij) / 2``."""
    m = len(coords)
    ginv = metric.inv()
    return [[[_tidy(sum(ginv[k, q] * (sp.diff(metric[j, q], coords[i]) + sp.diff(metric[i, q], coords[j])
                                            - sp.diff(metric[i, j], coords[q])) for q in range(m)) / 2, simplify)
              for j in range(m)] for i in range(m)] for k in range(m)]


def continuum_density(composite: Sequence[sp.Expr], coords: Sequence[sp.Symbol], metric: sp.Matrix,
                      simplify: bool = True):
    """Integrands of ``L`` (without ``kappa``) by docs/theory.md, section 3's chart formulas.

    ``|B|^2 = tr((g^-1 G - I)^2)``, ``tr B = tr(g^-1 G) - m`` with
    ``G = J^T J``, ``J = d(phi o X)``; ``H_ij = d_i d_j (phi o X) - Gamma^k_ij d_k (phi o X)``,
    ``|H|^2 = g^ik g^jl <H_ij, H_kl>``, ``tr H = g^ij H_ij``; then the
    direction averages (:func:`direction_average_quadratic`,
    :func:`direction_average_hessian`) and the bending coefficient
    (:func:`limit_bending_coefficient`).

    Parameters
    ----------
    composite : sequence of sympy expressions
        ``phi o X`` as functions of the chart coordinates.
    coords : sequence of symbols
    metric : sympy Matrix
        ``g_ij`` of the manifold in these coordinates.
    simplify : bool
        Simplify along the way (for closed forms); without it, general charts
        give large expressions quickly, to be evaluated at points.

    Returns
    -------
    distortion, bending : sympy expressions
        ``E_v (v.Bv)^2`` and ``E_v |H(v,v)|^2 / 16`` as functions of ``coords``.
    """
    m = len(coords)
    f = sp.Matrix(composite)
    J = f.jacobian(list(coords))
    ginv = _tidy(metric.inv(), simplify)
    P = _tidy(ginv * J.T * J, simplify)
    dev = P - sp.eye(m)
    normB2, trB = (dev * dev).trace(), dev.trace()
    gam = christoffel(metric, coords, simplify)
    H = [[sp.Matrix([sp.diff(f[c], coords[i], coords[j]) - sum(gam[k][i][j] * J[c, k] for k in range(m))
                     for c in range(f.shape[0])]) for j in range(m)] for i in range(m)]
    normH2 = sum(ginv[i, k] * ginv[j, q] * H[i][j].dot(H[k][q])
                 for i in range(m) for j in range(m) for k in range(m) for q in range(m))
    trH = sum((ginv[i, j] * H[i][j] for i in range(m) for j in range(m)), sp.zeros(f.shape[0], 1))
    quad, S, T = direction_average_quadratic(m)
    hess, S2, T2 = direction_average_hessian(m)
    distortion = quad.subs({S: normB2, T: trB}, simultaneous=True)
    bending = limit_bending_coefficient() * hess.subs({S2: normH2, T2: trH.dot(trH)}, simultaneous=True)
    if not simplify:
        return distortion, bending
    return sp.simplify(sp.trigsimp(distortion)), sp.simplify(sp.trigsimp(bending))


def _chart_average(density: sp.Expr, coords, box, volume_element) -> sp.Expr:
    """``int density dmu`` over a box with ``dmu = volume_element du / volume``."""
    num, den = density * volume_element, volume_element
    for u, (lo, hi) in zip(coords, box):
        num, den = sp.integrate(num, (u, lo, hi)), sp.integrate(den, (u, lo, hi))
    return sp.simplify(num / den)


@lru_cache(maxsize=None)
def scaled_identity_limit(kind: str, strategy: str = "shell"):
    """``L`` of ``phi = a id`` (``diag(a1 I2, a2 I2)`` on the torus), from the chart.

    Parameters
    ----------
    kind : {"circle", "sphere", "torus"}
        Circle and sphere of radius ``R``; the flat torus ``S^1(R1) x S^1(R2)``
        as the Clifford torus in ``R^4``.
    strategy : {"shell", "ball"}

    Returns
    -------
    distortion, bending : sympy expressions
        ``L = distortion + lam * bending`` (``kappa`` included).
    """
    th, ph = sp.symbols("theta phi", real=True)
    if kind == "circle":
        coords, X = (th,), [R * sp.cos(th), R * sp.sin(th)]
        composite, box, vol = [a * x for x in X], [(0, 2 * sp.pi)], R
    elif kind == "sphere":
        coords = (th, ph)
        X = [R * sp.sin(th) * sp.cos(ph), R * sp.sin(th) * sp.sin(ph), R * sp.cos(th)]
        composite, box, vol = [a * x for x in X], [(0, sp.pi), (0, 2 * sp.pi)], R**2 * sp.sin(th)
    elif kind == "torus":
        coords = (th, ph)
        X = [R1 * sp.cos(th), R1 * sp.sin(th), R2 * sp.cos(ph), R2 * sp.sin(ph)]
        composite = [a1 * X[0], a1 * X[1], a2 * X[2], a2 * X[3]]
        box, vol = [(0, 2 * sp.pi), (0, 2 * sp.pi)], R1 * R2
    else:
        raise ValueError(f"kind must be 'circle', 'sphere' or 'torus', got {kind!r}")
    g = induced_metric(X, coords)
    assert sp.simplify(g.det() - vol**2) == 0
    dist, bend = continuum_density(composite, coords, g)
    k = kappa(strategy, len(coords))
    return (sp.factor(k * _chart_average(dist, coords, box, vol)),
            sp.factor(k * _chart_average(bend, coords, box, vol)))


def linear_chart_limit(m: int = 2, l: int = 2, strategy: str = "shell"):
    """``L`` of a linear ``phi(u) = A u`` on a flat chart (``g = I``): the
    distortion part ``kappa (2|B|^2 + (tr B)^2) / (m(m+2))`` with
    ``B = A^T A - I``, and a zero bending part.

    Returns
    -------
    distortion, bending, A
        Expressions in the entries of the symbolic ``l x m`` matrix ``A``.
    """
    coords = sp.symbols(f"u1:{m + 1}", real=True)
    A = sp.Matrix(l, m, lambda i, j: sp.Symbol(f"A{i + 1}{j + 1}", real=True))
    dist, bend = continuum_density(list(A * sp.Matrix(coords)), coords, sp.eye(m))
    k = kappa(strategy, m)
    return sp.expand(k * dist), sp.expand(k * bend), A


def linear_discrete_series(order: int = 4) -> PenaltySeries:
    """:func:`pair_penalty_series` for a map with ``a_k = 0``, ``k >= 2``
    (a linear ``phi`` in flat coordinates, whose geodesics are straight): the
    series terminates, ``l_D = r^4 (G11 - 1)^2`` and ``l_B = 0`` exactly, so
    ``L_delta = L`` for every ``delta``."""
    full = pair_penalty_series(order)
    zero = {gram_symbol(j, k): 0 for j in range(1, order + 3) for k in range(max(j, 2), order + 3)}
    return PenaltySeries(*(tuple(sp.expand(c.subs(zero)) for c in part) for part in
                           (full.distortion, full.bending, full.chord)), full.midpoint_defect)


def circle_embedding_limit(strategy: str = "shell"):
    """``L`` of the round-circle embedding of a closed curve of length ``ell``:
    ``phi o X (s) = a rho (cos(s/rho), sin(s/rho))`` in the arclength chart
    (``g = 1``), ``rho = ell / (2 pi)``, whatever the curve looks like.

    Returns
    -------
    distortion, bending, ell
    """
    s = sp.Symbol("s", real=True)
    ell = sp.Symbol("ell", positive=True)
    rho = ell / (2 * sp.pi)
    dist, bend = continuum_density([a * rho * sp.cos(s / rho), a * rho * sp.sin(s / rho)], (s,), sp.eye(1))
    k = kappa(strategy, 1)
    return (sp.factor(k * _chart_average(dist, (s,), [(0, ell)], 1)),
            sp.factor(k * _chart_average(bend, (s,), [(0, ell)], 1)), ell)


def _circle_pair(radius, angle):
    """Chord and midpoint defect of ``a id`` for two points ``angle`` apart on a
    circle of radius ``radius``: ``(|phi(y) - phi(x)|^2, |phi(x) + phi(y) - 2 phi(av)|^2)``."""
    point = lambda w: sp.Matrix([radius * sp.cos(w), radius * sp.sin(w)])  # noqa: E731
    x, y, mid = point(0), point(angle), point(angle / 2)
    return sp.trigsimp(a**2 * (y - x).dot(y - x)), sp.trigsimp(a**2 * (x + y - 2 * mid).dot(x + y - 2 * mid))


@lru_cache(maxsize=None)
def round_pair_penalties():
    """Per-pair ``(l_D, l_B)`` of ``a id`` on a round circle or sphere of radius
    ``R`` for a pair at distance ``rho = delta r``.

    On the sphere, ``x``, ``y`` and ``av(x, y)`` lie on one great circle, and
    ``a id`` acts on its plane as on a circle of radius ``R``: the circle's
    computation serves both.
    """
    rho = delta * r
    chord2, defect2 = _circle_pair(R, rho / R)
    return sp.simplify((chord2 - rho**2) ** 2 / delta**4), sp.simplify(defect2 / delta**4)


def round_shell_discrete():
    """``L_delta`` (shell) of ``a id`` on a round circle or sphere of radius ``R``:
    ``(distortion, bending)`` in ``a, R, delta``."""
    l_D, l_B = round_pair_penalties()
    return l_D.subs(r, 1), l_B.subs(r, 1)


def round_ball_discrete(m: int):
    """``L_delta`` (ball) of ``a id`` on the circle (``m = 1``) or sphere (``m = 2``):
    the per-pair penalties averaged over the radial density ``m r^(m-1)``.
    Closed form, but it cancels badly at small ``delta``: evaluate it with
    high precision (``evalf(50)``)."""
    density = radial_density("ball", m)
    l_D, l_B = round_pair_penalties()
    return tuple(sp.integrate(sp.expand(sp.expand_trig(term * density)), (r, 0, 1)) for term in (l_D, l_B))


def torus_pair_penalties():
    """Per-pair ``(l_D, l_B)`` of ``diag(a1 I2, a2 I2)`` on the flat torus for a
    pair at distance ``rho`` in chart-orthonormal direction ``psi``, as Laurent
    polynomials in ``E_i = exp(i t_i / (2 R_i))``, ``t = rho (cos psi, sin psi)``.

    Circle ``i`` is ``z = R_i e^(i alpha)`` in the complex plane; the steps
    turn ``alpha`` by ``t_i / R_i`` (to ``y``) and ``t_i / (2 R_i)`` (to ``av``),
    so per circle ``|z(y) - z(x)|^2 = R_i^2 |E_i^2 - 1|^2`` and
    ``|z(x) + z(y) - 2 z(av)|^2 = R_i^2 |E_i - 1|^4`` with ``conj(E_i) = 1 / E_i``.

    Returns
    -------
    l_D, l_B, (E1, E2), rho
    """
    E = sp.symbols("E1 E2")
    rho = sp.Symbol("rho", positive=True)

    def modulus2(w):
        return sp.expand(w * w.subs({e: 1 / e for e in E}, simultaneous=True))

    chord2 = sum(ai**2 * Ri**2 * modulus2(e**2 - 1) for ai, Ri, e in zip((a1, a2), (R1, R2), E))
    defect2 = sum(ai**2 * Ri**2 * modulus2((e - 1) ** 2) for ai, Ri, e in zip((a1, a2), (R1, R2), E))
    return sp.expand((chord2 - rho**2) ** 2 / delta**4), sp.expand(defect2 / delta**4), E, rho


def direction_mean_torus(expr: sp.Expr, E, rho) -> sp.Expr:
    """Average over ``psi`` of a Laurent polynomial in ``E_i = exp(i t_i/(2 R_i))``.

    ``E1^p E2^q = exp(i rho (p cos psi / (2 R1) + q sin psi / (2 R2)))``, and
    Bessel's integral ``(1/2pi) int exp(i (A cos psi + B sin psi)) dpsi = J0(sqrt(A^2 + B^2))``.
    """
    poly = sp.Poly(sp.expand(expr * E[0] ** 8 * E[1] ** 8), *E)
    out = 0
    for (p, q), coeff in poly.terms():
        p, q = p - 8, q - 8
        out += coeff * sp.besselj(0, rho * sp.sqrt((p / (2 * R1)) ** 2 + (q / (2 * R2)) ** 2))
    return out


def torus_shell_discrete():
    """``L_delta`` (shell) of ``diag(a1 I2, a2 I2)`` on the flat torus, in Bessel ``J0``:
    ``(distortion, bending)`` in ``a1, a2, R1, R2, delta``. Cancels at small
    ``delta``: evaluate with high precision."""
    l_D, l_B, E, rho = torus_pair_penalties()
    return tuple(direction_mean_torus(term, E, rho).subs(rho, delta) for term in (l_D, l_B))


def round_minimiser(strategy: str = "shell"):
    """Minimiser of ``L`` over ``a`` for ``a id`` on a circle or sphere:
    ``a^2 = 1 - lam / (32 R^2)`` (``L`` is a convex quadratic in ``b = a^2``)."""
    dist, bend = scaled_identity_limit("sphere", strategy)
    b = sp.Symbol("b", positive=True)
    total = (dist + lam * bend).subs(a, sp.sqrt(b))
    (solution,) = sp.solve(sp.diff(total, b), b)
    return sp.factor(solution)


def torus_minimiser(strategy: str = "shell"):
    """Minimiser of ``L`` over ``(a1, a2)`` on the flat torus: ``(a1^2, a2^2)``
    from the stationarity of the convex quadratic in ``b_i = a_i^2`` (valid
    where both are positive)."""
    dist, bend = scaled_identity_limit("torus", strategy)
    b1, b2 = sp.symbols("b1 b2", real=True)
    total = (dist + lam * bend).subs({a1: sp.sqrt(b1), a2: sp.sqrt(b2)}, simultaneous=True)
    sol = sp.solve([sp.diff(total, b1), sp.diff(total, b2)], [b1, b2], dict=True)[0]
    return sp.factor(sol[b1]), sp.factor(sol[b2])


