"""Manifolds by name: the one registry that the CLI, the trainer, the estimator and the tests read.

An entry is a factory whose keyword parameters (with their defaults) are the
manifold's parameters: ``make_manifold("sphere", radius=2.0)``. A parameter
that a manifold does not take is an error that names it. Adding a manifold
is one call::

    register_manifold("my-surface", lambda height=1.0: MySurface(height))

``default_delta(M)`` is the pair scale used where none is given: a fixed
fraction of the manifold's injectivity radius, so that it follows the size of
``M`` (on a closed curve of length ``l``, ``0.05 * l/2``, i.e. 0.157 rad of its
optimal circle; on the unit sphere 0.157).
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

from .circle import Circle
from .closed_curve import ClosedCurve
from .ellipse import RotatingEllipse
from .images import PeriodicBlob, TranslatingBlob
from .sphere import Sphere
from .swiss_roll import SwissRoll
from .torus import FlatTorus

#: ``default_delta = DEFAULT_DELTA_FRACTION * injectivity_radius``.
DEFAULT_DELTA_FRACTION = 0.05

#: name -> factory; the factory's keyword parameters are the manifold's parameters.
MANIFOLDS: dict[str, Callable] = {}


def register_manifold(name: str, factory: Callable) -> Callable:
    """Register ``factory`` (keyword parameters with defaults -> manifold) under ``name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a manifold name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for {name!r} must be callable, got {type(factory).__name__}")
    MANIFOLDS[name] = factory
    return factory


def manifold_parameters(name: str) -> dict:
    """The parameters of manifold ``name`` and their defaults."""
    factory = MANIFOLDS[_check_name(name)]
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()}


def make_manifold(name: str, **params):
    """The manifold registered as ``name``, built with ``params``.

    Raises
    ------
    ValueError
        On an unknown name (listing the registered ones) or a parameter the
        manifold does not take (listing the ones it takes).
    """
    allowed = manifold_parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = f"its parameters: {sorted(allowed)}" if allowed else "it takes no parameters"
        raise ValueError(f"manifold {name!r} does not take {unknown}; {takes}")
    return MANIFOLDS[name](**params)


def default_delta(manifold) -> float:
    """Pair scale that follows the manifold's size: ``DEFAULT_DELTA_FRACTION`` of its injectivity radius,
    or the manifold's own ``default_delta()`` where it has one (a point cloud, whose injectivity
    radius is unknown)."""
    if hasattr(manifold, "default_delta"):
        return float(manifold.default_delta())
    return DEFAULT_DELTA_FRACTION * float(manifold.injectivity_radius)


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in MANIFOLDS:
        raise ValueError(f"unknown manifold {name!r}; allowed: {sorted(MANIFOLDS)}")
    return name


register_manifold("circle", lambda radius=1.0: Circle(radius))
register_manifold("sphere", lambda radius=1.0: Sphere(radius))
register_manifold("torus", lambda radii=(1.0, 1.0): FlatTorus(radii))
register_manifold("swissroll", lambda turns=(1.5 * math.pi, 4.5 * math.pi), pitch=1.0, height=21.0:
                  SwissRoll(turns=turns, pitch=pitch, height=height))
register_manifold("ellipse", lambda a=2.0, b=1.0: ClosedCurve.ellipse(a, b))
register_manifold("trefoil", lambda: ClosedCurve.trefoil())
# image widths default to None: the family's default, which widens on coarse grids (image_base.default_width)
register_manifold("rotating-ellipse", lambda n_pixels=32, sigmas=None: RotatingEllipse(n_pixels, sigmas))
register_manifold("translating-blob", lambda n_pixels=32, sigma=None: TranslatingBlob(n_pixels, sigma))
register_manifold("periodic-blob", lambda n_pixels=32, sigma=None: PeriodicBlob(n_pixels, sigma))
