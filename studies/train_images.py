"""Trained encoders against the analytic optimal embeddings of image manifolds
(docs/theory.md, sections 6 and 7).

Three encoders are trained on ``L_delta`` alone (:mod:`gammalimit.train`) and
compared with the minimisers that the closed forms predict:

- ``RotatingEllipse`` into ``R^2``: intrinsically a circle of length ``l``, so
  the optimum of ``L`` is a round circle of radius ``a l / (2 pi)``,
  ``a^2 = 1 - lam (2 pi)^2 / (32 l^2)``. Measured: the radius of the learned
  curve (mean distance from its centroid over points uniform along the curve),
  its roundness (max/min radius), the uniformity of its speed, and ``L_delta``
  and ``L`` against those of the optimum. At finite ``delta`` the best round
  circle for ``L_delta`` is larger by ``O(delta^2)`` (closed form, section 5);
  both references are reported.
- ``TranslatingBlob`` into ``R^2``: flat, so ``sqrt(pi/2) t`` is an isometry
  with ``L_delta = L = 0``. The codes are aligned to it by Procrustes
  (rotation/reflection and translation, no scaling); the isometry error is
  the relative error of code distances at scale ``delta``, in the interior and
  for pairs starting within ``delta`` of the boundary.
- ``PeriodicBlob`` into ``R^4``: a flat torus with ``R1 = R2 = sqrt(g)/(2 pi)``;
  the optimal Clifford torus has both radii ``a R`` with ``a`` from
  :func:`gammalimit.embeddings.optimal_torus_scales`. The learned codes are
  regressed on ``(cos 2 pi t_i, sin 2 pi t_i)``; the singular values of the two
  coefficient blocks are the radii of the two circle factors.

Performance (steps, wall time, pairs per second, and when the ellipse's
radius error first met the 2% goal) is recorded; the timings are wall-clock on
whatever machine runs the study, shared or not.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch

from gammalimit import Circle, FlatTorus, sample_pairs
from gammalimit.embeddings import (clifford_scales_at_delta, exact_continuum_loss, exact_discrete_loss,
                                   optimal_round_scale, optimal_torus_scales, round_scale_at_delta)
from gammalimit.shapes import circle_fit, clifford_fit, procrustes
from gammalimit.train import TrainConfig, float64_copy, train

#: place in `gammalimit reproduce`
ORDER = 60


@dataclass
class Params:
    n_pixels: int = 32
    seed: int = 0
    batch_size: int = 128
    encoder: str = "mlp"
    hidden: tuple = (128, 128)
    weight_decay: float = 0.0
    skip_lr_ratio: float = 10.0
    eval_pairs: int = 1 << 14
    probe_every: int = 25
    # rotating ellipse into R^2
    ellipse_delta: float = 0.02
    ellipse_lam: float = 0.01
    ellipse_steps: int = 1000
    ellipse_lr: float = 1e-3
    radius_goal: float = 0.02
    roundness_goal: float = 1.02
    # translating blob into R^2
    blob_delta: float = 0.05
    blob_lam: float = 0.01
    blob_steps: int = 800
    blob_lr: float = 1e-3
    # periodic blob into R^4
    torus_delta: float = 0.05
    torus_lam: float = 0.1
    torus_steps: int = 1000
    torus_lr: float = 1e-3
    # what the summary requires (quick mode: what a short run really meets)
    blob_isometry_goal: float = 0.01
    blob_loss_goal: float = 1e-3
    torus_radius_goal: float = 0.02
    loss_excess_goal: float = 0.01

    @classmethod
    def quick(cls) -> "Params":
        # 24 pixels: the sigmas of the image families still span more than a pixel
        return cls(n_pixels=24, eval_pairs=4096, ellipse_steps=150, blob_steps=400, torus_steps=150,
                   roundness_goal=1.05, blob_isometry_goal=0.05, blob_loss_goal=0.01, torus_radius_goal=0.05,
                   loss_excess_goal=0.05)


def _config(p: Params, manifold: str, latent_dim: int, delta: float, lam: float, steps: int,
            lr: float) -> TrainConfig:
    return TrainConfig(manifold=manifold, latent_dim=latent_dim, delta=delta, lam=lam, steps=steps,
                       batch_size=p.batch_size, encoder=p.encoder, lr=lr, seed=p.seed, n_pixels=p.n_pixels, hidden=tuple(p.hidden),
                       weight_decay=p.weight_decay, skip_lr_ratio=p.skip_lr_ratio,
                       eval_pairs=p.eval_pairs, checkpoint_every=steps, warmup=min(100, steps // 10))


def _codes(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return float64_copy(model)(x)


def _training(res) -> dict:
    """Per-step batch loss, averaged over windows of 10 steps (for the curves)."""
    loss = np.array([row["loss"] for row in res.history])
    w = 10
    k = len(loss) // w
    return {"step": (np.arange(k) * w + w).tolist(), "loss": loss[: k * w].reshape(k, w).mean(1).tolist(),
            "steps": res.steps, "seconds": res.seconds, "pairs_per_second": res.pairs_per_second,
            "threads": torch.get_num_threads()}


def _evaluation(res) -> dict:
    ev = res.evaluation
    return {"L_delta": ev["L_delta"]["total"], "L_delta_stderr": ev["L_delta"]["stderr"],
            "L": ev["L"]["total"], "L_error": ev["L"]["error"], "L_converged": ev["L"]["converged"],
            "float32_relative_error": ev["float32_relative_error"]["total"],
            "float32_relative_error_bending": ev["float32_relative_error"]["bending"],
            "float32_pair_rms_error_bending": ev["float32_pair_rms_error"]["bending"],
            "float32_roundoff_bound": ev["float32_roundoff_bound"],
            "eval_seconds": ev["L_delta"]["seconds"] + ev["L"]["seconds"]}


# --------------------------------------------------------------------------
# rotating ellipse


def run_ellipse(p: Params) -> dict:
    cfg = _config(p, "rotating-ellipse", 2, p.ellipse_delta, p.ellipse_lam, p.ellipse_steps, p.ellipse_lr)
    M = cfg.make_manifold()
    R = M.length / (2 * math.pi)
    a = optimal_round_scale(R, cfg.lam)
    circle = Circle(R)
    # the best round circle for L_delta at this delta (closed form of section 5, minimised over a)
    a_delta = round_scale_at_delta(R, cfg.delta, cfg.lam)
    theta = torch.arange(256, dtype=torch.float64) * (math.pi / 256)
    images = M.render(theta)

    def probe(step, model):
        fit = circle_fit(_codes(model, images))
        return {"radius_error": fit["radius"] / (a * R) - 1, "roundness": fit["roundness"]}

    res = train(cfg, progress=False, callback=probe, probe_every=p.probe_every)
    codes = _codes(res.model, images)
    fit = circle_fit(codes)
    reached = next((q for q in res.probes if abs(q["radius_error"]) <= p.radius_goal), None)
    return {
        "length": M.length, "R": R, "a": a, "radius_optimal": a * R, "a_delta": a_delta,
        "radius_delta_optimal": a_delta * R, **fit,
        "radius_error": fit["radius"] / (a * R) - 1, "radius_error_vs_delta_optimum": fit["radius"] / (a_delta * R) - 1,
        "L_delta_optimum": exact_discrete_loss(circle, a, delta=cfg.delta, lam=cfg.lam).total,
        "L_delta_best_round": exact_discrete_loss(circle, a_delta, delta=cfg.delta, lam=cfg.lam).total,
        "L_optimum": exact_continuum_loss(circle, a, lam=cfg.lam).total,
        **_evaluation(res),
        "goal_reached": None if reached is None else {"step": reached["step"], "seconds": reached["seconds"]},
        "probes": res.probes, "training": _training(res),
        "theta": theta.tolist(), "codes": codes.tolist(), "delta": cfg.delta, "lam": cfg.lam,
    }


# --------------------------------------------------------------------------
# translating blob


def run_blob(p: Params) -> dict:
    cfg = _config(p, "translating-blob", 2, p.blob_delta, p.blob_lam, p.blob_steps, p.blob_lr)
    M = cfg.make_manifold()
    res = train(cfg, progress=False)
    scale = math.sqrt(M.metric_scale)
    lo, hi = M.centre_bounds
    # within delta (intrinsic) of the boundary: within delta / sqrt(pi/2) in centre coordinates
    layer = cfg.delta / scale

    def near_boundary(t):
        return torch.minimum(t - lo, hi - t).min(-1).values < layer

    s = torch.linspace(lo, hi, 25, dtype=torch.float64)
    t = torch.cartesian_prod(s, s)
    codes = _codes(res.model, M.render(t))
    aligned = procrustes(codes, scale * t)
    residual = torch.linalg.vector_norm(aligned - scale * t, dim=-1)
    edge = near_boundary(t)
    pairs = sample_pairs(M, p.eval_pairs // 4, cfg.delta, antithetic=True, seed=cfg.eval_seed)
    phi = float64_copy(res.model)
    with torch.no_grad():
        chord = torch.linalg.vector_norm(phi(pairs.x) - phi(pairs.y), dim=-1)
    rel = chord / pairs.dist - 1
    pair_edge = near_boundary(M.centres(pairs.x))
    side = scale * (hi - lo)

    def rms(v):
        return float(torch.sqrt((v**2).mean())) if v.numel() else float("nan")

    return {
        "isometry_error_interior": rms(rel[~pair_edge]), "isometry_error_boundary": rms(rel[pair_edge]),
        "isometry_bias_interior": float(rel[~pair_edge].mean()), "isometry_bias_boundary": float(rel[pair_edge].mean()),
        "n_pairs_interior": int((~pair_edge).sum()), "n_pairs_boundary": int(pair_edge.sum()),
        "procrustes_rms_interior": rms(residual[~edge]) / side, "procrustes_rms_boundary": rms(residual[edge]) / side,
        "side": side, "L_delta_optimum": 0.0, "L_optimum": 0.0,
        **_evaluation(res), "training": _training(res),
        "t": t.tolist(), "aligned": aligned.tolist(), "delta": cfg.delta, "lam": cfg.lam,
        "rel_error_interior": rel[~pair_edge].tolist(), "rel_error_boundary": rel[pair_edge].tolist(),
    }


# --------------------------------------------------------------------------
# periodic blob


def run_torus(p: Params) -> dict:
    cfg = _config(p, "periodic-blob", 4, p.torus_delta, p.torus_lam, p.torus_steps, p.torus_lr)
    M = cfg.make_manifold()
    R = math.sqrt(M.metric_scale) / (2 * math.pi)
    torus = FlatTorus((R, R))
    a = optimal_torus_scales((R, R), cfg.lam)
    a_delta = clifford_scales_at_delta(torus, cfg.delta, cfg.lam)
    res = train(cfg, progress=False)
    s = torch.arange(32, dtype=torch.float64) / 32
    t = torch.cartesian_prod(s, s)
    fit = clifford_fit(_codes(res.model, M.render(t)), t)
    radii = fit["radii_1"] + fit["radii_2"]
    return {
        "R": R, "a": list(a), "radius_optimal": a[0] * R, "a_delta": list(a_delta),
        "radius_delta_optimal": a_delta[0] * R, **fit,
        "radius_error": max(abs(r / (a[0] * R) - 1) for r in radii),
        "L_delta_optimum": exact_discrete_loss(torus, a, delta=cfg.delta, lam=cfg.lam).total,
        "L_delta_best_clifford": exact_discrete_loss(torus, a_delta, delta=cfg.delta, lam=cfg.lam).total,
        "L_optimum": exact_continuum_loss(torus, a, lam=cfg.lam).total,
        **_evaluation(res), "training": _training(res),
        "t": t.tolist(), "delta": cfg.delta, "lam": cfg.lam,
    }


# --------------------------------------------------------------------------


def run(p: Params) -> dict:
    # the goals travel with the data: summary() and plot() see only the data
    return {"params": asdict(p), "ellipse": run_ellipse(p), "blob": run_blob(p), "torus": run_torus(p)}


def summary(data: dict) -> list[dict]:
    e, b, t, p = data["ellipse"], data["blob"], data["torus"], data["params"]
    rows = [
        ("ellipse: radius error vs a l/(2 pi)", abs(e["radius_error"]), f"<= {p['radius_goal']:g}",
         abs(e["radius_error"]) <= p["radius_goal"]),
        ("ellipse: radius vs best round circle at delta", abs(e["radius_error_vs_delta_optimum"]), "<= 0.01",
         abs(e["radius_error_vs_delta_optimum"]) <= 0.01),
        ("ellipse: roundness max/min radius", e["roundness"], f"<= {p['roundness_goal']:g}",
         e["roundness"] <= p["roundness_goal"]),
        ("ellipse: L_delta trained / L_delta(optimum)", e["L_delta"] / e["L_delta_optimum"],
         f"<= 1 + {p['loss_excess_goal']:g}", e["L_delta"] <= e["L_delta_optimum"] * (1 + p["loss_excess_goal"])),
        ("ellipse: L trained / L(optimum) (quadrature)", e["L"] / e["L_optimum"],
         f"in [1, 1 + {p['loss_excess_goal']:g}]",
         e["L_optimum"] * (1 - 1e-9) - e["L_error"] <= e["L"] <= e["L_optimum"] * (1 + p["loss_excess_goal"])),
        ("ellipse: seconds to 2% radius error", e["goal_reached"]["seconds"] if e["goal_reached"] else math.inf,
         "<= 300", bool(e["goal_reached"]) and e["goal_reached"]["seconds"] <= 300),
        ("ellipse: float32 rel. error of L_delta", e["float32_relative_error"],
         f"<= eps/delta^2 = {e['float32_roundoff_bound']:.2g}", e["float32_relative_error"] <= e["float32_roundoff_bound"]),
        ("blob: L_delta of trained encoder (optimum: 0)", b["L_delta"], f"<= {p['blob_loss_goal']:g}",
         b["L_delta"] <= p["blob_loss_goal"]),
        ("blob: isometry error, interior (rms)", b["isometry_error_interior"], f"<= {p['blob_isometry_goal']:g}",
         b["isometry_error_interior"] <= p["blob_isometry_goal"]),
        ("blob: isometry error, boundary layer (rms)", b["isometry_error_boundary"],
         f"<= {2 * p['blob_isometry_goal']:g}", b["isometry_error_boundary"] <= 2 * p["blob_isometry_goal"]),
        ("torus: radii error vs Clifford optimum", t["radius_error"], f"<= {p['torus_radius_goal']:g}",
         t["radius_error"] <= p["torus_radius_goal"]),
        ("torus: cosine between the circle planes", t["plane_cosine"], "<= 0.05", t["plane_cosine"] <= 0.05),
        ("torus: L_delta trained / L_delta(Clifford opt.)", t["L_delta"] / t["L_delta_optimum"],
         f"<= 1 + {p['loss_excess_goal']:g}", t["L_delta"] <= t["L_delta_optimum"] * (1 + p["loss_excess_goal"])),
    ]
    return [{"quantity": q, "measured": float(m), "expected": x, "passed": bool(ok)} for q, m, x, ok in rows]


def plot(data: dict):
    import matplotlib.pyplot as plt

    e, b, t = data["ellipse"], data["blob"], data["torus"]
    fig, ax = plt.subplots(2, 3, figsize=(14, 8.6))
    ang = np.linspace(0, 2 * np.pi, 400)

    a0 = ax[0, 0]
    codes, c = np.array(e["codes"]), np.array(e["centre"])
    sc = a0.scatter(codes[:, 0], codes[:, 1], c=e["theta"], cmap="twilight", s=9)
    for r, style, label in ((e["radius_optimal"], "k--", r"optimum of $L$: $a\ell/2\pi$"),
                            (e["radius_delta_optimal"], "C3:", r"best round circle for $L_\delta$")):
        a0.plot(c[0] + r * np.cos(ang), c[1] + r * np.sin(ang), style, lw=1, label=label)
    a0.set_aspect("equal")
    a0.legend(fontsize=7, loc="lower right")
    fig.colorbar(sc, ax=a0, label=r"angle $\theta$", shrink=0.8)
    a0.set_title(f"rotating ellipse into R$^2$ ($\\delta$={e['delta']:g}, $\\lambda$={e['lam']:g})\n"
                 f"radius error {100 * e['radius_error']:+.2f}%, roundness {e['roundness']:.4f}", fontsize=9)

    a1 = ax[0, 1]
    tt, al = np.array(b["t"]), np.array(b["aligned"])
    k = int(round(math.sqrt(len(tt))))
    target = math.sqrt(math.pi / 2) * tt
    for grid, style in ((target, "k-"), (al, "C0-")):
        g = grid.reshape(k, k, 2)
        for i in range(k):
            a1.plot(g[i, :, 0], g[i, :, 1], style, lw=0.5)
            a1.plot(g[:, i, 0], g[:, i, 1], style, lw=0.5)
    a1.scatter(al[:, 0], al[:, 1], c=tt[:, 0], cmap="viridis", s=6, zorder=3)
    a1.set_aspect("equal")
    a1.set_title("translating blob into R$^2$: Procrustes-aligned codes (colour: $t_1$)\n"
                 f"black: $\\sqrt{{\\pi/2}}\\,t$; isometry error {100 * b['isometry_error_interior']:.2f}% interior, "
                 f"{100 * b['isometry_error_boundary']:.2f}% boundary", fontsize=9)

    a2 = ax[0, 2]
    tt = np.array(t["t"])
    p1, p2 = np.array(t["plane_1"]), np.array(t["plane_2"])
    r = t["radius_optimal"]
    shift = 2.6 * r
    a2.scatter(p1[:, 0], p1[:, 1], c=tt[:, 0], cmap="twilight", s=4)
    a2.scatter(p2[:, 0] + shift, p2[:, 1], c=tt[:, 1], cmap="twilight", s=4)
    for x0 in (0, shift):
        a2.plot(x0 + r * np.cos(ang), r * np.sin(ang), "k--", lw=1)
    a2.set_aspect("equal")
    a2.set_title("periodic blob into R$^4$: codes in the two circle planes\n"
                 f"(colour $t_1$, $t_2$); dashed: optimal Clifford radius {r:.4f}; plane cosine {t['plane_cosine']:.1e}",
                 fontsize=9)

    a3 = ax[1, 0]
    for key, label, col in (("ellipse", "rotating ellipse", "C0"), ("blob", "translating blob", "C1"),
                            ("torus", "periodic blob", "C2")):
        d = data[key]
        excess = np.abs(np.array(d["training"]["loss"]) - d["L_delta_optimum"])
        a3.semilogy(d["training"]["step"], excess, color=col, label=label)
    a3.set_xlabel("step")
    a3.set_ylabel(r"$|L_\delta$(batch) $- L_\delta$(analytic optimum)$|$")
    a3.set_title("training curves (float32 batches, 10-step means)", fontsize=9)
    a3.legend(fontsize=7)

    a4 = ax[1, 1]
    pr = e["probes"]
    sec = [q["seconds"] for q in pr]
    a4.semilogy(sec, [abs(q["radius_error"]) for q in pr], "C0.-", label="|radius error|")
    a4.semilogy(sec, [q["roundness"] - 1 for q in pr], "C1.-", label="roundness - 1")
    a4.axhline(data["params"]["radius_goal"], color="k", ls=":", lw=1, label="2% goal")
    a4.axhline(abs(e["radius_delta_optimal"] / e["radius_optimal"] - 1), color="C3", ls="--", lw=1,
               label=r"$O(\delta^2)$ offset of the $L_\delta$ optimum")
    a4.set_xlabel("wall seconds")
    a4.set_title(f"ellipse: {e['training']['steps']} steps in {e['training']['seconds']:.0f} s, "
                 f"{e['training']['pairs_per_second']:.0f} pairs/s", fontsize=9)
    a4.legend(fontsize=7)

    a5 = ax[1, 2]
    inner, outer = np.array(b["rel_error_interior"]), np.array(b["rel_error_boundary"])
    width = 4 * max(b["isometry_error_interior"], b["isometry_error_boundary"])
    bins = np.linspace(-width, width, 61)
    a5.hist(np.clip(inner, -width, width), bins=bins, density=True, alpha=0.6, label="interior")
    a5.hist(np.clip(outer, -width, width), bins=bins, density=True, alpha=0.6,
            label=r"starting within $\delta$ of the boundary")
    a5.set_xlabel(r"$|\phi(x)-\phi(y)|\,/\,d(x,y) - 1$ at $d = \delta$")
    a5.set_title("translating blob: relative error of code distances", fontsize=9)
    a5.legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
