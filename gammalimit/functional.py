"""The continuum functional ``L`` (the Gamma-limit, docs/theory.md, section 3).

    L[phi] = sum_t c_t E[r^p_t] int_M E_v f_t(v) dmu

for the terms ``t`` of a :class:`~gammalimit.penalties.Penalty` (default
``kappa int [ (2|B|^2 + (tr B)^2) + (lam/16)(2|H|^2 + |tr H|^2) ] / (m(m+2)) dmu``).
:func:`continuum_loss` integrates it by deterministic quadrature over the
manifold's chart; :func:`limit_terms` evaluates each term's per-pair limit at
the ``(x, v, r)`` a :class:`~gammalimit.sampling.PairSample` drew, so that
``L_delta - L`` can be estimated with common random numbers
(:func:`discrete_minus_limit`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .derivatives import CHUNK, encoder_function, encoder_jet
from .directional import ROUTES, directional_jet, encoder_jet_jvp
from .estimate import stream_estimate
from .geometry import EncoderGeometry, chart_orthonormal_frame
from .loss import TermResult, Terms, encoder_input_error, pair_terms, probe_point
from .manifolds.base import DTYPE
from .penalties import get_penalty
from .sampling import PairSample, get_strategy
from .validation import check_choice, check_count, check_lam, check_manifold, check_real, check_seed

# --------------------------------------------------------------------------
# the per-pair limit


def limit_terms(phi, manifold, pairs: PairSample, *, penalty="squared", route: str = "jvp",
                check: bool = True) -> Terms:
    """Each penalty term's per-pair limit ``r^p f(v)`` at the pairs' own ``(x, v, r)``.

    Default penalty: ``distortion = r^4 (v.Bv)^2`` and ``bending = r^4 |H(v,v)|^2 / 16``,
    the ``delta -> 0`` limits of the terms of :func:`gammalimit.loss.pair_terms`
    for the same pairs, so that
    ``pair_terms(phi, pairs).total(lam) - limit_terms(phi, M, pairs).total(lam)``
    estimates ``L_delta - L`` with common random numbers.

    Parameters
    ----------
    phi : callable or torch.nn.Module
    manifold : Manifold
    pairs : PairSample
    penalty : str or Penalty
    route : {"jvp", "chart", "geodesic"}
        How ``Dphi v`` and ``H(v, v)`` are computed
        (:func:`gammalimit.directional.directional_jet`): ``"jvp"`` (default)
        differentiates ``phi`` along each pair's geodesic by one batched
        nested ``jvp`` and needs an encoder that acts row by row (checked);
        ``"chart"`` forms the full chart Hessian point by point, about ten
        times slower. They agree to round-off.
    check : bool
        Check the encoder (row by row, derivatives against central
        differences) on a few points first.

    Returns
    -------
    Terms
        One tensor ``shape=[k]`` per term.
    """
    pen = get_penalty(penalty)
    jet = directional_jet(phi, manifold, pairs.x, pairs.v, route=route, check=check)
    return Terms(pen, pen.limit_values(jet, pairs.r.to(DTYPE)))


def limit_integrand(phi, manifold, pairs: PairSample, *, lam: float, penalty="squared",
                    route: str = "jvp") -> torch.Tensor:
    """``sum_t c_t r^p f_t(v)`` at each pair's ``(x, v, r)``, ``shape=[k]``
    (default ``r^4 [ (v.Bv)^2 + lam |H(v,v)|^2 / 16 ]``).

    Its mean over pairs from :func:`~gammalimit.sampling.sample_pairs` is an
    unbiased estimate of ``L`` (on a manifold without boundary).
    """
    return limit_terms(phi, manifold, pairs, penalty=penalty, route=route).total(check_lam(lam))


# --------------------------------------------------------------------------
# quadrature over the chart and the functional


def chart_quadrature(chart, counts) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensor-product rule over the chart's box: the periodic trapezoid rule
    for periodic coordinates, Gauss-Legendre otherwise.

    Parameters
    ----------
    chart : Chart
    counts : sequence of int, length m
        Nodes per coordinate.

    Returns
    -------
    nodes : tensor, shape=[N, m]
    weights : tensor, shape=[N]
        Weights for ``du`` (the volume factor ``sqrt(det g)`` is not included).
    """
    axes, weights = [], []
    for lo, hi, periodic, n in zip(chart.lower, chart.upper, chart.periodic, counts):
        if periodic:
            h = (hi - lo) / n
            axes.append(lo + h * torch.arange(n, dtype=DTYPE))
            weights.append(torch.full((n,), h, dtype=DTYPE))
        else:
            t, w = np.polynomial.legendre.leggauss(n)
            axes.append(torch.from_numpy(lo + 0.5 * (hi - lo) * (t + 1)))
            weights.append(torch.from_numpy(0.5 * (hi - lo) * w))
    nodes = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    w = weights[0]
    for wi in weights[1:]:
        w = (w[:, None] * wi[None, :]).reshape(-1)
    return nodes, w


