import numpy as np
import pytest
import torch

torch.set_default_dtype(torch.float64)


@pytest.fixture(scope="session")
def sphere_npy(tmp_path_factory):
    """A .npy file of 1500 samples of the unit sphere (training and loss from samples alone)."""
    from gammalimit import Sphere

    X = Sphere(1.0).sample(1500, torch.Generator().manual_seed(0)).numpy()
    path = tmp_path_factory.mktemp("data") / "sphere.npy"
    np.save(path, X)
    return path
