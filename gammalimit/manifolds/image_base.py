"""What the image manifolds share: the pixel grid and the protocol methods.

Every image family (:mod:`.images`) has a flat chart metric ``g = c I`` and a
parameter that is either confined to a box or periodic with one period in
every coordinate. Its geometry is then that of the chart: geodesics are
straight lines of parameters (wrapped when periodic), ``d = sqrt(c) |t' - t|``,
``av`` the image at the mean parameter. :class:`ImageManifold` writes the
protocol methods once from what a family provides:

``render(t)``
    parameters to images, ``shape=[k, N^2]``;
``jacobian(t)``
    ``d render / d t`` (pixel-weighted), ``shape=[k, N^2, m]``;
``params_of(x)``
    the inverse chart, images to parameters;
``metric_scale``, ``period``, ``chart``
    ``c``, the period of every parameter (``None`` in a box), the chart.

Parameters ``t`` have ``shape=[k, m]``, or ``shape=[k]`` for a single angle.
"""

from __future__ import annotations

import math

import torch

from .base import DTYPE, Chart, as_points, check_positive, random_unit_tangent, sample


def check_pixels(n_pixels) -> int:
    if isinstance(n_pixels, bool) or not isinstance(n_pixels, int) or n_pixels < 8:
        raise ValueError(f"n_pixels must be an integer >= 8, got {n_pixels!r}")
    return n_pixels


#: Default widths are those of the ``N = 32`` grid, widened on grids so coarse
#: that they would be narrower than this many pixels (the least :func:`check_sigma`
#: allows), so that every default that worked before is unchanged. At one pixel
#: the pixel quadrature's relative metric error ``~ exp(-(pi sigma N)^2)`` is
#: about ``2e-3``, as for the ``N = 32`` widths at ``N = 20``
#: (``metric_discretisation_error`` reports it; pass wider widths for more).
MIN_DEFAULT_PIXELS = 1.0


def default_width(width: float, n_pixels: int) -> float:
    """``width`` (a default for ``N = 32``), or :data:`MIN_DEFAULT_PIXELS` pixels if that is wider."""
    return max(width, MIN_DEFAULT_PIXELS / n_pixels)


def check_sigma(sigma, name: str, n_pixels: int, upper: float, why: str) -> float:
    """``sigma`` in ``[h, upper]``: at least one pixel (spectral accuracy of the
    quadrature), at most ``upper`` (the reason is ``why``)."""
    sigma = check_positive(sigma, name)
    h = 1.0 / n_pixels
    if sigma < h or sigma > upper:
        raise ValueError(
            f"{name} must lie in [1/n_pixels, {upper:.6g}] = [{h:.6g}, {upper:.6g}] "
            f"(at least one pixel; at most {upper:.6g} {why}), got {sigma!r}"
        )
    return sigma


# Gauss-Newton steps of the inverse chart: moments are accurate to 1e-4 or
# better on the manifold, and the zero-residual iteration converges
# quadratically (two steps reach round-off; one more for safety).
GAUSS_NEWTON_STEPS = 3


def as_parameters(t) -> torch.Tensor:
    """Parameters as float64 (a no-op, autodiff-transparent, for float64 tensors)."""
    return t.to(DTYPE) if isinstance(t, torch.Tensor) else torch.as_tensor(t, dtype=DTYPE)


def pixel_centres(n_pixels: int) -> torch.Tensor:
    """Pixel centre coordinates ``(i + 1/2) / N`` along one axis, ``shape=[N]``."""
    return (torch.arange(n_pixels, dtype=DTYPE) + 0.5) / n_pixels


def wrap_half(a: torch.Tensor) -> torch.Tensor:
    """Reals mapped to ``[-1/2, 1/2)`` (differences on the unit circle)."""
    return torch.remainder(a + 0.5, 1.0) - 0.5


def relative_gram_error(jac: torch.Tensor, metric: torch.Tensor) -> float:
    """``max_k |J_k^T J_k - g|_2 / |g|_2`` for ``jac`` ``shape=[k, n, m]``."""
    gram = jac.transpose(1, 2) @ jac
    err = torch.linalg.matrix_norm(gram - metric, ord=2) / torch.linalg.matrix_norm(metric, ord=2)
    return float(err.max())


