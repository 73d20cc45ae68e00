"""The L_delta encoder beside the manifold-learning methods users would
otherwise pick (issue 7): scikit-learn's Isomap, LocallyLinearEmbedding
(standard, Hessian, LTSA), SpectralEmbedding and MDS on the same samples of
SwissRoll, FlatTorus, Sphere, TranslatingBlob, RotatingEllipse and
PeriodicBlob. Measured: local isometry error at scale delta (after the best
single global scale, for every method), the bending (latent midpoint defect),
Procrustes error against the true flat coordinates where they exist,
out-of-sample isometry error where the method has `transform`, and fit time.
Writes peers.md (the table) beside peers.png and peers.json."""

from __future__ import annotations

import inspect
import math
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from gammalimit.autoencoder import midpoint_defect
from gammalimit.embeddings import flat_coordinates
from gammalimit.estimator import GammaEncoder, local_isometry_error, overlap_fraction, procrustes_error
from gammalimit.metrics import embedding_metrics
from gammalimit.sampling import sample_pairs
from gammalimit.train import make_manifold

#: place in `gammalimit reproduce`
ORDER = 80

OURS = "L_delta encoder"
#: Like for like: our encoder trained on the same X the peers see (chord distances, projected midpoints).
OURS_SAMPLES = "L_delta encoder (samples)"
PEERS = ("Isomap", "LLE", "Hessian LLE", "LTSA", "Spectral", "MDS")
METHODS = (OURS, OURS_SAMPLES) + PEERS


@dataclass(frozen=True)
class Case:
    """A manifold, the latent dimension every method gets, the scale, and
    how our encoder is trained (image manifolds: as in studies/train_images.py)."""

    manifold: str
    latent_dim: int
    delta: float
    lam: float
    steps: int
    flat: bool  # intrinsically flat: the goal (our isometry error below every peer's) applies
    start: str = "auto"  # the trainer's global start (auto: Isomap where the PCA start folds, as on the roll)


CASES = (Case("swissroll", 2, 2.0, 1.0, 600, True),
         Case("torus", 4, 0.3, 0.01, 1000, True),
         Case("sphere", 3, 0.3, 0.01, 1000, False),
         Case("translating-blob", 2, 0.05, 0.01, 600, True),
         Case("rotating-ellipse", 2, 0.02, 0.01, 1000, True),
         Case("periodic-blob", 4, 0.05, 0.1, 1000, True))


@dataclass
class Params:
    cases: tuple = CASES
    methods: tuple = METHODS
    n_pixels: int = 32
    n_pairs: int = 400          # the fitted sample is [x; y; av(x, y)]: 3 n_pairs points
    n_test_pairs: int = 200     # held out, for transform
    mds_pairs: int = 100        # MDS (SMACOF, O(n^2) per iteration) sees the first 3 mds_pairs points
    n_neighbors: int = 12
    n_overlap_pairs: int = 2000  # random pairs of fitted points for the fold check
    sample_pool_pairs: int = 1024  # the pair pool of the encoder trained on X alone (one local fit each)
    batch_size: int = 128
    hidden: tuple = (128, 128)
    seed: int = 0
    quick_mode: bool = False

    @classmethod
    def quick(cls) -> "Params":
        cases = tuple(replace(c, steps=40) for c in CASES if c.manifold in ("swissroll", "translating-blob"))
        return cls(cases=cases, n_pixels=24, n_pairs=60, n_test_pairs=30, mds_pairs=30, batch_size=32,
                   hidden=(32,), quick_mode=True)


def _with_supported(cls, **kw):
    """``cls(**kw)`` without the keywords this scikit-learn version lacks."""
    names = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in kw.items() if k in names})


