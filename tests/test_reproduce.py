"""`gammalimit reproduce`: the default set leaves the long modes out, and studies run side by side (``jobs``).

Discovery of long modes: tests/test_studies.py."""

import json
import subprocess
import sys

import pytest

from gammalimit import reproduce


def test_the_default_set_is_every_study_but_the_long_modes():
    assert set(reproduce.default_studies()) | set(reproduce.long_studies()) == set(reproduce.available())
    assert not set(reproduce.default_studies()) & set(reproduce.long_studies())


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True, "2"])
def test_bad_jobs_are_refused_before_any_study_runs(jobs, tmp_path):
    with pytest.raises(ValueError, match="jobs must be a positive int"):
        reproduce.reproduce(["roundoff"], quick=True, out_dir=tmp_path, jobs=jobs)
    assert not any(tmp_path.iterdir())


def test_side_by_side_studies_write_the_same_bits_as_one_after_another(tmp_path):
    names = ["roundoff", "strategy_comparison"]
    serial = reproduce.reproduce(names, quick=True, out_dir=tmp_path / "one", jobs=1, progress=lambda s: None)
    lines = []
    parallel = reproduce.reproduce(names, quick=True, out_dir=tmp_path / "two", jobs=2, progress=lines.append)
    assert [r["study"] for r in parallel] == names  # in the studies' order, whichever finished first
    assert any("2 at once" in line for line in lines)
    for name in names:
        assert (tmp_path / "one" / f"{name}.png").read_bytes() == (tmp_path / "two" / f"{name}.png").read_bytes()
        one, two = (json.loads((tmp_path / d / f"{name}.json").read_text()) for d in ("one", "two"))
        for record in (one, two):
            record.pop("seconds")
        assert one == two
    assert [row["measured"] for r in serial for row in r["summary"]] == \
        [row["measured"] for r in parallel for row in r["summary"]]


def test_cli_refuses_bad_jobs_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "gammalimit", "reproduce", "roundoff", "--quick", "--jobs", "0",
                          "--out", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode != 0
    assert "jobs must be a positive int" in run.stderr and "Traceback" not in run.stderr
