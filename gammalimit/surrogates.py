"""The error of the sample surrogates, measured where the exact geometry is known (docs/theory.md, section 8).

A :class:`~gammalimit.PointCloud` replaces ``d(x, y)`` and ``av(x, y)`` by
estimates from its samples. On data drawn from a manifold whose geometry
*is* known, :func:`surrogate_bias` compares, pair by pair, the penalties with
the surrogates against those of the same pair with the exact distance and
midpoint. The per-pair difference isolates the surrogates' bias from the
Monte Carlo noise of either loss (common random numbers again).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .estimate import stream_estimate
from .loss import pair_terms
from .penalties import get_penalty
from .sampling import PairSample
from .validation import check_lam

#: What each measured variant replaces: the distance, the midpoint, or both.
VARIANTS = ("distance", "midpoint", "both")


@dataclass
class SurrogateBias:
    """``E[l(surrogate pair) - l(exact pair)]`` over the cloud's pairs.

    ``bias[v]`` and ``stderr[v]`` for each variant of :data:`VARIANTS`
    (``distance``: only ``d`` replaced; ``midpoint``: only ``av``; ``both``).
    ``exact`` is the mean loss of the exact pairs (the reference value).
    """

    bias: dict
    stderr: dict
    exact: float
    exact_stderr: float
    delta: float
    lam: float
    n: int
    cloud: str
    manifold: str

    def to_dict(self) -> dict:
        return asdict(self)


def surrogate_bias(phi, manifold, cloud, *, delta: float, lam: float, n: int, penalty="squared",
                   strategy="ball", seed: int = 0, clean=None) -> SurrogateBias:
    """Bias of ``L_delta`` from the cloud's distance and midpoint surrogates.

    Parameters
    ----------
    phi : callable
        Encoder ``shape=[k, n] -> shape=[k, l]``.
    manifold : Manifold
        The exact geometry the cloud's samples come from.
    cloud : PointCloud
    delta, lam, n, penalty, strategy, seed
        As for :func:`gammalimit.discrete_loss` on the cloud.
    clean : callable, optional
        Maps (noisy) samples ``shape=[k, n]`` to the points of ``M`` they were
        drawn at; the exact pair is built from those. Default: the samples
        themselves (noiseless data). With noise only ``both`` is meaningful.

    Returns
    -------
    SurrogateBias
    """
    lam = check_lam(lam)
    pen = get_penalty(penalty)

    def per_pair(pairs):
        x, y = (pairs.x, pairs.y) if clean is None else (clean(pairs.x), clean(pairs.y))
        d, av = manifold.dist(x, y), manifold.midpoint(x, y)
        exact = pair_terms(phi, _pairs(x, y, av, d, pairs), pen).total(lam)
        mixed = [pair_terms(phi, _pairs(pairs.x, pairs.y, av, pairs.dist, pairs), pen).total(lam),
                 pair_terms(phi, _pairs(pairs.x, pairs.y, pairs.midpoint, d, pairs), pen).total(lam),
                 pair_terms(phi, pairs, pen).total(lam)]
        return torch.stack([m - exact for m in mixed] + [exact], -1)

    with torch.no_grad():
        res = stream_estimate(per_pair, len(VARIANTS) + 1, cloud, n=n, delta=delta, strategy=strategy, seed=seed)
    parts = [res.component(i) for i in range(len(VARIANTS) + 1)]
    return SurrogateBias(
        bias={v: parts[i][0] for i, v in enumerate(VARIANTS)},
        stderr={v: parts[i][1] for i, v in enumerate(VARIANTS)},
        exact=parts[-1][0], exact_stderr=parts[-1][1], delta=float(delta), lam=lam, n=res.n,
        cloud=repr(cloud), manifold=repr(manifold))


def _pairs(x, y, midpoint, dist, like: PairSample) -> PairSample:
    return PairSample(x, y, midpoint, dist, like.v, like.r, like.delta, replicate=like.replicate)
