"""Float64 evaluation of a trained encoder: ``L_delta``, ``L`` and the cost of float32.

``L_delta`` comes from :func:`gammalimit.discrete_loss` with a fixed
evaluation seed, ``L`` from :func:`gammalimit.continuum_loss` quadrature or
as the mean limit integrand over sampled pairs (:func:`limit_estimate`), both
with the run's penalty (docs/theory.md, sections 2 and 3). A run on samples
gets ``L_delta`` from fresh cloud pairs (not the training pool), no ``L``, and,
where the config names the exact manifold behind the data (``reference``),
``L_delta`` with its exact geometry too.
"""

from __future__ import annotations

import copy
import time
import warnings

import torch

from ..estimate import stream_estimate
from ..functional import continuum_loss, limit_terms
from ..loss import discrete_loss, pair_terms, roundoff_error
from ..manifolds.base import DTYPE
from ..penalties import get_penalty
from ..sampling import sample_pairs
from ..shapes import local_isometry_error, overlap_fraction
from ..validation import check_choice, check_count, check_lam
from .config import TrainConfig
from .data import given_pairs
from .networks import TRAIN_DTYPE, float64_copy

#: Pairs on which the float32 and float64 encoders are compared.
FLOAT32_PAIRS = 4096

#: What a run on samples reports in place of ``L``.
NO_LIMIT = ("none: L needs the manifold's chart and curvature, which samples do not give; L_delta uses the "
            "point cloud's surrogates (chord distance, midpoints from local fits)")

LIMIT_ESTIMATES = ("quadrature", "monte-carlo")


def limit_estimate(phi, manifold, *, lam: float, penalty="squared", strategy: str = "shell",
                   method: str = "quadrature", n: int = 4096, seed: int = 0, delta: float | None = None) -> dict:
    """``L[phi]`` by ``continuum_loss`` quadrature or as the mean limit integrand.

    ``method="quadrature"``: :func:`gammalimit.continuum_loss` from 16 nodes
    per chart coordinate, doubled while the relative change exceeds ``1e-5``
    and the finer rule has at most 2048 nodes (1-D: up to 2048 nodes; 2-D:
    ``16^2`` against ``32^2``); ``error`` is the change between the last two
    rules and ``converged`` says whether it met the tolerance.
    ``method="monte-carlo"``: the mean of the penalty's per-pair limits
    (default ``r^4 [(v.Bv)^2 + lam |H(v,v)|^2/16]``) over ``n`` antithetic
    pairs drawn at scale ``delta`` with ``seed`` (:func:`gammalimit.limit_terms`):
    an unbiased estimate of ``L`` on a manifold without boundary; with a
    boundary, of the average over the sampler's ``x``-marginal
    (docs/theory.md, section 5). Measured on the image manifolds with a
    1024-pixel MLP, quadrature is both faster (1-3 s) and far more accurate
    than 4096 Monte Carlo pairs (5-15 s, 1e-4 relative).

    Returns
    -------
    dict
        ``total``, one value per term of the penalty, ``error`` (quadrature)
        or ``stderr`` (Monte Carlo), ``method``, ``seconds``.
    """
    check_choice(method, "method", LIMIT_ESTIMATES)
    lam, pen = check_lam(lam), get_penalty(penalty)
    t0 = time.perf_counter()
    if method == "quadrature":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported as converged=False instead
            L = continuum_loss(phi, manifold, lam=lam, penalty=pen, strategy=strategy, rtol=1e-5, max_nodes=2048)
        out = {"total": L.total, **L.terms, "error": L.error, "n_nodes": L.n_nodes, "converged": L.converged,
               "method": method}
    else:
        if delta is None:
            raise TypeError("method='monte-carlo' needs the scale delta of the pairs")

        def per_pair(pairs):
            return torch.stack(list(limit_terms(phi, manifold, pairs, penalty=pen).values()), -1)

        res = stream_estimate(per_pair, len(pen.terms), manifold, n=check_count(n, "n", 2), delta=delta,
                              strategy=strategy, antithetic=True, seed=seed)
        w = pen.coefficients(lam)
        out = {"total": res.value(w), **{name: res.component(i)[0] for i, name in enumerate(pen.names)},
               "stderr": res.stderr(w), "n": res.n, "method": method}
    out["seconds"] = time.perf_counter() - t0
    return out


