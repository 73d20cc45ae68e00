"""Benchmark: pairs per second of the limit integrand against ``discrete_loss``.

For each (manifold, encoder) — the polynomial map of the unit sphere
(``testmaps.sphere_polynomial``) and a tanh MLP on the flat torus
(``testmaps.random_mlp``) — measures, back to back in one process,
``discrete_loss`` (sampling included) and ``limit_integrand`` on the same
drawn pairs by the chart route (full chart Hessian per point) and by the jvp
route (one batched nested jvp along the geodesics). The machine may be
shared, so the ratios of rates measured back to back are the numbers to
compare; each is the median of ``--repeat`` rounds.

    python studies/bench_limit.py [--n 65536] [--repeat 3] [--out figures/bench_limit.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

CASES = ("sphere, polynomial", "torus, tanh MLP")


def _setup(case: str):
    import gammalimit as gl
    from gammalimit.testmaps import random_mlp, sphere_polynomial

    if case == "sphere, polynomial":
        return gl.Sphere(1.0), sphere_polynomial
    return gl.FlatTorus((1.0, 1.0)), random_mlp(seed=2)


def _rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def measure(case: str, n: int, repeat: int) -> dict:
    import torch

    import gammalimit as gl
    from gammalimit.sampling import sample_pairs

    M, phi = _setup(case)
    pairs = sample_pairs(M, n, 0.01, seed=0)
    fast = gl.limit_integrand(phi, M, pairs, lam=1.0)
    slow = gl.limit_integrand(phi, M, pairs, lam=1.0, route="chart")
    agree = float((fast - slow).abs().max() / slow.abs().max())
    rounds = []
    for _ in range(repeat):
        r = {"discrete_loss": _rate(lambda: gl.discrete_loss(phi, M, delta=0.01, lam=1.0, n=n, seed=0), n),
             "chart": _rate(lambda: gl.limit_integrand(phi, M, pairs, lam=1.0, route="chart"), n),
             "jvp": _rate(lambda: gl.limit_integrand(phi, M, pairs, lam=1.0), n)}
        r["jvp/discrete_loss"] = r["jvp"] / r["discrete_loss"]
        r["chart/discrete_loss"] = r["chart"] / r["discrete_loss"]
        r["jvp/chart"] = r["jvp"] / r["chart"]
        rounds.append(r)
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {"case": case, "n": n, "threads": torch.get_num_threads(), "rounds": rounds, "median": median,
            "jvp_vs_chart_max_relative_difference": agree}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1 << 16, help="pairs per measurement")
    p.add_argument("--repeat", type=int, default=3, help="rounds; the median of each rate and ratio is reported")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    rows = [measure(case, args.n, args.repeat) for case in CASES]
    print(f"{'case':>20} {'discrete_loss':>14} {'chart':>10} {'jvp':>10} {'jvp/dl':>7} {'chart/dl':>8} "
          f"{'jvp/chart':>9}  (pairs/s, medians)")
    for r in rows:
        m = r["median"]
        print(f"{r['case']:>20} {m['discrete_loss']:>14.3e} {m['chart']:>10.3e} {m['jvp']:>10.3e} "
              f"{m['jvp/discrete_loss']:>7.3f} {m['chart/discrete_loss']:>8.3f} {m['jvp/chart']:>9.1f}")
    result = {"machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version(),
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
              "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
