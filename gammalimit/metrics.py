"""The manifold-learning field's own yardsticks for an embedding (issue 14).

Each measure compares data points ``X`` ``shape=[n, ambient_dim]`` with their
embedding ``E`` ``shape=[n, l]``, row ``i`` of one belonging to row ``i`` of
the other, in Euclidean distances on both sides. They read only ranks or
distances, so none of them needs the manifold's geometry: they are what the
literature reports, beside this project's own measures (isometry error,
midpoint defect, Procrustes, overlap) that need it.

- :func:`trustworthiness`, :func:`continuity`: Venna & Kaski (2001), as
  implemented by scikit-learn (``sklearn.manifold.trustworthiness``);
- :func:`knn_recall`: the fraction of data neighbours kept;
- :func:`distance_spearman`: rank correlation of all pairwise distances;
- :func:`density_kl`: ``KL_sigma``, the global density divergence of
  Moor et al. (2020) and Nazari et al. (2023).

Arrays may be numpy or torch; they are read as float64, and every measure is a
Python float. :func:`embedding_metrics` computes them all on one subsample.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr
from sklearn.manifold import trustworthiness as _sk_trustworthiness
from sklearn.neighbors import NearestNeighbors

from .validation import check_count, check_positive, check_seed

__all__ = ["trustworthiness", "continuity", "knn_recall", "distance_spearman", "density_kl",
           "embedding_metrics", "DEFAULT_SIGMAS"]

#: The three scales reported by Nazari et al. (2023), Table 1 (``KL_0.01``, ``KL_0.1``, ``KL_1``).
DEFAULT_SIGMAS = (0.01, 0.1, 1.0)


def _as_array(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().to(torch.float64).numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array shape=[n, dim], got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite entries")
    return a


def _pair(X, E) -> tuple[np.ndarray, np.ndarray]:
    X, E = _as_array(X, "X"), _as_array(E, "E")
    if X.shape[0] != E.shape[0]:
        raise ValueError(f"X and E must have the same number of rows, got {X.shape[0]} and {E.shape[0]}")
    if X.shape[0] < 3:
        raise ValueError(f"at least 3 points are needed, got {X.shape[0]}")
    return X, E


def _check_k(k, n: int) -> int:
    k = check_count(k, "k", 1)
    if k >= n / 2:
        raise ValueError(f"k must be below n/2 = {n / 2:g} (trustworthiness's normalisation), got {k}")
    return k


def trustworthiness(X, E, k: int = 10) -> float:
    """Trustworthiness ``T(k)`` of the embedding (Venna & Kaski, "Neighborhood
    preservation in nonlinear projection methods: an experimental study",
    ICANN 2001, eq. 1):

        T(k) = 1 - 2 / (n k (2n - 3k - 1)) sum_i sum_{j in U_k(i)} (r(i, j) - k)

    ``U_k(i)``: the points among ``i``'s ``k`` nearest in ``E`` that are not
    among its ``k`` nearest in ``X``; ``r(i, j)``: the rank of ``j`` by
    distance from ``i`` in ``X`` (nearest = 1). ``T = 1`` when no point is a
    false neighbour in the embedding. Computed by
    ``sklearn.manifold.trustworthiness(X, E, n_neighbors=k)``.

    Parameters
    ----------
    X : array, shape=[n, ambient_dim]
    E : array, shape=[n, l]
    k : int, 1 <= k < n/2
    """
    X, E = _pair(X, E)
    return float(_sk_trustworthiness(X, E, n_neighbors=_check_k(k, X.shape[0])))


def continuity(X, E, k: int = 10) -> float:
    """Continuity ``C(k)`` (Venna & Kaski, ICANN 2001, eq. 2): trustworthiness
    with the roles of the spaces swapped,

        C(k) = 1 - 2 / (n k (2n - 3k - 1)) sum_i sum_{j in V_k(i)} (rhat(i, j) - k)

    ``V_k(i)``: ``i``'s ``k`` nearest in ``X`` that are not among its ``k``
    nearest in ``E``; ``rhat(i, j)``: the rank of ``j`` from ``i`` in ``E``.
    ``C = 1`` when no data neighbour is torn away. Computed as
    ``sklearn.manifold.trustworthiness(E, X, n_neighbors=k)`` (arguments swapped).

    Parameters
    ----------
    X : array, shape=[n, ambient_dim]
    E : array, shape=[n, l]
    k : int, 1 <= k < n/2
    """
    X, E = _pair(X, E)
    return float(_sk_trustworthiness(E, X, n_neighbors=_check_k(k, X.shape[0])))


def _neighbours(A: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's ``k`` nearest other rows, ``shape=[n, k]`` (the row itself left out)."""
    idx = NearestNeighbors(n_neighbors=k + 1).fit(A).kneighbors(A, return_distance=False)
    own = idx == np.arange(A.shape[0])[:, None]
    # a duplicate point may come before the row itself: drop the row where it is, else the farthest
    own[~own.any(1), -1] = True
    return idx[~own].reshape(A.shape[0], k)


