"""GammaEncoder follows scikit-learn's estimator conventions; the embedding
measures of gammalimit.estimator are exact on exact maps."""

import math

import numpy as np
import pytest
import torch

from sklearn.base import clone  # the `compare` extra, installed by `make test`
from sklearn.exceptions import NotFittedError

from gammalimit import PointCloud, Sphere, sample_pairs
from gammalimit.manifolds import default_delta
from gammalimit.estimator import GammaEncoder, local_isometry_error, overlap_fraction, procrustes_error

SMALL = dict(manifold="sphere", latent_dim=3, delta=0.3, lam=0.01, steps=8, batch_size=16, hidden=(8,), warmup=1)


@pytest.fixture(scope="module")
def X():
    return Sphere(1.0).sample(40, generator=torch.Generator().manual_seed(0)).numpy()


def test_params_follow_sklearn_conventions():
    est = GammaEncoder(**SMALL, random_state=3)
    params = est.get_params()
    assert params["latent_dim"] == 3 and params["random_state"] == 3 and params["manifold"] == "sphere"
    assert est.set_params(steps=5, lam=0.1) is est
    assert est.steps == 5 and est.lam == 0.1
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    with pytest.raises(ValueError):
        est.set_params(no_such_parameter=1)


def test_fit_returns_self_and_transform_has_the_latent_shape(X):
    est = GammaEncoder(**SMALL, random_state=0)
    assert est.fit(X) is est
    Z = est.transform(X)
    assert isinstance(Z, np.ndarray) and Z.shape == (40, 3) and Z.dtype == np.float64 and np.isfinite(Z).all()
    assert est.n_features_in_ == 3 and len(est.loss_curve_) == SMALL["steps"] and est.fit_seconds_ > 0
    assert np.array_equal(GammaEncoder(**SMALL, random_state=0).fit_transform(X), Z)


def test_random_state_makes_fits_reproducible(X):
    a = GammaEncoder(**SMALL, random_state=7).fit(X).transform(X)
    b = GammaEncoder(**SMALL, random_state=7).fit(X).transform(X)
    c = GammaEncoder(**SMALL, random_state=8).fit(X).transform(X)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    rs = GammaEncoder(**SMALL, random_state=np.random.RandomState(7)).fit(X).transform(X)
    assert np.isfinite(rs).all()


def test_transform_before_fit_raises_not_fitted(X):
    with pytest.raises(NotFittedError):
        GammaEncoder(**SMALL).transform(X)


def test_a_manifold_instance_equal_to_a_known_one_is_accepted(X):
    est = GammaEncoder(**{**SMALL, "manifold": Sphere(1.0)}, random_state=0).fit(X)
    assert est.config_.manifold == "sphere"
    with pytest.raises(ValueError, match="not one the registry builds.*manifold_params"):
        GammaEncoder(**{**SMALL, "manifold": Sphere(2.0)}).fit(2 * X)
    # by name with its parameters instead
    est = GammaEncoder(**{**SMALL, "manifold_params": {"radius": 2.0}}, random_state=0).fit(2 * X)
    assert est.manifold_.radius == 2.0 and est.config_.manifold_params == {"radius": 2.0}


def test_default_delta_follows_the_manifold_and_penalty_is_passed_on(X):
    est = GammaEncoder(**{**SMALL, "delta": None, "penalty": "ratio"}, random_state=0).fit(X)
    assert est.get_params()["delta"] is None  # sklearn: parameters stay as given
    assert est.config_.delta == default_delta(Sphere(1.0)) and est.config_.penalty == "ratio"
    assert np.isfinite(est.loss_curve_).all()


@pytest.mark.parametrize("change, match", [
    (dict(manifold=None), "learns from X alone and needs dim"),
    (dict(dim=2), "dim applies to learning from X alone"),
    (dict(manifold="klein-bottle"), "manifold must be one of"),
    (dict(manifold_params={"radius": 2.0, "height": 1.0}), "does not take \\['height'\\]"),
    (dict(penalty="cubic"), "penalty must be one of"),
    (dict(latent_dim=1), "latent_dim"),
    (dict(delta=5.0), "injectivity radius"),
    (dict(delta=-0.1), "delta"),
    (dict(lam=-1.0), "lam"),
    (dict(steps=0), "steps"),
    (dict(encoder="transformer"), "encoder"),
    (dict(hidden=(0,)), "hidden"),
    (dict(n_pixels=4), "n_pixels"),
])
def test_bad_parameters_raise_clear_errors_in_fit(X, change, match):
    est = GammaEncoder(**{**SMALL, **change})  # __init__ only stores
    with pytest.raises(ValueError, match=match):
        est.fit(X)


