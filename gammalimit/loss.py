"""The discrete, sampling-dependent loss ``L_delta`` (docs/theory.md, section 2).

    L_delta[phi] = E[ sum_t c_t l_t(x, y) ]      (default: l_D + lam * l_B)

with the pair terms ``l_t`` of a :class:`~gammalimit.penalties.Penalty`.
:func:`pair_terms` is the differentiable per-pair form (training);
:func:`discrete_loss` streams a Monte Carlo estimate with bounded memory
through :func:`gammalimit.estimate.stream_estimate`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from .estimate import stream_estimate
from .manifolds.base import DTYPE
from .penalties import Penalty, get_penalty
from .sampling import PairSample, get_strategy
from .validation import check_count, check_delta, check_lam, check_manifold, check_seed

# relative round-off of the bending term above which a warning is raised
ROUNDOFF_WARN = 1e-2


def roundoff_error(dtype: torch.dtype, delta: float) -> float:
    """Expected relative round-off of the bending term, ``eps / delta^2``
    (docs/theory.md, section 5)."""
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


def _input_features(phi) -> int | None:
    """The input size of ``phi``'s first linear layer, if it is a module that has one."""
    if isinstance(phi, torch.nn.Module):
        for module in phi.modules():
            if isinstance(getattr(module, "in_features", None), int):
                return module.in_features
    return None


def encoder_input_error(phi, n: int, where, err: Exception) -> ValueError:
    """``phi`` failing on points of ``where`` in ``R^n`` (torch's "mat1 and mat2 shapes
    cannot be multiplied", a dtype clash) as an error that names the dimensions."""
    takes = _input_features(phi)
    layer = f"; phi's first linear layer takes {takes} features" if takes not in (None, n) else ""
    if "dtype" in str(err) or "scalar type" in str(err):
        layer += ("; phi must accept float64 rows (a function holding float32 weights: cast them to float64, "
                  "or make phi a torch.nn.Module, whose inputs are cast to its own dtype)")
    return ValueError(f"phi cannot be applied to the points of {where!r}: float64 rows of ambient dimension "
                      f"n = {n}{layer} ({type(err).__name__}: {err})")


def probe_point(manifold) -> torch.Tensor:
    """One point ``shape=[1, n]`` of a manifold, point cloud or pair sample (no randomness used)."""
    if isinstance(manifold, PairSample):
        return manifold.x[:1]
    if hasattr(manifold, "points"):  # a point cloud
        return manifold.points[:1]
    if hasattr(manifold, "pairs"):  # a pool of point-cloud pairs
        return manifold.pairs.x[:1]
    return manifold.point_from_cube(torch.full((1, manifold.dim), 0.5, dtype=DTYPE))


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


class Terms(Mapping):
    """Values of a penalty's terms by name (``terms["bending"]`` or ``terms.bending``).

    For per-pair tensors (:func:`pair_terms`, :func:`gammalimit.limit_terms`)
    each value has ``shape=[k]``; ``total(lam)`` weights them by the penalty's
    coefficients (``lam`` for bending, 1 for distortion).
    """

    def __init__(self, penalty: Penalty, values: dict):
        self.penalty = penalty
        self._values = dict(values)

    def __getitem__(self, name):
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __getattr__(self, name):
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__} has no term {name!r}; terms: {list(values)}")

    def __repr__(self) -> str:
        return f"Terms({self.penalty.name!r}, {self._values!r})"

    def total(self, lam: float):
        """``sum_t c_t value_t`` (``c_t = lam`` for lam-weighted terms, else 1)."""
        return sum(lam * self._values[t.name] if t.lam_weighted else self._values[t.name]
                   for t in self.penalty.terms)


#: Per-pair terms (an alias kept for readers of earlier code).
PairTerms = Terms