def knn_recall(X, E, k: int = 10) -> float:
    """Mean fraction of each point's ``k`` nearest neighbours in ``X`` that are
    among its ``k`` nearest in ``E``:

        R(k) = (1 / (n k)) sum_i |N_k^X(i) ∩ N_k^E(i)|

    (the "k-NN preservation" / neighbourhood hit rate, e.g. Kobak & Berens,
    Nat. Commun. 10, 5416 (2019); ``1 - R(k)`` is the "neighbourhood loss" of
    Moor et al., ICML 2020). Neighbours by ``sklearn.neighbors.NearestNeighbors``,
    the point itself excluded. Symmetric in ``X`` and ``E``.

    Parameters
    ----------
    X : array, shape=[n, ambient_dim]
    E : array, shape=[n, l]
    k : int, 1 <= k < n
    """
    X, E = _pair(X, E)
    k = check_count(k, "k", 1)
    if k >= X.shape[0]:
        raise ValueError(f"k must be below n = {X.shape[0]}, got {k}")
    nx, ne = _neighbours(X, k), _neighbours(E, k)
    hits = sum(len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(nx, ne))
    return hits / (X.shape[0] * k)


def distance_spearman(X, E) -> float:
    """Spearman rank correlation of the ``n(n-1)/2`` pairwise distances,
    ``rho(|x_i - x_j|, |e_i - e_j|)`` over ``i < j``
    (``scipy.stats.spearmanr`` of the two ``scipy.spatial.distance.pdist``
    vectors; used as a global measure e.g. by Kobak & Berens 2019). 1 for any
    embedding whose distances are an increasing function of the data's.

    Parameters
    ----------
    X : array, shape=[n, ambient_dim]
    E : array, shape=[n, l]
    """
    X, E = _pair(X, E)
    return float(spearmanr(pdist(X), pdist(E)).statistic)


def _density(D: np.ndarray, sigma: float) -> np.ndarray:
    D = D / D.max()
    dens = np.exp(-(D**2) / sigma).sum(-1)
    return dens / dens.sum()


def density_kl(X, E, sigma: float = 0.1) -> float:
    """``KL_sigma``: divergence between the data's and the embedding's global
    density estimates (Moor, Horn, Rieck & Borgwardt, "Topological
    Autoencoders", ICML 2020, section 5.1 "KL_sigma"; Nazari, Damrich &
    Hamprecht, "Geometric Autoencoders -- What You See is What You Decode",
    ICML 2023, Table 1; formula as in TopoAE's ``density_kl_global``):

        f_X(i) = sum_j exp(-dist_X(x_i, x_j)^2 / sigma),  dist_X = |x_i - x_j| / max_{a,b} |x_a - x_b|
        p_X(i) = f_X(i) / sum_a f_X(a)       (the same in E gives p_E)
        KL_sigma = sum_i p_X(i) log(p_X(i) / p_E(i))

    (``j = i`` included, as in the reference code). ``sigma`` is a squared
    length in units of the diameter: small ``sigma`` compares local densities,
    large ``sigma`` the global spread. 0 for an embedding similar to the data
    (distances a constant multiple); scale free.

    Parameters
    ----------
    X : array, shape=[n, ambient_dim]
    E : array, shape=[n, l]
    sigma : float > 0
    """
    X, E = _pair(X, E)
    sigma = check_positive(sigma, "sigma")
    p, q = _density(squareform(pdist(X)), sigma), _density(squareform(pdist(E)), sigma)
    return float((p * (np.log(p) - np.log(q))).sum())


def embedding_metrics(X, E, *, k: int = 10, sigmas=DEFAULT_SIGMAS, max_points: int = 2000, seed: int = 0) -> dict:
    """Every measure of this module on one subsample.

    Parameters
    ----------
    X : array, shape=[n, ambient_dim]
    E : array, shape=[n, l]
    k : int
        Neighbourhood size of trustworthiness, continuity and kNN recall.
    sigmas : sequence of float
        Scales of :func:`density_kl`.
    max_points : int
        Above this many points, a uniform subsample of this size (without
        replacement, from ``seed``) is measured: the rank measures and
        ``KL_sigma`` cost ``O(n^2)`` memory.
    seed : int

    Returns
    -------
    dict
        ``trustworthiness``, ``continuity``, ``knn_recall``,
        ``distance_spearman``, ``KL_<sigma>`` for each sigma (e.g. ``KL_0.01``),
        ``n`` (points measured) and ``k``.
    """
    X, E = _pair(X, E)
    max_points = check_count(max_points, "max_points", 3)
    seed = check_seed(seed)
    n = X.shape[0]
    if n > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        X, E = X[keep], E[keep]
    out = {"n": int(X.shape[0]), "k": int(k),
           "trustworthiness": trustworthiness(X, E, k), "continuity": continuity(X, E, k),
           "knn_recall": knn_recall(X, E, k), "distance_spearman": distance_spearman(X, E)}
    for s in sigmas:
        out[f"KL_{float(s):g}"] = density_kl(X, E, float(s))
    return out
