"""Samples alone: the bias of L_delta from the point-cloud surrogates, where the exact geometry is known
(docs/theory.md, section 8).

Data are drawn from manifolds whose distance and Riemannian average are known
(the unit sphere, the Swiss roll, rotating-ellipse images); a
:class:`~gammalimit.PointCloud` of the samples sees only the samples. For
``phi = a id`` every pair's penalties with the surrogates are compared with
those of the same pair with the exact ``d`` and ``av``
(:func:`gammalimit.surrogates.surrogate_bias`), which isolates each
surrogate's bias from the Monte Carlo noise:

- chord distance: ``O(delta^2)``;
- chord midpoint projected onto a local polynomial fit over the samples within
  ``delta`` (degree ``p``): ``O(delta^(p-1))`` by the fit's error ``h^(p+1)``,
  except that a least-squares fit centred at the query cancels its odd error
  term there, so ``p = 2`` is measured at order 2 like ``p = 3``; ``p = 1``
  (a tangent plane) leaves an ``O(1)`` bias;
- nearest sample: ``4 a^2 s^2 / delta^4`` with ``s^2 = 1 / (pi rho)`` the mean
  squared distance to the nearest of ``N`` uniform samples (density ``rho``);
- noise of size ``sigma`` on the samples: an excess bias of order ``(sigma/delta^2)^2``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from gammalimit import PointCloud, RotatingEllipse, Sphere, SwissRoll
from gammalimit.analysis import fit_order
from gammalimit.plotting import reference_slope
from gammalimit.surrogates import surrogate_bias

#: place in `gammalimit reproduce`
ORDER = 90


@dataclass
class Params:
    scale: float = 1.1
    lam: float = 1.0
    n_pairs: int = 1024
    seed: int = 0
    max_fit_points: int = 1024
    degrees: tuple[int, ...] = (1, 2, 3)
    # unit sphere and Swiss roll: N samples, deltas
    sphere_samples: int = 12000
    sphere_deltas: tuple[float, ...] = (0.4, 0.28, 0.2, 0.14, 0.1)
    roll_samples: int = 12000
    roll_deltas: tuple[float, ...] = (4.0, 2.8, 2.0, 1.4, 1.0)
    # rotating-ellipse images (n_pixels x n_pixels), dimension 1
    image_samples: int = 2000
    image_pixels: int = 32
    # the curve of images turns with radius about 0.03 in pixel space: delta well below it
    image_deltas: tuple[float, ...] = (0.008, 0.0056, 0.004, 0.0028, 0.002)
    image_degrees: tuple[int, ...] = (1, 3)
    image_pairs: int = 512
    # nearest-sample midpoint on the sphere: sample counts at two deltas
    nearest_samples: tuple[int, ...] = (2000, 8000, 32000)
    nearest_deltas: tuple[float, ...] = (0.4, 0.2)
    # noise on the sphere's samples at one delta
    noise_sigmas: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)
    noise_delta: float = 0.3
    noise_samples: int = 12000
    noise_pairs: int = 4096
    order_tolerance: float = 0.35
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick(cls) -> "Params":
        return cls(n_pairs=512, sphere_samples=6000, sphere_deltas=(0.5, 0.35, 0.25), roll_samples=6000,
                   roll_deltas=(5.0, 3.5, 2.5), image_samples=600, image_pixels=24,
                   image_deltas=(0.008, 0.0056, 0.004), nearest_samples=(1000, 4000), nearest_deltas=(0.4,),
                   noise_sigmas=(1e-3, 3e-3, 1e-2), noise_samples=6000, noise_pairs=1024, degrees=(1, 3),
                   image_pairs=256,
                   max_fit_points=512, order_tolerance=0.5)


def _samples(manifold, n, seed):
    return manifold.sample(n, torch.Generator().manual_seed(seed))


def _phi(scale):
    return lambda x: scale * x


def bias_against_delta(manifold, n_samples, deltas, p: Params, dim: int, degrees=None, n_pairs=None) -> dict:
    """Per delta: the distance surrogate's bias, and the midpoint's for each fit degree."""
    degrees, n_pairs = degrees or p.degrees, n_pairs or p.n_pairs
    X = _samples(manifold, n_samples, p.seed)
    rows = {"delta": list(deltas), "distance": [], "distance_se": [], "exact": [], "degrees": list(degrees)}
    for degree in degrees:
        cloud = PointCloud(X, dim=dim, degree=degree, max_fit_points=p.max_fit_points)
        mids, ses, residuals = [], [], []
        for d in deltas:
            b = surrogate_bias(_phi(p.scale), manifold, cloud, delta=d, lam=p.lam, n=n_pairs, seed=p.seed + 1)
            mids.append(b.bias["midpoint"])
            ses.append(b.stderr["midpoint"])
            residuals.append(cloud.last_fit["residual_over_delta2"])
            if degree == degrees[0]:
                rows["distance"].append(b.bias["distance"])
                rows["distance_se"].append(b.stderr["distance"])
                rows["exact"].append(b.exact)
        rows[f"midpoint_p{degree}"], rows[f"midpoint_p{degree}_se"] = mids, ses
        rows[f"fit_residual_over_delta2_p{degree}"] = residuals
    for key in ["distance"] + [f"midpoint_p{d}" for d in degrees]:
        rows[f"{key}_fit"] = _fit(deltas, rows[key], rows[f"{key}_se"])
    return rows


def _fit(h, err, se):
    h, err, se = map(np.asarray, (h, err, se))
    ok = np.abs(err) > 2 * se
    return fit_order(h[ok], err[ok], se[ok]).to_dict() if ok.sum() >= 3 else None


def run_nearest(p: Params) -> dict:
    S = Sphere(1.0)
    out = {"N": list(p.nearest_samples), "delta": list(p.nearest_deltas), "bias": {}, "se": {}, "predicted": {}}
    for d in p.nearest_deltas:
        out["bias"][str(d)], out["se"][str(d)], out["predicted"][str(d)] = [], [], []
        for N in p.nearest_samples:
            cloud = PointCloud(_samples(S, N, p.seed), dim=2, midpoint="nearest")
            b = surrogate_bias(_phi(p.scale), S, cloud, delta=d, lam=p.lam, n=p.n_pairs, seed=p.seed + 1)
            out["bias"][str(d)].append(b.bias["midpoint"])
            out["se"][str(d)].append(b.stderr["midpoint"])
            s2 = 4 * math.pi / (math.pi * N)  # 1/(pi rho), rho = N / (4 pi)
            out["predicted"][str(d)].append(p.lam * 4 * p.scale**2 * s2 / d**4)
    d0 = str(p.nearest_deltas[0])
    out["N_fit"] = fit_order(p.nearest_samples, out["bias"][d0]).to_dict() if len(p.nearest_samples) >= 3 else None
    return out


def run_noise(p: Params) -> dict:
    S = Sphere(1.0)
    X = _samples(S, p.noise_samples, p.seed)
    noise = torch.randn(X.shape, generator=torch.Generator().manual_seed(p.seed + 7), dtype=X.dtype)
    rows = {"sigma": [0.0, *p.noise_sigmas], "bias": [], "se": [], "residual_over_delta2": [],
            "delta": p.noise_delta}
    for sigma in rows["sigma"]:
        cloud = PointCloud(X + sigma * noise, dim=2, max_fit_points=p.max_fit_points)
        b = surrogate_bias(_phi(p.scale), S, cloud, delta=p.noise_delta, lam=p.lam, n=p.noise_pairs,
                           seed=p.seed + 1, clean=lambda x: x / torch.linalg.vector_norm(x, dim=-1, keepdim=True))
        rows["bias"].append(b.bias["both"])
        rows["se"].append(b.stderr["both"])
        rows["residual_over_delta2"].append(cloud.last_fit["residual_over_delta2"])
    excess = np.array(rows["bias"][1:]) - rows["bias"][0]
    rows["excess"] = excess.tolist()
    rows["floor"] = [(s / p.noise_delta**2) ** 2 for s in p.noise_sigmas]
    rows["sigma_fit"] = fit_order(p.noise_sigmas, np.maximum(np.abs(excess), 1e-300)).to_dict()
    return rows


def run(p: Params) -> dict:
    return {
        "sphere": bias_against_delta(Sphere(1.0), p.sphere_samples, p.sphere_deltas, p, dim=2),
        "roll": bias_against_delta(SwissRoll(), p.roll_samples, p.roll_deltas, p, dim=2),
        "images": bias_against_delta(RotatingEllipse(n_pixels=p.image_pixels), p.image_samples, p.image_deltas,
                                     p, dim=1, degrees=p.image_degrees, n_pairs=p.image_pairs),
        "nearest": run_nearest(p),
        "noise": run_noise(p),
        "tolerance": p.order_tolerance,
    }


def _order_row(label, fit, expected, tol):
    measured = fit["order"] if fit else "unresolved"
    return {"quantity": label, "measured": measured, "expected": f"{expected} +- {tol}",
            "passed": bool(fit and abs(fit["order"] - expected) <= tol)}


def summary(data: dict) -> list[dict]:
    tol, rows = data["tolerance"], []
    for case in ("sphere", "roll", "images"):
        c = data[case]
        rows.append(_order_row(f"{case}: chord distance, order in delta", c["distance_fit"], 2, tol))
        for degree in c["degrees"]:
            fit = c[f"midpoint_p{degree}_fit"]
            if degree == 1:  # a plane through the neighbours: an O(1) bias that does not decay with delta
                rows.append(_order_row(f"{case}: projected midpoint, degree 1 (plane), order in delta", fit, 0, tol))
            else:
                rows.append(_order_row(f"{case}: projected midpoint, degree {degree}, order in delta", fit, 2, tol))
    n = data["nearest"]
    ratio = np.array([np.array(n["bias"][k]) / np.array(n["predicted"][k]) for k in n["bias"]])
    rows.append({"quantity": "sphere: nearest-sample midpoint bias / (4 a^2 s^2 / delta^4)",
                 "measured": f"{ratio.min():.3g}..{ratio.max():.3g}", "expected": "about 1: 0.7..1.3",
                 "passed": bool(0.7 < ratio.min() and ratio.max() < 1.3)})
    z = data["noise"]
    rows.append(_order_row("sphere: excess bias from noise, order in sigma", z["sigma_fit"], 2, tol))
    ratio = np.array(z["excess"]) / np.array(z["floor"])
    rows.append({"quantity": "sphere: excess noise bias / (sigma/delta^2)^2 (largest two sigma)",
                 "measured": f"{ratio[-2:].min():.3g}..{ratio[-2:].max():.3g}", "expected": "O(1): 0.2..10",
                 "passed": bool(0.2 < ratio[-2:].min() and ratio[-2:].max() < 10)})
    return rows


def plot(data: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(21, 4.2))
    titles = {"sphere": r"$S^2$", "roll": "Swiss roll", "images": "rotating-ellipse images"}
    for ax, case in zip(axes[:3], ("sphere", "roll", "images")):
        c = data[case]
        d = np.array(c["delta"])
        ax.loglog(d, np.abs(c["distance"]), "o-", label="chord distance")
        for degree in c["degrees"]:
            ax.loglog(d, np.abs(c[f"midpoint_p{degree}"]), "s-" if degree > 1 else "^--", color=f"C{degree}",
                      label=f"projected midpoint, p = {degree}")
        reference_slope(ax, d, float(np.abs(c["distance"][0])), 2, r"$\delta^2$")
        ax.set_xlabel(r"$\delta$")
        ax.set_title(f"{titles[case]}: bias of $L_\\delta$", fontsize=10)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(r"$|E[l(\mathrm{surrogate}) - l(\mathrm{exact})]|$")
    n = data["nearest"]
    for i, k in enumerate(n["bias"]):
        axes[3].loglog(n["N"], n["bias"][k], "o", color=f"C{i}", label=rf"measured, $\delta$ = {k}")
        axes[3].loglog(n["N"], n["predicted"][k], "-", color=f"C{i}", lw=1, label=r"$4a^2s^2/\delta^4$")
    axes[3].set_xlabel("samples N")
    axes[3].set_xticks(n["N"], [f"{k:d}" for k in n["N"]])
    axes[3].minorticks_off()
    axes[3].set_title("nearest-sample midpoint ($S^2$)", fontsize=10)
    axes[3].legend(fontsize=7)
    z = data["noise"]
    axes[4].loglog(z["sigma"][1:], np.abs(z["excess"]), "o-", label="excess bias over sigma = 0")
    axes[4].loglog(z["sigma"][1:], z["floor"], "k--", lw=1, label=r"$(\sigma/\delta^2)^2$")
    axes[4].set_xlabel(r"noise $\sigma$")
    axes[4].set_title(rf"noisy samples ($S^2$, $\delta$ = {data['noise'].get('delta', '')})", fontsize=10)
    axes[4].legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
