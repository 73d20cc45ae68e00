"""Benchmark: pairs per second and peak memory of ``discrete_loss``.

Streams ``n`` pairs of the scaled identity on the unit sphere (sampling
included) and compares, in the same run, with a naive one-shot implementation
that materialises all ``n`` pairs at once through the generic manifold
methods (``sample``, ``random_unit_tangent``, ``exp``, ``dist``, ``midpoint``).
Each measurement runs in a fresh subprocess so that its peak resident memory
(``ru_maxrss``) is its own.

    python studies/bench_loss.py [--sizes 1e5,1e6,1e7] [--repeat 3] [--out figures/bench_loss.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def naive_loss(manifold, phi, delta, lam, n, seed):
    """All pairs at once: the reference a user would write first."""
    import torch

    from gammalimit.penalties import Bending, SquaredDistortion

    g = torch.Generator().manual_seed(seed)
    x = manifold.sample(n, g)
    v = manifold.random_unit_tangent(x, g)
    y = manifold.exp(x, delta * v)
    mid = manifold.midpoint(x, y)
    d = manifold.dist(x, y)
    px, py, pm = phi(x), phi(y), phi(mid)
    total = SquaredDistortion().pair(px - py, px + py - 2 * pm, d, delta) + lam * Bending().pair(px - py, px + py - 2 * pm, d, delta)
    return float(total.mean()), float(total.std() / n**0.5)


def _one(kind: str, n: int) -> dict:
    import torch

    import gammalimit as gl

    S = gl.Sphere(1.0)
    phi = lambda x: 0.9 * x  # noqa: E731
    t = time.perf_counter()
    if kind == "stream":
        est = gl.discrete_loss(phi, S, delta=0.01, lam=1.0, n=n, seed=0)
        value = est.total
    else:
        value, _ = naive_loss(S, phi, 0.01, 1.0, n, 0)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    return {"kind": kind, "n": n, "seconds": dt, "pairs_per_second": n / dt, "peak_rss_mib": rss,
            "value": value, "threads": torch.get_num_threads()}


def measure(kind: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(n)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1e5,1e6,1e7")
    p.add_argument("--repeat", type=int, default=3, help="best of this many runs per point")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_one(args.child[0], int(args.child[1]))))
        return {}
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    rows = []
    print(f"{'n':>10} {'kind':>7} {'pairs/s':>12} {'peak MiB':>9}")
    for n in sizes:
        for kind in ("stream", "naive"):
            best = max((measure(kind, n) for _ in range(args.repeat)), key=lambda r: r["pairs_per_second"])
            rows.append(best)
            print(f"{n:>10} {kind:>7} {best['pairs_per_second']:>12.3e} {best['peak_rss_mib']:>9.0f}")
    for n in sizes:
        s, v = (next(r for r in rows if r["n"] == n and r["kind"] == k) for k in ("stream", "naive"))
        print(f"n={n:.0e}: streamed/naive throughput = {s['pairs_per_second'] / v['pairs_per_second']:.2f}x")
    result = {
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
