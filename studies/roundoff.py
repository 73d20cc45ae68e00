"""Round-off floor of the bending term: float32 against float64 as delta
shrinks, with the predicted relative error eps / delta^2 (docs/theory.md, section 5).

The per-pair second difference ``phi(x) + phi(y) - 2 phi(av)`` is compared
with its exact value ``-4 a sin^2(d/4R) av`` (no cancellation) for
``phi = a id`` on the unit sphere. The loss-level error (the mean of
``l_B``) behaves differently: first-order round-off averages out over pairs,
leaving ``(eps/delta^2)^2`` plus ``(eps/delta^2)/sqrt(N)``; it is drawn too."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from gammalimit import Sphere, discrete_loss, sample_pairs
from gammalimit.analysis import fit_order
from gammalimit.embeddings import exact_discrete_loss
from gammalimit.loss import roundoff_error

#: place in `gammalimit reproduce`
ORDER = 40


@dataclass
class Params:
    scale: float = 0.9
    deltas: tuple[float, ...] = tuple(10.0 ** -np.arange(0.5, 6.01, 0.5))
    n: int = 20_000
    seed: int = 0

    @classmethod
    def quick(cls) -> "Params":
        return cls(n=2_000)


def bending_vectors(S, pairs, scale, dtype):
    """Per pair ``phi(x) + phi(y) - 2 phi(av)`` computed in ``dtype``, and its
    exact value ``-4 a sin^2(s/4) av`` (no cancellation; ``s = d/R``)."""
    cast = lambda z: (scale * z).to(dtype)  # noqa: E731
    computed = (cast(pairs.x) + cast(pairs.y) - 2 * cast(pairs.midpoint)).double()
    s = pairs.dist / S.radius
    exact = -4 * scale * torch.sin(s / 4)[:, None] ** 2 * pairs.midpoint
    return computed, exact


def run(p: Params) -> dict:
    S = Sphere(1.0)
    out = {"delta": list(p.deltas), "predicted": {}, "median": {}, "p90": {}, "loss_error": {}}
    for dtype in (torch.float64, torch.float32):
        name = str(dtype).removeprefix("torch.")
        med, p90, loss_err = [], [], []
        for d in p.deltas:
            pairs = sample_pairs(S, p.n, d, seed=p.seed)
            computed, exact = bending_vectors(S, pairs, p.scale, dtype)
            rel = torch.linalg.vector_norm(computed - exact, dim=-1) / torch.linalg.vector_norm(exact, dim=-1)
            med.append(float(rel.median()))
            p90.append(float(rel.quantile(0.9)))
            # the loss-level error: mean of |b|^2 / delta^4 against the exact L_delta bending
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the warning is what this study measures
                est = discrete_loss(lambda x, dt=dtype: (p.scale * x).to(dt), S, delta=d, lam=1.0, n=p.n,
                                    seed=p.seed)
            exact_b = exact_discrete_loss(S, p.scale, delta=d, lam=1.0).bending
            loss_err.append(abs(est.bending - exact_b) / exact_b)
        out["median"][name], out["p90"][name], out["loss_error"][name] = med, p90, loss_err
        out["predicted"][name] = [roundoff_error(dtype, d) for d in p.deltas]
    d = np.array(p.deltas)
    for name in ("float32", "float64"):
        e = np.array(out["median"][name])
        mask = (e > 0) & (e < 0.1) & (np.array(out["predicted"][name]) > 1e-13)
        out[f"{name}_fit"] = fit_order(d[mask], e[mask]).to_dict() if mask.sum() >= 3 else None
    return out


def summary(data: dict) -> list[dict]:
    rows = []
    for name in ("float32", "float64"):
        fit = data[f"{name}_fit"]
        rows.append({"quantity": f"{name}: per-pair bending round-off order",
                     "measured": fit["order"] if fit else "too few points", "expected": "-2 (eps/delta^2)",
                     "passed": bool(fit and -2.3 < fit["order"] < -1.7)})
        ratio = np.array(data["median"][name]) / np.array(data["predicted"][name])
        keep = np.array(data["median"][name]) < 0.1
        rows.append({"quantity": f"{name}: median error / (eps/delta^2)",
                     "measured": f"{ratio[keep].min():.2g}..{ratio[keep].max():.2g}", "expected": "O(1): 0.1..10",
                     "passed": bool(keep.any() and 0.1 < ratio[keep].min() and ratio[keep].max() < 10)})
    return rows


def plot(data: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4))
    d = np.array(data["delta"])
    for name, color in (("float64", "C0"), ("float32", "C3")):
        ax.loglog(d, data["median"][name], "o-", color=color, label=f"{name}: per pair, median")
        ax.fill_between(d, data["median"][name], data["p90"][name], color=color, alpha=0.2)
        ax.loglog(d, np.maximum(data["loss_error"][name], 1e-17), "x:", color=color, ms=4,
                  label=f"{name}: mean $l_B$ (loss level)")
        ax.loglog(d, data["predicted"][name], "--", color=color, lw=1, label=rf"{name}: $\epsilon/\delta^2$")
    ax.set_ylim(1e-17, 1e3)
    ax.set_xlabel(r"$\delta$")
    ax.set_ylabel(r"relative error of $\phi(x)+\phi(y)-2\phi(av)$")
    ax.set_title(r"Round-off: $\phi = 0.9\,\mathrm{id}$ on $S^2$, shell pairs", fontsize=10)
    ax.legend(fontsize=8)
    ax.invert_xaxis()
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
