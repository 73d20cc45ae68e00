"""The size of a manifold: its intrinsic diameter, in closed form.

(One function over the manifold classes for now; a ``diameter`` attribute on
each class would be its natural home.)
"""

from __future__ import annotations

import math

from .circle import Circle
from .closed_curve import ClosedCurve
from .ellipse import RotatingEllipse
from .images import PeriodicBlob, TranslatingBlob
from .sphere import Sphere
from .swiss_roll import SwissRoll
from .torus import FlatTorus


def diameter(manifold) -> float:
    """Intrinsic diameter: the largest geodesic distance ``d(x, y)`` between two points of ``M``.

    Circle, sphere of radius ``R``: ``pi R``; closed curve (and the rotating
    ellipse, a closed curve of length ``l``): ``l / 2``; flat torus:
    ``pi sqrt(R1^2 + R2^2)``; Swiss roll: the rectangle's diagonal;
    translating blob: the diagonal ``sqrt(2 g) (hi - lo)`` of its square of
    centres; periodic blob (a flat torus with both periods ``sqrt(g)``):
    ``sqrt(g / 2)``.

    Raises
    ------
    TypeError
        For a manifold with no closed form here.
    """
    if isinstance(manifold, (Circle, Sphere)):
        return math.pi * manifold.radius
    if isinstance(manifold, (ClosedCurve, RotatingEllipse)):
        return manifold.length / 2
    if isinstance(manifold, FlatTorus):
        return math.pi * math.hypot(*manifold.radii)
    if isinstance(manifold, SwissRoll):
        return math.hypot(manifold.length, manifold.height)
    if isinstance(manifold, TranslatingBlob):
        lo, hi = manifold.centre_bounds
        return math.sqrt(2 * manifold.metric_scale) * (hi - lo)
    if isinstance(manifold, PeriodicBlob):
        return math.sqrt(manifold.metric_scale / 2)
    raise TypeError(f"no diameter known for {manifold!r}")