@dataclass
class ContinuumLoss(TermResult):
    """The Gamma-limit ``L[phi]`` and its terms (docs/theory.md, section 3).

    ``total = sum_t c_t terms[t]`` (default ``distortion + lam * bending``);
    each term includes its radial weight ``E[r^p]`` (``radial_weights``:
    ``kappa`` for the default terms). ``parts`` split terms further
    (``bending = bending_tangential + bending_normal``). ``error`` estimates
    the quadrature error of ``total`` as its change from the rule with half
    the nodes per coordinate; ``error_split`` is the largest such change of
    the parts, which converge more slowly than their sum where ``Dphi(T_x M)``
    turns fast (the adaptation watches the terms only). ``n_nodes`` and
    ``nodes`` describe the finer rule, whose values are reported;
    ``converged`` says whether the tolerance was met. Terms and parts read
    as attributes too (``L.bending_normal``); :meth:`to_dict` flattens them.
    """

    total: float
    terms: dict
    parts: dict
    error: float
    error_split: float
    n_nodes: int
    nodes: tuple[int, ...]
    converged: bool
    lam: float
    kappa: float
    radial_weights: dict
    penalty: str
    strategy: str

    def to_dict(self) -> dict:
        return {**super().to_dict(), "nodes": list(self.nodes)}


#: Nodes per evaluation of the quadrature by the jvp route (one batched
#: ``torch.func`` call each: its fixed cost favours large batches;
#: :func:`~gammalimit.directional.encoder_jet_jvp` splits them further by memory).
JVP_NODES = 1 << 15


def _integrate(phi_fn, manifold, counts, check, penalty, route):
    """``int_M density dmu`` of each term and part (without radial weights), as floats."""
    chart = manifold.chart
    u, w = chart_quadrature(chart, counts)
    step = JVP_NODES if route == "jvp" else CHUNK
    sums = {}
    for i in range(0, u.shape[0], step):
        first = check and i == 0
        if route == "jvp":
            jet = encoder_jet_jvp(phi_fn, chart, u[i : i + step], check=first, manifold=manifold)
        else:
            jet = encoder_jet(phi_fn, chart, u[i : i + step], check=first)
        densities = EncoderGeometry.from_jet(jet, chart_orthonormal_frame(jet.metric)).densities(penalty)
        weight = w[i : i + step] * torch.sqrt(torch.linalg.det(jet.metric)) / chart.volume
        for key, density in densities.items():
            sums[key] = sums.get(key, 0.0) + float(weight @ density)
    return sums