def _tangent_components(frame: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Least-squares components ``c`` of ``v ~ frame c``, ``shape=[k, m]``, for
    ``frame`` ``shape=[k, n, m]`` and ``v`` ``shape=[k, n]``."""
    gram = frame.transpose(1, 2) @ frame
    rhs = torch.einsum("kni,kn->ki", frame, v)
    return torch.linalg.solve(gram, rhs)


class ImageManifold:
    """The :class:`~gammalimit.manifolds.Manifold` protocol for an image
    family with chart metric ``g = c I`` (see the module docstring).

    The tangent frame is the rendered Jacobian over ``sqrt(c)``, orthonormal
    up to the metric's discretisation error; :meth:`exp` reads tangent
    components by least squares against it, so that
    ``dist(x, exp(x, t v)) = t`` holds to round-off all the same.
    """

    period: float | None = None

    def __init__(self, n_pixels: int):
        self.n_pixels = check_pixels(n_pixels)
        self.ambient_dim = self.n_pixels**2
        self.h = 1.0 / self.n_pixels

    def _chart(self, lower, upper, volume: float, embed=None, inverse=None) -> Chart:
        """The chart on the box ``[lower, upper]``, periodic in every coordinate
        or in none; ``embed`` and ``inverse`` default to ``render`` and ``params_of``."""
        return Chart(embed=embed or self.render, lower=lower, upper=upper,
                     periodic=(self.period is not None,) * len(lower), metric=self._metric,
                     inverse=inverse or self.params_of, volume=volume)

    def _metric(self, u: torch.Tensor) -> torch.Tensor:
        """``g = c I``, ``shape=[k, m, m]`` for ``k`` chart points ``u``."""
        return self.metric_scale * torch.eye(self.dim, dtype=u.dtype).expand(u.shape[0], self.dim, self.dim)

    def _box(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor(self.chart.lower, dtype=DTYPE), torch.tensor(self.chart.upper, dtype=DTYPE))

    def _wrap(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.period is None else torch.remainder(t, self.period)

    def _step(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Parameter step from ``t`` to ``s``, the shorter way round when periodic."""
        return s - t if self.period is None else self.period * wrap_half((s - t) / self.period)

    def _frame(self, t: torch.Tensor) -> torch.Tensor:
        return self.jacobian(t) / math.sqrt(self.metric_scale)

    def pairs_in_chart(self, u: torch.Tensor, c: torch.Tensor, r: torch.Tensor, delta: float, antithetic: bool,
                       tangents: bool = True):
        """Pairs drawn in chart coordinates: the sampler knows the parameters it renders.

        ``u`` ``shape=[k, m]`` uniform in the unit cube (the point), ``c``
        ``shape=[k, m]`` unit vectors (the direction in the ``g``-orthonormal
        frame), ``r`` ``shape=[k]`` radius factors. The parameter step of a
        geodesic of length ``delta r`` is ``delta r c / sqrt(metric_scale)``
        (``g = metric_scale I``), so ``y`` and the midpoint are rendered from
        parameters directly, and the box test reads them: no inverse chart
        (:meth:`params_of`, a Gauss-Newton solve per point) as
        :meth:`exp` and :meth:`contains` need for ambient points. The pairs
        equal those of the generic route to round-off. Without ``tangents``,
        ``v`` is ``None`` and only ``x`` is rendered at the first points.

        Returns
        -------
        tuple
            ``(x, y, midpoint, dist, v, r)`` as
            :func:`gammalimit.sampling.sample_pairs` builds them, and
            ``inside`` ``shape=[k]`` (``None`` without a boundary): whether
            ``y`` (both ``y`` of an antithetic couple) lies in the box.
        """
        lo, hi = self._box()
        t0 = lo + (hi - lo) * u
        t, c, r = (torch.cat([t0, t0]), torch.cat([c, -c]), torch.cat([r, r])) if antithetic else (t0, c, r)
        step = (delta * r)[:, None] * c / math.sqrt(self.metric_scale)
        end, mid = t + step, t + 0.5 * step
        inside = None
        if self.period is None:
            inside = ((end >= lo) & (end <= hi)).all(-1)
            if antithetic:
                h = inside.shape[0] // 2
                inside = inside[:h] & inside[h:]
        shape = (-1,) if self.dim == 1 else (-1, self.dim)
        t0, ends = self._wrap(t0).reshape(shape), self._wrap(torch.cat([end, mid])).reshape(shape)
        # x, y and the midpoint in one buffer: the loss stacks them (PairSample.stacked, no copy)
        n, k = end.shape[0], t0.shape[0]
        points, v = torch.empty(3 * n, self.ambient_dim, dtype=DTYPE), None
        # an antithetic couple shares x and its frame: render them once, and v(-c) = -v(c)
        if tangents:
            v = torch.empty(n, self.ambient_dim, dtype=DTYPE)
            self._render_and_velocity(t0, c[:k], points[:k], v[:k])
        else:
            self._render_samples(t0, points[:k])
        if antithetic:
            points[k:n] = points[:k]
            if tangents:
                torch.neg(v[:k], out=v[k:])
        self._render_samples(ends, points[n:])  # y and the midpoint in one evaluation
        return (points[:n], points[n : 2 * n], points[2 * n :], delta * r, v, r), inside

    def _render_and_frame(self, t: torch.Tensor):
        """``render(t)`` and ``_frame(t)``; a family that gets both from one evaluation overrides it."""
        return self.render(t), self._frame(t)

    def _render_and_velocity(self, t: torch.Tensor, c: torch.Tensor, x_out: torch.Tensor, v_out: torch.Tensor):
        """Images ``render(t)`` in ``x_out`` and ``v = frame(t) c`` (``c`` ``shape=[k, m]``, components in
        the ``g``-orthonormal frame) in ``v_out``, each ``shape=[k, N^2]``; for the sampler."""
        x, frame = self._render_and_frame(t)
        x_out.copy_(x)
        v_out.copy_(frame[:, :, 0] * c if self.dim == 1 else torch.einsum("knm,km->kn", frame, c))

    def _render_samples(self, t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``render(t)`` for the sampler (no autodiff needed: a family may render in place), in ``out``
        ``shape=[k, N^2]`` when given."""
        x = self.render(t)
        return x if out is None else out.copy_(x)

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel values ``u(p_ij)`` of ambient points, ``shape=[k, N, N]``."""
        return x.reshape(-1, self.n_pixels, self.n_pixels) / self.h

    def point_from_cube(self, u):
        """Uniform in the chart box: ``g`` is constant, so the volume is uniform there."""
        lo, hi = self._box()
        return self.chart.embed(lo + (hi - lo) * u)

    def sample(self, n, generator=None):
        return sample(self, n, generator)

    def tangent_frame(self, x):
        return self._frame(self.params_of(x))

    def random_unit_tangent(self, x, generator=None):
        return random_unit_tangent(self, x, generator)

    def exp(self, x, v):
        """A straight line of parameters; in a box it may leave ``M``, which
        :meth:`contains` detects."""
        t = self.params_of(x)
        c = _tangent_components(self._frame(t), v).reshape(t.shape)
        return self.render(self._wrap(t + c / math.sqrt(self.metric_scale)))

    def dist(self, x, y):
        step = self._step(self.params_of(x), self.params_of(y))
        return math.sqrt(self.metric_scale) * torch.linalg.vector_norm(step.reshape(step.shape[0], -1), dim=-1)

    def midpoint(self, x, y):
        t, s = self.params_of(x), self.params_of(y)
        mean = 0.5 * (t + s) if self.period is None else self._wrap(t + 0.5 * self._step(t, s))
        return self.render(mean)

    def contains(self, x, atol=1e-9):
        """On the rendered manifold to ``atol`` and, in a box, inside it to ``atol``."""
        x = as_points(x, self.ambient_dim)
        t = self.params_of(x)
        on_manifold = torch.linalg.vector_norm(self.render(t) - x, dim=-1) <= atol
        if not self.has_boundary:
            return on_manifold
        lo, hi = self._box()
        return ((t >= lo - atol) & (t <= hi + atol)).all(-1) & on_manifold
