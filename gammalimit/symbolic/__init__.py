"""Symbolic derivations (sympy) of the constants and closed forms of docs/theory.md.

Nothing here is typed in from the theory's results: each constant is derived
from its definition, and the tests compare the derivations with docs/theory.md
and with the numerics (:mod:`gammalimit.functional`, :mod:`gammalimit.embeddings`).

1. :func:`pair_penalty_series` — Taylor coefficients in ``delta`` of both
   pair penalties along a geodesic: the ``1/16``, and that the ``delta^1``
   terms are odd in ``v`` (:func:`is_odd_in_v`).
2. :func:`isotropic_fourth_moment`, :func:`direction_average_quadratic`,
   :func:`direction_average_hessian` — ``E_v (v.Av)^2`` and ``E_v |H(v,v)|^2``
   for general ``m``.
3. :func:`radial_density`, :func:`kappa` — the radial constants of the strategies.
4. :func:`continuum_density` (the chart formulas of docs/theory.md, section 3), and the closed
   forms of section 5: :func:`scaled_identity_limit`,
   :func:`round_shell_discrete`, :func:`round_ball_discrete`,
   :func:`torus_shell_discrete`, :func:`linear_chart_limit`,
   :func:`circle_embedding_limit`, and the minimisers
   :func:`round_minimiser`, :func:`torus_minimiser`.

Importing sympy takes a while: other modules import this one lazily.
"""

from .closed_forms import *  # noqa: F401,F403
from .derivations import *  # noqa: F401,F403
from .derivations import _gaussian_moment  # noqa: F401  (tests check it)