def continuum_loss(phi, manifold, *, lam: float, penalty="squared", strategy="shell", nodes=None,
                   rtol: float = 1e-12, atol: float = 1e-20, max_nodes: int = 1 << 18,
                   check: bool = True, route: str = "jvp") -> ContinuumLoss:
    """The Gamma-limit ``L[phi]`` by deterministic quadrature over the chart (docs/theory.md, section 3).

    ``L = sum_t c_t E[r^p_t] int_M E_v f_t(v) dmu`` over the penalty's terms
    (default ``kappa int_M [E_v (v.Bv)^2 + lam E_v |H(v,v)|^2 / 16] dmu``),
    with each term's direction average (closed form, or a direction rule);
    the bending term is split into its parts tangent and normal to
    ``phi(M)``. The rule (:func:`chart_quadrature`) is the periodic trapezoid
    rule or Gauss-Legendre per chart coordinate, weighted by
    ``sqrt(det g) / volume``; both converge exponentially for smooth ``phi``.
    Starting from ``nodes`` per coordinate (default 16), the node counts are
    doubled until two successive rules agree to ``rtol`` relative (or
    ``atol`` absolute, for integrals that vanish); the finer value is
    returned, and their difference is the error estimate. The default start
    is lowered (to a power of two) where the first refined rule would exceed
    ``max_nodes`` (``m >= 4``: ``8^m`` and ``16^m`` nodes at the default cap),
    so the cap holds from the first comparison on. Points are
    evaluated in chunks of :data:`~gammalimit.derivatives.CHUNK`, so memory
    stays bounded.

    Parameters
    ----------
    phi : callable or torch.nn.Module
        Encoder ``shape=[k, ambient_dim] -> shape=[k, l]``, ``l >= m``,
        twice differentiable on ``M`` (written in torch).
    manifold : Manifold
        A manifold with a chart (not a point cloud).
    lam : float, >= 0
        Weight of the bending term.
    penalty : str or Penalty
        The pair terms whose limit is integrated (default ``"squared"``).
    strategy : {"shell", "ball"} or strategy object
        Sets the radial weights ``E[r^p]`` (``kappa = E[r^4]``).
    nodes : int or sequence of int, optional
        If given, no adaptation: the rule with these nodes per coordinate is
        compared with the one with twice as many.
    rtol, atol : float
        Tolerances of the adaptation.
    max_nodes : int
        Largest total number of nodes of a rule; a warning says when the
        tolerance was not met within it.
    check : bool
        Probe the derivatives against central differences (:func:`encoder_jet`),
        and, on the jvp route, that ``phi`` acts row by row.
    route : {"jvp", "chart"}
        How ``Dphi`` and ``H`` are computed at the nodes: from second
        derivatives along ``m (m + 1) / 2`` chart geodesics per node in one
        batched nested ``jvp`` (:func:`~gammalimit.directional.encoder_jet_jvp`,
        the default; ``phi`` must act row by row), or from the full chart
        Hessian point by point (:func:`~gammalimit.derivatives.encoder_jet`).
        They agree to round-off.

    Returns
    -------
    ContinuumLoss

    Raises
    ------
    ValueError, TypeError
        On bad arguments or an encoder that is not twice differentiable on
        ``M``; ``phi`` is tried on one point first: an encoder that cannot take
        the manifold's points (a wrong input size) is a ``ValueError`` naming
        the dimensions, one that returns float32 for float64 points a ``TypeError``.
    """
    lam = check_lam(lam)
    pen = get_penalty(penalty)
    strat = get_strategy(strategy)
    chart = getattr(check_manifold(manifold), "chart", None)
    if chart is None:
        raise TypeError(f"continuum_loss needs a manifold with a chart (exact geometry), got {manifold!r}: "
                        "samples alone do not determine the limit; use discrete_loss")
    m = chart.dim
    fixed = nodes is not None
    rtol = check_real(rtol, "rtol", minimum=0.0, strict=False)
    atol = check_real(atol, "atol", minimum=0.0, strict=False)
    max_nodes = check_count(max_nodes, "max_nodes", minimum=4**m)
    counts = _node_counts(nodes, m, max_nodes)
    check_choice(route, "route", ("jvp", "chart"))
    phi_fn = _float64_encoder(phi, manifold)
    coarse = _integrate(phi_fn, manifold, counts, check, pen, route)
    while True:
        counts = tuple(2 * c for c in counts)
        fine = _integrate(phi_fn, manifold, counts, False, pen, route)
        scale = sum(abs(fine[k]) for k in pen.names)
        change = max(abs(fine[k] - coarse[k]) for k in pen.names)
        converged = change <= max(rtol * scale, atol)
        if fixed or converged:
            break
        if math.prod(2 * c for c in counts) > max_nodes:
            warnings.warn(
                f"continuum_loss did not reach rtol={rtol:g} within max_nodes={max_nodes} "
                f"(nodes {counts}, relative change {change / max(scale, 1e-300):.2g})", stacklevel=2)
            break
        coarse = fine
    radial = pen.radial_weights(strat, m)
    weight = {k: radial[pen.owner(k).name] for k in fine}
    values = {k: weight[k] * fine[k] for k in fine}
    coef = dict(zip(pen.names, pen.coefficients(lam).tolist()))
    terms = {k: values[k] for k in pen.names}
    parts = {k: v for k, v in values.items() if k not in terms}
    diff = {k: weight[k] * (fine[k] - coarse[k]) for k in fine}
    return ContinuumLoss(
        total=Terms(pen, terms).total(lam),
        terms=terms,
        parts=parts,
        error=abs(sum(coef[k] * diff[k] for k in pen.names)),
        error_split=max((abs(diff[k]) for k in parts), default=0.0),
        n_nodes=math.prod(counts),
        nodes=counts,
        converged=bool(converged),
        lam=lam,
        kappa=float(strat.kappa(m)),
        radial_weights=radial,
        penalty=pen.name,
        strategy=strat.name,
    )


def _float64_encoder(phi, manifold):
    """``phi`` as the float64 function the derivatives are taken of, tried on one point of
    ``manifold`` first: a failure names the dimensions, and an output that is not float64
    (a function computing in float32) is a ``TypeError``, since the quadrature adapts to
    ``rtol ~ 1e-12`` and the derivative check to ``1e-4``, neither reachable in float32."""
    phi_fn = encoder_function(phi)
    x = probe_point(manifold)
    try:
        out = phi_fn(x)
    except RuntimeError as err:
        raise encoder_input_error(phi, x.shape[1], manifold, err) from err
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise TypeError(f"phi must return a floating torch tensor, got {type(out).__name__}")
    if out.dtype != DTYPE:
        raise TypeError(
            f"phi returned {out.dtype} values for float64 points: the limit takes phi's first and second "
            "derivatives to float64 accuracy, so phi must compute in float64 (a torch.nn.Module is copied to "
            "float64 automatically; a function should not cast to a lower precision). discrete_loss accepts "
            "it, with a warning where the round-off matters")
    return phi_fn


