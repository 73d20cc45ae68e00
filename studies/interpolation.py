"""Latent interpolation with an L_delta encoder against a plain autoencoder
(issue 7): on TranslatingBlob, RotatingEllipse and PeriodicBlob, for pairs at
geodesic distances from small to large, (a) the latent midpoint defect
|phi(av) - (phi(x)+phi(y))/2| / |phi(x) - phi(y)| and (b) the error of decoding
the latent linear interpolation at t = 1/4, 1/2, 3/4 against the geodesic
interpolant, relative to its norm (pixel-weighted L2). The L_delta encoder is
trained by gammalimit.train and then frozen while a decoder learns to
reconstruct; the plain autoencoder has the same architectures, initial
weights and seed, and as many optimiser steps as both stages together."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from gammalimit.autoencoder import (DecoderConfig, decode_latent_path, fit_decoder,
                                    geodesic_interpolant, interpolation_errors, latent_midpoint_defect,
                                    train_plain_autoencoder)
from gammalimit.embeddings import flat_coordinates
from gammalimit.manifolds import TranslatingBlob
from gammalimit.manifolds.extent import diameter
from gammalimit.sampling import sample_pairs
from gammalimit.train import TrainConfig, train

#: place in `gammalimit reproduce`
ORDER = 70

ENCODERS = ("gamma", "plain")
LABELS = {"gamma": r"$L_\delta$ encoder, frozen + decoder", "plain": "plain autoencoder"}
COLOURS = {"gamma": "C0", "plain": "C3"}
MARKERS = {"gamma": "o-", "plain": "s--"}
GOAL_FRACTION = 0.25  # the goal holds at every distance up to a quarter of the diameter


@dataclass(frozen=True)
class Case:
    """One image manifold and how its L_delta encoder is trained (the
    settings of studies/train_images.py)."""

    manifold: str
    latent_dim: int
    delta: float
    lam: float
    steps: int


CASES = (Case("translating-blob", 2, 0.05, 0.01, 800),
         Case("rotating-ellipse", 2, 0.02, 0.01, 1000),
         Case("periodic-blob", 4, 0.05, 0.1, 1000))


@dataclass
class Params:
    cases: tuple = CASES
    n_pixels: int = 32
    batch_size: int = 128
    hidden: tuple = (128, 128)
    decoder_steps: int = 2000
    decoder_batch: int = 128
    decoder_hidden: tuple = (256, 256)
    # pair distances as fractions of the manifold's diameter (those below the
    # injectivity radius are used)
    fractions: tuple = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    n_pairs: int = 256
    ts: tuple = (0.25, 0.5, 0.75)
    strip_fraction: float = 0.25
    seed: int = 0
    quick_mode: bool = False

    @classmethod
    def quick(cls) -> "Params":
        return cls(cases=tuple(replace(c, steps=40) for c in CASES), n_pixels=24, batch_size=32, decoder_steps=60,
                   decoder_batch=64, hidden=(32,), decoder_hidden=(64, 64), fractions=(0.05, 0.25), n_pairs=32,
                   quick_mode=True)


def _mean(t) -> float:
    return float(t.mean())


def _stderr(t) -> float:
    return float(t.std() / math.sqrt(t.numel())) if t.numel() > 1 else 0.0


def _pixels(manifold, x) -> list:
    return np.round(manifold.pixels(x).numpy(), 4).tolist()


def run_case(case: Case, p: Params) -> dict:
    cfg = TrainConfig(manifold=case.manifold, latent_dim=case.latent_dim, delta=case.delta, lam=case.lam,
                      steps=case.steps, batch_size=p.batch_size, hidden=tuple(p.hidden),
                      warmup=min(100, case.steps // 10), seed=p.seed, n_pixels=p.n_pixels, limit="none")
    dcfg = DecoderConfig(hidden=tuple(p.decoder_hidden), steps=p.decoder_steps, batch_size=p.decoder_batch,
                         seed=p.seed, warmup=min(50, p.decoder_steps // 10))
    M = cfg.make_manifold()
    t0 = time.perf_counter()
    enc = train(cfg, progress=False, evaluate_final=False)
    t_enc = time.perf_counter() - t0
    gamma = fit_decoder(enc.model, M, dcfg)
    plain = train_plain_autoencoder(cfg, dcfg)
    models = {"gamma": (gamma.encoder, gamma.decoder), "plain": (plain.encoder, plain.decoder)}

    diam = diameter(M)
    rows, checks = [], {"interpolant_midpoint": 0.0}
    if isinstance(M, TranslatingBlob):
        checks["oracle_defect"] = 0.0
    for k, f in enumerate(p.fractions):
        d = f * diam
        if d >= M.injectivity_radius:
            continue
        pairs = sample_pairs(M, p.n_pairs, d, seed=p.seed + 1000 + k)
        row = {"fraction": f, "distance": d, "n": len(pairs)}
        for name, (e, dec) in models.items():
            defect = latent_midpoint_defect(e, pairs)
            err = interpolation_errors(e, dec, M, pairs, p.ts)
            row[name] = {
                "defect": _mean(defect), "defect_stderr": _stderr(defect),
                "defect_p90": float(torch.quantile(defect, 0.9)),
                "error": _mean(err.decoded), "error_stderr": _stderr(err.decoded.mean(0)),
                "error_by_t": [_mean(e_t) for e_t in err.decoded],
                "floor": _mean(err.reconstruction),
            }
        row["ambient_linear"] = _mean(err.ambient_linear)
        # the measures themselves: gamma(1/2) is av(x, y); an exact flat chart has no defect
        mid = geodesic_interpolant(M, pairs, 0.5)
        checks["interpolant_midpoint"] = max(checks["interpolant_midpoint"], float(
            (torch.linalg.vector_norm(mid - pairs.midpoint, dim=-1) / torch.linalg.vector_norm(mid, dim=-1)).max()))
        if isinstance(M, TranslatingBlob):
            oracle = latent_midpoint_defect(lambda x: flat_coordinates(M, x), pairs)
            checks["oracle_defect"] = max(checks["oracle_defect"], float(oracle.max()))
        rows.append(row)

    # a strip: one pair at strip_fraction of the diameter, true and decoded interpolants
    ts_strip = (0.0, 0.25, 0.5, 0.75, 1.0)
    pair = sample_pairs(M, 2, p.strip_fraction * diam, seed=p.seed + 2000)
    one = replace(pair, x=pair.x[:1], y=pair.y[:1], midpoint=pair.midpoint[:1], dist=pair.dist[:1], v=pair.v[:1],
                  r=pair.r[:1], replicate=pair.replicate[:1])
    strip = {"ts": ts_strip, "distance": float(one.dist[0]),
             "true": [_pixels(M, geodesic_interpolant(M, one, t))[0] for t in ts_strip]}
    truth = torch.stack([geodesic_interpolant(M, one, t)[0] for t in ts_strip])
    for name, (e, dec) in models.items():
        path = decode_latent_path(e, dec, one.x, one.y, ts_strip)[:, 0]
        strip[name] = _pixels(M, path)
        # mean relative error over the interior t of the strip
        rel = torch.linalg.vector_norm(path - truth, dim=-1) / torch.linalg.vector_norm(truth, dim=-1)
        strip[f"{name}_error"] = float(rel[1:-1].mean())

    return {
        "manifold": case.manifold, "repr": repr(M), "diameter": diam,
        "injectivity_radius": M.injectivity_radius, "case": case,
        "encoder_seconds": t_enc, "encoder_final_loss": enc.history[-1]["loss"],
        "decoder": {"gamma": gamma.to_dict(), "plain": plain.to_dict()},
        "rows": rows, "checks": checks, "strip": strip,
    }


def run(p: Params) -> dict:
    with torch.random.fork_rng(devices=[]):
        threads = torch.get_num_threads()
        # small batches: one thread is faster, and never oversubscribes a shared machine
        torch.set_num_threads(1)
        try:
            cases = [run_case(c, p) for c in p.cases]
        finally:
            torch.set_num_threads(threads)
    return {"quick": p.quick_mode, "ts": p.ts, "goal_fraction": GOAL_FRACTION, "cases": cases}


def summary(data: dict) -> list[dict]:
    out = []
    for c in data["cases"]:
        name = c["manifold"]
        what = "gamma(1/2) = av, exact-chart defect" if "oracle_defect" in c["checks"] else "gamma(1/2) = av"
        worst = max(c["checks"].values())
        out.append({"quantity": f"{name}: {what}", "measured": worst, "expected": "< 1e-8",
                    "passed": bool(worst < 1e-8)})
        for enc in ENCODERS:
            dec = c["decoder"][enc]
            out.append({"quantity": f"{name}: {enc} training lowers recon. error",
                        "measured": dec["error_after"], "expected": f"< {dec['error_before']:.3g} (before)",
                        "passed": bool(dec["error_after"] < dec["error_before"])})
        values = [r[e][k] for r in c["rows"] for e in ENCODERS for k in ("defect", "error", "floor")]
        out.append({"quantity": f"{name}: all measures finite and >= 0", "measured": len(values),
                    "expected": "finite", "passed": bool(all(math.isfinite(v) and v >= 0 for v in values))})
        if data["quick"]:
            continue
        goal = [r for r in c["rows"] if r["fraction"] <= data["goal_fraction"] + 1e-12]
        for key, what in (("defect", "midpoint defect"), ("error", "interp. error")):
            ratio = max(r["gamma"][key] / r["plain"][key] for r in goal)
            out.append({"quantity": f"{name}: {what} L_delta/plain, d <= diam/4",
                        "measured": ratio, "expected": "< 1 at every d", "passed": bool(ratio < 1)})
    return out


def plot(data: dict):
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec, GridSpecFromSubplotSpec

    cases = data["cases"]
    ncol = len(cases)
    fig = plt.figure(figsize=(4.3 * ncol, 12.5))
    gs = GridSpec(3, ncol, figure=fig, height_ratios=[1, 1, 0.95], hspace=0.42, wspace=0.3)
    for j, c in enumerate(cases):
        frac = [r["fraction"] for r in c["rows"]]
        ax = fig.add_subplot(gs[0, j])
        for e in ENCODERS:
            ax.errorbar(frac, [r[e]["defect"] for r in c["rows"]], yerr=[2 * r[e]["defect_stderr"] for r in c["rows"]],
                        fmt=MARKERS[e], color=COLOURS[e], ms=4, mfc="none" if e == "plain" else None, capsize=2,
                        label=LABELS[e])
        ax.axvline(data["goal_fraction"], color="0.6", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_title(f"{c['manifold']}: latent midpoint defect", fontsize=10)
        ax.set_xlabel("geodesic distance / diameter")
        if j == 0:
            ax.set_ylabel(r"$|\varphi(av) - (\varphi(x)+\varphi(y))/2| \,/\, |\varphi(x)-\varphi(y)|$", fontsize=8)
            ax.legend(fontsize=7)
        ax = fig.add_subplot(gs[1, j])
        for e in ENCODERS:
            ax.errorbar(frac, [r[e]["error"] for r in c["rows"]], yerr=[2 * r[e]["error_stderr"] for r in c["rows"]],
                        fmt=MARKERS[e], color=COLOURS[e], ms=4, mfc="none" if e == "plain" else None, capsize=2,
                        label=LABELS[e])
            ax.plot(frac, [r[e]["floor"] for r in c["rows"]], ":", color=COLOURS[e], lw=1.2,
                    label=f"{e}: decoder error at the true interpolant")
        ax.plot(frac, [r["ambient_linear"] for r in c["rows"]], "-", color="0.55", lw=1,
                label=r"interpolating pixels, $(1-t)x + ty$")
        ax.axvline(data["goal_fraction"], color="0.6", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_title(f"{c['manifold']}: decoded interpolation error", fontsize=10)
        ax.set_xlabel("geodesic distance / diameter")
        if j == 0:
            ax.set_ylabel(r"$|D((1-t)\varphi(x)+t\varphi(y)) - \gamma(t)| / |\gamma(t)|$" + "\n"
                          r"mean over $t = 1/4, 1/2, 3/4$", fontsize=8)
            ax.legend(fontsize=6)
        s = c["strip"]
        sub = GridSpecFromSubplotSpec(3, len(s["ts"]), subplot_spec=gs[2, j], wspace=0.04, hspace=0.08)
        lim = max(float(np.max(s["true"])), 1e-12)
        err = {e: s[f"{e}_error"] for e in ENCODERS}
        labels = (("true", "geodesic"), ("gamma", r"$L_\delta$" + f"\n{100 * err['gamma']:.1f}%"),
                  ("plain", "plain AE" + f"\n{100 * err['plain']:.1f}%"))
        for i, (key, label) in enumerate(labels):
            for k, t in enumerate(s["ts"]):
                ax = fig.add_subplot(sub[i, k])
                ax.imshow(np.asarray(s[key][k]).T, origin="lower", cmap="magma", vmin=0, vmax=lim)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"t = {t:g}", fontsize=8)
                if k == 0:
                    ax.set_ylabel(label, fontsize=8)
        fig.add_subplot(gs[2, j]).set_axis_off()
        fig.axes[-1].set_title(f"d = {s['distance']:.3g} = {s['distance'] / c['diameter']:.2f} diameter", fontsize=9,
                               pad=14)
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
