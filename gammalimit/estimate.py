"""The fixed-seed block stream behind every Monte Carlo estimate, and its statistics.

:func:`stream_estimate` draws pairs in the fixed-seed blocks of
:func:`gammalimit.sampling.iter_pairs`, maps each block to per-pair vectors
(the penalty terms, their limits, differences of them) and accumulates their
mean and covariance over *sampling units* (:class:`UnitStatistics`), from
which every estimate in the package takes its value and standard error.
The same arguments give the same numbers bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .manifolds.base import DTYPE
from . import distributed
from .sampling import PairSample, iter_blocks


def block_moments(batch: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Count, mean ``shape=[d]`` and co-moment ``shape=[d, d]`` of one block of vectors ``shape=[k, d]``:
    the partial statistics a block contributes (computed on whichever rank drew it)."""
    k = batch.shape[0]
    mean_b = batch.mean(0)
    dev = batch - mean_b
    return k, mean_b, dev.T @ dev


class _Moments:
    """Running mean and co-moment of vector samples (Chan et al.'s update), merged block by block."""

    def __init__(self, d: int):
        self.n = 0
        self.mean = torch.zeros(d, dtype=DTYPE)
        self.m2 = torch.zeros(d, d, dtype=DTYPE)

    def merge(self, k: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        """Fold in a block's :func:`block_moments`; blocks merged in one order give one result, bit for bit."""
        if k == 0:
            return
        delta = mean_b - self.mean
        n = self.n + k
        self.mean = self.mean + delta * (k / n)
        self.m2 = self.m2 + m2_b + torch.outer(delta, delta) * (self.n * k / n)
        self.n = n

    def update(self, batch: torch.Tensor) -> None:
        if batch.shape[0]:
            self.merge(*block_moments(batch))

    def covariance(self) -> torch.Tensor:
        return self.m2 / max(1, self.n - 1)


class UnitStatistics:
    """Mean and covariance of per-pair vectors over sampling units.

    A unit is a pair, an antithetic couple (pairs ``i`` and ``i + k/2`` of a
    block, averaged), and with QMC the mean of one scrambled replicate: the
    standard error then comes from the spread of the replicate means.
    """

    def __init__(self, d: int, *, antithetic: bool, qmc: bool):
        self.d, self.antithetic, self.qmc = d, antithetic, qmc
        self.per_rep: dict[int, _Moments] = {}

    def block(self, values: torch.Tensor, replicate: int) -> tuple:
        """The partial statistics of one block, ``values`` ``shape=[k, d]`` (one row per pair):
        ``(replicate, units, mean, co-moment)`` over its sampling units, for :meth:`merge`."""
        values = values.to(DTYPE)
        if self.antithetic:
            h = values.shape[0] // 2
            values = 0.5 * (values[:h] + values[h:])
        if values.shape[0] == 0:
            return int(replicate), 0, None, None
        return (int(replicate), *block_moments(values))

    def merge(self, partial: tuple) -> None:
        """Fold in a block's :meth:`block` statistics (blocks in stream order: one process or many,
        the same numbers)."""
        replicate, k, mean_b, m2_b = partial
        moments = self.per_rep.setdefault(replicate, _Moments(self.d))
        if k:
            moments.merge(k, mean_b, m2_b)

    def add(self, values: torch.Tensor, replicate: int) -> None:
        """``values`` ``shape=[k, d]``: one row per pair of a block."""
        self.merge(self.block(values, replicate))

    @property
    def n_units(self) -> int:
        return sum(m.n for m in self.per_rep.values())

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``mean`` ``shape=[d]``, covariance of the mean ``shape=[d, d]``, and
        covariance per unit ``shape=[d, d]``."""
        moments = list(self.per_rep.values())
        unit_cov = sum(m.covariance() for m in moments) / len(moments)
        if self.qmc:
            means = torch.stack([m.mean for m in moments])
            return means.mean(0), torch.cov(means.T).reshape(self.d, self.d) / means.shape[0], unit_cov
        (mom,) = moments
        return mom.mean, mom.covariance() / mom.n, unit_cov


@dataclass
class StreamResult:
    """Statistics of per-pair vectors ``shape=[d]`` over a stream of pairs.

    Attributes
    ----------
    mean : tensor, shape=[d]
    cov_of_mean : tensor, shape=[d, d]
        Covariance of ``mean`` (its diagonal: squared standard errors).
    unit_cov : tensor, shape=[d, d]
        Covariance per sampling unit.
    n : int
        Pairs.
    n_units : int
        Sampling units (pairs, antithetic couples or, for QMC, points per replicate summed).
    n_rejected : int
        Pairs redrawn at a boundary.
    """

    mean: torch.Tensor
    cov_of_mean: torch.Tensor
    unit_cov: torch.Tensor
    n: int
    n_units: int
    n_rejected: int

    def value(self, w: torch.Tensor) -> float:
        """``w . mean`` for weights ``shape=[d]``."""
        return float(w @ self.mean)

    def stderr(self, w: torch.Tensor) -> float:
        """Standard error of ``w . mean``."""
        return math.sqrt(max(0.0, float(w @ self.cov_of_mean @ w)))

    def unit_variance(self, w: torch.Tensor) -> float:
        """Variance of ``w . values`` per sampling unit."""
        return float(w @ self.unit_cov @ w)

    def component(self, i: int) -> tuple[float, float]:
        """Mean and standard error of component ``i``."""
        return float(self.mean[i]), math.sqrt(max(0.0, float(self.cov_of_mean[i, i])))


def stream_estimate(per_pair: Callable[[PairSample], torch.Tensor], d: int, manifold, *, n: int, delta: float,
                    strategy="shell", antithetic: bool = False, qmc: bool = False, seed: int = 0,
                    qmc_replicates: int = 8) -> StreamResult:
    """Mean and covariance of ``per_pair(pairs)`` ``shape=[k, d]`` over ``n`` pairs.

    Pairs come in the fixed-seed blocks of :func:`gammalimit.sampling.iter_pairs`
    (its parameters), so memory stays bounded for any ``n``; units are formed
    as :class:`UnitStatistics` says. Under ``torchrun`` (a process group of
    K > 1, :mod:`gammalimit.distributed`) the independent sources of
    :func:`~gammalimit.sampling.iter_blocks` are shared out (source ``i`` on
    rank ``i % K``), every rank reduces its blocks to partial statistics, and
    every rank merges all of them in block order: the result equals one
    process's bit for bit (at equal threads per process). ``manifold`` may also be a
    :class:`~gammalimit.sampling.PairSample` of given pairs (then ``n``,
    ``delta``, ``strategy`` and ``seed`` are not used).
    """
    if isinstance(manifold, PairSample):  # pairs given by the user: each pair is a unit
        if manifold.antithetic or qmc:
            raise ValueError("a given PairSample is averaged pair by pair: antithetic and qmc do not apply")
        blocks = ((i, b) for i, b in enumerate(manifold.blocks(1 << 14)) if distributed.owns(i))
    else:
        blocks = iter_blocks(manifold, n, delta, strategy=strategy, antithetic=antithetic, qmc=qmc, seed=seed,
                             qmc_replicates=qmc_replicates, owns=distributed.owns)
    stats = UnitStatistics(d, antithetic=antithetic, qmc=qmc)
    n_pairs = rejected = 0
    if not distributed.active():  # merged as they come: memory bounded for any n
        for _, pairs in blocks:
            stats.add(per_pair(pairs), pairs.replicate[0])
            n_pairs += len(pairs)
            rejected += pairs.n_rejected
    else:  # this rank's blocks, then every rank's partials merged in block order (as above, bit for bit)
        own = [(i, (stats.block(per_pair(pairs), pairs.replicate[0]), len(pairs), pairs.n_rejected))
               for i, pairs in blocks]
        for partial, k, r in distributed.gather_in_order(own):
            stats.merge(partial)
            n_pairs += k
            rejected += r
    mean, cov_of_mean, unit_cov = stats.result()
    return StreamResult(mean, cov_of_mean, unit_cov, n_pairs, stats.n_units, rejected)
