"""GPU check: ``discrete_loss``, the limit integrand and a short training run on CUDA, against the
same work on the CPU, written to ``figures/bench_gpu.json``.

Run: ``make gpu-check`` (or ``python studies/gpu_check.py [--out FILE] [--pairs N] [--steps N]``).
Without a CUDA device it says so in one line and exits with status 2, writing nothing.

What runs where: pairs are drawn on the CPU in float64 (the sampler is CPU code); the encoder
(a tanh MLP on the flat torus in R^4, and the default rotating-ellipse training run) runs on the
device. For ``discrete_loss`` and the limit integrand the check also compares the CUDA values with
the CPU values (float64 on both: they agree to round-off, which the file records).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from gammalimit import FlatTorus, discrete_loss, sample_pairs
from gammalimit.functional import limit_terms
from gammalimit.reproduce import write_atomic
from gammalimit.train import TrainConfig, train


class OnDevice(torch.nn.Module):
    """``phi`` evaluated on ``device``: inputs moved there, codes moved back (float64)."""

    def __init__(self, module, device):
        super().__init__()
        self.module = module.to(device)
        self.device = device

    def forward(self, x):
        return self.module(x.to(self.device)).to(x.device)


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 256), torch.nn.Tanh(), torch.nn.Linear(256, 256), torch.nn.Tanh(),
                               torch.nn.Linear(256, 4)).double()


def _timed(fn, repeats: int = 3):
    best, value = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        value = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "figures" / "bench_gpu.json"))
    p.add_argument("--pairs", type=int, default=1 << 18)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--device", default="cuda", help="cuda (default); cpu runs the same script as a dry run")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device (torch.cuda.is_available() is False); nothing written", file=sys.stderr)
        return 2
    cuda, cpu = torch.device(args.device), torch.device("cpu")
    M = FlatTorus()
    record = {"device": torch.cuda.get_device_name(0) if cuda.type == "cuda" else "cpu (dry run)", "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads(),
              "pairs": args.pairs}
    phi = _mlp(0)
    phis = {"cpu": phi, "device": OnDevice(_mlp(0), cuda)}
    loss = {}
    for name, f in phis.items():
        seconds, est = _timed(lambda f=f: discrete_loss(f, M, delta=0.05, lam=0.1, n=args.pairs, seed=0))
        loss[name] = {"seconds": seconds, "pairs_per_second": args.pairs / seconds, "total": est.total}
    loss["relative_difference"] = abs(loss["device"]["total"] - loss["cpu"]["total"]) / abs(loss["cpu"]["total"])
    record["discrete_loss"] = loss
    pairs = sample_pairs(M, 1 << 14, 0.05, antithetic=True, seed=1)
    limit = {}
    values = {}
    for name, f in phis.items():
        seconds, terms = _timed(lambda f=f: limit_terms(f, M, pairs))
        values[name] = torch.stack(list(terms.values()), -1)
        limit[name] = {"seconds": seconds, "pairs_per_second": len(pairs) / seconds}
    limit["max_relative_difference"] = float(((values["device"] - values["cpu"]).abs()
                                              / values["cpu"].abs().clamp_min(1e-300)).max())
    record["limit_integrand"] = limit
    runs = {}
    for name, device in (("cpu", cpu), ("device", cuda)):
        config = TrainConfig(manifold="rotating-ellipse", steps=args.steps, limit="none", eval_pairs=4096,
                             device=device.type)
        t0 = time.perf_counter()
        result = train(config, progress=False)
        runs[name] = {"seconds": time.perf_counter() - t0, "steps_per_second": args.steps / result.seconds,
                             "timing": result.timing, "L_delta": result.evaluation["L_delta"]["total"]}
    record["train"] = runs
    write_atomic(Path(args.out), (json.dumps(record, indent=1) + "\n").encode())
    print(json.dumps({k: v for k, v in record.items() if k != "train"}, indent=1))
    print(f"train steps/s: cpu {runs['cpu']['steps_per_second']:.1f}, {cuda.type} "
          f"{runs['device']['steps_per_second']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
