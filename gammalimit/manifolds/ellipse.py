"""The rotating ellipse: an anisotropic Gaussian image turning about the centre of the unit square, a
closed curve with exact geometry (docs/theory.md, section 7; the image conventions of
:mod:`gammalimit.manifolds.images`). Its sampler renders half the pixels and mirrors them."""

from __future__ import annotations

import math

import torch

from ..validation import check_reals
from .base import DTYPE, as_points
from .image_base import (GAUSS_NEWTON_STEPS, ImageManifold, as_parameters, check_sigma, default_width,
                         pixel_centres, relative_gram_error)


class RotatingEllipse(ImageManifold):
    """An anisotropic Gaussian rotating about the centre of the unit square:
    a closed curve, ``m = 1``.

    ``u_theta(p) = exp(-q_1^2 / (2 sigma_1^2) - q_2^2 / (2 sigma_2^2))`` with
    ``q = R(theta)^T (p - (1/2, 1/2))``: the major axis (``sigma_1``) points
    along ``(cos theta, sin theta)``. ``u_theta`` has period ``pi`` in
    ``theta``.

    Exact geometry (docs/theory.md, section 7): constant speed,
    ``g = pi (sigma_1^2 - sigma_2^2)^2 / (4 sigma_1 sigma_2)``, so ``M`` is
    intrinsically a circle of length ``l = pi sqrt(g)``;
    ``d(x, y) = sqrt(g) |wrap(theta' - theta)|`` with the angle difference
    wrapped to ``[-pi/2, pi/2)``; ``av`` is the image at the mean angle
    (shorter arc). Chart: ``theta`` in ``[0, pi)``, periodic, volume ``l``.

    Discretisation error of the metric (:meth:`metric_discretisation_error`,
    relative, worst over the angle): with the defaults ``1.0e-9`` at
    ``N = 32`` and ``7.3e-11`` at ``N = 64``. At ``N = 32`` the pixel
    quadrature across the minor axis, ``~ exp(-(pi sigma_2 N)^2)``, dominates;
    at ``N = 64`` the major axis's tail cut off by the border,
    ``~ exp(-1/(4 sigma_1^2))`` (``5e-7`` at the largest allowed
    ``sigma_1 = 1/8``).

    Parameters
    ----------
    n_pixels : int, default 32
        Grid size ``N``, ``>= 8``; ``ambient_dim = N^2``.
    sigmas : pair of float, optional
        Axes ``sigma_1 > sigma_2``; ``sigma_2 >= 1/N`` (one pixel) and
        ``sigma_1 <= 1/8`` (the border at least four ``sigma_1`` from the
        centre). Default ``(0.1, 0.05)`` for ``N >= 20``; on coarser grids
        ``sigma_2`` is one pixel ``1/N`` (:func:`~gammalimit.manifolds.image_base.default_width`)
        and ``sigma_1 = max(0.1, min(1/8, 2 sigma_2))``, which exist for ``N >= 9``.
    """

    dim = 1
    has_boundary = False
    period = math.pi

    def __init__(self, n_pixels: int = 32, sigmas: tuple[float, float] | None = None):
        super().__init__(n_pixels)
        if sigmas is None:
            s2 = default_width(0.05, self.n_pixels)
            sigmas = (max(0.1, min(0.125, 2 * s2)), s2)
            if not sigmas[0] > s2:
                raise ValueError(f"RotatingEllipse needs n_pixels >= 9 for its default sigmas (one pixel <= "
                                 f"sigma_2 < sigma_1 <= 1/8), got n_pixels={self.n_pixels}; or pass sigmas")
        sigmas = check_reals(sigmas, "sigmas", 2, minimum=0.0, what="(sigma_1, sigma_2)")
        s1 = check_sigma(sigmas[0], "sigma_1", self.n_pixels, 0.125, "(the border four sigma_1 away)")
        s2 = check_sigma(sigmas[1], "sigma_2", self.n_pixels, 0.125, "(sigma_2 < sigma_1 <= 1/8)")
        if not s1 > s2:
            raise ValueError(f"sigmas must satisfy sigma_1 > sigma_2 (an anisotropic Gaussian), got {sigmas!r}")
        self.sigmas = (s1, s2)
        p = pixel_centres(self.n_pixels) - 0.5
        d = torch.cartesian_prod(p, p)
        # the exponent -d^T A d / 2 is linear in (A11, A12, A22), d = p - centre
        self._quad = -0.5 * torch.stack([d[:, 0] ** 2, 2 * d[:, 0] * d[:, 1], d[:, 1] ** 2])
        # the grid is symmetric about the centre and the image even in d: pixel N^2 - 1 - k mirrors pixel k
        self._half = (self._quad.shape[1] + 1) // 2
        self._quad_half = self._quad[:, : self._half].contiguous()
        self.metric_scale = math.pi * (s1**2 - s2**2) ** 2 / (4 * s1 * s2)
        self.length = math.pi * math.sqrt(self.metric_scale)
        self.injectivity_radius = self.length / 2
        self.chart = self._chart((0.0,), (math.pi,), volume=self.length,
                                 embed=lambda u: self.render(u[:, 0]), inverse=lambda x: self.angles(x)[:, None])

    def __repr__(self) -> str:
        return f"RotatingEllipse(n_pixels={self.n_pixels}, sigmas={self.sigmas})"

    def _precision(self, theta):
        """Entries ``(A11, A12, A22)`` of ``A = R diag(1/sigma_1^2, 1/sigma_2^2) R^T``
        and their ``theta``-derivatives, each ``shape=[k, 3]``."""
        a1, a2 = self.sigmas[0] ** -2, self.sigmas[1] ** -2
        c, s = torch.cos(theta), torch.sin(theta)
        A = torch.stack([c * c * a1 + s * s * a2, c * s * (a1 - a2), s * s * a1 + c * c * a2], -1)
        dA = torch.stack([2 * c * s * (a2 - a1), (c * c - s * s) * (a1 - a2), 2 * c * s * (a1 - a2)], -1)
        return A, dA

    def _exponent(self, A: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``-d^T A d / 2`` on the first ``ceil(N^2/2)`` pixels, ``shape=[k, ceil(N^2/2)]``, from the
        entries ``A`` ``shape=[k, 3]`` (every route renders through it: the same bits); in the first
        columns of ``out`` when given (not for autodiff)."""
        if out is None:
            return A @ self._quad_half
        return torch.mm(A, self._quad_half, out=out[:, : self._half])

    def render(self, theta: torch.Tensor) -> torch.Tensor:
        """Images at angles ``theta`` ``shape=[k]``, ``shape=[k, N^2]``:
        ``h exp(-d^T A d / 2)``; differentiable by ``torch.func``."""
        return self._mirrored(self.h * torch.exp(self._exponent(self._precision(as_parameters(theta))[0])))

    def _mirrored(self, half: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Whole images from their first ``ceil(N^2/2)`` pixels: ``u(c + d) = u(c - d)``, and pixel
        ``N^2 - 1 - k`` is pixel ``k`` reflected through the centre (the same exponent, the same bits).
        With ``out`` ``shape=[k, N^2]`` (not for autodiff): written there (``half`` may be its first
        columns)."""
        n, h = self._quad.shape[1], self._half
        if out is None:
            return torch.cat([half, half[:, : n - h].flip(-1)], dim=1)
        if half.data_ptr() != out.data_ptr():
            out[:, :h] = half
        o = out.numpy()  # a reversed view: no flipped copy in between (torch has no negative strides)
        o[:, h:] = o[:, n - h - 1 :: -1]
        return out

    def _half_images(self, A: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        """``h exp(-d^T A d / 2)`` on the first half of the pixels, in place, in ``out[:, :ceil(N^2/2)]``
        when given."""
        e = self._exponent(A, out)
        return torch.exp(e, out=e).mul_(self.h)

    def _render_and_derivative(self, theta, out=None, d_out=None):
        """Images and ``d/dtheta``, each ``shape=[k, N^2]`` (in place: not for autodiff), written in
        ``out`` and ``d_out`` when given; the exponentials of half the pixels, mirrored."""
        A, dA = self._precision(theta)
        x = self._half_images(A, out)
        return self._mirrored(x, out), self._mirrored(self._exponent(dA, d_out).mul_(x), d_out)

    def jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        """``d render / d theta`` (pixel-weighted), ``shape=[k, N^2, 1]``."""
        return self._render_and_derivative(theta)[1][:, :, None]

    def _render_samples(self, theta: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`render` computed in place (the same bits; not for autodiff), in ``out`` if given."""
        return self._mirrored(self._half_images(self._precision(theta)[0], out), out)

    def _render_and_frame(self, theta: torch.Tensor):
        """Images and the tangent frame from one exponential (the sampler needs both)."""
        x, dx = self._render_and_derivative(theta)
        return x, dx[:, :, None] / math.sqrt(self.metric_scale)

    def _render_and_velocity(self, theta, c, x_out, v_out):
        """:meth:`_render_and_frame` with ``v = frame c``, written in ``x_out`` and ``v_out`` (the same
        bits: ``v = (dx / sqrt(g)) c``)."""
        self._render_and_derivative(theta, x_out, v_out)
        v_out.div_(math.sqrt(self.metric_scale)).mul_(c)

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        """Angles in ``[0, pi)`` of images ``shape=[k, N^2]``, ``shape=[k]``:
        the major axis of the second-moment tensor, refined by Gauss-Newton."""
        x = as_points(x, self.ambient_dim)
        m = x @ self._quad.T  # -(m11, 2 m12, m22) / 2, unnormalised second moments
        theta = 0.5 * torch.atan2(-m[:, 1], m[:, 2] - m[:, 0])
        for _ in range(GAUSS_NEWTON_STEPS):
            r, j = self._render_and_derivative(theta)
            theta = theta - torch.einsum("kn,kn->k", j, r.sub_(x)) / torch.einsum("kn,kn->k", j, j)
        return self._wrap(theta)

    params_of = angles

    def metric_discretisation_error(self, theta: torch.Tensor | None = None) -> float:
        """Largest relative error ``|J^T J - g| / g`` of the rendered,
        pixel-weighted derivative's squared norm against the exact ``g``.

        Parameters
        ----------
        theta : tensor, shape=[k], optional
            Angles; default 64 equispaced angles in ``[0, pi)``.
        """
        if theta is None:
            theta = torch.arange(64, dtype=DTYPE) * (math.pi / 64)
        return relative_gram_error(self.jacobian(theta), self.chart.metric(theta[:, None]))
