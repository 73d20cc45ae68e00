"""The discrete, sampling-dependent loss ``L_delta`` (THEORY.md section 2).

    l_D(x, y) = ( |phi(x) - phi(y)|^2 - d(x, y)^2 )^2 / delta^4
    l_B(x, y) = | phi(x) + phi(y) - 2 phi(av(x, y)) |^2 / delta^4
    L_delta[phi] = E[ l_D + lam * l_B ]

:func:`pair_terms` is the differentiable per-pair form (training);
:func:`discrete_loss` streams a Monte Carlo estimate with bounded memory.
Both use the same two penalty functions.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch

from .manifolds.base import DTYPE
from .sampling import PairSample, get_strategy, iter_pairs

# relative round-off of the bending term above which a warning is raised
ROUNDOFF_WARN = 1e-2


def distortion_penalty(phi_x, phi_y, dist, delta):
    """``l_D = (|phi(x) - phi(y)|^2 - d(x, y)^2)^2 / delta^4``, ``shape=[k]``.

    ``phi_x, phi_y`` ``shape=[k, l]``, ``dist`` ``shape=[k]``.
    """
    chord2 = _squared_norm(phi_x - phi_y)
    return (chord2 - dist.to(chord2.dtype) ** 2) ** 2 / delta**4


def bending_penalty(phi_x, phi_y, phi_mid, delta):
    """``l_B = |phi(x) + phi(y) - 2 phi(av(x, y))|^2 / delta^4``, ``shape=[k]``."""
    return _squared_norm(phi_x + phi_y - 2 * phi_mid) / delta**4


def _squared_norm(d):
    """``|d|^2`` over the last axis (einsum: several times faster than ``(d**2).sum(-1)``
    for short rows; studies/bench_loss.py)."""
    return torch.einsum("...i,...i->...", d, d)


def roundoff_error(dtype: torch.dtype, delta: float) -> float:
    """Expected relative round-off of the bending term, ``eps / delta^2``
    (THEORY.md section 4)."""
    return torch.finfo(dtype).eps / delta**2


def _module_dtype_device(phi):
    if isinstance(phi, torch.nn.Module):
        for p in phi.parameters():
            return p.dtype, p.device
    return DTYPE, torch.device("cpu")


def evaluate_encoder(phi, points: torch.Tensor) -> torch.Tensor:
    """Apply ``phi`` to ambient points and validate what comes back.

    A ``torch.nn.Module`` whose parameters are float32 (or on another device)
    receives its inputs cast to its own dtype and device; every other callable
    receives float64 CPU tensors.

    Parameters
    ----------
    phi : callable
        ``shape=[k, ambient_dim] -> shape=[k, l]``.
    points : tensor, shape=[k, ambient_dim]

    Returns
    -------
    tensor, shape=[k, l]
        On the CPU, in ``phi``'s output dtype.

    Raises
    ------
    TypeError
        If ``phi`` is not callable or does not return a floating tensor.
    ValueError
        On a wrong output shape or non-finite outputs (with their count and
        the first offending input).
    """
    out = _call_encoder(phi, points)
    bad = ~torch.isfinite(out).all(dim=-1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"phi returned non-finite values at {int(bad.sum())} of {points.shape[0]} points; "
            f"first at input index {i}, x = {points[i].tolist()[:8]}"
        )
    return out


def _call_encoder(phi, points):
    """``phi(points)`` with the type and shape checks of :func:`evaluate_encoder`."""
    if not callable(phi):
        raise TypeError(f"phi must be callable, got {type(phi).__name__}")
    dtype, device = _module_dtype_device(phi)
    out = phi(points.to(dtype=dtype, device=device))
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise TypeError(f"phi must return a floating torch tensor, got {type(out).__name__}")
    if out.ndim != 2 or out.shape[0] != points.shape[0]:
        raise ValueError(
            f"phi must map shape ({points.shape[0]}, {points.shape[1]}) to ({points.shape[0]}, l), "
            f"got {tuple(out.shape)}"
        )
    return out.to(device="cpu")


@dataclass
class PairTerms:
    """Per-pair penalties, each ``shape=[k]``."""

    distortion: torch.Tensor
    bending: torch.Tensor

    def total(self, lam: float) -> torch.Tensor:
        return self.distortion + lam * self.bending


def pair_terms(phi, pairs: PairSample) -> PairTerms:
    """Per-pair ``l_D`` and ``l_B`` for a batch of pairs; differentiable in
    ``phi``'s parameters (the trainer's loss is ``pair_terms(...).total(lam).mean()``).

    ``phi`` is evaluated once on the stacked ``[x; y; av]``. Non-finite
    outputs are reported by pair, with the pair's ``x``.
    """
    k = len(pairs)
    out = _call_encoder(phi, torch.cat([pairs.x, pairs.y, pairs.midpoint]))
    phi_x, phi_y, phi_mid = out[:k], out[k : 2 * k], out[2 * k :]
    terms = PairTerms(
        distortion_penalty(phi_x, phi_y, pairs.dist, pairs.delta),
        bending_penalty(phi_x, phi_y, phi_mid, pairs.delta),
    )
    # a non-finite output makes its pair's penalties non-finite: check k numbers, not 3 k l
    if not torch.isfinite(terms.distortion + terms.bending).all():
        bad = (~torch.isfinite(out.detach()).all(-1)).reshape(3, k).any(0)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(
                f"phi returned non-finite values for {int(bad.sum())} of {k} pairs; first pair index {i}, "
                f"x = {pairs.x[i].tolist()[:8]}, delta = {pairs.delta}"
            )
        raise ValueError(f"the pair penalties overflowed at delta = {pairs.delta}: |phi| is too large")
    return terms


class _Moments:
    """Running mean and co-moment of vector samples (Chan et al.'s update)."""

    def __init__(self, d: int):
        self.n = 0
        self.mean = torch.zeros(d, dtype=DTYPE)
        self.m2 = torch.zeros(d, d, dtype=DTYPE)

    def update(self, batch: torch.Tensor) -> None:
        k = batch.shape[0]
        if k == 0:
            return
        mean_b = batch.mean(0)
        dev = batch - mean_b
        m2_b = dev.T @ dev
        delta = mean_b - self.mean
        n = self.n + k
        self.mean = self.mean + delta * (k / n)
        self.m2 = self.m2 + m2_b + torch.outer(delta, delta) * (self.n * k / n)
        self.n = n

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

    def add(self, values: torch.Tensor, replicate: int) -> None:
        """``values`` ``shape=[k, d]``: one row per pair of a block."""
        values = values.to(DTYPE)
        if self.antithetic:
            h = values.shape[0] // 2
            values = 0.5 * (values[:h] + values[h:])
        self.per_rep.setdefault(int(replicate), _Moments(self.d)).update(values)

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
class LossEstimate:
    """A Monte Carlo estimate of ``L_delta`` and its parts.

    ``total = distortion + lam * bending``; ``stderr*`` are standard errors of
    the estimates (from the sampling units: pairs, antithetic couples, or QMC
    replicate means). ``unit_variance`` is the variance of ``l_D + lam l_B``
    per sampling unit; ``n`` counts pairs, ``n_units`` sampling units.
    """

    total: float
    distortion: float
    bending: float
    stderr: float
    stderr_distortion: float
    stderr_bending: float
    unit_variance: float
    n: int
    n_units: int
    delta: float
    lam: float
    strategy: str
    antithetic: bool
    qmc: bool
    seed: int
    n_rejected: int

    def to_dict(self) -> dict:
        return asdict(self)


def check_lam(lam) -> float:
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise TypeError(f"lam must be a real number, got {lam!r}") from None
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be finite and >= 0, got {lam!r}")
    return lam


def discrete_loss(phi, manifold, *, delta: float, lam: float, n: int, strategy="shell",
                  antithetic: bool = False, qmc: bool = False, seed: int = 0,
                  qmc_replicates: int = 8) -> LossEstimate:
    """Monte Carlo estimate of ``L_delta[phi] = E[l_D + lam l_B]`` (THEORY.md section 2).

    Pairs are generated and evaluated in blocks (:func:`gammalimit.sampling.iter_pairs`),
    so memory stays bounded for any ``n``; the same arguments give the same
    result bit for bit.

    Parameters
    ----------
    phi : callable
        Encoder, float64 ``shape=[k, ambient_dim]`` -> ``shape=[k, l]``
        (a function or a ``torch.nn.Module``).
    manifold : Manifold
    delta : float
        Scale, ``0 < delta < manifold.injectivity_radius``.
    lam : float, >= 0
        Weight of the bending term (units of length^2).
    n : int, >= 2
        Number of pairs.
    strategy, antithetic, qmc, seed, qmc_replicates
        See :func:`gammalimit.sampling.sample_pairs`.

    Returns
    -------
    LossEstimate

    Warns
    -----
    UserWarning
        If ``phi``'s output precision makes the bending term's relative
        round-off ``eps / delta^2`` exceed 1% (float32 below ``delta ~ 3.5e-3``).
    """
    lam = check_lam(lam)
    strat = get_strategy(strategy)
    with torch.no_grad():
        stats = UnitStatistics(2, antithetic=antithetic, qmc=qmc)
        n_pairs, rejected, warned = 0, 0, False
        for pairs in iter_pairs(manifold, n, delta, strategy=strat, antithetic=antithetic, qmc=qmc,
                                seed=seed, qmc_replicates=qmc_replicates):
            terms = pair_terms(phi, pairs)
            if not warned:
                _warn_roundoff(terms.distortion.dtype, pairs.delta)
                warned = True
            stats.add(torch.stack([terms.distortion, terms.bending], -1), pairs.replicate[0])
            n_pairs += len(pairs)
            rejected += pairs.n_rejected
    w = torch.tensor([1.0, lam], dtype=DTYPE)
    mean, cov_of_mean, unit_cov = stats.result()
    unit_var = float(w @ unit_cov @ w)
    units = stats.n_units
    return LossEstimate(
        total=float(w @ mean),
        distortion=float(mean[0]),
        bending=float(mean[1]),
        stderr=math.sqrt(max(0.0, float(w @ cov_of_mean @ w))),
        stderr_distortion=math.sqrt(max(0.0, float(cov_of_mean[0, 0]))),
        stderr_bending=math.sqrt(max(0.0, float(cov_of_mean[1, 1]))),
        unit_variance=unit_var,
        n=n_pairs,
        n_units=units,
        delta=float(delta),
        lam=lam,
        strategy=strat.name,
        antithetic=bool(antithetic),
        qmc=bool(qmc),
        seed=int(seed),
        n_rejected=rejected,
    )


def _warn_roundoff(dtype: torch.dtype, delta: float) -> None:
    err = roundoff_error(dtype, delta)
    if err > ROUNDOFF_WARN:
        warnings.warn(
            f"phi returns {dtype} values: at delta={delta:g} the bending term's relative round-off "
            f"error is about eps/delta^2 = {err:.2g} (THEORY.md section 4); evaluate phi in float64",
            stacklevel=3,
        )
