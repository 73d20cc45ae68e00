"""`make gpu-check`: the script's dry run on the CPU, and its one-line refusal without CUDA."""

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parent.parent / "studies" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "bench_gpu.json"
    assert _load().main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0]
    assert not out.exists()


def test_the_dry_run_on_the_cpu_records_every_part(tmp_path):
    out = tmp_path / "bench_gpu.json"
    assert _load().main(["--device", "cpu", "--pairs", "1024", "--steps", "3", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["device"] == "cpu (dry run)"
    assert record["discrete_loss"]["relative_difference"] == 0.0  # the same float64 work on the same device
    assert record["limit_integrand"]["max_relative_difference"] == 0.0
    assert record["train"]["device"]["timing"]["steps"] == 3
