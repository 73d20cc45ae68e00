"""Training from samples: the Isomap global start, triplet files, smoothed clouds."""

import math
import warnings

import numpy as np
import pytest
import torch

from gammalimit import Circle, PairSample, PointCloud, Sphere, SwissRoll, TranslatingBlob, discrete_loss
from gammalimit.cli import main
from gammalimit.shapes import procrustes
from gammalimit.train import TrainConfig, float64_copy, train
from gammalimit.train.data import load_triplets
from gammalimit.train.evaluation import fold_check
from gammalimit.train.start import isomap_codes


def _procrustes_error(codes, flat):
    scale = float(torch.sqrt((flat - flat.mean(0)).pow(2).sum() / (codes - codes.mean(0)).pow(2).sum()))
    aligned = procrustes(scale * codes, flat)
    return float(torch.linalg.vector_norm(aligned - flat) / torch.linalg.vector_norm(flat - flat.mean(0)))


@pytest.fixture(scope="module")
def roll_file(tmp_path_factory):
    M = SwissRoll()
    X = M.sample(1500, torch.Generator().manual_seed(5))
    path = tmp_path_factory.mktemp("roll") / "roll.npy"
    np.save(path, X.numpy())
    return path, X, M.unrolled(X)


def test_isomap_codes_unroll_the_roll(roll_file):
    _, X, flat = roll_file
    codes = isomap_codes(X, 2, 10)
    assert codes.shape == (1500, 2) and codes.dtype == torch.float64
    assert _procrustes_error(codes, flat) < 0.05
    # Isomap keeps geodesic distances: the codes are at the scale of the flat coordinates (within 10%)
    ratio = float(torch.sqrt((codes - codes.mean(0)).pow(2).sum() / (flat - flat.mean(0)).pow(2).sum()))
    assert 0.9 < ratio < 1.1


def test_isomap_start_unrolls_where_the_pca_start_folds(roll_file):
    path, X, flat = roll_file
    errors = {}
    for start in ("none", "isomap"):
        config = TrainConfig(data=str(path), dim=2, delta=2.5, lam=1.0, steps=60, batch_size=64, hidden=(64, 64),
                             warmup=6, start=start, start_steps=300, start_points=1500, pool_pairs=1024,
                             eval_pairs=256)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train(config, progress=False)
        with torch.no_grad():
            errors[start] = _procrustes_error(float64_copy(result.model)(X), flat)
        # the fold check after training: it warns exactly for the folded encoder
        folds = result.evaluation["folds"]
        assert folds["warning"] == (start == "none") == any("folds M" in str(w.message) for w in caught), folds
        if start == "isomap":
            assert result.start["method"] == "isomap" and result.start["points"] == 1500
            assert 0 <= result.start["relative_rms"] < 0.05
            assert result.to_dict()["start"] == result.start
        else:
            assert result.start is None
    assert errors["isomap"] < 0.1 < 0.5 < errors["none"], errors


def test_isomap_start_is_reproducible(roll_file):
    path, X, _ = roll_file
    config = TrainConfig(data=str(path), dim=2, delta=2.5, steps=2, batch_size=16, hidden=(16,), warmup=1,
                         start="isomap", start_steps=20, start_points=300, pool_pairs=64, eval_pairs=16)
    a, b = (train(config, progress=False, evaluate_final=False).model for _ in range(2))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.fixture(scope="module")
def blob_cloud(tmp_path_factory):
    """400 images of a translating blob (16 x 16 pixels): their chords never reach 4 delta = 0.2."""
    M = TranslatingBlob(n_pixels=16)
    X = M.sample(400, torch.Generator().manual_seed(3))
    path = tmp_path_factory.mktemp("blob") / "blob.npy"
    np.save(path, X.numpy())
    return path, M, PointCloud(X, 2)


def test_the_fold_check_of_a_cloud_finds_far_pairs_beyond_the_chord(blob_cloud):
    """The chord between blob images saturates at sqrt(2) |u| = 0.157 < 4 delta: a check on chords saw
    no far pair and could not tell a fold. Graph distances find them; the flat chart passes, the chart
    folded along t_1 = 1/2 warns."""
    _, M, cloud = blob_cloud
    assert float(torch.pdist(cloud.points).max()) < 0.2
    s, mid = math.sqrt(M.metric_scale), sum(M.centre_bounds) / 2
    flat = lambda x: s * M.centres(x)  # noqa: E731
    folded = lambda x: s * torch.stack([(M.centres(x)[:, 0] - mid).abs(), M.centres(x)[:, 1]], -1)  # noqa: E731
    unfolded = fold_check(flat, cloud, 0.05, strategy="ball")
    with pytest.warns(UserWarning, match="folds M onto itself"):
        fold = fold_check(folded, cloud, 0.05, strategy="ball")
    assert unfolded["far_pairs"] == fold["far_pairs"] > 2000  # of 4096: the geodesic exceeds 4 delta
    assert unfolded["overlapping"] == 0 and not unfolded["warning"] and abs(unfolded["scale"] - 1) < 0.05
    assert fold["warning"] and fold["overlapping"] >= 30, fold


