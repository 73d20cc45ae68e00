"""Pair penalties: each term's pair form, its per-pair limit and its direction average.

A :class:`Penalty` is a named tuple of terms; the loss of a pair is
``sum_t c_t l_t(x, y)`` with ``c_t = lam`` for terms marked ``lam_weighted``
(bending) and ``1`` otherwise. A term knows three things (docs/theory.md,
sections 2, 3 and 4):

- ``pair``: the penalty of a pair at scale ``delta``, from the code
  differences ``first = phi(x) - phi(y)`` and ``second = phi(x) + phi(y) -
  2 phi(av)`` and the distance ``d(x, y)`` (every term is a function of
  these: the loss does not see where the codes sit);
- ``direction_limit`` and ``radial_power``: its ``delta -> 0`` limit per pair
  is ``r^p f(v)``, where ``f`` depends on the encoder's first and second
  derivatives along ``v`` (a :class:`DirectionalJet`) and ``p`` is
  ``radial_power``; the continuum functional weights the term by the
  strategy's moment ``E[r^p]``;
- ``direction_average``: ``E_v f(v)`` over unit directions in closed form
  from the pointwise geometry, or ``None``, in which case
  :func:`average_over_directions` integrates ``f`` by a direction rule.

Shipped: ``squared`` (the default: ``l_D`` and ``l_B`` of docs/theory.md, section 2) and
``ratio`` (``l_D = (|phi(x)-phi(y)|/d - 1)^2``, whose limit does not depend on
``r``). :func:`register_penalty` adds one; see the README for the steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .sampling import direction_rule

#: Coefficient of ``|H(v,v)|^2`` in the limit of the bending penalty,
#: ``l_B -> r^4 |H(v,v)|^2 / 16`` (derived in :func:`gammalimit.symbolic.pair_penalty_series`).
BENDING_FACTOR = 1.0 / 16.0

#: Directions of :func:`average_over_directions` (per point; ``m = 2``: equispaced angles).
N_DIRECTIONS = 64


def squared_norm(d: torch.Tensor) -> torch.Tensor:
    """``|d|^2`` over the last axis (einsum: several times faster than ``(d**2).sum(-1)``
    for short rows; studies/bench_loss.py)."""
    return torch.einsum("...i,...i->...", d, d)


def direction_average(A: torch.Tensor) -> torch.Tensor:
    """``E_v (v.Av)^2 = (2|A|^2 + (tr A)^2) / (m(m+2))`` over unit ``v``.

    For a vector-valued form (``H``, with value axes between the batch axis
    and the two frame axes) the same formula gives
    ``E_v |H(v,v)|^2 = (2|H|^2 + |tr H|^2) / (m(m+2))``, with
    ``|H|^2 = sum_ij |H_ij|^2``. Both follow from the isotropic fourth moment
    ``E[v_i v_j v_k v_l] = (d_ij d_kl + d_ik d_jl + d_il d_jk) / (m(m+2))``
    (derived in :func:`gammalimit.symbolic.isotropic_fourth_moment`).

    Parameters
    ----------
    A : tensor, shape=[k, ..., m, m]
        Symmetric in the last two axes, in a ``g``-orthonormal frame.

    Returns
    -------
    tensor, shape=[k]
    """
    m = A.shape[-1]
    norm2 = (A**2).flatten(1).sum(-1)
    trace2 = (torch.diagonal(A, dim1=-2, dim2=-1).sum(-1) ** 2).reshape(A.shape[0], -1).sum(-1)
    return (2 * norm2 + trace2) / (m * (m + 2))


@dataclass
class DirectionalJet:
    """The encoder's derivatives along unit tangent vectors ``v``.

    Attributes
    ----------
    vBv : tensor, shape=[k]
        ``v.Bv = |Dphi v|^2 - 1``, the metric distortion along ``v``.
    velocity : tensor, shape=[k, l]
        ``Dphi v``.
    Hvv : tensor, shape=[k, l]
        ``H(v, v)``, the covariant Hessian along ``v``.
    """

    vBv: torch.Tensor
    velocity: torch.Tensor
    Hvv: torch.Tensor

    @classmethod
    def from_frame(cls, distortion, jacobian, hessian, c: torch.Tensor) -> "DirectionalJet":
        """Along frame components ``c`` ``shape=[k, m]``, from ``B`` ``shape=[k, m, m]``,
        ``Dphi`` ``shape=[k, l, m]`` and ``H`` ``shape=[k, l, m, m]`` in a ``g``-orthonormal frame."""
        return cls(torch.einsum("ka,kab,kb->k", c, distortion, c), torch.einsum("kla,ka->kl", jacobian, c),
                   torch.einsum("ka,klab,kb->kl", c, hessian, c))


# --------------------------------------------------------------------------
# the terms


@dataclass(frozen=True)
class SquaredDistortion:
    """``l_D = (|phi(x)-phi(y)|^2 - d(x,y)^2)^2 / delta^4``; limit ``r^4 (v.Bv)^2``."""

    name: str = "distortion"
    radial_power: int = 4
    lam_weighted: bool = False

    def pair(self, first, second, dist, delta):
        """``shape=[k]`` from differences ``shape=[k, l]`` and ``dist`` ``shape=[k]``."""
        chord2 = squared_norm(first)
        return (chord2 - dist.to(chord2.dtype) ** 2) ** 2 / delta**4

    def direction_limit(self, jet: DirectionalJet) -> torch.Tensor:
        return jet.vBv**2

    def direction_average(self, geometry) -> torch.Tensor:
        return direction_average(geometry.distortion)


@dataclass(frozen=True)
class RatioDistortion:
    """``l_D = (|phi(x)-phi(y)|/d(x,y) - 1)^2``, no power of ``delta``;
    limit ``(|Dphi v| - 1)^2`` for every ``r`` (radial weight 1)."""

    name: str = "distortion"
    radial_power: int = 0
    lam_weighted: bool = False

    def pair(self, first, second, dist, delta):
        chord = torch.sqrt(squared_norm(first))
        return (chord / dist.to(chord.dtype) - 1) ** 2

    def direction_limit(self, jet: DirectionalJet) -> torch.Tensor:
        return (torch.linalg.vector_norm(jet.velocity, dim=-1) - 1) ** 2

    def direction_average(self, geometry) -> None:
        return None  # not a quadratic form in v (x) v: a direction rule integrates it


@dataclass(frozen=True)
class Bending:
    """``l_B = |phi(x) + phi(y) - 2 phi(av)|^2 / delta^4``; limit ``r^4 |H(v,v)|^2 / 16``.

    Its average splits into the parts of ``H`` tangent and normal to ``phi(M)``
    (:meth:`parts`)."""

    name: str = "bending"
    radial_power: int = 4
    lam_weighted: bool = True
    part_names: tuple = ("bending_tangential", "bending_normal")

    def pair(self, first, second, dist, delta):
        return squared_norm(second) / delta**4

    def direction_limit(self, jet: DirectionalJet) -> torch.Tensor:
        return BENDING_FACTOR * squared_norm(jet.Hvv)

    def direction_average(self, geometry) -> torch.Tensor:
        return BENDING_FACTOR * direction_average(geometry.hessian)

    def parts(self, geometry) -> dict[str, torch.Tensor]:
        """Direction averages of the tangential and normal parts (they add up to the whole)."""
        return {"bending_tangential": BENDING_FACTOR * direction_average(geometry.hessian_tangential),
                "bending_normal": BENDING_FACTOR * direction_average(geometry.hessian_normal)}


# --------------------------------------------------------------------------
# penalties


@dataclass(frozen=True)
class Penalty:
    """A named set of pair terms; the loss is ``sum_t c_t l_t`` with ``c_t = lam``
    for ``lam_weighted`` terms and 1 otherwise.

    Attributes
    ----------
    name : str
    terms : tuple
        Term objects (see the module docstring); their names are distinct.
    """

    name: str
    terms: tuple

    def __post_init__(self):
        object.__setattr__(self, "terms", tuple(self.terms))
        missing = {repr(t): [a for a in _TERM_ATTRIBUTES if not hasattr(t, a)] for t in self.terms}
        missing = {k: v for k, v in missing.items() if v}
        if missing:
            raise TypeError(f"penalty {self.name!r}: terms lack {missing}; a term needs {list(_TERM_ATTRIBUTES)}")
        names = [t.name for t in self.terms]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"penalty {self.name!r} needs terms with distinct names, got {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms)

    def coefficients(self, lam: float) -> torch.Tensor:
        """``c_t`` per term, ``shape=[len(terms)]``, float64."""
        return torch.tensor([lam if t.lam_weighted else 1.0 for t in self.terms], dtype=torch.float64)

    def radial_weights(self, strategy, m: int) -> dict[str, float]:
        """``E[r^p]`` of each term under the strategy's radial law."""
        return {t.name: float(strategy.moment(t.radial_power, m)) for t in self.terms}

    def pair_values(self, first, second, dist, delta) -> dict[str, torch.Tensor]:
        """Each term's pair penalty, ``shape=[k]``, from ``first = phi(x) - phi(y)``
        and ``second = phi(x) + phi(y) - 2 phi(av)`` ``shape=[k, l]``."""
        return {t.name: t.pair(first, second, dist, delta) for t in self.terms}

    def limit_values(self, jet: DirectionalJet, r: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term's per-pair limit ``r^p f(v)``, ``shape=[k]``."""
        return {t.name: r**t.radial_power * t.direction_limit(jet) for t in self.terms}

    def owner(self, name: str):
        """The term that a term or part name belongs to (its radial weight and coefficient apply)."""
        for t in self.terms:
            if name == t.name or name in getattr(t, "part_names", ()):
                return t
        raise KeyError(f"penalty {self.name!r} has no term or part {name!r}")

    def densities(self, geometry) -> dict[str, torch.Tensor]:
        """Each term's direction average ``E_v f(v)`` at the points of ``geometry``
        (without the radial weight), ``shape=[k]``, then the terms' ``parts``."""
        out = {t.name: average_over_directions(t, geometry) for t in self.terms}
        for t in self.terms:
            if getattr(t, "part_names", ()):
                out.update(t.parts(geometry))
        return out


_TERM_ATTRIBUTES = ("name", "radial_power", "lam_weighted", "pair", "direction_limit", "direction_average")


def average_over_directions(term, geometry, n_directions: int = N_DIRECTIONS) -> torch.Tensor:
    """``E_v f(v)`` of a term at each point of ``geometry``, ``shape=[k]``: the
    term's closed form, else a direction rule (:func:`gammalimit.sampling.direction_rule`)."""
    closed = term.direction_average(geometry)
    if closed is not None:
        return closed
    k, m = geometry.distortion.shape[:2]
    c, w = direction_rule(m, n_directions)
    nc = c.shape[0]
    # point-major, direction-minor
    jet = DirectionalJet.from_frame(*(t.repeat_interleave(nc, 0) for t in
                                      (geometry.distortion, geometry.jacobian, geometry.hessian)), c.repeat(k, 1))
    return (term.direction_limit(jet).reshape(k, nc) * w).sum(-1)


PENALTIES: dict[str, Penalty] = {
    "squared": Penalty("squared", (SquaredDistortion(), Bending())),
    "ratio": Penalty("ratio", (RatioDistortion(), Bending())),
}


def register_penalty(penalty: Penalty) -> Penalty:
    """Make ``penalty`` known by its name to every entry point (losses, trainer, CLI)."""
    if not isinstance(penalty, Penalty):
        raise TypeError(f"penalty must be a Penalty, got {type(penalty).__name__}")
    PENALTIES[penalty.name] = penalty
    return penalty


def get_penalty(penalty="squared") -> Penalty:
    """A penalty by name (one of :data:`PENALTIES`), or a :class:`Penalty` passed through."""
    if isinstance(penalty, Penalty):
        return penalty
    if isinstance(penalty, str) and penalty in PENALTIES:
        return PENALTIES[penalty]
    raise ValueError(f"penalty must be one of {sorted(PENALTIES)} or a Penalty, got {penalty!r}")
