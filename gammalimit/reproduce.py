"""Run the studies in ``studies/`` and write ``figures/``: ``gammalimit reproduce``.

A study is a file ``studies/<name>.py`` that defines, at module level,

- ``Params``: a dataclass of its parameters, with a ``quick()`` classmethod;
- ``run(params) -> dict``: plain data (numbers, lists), no plotting;
- ``plot(data) -> matplotlib.figure.Figure``;
- ``summary(data) -> list[dict]``: rows ``{quantity, measured, expected, passed}``;
- optionally ``extra_files(data) -> dict[str, str]``: more files (e.g. a
  markdown table), by file name, written as text beside the figure;
- optionally ``ORDER = <int>``: its place in ``gammalimit reproduce`` (lower
  first; studies without one follow, by name);
- optionally ``LONG = True``: a long mode, outside ``gammalimit reproduce``'s
  default set (it runs when named: ``gammalimit reproduce <name>``, or
  ``make reproduce-long``).

Every study runs on one thread (torch's and the BLAS pools), so that its numbers do not depend
on how many run side by side: ``reproduce(jobs=K)`` runs K studies at once, in separate
processes, and writes the same files, bit for bit, as ``jobs=1``.

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


def _top_level(path: Path) -> tuple[set[str], int | None, bool]:
    """Names a file defines at module level, its ``ORDER`` (an int literal) if any, and its
    ``LONG`` (a bool literal, default False); read with :mod:`ast`, so nothing in the file runs."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names, order, long = set(), None, False
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
                    if t.id == "LONG":
                        value = node.value
                        if not (isinstance(value, ast.Constant) and type(value.value) is bool):
                            raise ValueError(f"{path}: LONG must be True or False, got {ast.unparse(value)}")
                        long = value.value
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names, order, long


def discover(study_dir=None, *, long: bool | None = None) -> list[str]:
    """Names of the studies in ``study_dir`` (default ``studies/``): the files
    ``*.py`` that define all of :data:`STUDY_NAMES`, ordered by ``ORDER``
    (files without it last), then by name. ``long``: ``None`` all of them,
    ``False`` those without ``LONG = True`` (what ``gammalimit reproduce`` runs
    by default), ``True`` only the long modes."""
    study_dir = Path(study_dir) if study_dir is not None else STUDY_DIR
    found = []
    for path in sorted(study_dir.glob("*.py")):
        names, order, is_long = _top_level(path)
        if set(STUDY_NAMES) <= names and (long is None or long == is_long):
            found.append((order is None, order or 0, path.stem))
    return [name for *_, name in sorted(found)]


def check(quantity: str, measured, expected: str, passed) -> dict:
    """One row of a study's ``summary``: what was measured against what is expected."""
    return {"quantity": quantity, "measured": measured, "expected": expected, "passed": bool(passed)}


def available() -> list[str]:
    """Names of the studies in ``studies/``, long modes included, in their order."""
    return discover()


def default_studies() -> list[str]:
    """The studies ``gammalimit reproduce`` runs when none is named: all but the long modes."""
    return discover(long=False)


def long_studies() -> list[str]:
    """The long modes (``LONG = True``): run only when named (``make reproduce-long``)."""
    return discover(long=True)


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


class OneThread:
    """Within it: torch and the BLAS pools (numpy, scipy, scikit-learn) on one thread."""

    def __enter__(self):
        import torch
        from threadpoolctl import threadpool_limits

        self._threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self._limits = threadpool_limits(1)
        return self

    def __exit__(self, *exc):
        import torch

        self._limits.restore_original_limits()
        torch.set_num_threads(self._threads)
        return False


def _run_named(name: str, quick: bool, out_dir) -> dict:
    """Run one study by name on one thread; return its record."""
    module = load(name)
    params = module.Params.quick() if quick else module.Params()
    with OneThread():
        return run_study(module, params, Path(out_dir), name)


def _run_in_worker(name: str, quick: bool, out_dir: str) -> dict:
    """:func:`_run_named` in a worker process: the record as plain data, to cross back."""
    return _jsonable(_run_named(name, quick, out_dir))


def _expected_seconds(name: str, out_dir: Path) -> float:
    """The study's wall time in its last record (``out_dir``, else ``figures/``); 0 if none."""
    for folder in (Path(out_dir), FIGURES):
        try:
            return float(json.loads((folder / f"{name}.json").read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return 0.0


def reproduce(names=None, *, quick: bool = False, out_dir=FIGURES, jobs: int = 1, progress=print) -> list[dict]:
    """Run the named studies (default: :func:`default_studies`) and write their outputs to ``out_dir``.

    Each study runs on one thread. With ``jobs > 1``, up to ``jobs`` studies run at once, each in
    its own process (:class:`concurrent.futures.ProcessPoolExecutor`, spawned), the longest
    first (by the wall time in its last record), and write the same files as ``jobs=1``. The
    records are returned in the studies' order; under ``jobs > 1`` they are plain data (JSON types).

    Raises
    ------
    ValueError
        On an unknown study name, a ``jobs`` that is not a positive int, or an ``out_dir`` that cannot be
        created or written; all are checked before any study runs.
    """
    names = list(names) if names else default_studies()
    for n in names:
        if n not in available():
            raise ValueError(f"unknown study {n!r}; available: {available()}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int (studies run at once), got {jobs!r}")
    writable_folder(out_dir, "output folder")
    mode = "quick" if quick else "full"
    if jobs == 1 or len(names) == 1:
        records = []
        for i, name in enumerate(names, 1):
            progress(f"[{i}/{len(names)}] {name} ({mode}) ...")
            t0 = time.perf_counter()
            records.append(_run_named(name, quick, out_dir))
            progress(f"[{i}/{len(names)}] {name} done in {time.perf_counter() - t0:.1f} s")
        return records
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    queue = sorted(names, key=lambda n: -_expected_seconds(n, Path(out_dir)))
    progress(f"{len(names)} studies ({mode}), {min(jobs, len(names))} at once, each on one thread ...")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(min(jobs, len(names)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_run_in_worker, n, quick, str(out_dir)): n for n in queue}
        pending, done_count, records = set(futures), 0, {}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise f.exception()
                records[futures[f]] = f.result()
                done_count += 1
                progress(f"[{done_count}/{len(names)}] {futures[f]} done in {records[futures[f]]['seconds']:.1f} s "
                         f"({time.perf_counter() - t0:.0f} s elapsed)")
    return [records[n] for n in names]

