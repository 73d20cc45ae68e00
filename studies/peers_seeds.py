"""Every method of studies/peers.py and studies/neural_peers.py over several seeds (issue 14):
mean ± sample std (ddof = 1) of the local isometry error, the Procrustes error, the far-pair
overlap, the field's measures (trustworthiness, continuity, kNN recall, Spearman correlation of
distances, KL_sigma for sigma in 0.01, 0.1, 1; :mod:`gammalimit.metrics`) and the fit time.

Each seed is the sibling study's run with ``Params.seed`` set to it, case by case (its
``run_case``): seed 0 gives the single-seed studies' numbers (Isomap with the dense eigensolver:
ARPACK would start from numpy's unseeded global generator). A seed changes
the samples (fitted, held out, far pairs), the networks' initial weights and batches, and the
peers' ``random_state``.

A long mode (``LONG = True``): five seeds of both studies cost about 30 CPU-minutes, beyond
``make reproduce``'s budget; ``make reproduce-long`` or ``gammalimit reproduce peers_seeds`` runs
it. The (study, case, seed) tasks run in ``Params.jobs`` spawned worker processes, each on one
thread, and are merged in a fixed order: the numbers do not depend on ``jobs`` (Isomap's last
digits aside, as above).
Writes peers_seeds.md beside peers_seeds.png and peers_seeds.json.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import statistics
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gammalimit.metrics import DEFAULT_SIGMAS
from gammalimit.reproduce import OneThread, load
from gammalimit.validation import check_count, check_seed

#: place in `gammalimit reproduce peers_seeds` / `make reproduce-long`
ORDER = 90
#: outside `make reproduce`'s default set
LONG = True

peers_study = load("peers")
neural_study = load("neural_peers")
SIBLINGS = {"peers": peers_study, "neural_peers": neural_study}
OURS = peers_study.OURS
OURS_SAMPLES = peers_study.OURS_SAMPLES

#: (key, column) of the project's own measures; "fit_seconds" is neural_peers' "seconds"
OWN = (("isometry_error", "isometry"), ("procrustes_error", "Procrustes"), ("overlap", "overlap"),
       ("fit_seconds", "fit [s]"))
#: (key, column) of the field's measures, read from a row's "metrics"
FIELD = (("trustworthiness", "trustworthiness"), ("continuity", "continuity"), ("knn_recall", "kNN recall"),
         ("distance_spearman", "Spearman of distances")) + tuple((f"KL_{s:g}", f"KL_{s:g}") for s in DEFAULT_SIGMAS)
QUANTITIES = tuple(k for k, _ in OWN + FIELD)
#: what varies from run to run on the same seed (wall times) or is not a number (a failure's traceback)
NOT_NUMBERS = ("fit_seconds", "seconds", "trace")


@dataclass
class Params:
    seeds: tuple = (0, 1, 2, 3, 4)
    peers: object = field(default_factory=lambda: peers_study.Params())
    neural_peers: object = field(default_factory=lambda: neural_study.Params())
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)  # worker processes; the numbers do not depend on it
    quick_mode: bool = False

    @classmethod
    def quick(cls) -> "Params":
        # one case of each sibling (their quick modes run both in tests/test_studies.py already)
        peers, neural = peers_study.Params.quick(), neural_study.Params.quick()
        return cls(seeds=(0, 1), peers=replace(peers, cases=peers.cases[-1:]),
                   neural_peers=replace(neural, cases=neural.cases[:1]), quick_mode=True)


def run_task(study: str, fields: dict, case: int, seed: int, default_dtype: str) -> dict:
    """``SIBLINGS[study].run_case`` of case number ``case`` with ``Params.seed = seed``, on one thread,
    with torch's default dtype ``default_dtype`` (the parent's: a spawned worker starts with torch's
    own, and a measure that reads the default, e.g. a ratio of integer tensors, would differ).

    The sibling's ``Params`` arrives as plain data (``dataclasses.asdict``): its classes live in a
    module loaded from a file, which a spawned worker cannot unpickle by name.
    """
    module = SIBLINGS[study]
    cases = tuple(module.Case(**c) for c in fields["cases"])
    p = module.Params(**{**fields, "cases": cases, "seed": seed})
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, default_dtype))
    try:
        with OneThread():
            return module.run_case(cases[case], p)
    finally:
        torch.set_default_dtype(previous)


class _LoadedStudy:
    """Pickles as ``gammalimit.reproduce.load(name)``: a spawned worker loads the study from its file."""

    def __init__(self, name: str):
        self.name = name

    def __reduce__(self):
        return load, (self.name,)


class _StudyFunction:
    """Pickles as ``getattr(load(study), name)``: a study's function, sent to a spawned worker by name
    (``studies/`` is not an importable package, so pickle cannot find the function itself)."""

    def __init__(self, study: str, name: str):
        self.study, self.name = study, name

    def __reduce__(self):
        return getattr, (_LoadedStudy(self.study), self.name)


def _tasks(p: Params) -> list[tuple]:
    """The arguments of every :func:`run_task`, in the order the results are merged."""
    dtype = str(torch.get_default_dtype()).removeprefix("torch.")
    out = []
    for study, params in (("peers", p.peers), ("neural_peers", p.neural_peers)):
        fields = asdict(params)
        out += [(study, fields, i, s, dtype) for i in range(len(params.cases)) for s in p.seeds]
    return out


def _run_tasks(tasks: list[tuple], jobs: int) -> list[dict]:
    """The results of :func:`run_task` for ``tasks``, in their order, on ``jobs`` processes."""
    if jobs == 1 or len(tasks) <= 1:
        return [run_task(*t) for t in tasks]
    from concurrent.futures import ProcessPoolExecutor

    remote = _StudyFunction(Path(__file__).stem, "run_task")
    with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(remote, *t) for t in tasks]
        try:
            return [f.result() for f in futures]
        except BaseException:  # a task failed, or Ctrl-C: do not start the rest
            for f in futures:
                f.cancel()
            raise


def _value(row: dict, key: str):
    """A row's quantity ``key``: None where it is not defined (Procrustes without flat coordinates; the
    overlap, NaN, where no drawn pair is farther than 4 delta)."""
    if key == "fit_seconds":
        return row.get("fit_seconds", row.get("seconds"))
    v = row["metrics"].get(key) if key in dict(FIELD) else row.get(key)
    return None if key == "overlap" and v is not None and math.isnan(v) else v


def stats(values) -> dict | None:
    """Mean and sample standard deviation (ddof = 1; NaN for one value) of ``values``;
    None where no value is defined (all None)."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def aggregate(runs: list[dict], methods: list[str]) -> dict:
    """Per method, over the seeds' ``run_case`` outputs ``runs`` of one case: the count of failed
    fits and their messages, and :func:`stats` of every quantity over the fits that ran."""
    out = {}
    for m in methods:
        rows = [next(r for r in run["results"] if r["method"] == m) for run in runs]
        ok = [r for r in rows if "failed" not in r]
        out[m] = {"seeds": len(rows), "failed": len(rows) - len(ok),
                  "failures": sorted({r["failed"] for r in rows if "failed" in r}),
                  **{k: stats([_value(r, k) for r in ok]) for k in QUANTITIES},
                  "values": {k: [_value(r, k) for r in ok] for k in ("isometry_error", "overlap")}}
    return out


