"""Argument checks shared by every public entry point.

Each check takes the value and the parameter's name, returns the value in
its canonical type, and raises ``TypeError`` (wrong kind of value) or
``ValueError`` (right kind, outside the allowed range) with a message that
names the parameter, the value given and what is allowed -- the way
scikit-learn validates its estimators' parameters up front.
"""

from __future__ import annotations

import math

import numpy as np


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
    (``> minimum`` if ``strict``, else ``>= minimum``)."""
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


def check_delta(manifold, delta, name: str = "delta") -> float:
    """The pair scale: finite, ``> 0`` and below the manifold's injectivity radius."""
    delta = check_positive(delta, name)
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
