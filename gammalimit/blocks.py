"""The fixed-seed stream of uniform points of ``[0, 1)^d`` that pair sampling consumes
(:mod:`gammalimit.sampling` maps each point to a pair).

Randomness comes in fixed blocks: block ``b`` of a run with seed ``s`` is
drawn from its own generator seeded by ``(s, b)`` (:func:`block_generator`),
so results do not depend on how the consumer chunks its work, and the same
seed gives the same points bit for bit. Quasi-Monte Carlo streams are
scrambled Sobol sequences, one per replicate, each drawn block after block.
A *source* is a part of the stream that can be drawn without drawing the
rest (:func:`block_plan`): each block of plain Monte Carlo without
rejection, each replicate of QMC.

A stream that is drawn again and again with new seeds (a trainer's batch
every step) can keep its scrambled Sobol sequences: with a
``scramble_seed``, replicate ``i`` is the sequence scrambled once by
``(scramble_seed, i)`` (computed once per process, :func:`scrambled_sobol`)
and each draw re-randomises it by a uniform random digital shift drawn from
``(seed, i)``. A digitally shifted net is a net (the balance is kept) and
each point is uniform, so every draw is an unbiased randomised QMC estimate,
as with a fresh scrambling, without building two scipy engines (0.5 ms
each) per draw.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Iterator

import numpy as np
import torch
from scipy.stats import qmc as scipy_qmc

from .manifolds.base import DTYPE


def block_size(manifold) -> int:
    """Pairs per randomness block: a power of two, at most 2^16 pairs and about
    4M ambient floats (per-block overhead dominates below 2^16 pairs on the
    sphere; studies/bench_loss.py)."""
    target = max(256, min(1 << 16, (1 << 22) // max(1, manifold.ambient_dim)))
    return 1 << int(math.log2(target))


def block_generator(seed: int, block: int) -> torch.Generator:
    """The generator of block ``block`` of the plain Monte Carlo stream with seed ``seed``."""
    state = np.random.SeedSequence([int(seed), int(block)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


_SOBOL_BITS = 30  # scipy's default: its points are integers times 2^-30


def _sobol_points(engine, k: int) -> np.ndarray:
    """The next ``k`` points of a scipy Sobol engine; its warning about a ``k`` that is not a power of
    two is silenced, since the balance is checked once, on the total ``n``, by the caller."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(k)


class _SobolPrefix:
    """The points drawn so far of one scrambled Sobol sequence, as integers (times ``2^-30``)."""

    def __init__(self, dim: int, scramble_seed: int, replicate: int):
        rng = np.random.default_rng(np.random.SeedSequence([int(scramble_seed), 7919, int(replicate)]))
        self._engine = scipy_qmc.Sobol(d=dim, scramble=True, seed=rng, bits=_SOBOL_BITS)
        self._points = np.empty((0, dim), dtype=np.int64)

    def take(self, start: int, k: int) -> np.ndarray:
        """Points ``start`` to ``start + k - 1`` of the sequence, ``shape=[k, dim]``."""
        have = self._points.shape[0]
        if start + k > have:
            more = _sobol_points(self._engine, max(start + k - have, have))
            self._points = np.concatenate([self._points, np.rint(more * 2.0**_SOBOL_BITS).astype(np.int64)])
        return self._points[start : start + k]


@functools.lru_cache(maxsize=64)
def scrambled_sobol(dim: int, scramble_seed: int, replicate: int) -> _SobolPrefix:
    """Replicate ``replicate`` of the Sobol sequences scrambled by ``scramble_seed``, kept for the
    process (a trainer draws from it every step)."""
    return _SobolPrefix(dim, scramble_seed, replicate)


