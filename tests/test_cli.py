"""The command line composes: JSON out, clear errors."""

import json
import math
import re

import numpy as np
import pytest

from gammalimit import PointCloud, discrete_loss
from gammalimit.cli import main
from gammalimit.manifolds import MANIFOLDS, default_delta, make_manifold, manifold_parameters


def test_loss_json(capsys):
    rc = main(["loss", "--manifold", "sphere", "--scale", "0.9", "--delta", "0.01", "--lam", "1",
               "--n", "20000", "--strategy", "shell", "--seed", "0", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("total", "distortion", "bending", "stderr", "n"):
        assert key in out
    assert out["n"] == 20000
    assert out["total"] == pytest.approx(out["L_delta_exact"]["total"], rel=1e-11)
    assert out["L_exact"]["total"] == pytest.approx((0.81 - 1) ** 2 + 0.81 / 16, rel=1e-14)


@pytest.mark.parametrize("manifold", ["circle", "torus", "swissroll"])
def test_loss_each_manifold(manifold, capsys):
    assert main(["loss", "--manifold", manifold, "--delta", "0.1", "--n", "2000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2000


def test_loss_bad_delta_is_a_clear_error(capsys):
    assert main(["loss", "--manifold", "circle", "--delta", "4"]) == 2
    assert "injectivity radius" in capsys.readouterr().err


def test_unknown_manifold_is_rejected():
    with pytest.raises(SystemExit):
        main(["loss", "--manifold", "klein", "--delta", "0.1"])


# --------------------------------------------------------------------------
# the registry, manifold parameters and penalties


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_loss_accepts_every_registered_manifold(name, capsys):
    extra = ["--n-pixels", "20"] if "n_pixels" in manifold_parameters(name) else []
    assert main(["loss", "--manifold", name, "--n", "64", "--json", *extra]) == 0
    out = json.loads(capsys.readouterr().out)
    # no --delta: the scale-aware default, printed with the result
    M = make_manifold(name, **({"n_pixels": 20} if extra else {}))
    assert out["n"] == 64 and out["delta"] == default_delta(M)
    assert out["manifold"] == repr(M)


def test_a_parameter_the_manifold_does_not_take_is_a_one_line_error(capsys):
    assert main(["loss", "--manifold", "swissroll", "--radius", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--radius does not apply to manifold 'swissroll'" in err and "Traceback" not in err
    assert main(["limit", "--manifold", "circle", "--param", "height=2"]) == 2
    assert "does not take ['height']" in capsys.readouterr().err
    assert main(["loss", "--manifold", "circle", "--radius", "2", "--param", "radius=3"]) == 2
    assert "given twice" in capsys.readouterr().err


def test_manifold_parameters_reach_the_manifold(capsys):
    assert main(["loss", "--manifold", "torus", "--radius", "2", "--pairs", "500", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifold"] == "FlatTorus(radii=(2.0, 2.0))"
    assert main(["limit", "--manifold", "torus", "--radius", "1,2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifold"] == "FlatTorus(radii=(1.0, 2.0))"
    assert main(["limit", "--manifold", "ellipse", "--param", "a=3", "--param", "b=1.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifold"] == repr(make_manifold("ellipse", a=3.0, b=1.5))


def test_loss_with_the_ratio_penalty_matches_its_closed_form(capsys):
    a, R, delta, lam = 0.9, 1.0, 0.1, 1.0
    assert main(["loss", "--manifold", "sphere", "--scale", str(a), "--penalty", "ratio", "--delta", str(delta),
                 "--n", "1000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["penalty"] == "ratio" and out["n"] == 1000
    # the closed forms of gammalimit.embeddings are for the squared penalty: not printed
    assert "L_delta_exact" not in out and "L_exact" not in out
    # shell pairs on a round sphere: every pair has the same penalty (docs/theory.md)
    shell = ((2 * a * R * math.sin(delta / (2 * R)) / delta - 1) ** 2
             + lam * 4 * a**2 * R**2 * (1 - math.cos(delta / (2 * R))) ** 2 / delta**4)
    assert out["total"] == pytest.approx(shell, rel=1e-10)
    assert out["L"]["total"] == pytest.approx((a - 1) ** 2 + lam * a**2 / (16 * R**2), rel=1e-10)  # kappa = 1


def test_limit_with_the_ratio_penalty(capsys):
    assert main(["limit", "--manifold", "circle", "--penalty", "ratio", "--scale", "1.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["penalty"] == "ratio" and "L_exact" not in out
    assert out["distortion"] == pytest.approx(0.25, rel=1e-12)


# --------------------------------------------------------------------------
# samples alone: --data FILE.npy --dim m


def test_loss_on_samples_is_the_cloud_loss(sphere_npy, capsys):
    assert main(["loss", "--data", str(sphere_npy), "--dim", "2", "--scale", "1.1", "--delta", "0.2", "--lam",
                 "0.5", "--n", "256", "--degree", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cloud = PointCloud(np.load(sphere_npy), dim=2, degree=2)
    est = discrete_loss(lambda x: 1.1 * x, cloud, delta=0.2, lam=0.5, n=256, strategy="ball")
    assert out["total"] == est.total and out["strategy"] == "ball" and out["n"] == 256
    assert out["cloud"] == repr(cloud) and out["fit"]["residual_median"] > 0 and out["L"].startswith("none")
    assert "L_exact" not in out and "L_delta_exact" not in out
    # no --delta: the cloud's default, printed
    assert main(["loss", "--data", str(sphere_npy), "--dim", "2", "--n", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["delta"] == cloud.default_delta()


def test_train_on_samples_end_to_end(sphere_npy, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(sphere_npy), "--dim", "2", "--latent-dim", "3", "--steps", "4", "--batch-size",
            "16", "--hidden", "4", "--pool-pairs", "128", "--eval-pairs", "64", "--degree", "2", "--reference",
            "sphere", "--checkpoint-every", "2", "--out", str(out), "--no-progress", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    stored = json.loads((out / "config.json").read_text())
    assert stored["data"] == str(sphere_npy) and stored["cloud"] == {"degree": 2} and stored["manifold"] is None
    assert stored["delta"] == result["delta"] > 0 and stored["strategy"] == result["strategy"] == "ball"
    assert result["pool_pairs"] == 128 and result["L"] is None and result["limit"].startswith("none")
    assert result["L_delta"] > 0 and result["L_delta_reference"] > 0
    assert json.loads((out / "result.json").read_text())["pool"]["pairs"] == 128
    assert main(["train", "--out", str(out), "--resume", "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["L_delta"] == result["L_delta"]


def _bad_files(folder):
    rng = np.random.default_rng(0)
    files = {"strings": np.array([["a", "b", "c"]] * 40), "flat": rng.random(40), "wide": rng.random((40, 3, 2, 2))}
    for name, array in files.items():
        np.save(folder / f"{name}.npy", array)
    np.save(folder / "ragged.npy", np.array([[1.0, 2.0], [3.0]], dtype=object), allow_pickle=True)
    (folder / "text.npy").write_text("1 2 3\n4 5 6\n")
    nan = rng.random((40, 3))
    nan[7, 1] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "plane.npy", rng.random((40, 2)))
    np.save(folder / "few.npy", rng.random((5, 3)))
    return folder


@pytest.mark.parametrize("name, extra, message", [
    ("missing", [], r"data file '.*missing.npy' does not exist"),
    ("strings", [], r"strings.npy' holds <U1 values; samples must be real numbers"),
    ("ragged", [], r"ragged.npy' is not a .npy array of numbers"),
    ("text", [], r"text.npy' is not a .npy array of numbers"),
    ("flat", [], r"flat.npy' must hold samples of shape \(N, n\) or images of shape \(N, H, W\), got shape \(40,\)"),
    ("wide", [], r"got shape \(40, 3, 2, 2\)"),
    ("nan", [], r"nan.npy': X has 1 row\(s\) with NaN or infinite values; first: row 7"),
    ("plane", [], r"plane.npy': dim must be below the ambient dimension n = 2 of the samples, got dim = 2"),
    ("few", [], r"few.npy': X has 5 samples; .* needs at least 20"),
    ("sphere", ["--delta", "1e-4"], r"anchors have no neighbour within chord distance delta = 0.0001.*larger delta"),
    ("sphere", ["--manifold", "sphere"], r"--data learns the geometry from the samples; --manifold"),
    ("sphere", ["--scale", "1,2"], r"takes one scale, got \[1.0, 2.0\]"),
    ("sphere", ["--antithetic"], r"antithetic pairs .* need an exponential map"),
])
def test_bad_samples_are_one_line_errors(tmp_path, sphere_npy, capsys, name, extra, message):
    folder = _bad_files(tmp_path)
    path = sphere_npy if name == "sphere" else folder / f"{name}.npy"
    assert main(["loss", "--data", str(path), "--dim", "2", "--n", "64", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and re.search(message, err), err
    if not extra:  # the trainer reads data through the same checks
        assert main(["train", "--data", str(path), "--dim", "2", "--steps", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and re.search(message, err), err


def test_data_needs_dim(sphere_npy, capsys):
    assert main(["loss", "--data", str(sphere_npy)]) == 2
    assert "needs --dim" in capsys.readouterr().err
    assert main(["train", "--data", str(sphere_npy), "--no-progress"]) == 2
    assert "needs dim" in capsys.readouterr().err


def test_an_unwritable_out_folder_is_one_line_not_a_traceback(capsys):
    assert main(["train", "--manifold", "sphere", "--steps", "3", "--out", "/dev/null/run", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "/dev/null/run" in err
