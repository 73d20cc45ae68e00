"""gammalimit: the isometry/flatness pair loss ``L_delta`` for encoders, and its Gamma-limit.

See docs/theory.md for every quantity. Public API::

    from gammalimit import Circle, Sphere, FlatTorus, SwissRoll, ClosedCurve
    from gammalimit import sample_pairs, discrete_loss
    from gammalimit import continuum_loss, limit_integrand, encoder_geometry
    from gammalimit import GammaEncoder   # needs scikit-learn (the `compare` extra)
"""

import torch as _torch

from .derivatives import encoder_geometry
from .functional import ContinuumLoss, continuum_loss, discrete_minus_limit, limit_integrand, limit_terms
from .geometry import EncoderGeometry
from .loss import LossEstimate, PairTerms, Terms, discrete_loss, pair_terms
from .penalties import PENALTIES, Penalty, get_penalty, register_penalty
from .manifolds import (Circle, ClosedCurve, FlatTorus, PeriodicBlob, PointCloud, RotatingEllipse, Sphere,
                        SwissRoll, TranslatingBlob)
from .sampling import STRATEGIES, PairSample, register_strategy, sample_pairs

__all__ = [
    "Circle", "Sphere", "FlatTorus", "SwissRoll", "ClosedCurve",
    "TranslatingBlob", "RotatingEllipse", "PeriodicBlob", "PointCloud",
    "sample_pairs", "discrete_loss", "pair_terms",
    "PairSample", "PairTerms", "Terms", "LossEstimate", "STRATEGIES", "register_strategy",
    "PENALTIES", "Penalty", "get_penalty", "register_penalty",
    "continuum_loss", "limit_terms", "limit_integrand", "discrete_minus_limit", "encoder_geometry",
    "ContinuumLoss", "EncoderGeometry",
]  # GammaEncoder is exported by __getattr__ below, not by `import *` (it needs scikit-learn)
__version__ = "0.1.0"


def __getattr__(name):
    # GammaEncoder needs scikit-learn, an optional extra: imported on first use, so that
    # `import gammalimit` works without it and `gammalimit.GammaEncoder` says what to install
    if name == "GammaEncoder":
        from .estimator import GammaEncoder

        return GammaEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
