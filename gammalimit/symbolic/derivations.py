"""Symbolic derivations (sympy): pair-penalty series, direction averages, radial constants.

See :mod:`gammalimit.symbolic`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

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
    """Expand ``l_D`` and ``l_B`` (docs/theory.md, section 2) in ``delta``.

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
    """Law of the radius factor ``r`` of a strategy (docs/theory.md, section 2).

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



def lambdify(expr: sp.Expr, *symbols: sp.Symbol) -> Callable:
    """A fast numeric function of ``expr`` (scipy's Bessel functions included)."""
    return sp.lambdify(symbols, expr, modules=["scipy", "numpy"])