def pair_terms(phi, pairs: PairSample, penalty="squared") -> Terms:
    """Per-pair penalty terms for a batch of pairs; differentiable in ``phi``'s
    parameters (the trainer's loss is ``pair_terms(...).total(lam).mean()``).

    ``phi`` is evaluated once on the stacked ``[x; y; av]``. Non-finite
    outputs are reported by pair, with the pair's ``x``.

    Parameters
    ----------
    phi : callable
        ``shape=[k, ambient_dim] -> shape=[k, l]``.
    pairs : PairSample
    penalty : str or Penalty
        One of :data:`gammalimit.penalties.PENALTIES` (default ``"squared"``).

    Returns
    -------
    Terms
        One tensor ``shape=[k]`` per term of the penalty.
    """
    pen = get_penalty(penalty)
    k = len(pairs)
    out = _call_encoder(phi, pairs.stacked())
    phi_x, phi_y, phi_mid = out[:k], out[k : 2 * k], out[2 * k :]
    terms = Terms(pen, pen.pair_values(phi_x - phi_y, phi_x + phi_y - 2 * phi_mid, pairs.dist, pairs.delta))
    # a non-finite output makes its pair's penalties non-finite: check k numbers, not 3 k l
    if not torch.isfinite(sum(terms.values())).all():
        bad = (~torch.isfinite(out.detach()).all(-1)).reshape(3, k).any(0)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(
                f"phi returned non-finite values for {int(bad.sum())} of {k} pairs; first pair index {i}, "
                f"x = {pairs.x[i].tolist()[:8]}, delta = {pairs.delta}"
            )
        raise ValueError(f"the pair penalties overflowed at delta = {pairs.delta}: |phi| is too large")
    return terms


def flat_term(result, name: str):
    """``result.<term>`` and ``result.stderr_<term>`` from its dicts ``terms``,
    ``stderr_terms`` and ``parts`` (the attribute access of the result types)."""
    d = result.__dict__
    for key, prefix in (("terms", ""), ("stderr_terms", "stderr_"), ("parts", "")):
        if key in d and name.startswith(prefix) and name[len(prefix):] in d[key]:
            return d[key][name[len(prefix):]]
    raise AttributeError(f"{type(result).__name__} has no attribute {name!r}; terms: {list(d.get('terms', {}))}")


def flatten_terms(data: dict) -> dict:
    """A result's ``asdict`` with its term dicts as top-level keys (``bending``, ``stderr_bending``)."""
    out = {k: v for k, v in data.items() if k not in ("terms", "stderr_terms", "parts")}
    out.update(data.get("terms", {}))
    out.update({f"stderr_{k}": v for k, v in data.get("stderr_terms", {}).items()})
    out.update(data.get("parts", {}))
    return out


class TermResult:
    """What every result with a ``terms`` dict shares: its terms (``stderr_terms``,
    ``parts``) read as attributes, and :meth:`to_dict` flattens them."""

    def __getattr__(self, name):
        return flat_term(self, name)

    def to_dict(self) -> dict:
        return flatten_terms(asdict(self))


@dataclass
class LossEstimate(TermResult):
    """A Monte Carlo estimate of ``L_delta`` and its terms.

    ``total = sum_t c_t terms[t]`` (default ``distortion + lam * bending``);
    ``stderr`` and ``stderr_terms`` are standard errors (from the sampling
    units: pairs, antithetic couples, or QMC replicate means).
    ``unit_variance`` is the variance of the total per sampling unit; ``n``
    counts pairs, ``n_units`` sampling units. Terms read as attributes too
    (``est.bending``, ``est.stderr_bending``); :meth:`to_dict` flattens them.
    """

    total: float
    stderr: float
    terms: dict
    stderr_terms: dict
    unit_variance: float
    n: int
    n_units: int
    delta: float
    lam: float
    penalty: str
    strategy: str
    antithetic: bool
    qmc: bool
    seed: int
    n_rejected: int


