"""Image data manifolds with exact geometry (docs/theory.md, section 7).

Images are functions ``u(p)`` on the unit square ``[0, 1]^2`` (the unit torus
for :class:`PeriodicBlob`), sampled at the centres of an ``N x N`` pixel grid,
``p_ij = ((i + 1/2) h, (j + 1/2) h)`` with ``h = 1/N``. An image is stored as
the ambient vector ``x = h u(p_ij)`` (pixel values times the square root of
the pixel area), flattened row-major, so that ``x.reshape(N, N)[i, j]``
belongs to ``p_ij`` (first axis = first coordinate of ``p``) and

    <x, y> = h^2 sum_ij u(p_ij) v(p_ij)  ~  int u v dp,

the midpoint rule for the continuum ``L^2`` inner product. ``ambient_dim = N^2``.

Geometry (distance, average, exponential map, chart metric) is that of the
continuum ``L^2`` pull-back, in closed form from the parameters of the image;
the rendered images realise it up to a *discretisation error* (quadrature on
the pixel grid plus, off the torus, the Gaussian tails cut off at the border).
Each class measures it with :meth:`metric_discretisation_error`: the relative
deviation of the Gram matrix of the rendered, pixel-weighted Jacobian from the
exact metric. The protocol methods, written once from ``render``,
``jacobian`` and the inverse chart ``params_of``, are those of
:class:`~gammalimit.manifolds.image_base.ImageManifold`.

Points are turned back into parameters (``chart.inverse``) by moments (a
centroid, a circular mean, or the orientation of the second-moment tensor)
refined by Gauss-Newton steps on the rendering residual, to about machine
precision. The rotating ellipse lives in :mod:`gammalimit.manifolds.ellipse`.
"""

from __future__ import annotations

import math

import torch

from .base import DTYPE, as_points, check_positive
from .image_base import (GAUSS_NEWTON_STEPS, MIN_DEFAULT_PIXELS, ImageManifold, as_parameters, check_sigma,
                         default_width, pixel_centres, relative_gram_error, wrap_half)

# --------------------------------------------------------------------------
# separable blobs: h a(p_i; t_1) a(p_j; t_2) for a 1-D profile a


def _gaussian_profile(p: torch.Tensor, t: torch.Tensor, sigma: float):
    """``a(p) = exp(-(p - t)^2 / (2 sigma^2))`` and ``da/dt``, each ``shape=[k, N]``
    for ``t`` ``shape=[k]``."""
    d = p - t[:, None]
    a = torch.exp(-0.5 * (d / sigma) ** 2)
    return a, a * d / sigma**2


def _periodic_profile(p: torch.Tensor, t: torch.Tensor, sigma: float, images: int):
    """The 1-periodised Gaussian ``a(p) = sum_k exp(-(p - t - k)^2 / (2 sigma^2))``
    and ``da/dt``, each ``shape=[k, N]``; ``k`` runs over ``|k| <= images``
    about the wrapped difference, which leaves out terms below ``1e-18``."""
    k = torch.arange(-images, images + 1, dtype=p.dtype)
    d = wrap_half(p - t[:, None])[:, :, None] - k
    e = torch.exp(-0.5 * (d / sigma) ** 2)
    return e.sum(-1), (e * d).sum(-1) / sigma**2


def _outer_image(a: torch.Tensor, b: torch.Tensor, h: float) -> torch.Tensor:
    """The separable image ``h a(p_i) b(p_j)`` as ambient vectors, ``shape=[k, N^2]``."""
    return h * (a[:, :, None] * b[:, None, :]).flatten(1)


def _separable_render(profile, t: torch.Tensor, h: float) -> torch.Tensor:
    """Images ``h a(p_i; t_1) a(p_j; t_2)`` for ``t`` ``shape=[k, 2]``, ``shape=[k, N^2]``."""
    return _outer_image(profile(t[:, 0])[0], profile(t[:, 1])[0], h)


def _separable_jacobian(profile, t: torch.Tensor, h: float) -> torch.Tensor:
    """``d render / d t`` of :func:`_separable_render`, ``shape=[k, N^2, 2]``."""
    a, da = profile(t[:, 0])
    b, db = profile(t[:, 1])
    return torch.stack([_outer_image(da, b, h), _outer_image(a, db, h)], -1)


