"""Real data without known geometry (issue 14): measured with :mod:`gammalimit.metrics` only.

These sets have no exact distance or average: no ground truth, no ``L``. They
enter the library as point clouds (:class:`gammalimit.manifolds.PointCloud`)
or as ``X`` for :class:`gammalimit.estimator.GammaEncoder` and the peers.
"""

from __future__ import annotations

import numpy as np


def digits(*, n: int | None = None, seed: int = 0, return_labels: bool = False):
    """scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``:
    1797 images of 8 x 8 pixels, grey levels 0..16, the UCI "Optical Recognition
    of Handwritten Digits" test set), unlabelled. No download: the file ships
    with scikit-learn.

    Scaled to ``[0, 1]`` (grey level / 16) and stored like this project's images
    (docs/theory.md, section 7) as ``h u(p_ij)`` with ``h = 1/8``, so that
    Euclidean inner products are the midpoint rule for the ``L^2`` inner product
    on the unit square.

    Parameters
    ----------
    n : int, optional
        A uniform subsample of ``n`` images without replacement (from ``seed``),
        in the original order; default all 1797.
    seed : int
    return_labels : bool, default False
        Also return the digit each image shows, for display only (colouring a
        figure): no method in this project trains on them.

    Returns
    -------
    ndarray, shape=[n, 64], float64
        The images; with ``return_labels``, the pair ``(X, y)`` with ``y``
        ``shape=[n]``, integers 0..9.
    """
    from sklearn.datasets import load_digits

    from .validation import check_count, check_seed

    if not isinstance(return_labels, bool):
        raise TypeError(f"return_labels must be True or False, got {return_labels!r}")
    bunch = load_digits()
    X, y = bunch.data.astype(np.float64) / 16.0 / 8.0, bunch.target.astype(np.int64)
    if n is not None:
        n = check_count(n, "n", 1)
        if n > X.shape[0]:
            raise ValueError(f"n must be at most {X.shape[0]} (the digits set), got {n}")
        keep = np.sort(np.random.default_rng(check_seed(seed)).choice(X.shape[0], size=n, replace=False))
        X, y = X[keep], y[keep]
    return (X, y) if return_labels else X
