"""Every study's quick mode runs end to end, writes its figure and JSON, and
its measured orders and constants pass the study's own checks."""

import json

import pytest

from gammalimit import reproduce


@pytest.mark.parametrize("name", reproduce.available())
def test_study_quick_mode(name, tmp_path):
    module = reproduce.load(name)
    record = reproduce.run_study(module, module.Params.quick(), tmp_path, name)
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / f"{name}.json").read_text())
    assert saved["study"] == name and saved["params"] and saved["summary"]
    failed = [row for row in record["summary"] if not row["passed"]]
    assert not failed, failed
    # nothing half-written is left behind
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_atomic_leaves_no_partial_file(tmp_path):
    target = tmp_path / "x.json"
    reproduce.write_atomic(target, b"old")

    with pytest.raises(TypeError):
        reproduce.write_atomic(target, object())  # not bytes: fails mid-write
    assert target.read_bytes() == b"old"
    assert not list(tmp_path.glob(".*.tmp"))


def test_unknown_study_is_an_error():
    with pytest.raises(ValueError, match="unknown study"):
        reproduce.reproduce(["nope"], quick=True)