def _separable_gauss_newton(x, t, profile, h):
    """Refine centres ``t`` ``shape=[k, 2]`` of separable images
    ``h a(p_i; t_1) b(p_j; t_2)`` to fit ``x`` ``shape=[k, N^2]``.

    Every inner product of the normal equations is a product of 1-D sums or a
    bilinear form ``a^T X b`` of the image, so the residual image is never
    formed and a step costs two passes over ``x``.
    """
    k = x.shape[0]
    n = math.isqrt(x.shape[1])
    X = x.reshape(k, n, n)
    for _ in range(GAUSS_NEWTON_STEPS):
        a, da = profile(t[:, 0])
        b, db = profile(t[:, 1])
        Xb = torch.bmm(X, torch.stack([b, db], -1))
        aa, bb = (a * a).sum(-1), (b * b).sum(-1)
        a_da, b_db = (a * da).sum(-1), (b * db).sum(-1)
        # gradient <J_i, render - x> with J_1 = h da (x) b, J_2 = h a (x) db
        g1 = h * (h * a_da * bb - (da * Xb[..., 0]).sum(-1))
        g2 = h * (h * aa * b_db - (a * Xb[..., 1]).sum(-1))
        H11 = h**2 * (da * da).sum(-1) * bb
        H22 = h**2 * aa * (db * db).sum(-1)
        H12 = h**2 * a_da * b_db
        det = H11 * H22 - H12**2
        t = t - torch.stack([H22 * g1 - H12 * g2, H11 * g2 - H12 * g1], -1) / det[:, None]
    return t


# --------------------------------------------------------------------------
# translating blob


class TranslatingBlob(ImageManifold):
    """A Gaussian blob ``u_t(p) = exp(-|p - t|^2 / (2 sigma^2))`` whose centre
    ``t`` ranges over a square inside the unit square: flat, ``m = 2``.

    Exact geometry (the blob on ``R^2``, docs/theory.md, section 7):
    ``g = (pi/2) I`` for every ``sigma``; ``d(x, y) = sqrt(pi/2) |t - t'|``;
    ``av(x, y)`` is the blob at ``(t + t')/2``; geodesics are straight lines
    of centres. Chart: the centre ``t`` in ``[c, 1 - c]^2`` with
    ``c = margin * sigma``, not periodic, volume ``(pi/2) (1 - 2c)^2``.

    Discretisation error of the metric (:meth:`metric_discretisation_error`,
    relative, worst over the square of centres, corners included) with the
    defaults: ``1.6e-11`` at ``N = 32``, ``3.2e-11`` at ``N = 64``. It is the
    Gaussian tail cut off by the image border, ``~ exp(-margin^2)`` (``margin
    = 4`` gives ``2e-7``), while the quadrature error ``~ exp(-(pi sigma N)^2)``
    is at round-off.

    Boundary policy: ``M`` has a boundary, as for
    :class:`~gammalimit.manifolds.SwissRoll`. :meth:`exp` moves the centre
    along a straight line and may leave the square (the image is still a
    blob, still inside the picture); :meth:`contains` then returns ``False``
    and the pair sampler redraws the pair. The square is convex, so an
    accepted pair's whole geodesic stays in ``M``.

    Parameters
    ----------
    n_pixels : int, default 32
        Grid size ``N``, ``>= 8``; ``ambient_dim = N^2``.
    sigma : float, optional
        Blob width, in ``[1/N, 1/(2 margin))`` (at least one pixel; the square
        of centres must not be empty). Default ``0.06``, widened to one pixel
        ``1/N`` on grids coarser than ``N = 17``
        (:func:`~gammalimit.manifolds.image_base.default_width`).
    margin : float, default 5.0
        Distance from the square of centres to the image border, in units of
        ``sigma``, ``>= 3``.
    """

    dim = 2
    has_boundary = True

    def __init__(self, n_pixels: int = 32, sigma: float | None = None, margin: float = 5.0):
        super().__init__(n_pixels)
        margin = check_positive(margin, "margin")
        if margin < 3:
            raise ValueError(f"margin must be >= 3 (in units of sigma), got {margin!r}")
        self.margin = margin
        if sigma is None:
            sigma = default_width(0.06, self.n_pixels)
            if sigma >= 0.5 / margin:
                raise ValueError(f"TranslatingBlob with margin={margin:g} needs n_pixels > "
                                 f"{2 * MIN_DEFAULT_PIXELS * margin:g} for its default sigma (at least {MIN_DEFAULT_PIXELS:g} "
                                 f"pixel wide, below 1/(2 margin)), got n_pixels={self.n_pixels}; "
                                 "or pass sigma")
        self.sigma = check_sigma(sigma, "sigma", self.n_pixels, math.nextafter(0.5 / margin, 0),
                                 "= 1/(2 margin), so that the square of centres is not empty")
        self._p = pixel_centres(self.n_pixels)
        self.metric_scale = math.pi / 2
        lo = self.margin * self.sigma
        self.centre_bounds = (lo, 1.0 - lo)
        side = 1.0 - 2 * lo
        # the square is convex, so the scale is limited only by its size
        self.injectivity_radius = 0.5 * math.sqrt(self.metric_scale) * side
        self.chart = self._chart((lo, lo), (1.0 - lo, 1.0 - lo), volume=self.metric_scale * side**2)

    def __repr__(self) -> str:
        return f"TranslatingBlob(n_pixels={self.n_pixels}, sigma={self.sigma}, margin={self.margin})"

    def _profile(self, t):
        return _gaussian_profile(self._p, t, self.sigma)

    def render(self, t: torch.Tensor) -> torch.Tensor:
        """Blob images centred at ``t`` ``shape=[k, 2]``, ``shape=[k, N^2]``
        (any ``t``, inside the square or not; differentiable by ``torch.func``)."""
        return _separable_render(self._profile, as_parameters(t), self.h)

    def jacobian(self, t: torch.Tensor) -> torch.Tensor:
        """``d render / d t`` (pixel-weighted), ``shape=[k, N^2, 2]``."""
        return _separable_jacobian(self._profile, t, self.h)

    def centres(self, x: torch.Tensor) -> torch.Tensor:
        """Blob centres of images ``shape=[k, N^2]``, ``shape=[k, 2]``: the
        centroid, refined by Gauss-Newton on the rendering residual."""
        x = as_points(x, self.ambient_dim)
        X = x.reshape(-1, self.n_pixels, self.n_pixels)
        mass = X.sum((1, 2))
        t = torch.stack([X.sum(2) @ self._p, X.sum(1) @ self._p], -1) / mass[:, None]
        return _separable_gauss_newton(x, t, self._profile, self.h)

    params_of = centres

    def metric_discretisation_error(self, t: torch.Tensor | None = None) -> float:
        """Largest relative error ``|J^T J - g|_2 / |g|_2`` of the rendered,
        pixel-weighted Jacobian's Gram matrix against the exact ``g = (pi/2) I``.

        Parameters
        ----------
        t : tensor, shape=[k, 2], optional
            Centres; default a 9 x 9 grid over the square of centres, its
            edges and corners (where the cut-off tail is largest) included.
        """
        if t is None:
            s = torch.linspace(*self.centre_bounds, 9, dtype=DTYPE)
            t = torch.cartesian_prod(s, s)
        return relative_gram_error(self.jacobian(t), self.chart.metric(t))


