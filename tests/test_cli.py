"""The command line composes: JSON out, clear errors."""

import json

import pytest

from gammalimit.cli import main


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
