"""Error of the L_delta estimate against the number of pairs N: plain Monte
Carlo, antithetic pairs and scrambled Sobol QMC, against exact references
(docs/theory.md, sections 2 and 6)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from gammalimit import Circle, FlatTorus, Sphere, discrete_loss
from gammalimit.analysis import fit_order
from gammalimit.embeddings import exact_discrete_loss, scaled_identity

#: place in `gammalimit reproduce`
ORDER = 20

# (label, manifold, scale, strategy): strategies chosen so that the pair
# penalty varies from pair to pair (the shell on a round manifold is constant)
CASES = [
    ("circle, ball", lambda: Circle(1.0), 0.9, "ball"),
    ("sphere, ball", lambda: Sphere(1.0), 0.9, "ball"),
    ("torus, shell", lambda: FlatTorus((1.0, 1.0)), (0.8, 1.1), "shell"),
]
ESTIMATORS = {
    "plain MC": dict(),
    "antithetic": dict(antithetic=True),
    "QMC (Sobol)": dict(qmc=True),
}
EXPECTED = {"plain MC": -0.5, "antithetic": -0.5, "QMC (Sobol)": -1.0}


@dataclass
class Params:
    delta: float = 0.2
    lam: float = 1.0
    log2_sizes: tuple[int, ...] = tuple(range(8, 19))
    seeds: int = 8
    qmc_replicates: int = 8

    @classmethod
    def quick(cls) -> "Params":
        return cls(log2_sizes=tuple(range(7, 13)), seeds=16)


def run(p: Params) -> dict:
    out = {"cases": []}
    for label, make, scale, strategy in CASES:
        M = make()
        phi = scaled_identity(M, scale)
        exact = exact_discrete_loss(M, scale, delta=p.delta, lam=p.lam, strategy=strategy).total
        case = {"label": label, "exact": exact, "estimators": {}}
        for name, kw in ESTIMATORS.items():
            sizes, rmse, rmse_se = [], [], []
            for k in p.log2_sizes:
                n = p.qmc_replicates * 2**k if "qmc" in kw else 2**k
                errs = np.array([discrete_loss(phi, M, delta=p.delta, lam=p.lam, n=n, strategy=strategy, seed=s,
                                               qmc_replicates=p.qmc_replicates, **kw).total - exact
                                 for s in range(p.seeds)])
                sizes.append(n)
                rmse.append(float(np.sqrt(np.mean(errs**2))))
                # delta method: se of RMSE from the spread of squared errors
                rmse_se.append(float(np.std(errs**2) / np.sqrt(p.seeds) / (2 * rmse[-1])))
            fit = fit_order(sizes, rmse)
            case["estimators"][name] = {"n": sizes, "rmse": rmse, "rmse_se": rmse_se, "fit": fit.to_dict()}
        out["cases"].append(case)
    return out


def summary(data: dict) -> list[dict]:
    rows = []
    for case in data["cases"]:
        for name, est in case["estimators"].items():
            order, ci = est["fit"]["order"], est["fit"]["ci"]
            expected = EXPECTED[name]
            # MC rates are exact; QMC "close to N^-1" (docs/theory.md, section 5): faster than N^-0.75
            passed = (ci[0] - 0.1 <= expected <= ci[1] + 0.1) if "QMC" not in name else order < -0.75
            rows.append({"quantity": f"{case['label']}: {name} rate", "measured": order,
                         "expected": f"{expected:+.1f}" if "QMC" not in name else "< -0.75 (~ -1)",
                         "passed": bool(passed)})
    return rows


def plot(data: dict):
    import matplotlib.pyplot as plt

    cases = data["cases"]
    fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.8), sharey=True)
    for ax, case in zip(axes, cases):
        for name, est in case["estimators"].items():
            n = np.array(est["n"])
            ax.errorbar(n, est["rmse"], yerr=est["rmse_se"], marker="o", ms=3, capsize=2,
                        label=f"{name} ({est['fit']['order']:+.2f})")
        n = np.array(case["estimators"]["plain MC"]["n"], float)
        ref = case["estimators"]["plain MC"]["rmse"][0]
        ax.loglog(n, ref * (n / n[0]) ** -0.5, "k:", lw=1, label=r"$N^{-1/2}$")
        ax.loglog(n, ref * (n / n[0]) ** -1.0, "k--", lw=1, label=r"$N^{-1}$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(case["label"])
        ax.set_xlabel("pairs N")
        ax.legend(fontsize=7)
    axes[0].set_ylabel(r"RMS error of $L_\delta$ estimate")
    fig.suptitle(r"Sample convergence at $\delta$ = %g (exact reference, section 5)" % 0.2, fontsize=10)
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