# --------------------------------------------------------------------------
# periodic blob


def periodic_blob_metric_scale(sigma: float, terms: int = 12) -> float:
    """The exact metric ``g = c I`` of the periodised blob on the unit torus.

    With ``A(k) = int G(x) G(x - k) dx = pi sigma^2 exp(-|k|^2 / (4 sigma^2))``
    the autocorrelation of the Gaussian, ``g_11 = -sum_{k in Z^2} d^2A/dk_1^2``:

        c = pi sum_{k1, k2} (1/2 - k1^2 / (4 sigma^2)) exp(-(k1^2 + k2^2) / (4 sigma^2)),

    the ``k = 0`` term being the ``pi/2`` of the blob on ``R^2``. Translation
    and reflection symmetry of the torus make ``g`` constant and isotropic for
    every ``sigma``; ``c / (pi/2) - 1 ~ -(1/sigma^2) exp(-1/(4 sigma^2))``
    (``-1.4e-9`` at ``sigma = 0.1``, below ``1e-16`` at ``sigma = 0.07``).
    """
    k = torch.arange(-terms, terms + 1, dtype=DTYPE)
    e = torch.exp(-(k**2) / (4 * sigma**2))
    return float(math.pi * ((0.5 - k**2 / (4 * sigma**2)) * e).sum() * e.sum())


