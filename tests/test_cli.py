"""The command line composes: JSON out, clear errors."""

import json
import math

import pytest

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
    assert "\n" not in err and "'swissroll' does not take ['radius']" in err and "Traceback" not in err
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
