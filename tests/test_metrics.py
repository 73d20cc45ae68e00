"""The field's embedding measures (gammalimit.metrics) on cases computed by hand."""

import math

import numpy as np
import pytest
import torch

from gammalimit.metrics import (continuity, density_kl, distance_spearman, embedding_metrics, knn_recall,
                                trustworthiness)

# six points on a line with distinct gaps 1, 2, 3, 4, 5 (no ties in any ranking)
LINE = np.array([[0.0], [1.0], [3.0], [6.0], [10.0], [15.0]])


def _swap(A, i, j):
    B = A.copy()
    B[[i, j]] = B[[j, i]]
    return B


def test_isometry_is_perfect():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    E = X @ Q + np.array([1.0, -2.0, 0.5])
    m = embedding_metrics(X, E, k=5)
    for key in ("trustworthiness", "continuity", "knn_recall"):
        assert m[key] == 1.0
    assert m["distance_spearman"] == pytest.approx(1.0, abs=1e-14)
    for s in ("0.01", "0.1", "1"):
        assert abs(m[f"KL_{s}"]) < 1e-14
    # a similarity (scale 3) too: every measure is scale free
    m3 = embedding_metrics(X, 3 * E, k=5)
    assert m3["trustworthiness"] == 1.0 and abs(m3["KL_0.1"]) < 1e-14


def test_swapping_the_two_ends_of_a_line_by_hand():
    """X = (0, 1, 3, 6, 10, 15), E = X with the first and last points swapped, k = 1.

    Nearest neighbours: in X 0->1, 1->0, 2->1, 3->2, 4->3, 5->4; in E 0->4, 1->5,
    2->1, 3->2, 4->3, 5->1: three of six kept (recall 1/2). False neighbours in E
    and their ranks in X: (0, 4) rank 4, (1, 5) rank 5, (5, 1) rank 4, so
    sum (r - k) = 3 + 4 + 3 = 10 and T = 1 - 2 * 10 / (6 * 1 * (12 - 3 - 1)) = 7/12.
    The swap is its own inverse, so continuity is the same 7/12 (ranks in E:
    (0, 1) 4, (1, 0) 5, (5, 4) 4)."""
    E = _swap(LINE, 0, 5)
    assert knn_recall(LINE, E, k=1) == 0.5
    assert trustworthiness(LINE, E, k=1) == pytest.approx(7 / 12, abs=1e-15)
    assert continuity(LINE, E, k=1) == pytest.approx(7 / 12, abs=1e-15)