class PeriodicBlob(ImageManifold):
    """A periodised Gaussian blob translating on the unit torus: a flat torus, ``m = 2``.

    ``u_t(p) = sum_{k in Z^2} exp(-|p - t - k|^2 / (2 sigma^2))`` on
    ``[0, 1)^2`` with periodic boundary conditions (images wrap around).

    Exact geometry: ``g = c I`` with ``c`` from
    :func:`periodic_blob_metric_scale`, exactly constant (flat) for every
    ``sigma`` and equal to ``pi/2`` up to an exponentially small error
    (relative ``-1.4e-9`` at ``sigma = 0.1``; with the default ``sigma`` it is
    below round-off). ``d(x, y) = sqrt(c) |wrap(t' - t)|`` with each
    coordinate difference wrapped to ``[-1/2, 1/2)``; ``av`` is the blob at
    the midpoint of the shorter arc in each coordinate. Chart: ``t`` in
    ``[0, 1)^2``, both coordinates periodic, volume ``c``.

    Discretisation error of the metric (:meth:`metric_discretisation_error`,
    relative, against ``c``): the quadrature is the trapezoid rule on a
    periodic integrand, with error ``~ exp(-(pi sigma N)^2)``; with the
    defaults it is at round-off (``~1e-15``) at ``N = 32`` and ``N = 64``.
    Against ``pi/2`` the error is the same, since ``c = pi/2`` to round-off.

    Parameters
    ----------
    n_pixels : int, default 32
        Grid size ``N``, ``>= 8``; ``ambient_dim = N^2``.
    sigma : float, optional
        Blob width, in ``[1/N, 0.25]`` (at least one pixel; at most a quarter
        of the period, so that the image stays a blob). Default ``0.07``,
        widened to one pixel ``1/N`` on grids coarser than ``N = 15``
        (:func:`~gammalimit.manifolds.image_base.default_width`).
    """

    dim = 2
    has_boundary = False
    period = 1.0

    def __init__(self, n_pixels: int = 32, sigma: float | None = None):
        super().__init__(n_pixels)
        sigma = default_width(0.07, self.n_pixels) if sigma is None else sigma
        self.sigma = check_sigma(sigma, "sigma", self.n_pixels, 0.25, "(a quarter of the period)")
        self._p = pixel_centres(self.n_pixels)
        # terms exp(-d^2/(2 sigma^2)) with |d| > 9.2 sigma are below 1e-18
        self._images = math.ceil(9.2 * self.sigma + 0.5)
        self.metric_scale = periodic_blob_metric_scale(self.sigma)
        self.injectivity_radius = 0.5 * math.sqrt(self.metric_scale)
        self.chart = self._chart((0.0, 0.0), (1.0, 1.0), volume=self.metric_scale)

    def __repr__(self) -> str:
        return f"PeriodicBlob(n_pixels={self.n_pixels}, sigma={self.sigma})"

    def _profile(self, t):
        return _periodic_profile(self._p, t, self.sigma, self._images)

    def render(self, t: torch.Tensor) -> torch.Tensor:
        """Periodised blob images centred at ``t`` ``shape=[k, 2]`` (any real
        ``t``, read mod 1), ``shape=[k, N^2]``; differentiable by ``torch.func``."""
        return _separable_render(self._profile, as_parameters(t), self.h)

    def jacobian(self, t: torch.Tensor) -> torch.Tensor:
        """``d render / d t`` (pixel-weighted), ``shape=[k, N^2, 2]``."""
        return _separable_jacobian(self._profile, t, self.h)

    def centres(self, x: torch.Tensor) -> torch.Tensor:
        """Blob centres in ``[0, 1)^2`` of images ``shape=[k, N^2]``,
        ``shape=[k, 2]``: the circular mean of each marginal (the phase of the
        first Fourier coefficient), refined by Gauss-Newton."""
        x = as_points(x, self.ambient_dim)
        X = x.reshape(-1, self.n_pixels, self.n_pixels)
        c, s = torch.cos(2 * math.pi * self._p), torch.sin(2 * math.pi * self._p)
        m1, m2 = X.sum(2), X.sum(1)
        t = torch.stack([torch.atan2(m1 @ s, m1 @ c), torch.atan2(m2 @ s, m2 @ c)], -1) / (2 * math.pi)
        return self._wrap(_separable_gauss_newton(x, t, self._profile, self.h))

    params_of = centres

    def metric_discretisation_error(self, t: torch.Tensor | None = None) -> float:
        """Largest relative error ``|J^T J - g|_2 / |g|_2`` of the rendered,
        pixel-weighted Jacobian's Gram matrix against the exact ``g = c I``.

        Parameters
        ----------
        t : tensor, shape=[k, 2], optional
            Centres; default a 9 x 9 grid over ``[0, 1)^2``.
        """
        if t is None:
            s = torch.arange(9, dtype=DTYPE) / 9
            t = torch.cartesian_prod(s, s)
        return relative_gram_error(self.jacobian(t), self.chart.metric(t))
