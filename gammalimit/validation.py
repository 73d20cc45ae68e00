"""Argument checks shared by every public entry point.

Each check takes the value and the parameter's name, returns the value in
its canonical type, and raises ``TypeError`` (wrong kind of value) or
``ValueError`` (right kind, outside the allowed range) with a message that
names the parameter, the value given and what is allowed -- the way
scikit-learn validates its estimators' parameters up front.
"""

from __future__ import annotations

import math
import sys

import numpy as np

#: The smallest pair scale: below it ``delta**4`` (the bending term's
#: denominator) underflows to a subnormal float64 and the penalties overflow.
DELTA_MIN = math.sqrt(math.sqrt(sys.float_info.min))


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (``bool`` is not one) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        lo = f">= {minimum}" if minimum is not None else ""
        hi = f"<= {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be an integer {' and '.join(s for s in (lo, hi) if s)}, got {value!r}")
    return value


def check_count(value, name: str = "n", minimum: int = 1) -> int:
    """A whole number of things, at least ``minimum`` (``ValueError`` for any bad value)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_seed(value, name: str = "seed") -> int:
    """A seed: an integer ``>= 0``."""
    return check_int(value, name, minimum=0)


def check_real(value, name: str, *, minimum: float | None = None, strict: bool = True,
               allow_inf: bool = False) -> float:
    """A real number, finite unless ``allow_inf``, above ``minimum``
    (``> minimum`` if ``strict``, else ``>= minimum``). Strings and ``bool``
    are not numbers here (``float("2")`` would accept a string silently)."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    allowed = "" if allow_inf else "finite"
    if minimum is not None:
        allowed += (" and " if allowed else "") + f"{'>' if strict else '>='} {minimum:g}"
    bad = math.isnan(value) or (math.isinf(value) and not allow_inf)
    if minimum is not None:
        bad = bad or (value <= minimum if strict else value < minimum)
    if bad:
        raise ValueError(f"{name} must be {allowed or 'a number'}, got {value!r}")
    return value


def check_positive(value, name: str) -> float:
    """A finite real number ``> 0``."""
    return check_real(value, name, minimum=0.0)


def check_lam(lam, name: str = "lam") -> float:
    """The bending weight: finite and ``>= 0``."""
    return check_real(lam, name, minimum=0.0, strict=False)


def check_choice(value, name: str, allowed) -> str:
    """One of the names ``allowed``."""
    allowed = sorted(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_reals(value, name: str, length: int, *, minimum: float | None = None, strict: bool = True,
                what: str = "") -> tuple[float, ...]:
    """A sequence of exactly ``length`` real numbers, each checked by :func:`check_real`
    (``what`` shows the sequence in the message, e.g. ``"(R1, R2)"``)."""
    bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
    allowed = f"{name} must be a sequence of {length} real numbers{bound}" + (f" {what}" if what else "")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{allowed}, got {value!r}")
    if len(value) != length:
        raise ValueError(f"{allowed}, got {len(value)} values: {value!r}")
    return tuple(check_real(v, f"{name}[{i}]", minimum=minimum, strict=strict) for i, v in enumerate(value))


def check_delta(manifold, delta, name: str = "delta") -> float:
    """The pair scale: finite, at least :data:`DELTA_MIN` (``delta**4`` must not
    underflow) and below the manifold's injectivity radius."""
    delta = check_positive(delta, name)
    if delta < DELTA_MIN:
        raise ValueError(f"{name}={delta!r} is too small: delta**4 underflows in float64, so the pair "
                         f"penalties cannot be formed; {name} must be >= {DELTA_MIN:.3g}")
    if delta >= manifold.injectivity_radius:
        raise ValueError(
            f"{name}={delta} must be below the injectivity radius {manifold.injectivity_radius:.6g} of {manifold!r}"
        )
    return delta


def check_widths(value, name: str) -> tuple[int, ...]:
    """A tuple of layer widths, each an integer ``>= 1``."""
    try:
        widths = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of integers >= 1, got {value!r}") from None
    if not all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1 for w in widths):
        raise ValueError(f"{name} must be a tuple of integers >= 1, got {value!r}")
    return tuple(int(w) for w in widths)


def check_manifold(value, name: str = "manifold", *, also: str = "") -> object:
    """Something pairs can be drawn from: a manifold (``dim``, ``injectivity_radius``,
    ``point_from_cube``, ``tangent_frame``, ``exp``) or a point cloud (``pairs_from_cube``).

    Checked by what it provides (this module sits below :mod:`gammalimit.manifolds`);
    ``also`` names further kinds the caller accepts, for the message.
    """
    manifold_api = ("dim", "injectivity_radius", "point_from_cube", "tangent_frame", "exp")
    cloud_api = ("injectivity_radius", "pairs_from_cube", "cube_dim", "ambient_dim")
    if all(hasattr(value, a) for a in manifold_api) or all(hasattr(value, a) for a in cloud_api):
        return value
    accepted = "a Manifold (e.g. gammalimit.Sphere()) or a gammalimit.PointCloud" + (f" or {also}" if also else "")
    hint = (f"; to build a registered manifold by name use gammalimit.manifolds.make_manifold({value!r})"
            if isinstance(value, str) else "")
    raise TypeError(f"{name} must be {accepted}, got {type(value).__name__} {value!r}"[:400] + hint)