def _node_counts(nodes, m, max_nodes):
    """Nodes per coordinate of the first rule: ``nodes``, or by default 16, halved while the rule
    with twice as many nodes would exceed ``max_nodes`` (at least 2)."""
    if nodes is None:
        start = 16
        while start > 2 and (2 * start) ** m > max_nodes:
            start //= 2
        return (start,) * m
    if isinstance(nodes, (int, np.integer)) and not isinstance(nodes, bool):
        counts = (nodes,) * m
    elif isinstance(nodes, (tuple, list)):
        counts = tuple(nodes)
    else:
        raise TypeError(f"nodes must be an integer >= 2 or a sequence of {m} such integers, got {nodes!r}")
    if len(counts) != m or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 2
                                   for c in counts):
        raise ValueError(f"nodes must be an integer >= 2 or {m} such integers, got {nodes!r}")
    return tuple(int(c) for c in counts)


# --------------------------------------------------------------------------
# L_delta - L with common random numbers


@dataclass
class GapEstimate(TermResult):
    """Monte Carlo estimate of ``E[l - l_0]``: the per-pair penalty terms minus
    their limits at the same pairs (:func:`discrete_minus_limit`).

    ``total = sum_t c_t terms[t]``; ``stderr*`` are standard errors from the
    sampling units. ``limit_total`` is the same pairs' mean of the limit
    integrand (an estimate of ``L`` on a manifold without boundary).
    """

    total: float
    stderr: float
    terms: dict
    stderr_terms: dict
    limit_total: float
    limit_stderr: float
    n: int
    n_units: int
    delta: float
    lam: float
    penalty: str
    strategy: str
    antithetic: bool
    qmc: bool
    seed: int


def discrete_minus_limit(phi, manifold, *, delta: float, lam: float, n: int, penalty="squared",
                         strategy="shell", antithetic: bool = False, qmc: bool = False, seed: int = 0,
                         qmc_replicates: int = 8, route: str = "jvp") -> GapEstimate:
    """Estimate ``L_delta - L`` with common random numbers (docs/theory.md, section 2).

    Each pair contributes ``l(x, y) - l_0(x, v, r)``: its penalty terms
    (:func:`gammalimit.loss.pair_terms`) minus their limits at the same
    ``(x, v, r)`` (:func:`limit_terms`). The difference is ``O(delta)`` per
    pair and ``O(delta^2)`` per antithetic couple, so its standard error
    shrinks with ``delta`` instead of stalling at the Monte Carlo noise of
    either loss. On a manifold with boundary the sampler's ``x``-marginal is
    not ``mu`` (docs/theory.md, section 5): the estimate is then of
    ``L_delta - E_sampler[l_0]``, and ``E_sampler[l_0] - L`` (compare
    ``limit_total`` with :func:`continuum_loss`) is the rest of the gap.

    Parameters are those of :func:`gammalimit.discrete_loss`; ``route`` is
    that of :func:`limit_terms`.

    Returns
    -------
    GapEstimate
    """
    lam = check_lam(lam)
    pen = get_penalty(penalty)
    strat = get_strategy(strategy)
    seed = check_seed(seed)
    check_choice(route, "route", ROUTES)
    phi_fn = _float64_encoder(phi, check_manifold(manifold))
    first = [True]

    def per_pair(pairs):
        with torch.no_grad():
            terms = pair_terms(phi_fn, pairs, pen)
        limit = limit_terms(phi_fn, manifold, pairs, penalty=pen, route=route, check=first[0])
        first[0] = False
        return torch.stack([terms[k] - limit[k] for k in pen.names] + [limit.total(lam)], -1)

    res = stream_estimate(per_pair, len(pen.terms) + 1, manifold, n=n, delta=delta, strategy=strat,
                          antithetic=antithetic, qmc=qmc, seed=seed, qmc_replicates=qmc_replicates)
    w = torch.cat([pen.coefficients(lam), torch.zeros(1, dtype=DTYPE)])
    parts = [res.component(i) for i in range(len(pen.terms) + 1)]
    return GapEstimate(
        total=res.value(w),
        stderr=res.stderr(w),
        terms={k: mean for k, (mean, _) in zip(pen.names, parts)},
        stderr_terms={k: se for k, (_, se) in zip(pen.names, parts)},
        limit_total=parts[-1][0],
        limit_stderr=parts[-1][1],
        n=res.n,
        n_units=res.n_units,
        delta=float(delta),
        lam=lam,
        penalty=pen.name,
        strategy=strat.name,
        antithetic=bool(antithetic),
        qmc=bool(qmc),
        seed=int(seed),
    )
