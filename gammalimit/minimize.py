"""Minimising ``L_delta`` and ``L`` over finite-dimensional encoder families.

The families of :mod:`gammalimit.families` are linear in their coefficients,
``phi = basis @ coef``, so every objective evaluates the basis once, at fixed
points, and each evaluation afterwards is a few matrix products:

- :class:`DiscreteObjective`: ``L_delta`` on a fixed set of weighted pairs,
  either a deterministic quadrature (:func:`quadrature_pairs`) or a Monte
  Carlo sample drawn once (:func:`gammalimit.sample_pairs`); the pair
  terms are those of a penalty (:mod:`gammalimit.penalties`).
- :class:`ContinuumObjective`: ``L`` by quadrature over the chart, with the
  basis's jet from :func:`gammalimit.derivatives.encoder_jet` and each penalty
  term's direction average (:mod:`gammalimit.penalties`).

Both are differentiable in ``coef`` with torch autograd; :func:`minimize`
runs L-BFGS (``scipy.optimize``, limited-memory BFGS with a Wolfe line
search) and stops when the Euclidean norm of the gradient is below ``gtol``
(finishing with Newton steps where the value-based line search stalls at
round-off first); :func:`minimize_multistart` repeats it from random starts.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import scipy.optimize
import torch

from .derivatives import encoder_jet
from .functional import chart_quadrature
from .geometry import EncoderGeometry, chart_orthonormal_frame, metric_distortion
from .manifolds.base import DTYPE
from .loss import Terms as LossTerms
from .loss import TermResult
from .penalties import average_over_directions, get_penalty
from .sampling import PairSample, direction_rule, get_strategy
from .validation import check_count, check_delta, check_lam

# --------------------------------------------------------------------------
# deterministic quadrature of pairs


def quadrature_pairs(manifold, delta: float, *, nodes, n_directions: int = 16, strategy="shell",
                     n_radial: int = 16) -> tuple[PairSample, torch.Tensor]:
    """A deterministic quadrature of the pair law at scale ``delta`` (docs/theory.md, section 2).

    ``x`` runs over the chart rule of :func:`gammalimit.functional.chart_quadrature`
    (periodic trapezoid / Gauss-Legendre, weighted by ``sqrt(det g) / volume``),
    the direction ``v`` over :func:`gammalimit.sampling.direction_rule` in the manifold's
    ``g``-orthonormal :meth:`tangent_frame`, and ``r`` over the strategy's
    radial law (Gauss-Legendre for the ball); ``y = exp_x(delta r v)`` and
    ``av = exp_x(delta r v / 2)``, so ``sum_i w_i l(x_i, y_i) ~ L_delta``.

    On a closed curve with the shell strategy this is the periodic trapezoid
    rule in ``x`` with both directions ``+-1``: exact for an encoder that is
    a trigonometric polynomial of degree ``K`` in the intrinsic angle once
    ``nodes > 4K`` (the pair penalties are then of degree ``4K``). On the
    flat torus and the sphere it is spectrally accurate.

    Parameters
    ----------
    manifold : Manifold
        Without boundary (the sampler's redraws near a boundary are not a
        fixed quadrature), ``dim`` 1 or 2.
    delta : float
    nodes : int or sequence of int
        Chart nodes per coordinate.
    n_directions : int
        Directions for ``m = 2`` (ignored for ``m = 1``).
    strategy : {"shell", "ball"}
    n_radial : int
        Gauss-Legendre nodes for the ball's radial law.

    Returns
    -------
    pairs : PairSample
        ``k = nodes x directions x radii`` pairs.
    weights : tensor, shape=[k]
        Sum to 1.
    """
    delta = check_delta(manifold, delta)
    if manifold.has_boundary:
        raise ValueError(f"{manifold!r} has a boundary: use a Monte Carlo sample (pairs are redrawn there)")
    strat = get_strategy(strategy)
    chart, m = manifold.chart, manifold.dim
    counts = (nodes,) * m if isinstance(nodes, (int, np.integer)) else tuple(nodes)
    u, wu = chart_quadrature(chart, counts)
    w_x = wu * chart.volume_weight(u) / chart.volume
    x0 = chart.embed(u)
    if m > 2:
        raise ValueError(f"quadrature pairs are implemented for m = 1 and 2, got m = {m}")
    c, w_c = direction_rule(m, check_count(n_directions, "n_directions", minimum=2))
    r0, w_r = strat.radial_rule(m, n_radial)
    k, nc, nr = x0.shape[0], c.shape[0], r0.shape[0]
    # pairs ordered (node, direction, radius)
    x = x0.repeat_interleave(nc * nr, 0)
    frame = manifold.tangent_frame(x0).repeat_interleave(nc * nr, 0)
    v = torch.einsum("kni,ki->kn", frame, c.repeat_interleave(nr, 0).repeat(k, 1))
    r = r0.repeat(k * nc)
    step = (delta * r)[:, None] * v
    pairs = PairSample(x=x, y=manifold.exp(x, step), midpoint=manifold.exp(x, 0.5 * step), dist=delta * r, v=v,
                       r=r, delta=delta)
    weights = (w_x[:, None, None] * w_c[None, :, None] * w_r[None, None, :]).reshape(-1)
    return pairs, weights / weights.sum()


# --------------------------------------------------------------------------
# objectives


def _check_family(family):
    for attr in ("basis", "chart_basis", "coef", "manifold"):
        if not hasattr(family, attr):
            raise TypeError(f"family must be a linear encoder family (basis, chart_basis, coef, manifold) such as "
                            f"gammalimit.families.FourierCurveMap, got {type(family).__name__}")


@dataclass
class ObjectiveValue(TermResult):
    """An objective's value at some coefficients: ``total = sum_t c_t terms[t]``
    (default ``distortion + lam * bending``); terms read as attributes too."""

    total: float
    terms: dict


class _Weighted:
    """What both objectives share: ``sum_t c_t term_t`` of the penalty's terms
    from their ``terms(coef)``, a float64 evaluation, and a copy with another ``lam``."""

    def __call__(self, coef: torch.Tensor) -> torch.Tensor:
        return LossTerms(self.penalty, self.terms(coef)).total(self.lam)

    def evaluate(self, coef) -> ObjectiveValue:
        with torch.no_grad():
            terms = self.terms(torch.as_tensor(coef, dtype=DTYPE))
        return ObjectiveValue(float(LossTerms(self.penalty, terms).total(self.lam)),
                              {k: float(v) for k, v in terms.items()})

    def with_lam(self, lam: float):
        """The same objective (same pairs or nodes) with another bending weight."""
        other = copy.copy(self)
        other.lam = check_lam(lam)
        return other


class DiscreteObjective(_Weighted):
    """``L_delta[basis @ coef] = sum_i w_i (l_D + lam l_B)(x_i, y_i)`` on a fixed set of pairs.

    Parameters
    ----------
    family : FourierCurveMap, FourierTorusMap or SphericalHarmonicMap
    delta : float
    lam : float, >= 0
    pairs : "quadrature" or PairSample
        A deterministic quadrature (:func:`quadrature_pairs`, the default)
        or a fixed sample (e.g. ``sample_pairs(M, n, delta, antithetic=True,
        seed=0)``), each pair weighted ``1/n``.
    penalty : str or Penalty
        The pair terms (default ``"squared"``).
    strategy, nodes, n_directions
        For the quadrature; ``nodes`` defaults to ``max(16, 4 K + 8)`` per
        coordinate (``K`` the family's degree, exact on closed curves).
    """

    kind = "L_delta"

    def __init__(self, family, *, delta: float, lam: float, pairs="quadrature", penalty="squared",
                 strategy="shell", nodes=None, n_directions: int = 16):
        _check_family(family)
        self.lam = check_lam(lam)
        self.penalty = get_penalty(penalty)
        M = family.manifold
        if isinstance(pairs, str):
            if pairs != "quadrature":
                raise ValueError(f"pairs must be 'quadrature' or a PairSample, got {pairs!r}")
            nodes = nodes or max(16, 4 * family.degree + 8)
            pairs, weights = quadrature_pairs(M, delta, nodes=nodes, n_directions=n_directions, strategy=strategy)
            self.method = f"quadrature ({strategy}, {len(pairs)} pairs)"
        elif isinstance(pairs, PairSample):
            if abs(pairs.delta - float(delta)) > 1e-12 * float(delta):
                raise ValueError(f"pairs were drawn at delta={pairs.delta}, not {delta}")
            weights = torch.full((len(pairs),), 1 / len(pairs), dtype=DTYPE)
            self.method = f"fixed sample ({len(pairs)} pairs)"
        else:
            raise TypeError(f"pairs must be 'quadrature' or a PairSample, got {type(pairs).__name__}")
        self.delta = float(pairs.delta)
        self.n_pairs = len(pairs)
        # phi(x) - phi(y) and phi(x) + phi(y) - 2 phi(av) are linear in coef: their basis parts are taken
        # once, so the objective is an exact polynomial in coef and its round-off (eps / delta^2 relative,
        # docs/theory.md, section 5) is a fixed perturbation, not noise that would stall the line search
        # the basis through the chart inverse: no derivatives in x are needed here
        with torch.no_grad():
            fx, fy, fm = (family.chart_basis(M.chart.inverse(z)) for z in (pairs.x, pairs.y, pairs.midpoint))
        self._chord, self._second = fx - fy, fx + fy - 2 * fm
        self._dist, self._w = pairs.dist, weights

    def terms(self, coef: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted means of the pair terms, scalar tensors differentiable in ``coef`` ``shape=[p, l]``."""
        values = self.penalty.pair_values(self._chord @ coef, self._second @ coef, self._dist, self.delta)
        return {k: self._w @ v for k, v in values.items()}


def coordinate_chart(chart):
    """The chart seen as its own data space: ``embed`` and ``inverse`` are the
    identity, metric, box and volume are kept. An encoder of this chart is a
    function of chart coordinates (a family's :meth:`chart_basis`), and
    :func:`gammalimit.functional.encoder_jet` then differentiates ``phi o X``
    directly."""
    return dataclasses.replace(chart, embed=lambda u: u, inverse=lambda u: u)


class ContinuumObjective(_Weighted):
    """``L[basis @ coef]`` (docs/theory.md, section 3) by quadrature over the chart.

    The jet of the basis (``Dphi`` and the covariant Hessian ``H`` of each
    basis function, in a ``g``-orthonormal frame) is computed once; ``phi``'s
    is then ``jet @ coef``, and
    ``L = kappa sum_i w_i [E_v (v.Bv)^2 + lam E_v |H(v,v)|^2 / 16]``.

    Parameters
    ----------
    family : FourierCurveMap, FourierTorusMap or SphericalHarmonicMap
    lam : float, >= 0
    penalty : str or Penalty
        The pair terms whose limit is integrated (default ``"squared"``).
    strategy : {"shell", "ball"}
        Sets the radial weights ``E[r^p]`` (``kappa``).
    nodes : int or sequence of int, optional
        Chart nodes per coordinate, default ``max(16, 4 K + 8)`` (exact for
        the Fourier families; spectrally accurate in the sphere's polar angle).
    """

    kind = "L"

    def __init__(self, family, *, lam: float, penalty="squared", strategy="shell", nodes=None):
        _check_family(family)
        self.lam = check_lam(lam)
        self.penalty = get_penalty(penalty)
        chart = family.manifold.chart
        m = chart.dim
        self._radial = self.penalty.radial_weights(get_strategy(strategy), m)
        counts = nodes or max(16, 4 * family.degree + 8)
        counts = (counts,) * m if isinstance(counts, (int, np.integer)) else tuple(counts)
        u, w = chart_quadrature(chart, counts)
        jet = encoder_jet(family.chart_basis, coordinate_chart(chart), u)
        # the basis as an encoder with latent dimension p: its jet in an orthonormal frame
        geo = EncoderGeometry.from_jet(jet, chart_orthonormal_frame(jet.metric))
        self._J, self._H = geo.jacobian, geo.hessian  # [k, p, m], [k, p, m, m]
        self._w = w * torch.sqrt(torch.linalg.det(jet.metric)) / chart.volume
        self.method = f"chart quadrature {counts}"
        self.n_nodes = u.shape[0]

    def terms(self, coef: torch.Tensor) -> dict[str, torch.Tensor]:
        """``E[r^p] int E_v f(v) dmu`` per term (default ``kappa int E_v (v.Bv)^2 dmu``
        and ``kappa int E_v |H(v,v)|^2 / 16 dmu``), differentiable in ``coef``."""
        J = torch.einsum("kpi,pl->kli", self._J, coef)
        H = torch.einsum("kpij,pl->klij", self._H, coef)
        geometry = SimpleNamespace(jacobian=J, distortion=metric_distortion(J), hessian=H)
        return {t.name: self._radial[t.name] * (self._w @ average_over_directions(t, geometry))
                for t in self.penalty.terms}


# --------------------------------------------------------------------------
# L-BFGS


@dataclass
class MinimizeResult:
    """One L-BFGS run.

    Attributes
    ----------
    params : ndarray, shape=[p, l]
        Final coefficients.
    value : float
        Objective at ``params``.
    iterations, evaluations : int
        L-BFGS iterations and objective/gradient evaluations.
    grad_norm : float
        Euclidean norm of the gradient at ``params``.
    converged : bool
        ``grad_norm <= gtol``.
    message : str
        Why it stopped.
    start : int
        Index of the random start (-1 for a given start).
    """

    params: np.ndarray
    value: float
    iterations: int
    evaluations: int
    grad_norm: float
    converged: bool
    message: str
    start: int = -1

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["params"] = self.params.tolist()
        return out

    def record(self) -> dict:
        """The run's outcome without its parameters (for study records)."""
        return {"value": self.value, "iterations": self.iterations, "evaluations": self.evaluations,
                "grad_norm": self.grad_norm, "converged": self.converged, "message": self.message,
                "start": self.start}


@contextlib.contextmanager
def _single_threaded_blas():
    """One BLAS thread inside L-BFGS-B: its small dense updates are otherwise
    dominated by thread start-up (about 3 ms per iteration on 2 cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional (it comes with scikit-learn)
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def _flat_hessian(objective, x: torch.Tensor, shape) -> torch.Tensor:
    """Hessian of ``objective`` in the flattened coefficients ``x`` ``shape=[p l]``, ``shape=[p l, p l]``."""
    H = torch.autograd.functional.hessian(lambda z: objective(z.reshape(shape)), x, vectorize=True)
    return 0.5 * (H + H.T)


def _newton_polish(objective, fun, x, f, g, shape, gtol, max_steps):
    """Newton steps ``dx = -H^+ g`` from an L-BFGS end point that stalled above ``gtol``.

    Near a minimiser the gradient, unlike the value, keeps its relative
    accuracy, so Newton's method reaches gradients far below the floor
    ``~ sqrt(2 |H| eps |f|)`` at which a value-based line search stops. The
    pseudo-inverse ignores the Hessian's null space (symmetries of the loss:
    translations, rotations, reparametrisations). A step is taken only if
    the Hessian has no eigenvalue below ``-1e-6`` times its largest (the
    point is not a saddle), and kept only if it lowers the gradient norm.
    """
    steps = 0
    for _ in range(max_steps):
        gn = np.linalg.norm(g)
        if gn <= gtol:
            break
        w, V = np.linalg.eigh(_flat_hessian(objective, torch.from_numpy(x), shape).numpy())
        # away from the exact minimiser the rotation modes curve by O(|g| |x|): not a saddle
        cut = 1e-6 * np.abs(w).max()
        if w.min() < -cut:
            break
        keep = w > cut
        dx = -V[:, keep] @ ((V[:, keep].T @ g) / w[keep])
        f_new, g_new = fun(x + dx)
        if not np.linalg.norm(g_new) < gn:
            break
        x, f, g = x + dx, f_new, g_new
        steps += 1
    return x, f, g, steps


def minimize(objective, start, *, gtol: float = 1e-8, max_iter: int = 5000, history: int = 20,
             newton_steps: int = 5, start_index: int = -1) -> MinimizeResult:
    """Minimise ``objective(coef)`` by L-BFGS from ``start``, stopping when ``|grad| <= gtol``.

    ``scipy.optimize.minimize(method="L-BFGS-B")`` with the value and the
    autograd gradient in float64; its own stopping rules are switched off
    (``ftol = gtol = 0``), so it stops when the Euclidean gradient norm
    reaches ``gtol`` (converged), after ``max_iter`` iterations, or when the
    line search can make no more progress: the value stops changing in
    float64 once ``|grad| ~ sqrt(2 |H| eps |f|)``, which can be above
    ``gtol``. In that last case up to ``newton_steps`` Newton steps with the
    exact Hessian (:func:`_newton_polish`) finish the job; they are counted
    in ``iterations`` and named in ``message``.

    Parameters
    ----------
    objective : callable
        Coefficients ``shape=[p, l]`` -> scalar tensor, differentiable
        (:class:`DiscreteObjective`, :class:`ContinuumObjective`).
    start : array_like, shape=[p, l]
    gtol : float
        Tolerance on the Euclidean norm of the gradient.
    max_iter : int
        L-BFGS iterations.
    history : int
        L-BFGS memory.
    newton_steps : int
        Most Newton steps after a stalled line search (0: none).
    start_index : int
        Recorded in the result (:func:`minimize_multistart`).

    Returns
    -------
    MinimizeResult
    """
    start = torch.as_tensor(start, dtype=DTYPE).detach()
    shape = start.shape
    last = {}

    def fun(z):
        c = torch.from_numpy(z).reshape(shape).requires_grad_(True)
        value = objective(c)
        (g,) = torch.autograd.grad(value, c)
        g = g.reshape(-1).numpy().copy()
        last["x"], last["grad"] = z.copy(), g
        return float(value.detach()), g

    def callback(intermediate_result):
        if np.linalg.norm(last["grad"]) <= gtol and np.array_equal(last["x"], intermediate_result.x):
            raise StopIteration

    f0, g0 = fun(start.reshape(-1).numpy().copy())
    if np.linalg.norm(g0) <= gtol:
        return MinimizeResult(start.numpy().copy(), f0, 0, 1, float(np.linalg.norm(g0)), True,
                              "start is stationary", start_index)
    with _single_threaded_blas():
        res = scipy.optimize.minimize(fun, start.reshape(-1).numpy().copy(), jac=True, method="L-BFGS-B",
                                      callback=callback,
                                      options={"maxiter": max_iter, "maxcor": history, "ftol": 0.0, "gtol": 0.0,
                                               "maxfun": 20 * max_iter, "maxls": 40})
        # the reported point, value and gradient are recomputed, not taken from the last line-search trial
        x = np.asarray(res.x, dtype=np.float64)
        value, grad = fun(x)
        polished = 0
        if np.linalg.norm(grad) > gtol and newton_steps and res.nit < max_iter:
            x, value, grad, polished = _newton_polish(objective, fun, x, value, grad, shape, gtol, newton_steps)
    gnorm = float(np.linalg.norm(grad))
    converged = gnorm <= gtol
    if converged:
        message = "gradient norm <= gtol" + (f" after {polished} Newton step(s)" if polished else "")
    else:
        message = str(res.message) + (f"; {polished} Newton step(s)" if polished else "")
    return MinimizeResult(x.reshape(tuple(shape)), value, int(res.nit) + polished, int(res.nfev) + polished, gnorm,
                          converged, message, start_index)


@dataclass
class MultiStartResult:
    """Runs of :func:`minimize` from random starts; ``best`` has the lowest value."""

    runs: list[MinimizeResult] = field(default_factory=list)

    @property
    def best(self) -> MinimizeResult:
        return min(self.runs, key=lambda r: r.value)

    @property
    def values(self) -> list[float]:
        return [r.value for r in self.runs]

    def n_at_best(self, rtol: float = 1e-8) -> int:
        """How many runs end within ``rtol`` (relative) of the best value."""
        b = self.best.value
        return sum(abs(r.value - b) <= rtol * max(abs(b), 1e-300) for r in self.runs)

    def record(self, rtol: float = 1e-9) -> dict:
        """The runs' outcomes, the best one's without parameters, and how many reached the best."""
        return {"best": self.best.record(), "values": self.values, "iterations": [r.iterations for r in self.runs],
                "grad_norms": [r.grad_norm for r in self.runs], "converged": [r.converged for r in self.runs],
                "n_at_best": self.n_at_best(rtol)}

    def to_dict(self) -> dict:
        return {**self.record(), "best": self.best.to_dict()}


def minimize_multistart(objective, family, *, n_starts: int = 8, seed: int = 0, scale: float | None = None,
                        extra_starts=(), gtol: float = 1e-8, max_iter: int = 5000) -> MultiStartResult:
    """:func:`minimize` from ``n_starts`` random starts (``family.random_coefficients``)
    and from each of ``extra_starts`` (indices ``n_starts, n_starts + 1, ...``).

    The starts are drawn from one generator seeded with ``seed``: the same
    arguments give the same runs.
    """
    check_count(n_starts, "n_starts", minimum=0)
    gen = torch.Generator().manual_seed(int(seed))
    starts = [family.random_coefficients(gen, scale) for _ in range(n_starts)] + list(extra_starts)
    if not starts:
        raise ValueError("no starts: give n_starts >= 1 or extra_starts")
    return MultiStartResult([minimize(objective, s, gtol=gtol, max_iter=max_iter, start_index=i)
                             for i, s in enumerate(starts)])


def hessian_spectrum(objective, coef) -> np.ndarray:
    """Eigenvalues of the Hessian of ``objective`` at ``coef`` (``shape=[p, l]``), ascending.

    Symmetries of the loss (translations, rotations of ``R^l``,
    reparametrisations within the family) give zero eigenvalues; a negative
    one shows that ``coef`` is a saddle.
    """
    c = torch.as_tensor(coef, dtype=DTYPE).detach()
    return np.linalg.eigvalsh(_flat_hessian(objective, c.reshape(-1), c.shape).numpy())
