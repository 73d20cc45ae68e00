"""Every study's quick mode runs end to end, writes its figure and JSON, and
its measured orders and constants pass the study's own checks."""

import ast
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


def test_studies_are_discovered_in_their_order_and_the_benchmark_is_not_one():
    assert reproduce.available() == ["delta_convergence", "sample_convergence", "strategy_comparison", "roundoff",
                                     "minimizers", "train_images", "interpolation", "peers", "neural_peers", "beyond",
                                     "data_geometry", "peers_seeds", "train_from_samples"]
    assert (reproduce.STUDY_DIR / "bench_loss.py").exists() and "bench_loss" not in reproduce.available()


#: the smallest file that is a study (discovery reads it and must not run it)
STUDY = """
ORDER = 5
from dataclasses import dataclass

@dataclass
class Params:
    @classmethod
    def quick(cls):
        return cls()

def run(p): return {}
def plot(data): pass
def summary(data): return []
raise SystemExit("discovery must not run a study")
"""


def test_a_new_study_is_one_file(tmp_path):
    study = STUDY
    (tmp_path / "zeta.py").write_text(study)
    (tmp_path / "alpha.py").write_text(study.replace("ORDER = 5", ""))
    (tmp_path / "beta.py").write_text(study.replace("ORDER = 5", "ORDER = 1"))
    (tmp_path / "helper.py").write_text("def run(p): pass\n")  # not a study: no Params, plot, summary
    assert reproduce.discover(tmp_path) == ["beta", "zeta", "alpha"]
    (tmp_path / "bad.py").write_text(study.replace("ORDER = 5", "ORDER = 'first'"))
    with pytest.raises(ValueError, match="ORDER must be an int"):
        reproduce.discover(tmp_path)


def test_a_long_mode_is_found_but_not_run_by_default(tmp_path):
    (tmp_path / "short.py").write_text(STUDY)
    (tmp_path / "slow.py").write_text(STUDY + "LONG = True\n")
    (tmp_path / "plain.py").write_text(STUDY + "LONG = False\n")
    assert reproduce.discover(tmp_path) == ["plain", "short", "slow"]
    assert reproduce.discover(tmp_path, long=False) == ["plain", "short"]
    assert reproduce.discover(tmp_path, long=True) == ["slow"]
    (tmp_path / "bad.py").write_text(STUDY + "LONG = 1\n")
    with pytest.raises(ValueError, match="LONG must be True or False"):
        reproduce.discover(tmp_path)


@pytest.mark.parametrize("name", reproduce.available())
def test_importing_a_study_does_not_run_it(name):
    """At top level a study holds only imports, definitions, constants and the
    ``if __name__ == "__main__"`` guard; no ``sys.path`` edits."""
    source = (reproduce.STUDY_DIR / f"{name}.py").read_text()
    assert "sys.path" not in source
    for node in ast.parse(source).body:
        if isinstance(node, ast.If):
            assert ast.unparse(node.test) == "__name__ == '__main__'", ast.unparse(node)
        elif isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant), ast.unparse(node)  # the docstring
        else:
            assert isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign,
                                     ast.AnnAssign)), ast.unparse(node)
