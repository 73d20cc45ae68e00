"""Run the studies in ``studies/`` and write ``figures/``: ``gammalimit reproduce``.

A study is a file ``studies/<name>.py`` that defines, at module level,

- ``Params``: a dataclass of its parameters, with a ``quick()`` classmethod;
- ``run(params) -> dict``: plain data (numbers, lists), no plotting;
- ``plot(data) -> matplotlib.figure.Figure``;
- ``summary(data) -> list[dict]``: rows ``{quantity, measured, expected, passed}``;
- optionally ``extra_files(data) -> dict[str, str]``: more files (e.g. a
  markdown table), by file name, written as text beside the figure;
- optionally ``ORDER = <int>``: its place in ``gammalimit reproduce`` (lower
  first; studies without one follow, by name).

Studies are found by reading the files (:func:`available`), not by a list:
adding a study is adding its file. Finding them imports nothing; importing
one (:func:`load`) must not run it (the run sits behind
``if __name__ == "__main__"``). Other scripts in ``studies/`` (e.g. the
benchmark ``bench_loss.py``) lack the four names and are not studies.

Figures and JSON are written atomically (to a temporary file, then renamed),
so an interrupted run never leaves a half-written file behind. The output
folder is created (with its parents) and checked to be writable before any
study runs, so that a bad ``--out`` fails at once, not after the work. The JSON holds
the parameters, the data, the summary and the wall time.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

from .fileio import writable_folder
from .fileio import write_atomic  # noqa: F401  (re-exported for studies)

REPO = Path(__file__).resolve().parents[1]
STUDY_DIR = REPO / "studies"
FIGURES = REPO / "figures"

#: what a module in ``studies/`` must define, at top level, to be a study
STUDY_NAMES = ("Params", "run", "plot", "summary")


def _top_level(path: Path) -> tuple[set[str], int | None]:
    """Names a file defines at module level, and its ``ORDER`` (an int literal) if any;
    read with :mod:`ast`, so nothing in the file runs."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names, order = set(), None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    names.add(t.id)
                    if t.id == "ORDER":
                        value = node.value
                        if not (isinstance(value, ast.Constant) and type(value.value) is int):
                            raise ValueError(f"{path}: ORDER must be an int literal, got {ast.unparse(value)}")
                        order = value.value
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names, order


def discover(study_dir=None) -> list[str]:
    """Names of the studies in ``study_dir`` (default ``studies/``): the files
    ``*.py`` that define all of :data:`STUDY_NAMES`, ordered by ``ORDER``
    (files without it last), then by name."""
    study_dir = Path(study_dir) if study_dir is not None else STUDY_DIR
    found = []
    for path in sorted(study_dir.glob("*.py")):
        names, order = _top_level(path)
        if set(STUDY_NAMES) <= names:
            found.append((order is None, order or 0, path.stem))
    return [name for *_, name in sorted(found)]


def check(quantity: str, measured, expected: str, passed) -> dict:
    """One row of a study's ``summary``: what was measured against what is expected."""
    return {"quantity": quantity, "measured": measured, "expected": expected, "passed": bool(passed)}


def available() -> list[str]:
    """Names of the studies in ``studies/``, in the order ``gammalimit reproduce`` runs them."""
    return discover()


def load(name: str):
    """Import ``studies/<name>.py`` as a module."""
    path = STUDY_DIR / f"{name}.py"
    if name not in available():
        raise ValueError(f"unknown study {name!r}; available: {available()}")
    spec = importlib.util.spec_from_file_location(f"gammalimit_studies.{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if hasattr(obj, "item"):
        return _jsonable(obj.item())
    return obj


def save_json(obj, path: Path) -> None:
    write_atomic(path, (json.dumps(_jsonable(obj), indent=1) + "\n").encode())


def save_figure(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    # fixed metadata: the same data gives the same bytes
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def run_study(module, params, out_dir: Path, name: str | None = None) -> dict:
    """Run one study module, write ``<name>.png`` and ``<name>.json``; return its record."""
    import matplotlib

    matplotlib.use("Agg")
    name = name or module.__name__.rsplit(".", 1)[-1]
    t0 = time.perf_counter()
    data = module.run(params)
    seconds = time.perf_counter() - t0
    rows = module.summary(data)
    record = {"study": name, "params": params, "seconds": seconds, "summary": rows, "data": data}
    fig = module.plot(data)
    out_dir = Path(out_dir)
    save_figure(fig, out_dir / f"{name}.png")
    save_json(record, out_dir / f"{name}.json")
    for filename, text in getattr(module, "extra_files", lambda data: {})(data).items():
        write_atomic(out_dir / filename, text.encode())
    return record


def study_main(module, argv=None) -> dict:
    """``python studies/<name>.py [--quick] [--out DIR]``."""
    import argparse

    p = argparse.ArgumentParser(description=module.__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (what the tests run)")
    p.add_argument("--out", default=str(FIGURES), help="output folder (default: figures/)")
    args = p.parse_args(argv)
    params = module.Params.quick() if args.quick else module.Params()
    writable_folder(args.out, "output folder")  # before the study runs, not when it first saves
    record = run_study(module, params, Path(args.out), Path(module.__file__).stem)
    print_summary([record])
    return record


def print_summary(records: list[dict], file=sys.stdout) -> bool:
    """Print the table (study, quantity, measured, expected, pass); return all passed."""
    rows = [(r["study"], row) for r in records for row in r["summary"]]
    print(f"\n{'study':<22} {'quantity':<44} {'measured':>22} {'expected':>18}  result", file=file)
    ok = True
    for study, row in rows:
        m = row["measured"]
        m = f"{m:.4g}" if isinstance(m, float) else str(m)
        verdict = "pass" if row["passed"] else "FAIL"
        ok &= bool(row["passed"])
        print(f"{study:<22} {row['quantity']:<44} {m:>22} {str(row['expected']):>18}  {verdict}", file=file)
    return ok


def reproduce(names=None, *, quick: bool = False, out_dir=FIGURES, progress=print) -> list[dict]:
    """Run the named studies (default: all available) and write their outputs to ``out_dir``.

    Raises
    ------
    ValueError
        On an unknown study name, or an ``out_dir`` that cannot be created or
        written; both are checked before any study runs.
    """
    names = list(names) if names else available()
    for n in names:
        if n not in available():
            raise ValueError(f"unknown study {n!r}; available: {available()}")
    writable_folder(out_dir, "output folder")
    records = []
    for i, name in enumerate(names, 1):
        module = load(name)
        params = module.Params.quick() if quick else module.Params()
        progress(f"[{i}/{len(names)}] {name} ({'quick' if quick else 'full'}) ...")
        t0 = time.perf_counter()
        records.append(run_study(module, params, Path(out_dir), name))
        progress(f"[{i}/{len(names)}] {name} done in {time.perf_counter() - t0:.1f} s")
    return records
