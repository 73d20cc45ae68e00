"""Benchmark (not a study): building a PointCloud of many images, and drawing pairs from it.

    python studies/bench_cloud.py [--samples 100000] [--pixels 32] [--pairs 256]

Prints, and records in ``figures/bench_cloud.json``: the seconds to render the
images, to build the cloud (validation and scikit-learn's BallTree), to draw
``--pairs`` pairs with projected midpoints and with nearest-sample midpoints,
and the peak resident memory. No ``N x N`` matrix is ever formed.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch


def measure(samples: int, pixels: int, pairs: int) -> dict:
    from gammalimit import PointCloud, RotatingEllipse, sample_pairs

    t0 = time.perf_counter()
    M = RotatingEllipse(n_pixels=pixels)
    X = M.sample(samples, torch.Generator().manual_seed(0))
    t1 = time.perf_counter()
    cloud = PointCloud(X, dim=1)
    t2 = time.perf_counter()
    delta = cloud.default_delta()
    sample_pairs(cloud, pairs, delta, strategy="ball", seed=0)
    t3 = time.perf_counter()
    nearest = PointCloud(X, dim=1, midpoint="nearest")
    t4 = time.perf_counter()
    sample_pairs(nearest, pairs, delta, strategy="ball", seed=0)
    t5 = time.perf_counter()
    return {"samples": samples, "pixels": pixels, "ambient_dim": pixels**2, "delta": delta,
            "seconds_render": t1 - t0, "seconds_build": t2 - t1, "pairs": pairs,
            "projection_pairs_per_second": pairs / (t3 - t2), "nearest_pairs_per_second": pairs / (t5 - t4),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def main(argv=None) -> dict:
    from gammalimit.fileio import write_atomic
    from gammalimit.reproduce import FIGURES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--pixels", type=int, default=32)
    p.add_argument("--pairs", type=int, default=256)
    args = p.parse_args(argv)
    record = measure(args.samples, args.pixels, args.pairs)
    for key, value in record.items():
        print(f"{key:>30}: {value:.4g}" if isinstance(value, float) else f"{key:>30}: {value}")
    write_atomic(FIGURES / "bench_cloud.json", (json.dumps(record, indent=1) + "\n").encode())
    return record


if __name__ == "__main__":
    main()
