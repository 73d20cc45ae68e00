"""Shell against ball sampling: the limit constant kappa = E[r^4] measured as
the ratio of the two losses at small delta, and the per-pair variance of each
strategy (docs/theory.md, sections 2 and 3)."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from gammalimit import Circle, FlatTorus, Sphere, discrete_loss, symbolic
from gammalimit.testmaps import sphere_shear, torus_polynomial

#: place in `gammalimit reproduce`
ORDER = 30

CASES = [
    ("circle, 1.2 id", lambda: Circle(1.0), lambda x: 1.2 * x),
    ("sphere, polynomial phi", lambda: Sphere(1.0), sphere_shear),
    ("torus, polynomial phi", lambda: FlatTorus((1.0, 1.0)), torus_polynomial),
]


@dataclass
class Params:
    delta: float = 1e-2
    lam: float = 1.0
    n: int = 2_000_000
    seed: int = 0

    @classmethod
    def quick(cls) -> "Params":
        return cls(n=200_000)


def run(p: Params) -> dict:
    rows = []
    for label, make, phi in CASES:
        M = make()
        est = {s: discrete_loss(phi, M, delta=p.delta, lam=p.lam, n=p.n, strategy=s, antithetic=True,
                                seed=p.seed) for s in ("shell", "ball")}
        sh, ba = est["shell"], est["ball"]
        ratio = ba.total / sh.total
        ratio_se = ratio * math.hypot(ba.stderr / ba.total, sh.stderr / sh.total)
        rows.append({
            "label": label, "m": M.dim,
            "kappa_measured": ratio, "kappa_stderr": ratio_se,
            "kappa_symbolic": float(symbolic.kappa("ball", M.dim)) / float(symbolic.kappa("shell", M.dim)),
            "loss": {s: e.total for s, e in est.items()},
            "stderr": {s: e.stderr for s, e in est.items()},
            # variance per antithetic couple (2 pairs), and relative to the mean squared
            "unit_variance": {s: e.unit_variance for s, e in est.items()},
            "relative_variance": {s: e.unit_variance / e.total**2 for s, e in est.items()},
        })
    return {"delta": p.delta, "rows": rows}


def summary(data: dict) -> list[dict]:
    out = []
    for r in data["rows"]:
        # O(delta^2) bias in the ratio, plus 4 standard errors
        tol = 4 * r["kappa_stderr"] + 10 * data["delta"] ** 2
        out.append({"quantity": f"{r['label']}: kappa_ball/kappa_shell", "measured": r["kappa_measured"],
                    "expected": f"{r['kappa_symbolic']:.4f} = m/(m+4)",
                    "passed": bool(abs(r["kappa_measured"] - r["kappa_symbolic"]) <= tol)})
    return out


def plot(data: dict):
    import matplotlib.pyplot as plt

    rows = data["rows"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    x = np.arange(len(rows))
    a1.errorbar(x, [r["kappa_measured"] for r in rows], yerr=[4 * r["kappa_stderr"] for r in rows], fmt="o",
                capsize=4, label=r"measured $L_\delta^{ball}/L_\delta^{shell}$ ($\pm 4\sigma$)")
    a1.plot(x, [r["kappa_symbolic"] for r in rows], "k_", ms=20, mew=2, label=r"symbolic $m/(m+4)$")
    a1.set_xticks(x, [r["label"] for r in rows], fontsize=7)
    a1.set_ylabel(r"$\kappa$")
    a1.legend(fontsize=7)
    a1.set_title(rf"limit constants at $\delta$ = {data['delta']:g}", fontsize=10)
    w = 0.38
    for k, (s, c) in enumerate((("shell", "C0"), ("ball", "C1"))):
        a2.bar(x + (k - 0.5) * w, [r["relative_variance"][s] for r in rows], w, color=c, label=s)
    a2.set_yscale("log")
    a2.set_xticks(x, [r["label"] for r in rows], fontsize=7)
    a2.set_ylabel(r"per-couple variance / $L_\delta^2$")
    a2.set_title("Monte Carlo efficiency (antithetic couples)", fontsize=10)
    a2.legend(fontsize=8)
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
