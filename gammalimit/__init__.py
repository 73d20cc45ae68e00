"""gammalimit: the isometry/flatness pair loss ``L_delta`` for encoders, and its Gamma-limit.

See THEORY.md (shared with the project) for every quantity. Public API::

    from gammalimit import Circle, Sphere, FlatTorus, SwissRoll, ClosedCurve
    from gammalimit import sample_pairs, discrete_loss
    from gammalimit import continuum_loss, limit_integrand, encoder_geometry
"""

import torch as _torch

from .functional import (ContinuumLoss, EncoderGeometry, continuum_loss, discrete_minus_limit, encoder_geometry,
                         limit_integrand, limit_terms)
from .loss import LossEstimate, PairTerms, discrete_loss, pair_terms
from .manifolds import (Circle, ClosedCurve, FlatTorus, PeriodicBlob, RotatingEllipse, Sphere, SwissRoll,
                        TranslatingBlob)
from .sampling import STRATEGIES, PairSample, sample_pairs

__all__ = [
    "Circle", "Sphere", "FlatTorus", "SwissRoll", "ClosedCurve",
    "TranslatingBlob", "RotatingEllipse", "PeriodicBlob",
    "sample_pairs", "discrete_loss", "pair_terms",
    "PairSample", "PairTerms", "LossEstimate", "STRATEGIES",
    "continuum_loss", "limit_terms", "limit_integrand", "discrete_minus_limit", "encoder_geometry",
    "ContinuumLoss", "EncoderGeometry",
]
__version__ = "0.1.0"