def test_bad_samples_raise_clear_errors(X):
    with pytest.raises(ValueError, match="features"):
        GammaEncoder(**SMALL).fit(X[:, :2])
    with pytest.raises(ValueError, match="do not lie on"):
        GammaEncoder(**SMALL).fit(1.5 * X)
    est = GammaEncoder(**SMALL, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        est.transform(np.zeros((2, 4)))


def test_isometry_error_of_an_exact_isometry_is_zero_at_any_scale():
    # the unit circle's arc length is a chord only to O(d^3); use a flat map instead
    g = torch.Generator().manual_seed(0)
    u = torch.rand(50, 2, generator=g, dtype=torch.float64)
    w = u + 0.1 * torch.randn(50, 2, generator=g, dtype=torch.float64)
    d = torch.linalg.vector_norm(u - w, dim=-1)
    Q = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    exact = local_isometry_error(u @ Q, w @ Q, d)
    assert exact["error"] < 1e-14 and exact["error_unscaled"] < 1e-14 and abs(exact["scale"] - 1) < 1e-14
    scaled = local_isometry_error(3 * u, 3 * w, d)
    assert scaled["error"] < 1e-14 and abs(scaled["scale"] - 1 / 3) < 1e-14 and scaled["error_unscaled"] > 1
    assert abs(local_isometry_error(3 * u, 3 * w, d, scale=1.0)["error"] - 2) < 1e-12


def test_isometry_error_on_the_sphere_is_the_chord_defect():
    d = 0.3
    pairs = sample_pairs(Sphere(1.0), 20, d, seed=0)
    err = local_isometry_error(pairs.x, pairs.y, pairs.dist)
    # every chord is 2 sin(d/2): one global scale removes it
    assert err["error"] < 1e-13 and abs(err["scale"] - d / (2 * math.sin(d / 2))) < 1e-13


def test_procrustes_error_is_invariant_to_similarities_and_one_for_noise():
    g = torch.Generator().manual_seed(1)
    u = torch.rand(200, 2, generator=g, dtype=torch.float64)
    Q = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    assert procrustes_error(2.5 * u @ Q + 4, u) < 1e-13
    assert procrustes_error(-u, u) < 1e-13  # reflections allowed
    padded = torch.cat([u, torch.zeros(200, 1, dtype=torch.float64)], 1)
    assert procrustes_error(padded, u) < 1e-13
    noise = torch.randn(200, 2, generator=g, dtype=torch.float64)
    assert 0.8 < procrustes_error(noise, u) <= 1.0
    with pytest.raises(ValueError):
        procrustes_error(u[:, :1], u)


def test_overlap_fraction_sees_folds_that_local_measures_miss():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 2000, 1, generator=g, dtype=torch.float64) * 2 - 1
    d = (a - b).abs()[:, 0]
    delta = 0.05
    assert overlap_fraction(a, b, d, delta) == 0.0
    # folding the segment at 0 is an isometry on each half, but brings u and -u together
    folded = overlap_fraction(a.abs(), b.abs(), d, delta)
    assert 0.01 < folded < 0.2
    assert math.isnan(overlap_fraction(a[:1], a[:1], torch.zeros(1, dtype=torch.float64), delta))


# --------------------------------------------------------------------------
# learning from X alone (no manifold)

CLOUD = dict(dim=2, latent_dim=3, lam=0.01, steps=4, batch_size=16, hidden=(8,), warmup=1, pool_pairs=128)


@pytest.fixture(scope="module")
def X_cloud():
    return Sphere(1.0).sample(800, generator=torch.Generator().manual_seed(1)).numpy()


def test_fit_without_a_manifold_learns_from_X_alone(X_cloud):
    est = GammaEncoder(**CLOUD, cloud_params={"degree": 2}, random_state=0)
    Z = est.fit(X_cloud).transform(X_cloud)
    assert Z.shape == (800, 3) and np.isfinite(Z).all() and len(est.loss_curve_) == 4
    assert isinstance(est.manifold_, PointCloud) and est.manifold_.degree == 2
    assert torch.equal(est.manifold_.points, torch.from_numpy(X_cloud))
    c = est.config_
    assert c.manifold is None and c.dim == 2 and c.strategy == "ball" and c.pool_pairs == 128
    assert c.delta == est.manifold_.default_delta()
    # the data decide: other samples, another encoder; the same samples and seed, the same one
    assert np.array_equal(GammaEncoder(**CLOUD, cloud_params={"degree": 2}, random_state=0).fit_transform(X_cloud), Z)
    other = GammaEncoder(**CLOUD, cloud_params={"degree": 2}, random_state=0).fit(X_cloud[::-1].copy())
    assert not np.array_equal(other.transform(X_cloud), Z)


@pytest.mark.parametrize("change, match", [
    (dict(dim=None), "needs dim"),
    (dict(dim=3), "dim must be below the ambient dimension"),
    (dict(manifold_params={"radius": 2.0}), "manifold_params needs a manifold"),
    (dict(cloud_params={"midpoint": "mean"}), "midpoint must be one of"),
    (dict(strategy="shell", delta=1e-4), "no neighbour"),
])
def test_bad_parameters_without_a_manifold(X_cloud, change, match):
    with pytest.raises(ValueError, match=match):
        GammaEncoder(**{**CLOUD, **change}).fit(X_cloud)
    with pytest.raises(ValueError, match="NaN"):
        GammaEncoder(**CLOUD).fit(np.where(np.arange(800)[:, None] == 3, np.nan, X_cloud))
