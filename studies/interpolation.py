"""Latent interpolation through three encoders with equal decoders (issues 7 and 14): on
TranslatingBlob, RotatingEllipse and PeriodicBlob, for pairs at geodesic distances from small to
large, is the latent straight line between two codes the code of the geodesic?

Three encoders per manifold, all of one architecture and one set of initial weights
(:func:`gammalimit.train.build_encoder` of one TrainConfig):

- ``gamma``: ours, trained on ``L_delta`` alone for the case's ``steps``;
- ``plain``: the encoder of a plain autoencoder, trained jointly with a decoder on reconstruction;
- ``joint``: the encoder of an autoencoder trained on reconstruction + ``L_delta``
  (:func:`gammalimit.neural_peers.train_neural_peer` ``("gamma", ...)``, its default weight 1,
  not tuned).

The two autoencoders get ``steps + decoder_steps`` joint steps (the budget of our encoder and one
decoder together, as the plain baseline always had); their own decoders are then discarded. Every
encoder is frozen and gets a *fresh* decoder from :func:`gammalimit.autoencoder.fit_decoder` with
one DecoderConfig: the same architecture, the same initial weights (one seed), the same points at
every step, ``decoder_steps`` steps. Only the code normalisation follows each encoder's codes. The
decoders then differ only through the encoder they invert, so the decoded measures compare encoders.

Measures, per pair ``y = exp_x(d v)`` and ``t = 1/4, 1/2, 3/4`` (gammalimit.autoencoder):
(a) the latent midpoint defect ``|phi(av) - (phi(x)+phi(y))/2| / |phi(x) - phi(y)|``; (b) the
interpolation error ``|D((1-t)phi(x) + t phi(y)) - gamma(t)| / |gamma(t)|`` (pixel-weighted L2)
against the geodesic interpolant; (c) its floor, the decoder's error at the true interpolant,
``|D(phi(gamma(t))) - gamma(t)| / |gamma(t)|``; (d) the excess, (b) - (c); and (e) the decoded
defect ``|D((1-t)phi(x) + t phi(y)) - D(phi(gamma(t)))| / |gamma(t)|``, the latent line's distance
from the code of the true interpolant, seen through the decoder. (e) is the measure that separates
geometry from decoder quality: it vanishes, whatever the decoder, when the encoder maps the geodesic
to the straight segment at constant speed, and it bounds the excess, ``|(b) - (c)| <= (e) <= (b) + (c)``.
The excess is a difference of two errors: for a bent encoder it can vanish, or be negative, where
they partly cancel; (e) is zero only where the latent line meets the code of the true interpolant
(for an injective decoder). (e) still sees the decoder through its stretch near the codes; as
``D o phi ~ id`` on the manifold, that stretch undoes each encoder's scale, and the decoders are
equal in all else.

References for (a): a flat chart has none (the translating blob's exact chart is checked to
round-off); the rotating ellipse is a closed curve and the periodic blob a flat torus, compact, so
that no encoder maps their geodesics to straight lines: their panels show the defect of the round circle and of the Clifford torus
(:func:`round_defect`), and for a closed curve no encoder beats the round circle's to leading order.

Goals, at every distance up to a quarter of the diameter, measured honestly: (a), (b) and (e) lower
for ours than for the plain autoencoder, and for the joint mode than for the plain autoencoder.

Compute budget: the full mode stays near 400 s on one thread, so ``decoder_steps`` is 800 (it was
2000 when only two decoders were trained and the plain autoencoder was the only joint one): each case
trains one ``L_delta`` encoder, two autoencoders of ``steps + 800`` joint steps (the joint mode pays
for ``L_delta``'s pairs at every step) and three decoders of 800 steps.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from gammalimit.autoencoder import (DecoderConfig, decode_latent_path, fit_decoder, geodesic_interpolant,
                                    interpolation_errors, latent_midpoint_defect)
from gammalimit.embeddings import flat_coordinates
from gammalimit.manifolds import PeriodicBlob, RotatingEllipse, TranslatingBlob
from gammalimit.manifolds.extent import diameter
from gammalimit.neural_peers import train_neural_peer
from gammalimit.sampling import sample_pairs
from gammalimit.train import TrainConfig, train

#: place in `gammalimit reproduce`
ORDER = 70

ENCODERS = ("gamma", "plain", "joint")
LABELS = {"gamma": r"$L_\delta$ encoder", "plain": "plain AE's encoder", "joint": r"AE + $L_\delta$ (joint) encoder"}
SHORT = {"gamma": r"$L_\delta$", "plain": "plain AE", "joint": "joint"}
TEXT = {"gamma": "L_delta", "plain": "plain", "joint": "joint"}
COLOURS = {"gamma": "C0", "plain": "C3", "joint": "C2"}
MARKERS = {"gamma": "o-", "plain": "s--", "joint": "^-."}
#: the ratios the goals are on: (encoder, baseline)
RATIOS = (("gamma", "plain"), ("joint", "plain"))
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
    decoder_steps: int = 800
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


def circle_lengths(manifold) -> tuple | None:
    """The lengths of the circles whose product ``manifold`` is, or None: the rotating ellipse, a
    closed curve of length ``l``: ``(l,)``; the periodic blob, a flat torus with both periods
    ``sqrt(g)``: ``(sqrt(g), sqrt(g))``."""
    if isinstance(manifold, RotatingEllipse):
        return (manifold.length,)
    if isinstance(manifold, PeriodicBlob):
        return (math.sqrt(manifold.metric_scale),) * 2
    return None


def round_defect(lengths, d: float, n_directions: int = 1024) -> float:
    """Mean latent midpoint defect of the product of round circles of the given ``lengths`` (the
    round circle of a closed curve, the Clifford torus of a flat torus): an isometric encoder,
    bent only by its circles. For a closed curve no encoder, isometric or not, into any ``R^l`` beats
    the round circle's mean defect to leading order in ``d``: that is ``E[kappa |Dphi v|] d / 8`` over ``x ~ mu``,
    and Fenchel's total curvature ``>= 2 pi`` bounds it below by ``pi d / (4 l)``.

    A step ``d v_i`` along circle ``i`` (radius ``R_i = l_i / 2 pi``, angle ``a_i = d v_i / R_i``)
    has chord ``2 R_i sin(a_i/2)`` and sagitta ``R_i (1 - cos(a_i/2))``; the defect is
    ``|sagittas| / |chords|`` (``tan(a/4)/2`` for one circle), averaged over unit directions ``v``
    uniform in the flat chart (``n_directions`` midpoint-rule angles for two circles).

    Parameters
    ----------
    lengths : tuple of float, length 1 or 2
    d : float
        Geodesic distance, below half of every length.

    Returns
    -------
    float
    """
    radii = np.asarray(lengths, dtype=float) / (2 * math.pi)
    if len(radii) == 1:
        v = np.ones((1, 1))
    else:
        theta = (np.arange(n_directions) + 0.5) * 2 * math.pi / n_directions
        v = np.stack([np.cos(theta), np.sin(theta)], -1)
    half = d * v / radii / 2
    sagitta = np.linalg.norm(radii * (1 - np.cos(half)), axis=-1)
    chord = np.linalg.norm(2 * radii * np.sin(half), axis=-1)
    return float(np.mean(sagitta / chord))


def _measures(defect, err) -> dict:
    """Means and spreads over the pairs of one distance; ``defect`` ``shape=[k]``, ``err`` an
    :class:`~gammalimit.autoencoder.InterpolationErrors` of ``shape=[len(ts), k]``."""
    excess = err.decoded - err.reconstruction
    return {
        "defect": _mean(defect), "defect_stderr": _stderr(defect), "defect_p90": float(torch.quantile(defect, 0.9)),
        "error": _mean(err.decoded), "error_stderr": _stderr(err.decoded.mean(0)),
        "error_by_t": [_mean(e_t) for e_t in err.decoded],
        "floor": _mean(err.reconstruction),
        "excess": _mean(excess), "excess_stderr": _stderr(excess.mean(0)),
        "decoded_defect": _mean(err.decoded_defect), "decoded_defect_stderr": _stderr(err.decoded_defect.mean(0)),
    }


def run_case(case: Case, p: Params) -> dict:
    cfg = TrainConfig(manifold=case.manifold, latent_dim=case.latent_dim, delta=case.delta, lam=case.lam,
                      steps=case.steps, batch_size=p.batch_size, hidden=tuple(p.hidden),
                      warmup=min(100, case.steps // 10), seed=p.seed, n_pixels=p.n_pixels, limit="none")
    dcfg = DecoderConfig(hidden=tuple(p.decoder_hidden), steps=p.decoder_steps, batch_size=p.decoder_batch,
                         seed=p.seed, warmup=min(50, p.decoder_steps // 10))
    M = cfg.make_manifold()
    seconds = {}
    t0 = time.perf_counter()
    enc = train(cfg, progress=False, evaluate_final=False)
    seconds["gamma"] = time.perf_counter() - t0
    # the autoencoders: steps + decoder_steps joint steps each; their decoders are discarded
    joint_steps = case.steps + p.decoder_steps
    autoencoders = {"plain": train_neural_peer("plain", cfg, dcfg, steps=joint_steps),
                    "joint": train_neural_peer("gamma", cfg, dcfg, steps=joint_steps)}
    seconds.update({k: r.seconds for k, r in autoencoders.items()})
    encoders = {"gamma": enc.model, **{k: r.encoder for k, r in autoencoders.items()}}
    # one DecoderConfig for every frozen encoder: same architecture, initial weights, points, steps
    fits = {k: fit_decoder(e, M, dcfg) for k, e in encoders.items()}
    models = {k: (f.encoder, f.decoder) for k, f in fits.items()}

    diam = diameter(M)
    lengths = circle_lengths(M)
    rows, checks = [], {"interpolant_midpoint": 0.0}
    if isinstance(M, TranslatingBlob):
        checks["oracle_defect"] = 0.0
    for k, f in enumerate(p.fractions):
        d = f * diam
        if d >= M.injectivity_radius:
            continue
        pairs = sample_pairs(M, p.n_pairs, d, seed=p.seed + 1000 + k)
        row = {"fraction": f, "distance": d, "n": len(pairs)}
        if lengths is not None:
            row["round_defect"] = round_defect(lengths, d)
        for name, (e, dec) in models.items():
            err = interpolation_errors(e, dec, M, pairs, p.ts)
            row[name] = _measures(latent_midpoint_defect(e, pairs), err)
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
        "manifold": case.manifold, "repr": repr(M), "diameter": diam, "circle_lengths": lengths,
        "injectivity_radius": M.injectivity_radius, "case": case, "joint_steps": joint_steps,
        "encoder_seconds": seconds,
        # L_delta at the last step: of our encoder, and the joint mode's regulariser (float32 batch values)
        "final_l_delta": {"gamma": enc.history[-1]["loss"], "joint": autoencoders["joint"].regulariser_losses[-1]},
        # the autoencoders' own (discarded) decoders, and the fresh decoder of every frozen encoder
        "autoencoder": {k: r.to_dict() for k, r in autoencoders.items()},
        "decoder": {k: f.to_dict() for k, f in fits.items()},
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
        trained = [(f"{k} autoencoder", v) for k, v in c["autoencoder"].items()]
        trained += [(f"{k} encoder's fresh decoder", v) for k, v in c["decoder"].items()]
        for what, dec in trained:
            out.append({"quantity": f"{name}: {what} lowers recon. error",
                        "measured": dec["error_after"], "expected": f"< {dec['error_before']:.3g} (before)",
                        "passed": bool(dec["error_after"] < dec["error_before"])})
        values = [r[e][k] for r in c["rows"] for e in ENCODERS for k in ("defect", "error", "floor", "decoded_defect")]
        out.append({"quantity": f"{name}: all measures finite and >= 0", "measured": len(values),
                    "expected": "finite", "passed": bool(all(math.isfinite(v) and v >= 0 for v in values))})
        if data["quick"]:
            continue
        goal = [r for r in c["rows"] if r["fraction"] <= data["goal_fraction"] + 1e-12]
        for a, b in RATIOS:
            for key, what in (("defect", "midpoint defect"), ("error", "interp. error"),
                              ("decoded_defect", "decoded defect")):
                ratio = max(r[a][key] / r[b][key] for r in goal)
                out.append({"quantity": f"{name}: {what} {TEXT[a]}/{TEXT[b]}, d <= diam/4",
                            "measured": ratio, "expected": "< 1 at every d", "passed": bool(ratio < 1)})
    return out


def _curves(ax, c, key, floors=False) -> list:
    """Draw ``key`` for every encoder against distance / diameter; return the floors' lines."""
    frac = [r["fraction"] for r in c["rows"]]
    lines = []
    for e in ENCODERS:
        ax.errorbar(frac, [r[e][key] for r in c["rows"]], yerr=[2 * r[e][f"{key}_stderr"] for r in c["rows"]],
                    fmt=MARKERS[e], color=COLOURS[e], ms=4, mfc="none" if e == "plain" else None, capsize=2,
                    label=LABELS[e])
        if floors:
            lines += ax.plot(frac, [r[e]["floor"] for r in c["rows"]], ":", color=COLOURS[e], lw=1.2,
                             label=f"{SHORT[e]}: floor")
    ax.axvline(GOAL_FRACTION, color="0.6", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("geodesic distance / diameter")
    return lines


def plot(data: dict):
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec, GridSpecFromSubplotSpec

    cases = data["cases"]
    ncol = len(cases)
    fig = plt.figure(figsize=(4.3 * ncol, 17.5))
    gs = GridSpec(4, ncol, figure=fig, height_ratios=[1, 1, 1, 1.25], hspace=0.42, wspace=0.3)
    for j, c in enumerate(cases):
        m = c["manifold"]
        ax = fig.add_subplot(gs[0, j])
        _curves(ax, c, "defect")
        if c["circle_lengths"] is not None:
            ax.plot([r["fraction"] for r in c["rows"]], [r["round_defect"] for r in c["rows"]], "-", color="0.55",
                    lw=1, label="round circle" if len(c["circle_lengths"]) == 1 else "Clifford torus")
        if c["circle_lengths"] is not None or (j == 0 and all(cc["circle_lengths"] is None for cc in cases)):
            ax.legend(fontsize=7, loc="lower right", title="frozen encoder + its fresh decoder", title_fontsize=7)
        ax.set_title(f"{m}: latent midpoint defect", fontsize=10)
        if j == 0:
            ax.set_ylabel(r"$|\varphi(av) - (\varphi(x)+\varphi(y))/2| \,/\, |\varphi(x)-\varphi(y)|$", fontsize=8)
        ax = fig.add_subplot(gs[1, j])
        lines = _curves(ax, c, "error", floors=True)
        lines += ax.plot([r["fraction"] for r in c["rows"]], [r["ambient_linear"] for r in c["rows"]], "-",
                         color="0.55", lw=1, label=r"pixels, $(1-t)x + ty$")
        ax.set_title(f"{m}: decoded interpolation error", fontsize=10)
        if j == 0:
            ax.set_ylabel(r"$|D((1-t)\varphi(x)+t\varphi(y)) - \gamma(t)| / |\gamma(t)|$" + "\n"
                          r"mean over $t = 1/4, 1/2, 3/4$", fontsize=8)
            ax.legend(handles=lines, fontsize=6, loc="lower right",
                      title=r"floor: $|D(\varphi(\gamma(t))) - \gamma(t)| / |\gamma(t)|$", title_fontsize=6)
        ax = fig.add_subplot(gs[2, j])
        _curves(ax, c, "decoded_defect")
        ax.set_title(f"{m}: decoded defect (geometry part)", fontsize=10)
        if j == 0:
            ax.set_ylabel(r"$|D((1-t)\varphi(x)+t\varphi(y)) - D(\varphi(\gamma(t)))| / |\gamma(t)|$" + "\n"
                          r"mean over $t = 1/4, 1/2, 3/4$", fontsize=8)
        s = c["strip"]
        sub = GridSpecFromSubplotSpec(1 + len(ENCODERS), len(s["ts"]), subplot_spec=gs[3, j], wspace=0.04,
                                      hspace=0.08)
        lim = max(float(np.max(s["true"])), 1e-12)
        labels = [("true", "geodesic")] + [(e, f"{SHORT[e]}\n{100 * s[f'{e}_error']:.1f}%") for e in ENCODERS]
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
        fig.add_subplot(gs[3, j]).set_axis_off()
        fig.axes[-1].set_title(f"d = {s['distance']:.3g} = {s['distance'] / c['diameter']:.2f} diameter", fontsize=9,
                               pad=14)
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