class CubeSource:
    """Uniform points of ``[0,1)^d``: plain pseudo-random blocks, or a
    scrambled Sobol sequence (one per QMC replicate): scrambled by ``seed``,
    or, with ``scramble_seed``, the sequence scrambled by ``scramble_seed``
    digitally shifted by ``seed``."""

    def __init__(self, dim: int, seed: int, qmc: bool, replicate: int = 0, scramble_seed: int | None = None):
        self.dim, self.seed, self.qmc = dim, seed, qmc
        self.block = 0
        if qmc:
            ss = np.random.SeedSequence([int(seed), 7919, int(replicate)])
            rng = np.random.default_rng(ss)
            if scramble_seed is None:
                self._sobol = scipy_qmc.Sobol(d=dim, scramble=True, seed=rng)
            else:
                self._prefix, self._drawn = scrambled_sobol(dim, int(scramble_seed), int(replicate)), 0
                self._shift = rng.integers(0, 2**_SOBOL_BITS, size=dim, dtype=np.int64)
                self._sobol = None
            self._dither = rng

    def draw(self, k: int) -> torch.Tensor:
        if self.qmc:
            if self._sobol is None:
                u = (self._prefix.take(self._drawn, k) ^ self._shift) * 2.0**-_SOBOL_BITS
                self._drawn += k
            else:
                u = _sobol_points(self._sobol, k)
            # scipy's points lie on a 2^-30 grid, which biases integrals by ~1e-9
            # relative; a uniform shift inside each cell removes the bias (its
            # 64-bit mode converges erratically instead)
            return torch.from_numpy(u + self._dither.random(u.shape) * 2.0**-_SOBOL_BITS)
        g = block_generator(self.seed, self.block)
        self.block += 1
        return torch.rand(k, self.dim, generator=g, dtype=DTYPE)


def check_qmc_n(n: int, qmc_replicates: int, antithetic: bool) -> int:
    """Sobol points per replicate for ``n`` QMC pairs; ``ValueError`` unless
    ``n = qmc_replicates * 2^k`` (times 2 with ``antithetic``).

    Every replicate gets the same number of points (their means are the
    sampling units) and that number is a power of two (a scrambled Sobol
    set is balanced only then), so other ``n`` are refused rather than
    silently rounded: the message names the nearest valid ``n``.
    """
    per_rep = qmc_replicates * (2 if antithetic else 1)
    units = n // per_rep
    if units * per_rep != n or units & (units - 1):
        valid = [per_rep << k for k in range(n.bit_length() + 1)]
        options = " or ".join(f"n={v}" for v in (max((v for v in valid if v < n), default=None),
                                                 min(v for v in valid if v > n)) if v is not None)
        raise ValueError(
            f"qmc=True needs n = {per_rep} * 2^k pairs ({qmc_replicates} replicates of 2^k scrambled Sobol points"
            f"{', each used twice (v and -v)' if antithetic else ''}: equal replicates, each a power of two), "
            f"got n={n}; use {options}")
    return units


def block_plan(n: int, dim: int, block: int, *, antithetic: bool, qmc: bool, seed: int, qmc_replicates: int,
               owns=None, independent: bool = True, scramble_seed: int | None = None) -> Iterator[tuple[int, CubeSource, int, int]]:
    """The blocks of a stream of ``n`` pairs whose units are points of ``[0, 1)^dim``:
    ``(index, source, units, replicate)`` for each block of the sources ``owns`` picks,
    the source positioned to draw that block.

    A unit is one pair, or with ``antithetic`` a couple (``v`` and ``-v``);
    a block holds at most ``block`` units. With ``qmc`` the sources are the
    replicates (``n`` checked by :func:`check_qmc_n`); otherwise, with
    ``independent`` (no pair is ever redrawn), each block is a source with
    its own generator, and without it the whole stream is source 0, whose
    redraws take the next generators. ``owns(source) -> bool`` (default:
    all) picks the sources; the blocks of the others are skipped without
    drawing them. ``scramble_seed``: see :class:`CubeSource` (QMC only).
    """
    owns = owns or (lambda source: True)
    per_unit = 2 if antithetic else 1
    if qmc:
        units = check_qmc_n(n, qmc_replicates, antithetic)
        per_rep = -(-units // block)
        for rep in range(qmc_replicates):
            if not owns(rep):
                continue
            src = CubeSource(dim, seed, True, rep, scramble_seed)
            for j, start in enumerate(range(0, units, block)):
                yield rep * per_rep + j, src, min(block, units - start), rep
    else:
        units = -(-n // per_unit)
        src = CubeSource(dim, seed, False)
        for j, start in enumerate(range(0, units, block)):
            if not owns(j if independent else 0):
                continue
            if independent:
                src.block = j  # no redraws: block j is drawn with generator j
            yield j, src, min(block, units - start), 0
