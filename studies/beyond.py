"""Data sets beyond ours (issue 14): a procedurally rendered sprite with four factors and known
flat geometry, and scikit-learn's bundled handwritten digits as real data without ground truth.

1. Sprite (:class:`gammalimit.manifolds.Sprite`): a plus-shaped sprite moved (2 factors), turned
   and scaled on a 32 x 32 grid. Its chart ``(t1, t2, w1, w2)`` is exactly flat (``g = m I``), so
   ``sqrt(m)`` times the chart point is a global isometric encoder, the ideal codes. Our L_delta
   encoder (``l = 4``, the chart dimension, trained with the exact distance and midpoint) against
   Isomap (scikit-learn, on the sampled images) and a plain autoencoder (same trainer, encoder
   architecture, initial weights; the budget of our encoder plus a decoder). Measured on the same
   images: Procrustes error against the flat coordinates, local isometry error at scale delta (best
   global scale), latent midpoint defect, overlap of far pairs (folds), and the field's measures
   (:mod:`gammalimit.metrics`) against the flat coordinates.
2. Digits (:func:`gammalimit.datasets.digits`, 1797 images of 8 x 8 pixels): unlabelled real data
   with no known geometry, so only the field's measures against the data themselves. Our encoder
   learns from the samples alone (``GammaEncoder(dim=2, latent_dim=2)``: chord distances, midpoints
   projected onto local fits), beside PCA, Isomap, Spectral embedding and t-SNE, all into ``R^2``.
   The labels colour the figure only.

Writes beyond.md (the tables) beside beyond.png and beyond.json. One seed.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from gammalimit.autoencoder import DecoderConfig, midpoint_defect
from gammalimit.manifolds import MANIFOLDS, Sprite, register_manifold
from gammalimit.metrics import embedding_metrics
from gammalimit.neural_peers import train_neural_peer
from gammalimit.sampling import sample_pairs
from gammalimit.shapes import local_isometry_error, overlap_fraction, procrustes, procrustes_error
from gammalimit.train import TrainConfig, float64_copy, train

#: place in `gammalimit reproduce`
ORDER = 88

OURS = "L_delta encoder"
PLAIN = "plain autoencoder"
FLAT = "flat chart (ideal)"
OURS_SAMPLES = "L_delta encoder (samples)"
DIGIT_PEERS = ("PCA", "Isomap", "Spectral", "t-SNE")


@dataclass
class Params:
    # the sprite: a plus with arms 0.08 x 0.04 of the image side (2.6 x 1.3 pixels wide at N = 32,
    # enough for a metric error near 1e-7), turned by +-0.5 rad (the box stays far from its copy a
    # quarter turn away), scaled by 1 to 1.4, moved by +-0.04
    n_pixels: int = 32
    sprite_sigmas: tuple = (0.08, 0.04)
    sprite_scales: tuple = (1.0, 1.4)
    sprite_angle: float = 0.5
    sprite_shift: float = 0.04
    sprite_delta: float = 0.02   # about half the injectivity radius (0.037), a quarter of the shortest side
    sprite_lam: float = 0.01
    # the PCA start does not fold this box: start="auto" measured no overlap (0 of 3181 far pairs) and
    # cost a fold check of several seconds, for our encoder and again for the autoencoder
    sprite_start: str = "none"
    steps: int = 300
    decoder_steps: int = 300
    batch_size: int = 128
    hidden: tuple = (128, 128)
    decoder_hidden: tuple = (128, 128)
    n_pairs: int = 400            # the measured images are [x; y; av(x, y)]: 3 n_pairs of them
    n_neighbors: int = 12         # Isomap's graph and the rank measures on the sprite
    n_overlap_pairs: int = 2000
    procrustes_bound: float = 0.05
    # the digits
    digits_n: int | None = None   # all 1797
    digits_steps: int = 300
    digits_lam: float = 0.01      # GammaEncoder's default
    digits_pool_pairs: int = 2048
    digits_neighbors: int = 10    # Isomap, Spectral and the rank measures
    local_pca_neighbors: int = 20
    seed: int = 0
    quick_mode: bool = False

    @classmethod
    def quick(cls) -> "Params":
        return cls(steps=30, decoder_steps=30, batch_size=32, hidden=(16,), decoder_hidden=(16,), n_pairs=60,
                   n_overlap_pairs=300, digits_n=300, digits_steps=30, digits_pool_pairs=256, quick_mode=True)


def _cpu_seconds(t0: float) -> float:
    return time.process_time() - t0


# --------------------------------------------------------------------------
# 1. the sprite


@contextmanager
def sprite_registered():
    """The trainer takes manifolds by registered name; within this block "sprite" names
    :class:`~gammalimit.manifolds.Sprite`. It is not in :mod:`gammalimit.manifolds.registry` for
    good: there every manifold meets ``gammalimit loss``, whose limit ``L`` is a quadrature over
    the chart with ``16^m``, then ``32^m`` nodes (about 1.1 million at ``m = 4``; measured 2.8 ms a
    node for this sprite on 20 x 20 pixels: close to an hour)."""
    before = MANIFOLDS.get("sprite")
    register_manifold("sprite", Sprite)
    try:
        yield
    finally:
        if before is None:
            del MANIFOLDS["sprite"]
        else:
            MANIFOLDS["sprite"] = before


def sprite_config(p: Params) -> TrainConfig:
    """Our encoder's config on the sprite (inside :func:`sprite_registered`); the plain
    autoencoder reuses its architecture and seed."""
    shape = {"sigmas": tuple(p.sprite_sigmas), "scales": tuple(p.sprite_scales), "angle": p.sprite_angle,
             "shift": p.sprite_shift}
    return TrainConfig(manifold="sprite", manifold_params=shape, n_pixels=p.n_pixels, latent_dim=4,
                       delta=p.sprite_delta, lam=p.sprite_lam, steps=p.steps, batch_size=p.batch_size,
                       hidden=tuple(p.hidden), seed=p.seed, limit="none", eval_pairs=1024,
                       warmup=min(100, p.steps // 10), start=p.sprite_start)


def sprite_row(name: str, codes, seconds: float, pairs, flat: torch.Tensor, p: Params) -> dict:
    """The measures of codes ``shape=[3 n, l]`` of the images ``[x; y; av(x, y)]`` of ``pairs``."""
    E = torch.as_tensor(np.asarray(codes, dtype=np.float64))
    n = len(pairs)
    iso = local_isometry_error(E[:n], E[n:2 * n], pairs.dist)
    # the chart is flat and its box convex: geodesic distances are Euclidean distances of `flat`
    g = torch.Generator().manual_seed(p.seed + 3)
    ia, ib = torch.randint(0, E.shape[0], (2, p.n_overlap_pairs), generator=g)
    d = torch.linalg.vector_norm(flat[ia] - flat[ib], dim=-1)
    return {"method": name, "seconds": seconds, "finite": bool(torch.isfinite(E).all()),
            "isometry_error": iso["error"], "scale": iso["scale"],
            "procrustes_error": procrustes_error(E, flat),
            "midpoint_defect": float(midpoint_defect(E[:n], E[n:2 * n], E[2 * n:]).mean()),
            "overlap": overlap_fraction(E[ia], E[ib], d, p.sprite_delta, iso["scale"]),
            "metrics": embedding_metrics(flat, E, k=p.n_neighbors, seed=p.seed)}


def run_sprite(p: Params) -> dict:
    with sprite_registered():
        return _run_sprite(p)


def _run_sprite(p: Params) -> dict:
    from sklearn.manifold import Isomap

    config = sprite_config(p)
    M = config.make_manifold()
    pairs = sample_pairs(M, p.n_pairs, p.sprite_delta, seed=p.seed + 1)
    X = torch.cat([pairs.x, pairs.y, pairs.midpoint])
    flat = M.flat_coordinates(X)
    factors = M.factors(flat / math.sqrt(M.metric_scale))
    rows = [sprite_row(FLAT, flat, 0.0, pairs, flat, p)]

    t0 = time.process_time()
    ours = train(config, progress=False, evaluate_final=False)
    with torch.no_grad():
        codes = {OURS: float64_copy(ours.model)(X)}
    rows.append(sprite_row(OURS, codes[OURS], _cpu_seconds(t0), pairs, flat, p))
    rows[-1]["start"] = (ours.start or {}).get("method")

    t0 = time.process_time()
    isomap = Isomap(n_neighbors=p.n_neighbors, n_components=4, eigen_solver="dense").fit(X.numpy())
    codes["Isomap"] = torch.as_tensor(isomap.embedding_)
    rows.append(sprite_row("Isomap", codes["Isomap"], _cpu_seconds(t0), pairs, flat, p))

    t0 = time.process_time()
    decoder = DecoderConfig(hidden=tuple(p.decoder_hidden), steps=p.decoder_steps, batch_size=p.batch_size,
                            seed=p.seed)
    plain = train_neural_peer("plain", config, decoder)
    with torch.no_grad():
        codes[PLAIN] = float64_copy(plain.encoder)(X)
    rows.append(sprite_row(PLAIN, codes[PLAIN], _cpu_seconds(t0), pairs, flat, p))
    rows[-1]["reconstruction"] = plain.error_after

    # codes as the figure draws them: each method's similarity transform onto the flat coordinates
    aligned = {name: _aligned(c, flat).tolist() for name, c in codes.items()}
    (a1, a2, a3, a4), (b1, b2, b3, b4) = M.chart.lower, M.chart.upper
    corners = torch.tensor([[a1, a2, a3, a4], [b1, b2, a3, a4], [a1, a2, b3, b4], [a1, b2, a3, b4]], dtype=flat.dtype)
    return {"repr": repr(M), "ambient_dim": M.ambient_dim, "metric_scale": M.metric_scale,
            "injectivity_radius": M.injectivity_radius, "margin": M.margin,
            "metric_discretisation_error": M.metric_discretisation_error(),
            "metric_error_at_samples": M.metric_discretisation_error(flat / math.sqrt(M.metric_scale)),
            "box_sides": [math.sqrt(M.metric_scale) * (h - l) for l, h in zip(M.chart.lower, M.chart.upper)],
            "delta": p.sprite_delta, "lam": p.sprite_lam, "n_points": X.shape[0], "rows": rows,
            "flat": flat.tolist(), "factors": factors.tolist(), "aligned": aligned,
            "examples": M.pixels(M.render(corners)).tolist()}


def _aligned(codes: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """``s c R + b``, the similarity transform of ``codes`` closest to ``flat``, ``shape=[k, 4]``
    (the fit that :func:`~gammalimit.shapes.procrustes_error` measures): the best rigid motion,
    then the best scale about the mean."""
    moved = procrustes(codes.to(flat.dtype), flat)
    c, u = moved - moved.mean(0), flat - flat.mean(0)
    return (c * u).sum() / (c * c).sum() * c + flat.mean(0)


# --------------------------------------------------------------------------
# 2. the digits


def local_pca_fraction(X: np.ndarray, k: int) -> float:
    """Mean fraction of the variance of each point's ``k`` nearest samples (itself included) in their
    top two principal directions, ``X`` ``shape=[n, d]``: near 1 for samples of a surface."""
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X)
    s = np.linalg.svd(X[idx] - X[idx].mean(1, keepdims=True), compute_uv=False) ** 2
    return float((s[:, :2].sum(1) / s.sum(1)).mean())


def digit_method(name: str, p: Params):
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE, Isomap, SpectralEmbedding

    if name == OURS_SAMPLES:
        from gammalimit.estimator import GammaEncoder

        return GammaEncoder(dim=2, latent_dim=2, lam=p.digits_lam, steps=p.digits_steps, batch_size=p.batch_size,
                            hidden=tuple(p.hidden), warmup=min(50, p.digits_steps // 10),
                            pool_pairs=p.digits_pool_pairs, random_state=p.seed)
    if name == "PCA":
        return PCA(n_components=2, random_state=p.seed)
    if name == "Isomap":
        return Isomap(n_neighbors=p.digits_neighbors, n_components=2, eigen_solver="dense")
    if name == "Spectral":
        return SpectralEmbedding(n_components=2, affinity="nearest_neighbors", n_neighbors=p.digits_neighbors,
                                 random_state=p.seed)
    if name == "t-SNE":
        return TSNE(n_components=2, init="pca", random_state=p.seed)
    raise ValueError(f"unknown method {name!r}; allowed: {[OURS_SAMPLES, *DIGIT_PEERS]}")


def run_digits(p: Params) -> dict:
    from gammalimit.datasets import digits

    X, labels = digits(n=p.digits_n, seed=p.seed, return_labels=True)
    rows, codes, extra = [], {}, {}
    for name in (OURS_SAMPLES, *DIGIT_PEERS):
        est = digit_method(name, p)
        t0 = time.process_time()
        E = np.asarray(est.fit_transform(X), dtype=np.float64)
        seconds = _cpu_seconds(t0)
        codes[name] = E.tolist()
        rows.append({"method": name, "seconds": seconds, "finite": bool(np.isfinite(E).all()),
                     "metrics": embedding_metrics(X, E, k=p.digits_neighbors, seed=p.seed)})
        if name == OURS_SAMPLES:
            extra = {"delta": est.config_.delta, "strategy": est.config_.strategy,
                     "start": est.config_.start, "loss_first": est.loss_curve_[0], "loss_last": est.loss_curve_[-1]}
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=2).fit(X).kneighbors(X)
    return {"n": X.shape[0], "ambient_dim": X.shape[1], "labels": labels.tolist(), "codes": codes, "rows": rows,
            "ours": extra, "median_nearest_distance": float(np.median(dist[:, 1])),
            "local_pca_fraction": local_pca_fraction(X, p.local_pca_neighbors),
            "local_pca_neighbors": p.local_pca_neighbors}


def run(p: Params) -> dict:
    data = {"quick": p.quick_mode, "sprite": run_sprite(p), "digits": run_digits(p), "steps": p.steps,
            "decoder_steps": p.decoder_steps, "n_neighbors": p.n_neighbors, "digits_neighbors": p.digits_neighbors,
            "procrustes_bound": p.procrustes_bound}
    data["markdown"] = markdown_table(data)
    return data


# --------------------------------------------------------------------------
# reporting


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _metric_cells(q: dict) -> str:
    return (f"{q['trustworthiness']:.4f} | {q['continuity']:.4f} | {q['knn_recall']:.3f} | "
            f"{q['distance_spearman']:.4f} | {_fmt(q['KL_0.01'])} | {_fmt(q['KL_0.1'])} | {_fmt(q['KL_1'])}")


def markdown_table(data: dict) -> str:
    s, d = data["sprite"], data["digits"]
    sides = ", ".join(f"{v:.3g}" for v in s["box_sides"])
    lines = [
        "# Data sets beyond ours: a rendered sprite and scikit-learn's digits", "",
        f"## Sprite (`{s['repr']}`), l = 4, delta = {s['delta']:g}, lam = {s['lam']:g}", "",
        f"A plus moved, turned and scaled on {int(math.isqrt(s['ambient_dim']))}^2 pixels. Its chart "
        f"`(t1, t2, w1, w2)` has metric `g = m I` with `m = {s['metric_scale']:.6g}`; the pixel quadrature "
        f"changes it by {s['metric_discretisation_error']:.2e} (relative, box corners and centre; "
        f"{s['metric_error_at_samples']:.2e} at most over the measured images). In geodesic units the box has "
        f"sides {sides} (t1, t2; w1, mostly scale; w2, mostly turn); injectivity "
        f"radius {s['injectivity_radius']:.3g}. The measured images are {s['n_points']} points `[x; y; av(x, y)]` "
        f"of pairs at geodesic distance exactly delta, the same for every method. Isomap "
        f"({data['n_neighbors']} neighbours) sees only these images; our encoder trains {data['steps']} steps on "
        f"fresh pairs from the manifold with their exact distance and midpoint, the plain autoencoder "
        f"{data['steps'] + data['decoder_steps']} joint steps on fresh images (same encoder architecture and "
        f"initial weights): those two rows are not a like-for-like contest with Isomap on the data they see. "
        f"The first row is the flat chart itself (`sqrt(m)` times the chart point), the ideal codes.", "",
        "| method | Procrustes | isometry | scale s | defect | overlap | CPU [s] |",
        "|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        lines.append(f"| {r['method']} | {_fmt(r['procrustes_error'])} | {_fmt(r['isometry_error'])} | "
                     f"{_fmt(r['scale'])} | {_fmt(r['midpoint_defect'])} | {_fmt(r['overlap'])} | "
                     f"{r['seconds']:.1f} |")
    lines += ["", f"The field's measures against the flat coordinates (k = {data['n_neighbors']}):", "",
              "| method | trustworthiness | continuity | kNN recall | Spearman of distances | KL_0.01 | KL_0.1 | "
              "KL_1 |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {_metric_cells(r['metrics'])} |" for r in s["rows"]]
    ours = d["ours"]
    lines += [
        "", f"## Digits (scikit-learn's bundled 8 x 8 images), {d['n']} images, unlabelled, l = 2", "",
        "Real data with no known geometry: no flat coordinates, no distance or midpoint, so the measures are "
        "taken against the data themselves, and none of them is a ground truth. Digits are not known to lie "
        f"on a surface: among each image's {d['local_pca_neighbors']} nearest images the top two principal "
        f"directions carry {100 * d['local_pca_fraction']:.0f}% of the variance on average (a surface would give "
        "nearly all). l = 2 is the dimension of a picture, and the dimension every method here is given; our "
        "encoder needs the dimension `m <= l` of the local fits that stand in for the unknown midpoints, so "
        "m = 2 as well, a model the data do not satisfy. It learns from the images alone "
        f"(`GammaEncoder(dim=2, latent_dim=2)`): delta = {_fmt(ours['delta'])}, the point cloud's default "
        f"(at least the largest distance from a probed image to its 4th neighbour, so that every image has "
        f"partners; the median nearest-neighbour distance is {d['median_nearest_distance']:.3g}), lam = 0.01 "
        f"(the default), the '{ours['strategy']}' pair law, start '{ours['start']}'; not tuned on these "
        f"measures. Neighbourhood methods and rank measures use k = {data['digits_neighbors']}. The labels "
        "only colour the figure.", "",
        "| method | trustworthiness | continuity | kNN recall | Spearman of distances | KL_0.01 | KL_0.1 | "
        "KL_1 | CPU [s] |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {_metric_cells(r['metrics'])} | {r['seconds']:.1f} |" for r in d["rows"]]
    best = max(d["rows"][1:], key=lambda r: r["metrics"]["trustworthiness"])
    mine = d["rows"][0]["metrics"]["trustworthiness"]
    lines += ["", f"Trustworthiness: ours {mine:.4f}, best other {best['method']} "
              f"{best['metrics']['trustworthiness']:.4f}"
              + (" (ours is lower)." if mine < best["metrics"]["trustworthiness"] else "."), ""]
    return "\n".join(lines) + "\n"


def extra_files(data: dict) -> dict:
    """Files :func:`gammalimit.reproduce.run_study` writes beside the figure."""
    return {"beyond.md": data["markdown"]}


def summary(data: dict) -> list[dict]:
    s, d = data["sprite"], data["digits"]
    rows = {r["method"]: r for r in s["rows"]}
    flat = rows[FLAT]
    # the ground truth's own error: the flat coordinates are exact up to the pixel quadrature
    metric_error = max(s["metric_discretisation_error"], s["metric_error_at_samples"])
    out = [{"quantity": "sprite: metric discretisation error", "measured": metric_error,
            "expected": "< 1e-4", "passed": bool(metric_error < 1e-4)},
           {"quantity": "sprite: flat chart: Procrustes, isometry errors", "measured":
            max(flat["procrustes_error"], flat["isometry_error"]), "expected": "< 1e-9",
            "passed": bool(max(flat["procrustes_error"], flat["isometry_error"]) < 1e-9)}]
    finite = all(r["finite"] and 0 <= r["procrustes_error"] <= 1 + 1e-9 and math.isfinite(r["isometry_error"])
                 for r in s["rows"])
    out.append({"quantity": "sprite: every method runs, measures in range", "measured": f"{len(s['rows'])} rows",
                "expected": "finite", "passed": bool(finite)})
    in_range = all(r["finite"] and all(0 <= r["metrics"][k] <= 1 for k in ("trustworthiness", "continuity",
                                                                         "knn_recall"))
                   and -1 <= r["metrics"]["distance_spearman"] <= 1
                   and all(math.isfinite(v) and v >= 0 for k, v in r["metrics"].items() if k.startswith("KL_"))
                   for r in d["rows"])
    out.append({"quantity": "digits: every method runs, measures in range", "measured": f"{len(d['rows'])} methods",
                "expected": "in [0, 1], KL >= 0", "passed": bool(in_range)})
    if data["quick"]:
        return out
    ours = rows[OURS]
    peers = [rows["Isomap"], rows[PLAIN]]
    best = min(peers, key=lambda r: r["procrustes_error"])
    out.append({"quantity": "sprite: Procrustes, ours < Isomap, plain AE", "measured": ours["procrustes_error"],
                "expected": f"< {_fmt(best['procrustes_error'])} ({best['method']})",
                "passed": bool(ours["procrustes_error"] < best["procrustes_error"])})
    out.append({"quantity": "sprite: Procrustes, ours < bound", "measured": ours["procrustes_error"],
                "expected": f"< {data['procrustes_bound']:g}",
                "passed": bool(ours["procrustes_error"] < data["procrustes_bound"])})
    best = min(peers, key=lambda r: r["isometry_error"])
    out.append({"quantity": "sprite: isometry error, ours < Isomap, plain AE", "measured": ours["isometry_error"],
                "expected": f"< {_fmt(best['isometry_error'])} ({best['method']})",
                "passed": bool(ours["isometry_error"] < best["isometry_error"])})
    out.append({"quantity": "sprite: ours does not fold (overlap)", "measured": ours["overlap"],
                "expected": "< 0.01", "passed": bool(ours["overlap"] < 0.01)})
    return out


def plot(data: dict):
    import matplotlib.pyplot as plt

    s, d = data["sprite"], data["digits"]
    fig, axes = plt.subplots(3, 5, figsize=(17, 10.5))
    # row 0, column 0: the sprite at four corners of its box
    ax = axes[0, 0]
    ex = np.asarray(s["examples"])
    ax.imshow(np.block([[ex[0], ex[1]], [ex[2], ex[3]]]), cmap="gray_r")
    ax.set_title("sprite at 4 corners of the box", fontsize=9)
    ax.axis("off")
    axes[1, 0].axis("off")
    axes[1, 0].text(0, 0.5, "rows 1-2: codes after the best similarity\ntransform onto the flat chart\n"
                    "(Procrustes); top: coordinates 1-2\n(translation), colour = turn angle;\n"
                    "middle: coordinates 3-4 (scale and\nturn), colour = scale", fontsize=9, va="center")
    factors = np.asarray(s["factors"])
    rows = {r["method"]: r for r in s["rows"]}
    columns = [(FLAT, np.asarray(s["flat"])), *[(m, np.asarray(s["aligned"][m])) for m in (OURS, "Isomap", PLAIN)]]
    for j, (name, codes) in enumerate(columns, start=1):
        title = name if name == FLAT else f"{name}\nProcrustes {_fmt(rows[name]['procrustes_error'])}"
        for i, (a, b, colour, label) in enumerate(((0, 1, factors[:, 2], "turn"), (2, 3, factors[:, 3], "scale"))):
            ax = axes[i, j]
            sc = ax.scatter(codes[:, a], codes[:, b], c=colour, s=4, cmap="viridis")
            ax.set_aspect("equal", "datalim")
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(title, fontsize=9)
            if j == len(columns):
                fig.colorbar(sc, ax=ax, label=label, shrink=0.8)
    labels = np.asarray(d["labels"])
    dmetrics = {r["method"]: r["metrics"] for r in d["rows"]}
    for j, name in enumerate((OURS_SAMPLES, *DIGIT_PEERS)):
        ax = axes[2, j]
        E = np.asarray(d["codes"][name])
        sc = ax.scatter(E[:, 0], E[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
        q = dmetrics[name]
        ax.set_title(f"digits: {name}\ntrust {q['trustworthiness']:.3f}, cont {q['continuity']:.3f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes[2, -1], label="digit (display only)", ticks=range(10), shrink=0.8)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