def make_method(name: str, case: Case, p: Params, dim: int):
    from sklearn.manifold import MDS, Isomap, LocallyLinearEmbedding, SpectralEmbedding

    k, l, seed = p.n_neighbors, case.latent_dim, p.seed
    if name in (OURS, OURS_SAMPLES):
        common = dict(latent_dim=l, delta=case.delta, lam=case.lam, steps=case.steps, batch_size=p.batch_size,
                      hidden=tuple(p.hidden), warmup=min(100, case.steps // 10), start=case.start, random_state=seed)
        if name == OURS:
            return GammaEncoder(manifold=case.manifold, n_pixels=p.n_pixels, **common)
        return GammaEncoder(dim=dim, pool_pairs=p.sample_pool_pairs, **common)
    if name == "Isomap":
        return Isomap(n_neighbors=k, n_components=l, eigen_solver="dense")  # ARPACK starts from an unseeded vector
    if name in ("LLE", "Hessian LLE", "LTSA"):
        method = {"LLE": "standard", "Hessian LLE": "hessian", "LTSA": "ltsa"}[name]
        # Hessian LLE needs n_neighbors > l (l + 3) / 2
        kk = max(k, l * (l + 3) // 2 + 1) if method == "hessian" else k
        return LocallyLinearEmbedding(n_neighbors=kk, n_components=l, method=method, eigen_solver="dense",
                                      random_state=seed)
    if name == "Spectral":
        return SpectralEmbedding(n_components=l, affinity="nearest_neighbors", n_neighbors=k, random_state=seed)
    if name == "MDS":
        return _with_supported(MDS, n_components=l, n_init=1, init="classical_mds", random_state=seed)
    raise ValueError(f"unknown method {name!r}; allowed: {list(METHODS)}")


def _triples(pairs):
    return torch.cat([pairs.x, pairs.y, pairs.midpoint]).numpy()


def evaluate_method(name, case, p, M, fit_pairs, test_pairs) -> dict:
    n = len(fit_pairs)
    if name == "MDS":
        n = min(n, p.mds_pairs)
        fit_pairs = type(fit_pairs)(fit_pairs.x[:n], fit_pairs.y[:n], fit_pairs.midpoint[:n], fit_pairs.dist[:n],
                                    fit_pairs.v[:n], fit_pairs.r[:n], fit_pairs.delta)
    X = _triples(fit_pairs)
    est = make_method(name, case, p, M.dim)
    t0 = time.perf_counter()
    try:
        est.fit(X)
    except Exception as err:  # a peer that fails on this manifold is reported, not hidden
        return {"method": name, "failed": f"{type(err).__name__}: {err}".splitlines()[0][:200],
                "trace": traceback.format_exc(limit=2)}
    seconds = time.perf_counter() - t0
    E = est.transform(X) if name in (OURS, OURS_SAMPLES) else est.embedding_
    E = torch.as_tensor(np.asarray(E, dtype=np.float64))
    iso = local_isometry_error(E[:n], E[n:2 * n], fit_pairs.dist)
    out = {"method": name, "fit_seconds": seconds, "n_fit": X.shape[0],
           "isometry_error": iso["error"], "scale": iso["scale"], "isometry_error_unscaled": iso["error_unscaled"],
           "midpoint_defect": float(midpoint_defect(E[:n], E[n:2 * n], E[2 * n:]).mean()),
           "procrustes_error": None, "out_of_sample_error": None,
           "finite": bool(torch.isfinite(E).all())}
    # random far pairs among the fitted points: does the embedding fold M onto itself?
    g = torch.Generator().manual_seed(p.seed + 3)
    ia, ib = torch.randint(0, X.shape[0], (2, p.n_overlap_pairs), generator=g)
    Xt = torch.from_numpy(X)
    out["overlap"] = overlap_fraction(E[ia], E[ib], M.dist(Xt[ia], Xt[ib]), case.delta, iso["scale"])
    flat = flat_coordinates(M, Xt)
    if flat is not None:
        out["procrustes_error"] = procrustes_error(E, flat)
    # the field's measures, against the true flat coordinates where they exist, else the data themselves
    out["metrics"] = embedding_metrics(flat if flat is not None else X, E, k=p.n_neighbors, seed=p.seed)
    if hasattr(est, "transform") and name != "MDS":
        m = len(test_pairs)
        Et = torch.as_tensor(np.asarray(est.transform(_triples(test_pairs)), dtype=np.float64))
        out["out_of_sample_error"] = local_isometry_error(Et[:m], Et[m:2 * m], test_pairs.dist,
                                                          scale=iso["scale"])["error"]
    return out


def run_case(case: Case, p: Params) -> dict:
    M = make_manifold(case.manifold, p.n_pixels)
    fit_pairs = sample_pairs(M, p.n_pairs, case.delta, seed=p.seed + 1)
    test_pairs = sample_pairs(M, p.n_test_pairs, case.delta, seed=p.seed + 2)
    # the measures themselves: an exact isometric chart has no error, no defect
    flat = flat_coordinates(M, torch.cat([fit_pairs.x, fit_pairs.y, fit_pairs.midpoint]))
    check = None
    if flat is not None:
        n = len(fit_pairs)
        check = max(local_isometry_error(flat[:n], flat[n:2 * n], fit_pairs.dist)["error"],
                    float(midpoint_defect(flat[:n], flat[n:2 * n], flat[2 * n:]).max()),
                    procrustes_error(flat @ torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=flat.dtype) * 3 + 1, flat))
    results = [evaluate_method(name, case, p, M, fit_pairs, test_pairs) for name in p.methods]
    return {"manifold": case.manifold, "repr": repr(M), "ambient_dim": M.ambient_dim, "case": asdict(case),
            "exact_chart_check": check,
            "results": results}


def run(p: Params) -> dict:
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            cases = [run_case(c, p) for c in p.cases]
    finally:
        torch.set_num_threads(threads)
    data = {"quick": p.quick_mode, "seed": p.seed, "methods": list(p.methods), "cases": cases,
            "n_neighbors": p.n_neighbors, "n_pairs": p.n_pairs, "mds_pairs": p.mds_pairs}
    data["markdown"] = markdown_table(data)
    return data


def _fmt(v, digits=3):
    if v is None:
        return "n/a"
    return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _verdicts(case: dict, which: str = OURS) -> dict:
    """For each flat manifold: is the isometry error of our row ``which`` below every peer's?"""
    ours = next((r for r in case["results"] if r["method"] == which and "failed" not in r), None)
    peers = [r for r in case["results"] if r["method"] not in (OURS, OURS_SAMPLES) and "failed" not in r]
    if ours is None or not peers:
        return {"ours": None, "best_peer": None, "best_peer_error": None, "holds": None}
    best = min(peers, key=lambda r: r["isometry_error"])
    return {"ours": ours["isometry_error"], "best_peer": best["method"], "best_peer_error": best["isometry_error"],
            "holds": ours["isometry_error"] < best["isometry_error"]}


def _notes(case: dict) -> list[str]:
    """Caveats read off the numbers."""
    notes = []
    ok = [r for r in case["results"] if "failed" not in r]
    l = case["case"]["latent_dim"]
    for r in ok:
        if r["method"] == "MDS" and l == case["ambient_dim"]:
            notes.append(f"MDS embeds into l = {l} = the ambient dimension: it returns the data up to a rigid "
                         f"motion, so its error is that of the data's own embedding.")
        if r["overlap"] is not None and r["overlap"] > 0.01:
            notes.append(f"{r['method']} brings far points together: {100 * r['overlap']:.1f}% of the pairs "
                         f"with d > 4 delta land within delta of each other (a fold: not injective at that scale, "
                         f"whatever its local errors).")
    return notes


def markdown_table(data: dict) -> str:
    lines = [
        "# L_delta encoder beside scikit-learn's manifold learners",
        "",
        f"One seed (seed {data['seed']}); mean ± std over 5 seeds: peers_seeds.md (`make reproduce-long`).",
        "",
        f"Same samples for every method: {3 * data['n_pairs']} points `[x; y; av(x, y)]` from {data['n_pairs']} "
        f"pairs at geodesic distance exactly `delta` (MDS: the first {3 * data['mds_pairs']}, since SMACOF costs "
        f"O(n^2) per iteration). Every method embeds into the same dimension `l`; neighbourhood methods use "
        f"{data['n_neighbors']} neighbours (Hessian LLE at least `l(l+3)/2 + 1`).",
        "",
        "- *isometry*: RMS of `s |c(x) - c(y)| / d(x, y) - 1` over the pairs, with the best single global "
        "scale `s` for every method (ours included; `s` is reported: 1 means isometric as it stands).",
        "- *defect*: mean latent midpoint defect `|c(av) - (c(x) + c(y))/2| / |c(x) - c(y)|` (scale free); the "
        "midpoints are part of the fitted sample.",
        "- *Procrustes*: relative error after the best similarity transform onto the true flat coordinates "
        "(SwissRoll unrolled, TranslatingBlob `sqrt(pi/2) t`); n/a where there are none (torus, sphere, closed curve).",
        "- *out-of-sample*: isometry error of `transform` on held-out pairs, with the in-sample scale; n/a for "
        "methods without `transform` (SpectralEmbedding, MDS).",
        "- *overlap*: fraction of random far pairs (`d > 4 delta`) whose scaled codes lie within `delta`: "
        "folds, which the local measures cannot see (0 for an injective, nearly isometric embedding).",
        "- *fit*: wall time of `fit` on 2 shared cores; for the L_delta encoder it is training time.",
        "- The field's measures (as Geometric Autoencoders, Nazari et al. ICML 2023, and BLAE report them; "
        "`gammalimit.metrics`): trustworthiness and continuity (Venna & Kaski 2001), kNN recall, Spearman "
        "correlation of pairwise distances, and the density divergence KL_sigma of Topological Autoencoders "
        "(Moor et al. ICML 2020), each against the true flat coordinates where they exist (a flat chart is "
        "the ideal embedding there; against the data in R^3 the Swiss roll's straight-line distances would "
        "favour PCA's projection), else against the data.",
        "",
        "Two rows are ours. *L_delta encoder* is trained on pairs drawn afresh from the manifold, with their exact "
        "geodesic distance and midpoint (docs/theory.md, section 2): `fit(X)` only checks that `X` lies on the "
        "manifold, so that row is not a like-for-like contest. *L_delta encoder (samples)* is: it sees only the "
        "point cloud `X` the peers see, with chord distances and midpoints projected onto local fits "
        "(docs/theory.md, section 8; `GammaEncoder(dim=m).fit(X)`).",
        "",
    ]
    for case in data["cases"]:
        c = case["case"]
        name, l, delta, flat = c["manifold"], c["latent_dim"], c["delta"], c["flat"]
        lines += [f"## {name} (`{case['repr']}`), l = {l}, delta = {delta:g}", "",
                  "| method | isometry | scale s | defect | Procrustes | overlap | out-of-sample | fit [s] |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in case["results"]:
            if "failed" in r:
                lines.append(f"| {r['method']} | failed: {r['failed'].replace('|', '/')} | | | | | | |")
                continue
            lines.append(f"| {r['method']} | {_fmt(r['isometry_error'])} | {_fmt(r['scale'])} | "
                         f"{_fmt(r['midpoint_defect'])} | {_fmt(r['procrustes_error'])} | {_fmt(r['overlap'])} | "
                         f"{_fmt(r['out_of_sample_error'])} | {r['fit_seconds']:.2f} |")
        against = "the true flat coordinates" if any(r.get("procrustes_error") is not None
                                                     for r in case["results"]) else "the data in R^n"
        lines += ["", f"The field's measures (k = {data['n_neighbors']}, against {against}):", "",
                  "| method | trustworthiness | continuity | kNN recall | Spearman of distances | KL_0.01 | "
                  "KL_0.1 | KL_1 |", "|---|---|---|---|---|---|---|---|"]
        for r in case["results"]:
            if "failed" in r or "metrics" not in r:
                continue
            q = r["metrics"]
            lines.append(f"| {r['method']} | {q['trustworthiness']:.4f} | {q['continuity']:.4f} | "
                         f"{q['knn_recall']:.3f} | {q['distance_spearman']:.4f} | {_fmt(q['KL_0.01'])} | "
                         f"{_fmt(q['KL_0.1'])} | {_fmt(q['KL_1'])} |")
        lines.append("")
        for which in (OURS, OURS_SAMPLES):
            v = _verdicts(case, which)
            if v["holds"] is None:
                verdict = "no comparison (a method failed)"
            elif v["holds"]:
                verdict = (f"{which} ({_fmt(v['ours'])}) is below every peer's (best: {v['best_peer']}, "
                           f"{_fmt(v['best_peer_error'])})")
            else:
                verdict = (f"**does not hold**: {which} {_fmt(v['ours'])}, {v['best_peer']} "
                           f"{_fmt(v['best_peer_error'])}")
            lines += [f"Goal (flat manifolds: our isometry error below every peer's): "
                      f"{verdict if flat else 'not applicable (the sphere is curved)'}.", ""]
        lines += [f"Note: {n}" for n in _notes(case)] + ([""] if _notes(case) else [])
    return "\n".join(lines) + "\n"


def extra_files(data: dict) -> dict:
    """Files :func:`gammalimit.reproduce.run_study` writes beside the figure."""
    return {"peers.md": data["markdown"]}


def summary(data: dict) -> list[dict]:
    out = []
    for case in data["cases"]:
        c = case["case"]
        name, flat = c["manifold"], c["flat"]
        if case["exact_chart_check"] is not None:
            out.append({"quantity": f"{name}: exact flat chart: errors", "measured": case["exact_chart_check"],
                        "expected": "< 1e-9", "passed": bool(case["exact_chart_check"] < 1e-9)})
        ok = [r for r in case["results"] if "failed" not in r]
        in_range = all(r["finite"] and math.isfinite(r["isometry_error"]) and r["isometry_error"] >= 0
                       and r["fit_seconds"] >= 0 and math.isfinite(r["midpoint_defect"])
                       and (r["procrustes_error"] is None or 0 <= r["procrustes_error"] <= 1 + 1e-9)
                       and (math.isnan(r["overlap"]) or 0 <= r["overlap"] <= 1)
                       for r in ok)
        out.append({"quantity": f"{name}: methods run, measures finite, in range",
                    "measured": f"{len(ok)}/{len(case['results'])} ran", "expected": "ours runs; finite",
                    "passed": bool(in_range and any(r["method"] == OURS for r in ok))})
        if data["quick"]:
            continue
        ours = next((r for r in ok if r["method"] == OURS), None)
        if ours is not None:
            out.append({"quantity": f"{name}: ours does not fold (overlap)", "measured": ours["overlap"],
                        "expected": "< 0.01", "passed": bool(ours["overlap"] < 0.01)})
        if not flat:
            continue
        for which, label in ((OURS, "ours"), (OURS_SAMPLES, "ours from X alone")):
            v = _verdicts(case, which)
            if v["ours"] is None and which == OURS_SAMPLES and which not in data["methods"]:
                continue
            out.append({"quantity": f"{name}: isometry error, {label} < every peer",
                        "measured": v["ours"] if v["ours"] is not None else "n/a",
                        "expected": f"< {_fmt(v['best_peer_error'])} ({v['best_peer']})",
                        "passed": bool(v["holds"])})
    return out


MARKERS = {OURS: "*", OURS_SAMPLES: "X", "Isomap": "o", "LLE": "s", "Hessian LLE": "D", "LTSA": "^", "Spectral": "v", "MDS": "P"}
FLOOR = 1e-4  # values below are drawn at the floor, open markers


def _style(m, i):
    ours = m in (OURS, OURS_SAMPLES)
    return {"marker": MARKERS.get(m, "o"), "color": "k" if m == OURS else ("0.4" if ours else f"C{i}"),
            "s": 110 if m == OURS else (70 if ours else 36), "zorder": 3 if ours else 2}


def plot(data: dict):
    import matplotlib.pyplot as plt

    cases = data["cases"]
    methods = data["methods"]
    names = [c["case"]["manifold"] for c in cases]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1.3, 1.3, 1]})
    x = np.arange(len(cases))
    offsets = np.linspace(-0.3, 0.3, len(methods))
    for ax, key, title in ((axes[0], "isometry_error", r"local isometry error at scale $\delta$ (best global scale)"),
                           (axes[1], "midpoint_defect", "latent midpoint defect at scale $\\delta$ (bending)")):
        for i, m in enumerate(methods):
            vals = np.array([next(r for r in c["results"] if r["method"] == m).get(key, np.nan) for c in cases],
                            dtype=float)
            low = vals < FLOOR
            st = _style(m, i)
            ax.scatter(x[~low] + offsets[i], vals[~low], label=m, **st)
            if low.any():
                ax.scatter(x[low] + offsets[i], np.full(low.sum(), FLOOR), facecolors="none",
                           edgecolors=st["color"], marker=st["marker"], s=st["s"], zorder=st["zorder"])
        for k in x[:-1]:
            ax.axvline(k + 0.5, color="0.85", lw=0.8)
        ax.set_yscale("log")
        if key == "isometry_error":
            ax.set_ylim(bottom=FLOOR / 2)
        ax.set_xticks(x, names, fontsize=8, rotation=20)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", which="major", alpha=0.3)
    axes[0].text(0.01, 0.01, f"open markers: below {FLOOR:g} (MDS with l = ambient dim returns the data)",
                 transform=axes[0].transAxes, fontsize=7, color="0.3")
    ax = axes[2]
    for i, m in enumerate(methods):
        ok = [next(r for r in c["results"] if r["method"] == m) for c in cases]
        ok = [r for r in ok if "failed" not in r]
        ax.scatter([r["fit_seconds"] for r in ok], [max(r["isometry_error"], FLOOR) for r in ok], **_style(m, i))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("fit time [s] (ours: training)")
    ax.set_ylabel("isometry error")
    ax.set_title("cost against accuracy (all manifolds)", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(methods), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
