"""Scale-out through torch.distributed (gloo, 2 processes on the CPU): the sharded estimates equal one
process's bit for bit, DDP training matches one process to float32 round-off, rank 0 alone writes the run
folder, resume works under DDP, and ``torchrun -m gammalimit`` runs the command line."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from gammalimit.cli import main
from gammalimit import PairSample, PointCloud, discrete_loss, distributed, sample_pairs
from gammalimit.manifolds import FlatTorus, Sphere, SwissRoll
from gammalimit.train import TrainConfig, Trainer, train

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 2
#: DDP averages float32 gradients of two half batches where one process takes the mean of the whole
#: batch: the runs differ by float32 round-off, amplified a little by 20 Adam steps (measured: weights
#: 4e-7 of their largest, L_delta 2.5e-7 relative). The output bias is left out: L_delta sees only
#: differences of codes, so its gradient is round-off alone, which Adam scales up to lr-sized steps
#: (a 1% difference, invisible to the loss).
WEIGHT_RTOL = 1e-5
L_DELTA_RTOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _encoder(n: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()


def _cloud() -> PointCloud:
    t = torch.linspace(0, 2 * torch.pi, 401, dtype=torch.float64)[:-1]
    return PointCloud(torch.stack([torch.cos(t), torch.sin(t)], -1), dim=1, midpoint="chord")


def loss_cases():
    """``(label, call)``: estimates with several blocks or sources, each a function of nothing."""
    torus, sphere, roll = FlatTorus(), Sphere(), SwissRoll()
    given = sample_pairs(torus, 40_000, 0.1, seed=3)  # 3 blocks of 2^14 given pairs
    given = PairSample.from_arrays(given.x, given.y, given.midpoint, given.dist, delta=0.1)
    return [
        ("plain, torus, 3 blocks", lambda: discrete_loss(_encoder(4), torus, lam=1.0, delta=0.1, n=2**17 + 10)),
        ("antithetic, sphere, 2 blocks", lambda: discrete_loss(_encoder(3), sphere, lam=0.5, delta=0.2,
                                                               n=2**16 + 2**10, antithetic=True, seed=5)),
        ("qmc, 3 replicates (uneven shares)", lambda: discrete_loss(_encoder(3), sphere, lam=1.0, delta=0.1,
                                                                    n=3 * 2**14, qmc=True, qmc_replicates=3)),
        ("qmc antithetic, ball", lambda: discrete_loss(_encoder(4), torus, lam=1.0, delta=0.1, n=8 * 2 * 2**10,
                                                       qmc=True, antithetic=True, strategy="ball")),
        ("plain, Swiss roll (boundary: one source)", lambda: discrete_loss(_encoder(3), roll, lam=1.0, delta=0.3,
                                                                           n=2**16 + 100)),
        ("qmc, PointCloud", lambda: discrete_loss(_encoder(2), _cloud(), lam=1.0, delta=0.1, n=8 * 2**9, qmc=True,
                                                  strategy="ball")),
        ("given PairSample, 3 blocks", lambda: discrete_loss(_encoder(4), given, lam=1.0)),
    ]


def _worker(rank: int, port: int, task: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(PROCESSES), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # as tests/conftest.py sets it in the parent
    assert distributed.init_from_env()
    try:
        result = globals()[task](Path(out))
        with open(Path(out) / f"rank{rank}.pkl", "wb") as f:
            pickle.dump(result, f)
    finally:
        distributed.destroy()


def _spawn(task: str, out: Path) -> list:
    """Run ``task(out)`` in 2 gloo processes; what each rank returned."""
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(_free_port(), task, str(out)), nprocs=PROCESSES, join=True)
    return [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(PROCESSES)]


def _losses(out: Path) -> list:
    return [call().to_dict() for _, call in loss_cases()]


def test_distributed_loss_equals_one_process_bit_for_bit(tmp_path):
    ranks = _spawn("_losses", tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = [call().to_dict() for _, call in loss_cases()]
    finally:
        torch.set_num_threads(threads)
    for (label, _), one, *many in zip(loss_cases(), single, *ranks):
        for got in many:  # every rank holds the whole result
            assert got == one, label  # floats compared with ==: every bit


# ---------------------------------------------------------------------------- training

def _config(**kw) -> TrainConfig:
    base = dict(manifold="sphere", latent_dim=3, hidden=(16, 16), batch_size=64, steps=20, warmup=5,
                checkpoint_every=10, eval_pairs=1 << 10, limit="monte-carlo", lr=3e-3)
    return TrainConfig(**{**base, **kw})


class _StopAt:
    """A callback that interrupts a run (as Ctrl-C does) after ``step`` steps, on every rank."""

    def __init__(self, step):
        self.step = step

    def __call__(self, done, model):
        if done == self.step:
            raise KeyboardInterrupt
        return {}


def _weights(result) -> dict:
    return {k: v.detach().clone() for k, v in result.model.state_dict().items()}


def _ddp_runs(out: Path) -> dict:
    whole = train(_config(), out=out / "whole", progress=False)
    try:
        train(_config(), out=out / "resumed", progress=False, callback=_StopAt(13), probe_every=1)
    except KeyboardInterrupt as err:
        stopped = err.checkpoint_step
    resumed = train(_config(), out=out / "resumed", resume=True, progress=False, callback=_StopAt(-1),
                    probe_every=1)
    return {"whole": _weights(whole), "resumed": _weights(resumed), "stopped": stopped,
            "L_delta": whole.evaluation["L_delta"]["total"], "resumed_L_delta": resumed.evaluation["L_delta"]["total"],
            "history": whole.history}


def test_ddp_training_matches_one_process_and_resumes(tmp_path):
    ranks = _spawn("_ddp_runs", tmp_path / "ddp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = train(_config(), out=tmp_path / "one", progress=False)
    finally:
        torch.set_num_threads(threads)
    zero, first = ranks
    output_bias = [name for name in one.model.state_dict() if name.endswith(".bias")][-1]
    for name, w in one.model.state_dict().items():  # the ranks hold the same weights, close to one process's
        assert torch.equal(zero["whole"][name], first["whole"][name]), name
        if name != output_bias:
            torch.testing.assert_close(zero["whole"][name], w, rtol=0, atol=WEIGHT_RTOL * w.abs().max())
    single = one.evaluation["L_delta"]["total"]
    assert zero["L_delta"] == first["L_delta"]
    assert abs(zero["L_delta"] - single) <= L_DELTA_RTOL * abs(single)
    for a, b in zip(zero["history"], one.history):  # the logged loss is the global batch's
        assert a["pairs"] == b["pairs"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    # resume under DDP: every rank loads the checkpoint and continues as if never stopped
    assert zero["stopped"] == 10
    for name in zero["whole"]:
        assert torch.equal(zero["resumed"][name], zero["whole"][name]), name
        assert torch.equal(first["resumed"][name], zero["whole"][name]), name
    assert zero["resumed_L_delta"] == zero["L_delta"]
    # rank 0 alone wrote the folder: one row per step, one start and one finish
    folder = tmp_path / "ddp" / "whole"
    assert {"config.json", "checkpoint.pt", "metrics.csv", "result.json", "log.jsonl"} <= {
        p.name for p in folder.iterdir()}
    assert len((folder / "metrics.csv").read_text().splitlines()) == 1 + 20
    events = [json.loads(line)["event"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert events == ["start", "finished"]
    events = [json.loads(line)["event"] for line in (tmp_path / "ddp" / "resumed" / "log.jsonl").read_text().splitlines()]
    assert events == ["start", "interrupted", "resume", "finished"]


# ---------------------------------------------------------------------------- the command line

def _gammalimit(*argv, torchrun: int | None = None, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    launcher = [sys.executable, "-m", "gammalimit"]
    if torchrun:  # torchrun is torch.distributed.run
        launcher[1:2] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}", "-m"]
    return subprocess.run(launcher + list(argv), env=env, capture_output=True, text=True, timeout=300, **kw)


def test_python_m_gammalimit_help():
    done = _gammalimit("--help")
    assert done.returncode == 0 and "usage: gammalimit" in done.stdout


def test_torchrun_loss_prints_the_single_process_result_once(tmp_path, capsys):
    args = ("loss", "--manifold", "torus", "--scale", "1.2,0.9", "--pairs", str(2**16 + 10), "--json")
    done = _gammalimit(*args, torchrun=PROCESSES, cwd=tmp_path)  # --pairs: torchrun takes --n for its own
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 alone prints
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(list(args)) == 0
    finally:
        torch.set_num_threads(threads)
    assert json.loads(lines[0]) == json.loads(capsys.readouterr().out)


def test_torchrun_error_is_one_line_from_rank_zero(tmp_path):
    done = _gammalimit("loss", "--pairs", "1", torchrun=PROCESSES, cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("gammalimit loss")]
    assert done.returncode != 0 and len(errors) == 1 and "error" in errors[0]


def test_batch_shares_must_be_equal():
    with pytest.raises(ValueError, match="multiple of the 3 processes"):
        from gammalimit.train.batches import check_shares

        real = distributed.world_size
        distributed.world_size = lambda: 3
        try:
            check_shares(_config(qmc=False, batch_size=64))
        finally:
            distributed.world_size = real
    np.testing.assert_equal(distributed.gather_in_order([(2, "b"), (0, "a")]), ["a", "b"])


# ---------------------------------------------------------------------------- the pair pool of a run on samples

def _pool_config(folder: Path) -> TrainConfig:
    """A run on the samples in ``folder / "circle.npy"`` (written once, before any process reads them)."""
    return TrainConfig(data=str(folder / "circle.npy"), dim=1, latent_dim=2, steps=2, batch_size=16, hidden=(8,),
                       warmup=1, pool_pairs=1000, eval_pairs=64)


def _pool(out: Path) -> dict:
    from gammalimit import sampling

    sampling.block_size = lambda manifold: 64  # 16 blocks of the 1000 pool pairs, shared out over the ranks
    drawn, blocks = [], PointCloud.pool_blocks

    def counted(self, *args, **kw):
        for index, block in blocks(self, *args, **kw):
            drawn.append(index)
            yield index, block

    PointCloud.pool_blocks = counted
    trainer = Trainer(_pool_config(out.parent), progress=False)
    pool = trainer.pair_source().pairs
    return {"fields": [pool.x, pool.y, pool.midpoint, pool.dist], "fit": trainer.pool["fit"], "drawn": drawn}


def test_ddp_pool_is_drawn_in_shares_and_equals_one_process(tmp_path, monkeypatch):
    t = torch.linspace(0, 2 * torch.pi, 301, dtype=torch.float64)[:-1]
    np.save(tmp_path / "circle.npy", torch.stack([torch.cos(t), torch.sin(t), 0.1 * torch.cos(3 * t)], -1).numpy())
    ranks = _spawn("_pool", tmp_path / "ddp")
    monkeypatch.setattr("gammalimit.sampling.block_size", lambda manifold: 64)
    trainer = Trainer(_pool_config(tmp_path), progress=False)
    pool = trainer.pair_source().pairs
    assert len(pool) == 1000 and trainer.pool["fit"]
    # each rank drew its own blocks (i % 2 = rank), and none twice
    assert [got["drawn"] for got in ranks] == [list(range(0, 16, 2)), list(range(1, 16, 2))]
    for got in ranks:
        assert all(torch.equal(a, b) for a, b in zip(got["fields"], [pool.x, pool.y, pool.midpoint, pool.dist]))
        assert got["fit"] == trainer.pool["fit"]  # the last block's fit, as in one process
