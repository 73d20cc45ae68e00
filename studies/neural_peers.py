"""The L_delta encoder beside neural peers trained in the same trainer, with the same encoder
architecture, initial weights and budget (issue 14): a plain autoencoder, a Geometric Autoencoder
(Nazari et al., ICML 2023), an isometry-regularised autoencoder (Lee et al., ICLR 2022) and
L_delta as the regulariser of a jointly trained autoencoder (:mod:`gammalimit.neural_peers`).

On manifolds with true flat coordinates (the Swiss roll, the translating blob), measured on held-out
points: local isometry error at scale delta (best global scale), Procrustes error against the flat
coordinates, far-pair overlap (folds), and the field's measures (:mod:`gammalimit.metrics`) against
the flat coordinates. The autoencoders get the budget of our encoder plus its decoder
(``steps + decoder_steps`` joint steps); our encoder trains ``steps`` steps on ``L_delta`` alone.
One seed (``Params.seed``; mean ± std over 5 seeds: studies/peers_seeds.py, a long mode); the
regulariser weights are the defaults of :data:`gammalimit.neural_peers.DEFAULT_WEIGHTS`, not tuned.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from gammalimit.autoencoder import DecoderConfig
from gammalimit.embeddings import flat_coordinates
from gammalimit.metrics import embedding_metrics
from gammalimit.neural_peers import PEERS, train_neural_peer
from gammalimit.sampling import sample_pairs
from gammalimit.shapes import local_isometry_error, overlap_fraction, procrustes_error
from gammalimit.train import TrainConfig, float64_copy, train

#: place in `gammalimit reproduce`
ORDER = 85

OURS = "L_delta encoder"
LABELS = {"plain": "plain autoencoder", "geometric": "Geometric AE", "isometric": "isometry-regularised AE",
          "gamma": "AE + L_delta (joint)"}


@dataclass(frozen=True)
class Case:
    manifold: str
    delta: float
    lam: float


CASES = (Case("swissroll", 2.0, 1.0), Case("translating-blob", 0.05, 0.01))


@dataclass
class Params:
    cases: tuple = CASES
    n_pixels: int = 32
    steps: int = 250
    decoder_steps: int = 250
    batch_size: int = 128
    hidden: tuple = (128, 128)
    decoder_hidden: tuple = (128, 128)
    n_points: int = 1000      # held-out points for the measures
    n_pairs: int = 500        # held-out pairs at scale delta
    n_neighbors: int = 10
    seed: int = 0
    quick_mode: bool = False

    @classmethod
    def quick(cls) -> "Params":
        return cls(n_pixels=16, steps=30, decoder_steps=30, batch_size=32, hidden=(16,), decoder_hidden=(16,),
                   n_points=200, n_pairs=100, quick_mode=True)


def _encoder_config(case: Case, p: Params) -> TrainConfig:
    return TrainConfig(manifold=case.manifold, n_pixels=p.n_pixels, latent_dim=2, delta=case.delta, lam=case.lam,
                       steps=p.steps, batch_size=p.batch_size, hidden=tuple(p.hidden), seed=p.seed, limit="none",
                       eval_pairs=1024, warmup=min(100, p.steps // 10))


def _measure(encoder, M, points, pairs, delta, k, seed) -> dict:
    phi = float64_copy(encoder)
    with torch.no_grad():
        codes, cx, cy = phi(points), phi(pairs.x), phi(pairs.y)
    iso = local_isometry_error(cx, cy, pairs.dist)
    flat = flat_coordinates(M, points)
    half = len(points) // 2
    return {"isometry_error": iso["error"], "scale": iso["scale"], "procrustes_error": procrustes_error(codes, flat),
            "overlap": overlap_fraction(codes[:half], codes[half:2 * half], M.dist(points[:half], points[half:2 * half]),
                                        delta, iso["scale"]),
            "metrics": embedding_metrics(flat, codes, k=k, seed=seed)}


def run_case(case: Case, p: Params) -> dict:
    config = _encoder_config(case, p)
    M = config.make_manifold()
    points = M.sample(p.n_points, torch.Generator().manual_seed(p.seed + 10))
    pairs = sample_pairs(M, p.n_pairs, case.delta, seed=p.seed + 11)
    decoder = DecoderConfig(hidden=tuple(p.decoder_hidden), steps=p.decoder_steps, batch_size=p.batch_size,
                            seed=p.seed)
    rows = []
    t0 = time.perf_counter()
    ours = train(config, progress=False, evaluate_final=False)
    rows.append({"method": OURS, "seconds": time.perf_counter() - t0, "start": (ours.start or {}).get("method"),
                 **_measure(ours.model, M, points, pairs, case.delta, p.n_neighbors, p.seed)})
    for kind in PEERS:
        t0 = time.perf_counter()
        result = train_neural_peer(kind, config, decoder)
        rows.append({"method": LABELS[kind], "seconds": time.perf_counter() - t0,
                     "reconstruction": result.error_after,
                     **_measure(result.encoder, M, points, pairs, case.delta, p.n_neighbors, p.seed)})
    return {"manifold": case.manifold, "repr": repr(M), "case": asdict(case), "results": rows}


def run(p: Params) -> dict:
    return {"quick": p.quick_mode, "seed": p.seed, "steps": p.steps, "decoder_steps": p.decoder_steps,
            "cases": [run_case(c, p) for c in p.cases]}


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def markdown_table(data: dict) -> str:
    lines = ["# L_delta encoder beside neural peers", "",
             f"One seed (seed {data['seed']}); mean ± std over 5 seeds: peers_seeds.md (`make reproduce-long`).", "",
             f"Same encoder architecture and initial weights; our encoder trains {data['steps']} steps on L_delta "
             f"alone, each autoencoder {data['steps'] + data['decoder_steps']} joint steps (encoder and decoder "
             "budget together). Measured on held-out points against the true flat coordinates. Regulariser "
             "weights not tuned.", ""]
    for case in data["cases"]:
        lines += [f"## {case['manifold']} (`{case['repr']}`), delta = {case['case']['delta']:g}", "",
                  "| method | isometry | Procrustes | overlap | trust | continuity | kNN recall | Spearman | "
                  "KL_0.1 | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in case["results"]:
            q = r["metrics"]
            lines.append(f"| {r['method']} | {_fmt(r['isometry_error'])} | {_fmt(r['procrustes_error'])} | "
                         f"{_fmt(r['overlap'])} | {q['trustworthiness']:.4f} | {q['continuity']:.4f} | "
                         f"{q['knn_recall']:.3f} | {q['distance_spearman']:.4f} | {_fmt(q['KL_0.1'])} | "
                         f"{r['seconds']:.1f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def extra_files(data: dict) -> dict:
    return {"neural_peers.md": markdown_table(data)}


def summary(data: dict) -> list[dict]:
    out = []
    for case in data["cases"]:
        rows = case["results"]
        finite = all(np.isfinite(r["isometry_error"]) and 0 <= r["procrustes_error"] <= 1 + 1e-9 for r in rows)
        out.append({"quantity": f"{case['manifold']}: every method trains, measures finite and in range",
                    "measured": f"{len(rows)} methods", "expected": "finite", "passed": bool(finite)})
        if data["quick"]:
            continue
        ours = rows[0]
        best = min(rows[1:], key=lambda r: r["isometry_error"])
        out.append({"quantity": f"{case['manifold']}: isometry error, ours < every neural peer",
                    "measured": ours["isometry_error"],
                    "expected": f"< {_fmt(best['isometry_error'])} ({best['method']})",
                    "passed": bool(ours["isometry_error"] < best["isometry_error"])})
    return out


def plot(data: dict):
    import matplotlib.pyplot as plt

    cases = data["cases"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, key, title in ((axes[0], "isometry_error", "local isometry error at scale delta"),
                           (axes[1], "procrustes_error", "Procrustes error vs flat coordinates")):
        methods = [r["method"] for r in cases[0]["results"]]
        x = np.arange(len(cases))
        width = 0.8 / len(methods)
        for i, m in enumerate(methods):
            vals = [max(next(r[key] for r in c["results"] if r["method"] == m), 1e-5) for c in cases]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, label=m,
                   color="k" if m == OURS else f"C{i}")
        ax.set_xticks(x, [c["manifold"] for c in cases])
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