def test_continuity_is_trustworthiness_with_the_spaces_swapped():
    """A collapse (two far points sent onto each other's neighbours) is
    untrustworthy; tearing neighbours apart is discontinuous: the two differ."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    E = X[:, :1]  # a projection: false neighbours, but data neighbours stay close
    assert continuity(X, E, 4) == trustworthiness(E, X, 4)
    assert continuity(X, E, 4) > trustworthiness(X, E, 4)


def test_spearman_by_hand():
    """X = (0, 1, 3, 7): pair distances (01, 02, 03, 12, 13, 23) = (1, 3, 7, 2, 6, 4),
    ranks (1, 3, 6, 2, 5, 4). Swapping the ends, E = (7, 1, 3, 0): (6, 4, 7, 2, 1, 3),
    ranks (5, 4, 6, 2, 1, 3). sum d^2 = 16 + 1 + 0 + 0 + 16 + 1 = 34, so
    rho = 1 - 6 * 34 / (6 * 35) = 1/35."""
    X = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert distance_spearman(X, _swap(X, 0, 3)) == pytest.approx(1 / 35, abs=1e-14)


def test_spearman_of_a_monotone_distortion_is_one():
    """Points on a circular arc shorter than a half turn, embedded by their angle:
    chord = 2 sin(angle difference / 2) is increasing in the angle difference,
    so every distance rank is kept though no distance is."""
    a = np.sort(np.random.default_rng(2).uniform(0, 2.5, 25))
    X = np.stack([np.cos(a), np.sin(a)], -1)
    E = a[:, None]
    assert distance_spearman(X, E) == pytest.approx(1.0, abs=1e-14)
    assert trustworthiness(X, E, 3) == continuity(X, E, 3) == knn_recall(X, E, 3) == 1.0
    assert density_kl(X, E, 0.1) > 1e-4  # the densities do see the distortion


def test_density_kl_by_hand():
    """X = (0, 1, 3), E = (0, 2, 3): distances over the maximum 3 are
    (1/3, 1, 2/3) and (2/3, 1, 1/3) for pairs (01, 02, 12)."""
    X, E = np.array([[0.0], [1.0], [3.0]]), np.array([[0.0], [2.0], [3.0]])
    for sigma in (0.01, 0.1, 1.0):
        k = lambda d: math.exp(-d**2 / sigma)  # noqa: E731
        fx = np.array([1 + k(1 / 3) + k(1), 1 + k(1 / 3) + k(2 / 3), 1 + k(1) + k(2 / 3)])
        fe = np.array([1 + k(2 / 3) + k(1), 1 + k(2 / 3) + k(1 / 3), 1 + k(1) + k(1 / 3)])
        p, q = fx / fx.sum(), fe / fe.sum()
        expected = float((p * np.log(p / q)).sum())
        assert density_kl(X, E, sigma) == pytest.approx(expected, rel=1e-13)
        assert density_kl(X, 5 * E, sigma) == pytest.approx(expected, rel=1e-13)


def test_embedding_metrics_subsample_is_reproducible_and_accepts_torch():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    E = torch.tensor(X[:, :2])
    a = embedding_metrics(X, E, k=5, max_points=100, seed=7)
    b = embedding_metrics(torch.tensor(X), E.numpy(), k=5, max_points=100, seed=7)
    assert a == b and a["n"] == 100
    assert set(a) == {"n", "k", "trustworthiness", "continuity", "knn_recall", "distance_spearman",
                      "KL_0.01", "KL_0.1", "KL_1"}
    assert all(isinstance(v, (int, float)) for v in a.values())


def test_isomap_beats_pca_on_a_swiss_roll():
    """Sanity check: Isomap unrolls the roll, PCA lays its layers on top of each other."""
    from sklearn.datasets import make_swiss_roll
    from sklearn.decomposition import PCA
    from sklearn.manifold import Isomap

    X, _ = make_swiss_roll(600, random_state=0)
    iso = embedding_metrics(X, Isomap(n_neighbors=10, n_components=2).fit_transform(X), k=10)
    pca = embedding_metrics(X, PCA(2).fit_transform(X), k=10)
    assert iso["trustworthiness"] > pca["trustworthiness"]
    assert iso["knn_recall"] > pca["knn_recall"]


@pytest.mark.parametrize("call, message", [
    (lambda: trustworthiness(np.zeros((6, 2)), np.zeros((5, 2))), "same number of rows"),
    (lambda: trustworthiness(np.zeros((6, 2)), np.zeros((6, 2)), k=3), "below n/2"),
    (lambda: knn_recall(np.zeros(6), np.zeros((6, 1))), "2-D array"),
    (lambda: density_kl(LINE, LINE, sigma=0.0), "sigma"),
    (lambda: embedding_metrics(LINE, LINE, k=1, max_points=2), "max_points"),
    (lambda: distance_spearman(np.full((4, 1), np.nan), np.zeros((4, 1))), "non-finite"),
])
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_digits_loader():
    """scikit-learn's bundled digits, unlabelled, as h u(p_ij) on the 8 x 8 grid (no download)."""
    from gammalimit.datasets import digits

    X = digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert X.min() == 0.0 and X.max() == 16 / 16 / 8
    sub = digits(n=100, seed=1)
    assert sub.shape == (100, 64) and np.array_equal(sub, digits(n=100, seed=1))
    assert all((X == row).all(1).any() for row in sub[:5])
    with pytest.raises(ValueError, match="at most 1797"):
        digits(n=2000)
