"""Data manifolds with exact distance and Riemannian average (docs/theory.md, section 1)."""

from .base import Chart, Manifold
from .circle import Circle
from .closed_curve import ClosedCurve
from .point_cloud import PointCloud
from .ellipse import RotatingEllipse
from .images import PeriodicBlob, TranslatingBlob
from .registry import MANIFOLDS, default_delta, make_manifold, manifold_parameters, register_manifold
from .sphere import Sphere
from .sprites import Sprite
from .swiss_roll import SwissRoll
from .torus import FlatTorus

__all__ = ["Chart", "Manifold", "Circle", "Sphere", "FlatTorus", "SwissRoll", "ClosedCurve",
           "TranslatingBlob", "RotatingEllipse", "PeriodicBlob", "Sprite", "PointCloud",
           "MANIFOLDS", "make_manifold", "manifold_parameters", "register_manifold", "default_delta"]
