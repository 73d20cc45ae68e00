"""gammalimit.datasets: the labels of the digits come with the same rows as the images."""

import numpy as np
import pytest

from gammalimit.datasets import digits


def test_digits_labels_follow_the_subsample():
    X, y = digits(return_labels=True)
    assert np.array_equal(X, digits())
    assert y.shape == (1797,) and y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    Xs, ys = digits(n=50, seed=3, return_labels=True)
    assert np.array_equal(Xs, digits(n=50, seed=3))
    # every subsampled row keeps its own label: find it in the full set
    rows = [int(np.flatnonzero((X == row).all(1))[0]) for row in Xs[:10]]
    assert np.array_equal(ys[:10], y[rows])


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_return_labels_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="return_labels must be True or False"):
        digits(return_labels=bad)