def discrete_loss(phi, manifold, *, lam: float, delta: float | None = None, n: int | None = None,
                  penalty="squared", strategy="shell", antithetic: bool = False, qmc: bool = False, seed: int = 0,
                  qmc_replicates: int = 8) -> LossEstimate:
    """Monte Carlo estimate of ``L_delta[phi]`` (docs/theory.md, section 2).

    Pairs are generated and evaluated in blocks (:func:`gammalimit.estimate.stream_estimate`),
    so memory stays bounded for any ``n``; the same arguments give the same
    result bit for bit.

    Parameters
    ----------
    phi : callable
        Encoder, float64 ``shape=[k, ambient_dim]`` -> ``shape=[k, l]``
        (a function or a ``torch.nn.Module``).
    manifold : Manifold, PointCloud or PairSample
        Where pairs come from: a manifold (exact distance and midpoint), a
        :class:`~gammalimit.PointCloud` (surrogates estimated from samples),
        or a :class:`~gammalimit.PairSample` of given pairs (e.g. video
        triplets, :meth:`PairSample.from_arrays`; ``delta`` and ``n`` are then
        taken from it). Anything else (``None``, a manifold's name) is a
        ``TypeError``.
    lam : float, >= 0
        Weight of the bending term (units of length^2).
    delta : float
        Scale, ``0 < delta < manifold.injectivity_radius``.
    n : int, >= 2
        Number of pairs.
    penalty : str or Penalty
        The pair terms (default ``"squared"``; ``"ratio"``: see :mod:`gammalimit.penalties`).
    strategy, antithetic, qmc, seed, qmc_replicates
        See :func:`gammalimit.sampling.sample_pairs`.

    Returns
    -------
    LossEstimate

    Raises
    ------
    TypeError, ValueError
        On bad arguments; an encoder that cannot take the manifold's points
        (torch fails on the first block: a wrong input size, a dtype clash) is
        a ``ValueError`` naming the ambient dimension ``n`` and phi's input size.

    Warns
    -----
    UserWarning
        If ``phi``'s output precision makes the bending term's relative
        round-off ``eps / delta^2`` exceed 1% (float32 below ``delta ~ 3.5e-3``).
    """
    lam = check_lam(lam)
    pen = get_penalty(penalty)
    strat = get_strategy(strategy)
    seed = check_seed(seed)
    if isinstance(manifold, PairSample):
        delta, n = manifold.delta, len(manifold)
    else:
        check_manifold(manifold, also="a gammalimit.PairSample of given pairs")
        if delta is None or n is None:
            raise TypeError(f"discrete_loss needs delta and n to draw pairs from {manifold!r}")
        delta, n = check_delta(manifold, delta), check_count(n, "n", minimum=2)
    warned = []

    def per_pair(pairs):
        try:
            terms = pair_terms(phi, pairs, pen)
        except RuntimeError as err:  # on the first block: phi does not take these points (a wrong input size)
            if warned:
                raise
            raise encoder_input_error(phi, pairs.x.shape[1], manifold, err) from err
        if not warned:
            _warn_roundoff(terms[pen.names[0]].dtype, pairs.delta)
            warned.append(True)
        return torch.stack(list(terms.values()), -1)

    with torch.no_grad():
        res = stream_estimate(per_pair, len(pen.terms), manifold, n=n, delta=delta, strategy=strat,
                              antithetic=antithetic, qmc=qmc, seed=seed, qmc_replicates=qmc_replicates)
    w = pen.coefficients(lam)
    parts = [res.component(i) for i in range(len(pen.terms))]
    return LossEstimate(
        total=res.value(w),
        stderr=res.stderr(w),
        terms={name: mean for name, (mean, _) in zip(pen.names, parts)},
        stderr_terms={name: se for name, (_, se) in zip(pen.names, parts)},
        unit_variance=res.unit_variance(w),
        n=res.n,
        n_units=res.n_units,
        delta=float(delta),
        lam=lam,
        penalty=pen.name,
        strategy=strat.name,
        antithetic=bool(antithetic),
        qmc=bool(qmc),
        seed=int(seed),
        n_rejected=res.n_rejected,
    )


def _warn_roundoff(dtype: torch.dtype, delta: float) -> None:
    err = roundoff_error(dtype, delta)
    if err > ROUNDOFF_WARN:
        warnings.warn(
            f"phi returns {dtype} values: at delta={delta:g} the bending term's relative round-off "
            f"error is about eps/delta^2 = {err:.2g} (docs/theory.md, section 5); evaluate phi in float64",
            stacklevel=3,
        )