def evaluate(model: torch.nn.Module, config: TrainConfig, manifold=None) -> dict:
    """Float64 evaluation of a trained encoder, and the cost of float32.

    Returns
    -------
    dict
        ``L_delta``: :func:`gammalimit.discrete_loss` of a float64 copy of
        ``model`` with ``config.eval_pairs`` antithetic pairs and
        ``config.eval_seed`` (``total``, ``stderr``, ...).
        ``float32_relative_error``: ``|mean(l32) - mean(l64)| / mean(l64)``
        of the penalties of the float32 and float64 encoders on the same
        :data:`FLOAT32_PAIRS` pairs (``total`` and each term), and
        ``float32_pair_rms_error``, the root mean square of the per-pair
        differences over the same mean (round-off that averages out in the
        mean shows here), beside ``float32_roundoff_bound = eps_32 / delta^2``,
        docs/theory.md's estimate for the bending term.
        ``L``: :func:`limit_estimate` with ``config.limit`` (absent for ``"none"``).

        For a run on samples (``config.data``): ``L_delta`` over
        ``config.eval_pairs`` fresh cloud pairs (``config.eval_seed``, not
        antithetic), or over all the pairs of a triplet file, the float32 comparison on the first of them, ``fit``
        (their local fits' residuals, :attr:`gammalimit.PointCloud.last_fit`,
        for projected midpoints), ``limit`` saying why there is no ``L``, and
        with ``config.reference`` ``L_delta_reference``: ``discrete_loss`` on
        the exact manifold (antithetic pairs, ``config.eval_seed``).
    """
    manifold = config.make_manifold() if manifold is None else manifold
    phi64 = float64_copy(model)
    if config.data is not None:
        out = _evaluate_on_samples(model, phi64, config, manifold)
        out["folds"] = fold_check(phi64, manifold, config.delta, strategy=config.strategy, seed=config.eval_seed)
        return out
    t0 = time.perf_counter()
    L64 = discrete_loss(phi64, manifold, delta=config.delta, lam=config.lam, n=config.eval_pairs,
                        penalty=config.penalty, strategy=config.strategy, antithetic=True, seed=config.eval_seed)
    out = {"L_delta": {**L64.to_dict(), "seconds": time.perf_counter() - t0}}
    pairs = sample_pairs(manifold, min(config.eval_pairs, FLOAT32_PAIRS), config.delta, strategy=config.strategy,
                         antithetic=True, seed=config.eval_seed)
    out.update(_float32_cost(model, phi64, pairs, config))
    if config.limit != "none":
        out["L"] = limit_estimate(phi64, manifold, lam=config.lam, penalty=config.penalty, strategy=config.strategy,
                                  method=config.limit, n=max(2, config.eval_pairs // 4), seed=config.eval_seed,
                                  delta=config.delta)
    out["folds"] = fold_check(phi64, manifold, config.delta, strategy=config.strategy, seed=config.eval_seed)
    return out


#: Point pairs of the fold check, and how many overlapping far pairs make it warn.
FOLD_PAIRS = 4096
FOLD_WARNING = 3


def fold_check(phi, manifold, delta: float, *, strategy="shell", n: int = FOLD_PAIRS, seed: int = 0) -> dict:
    """Does the encoder fold ``M`` onto itself? The overlap measure after training.

    ``n`` random pairs of points of ``M`` (of the samples, on a point cloud):
    among those farther apart than ``4 delta``, the fraction whose codes lie
    closer than ``delta`` after the best global scale of the codes at scale
    ``delta`` (:func:`gammalimit.shapes.overlap_fraction`). The distance is
    the geodesic one; on a cloud, the shortest path in its neighbour graph
    (:meth:`gammalimit.PointCloud.path_length`, within a few per cent of the
    geodesic on the clouds measured), not the chord, which may never reach
    ``4 delta``: between images of a translating blob (``sigma = 0.06``) it is
    at most ``sqrt(2) |u| = 0.150 < 4 delta = 0.2``, so a chord check at
    ``delta = 0.05`` saw no far pair, and ``start="auto"`` kept a folded PCA
    start. ``L_delta`` cannot see a fold away from its crease; this can. An
    injective, nearly isometric encoder has no such pair (it would have to
    shrink a distance fourfold), so the check warns (``UserWarning``) from
    :data:`FOLD_WARNING` pairs on; a fold of the Swiss roll at ``delta = 1``
    (the PCA start) shows about 0.1% of the far pairs, 4 of 4096.

    Returns
    -------
    dict
        ``overlap`` (fraction), ``overlapping`` and ``far_pairs`` (counts), ``scale``, ``warning`` (bool).
    """
    g = torch.Generator().manual_seed(seed)
    if hasattr(manifold, "path_length"):  # a point cloud: graph distances, searched no farther than 4 delta
        i, j = manifold.sample_indices(n, generator=g), manifold.sample_indices(n, generator=g)
        a, b = manifold.points[i], manifold.points[j]
        dist = manifold.path_length(i, j, limit=4 * delta)
        # the scale needs the pairs' ends and distances, not their midpoints (no local fits)
        scale_source = manifold.with_midpoint("chord")
    else:
        a, b = manifold.sample(n, generator=g), manifold.sample(n, generator=g)
        dist = manifold.dist(a, b) if hasattr(manifold, "dist") else torch.linalg.vector_norm(a - b, dim=-1)
        scale_source = manifold
    pairs = sample_pairs(scale_source, min(n, 1024), delta, strategy=strategy, seed=seed + 1)
    with torch.no_grad():
        scale = local_isometry_error(phi(pairs.x), phi(pairs.y), pairs.dist)["scale"]
        overlap = overlap_fraction(phi(a), phi(b), dist, delta, scale)
    far = int((dist > 4 * delta).sum())
    overlapping = round(overlap * far) if far else 0
    warn = overlapping >= FOLD_WARNING
    if warn:
        warnings.warn(f"the encoder folds M onto itself: {100 * overlap:.2g}% of the point pairs farther apart "
                      f"than 4 delta = {4 * delta:.4g} have codes closer than delta; L_delta cannot see a fold "
                      "away from its crease: try a global start (start='isomap')", UserWarning, stacklevel=2)
    return {"overlap": overlap, "overlapping": overlapping, "far_pairs": far, "scale": scale, "warning": warn}


def _evaluate_on_samples(model, phi64, config: TrainConfig, cloud) -> dict:
    """:func:`evaluate` for a run on samples: the cloud's pairs are drawn once and serve both estimates."""
    t0 = time.perf_counter()
    pairs = given_pairs(cloud, config.delta)  # a triplet file: its own pairs
    if pairs is None:
        pairs = sample_pairs(cloud, config.eval_pairs, config.delta, strategy=config.strategy,
                             seed=config.eval_seed)
    fit = dict(cloud.last_fit) if cloud.midpoint_rule == "projection" and getattr(cloud, "triplets", None) is None else None
    L64 = discrete_loss(phi64, pairs, lam=config.lam, penalty=config.penalty, strategy=config.strategy,
                        seed=config.eval_seed)
    out = {"L_delta": {**L64.to_dict(), "seconds": time.perf_counter() - t0}}
    out.update(_float32_cost(model, phi64, next(pairs.blocks(FLOAT32_PAIRS)), config))
    if fit is not None:
        out["fit"] = fit
    out["limit"] = NO_LIMIT
    reference = config.make_reference()
    if reference is not None:
        t0 = time.perf_counter()
        exact = discrete_loss(phi64, reference, delta=config.delta, lam=config.lam, n=config.eval_pairs,
                              penalty=config.penalty, strategy=config.strategy, antithetic=True,
                              seed=config.eval_seed)
        out["L_delta_reference"] = {"manifold": repr(reference), **exact.to_dict(),
                                    "seconds": time.perf_counter() - t0}
    return out


def _float32_cost(model, phi64, pairs, config: TrainConfig) -> dict:
    """The float32 encoder's relative error against the float64 copy on ``pairs`` (see :func:`evaluate`)."""
    phi32 = copy.deepcopy(model).to(device="cpu", dtype=TRAIN_DTYPE).eval()
    with torch.no_grad():
        t64, t32 = pair_terms(phi64, pairs, config.penalty), pair_terms(phi32, pairs, config.penalty)
    rel, per_pair = {}, {}
    for key in ("total", *t64):
        a, b = ((t.total(config.lam) if key == "total" else t[key]).to(DTYPE) for t in (t64, t32))
        scale = max(abs(float(a.mean())), 1e-300)
        rel[key] = float(abs(b.mean() - a.mean())) / scale
        per_pair[key] = float(torch.sqrt(((b - a) ** 2).mean())) / scale
    return {"float32_relative_error": rel, "float32_pair_rms_error": per_pair,
            "float32_roundoff_bound": roundoff_error(TRAIN_DTYPE, config.delta)}
