"""Small statistics for studies: fitted convergence orders with confidence intervals."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class OrderFit:
    """``log|err| = log C + order * log h`` by (weighted) least squares.

    ``ci`` is the 95% confidence interval of ``order`` (Student t with
    ``n - 2`` degrees of freedom).
    """

    order: float
    ci: tuple[float, float]
    constant: float
    n_points: int

    def to_dict(self) -> dict:
        return asdict(self)


def fit_order(h, err, err_std=None) -> OrderFit:
    """Fit ``err ~ C h^order``.

    Parameters
    ----------
    h, err : array_like, shape=[k]
        Positive scales and errors (``k >= 3``).
    err_std : array_like, shape=[k], optional
        Standard errors of ``err``; points are then weighted by the inverse
        variance of ``log err`` (``(err_std/err)^2``).
    """
    h, err = np.asarray(h, float), np.abs(np.asarray(err, float))
    if h.shape != err.shape or h.ndim != 1 or h.size < 3:
        raise ValueError(f"need at least 3 matching points, got shapes {h.shape} and {err.shape}")
    if (h <= 0).any() or (err <= 0).any():
        raise ValueError("scales and errors must be > 0 to fit an order")
    x, y = np.log(h), np.log(err)
    w = np.ones_like(x)
    if err_std is not None:
        rel = np.maximum(np.asarray(err_std, float) / err, 1e-12)
        w = 1 / rel**2
    W = np.sqrt(w)
    A = np.stack([np.ones_like(x), x], 1) * W[:, None]
    coef, *_ = np.linalg.lstsq(A, y * W, rcond=None)
    resid = y * W - A @ coef
    dof = max(1, x.size - 2)
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(A.T @ A)
    half = stats.t.ppf(0.975, dof) * np.sqrt(cov[1, 1])
    return OrderFit(float(coef[1]), (float(coef[1] - half), float(coef[1] + half)), float(np.exp(coef[0])), x.size)
