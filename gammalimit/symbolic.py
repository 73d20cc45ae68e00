"""Symbolic derivations (sympy) of the constants and closed forms of THEORY.md.

Nothing here is typed in from THEORY.md's results: each constant is derived
from its definition, and the tests compare the derivations with THEORY.md
and with the numerics (:mod:`gammalimit.functional`, :mod:`gammalimit.embeddings`).

1. :func:`pair_penalty_series` — Taylor coefficients in ``delta`` of both
   pair penalties along a geodesic: the ``1/16``, and that the ``delta^1``
   terms are odd in ``v`` (:func:`is_odd_in_v`).
2. :func:`isotropic_fourth_moment`, :func:`direction_average_quadratic`,
   :func:`direction_average_hessian` — ``E_v (v.Av)^2`` and ``E_v |H(v,v)|^2``
   for general ``m``.
3. :func:`radial_density`, :func:`kappa` — the radial constants of the strategies.
4. :func:`continuum_density` (THEORY.md's chart formulas), and the closed
   forms of section 5: :func:`scaled_identity_limit`,
   :func:`round_shell_discrete`, :func:`round_ball_discrete`,
   :func:`torus_shell_discrete`, :func:`linear_chart_limit`,
   :func:`circle_embedding_limit`, and the minimisers
   :func:`round_minimiser`, :func:`torus_minimiser`.

Importing sympy takes a while: other modules import this one lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import sympy as sp

# symbols shared by the derivations
t, delta, r, lam = sp.symbols("t delta r lam", positive=True)
m_sym = sp.Symbol("m", positive=True, integer=True)
a, R = sp.symbols("a R", positive=True)
a1, a2, R1, R2 = sp.symbols("a1 a2 R1 R2", positive=True)
psi = sp.Symbol("psi", real=True)


# --------------------------------------------------------------------------
# 1. Taylor coefficients of the pair penalties along a geodesic


def gram_symbol(j: int, k: int) -> sp.Symbol:
    """``G_jk = <a_j, a_k>``, where ``a_k = d^k/dt^k phi(exp_x(t v))`` at ``t = 0``
    (``a_1 = Dphi v``, ``a_2 = H(v, v)``, ``a_3 = T(v, v, v)``)."""
    j, k = sorted((j, k))
    return sp.Symbol(f"G{j}{k}", real=True)


@dataclass(frozen=True)
class PenaltySeries:
    """Coefficients of ``delta^p``, ``p = 0..order``, of the pair penalties of
    a pair ``y = exp_x(delta r v)``, in ``r`` and the Gram symbols ``G_jk``.

    Attributes
    ----------
    distortion, bending : tuple of sympy expressions
        ``l_D = sum_p distortion[p] delta^p``, ``l_B = sum_p bending[p] delta^p``.
    chord : tuple of sympy expressions
        ``|phi(y) - phi(x)|^2 - t^2 = sum_p chord[p] t^(p+2)`` (``t = d(x, y)``).
    midpoint_defect : tuple of sympy expressions
        ``phi(x) + phi(y) - 2 phi(av) = sum_k midpoint_defect[k-1] a_k t^k``.
    """

    distortion: tuple
    bending: tuple
    chord: tuple
    midpoint_defect: tuple


@lru_cache(maxsize=None)
def pair_penalty_series(order: int = 2) -> PenaltySeries:
    """Expand ``l_D`` and ``l_B`` (THEORY.md section 2) in ``delta``.

    Along the geodesic, ``phi(exp_x(t v)) = phi(x) + sum_k a_k t^k / k!``;
    the pair has ``d(x, y) = t = delta r`` and ``av(x, y) = exp_x(t v / 2)``.
    So ``|phi(y) - phi(x)|^2 = sum_jk G_jk t^(j+k) / (j! k!)`` and
    ``phi(x) + phi(y) - 2 phi(av) = sum_k (1 - 2^(1-k)) a_k t^k / k!``.
    Vectors up to ``a_(order+2)`` enter the coefficients up to ``delta^order``,
    which are therefore exact.

    Parameters
    ----------
    order : int, >= 0

    Returns
    -------
    PenaltySeries
    """
    K = order + 2
    ks = range(1, K + 1)
    chord2 = sum(gram_symbol(j, k) * t ** (j + k) / (sp.factorial(j) * sp.factorial(k)) for j in ks for k in ks)
    beta = [(1 - sp.Rational(2) ** (1 - k)) / sp.factorial(k) for k in ks]
    defect2 = sum(gram_symbol(j, k) * beta[j - 1] * beta[k - 1] * t ** (j + k) for j in ks for k in ks)
    l_D = sp.expand(((chord2 - t**2) ** 2 / delta**4).subs(t, delta * r))
    l_B = sp.expand((defect2 / delta**4).subs(t, delta * r))
    excess = sp.expand(chord2 - t**2)
    return PenaltySeries(
        distortion=tuple(l_D.coeff(delta, p) for p in range(order + 1)),
        bending=tuple(l_B.coeff(delta, p) for p in range(order + 1)),
        chord=tuple(excess.coeff(t, p + 2) for p in range(order + 1)),
        midpoint_defect=tuple(beta),
    )


def reverse_direction(expr: sp.Expr, K: int = 8) -> sp.Expr:
    """``expr`` with ``v -> -v``: ``a_k`` is ``k``-linear in ``v``, so ``G_jk -> (-1)^(j+k) G_jk``."""
    return expr.subs({gram_symbol(j, k): (-1) ** (j + k) * gram_symbol(j, k)
                      for j in range(1, K + 1) for k in range(j, K + 1)}, simultaneous=True)


def is_odd_in_v(expr: sp.Expr) -> bool:
    """Whether ``expr`` changes sign under ``v -> -v`` (and so averages out
    over ``v``, and cancels within an antithetic couple)."""
    return sp.expand(reverse_direction(expr) + expr) == 0


def limit_bending_coefficient() -> sp.Expr:
    """The ``c`` in ``l_B -> c r^4 |H(v,v)|^2``: ``1/16``."""
    return sp.simplify(pair_penalty_series(0).bending[0] / (r**4 * gram_symbol(2, 2)))


# --------------------------------------------------------------------------
# 2. direction averages


def _gaussian_moment(power: int) -> sp.Expr:
    z = sp.Symbol("z", real=True)
    return sp.integrate(z**power * sp.exp(-z**2 / 2), (z, -sp.oo, sp.oo)) / sp.sqrt(2 * sp.pi)


@lru_cache(maxsize=None)
def isotropic_fourth_moment(m=None) -> sp.Expr:
    """``c(m)`` in ``E[v_i v_j v_k v_l] = c(m) (d_ij d_kl + d_ik d_jl + d_il d_jk)``
    for ``v`` uniform on the unit sphere of ``R^m``.

    Derivation: ``v = z / |z|`` with ``z`` standard Gaussian, ``v``
    independent of ``|z|``; Isserlis' theorem gives ``E[z_i z_j z_k z_l]`` with
    coefficient ``E[z^2]^2 = 1`` (and ``E[z^4] = 3 = 3 E[z^2]^2``, checked
    here), so ``c(m) = 1 / E|z|^4``, the chi distribution's fourth moment.

    Parameters
    ----------
    m : int or sympy expression, optional
        Dimension; the symbol ``m`` if omitted.

    Returns
    -------
    sympy expression
        ``1 / (m (m + 2))``.
    """
    assert _gaussian_moment(4) == 3 * _gaussian_moment(2) ** 2
    rho = sp.Symbol("rho", positive=True)
    weight = rho ** (m_sym - 1) * sp.exp(-rho**2 / 2)
    fourth = sp.integrate(rho**4 * weight, (rho, 0, sp.oo)) / sp.integrate(weight, (rho, 0, sp.oo))
    c = sp.factor(sp.gammasimp(1 / fourth))
    return c if m is None else sp.factor(c.subs(m_sym, m))


def direction_average_quadratic(m=None) -> tuple[sp.Expr, sp.Symbol, sp.Symbol]:
    """``E_v (v.Av)^2`` for symmetric ``A``, in terms of ``S = |A|^2`` and ``T = tr A``.

    ``A`` is orthogonally diagonalisable and the law of ``v`` rotation
    invariant, so with eigenvalues ``lambda_i``:
    ``E (v.Av)^2 = sum_i lambda_i^2 E v_i^4 + sum_(i != j) lambda_i lambda_j E v_i^2 v_j^2``
    with ``E v_i^4 = 3 c``, ``E v_i^2 v_j^2 = c`` (:func:`isotropic_fourth_moment`).

    Returns
    -------
    expr, S, T
        ``(2 S + T^2) / (m (m + 2))`` and its symbols.
    """
    S, T = sp.symbols("S T", real=True)
    c = isotropic_fourth_moment(m)
    # sum_i lambda_i^2 = S, sum_(i != j) lambda_i lambda_j = T^2 - S
    return sp.factor(3 * c * S + c * (T**2 - S)), S, T


def direction_average_hessian(m=None, l: int = 3):
    """``E_v |H(v,v)|^2 = sum_alpha E_v (v.H^alpha v)^2`` for ``H`` with ``l``
    components, in terms of ``S = |H|^2 = sum_alpha |H^alpha|^2`` and
    ``T2 = |tr H|^2 = sum_alpha (tr H^alpha)^2``.

    Returns
    -------
    expr, S, T2
        ``(2 S + T2) / (m (m + 2))``.
    """
    quad, S1, T1 = direction_average_quadratic(m)
    Ss = sp.symbols(f"S_1:{l + 1}", real=True)
    Ts = sp.symbols(f"T_1:{l + 1}", real=True)
    total = sum(quad.subs({S1: Si, T1: Ti}, simultaneous=True) for Si, Ti in zip(Ss, Ts))
    S, T2 = sp.symbols("S T2", real=True)
    # |H|^2 = sum S_alpha and |tr H|^2 = sum T_alpha^2: eliminate S_l and T_l^2
    total = sp.expand(total).subs({Ss[-1]: S - sum(Ss[:-1]), Ts[-1] ** 2: T2 - sum(Ti**2 for Ti in Ts[:-1])})
    return sp.factor(sp.expand(total)), S, T2


def direction_average_explicit(A: sp.Matrix) -> sp.Expr:
    """``E_v (v.Av)^2`` by integrating over the unit sphere of ``R^m``, ``m <= 3``
    (an independent check of :func:`direction_average_quadratic`)."""
    m = A.shape[0]
    if m == 1:
        return sp.expand(A[0, 0] ** 2)
    if m == 2:
        v = sp.Matrix([sp.cos(psi), sp.sin(psi)])
        return sp.expand(sp.integrate(sp.expand((v.T * A * v)[0] ** 2), (psi, 0, 2 * sp.pi)) / (2 * sp.pi))
    if m == 3:
        th = sp.Symbol("theta", real=True)
        v = sp.Matrix([sp.sin(th) * sp.cos(psi), sp.sin(th) * sp.sin(psi), sp.cos(th)])
        inner = sp.integrate(sp.expand((v.T * A * v)[0] ** 2), (psi, 0, 2 * sp.pi))
        return sp.expand(sp.integrate(sp.expand(inner * sp.sin(th)), (th, 0, sp.pi)) / (4 * sp.pi))
    raise ValueError(f"explicit sphere integrals are written for m <= 3, got m = {m}")


# --------------------------------------------------------------------------
# 3. radial constants


def radial_density(strategy: str, m=None):
    """Law of the radius factor ``r`` of a strategy (THEORY.md section 2).

    ``shell``: ``r = 1`` (returns ``None``, a point mass). ``ball``: ``y``
    uniform in the normal-coordinate ball, so ``P(r <= s)`` is the volume
    ratio ``int_0^s rho^(m-1) / int_0^1 rho^(m-1) = s^m`` and the density is
    its derivative.

    Returns
    -------
    sympy expression in ``r``, or None for a point mass at 1.
    """
    m = m_sym if m is None else m
    if strategy == "shell":
        return None
    if strategy == "ball":
        rho, s = sp.symbols("rho s", positive=True)
        cdf = sp.integrate(rho ** (m - 1), (rho, 0, s)) / sp.integrate(rho ** (m - 1), (rho, 0, 1))
        return sp.simplify(sp.diff(cdf, s).subs(s, r))
    raise ValueError(f"unknown strategy {strategy!r}; allowed: ['ball', 'shell']")


def radial_mean(expr: sp.Expr, strategy: str, m=None) -> sp.Expr:
    """``E[expr(r)]`` under the strategy's radial law."""
    density = radial_density(strategy, m)
    if density is None:
        return expr.subs(r, 1)
    return sp.integrate(expr * density, (r, 0, 1))


def kappa(strategy: str, m=None) -> sp.Expr:
    """``kappa = E[r^4]``: ``1`` (shell), ``m / (m + 4)`` (ball)."""
    return sp.factor(sp.simplify(radial_mean(r**4, strategy, m)))


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
    """Integrands of ``L`` (without ``kappa``) by THEORY.md section 3's chart formulas.

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


def lambdify(expr: sp.Expr, *symbols: sp.Symbol) -> Callable:
    """A fast numeric function of ``expr`` (scipy's Bessel functions included)."""
    return sp.lambdify(symbols, expr, modules=["scipy", "numpy"])