def run(p: Params) -> dict:
    seeds = tuple(check_seed(s, "seeds") for s in p.seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, at least one, got {p.seeds!r}")
    jobs = check_count(p.jobs, "jobs")
    tasks = _tasks(p)
    results = iter(_run_tasks(tasks, jobs))
    data = {"quick": p.quick_mode, "seeds": list(seeds)}
    for study, params in (("peers", p.peers), ("neural_peers", p.neural_peers)):
        cases = []
        for _ in params.cases:
            runs = [next(results) for _ in seeds]
            methods = [r["method"] for r in runs[0]["results"]]
            cases.append({"manifold": runs[0]["manifold"], "repr": runs[0]["repr"], "case": runs[0]["case"],
                          "methods": methods, "runs": runs, "stats": aggregate(runs, methods)})
        data[study] = {"cases": cases}
    data["peers"]["n_neighbors"] = p.peers.n_neighbors
    data["neural_peers"]["n_neighbors"] = p.neural_peers.n_neighbors
    data["neural_peers"]["budget"] = {"steps": p.neural_peers.steps, "decoder_steps": p.neural_peers.decoder_steps}
    data["markdown"] = markdown_table(data)
    return data


def numbers(obj):
    """``obj`` without what changes from run to run on the same seed (:data:`NOT_NUMBERS`):
    what must be equal, seed for seed, whatever ``jobs``."""
    if isinstance(obj, dict):
        return {k: numbers(v) for k, v in obj.items() if k not in NOT_NUMBERS}
    if isinstance(obj, (list, tuple)):
        return [numbers(v) for v in obj]
    return obj


def _fmt(v, digits=3):
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _pm(s: dict | None, digits=3) -> str:
    return "n/a" if s is None else f"{_fmt(s['mean'], digits)} ± {_fmt(s['std'], 2)}"


def _ours_first(methods):
    return [m for m in methods if m == OURS] + [m for m in methods if m != OURS]


def goal(case: dict, which: str = OURS) -> dict:
    """Is the mean isometry error of ``which`` below every peer's mean? Peers are the methods that
    are not ours; a method that failed on some seed is compared on the seeds it ran."""
    st = case["stats"]
    ours_names = (OURS, OURS_SAMPLES)
    peers = [m for m in case["methods"] if m not in ours_names and st[m]["isometry_error"] is not None]
    if which not in st or st[which]["isometry_error"] is None or not peers:
        return {"ours": None, "best_peer": None, "best_peer_error": None, "holds": None, "seeds_holding": None}
    best = min(peers, key=lambda m: st[m]["isometry_error"]["mean"])
    mine = st[which]["isometry_error"]["mean"]
    # seed by seed, against the best peer of that seed (where every method ran)
    holding = 0
    for run in case["runs"]:
        rows = {r["method"]: r for r in run["results"]}
        peer_errors = [rows[m]["isometry_error"] for m in peers if "failed" not in rows[m]]
        holding += ("failed" not in rows[which] and bool(peer_errors)
                    and rows[which]["isometry_error"] < min(peer_errors))
    return {"ours": mine, "best_peer": best, "best_peer_error": st[best]["isometry_error"]["mean"],
            "holds": mine < st[best]["isometry_error"]["mean"], "seeds_holding": holding}


def _flat(case: dict) -> bool:
    """Does the goal apply: an intrinsically flat manifold (peers' ``Case.flat``; neural_peers' cases all are)."""
    return case["case"].get("flat", True)


def _not_finite(case: dict) -> list[str]:
    """``"method quantity"`` for every defined value of a fit that ran, on any seed, that is not finite."""
    bad = []
    for run in case["runs"]:
        for r in run["results"]:
            if "failed" in r:
                continue
            for k in QUANTITIES:
                v = _value(r, k)
                if v is not None and not math.isfinite(v):
                    bad.append(f"{r['method']} {k}")
    return bad


def markdown_table(data: dict) -> str:
    n = len(data["seeds"])
    seeds = ", ".join(str(s) for s in data["seeds"])
    lines = [
        f"# Every method over {n} seeds: mean ± std",
        "",
        f"Seeds {seeds} ({n} seeds) of studies/peers.py (peers.md) and studies/neural_peers.py "
        "(neural_peers.md), with their parameters; see those tables for what each measure is. Each entry is "
        f"the mean ± the sample standard deviation over the seeds (ddof = 1: divisor {n} - 1"
        + ("; with one seed it is n/a" if n == 1 else "") + "). "
        + ("Seed 0 is the single-seed studies' run, number for number. " if 0 in data["seeds"] else "")
        + "A seed changes the samples (fitted, held out, far pairs), the networks' initial weights "
        "and batches, and the peers' `random_state`. A failed fit is counted (*failed*), not averaged: a "
        "method's means are over the seeds on which it ran. n/a: not defined (Procrustes without true flat "
        "coordinates; the overlap where no drawn pair is farther than 4 delta). Fit times: wall seconds on "
        "one thread, with other tasks running beside it.",
        "",
    ]
    for study, title in (("peers", "scikit-learn's manifold learners (peers.md)"),
                         ("neural_peers", "neural autoencoders (neural_peers.md)")):
        part = data[study]
        lines += [f"## {title}", ""]
        if study == "neural_peers":
            b = part["budget"]
            lines += [f"Our encoder trains {b['steps']} steps on L_delta alone, each autoencoder "
                      f"{b['steps'] + b['decoder_steps']} joint steps; measured on held-out points.", ""]
        for case in part["cases"]:
            c, st = case["case"], case["stats"]
            head = f"### {case['manifold']} (`{case['repr']}`)"
            head += f", l = {c['latent_dim']}" if "latent_dim" in c else ""
            lines += [head + f", delta = {c['delta']:g}", "",
                      "| method | failed | " + " | ".join(label for _, label in OWN) + " |",
                      "|---|---|" + "---|" * len(OWN)]
            methods = _ours_first(case["methods"])
            for m in methods:
                s = st[m]
                failed = str(s["failed"]) + (f" ({'; '.join(s['failures'])})".replace("|", "/") if s["failed"] else "")
                lines.append(f"| {m} | {failed} | " + " | ".join(_pm(s[k]) for k, _ in OWN) + " |")
            lines += ["", f"The field's measures (k = {part['n_neighbors']}):", "",
                      "| method | " + " | ".join(label for _, label in FIELD) + " |", "|---|" + "---|" * len(FIELD)]
            for m in methods:
                lines.append(f"| {m} | " + " | ".join(_pm(st[m][k], 4) for k, _ in FIELD) + " |")
            lines.append("")
            for which in [w for w in (OURS, OURS_SAMPLES) if w in st]:
                v = goal(case, which)
                if not _flat(case):
                    verdict = f"not applicable ({case['manifold']} is curved)"
                elif v["holds"] is None:
                    verdict = "no comparison (no peer ran)"
                else:
                    verdict = (("holds" if v["holds"] else "**does not hold**") + f": {which} {_fmt(v['ours'])}, "
                               f"best peer {v['best_peer']} {_fmt(v['best_peer_error'])}; on "
                               f"{v['seeds_holding']} of {n} seeds below every peer of that seed")
                lines += [f"Goal (flat manifolds: mean isometry error below every peer's mean): {verdict}.", ""]
    return "\n".join(lines) + "\n"


def extra_files(data: dict) -> dict:
    """Files :func:`gammalimit.reproduce.run_study` writes beside the figure."""
    return {"peers_seeds.md": data["markdown"]}


def summary(data: dict) -> list[dict]:
    n = len(data["seeds"])
    out = []
    for study in ("peers", "neural_peers"):
        for case in data[study]["cases"]:
            name, st = f"{study}: {case['manifold']}", case["stats"]
            bad = _not_finite(case)
            ours_ran = min((n - st[w]["failed"] for w in (OURS, OURS_SAMPLES) if w in st), default=0)
            first = f" ({bad[0]}, ...)" if bad else ""
            out.append({"quantity": f"{name}: ours ran on every seed; all measures finite",
                        "measured": f"{ours_ran}/{n} seeds; {len(bad)} not finite{first}",
                        "expected": f"{n}/{n}; 0", "passed": ours_ran == n and not bad})
            checks = [r["exact_chart_check"] for r in case["runs"] if r.get("exact_chart_check") is not None]
            if checks:
                out.append({"quantity": f"{name}: exact flat chart: errors, all seeds", "measured": max(checks),
                            "expected": "< 1e-9", "passed": max(checks) < 1e-9})
            if data["quick"]:
                continue
            overlaps = [v for v in st[OURS]["values"]["overlap"] if v is not None] if OURS in st else []
            if overlaps:
                out.append({"quantity": f"{name}: ours does not fold (max overlap over seeds)",
                            "measured": max(overlaps), "expected": "< 0.01", "passed": max(overlaps) < 0.01})
            if not _flat(case):
                continue
            for which in [w for w in (OURS, OURS_SAMPLES) if w in st]:
                v = goal(case, which)
                label = "ours" if which == OURS else "ours from X alone"
                out.append({"quantity": f"{name}: mean isometry error, {label} < every peer's mean",
                            "measured": v["ours"] if v["ours"] is not None else "n/a",
                            "expected": f"< {_fmt(v['best_peer_error'])} ({v['best_peer']})",
                            "passed": bool(v["holds"])})
    return out


FLOOR = 1e-4  # the log axis's floor: a mean below it is drawn there, open; error bars are clipped to it


def _errorbars(ax, x, stats_list, **style):
    """Mean ± std at ``x`` on a log axis (the lower bar clipped to :data:`FLOOR`); open markers at the floor."""
    keep = [i for i, s in enumerate(stats_list) if s is not None]
    if not keep:
        return
    mean = np.array([stats_list[i]["mean"] for i in keep])
    std = np.nan_to_num(np.array([stats_list[i]["std"] for i in keep]))
    shown = np.maximum(mean, FLOOR)
    low = np.minimum(std, shown - FLOOR * 0.999)
    xs = np.asarray(x, dtype=float)[keep]
    ax.errorbar(xs, shown, yerr=[np.maximum(low, 0), std], fmt="none", ecolor=style["color"], elinewidth=1, capsize=2)
    floor = mean < FLOOR
    ax.scatter(xs[~floor], shown[~floor], **style)
    if floor.any():
        ax.scatter(xs[floor], shown[floor], facecolors="none", edgecolors=style["color"], marker=style["marker"],
                   s=style["s"], zorder=style["zorder"])


def plot(data: dict):
    import matplotlib.pyplot as plt

    panels = [("peers", "isometry_error", "scikit-learn peers: local isometry error at scale $\\delta$"),
              ("peers", "procrustes_error", "scikit-learn peers: Procrustes error vs flat coordinates"),
              ("neural_peers", "isometry_error", "neural peers: local isometry error at scale $\\delta$")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1.6, 0.9, 0.9]})
    for ax, (study, key, title) in zip(axes, panels):
        cases = [c for c in data[study]["cases"] if any(c["stats"][m][key] is not None for m in c["methods"])]
        methods = _ours_first(cases[0]["methods"]) if cases else []
        x = np.arange(len(cases))
        offsets = np.linspace(-0.3, 0.3, len(methods)) if len(methods) > 1 else np.zeros(1)
        for i, m in enumerate(methods):
            style = peers_study._style(m, i)
            _errorbars(ax, x + offsets[i], [c["stats"][m][key] for c in cases], label=m, **style)
        for k in x[:-1]:
            ax.axvline(k + 0.5, color="0.85", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(x, [c["manifold"] for c in cases], fontsize=8, rotation=20)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", which="major", alpha=0.3)
        if study == "neural_peers":
            ax.legend(fontsize=7, loc="best")
    n = len(data["seeds"])
    axes[0].text(0.01, 0.01, f"mean ± sample std (ddof = 1) over {n} seeds; open markers: mean below {FLOOR:g}",
                 transform=axes[0].transAxes, fontsize=7, color="0.3")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


if __name__ == "__main__":
    from gammalimit.reproduce import study_main

    study_main(sys.modules[__name__])