def test_the_auto_start_picks_isomap_where_the_pca_start_folds_the_blob_cloud(blob_cloud):
    path = blob_cloud[0]
    config = TrainConfig(data=str(path), dim=2, delta=0.05, steps=2, batch_size=16, hidden=(32,), warmup=0,
                         start_steps=5, pool_pairs=64, eval_pairs=16, limit="none")
    start = train(config, progress=False, evaluate_final=False).start
    assert start["method"] == "isomap" and start["chosen_by"] == "auto", start
    assert start["initial_folds"]["warning"] and start["initial_folds"]["far_pairs"] > 2000, start


def test_isomap_start_refuses_a_disconnected_graph():
    # two far clusters: the neighbour graph has two components
    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.randn(50, 3, generator=g, dtype=torch.float64),
                   100 + torch.randn(50, 3, generator=g, dtype=torch.float64)])
    with pytest.raises(ValueError, match="2 components.*start_neighbors"):
        isomap_codes(X, 2, 5)


@pytest.mark.parametrize("field, value", [("start", "spectral"), ("start_points", 4), ("start_steps", 0),
                                          ("start_neighbors", 1)])
def test_bad_start_options_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(manifold="circle", **{field: value})


# --------------------------------------------------------------------------
# triplets


def _circle_triplets(k=400, h=0.02, radius=1.0):
    """Frames t - h, t, t + h of a point going round a circle: exact midpoints and arc lengths."""
    t = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    point = lambda s: radius * torch.stack([torch.cos(s), torch.sin(s)], -1)  # noqa: E731
    return {"x": point(t - h).numpy(), "y": point(t + h).numpy(), "midpoint": point(t).numpy(),
            "dist": np.full(k, 2 * h * radius)}


def test_a_triplet_file_trains_on_its_own_pairs(tmp_path):
    arrays = _circle_triplets()
    path = tmp_path / "frames.npz"
    np.savez(path, **arrays)
    config = TrainConfig(data=str(path), dim=1, steps=20, batch_size=32, hidden=(16,), warmup=2, eval_pairs=64)
    assert config.delta == pytest.approx(0.04)  # the default: the largest distance of the triplets
    result = train(config, progress=False)
    assert result.pool == {"pairs": 400, "triplets": str(path)}
    given = PairSample.from_arrays(**arrays, delta=config.delta)
    expected = discrete_loss(float64_copy(result.model), given, lam=config.lam)
    assert result.evaluation["L_delta"]["total"] == pytest.approx(expected.total, rel=1e-12)
    assert result.evaluation["L_delta"]["n"] == 400


def test_triplets_of_a_circle_match_the_exact_manifold():
    arrays = _circle_triplets(k=256, h=0.025, radius=2.0)
    given = PairSample.from_arrays(**arrays, delta=0.1)
    phi = lambda x: 1.5 * x  # noqa: E731
    # every pair is a shell pair of the circle of radius 2 at distance 0.1
    exact = discrete_loss(phi, Circle(2.0), delta=0.1, lam=0.3, n=256, seed=0)
    assert discrete_loss(phi, given, lam=0.3).total == pytest.approx(exact.total, rel=1e-12)


def test_the_cli_trains_on_a_triplet_file(tmp_path, capsys):
    path = tmp_path / "frames.npz"
    np.savez(path, **_circle_triplets())
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), "--dim", "1", "--steps", "5", "--batch-size", "16",
                 "--hidden", "8", "--warmup", "1", "--eval-pairs", "16", "--out", str(out), "--no-progress"]) == 0
    assert (out / "result.json").exists()


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((3, 2)), "y": np.ones((3, 2)), "midpoint": np.zeros((3, 2))}, "exactly the arrays"),
    ({"x": np.zeros((3, 2)), "y": np.ones((3, 2)), "midpoint": np.zeros((3, 2)), "dist": -np.ones(3)}, "dist"),
    ({"x": np.zeros((3, 2)), "y": np.ones((4, 2)), "midpoint": np.zeros((3, 2)), "dist": np.ones(3)}, "one shape"),
])
def test_a_bad_triplet_file_is_named(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as err:
        load_triplets(path)
    assert "bad.npz" in str(err.value)


# --------------------------------------------------------------------------
# smoothing


def test_smoothing_removes_most_of_the_normal_noise():
    S = Sphere(1.0)
    g = torch.Generator().manual_seed(1)
    clean = S.sample(3000, g)
    noisy = clean + 0.02 * torch.randn(clean.shape, generator=g, dtype=clean.dtype)
    cloud = PointCloud(noisy, 2)
    smooth = cloud.smoothed(0.3)
    before = float((torch.linalg.vector_norm(noisy, dim=-1) - 1).pow(2).mean().sqrt())
    after = float((torch.linalg.vector_norm(smooth.points, dim=-1) - 1).pow(2).mean().sqrt())
    assert after < before / 2, (before, after)
    assert smooth.dim == 2 and smooth.degree == cloud.degree and len(smooth) == len(cloud)
