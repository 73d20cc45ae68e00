"""Finite-dimensional encoder families for minimising ``L_delta`` and ``L``.

Each family is a ``torch.nn.Module`` that is linear in its coefficients::

    phi(x) = basis(x) @ coef,     basis(x) shape=[k, p],   coef shape=[p, l]

so it is an encoder for :func:`gammalimit.discrete_loss` (a function of
ambient points) and for :func:`gammalimit.continuum_loss` (twice
differentiable with ``torch.func``). :func:`chart_basis` gives the same
functions of chart coordinates, ``basis(X(u))``, which the minimisers of
:mod:`gammalimit.minimize` differentiate once and reuse for every
coefficient matrix.

- :class:`FourierCurveMap`: a closed curve (:class:`Circle`,
  :class:`ClosedCurve`) into ``R^l`` by a Fourier series in the intrinsic
  angle ``theta = 2 pi s / ell`` (``s`` the arclength coordinate);
- :class:`FourierTorusMap`: the flat torus into ``R^l`` by a tensor-product
  Fourier series in its two angles;
- :class:`SphericalHarmonicMap`: the sphere into ``R^l`` by real spherical
  harmonics up to degree ``K`` (polynomials in ``x / R``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .manifolds import ClosedCurve, FlatTorus, Sphere
from .manifolds.base import DTYPE, check_count

# --------------------------------------------------------------------------
# bases


def trig_basis(theta: torch.Tensor, degree: int) -> torch.Tensor:
    """``[1, cos t, sin t, cos 2t, sin 2t, ..., cos Kt, sin Kt]``, ``shape=[k, 2K+1]`` for ``theta`` ``shape=[k]``."""
    k = torch.arange(1, degree + 1, dtype=theta.dtype)
    kt = theta[:, None] * k
    trig = torch.stack([torch.cos(kt), torch.sin(kt)], -1).reshape(theta.shape[0], 2 * degree)
    return torch.cat([torch.ones_like(theta)[:, None], trig], -1)


def trig_frequencies(degree: int) -> np.ndarray:
    """Frequency of each column of :func:`trig_basis`, ``shape=[2K+1]``."""
    return np.concatenate([[0], np.repeat(np.arange(1, degree + 1), 2)])


def real_spherical_harmonics(z: torch.Tensor, degree: int) -> torch.Tensor:
    """Real spherical harmonics up to ``degree`` at unit vectors, orthonormal in ``L^2(mu)``.

    Written as polynomials (``Y_lm = N_lm Q_l^m(z) Re/Im (x + i y)^m`` with
    ``Q_l^m = P_l^m / (1 - z^2)^(m/2)``, the polynomial part of the associated
    Legendre function, by its three-term recurrence), so that they are smooth
    everywhere, poles included. Normalised so that ``E_mu[Y_lm^2] = 1`` on
    the sphere with its normalised area measure.

    Parameters
    ----------
    z : tensor, shape=[k, 3]
        Unit vectors.
    degree : int

    Returns
    -------
    tensor, shape=[k, (degree+1)^2]
        Columns ordered by ``l``, then ``m = 0, 1, -1, 2, -2, ...`` (cos-like
        ``m > 0``, sin-like ``m < 0``).
    """
    x, y, w = z[:, 0], z[:, 1], z[:, 2]
    # C_m + i S_m = (x + i y)^m
    C, S = [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(degree):
        C.append(x * C[-1] - y * S[-1])
        S.append(x * S[-1] + y * C[-2])
    Q = {}
    for m in range(degree + 1):
        Q[m, m] = math.prod(range(1, 2 * m, 2)) * torch.ones_like(w)  # (2m-1)!!
        if m + 1 <= degree:
            Q[m + 1, m] = (2 * m + 1) * w * Q[m, m]
        for l in range(m + 2, degree + 1):
            Q[l, m] = ((2 * l - 1) * w * Q[l - 1, m] - (l + m - 1) * Q[l - 2, m]) / (l - m)
    cols = []
    for l in range(degree + 1):
        for m in range(l + 1):
            # E_mu[Y^2] = 1: sqrt((2l+1) (l-m)!/(l+m)!), times sqrt(2) for m > 0
            n = math.sqrt((2 * l + 1) * math.factorial(l - m) / math.factorial(l + m)) * (math.sqrt(2) if m else 1)
            cols.append(n * Q[l, m] * C[m])
            if m:
                cols.append(n * Q[l, m] * S[m])
    return torch.stack(cols, -1)


def spherical_harmonic_degrees(degree: int) -> np.ndarray:
    """Degree ``l`` of each column of :func:`real_spherical_harmonics`, ``shape=[(K+1)^2]``."""
    return np.concatenate([np.full(2 * l + 1, l) for l in range(degree + 1)])


# --------------------------------------------------------------------------
# shared pieces


def _check_latent(latent_dim, minimum):
    return check_count(latent_dim, "latent_dim", minimum=minimum)


def _coefficients(coef, shape, name):
    if coef is None:
        return torch.zeros(shape, dtype=DTYPE)
    coef = torch.as_tensor(np.asarray(coef, dtype=np.float64) if not isinstance(coef, torch.Tensor) else coef,
                           dtype=DTYPE).detach().clone()
    if tuple(coef.shape) != tuple(shape):
        raise ValueError(f"coef of {name} must have shape {tuple(shape)}, got {tuple(coef.shape)}")
    return coef


def fit_coefficients(family, target, points: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """Coefficients ``coef`` with ``basis(x) @ coef = target(x)`` at ``points`` (least squares).

    Used to write a closed-form map (a round circle, the Clifford torus, a
    scaled identity) in a family's coordinates.

    Parameters
    ----------
    family : FourierCurveMap, FourierTorusMap or SphericalHarmonicMap
    target : callable
        ``shape=[k, ambient_dim] -> shape=[k, l]``.
    points : tensor, shape=[k, ambient_dim]
        Points of the manifold, ``k >= p``.

    Returns
    -------
    tensor, shape=[p, l]

    Raises
    ------
    ValueError
        If ``target`` is not in the span of the basis (relative residual above ``rtol``).
    """
    with torch.no_grad():
        F, T = family.basis(points), target(points)
        coef = torch.linalg.lstsq(F, T).solution
        resid = torch.linalg.matrix_norm(F @ coef - T) / torch.linalg.matrix_norm(T).clamp_min(1e-300)
    if resid > rtol:
        raise ValueError(f"target is not in the span of {family!r}: relative residual {float(resid):.3g}")
    return coef


def differentiable_arclength(curve: ClosedCurve, x: torch.Tensor, newton_steps: int = 3) -> torch.Tensor:
    """Arclength coordinate ``s`` of points on a :class:`ClosedCurve`, differentiable in ``x``:
    ``sigma(t(x))`` with ``t(x)`` from :meth:`ClosedCurve.differentiable_parameter`.

    Parameters
    ----------
    curve : ClosedCurve
    x : tensor, shape=[k, ambient_dim]
    newton_steps : int, default 3
        Newton steps with ``x`` attached; their derivatives are exact up to
        order ``2^newton_steps - 1``.

    Returns
    -------
    tensor, shape=[k]
    """
    return curve.sigma_of_t(curve.differentiable_parameter(x, newton_steps))


def _random_coefficients(shape, decay, scale, generator):
    """Gaussian coefficients with standard deviation ``scale * decay`` per row, ``shape=[p, l]``."""
    z = torch.randn(*shape, generator=generator, dtype=DTYPE)
    return scale * torch.as_tensor(decay, dtype=DTYPE)[:, None] * z


def _circle_fit(block: torch.Tensor) -> tuple[float, float]:
    """Radius ``r`` of the nearest uniformly parametrised round circle
    ``r Q (cos t, sin t)`` (``Q`` with orthonormal columns) to
    ``block (cos t, sin t)``, ``block`` ``shape=[l, 2]``, and the squared
    ``L^2(dt/2pi)`` distance to it: ``r`` is the mean singular value."""
    s = torch.linalg.svdvals(block)
    r = float(s.mean())
    return r, 0.5 * float(((s - r) ** 2).sum())


# --------------------------------------------------------------------------
# closed curves


class FourierCurveMap(torch.nn.Module):
    """A closed curve into ``R^l`` by a Fourier series in its intrinsic angle.

    ``phi(x) = c_0 + sum_{k=1..K} (a_k cos k theta + b_k sin k theta)``,
    ``theta = 2 pi (u - u_lo) / (u_hi - u_lo)`` with ``u`` the periodic chart
    coordinate of ``x`` (the angle of a :class:`Circle`, the arclength of a
    :class:`ClosedCurve`: ``theta = 2 pi s / ell``), taken from the chart
    inverse (for a :class:`ClosedCurve` through :func:`differentiable_arclength`).

    Parameters
    ----------
    manifold : Circle or ClosedCurve (any 1-D manifold with a periodic chart)
    degree : int, >= 1
        Highest frequency ``K``.
    latent_dim : int, default 2
    coef : array_like, shape=[2K+1, latent_dim], optional
        Rows ordered as :func:`trig_basis`; zero if omitted.
    """

    def __init__(self, manifold, degree: int, latent_dim: int = 2, coef=None):
        super().__init__()
        chart = manifold.chart
        if manifold.dim != 1 or not chart.periodic[0]:
            raise ValueError(f"FourierCurveMap needs a closed curve (dim 1, periodic chart), got {manifold!r}")
        self.manifold = manifold
        self.degree = check_count(degree, "degree", minimum=1)
        self.latent_dim = _check_latent(latent_dim, 1)
        self._lo, self._period = chart.lower[0], chart.upper[0] - chart.lower[0]
        self.coef = torch.nn.Parameter(_coefficients(coef, (2 * degree + 1, latent_dim), "FourierCurveMap"))

    def __repr__(self) -> str:
        return f"FourierCurveMap({self.manifold!r}, degree={self.degree}, latent_dim={self.latent_dim})"

    @property
    def intrinsic_radius(self) -> float:
        """``ell / (2 pi)``: the radius of the intrinsic circle."""
        return self.manifold.chart.volume / (2 * math.pi)

    def coordinate(self, x: torch.Tensor) -> torch.Tensor:
        """The chart coordinate of ambient points, ``shape=[k]``, differentiable in ``x``."""
        if isinstance(self.manifold, ClosedCurve):
            return differentiable_arclength(self.manifold, x)
        return self.manifold.chart.inverse(x)[:, 0]

    def chart_basis(self, u: torch.Tensor) -> torch.Tensor:
        """Basis at chart points ``shape=[k, 1]``, ``shape=[k, 2K+1]``."""
        return trig_basis(2 * math.pi * (u[:, 0] - self._lo) / self._period, self.degree)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """Basis at ambient points ``shape=[k, n]``, ``shape=[k, 2K+1]``."""
        return self.chart_basis(self.coordinate(x)[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basis(x) @ self.coef

    def random_coefficients(self, generator: torch.Generator | None = None, scale: float | None = None):
        """Gaussian coefficients decaying like ``1/k^2`` (a smooth random curve), no constant term.

        ``scale`` defaults to the intrinsic radius ``ell / (2 pi)``; returns ``shape=[2K+1, l]``.
        """
        freq = trig_frequencies(self.degree)
        decay = np.where(freq > 0, 1.0 / np.maximum(freq, 1) ** 2, 0.0)
        return _random_coefficients(self.coef.shape, decay, scale or self.intrinsic_radius, generator)

    @classmethod
    def round_circle(cls, manifold, degree: int, scale: float, latent_dim: int = 2) -> "FourierCurveMap":
        """The curve onto the planar round circle of radius ``scale * ell / (2 pi)``, uniformly traversed."""
        phi = cls(manifold, degree, latent_dim)
        with torch.no_grad():
            phi.coef[1, 0] = phi.coef[2, 1] = scale * phi.intrinsic_radius
        return phi

    def circle_fit(self, coef=None) -> dict:
        """How far the curve is from a uniformly traversed round circle.

        Returns ``radius`` (mean singular value of the first harmonic,
        :func:`_circle_fit`), ``scale = radius / (ell / 2 pi)``, ``center``
        (the constant term) and ``roundness``: the ``L^2(dtheta/2pi)``
        distance to the nearest uniformly traversed round circle of that
        radius, relative to the radius (0 for a round circle).
        """
        c = (self.coef if coef is None else torch.as_tensor(coef, dtype=DTYPE)).detach()
        r, dev2 = _circle_fit(c[1:3].T)
        dev2 += 0.5 * float((c[3:] ** 2).sum())
        return {"radius": r, "scale": r / self.intrinsic_radius, "center": c[0].tolist(),
                "roundness": math.sqrt(dev2) / max(r, 1e-300)}


# --------------------------------------------------------------------------
# flat torus


class FourierTorusMap(torch.nn.Module):
    """A flat torus into ``R^l`` by a tensor-product Fourier series in its angles.

    ``phi(x) = sum_{|j|,|k| <= K} c_jk  f_j(a) f_k(b)`` with ``f`` the columns
    of :func:`trig_basis` and ``a, b = 2 pi (u_i - u_lo,i) / (u_hi,i - u_lo,i)``
    the angles of the chart coordinates ``u = chart.inverse(x)``.

    Parameters
    ----------
    manifold : FlatTorus (or any 2-D manifold whose chart is doubly periodic
        with a constant diagonal metric, e.g. :class:`PeriodicBlob`)
    degree : int, >= 1
    latent_dim : int, default 4
    coef : array_like, shape=[(2K+1)^2, latent_dim], optional
        Row ``(2K+1) i + j`` multiplies ``f_i(a) f_j(b)``.
    """

    def __init__(self, manifold, degree: int, latent_dim: int = 4, coef=None):
        super().__init__()
        chart = manifold.chart
        if manifold.dim != 2 or not all(chart.periodic):
            raise ValueError(f"FourierTorusMap needs a 2-D manifold with a doubly periodic chart, got {manifold!r}")
        lo, hi = torch.tensor(chart.lower, dtype=DTYPE), torch.tensor(chart.upper, dtype=DTYPE)
        g = chart.metric(((lo + hi) / 2)[None])[0]
        if abs(float(g[0, 1])) > 1e-12 * float(g.diagonal().max()):
            raise ValueError(f"FourierTorusMap needs a diagonal chart metric, got g = {g.tolist()}")
        self.manifold = manifold
        self.degree = check_count(degree, "degree", minimum=1)
        self.latent_dim = _check_latent(latent_dim, 2)
        self._lo, self._period = lo, hi - lo
        #: radii of the two circle factors, ``period_i sqrt(g_ii) / (2 pi)`` (``(R1, R2)`` of a FlatTorus)
        self.radii = tuple(float(p * math.sqrt(g[i, i]) / (2 * math.pi)) for i, p in enumerate(self._period))
        self.coef = torch.nn.Parameter(_coefficients(coef, ((2 * degree + 1) ** 2, latent_dim), "FourierTorusMap"))

    def __repr__(self) -> str:
        return f"FourierTorusMap({self.manifold!r}, degree={self.degree}, latent_dim={self.latent_dim})"

    def chart_basis(self, u: torch.Tensor) -> torch.Tensor:
        """Basis at chart points ``shape=[k, 2]``, ``shape=[k, (2K+1)^2]``."""
        angle = 2 * math.pi * (u - self._lo) / self._period
        fa, fb = trig_basis(angle[:, 0], self.degree), trig_basis(angle[:, 1], self.degree)
        return (fa[:, :, None] * fb[:, None, :]).reshape(u.shape[0], -1)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        return self.chart_basis(self.manifold.chart.inverse(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basis(x) @ self.coef

    def _index(self, i: int, j: int) -> int:
        return (2 * self.degree + 1) * i + j

    def random_coefficients(self, generator: torch.Generator | None = None, scale: float | None = None):
        """Gaussian coefficients decaying like ``1/(j^2 + k^2)``, no constant term; ``scale``
        defaults to the mean radius ``(R1 + R2)/2``."""
        f = trig_frequencies(self.degree)
        n2 = (f[:, None] ** 2 + f[None, :] ** 2).reshape(-1)
        decay = np.where(n2 > 0, 1.0 / np.maximum(n2, 1), 0.0)
        return _random_coefficients(self.coef.shape, decay, scale or float(np.mean(self.radii)), generator)

    @classmethod
    def clifford(cls, manifold, degree: int, scales=(1.0, 1.0), latent_dim: int = 4) -> "FourierTorusMap":
        """``diag(a1 I2, a2 I2)``: the Clifford torus with circle radii ``a_i R_i``."""
        if latent_dim < 4:
            raise ValueError(f"the Clifford torus needs latent_dim >= 4, got {latent_dim}")
        phi = cls(manifold, degree, latent_dim)
        (a1, a2), (R1, R2) = scales, phi.radii
        with torch.no_grad():
            phi.coef[phi._index(1, 0), 0] = phi.coef[phi._index(2, 0), 1] = a1 * R1
            phi.coef[phi._index(0, 1), 2] = phi.coef[phi._index(0, 2), 3] = a2 * R2
        return phi

    @classmethod
    def revolution(cls, manifold, degree: int, center: float, tube: float) -> "FourierTorusMap":
        """The torus of revolution ``((c + r cos b) cos a, (c + r cos b) sin a, r sin b)`` in ``R^3``."""
        phi = cls(manifold, degree, 3)
        with torch.no_grad():
            phi.coef[phi._index(1, 0), 0] = phi.coef[phi._index(2, 0), 1] = center
            phi.coef[phi._index(1, 1), 0] = phi.coef[phi._index(2, 1), 1] = tube
            phi.coef[phi._index(0, 2), 2] = tube
        return phi

    def clifford_fit(self, coef=None) -> dict:
        """Distance from a Clifford-type torus ``(a1 R1 Q1 (cos a, sin a) + a2 R2 Q2 (cos b, sin b))``.

        Returns the scales ``a_i`` (mean singular value of the first
        harmonic in each angle over ``R_i``), ``anisotropy`` (the larger
        relative spread of the two singular values of a block), ``overlap``
        (largest cosine of the principal angles between the two circle
        planes; 0 for the Clifford torus) and ``higher_modes`` (``L^2(mu)``
        norm of all other non-constant terms relative to that of the two
        blocks).
        """
        c = (self.coef if coef is None else torch.as_tensor(coef, dtype=DTYPE)).detach()
        A = c[[self._index(1, 0), self._index(2, 0)]].T
        B = c[[self._index(0, 1), self._index(0, 2)]].T
        sa, sb = torch.linalg.svdvals(A), torch.linalg.svdvals(B)
        (R1, R2) = self.radii
        qa, qb = torch.linalg.svd(A, full_matrices=False)[0], torch.linalg.svd(B, full_matrices=False)[0]
        f = trig_frequencies(self.degree)
        weight = torch.as_tensor(np.outer(np.where(f > 0, 0.5, 1.0), np.where(f > 0, 0.5, 1.0)).reshape(-1))
        keep = torch.ones(c.shape[0], dtype=torch.bool)
        keep[[0, self._index(1, 0), self._index(2, 0), self._index(0, 1), self._index(0, 2)]] = False
        rest = float((weight[keep] @ (c[keep] ** 2).sum(-1)))
        main = 0.5 * float((A**2).sum() + (B**2).sum())
        return {"scales": [float(sa.mean()) / R1, float(sb.mean()) / R2],
                "anisotropy": max(float((sa[0] - sa[-1]) / sa.mean()), float((sb[0] - sb[-1]) / sb.mean())),
                "overlap": float(torch.linalg.matrix_norm(qa.T @ qb, ord=2)),
                "higher_modes": math.sqrt(rest / max(main, 1e-300))}


# --------------------------------------------------------------------------
# sphere


class SphericalHarmonicMap(torch.nn.Module):
    """The round sphere ``S^2(R)`` into ``R^l`` by real spherical harmonics up to degree ``K``.

    ``phi(x) = sum_{l <= K, |m| <= l} c_lm Y_lm(x / R)`` (:func:`real_spherical_harmonics`).

    Parameters
    ----------
    manifold : Sphere
    degree : int, >= 1
    latent_dim : int, default 3
    coef : array_like, shape=[(K+1)^2, latent_dim], optional
    """

    def __init__(self, manifold, degree: int, latent_dim: int = 3, coef=None):
        super().__init__()
        if not isinstance(manifold, Sphere):
            raise TypeError(f"SphericalHarmonicMap needs a Sphere, got {type(manifold).__name__}")
        self.manifold = manifold
        self.degree = check_count(degree, "degree", minimum=1)
        self.latent_dim = _check_latent(latent_dim, 2)
        self.coef = torch.nn.Parameter(_coefficients(coef, ((degree + 1) ** 2, latent_dim), "SphericalHarmonicMap"))

    def __repr__(self) -> str:
        return f"SphericalHarmonicMap({self.manifold!r}, degree={self.degree}, latent_dim={self.latent_dim})"

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """Basis at ambient points ``shape=[k, 3]`` on the sphere, ``shape=[k, (K+1)^2]``."""
        return real_spherical_harmonics(x / self.manifold.radius, self.degree)

    def chart_basis(self, u: torch.Tensor) -> torch.Tensor:
        return self.basis(self.manifold.chart.embed(u))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basis(x) @ self.coef

    def random_coefficients(self, generator: torch.Generator | None = None, scale: float | None = None):
        """Gaussian coefficients decaying like ``1/l^2``, no constant term; ``scale`` defaults to ``R``."""
        deg = spherical_harmonic_degrees(self.degree)
        decay = np.where(deg > 0, 1.0 / np.maximum(deg, 1) ** 2, 0.0)
        return _random_coefficients(self.coef.shape, decay, scale or self.manifold.radius, generator)

    @classmethod
    def round(cls, manifold, degree: int, scale: float) -> "SphericalHarmonicMap":
        """``phi = scale * id``: the round sphere of radius ``scale * R``."""
        phi = cls(manifold, degree, 3)
        pts = manifold.sample(4 * (degree + 1) ** 2, torch.Generator().manual_seed(0))
        with torch.no_grad():
            phi.coef.copy_(fit_coefficients(phi, lambda x: scale * x, pts))
        return phi

    def linear_fit(self, coef=None) -> dict:
        """The degree-1 part: ``singular_values`` of ``phi``'s linear part divided by ``R``
        (all equal to ``a`` for the round sphere ``a id``) and ``higher_modes``
        (``L^2(mu)`` norm of the terms of degree >= 2 relative to the degree-1 terms)."""
        c = (self.coef if coef is None else torch.as_tensor(coef, dtype=DTYPE)).detach()
        deg = torch.as_tensor(spherical_harmonic_degrees(self.degree))
        lin = c[deg == 1]
        # the degree-1 harmonics are sqrt(3) (z, x, y) / R: the linear part of phi is sqrt(3) lin^T x / R,
        # and for phi = a x its singular values are a
        s = torch.linalg.svdvals(lin) * math.sqrt(3) / self.manifold.radius
        return {"singular_values": s.tolist(),
                "higher_modes": math.sqrt(float((c[deg >= 2] ** 2).sum()) / max(float((lin**2).sum()), 1e-300))}
