"""Benchmark: training steps per second on the rotating-ellipse default, and the share of a step
spent drawing pairs, with pairs drawn in chart coordinates (``ImageManifold.pairs_in_chart``, the
default) against the generic route (an inverse chart, Gauss-Newton, per point: the route before it).

Run: ``python studies/bench_train.py [--steps 200] [--repeats 3] [--out figures/bench_train.json]``.
Both routes run in this process, alternately, ``repeats`` times each; the median is reported, so
that a shared machine disturbs both alike; the speed-up is the ratio of the medians, and beside it the
median of each round's ratio (the two routes of a round run back to back). Writes the measured figures
as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from gammalimit.manifolds.image_base import ImageManifold
from gammalimit.reproduce import write_atomic
from gammalimit.train import TrainConfig, train


def one_run(steps: int, chart: bool) -> dict:
    """``steps`` steps of the default rotating-ellipse run; ``chart=False`` hides the chart sampler."""
    saved = ImageManifold.pairs_in_chart
    if not chart:
        del ImageManifold.pairs_in_chart
    try:
        config = TrainConfig(manifold="rotating-ellipse", steps=steps, limit="none", eval_pairs=2)
        t0 = time.perf_counter()
        result = train(config, progress=False, evaluate_final=False)
        wall = time.perf_counter() - t0
    finally:
        ImageManifold.pairs_in_chart = saved
    t = result.timing
    return {"steps_per_second": t["steps"] / t["seconds_step"], "sampling_share": t["seconds_sampling"] / t["seconds_step"],
            "seconds_sampling": t["seconds_sampling"], "seconds_step": t["seconds_step"], "wall": wall,
            "batch_size": config.batch_size}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "figures" / "bench_train.json"))
    args = parser.parse_args(argv)
    runs = {"chart": [], "generic": []}
    for _ in range(args.repeats):
        for route in ("generic", "chart"):
            runs[route].append(one_run(args.steps, route == "chart"))
    summary = {}
    for route, rows in runs.items():
        summary[route] = {key: statistics.median(r[key] for r in rows)
                          for key in ("steps_per_second", "sampling_share", "seconds_sampling", "seconds_step")}
        print(f"{route:8s} {summary[route]['steps_per_second']:7.1f} steps/s, sampling "
              f"{100 * summary[route]['sampling_share']:.0f}% of a step (median of {args.repeats})")
    speedup = summary["chart"]["steps_per_second"] / summary["generic"]["steps_per_second"]
    rounds = [c["steps_per_second"] / g["steps_per_second"] for c, g in zip(runs["chart"], runs["generic"])]
    print(f"speed-up {speedup:.2f}x (median of the rounds' ratios {statistics.median(rounds):.2f}x, "
          f"range {min(rounds):.2f}-{max(rounds):.2f}x)")
    record = {"benchmark": "train steps, rotating-ellipse default (TrainConfig(manifold='rotating-ellipse'))",
              "steps": args.steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "summary": summary, "speedup": speedup, "speedup_rounds": rounds,
              "speedup_rounds_median": statistics.median(rounds), "runs": runs}
    write_atomic(Path(args.out), (json.dumps(record, indent=1) + "\n").encode())
    return record


if __name__ == "__main__":
    main()
