"""Issue 14: what it takes for the L_delta encoder not to fold the default Swiss roll at delta = 1.

Four candidates, each from the trainer's PCA start unless said, with ``GammaEncoder``'s defaults
(1000 steps, batch 64, lam = 0.01, AdamW at lr 1e-3 with 50 warm-up steps and a cosine decay,
float64), seeds 0, 1, 2:

- ``baseline``: L_delta at delta = 1 throughout;
- ``continuation``: delta decreasing geometrically from 8 to 1 over the first half of the steps,
  then 1 (8 is below the roll's injectivity radius, 10.5);
- ``separation 0.1`` and ``separation 1``: L_delta plus ``w`` times a hinge on random far pairs
  (``d(x, y) > 4 delta``, ``x, y`` uniform on M), ``relu(1 - |phi(x) - phi(y)| / d(x, y))^2``:
  far points must not come closer in the codes than on M (the spirit of BLAE's separation term);
- ``isomap``: the global start (:mod:`gammalimit.train.start`), then L_delta at delta = 1:
  what ``start="auto"`` chooses on the roll.

Measured on 2000 held-out points: Procrustes error against the true unrolling, far-pair overlap,
and the local isometry error at delta (2000 pairs). Not a study (no figure; ``gammalimit
reproduce`` does not run it): ``python studies/start_candidates.py [--out figures/start_candidates.json]``,
about 15 one-thread minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from gammalimit.embeddings import flat_coordinates
from gammalimit.fileio import write_atomic
from gammalimit.loss import pair_terms
from gammalimit.sampling import sample_pairs
from gammalimit.shapes import local_isometry_error, overlap_fraction, procrustes_error
from gammalimit.train import TrainConfig
from gammalimit.train.networks import build_encoder, parameter_groups
from gammalimit.train.start import global_start

CANDIDATES = ("baseline", "continuation", "separation 0.1", "separation 1", "isomap")
STEPS, BATCH, LAM, DELTA, WARMUP = 1000, 64, 0.01, 1.0, 50


def run_one(name: str, seed: int) -> dict:
    """Train one candidate with one seed; its measures."""
    cfg = TrainConfig(manifold="swissroll", delta=DELTA, lam=LAM, steps=STEPS, batch_size=BATCH, seed=seed,
                      warmup=WARMUP, limit="none", start="isomap" if name == "isomap" else "none")
    M = cfg.make_manifold()
    model = build_encoder(cfg, M).double()
    groups = parameter_groups(model, cfg)
    if name == "isomap":
        global_start(model, M, cfg, groups)
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    base = [g["lr"] for g in opt.param_groups]
    far_pairs = torch.Generator().manual_seed(seed + 99)
    weight = float(name.split()[1]) if name.startswith("separation") else 0.0
    t0 = time.perf_counter()
    for k in range(STEPS):
        factor = min(1.0, (k + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * k / STEPS))
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * factor
        delta = 8.0 * (1 / 8.0) ** min(1.0, k / (STEPS / 2)) if name == "continuation" else DELTA
        loss = pair_terms(model, sample_pairs(M, BATCH, delta, seed=seed * 100003 + k)).total(LAM).mean()
        if weight:
            x, y = M.sample(BATCH, generator=far_pairs), M.sample(BATCH, generator=far_pairs)
            dist = M.dist(x, y)
            gap = torch.relu(1 - torch.linalg.vector_norm(model(x) - model(y), dim=-1) / dist)
            loss = loss + weight * (gap[dist > 4 * DELTA] ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    points = M.sample(2000, generator=torch.Generator().manual_seed(1234))
    pairs = sample_pairs(M, 2000, DELTA, seed=777)
    with torch.no_grad():
        codes = model(points)
        iso = local_isometry_error(model(pairs.x), model(pairs.y), pairs.dist)
        overlap = overlap_fraction(codes[:1000], codes[1000:], M.dist(points[:1000], points[1000:]), DELTA,
                                   iso["scale"])
    return {"candidate": name, "seed": seed, "procrustes": procrustes_error(codes, flat_coordinates(M, points)),
            "overlap": overlap, "isometry": iso["error"], "seconds": seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "figures" / "start_candidates.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in CANDIDATES:
        for seed in range(args.seeds):
            rows.append(run_one(name, seed))
            print(json.dumps(rows[-1]), flush=True)
    table = {}
    for name in CANDIDATES:
        mine = [r for r in rows if r["candidate"] == name]
        table[name] = {key: [r[key] for r in mine] for key in ("procrustes", "overlap", "isometry")}
        print(f"{name:16s} Procrustes {' '.join(f'{v:.3g}' for v in table[name]['procrustes'])}  "
              f"(median {statistics.median(table[name]['procrustes']):.3g}); overlap max "
              f"{max(table[name]['overlap']):.2g}")
    record = {"what": __doc__.splitlines()[0], "steps": STEPS, "batch_size": BATCH, "lam": LAM, "delta": DELTA,
              "seeds": args.seeds, "table": table, "runs": rows}
    write_atomic(Path(args.out), (json.dumps(record, indent=1) + "\n").encode())
    return record


if __name__ == "__main__":
    main()
