"""The run folder and the command line: nothing silent, nothing lost.

Each refusal is one line on stderr naming the file or parameter and what to
do, exit status 2, no traceback, and the folder as it was. The tables below
read: label, input, expected exit status, regex of the message.
"""

import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gammalimit import reproduce as repro
from gammalimit.cli import build_parser, main
from gammalimit.fileio import FolderLock, FolderLocked, writable_folder
from gammalimit.train import TrainConfig, WarmupCosine, train
from gammalimit.train import loop as train_loop
from gammalimit.train.loop import PROGRESS_WINDOW, progress_postfix
from gammalimit.train.stopping import TrainingInterrupted

REPO = Path(__file__).resolve().parents[1]

#: A tiny run on the circle: a few steps, a small batch and network, no evaluation of L.
TINY = ["--manifold", "circle", "--latent-dim", "2", "--delta", "0.1", "--lam", "0.1", "--batch-size", "16",
        "--hidden", "4", "--warmup", "2", "--eval-pairs", "64", "--limit", "none", "--no-progress", "--json"]


def tiny(out, *extra, steps=6, every=3):
    return ["train", *TINY, "--steps", str(steps), "--checkpoint-every", str(every), *extra] + (
        ["--out", str(out)] if out is not None else [])


def one_line_error(capsys, pattern):
    """The one line on stderr; it matches ``pattern`` and is no traceback."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(pattern, err), err
    return err.strip()


def snapshot(folder: Path) -> dict:
    """Every file of ``folder`` but the lock file: its bytes and modification time."""
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 6-step run with checkpoints at steps 3 and 6 (copied by each test that damages it)."""
    out = tmp_path_factory.mktemp("runs") / "finished"
    assert main(tiny(out)) == 0
    return out


def copy_run(finished_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


# --------------------------------------------------------------------------
# --out that cannot be a folder: refused before anything runs


def _file(tmp):
    (tmp / "a-file").write_text("not a folder\n")
    return tmp / "a-file"


BAD_OUT = [
    # label, out (from tmp_path), regex
    ("under a regular file", lambda t: _file(t) / "run", r"lies under .*a-file, which is a file, not a folder"),
    ("deep under a regular file", lambda t: _file(t) / "a" / "b" / "run", r"lies under .*a-file, which is a file"),
    ("an existing file", lambda t: _file(t), r"a-file is an existing file, not a folder; choose a folder"),
    ("under /dev/null", lambda t: Path("/dev/null/run"), r"/dev/null/run lies under /dev/null, which is a file"),
    ("/dev/null itself", lambda t: Path("/dev/null"), r"/dev/null is an existing file, not a folder"),
    ("under /proc", lambda t: Path("/proc/gammalimit-test/run"), r"/proc/gammalimit-test/run cannot be written"),
    ("under /sys", lambda t: Path("/sys/gammalimit-test"), r"/sys/gammalimit-test cannot be written"),
    ("a name too long", lambda t: t / ("x" * 300), r"cannot be written \(File name too long\)"),
]


@pytest.mark.parametrize("label, where, message", BAD_OUT, ids=[row[0] for row in BAD_OUT])
def test_train_out_that_cannot_be_a_folder(tmp_path, capsys, label, where, message):
    out = where(tmp_path)
    before = snapshot(tmp_path)
    assert main(tiny(out)) == 2
    one_line_error(capsys, r"^gammalimit train: error: run folder .*" + message)
    assert snapshot(tmp_path) == before


def test_train_out_in_a_read_only_folder(tmp_path, capsys, monkeypatch):
    import tempfile

    (tmp_path / "ro").mkdir(mode=0o500)

    def refused(*args, **kw):  # what the OS says to a user without write permission (root would be let in)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    assert main(tiny(tmp_path / "ro" / "run")) == 2
    one_line_error(capsys, r"run folder .*ro/run cannot be written \(Permission denied\); choose a folder")


def test_train_out_creates_missing_parents(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "run"
    assert main(tiny(out, steps=2)) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    assert {p.name for p in out.iterdir()} >= {"config.json", "checkpoint.pt", "metrics.csv", "result.json",
                                                "log.jsonl", ".lock"}
    assert not list(out.glob(".write-test.*"))  # the writability probe is removed


@pytest.mark.parametrize("label, where, message",
                         [*BAD_OUT, ("not a study", lambda t: t / "figs", r"unknown study 'no-such-study'")],
                         ids=[row[0] for row in BAD_OUT] + ["not a study"])
def test_reproduce_checks_out_before_running_anything(tmp_path, capsys, monkeypatch, label, where, message):
    def never(*args, **kw):
        raise AssertionError("a study ran before --out was checked")

    monkeypatch.setattr(repro, "run_study", never)
    monkeypatch.setattr(repro, "load", never)
    study = "no-such-study" if label == "not a study" else repro.available()[0]
    assert main(["reproduce", study, "--quick", "--out", str(where(tmp_path))]) == 2
    one_line_error(capsys, r"^gammalimit reproduce: error: " + ("" if label == "not a study" else "output folder .*")
                   + message)


def test_a_study_script_checks_out_before_running(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(repro, "run_study", lambda *a, **kw: pytest.fail("the study ran before --out was checked"))
    study = SimpleNamespace(__doc__="a study", __file__="studies/fake.py", Params=SimpleNamespace(quick=dict))
    with pytest.raises(ValueError, match=r"output folder /dev/null/figs lies under /dev/null, which is a file"):
        repro.study_main(study, ["--quick", "--out", "/dev/null/figs"])


def test_reproduce_help_lists_the_studies(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["reproduce", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in repro.available())


def test_writable_folder_creates_and_checks(tmp_path):
    assert writable_folder(tmp_path / "x" / "y") == tmp_path / "x" / "y" and (tmp_path / "x" / "y").is_dir()
    with pytest.raises(ValueError, match="is an existing file"):
        writable_folder(_file(tmp_path))


# --------------------------------------------------------------------------
# damaged files on --resume: one line naming the file, the folder untouched


def _edit_checkpoint(edit):
    def damage(out):
        state = torch.load(out / "checkpoint.pt", weights_only=False)
        edit(state)
        torch.save(state, out / "checkpoint.pt")
    return damage


def _truncate(name, keep=0.5):
    def damage(out):
        data = (out / name).read_bytes()
        (out / name).write_bytes(data[:int(len(data) * keep)])
    return damage


def _write(name, data):
    def damage(out):
        (out / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return damage


def _remove(name):
    return lambda out: (out / name).unlink()


def _edit_json(name, edit):
    def damage(out):
        data = json.loads((out / name).read_text())
        (out / name).write_text(json.dumps(edit(data)))
    return damage


def _edit_metrics(edit):
    def damage(out):
        lines = (out / "metrics.csv").read_text().splitlines(keepends=True)
        (out / "metrics.csv").write_text("".join(edit(lines)))
    return damage


def _drop(key, sub=None):
    def edit(state):
        if sub is None:
            del state[key]
        else:
            target = state[key]
            del target[sub if sub in target else next(iter(target))]
    return edit


def _set(key, value):
    return lambda state: state.__setitem__(key, value)


def _first_model_tensor_wrong_shape(state):
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3, 3)


def _drop_exp_avg(state):
    del next(iter(state["optimizer"]["state"].values()))["exp_avg"]


def _bad_config(state):
    state["config"]["lr"] = -1.0


RANDOM = bytes(range(256)) * 20

DAMAGED = [
    # label, damage(out), regex of the message
    ("checkpoint empty", _write("checkpoint.pt", b""), r"checkpoint.pt is empty, not a checkpoint"),
    ("checkpoint truncated", _truncate("checkpoint.pt"), r"checkpoint.pt cannot be read as a checkpoint"),
    ("checkpoint cut to 100 bytes", _truncate("checkpoint.pt", 0.001), r"checkpoint.pt cannot be read"),
    ("checkpoint random bytes", _write("checkpoint.pt", RANDOM), r"checkpoint.pt cannot be read as a checkpoint"),
    ("checkpoint a text file", _write("checkpoint.pt", "step = 6\n"), r"checkpoint.pt cannot be read"),
    ("checkpoint a list", lambda out: torch.save([1, 2], out / "checkpoint.pt"), r"does not hold a checkpoint"),
    ("checkpoint missing", _remove("checkpoint.pt"), r"no checkpoint to resume from: .*checkpoint.pt does not"),
    ("checkpoint another format", _edit_checkpoint(_set("format", "other-1")), r"is not a gammalimit-train-1"),
    ("checkpoint without optimizer", _edit_checkpoint(_drop("optimizer")), r"lacks \['optimizer'\]"),
    ("checkpoint without rng", _edit_checkpoint(_drop("rng")), r"lacks \['rng'\]: the checkpoint is incomplete"),
    ("checkpoint step a string", _edit_checkpoint(_set("step", "6")), r"holds step '6', not a count of steps"),
    ("checkpoint step negative", _edit_checkpoint(_set("step", -1)), r"holds step -1"),
    ("checkpoint invalid config", _edit_checkpoint(_bad_config), r"checkpoint.pt holds an invalid config \(lr"),
    ("model tensor missing", _edit_checkpoint(_drop("model", "")), r"the model in .*checkpoint.pt does not fit"),
    ("model tensor misshapen", _edit_checkpoint(_first_model_tensor_wrong_shape), r"the model in .* does not fit"),
    ("optimizer moments missing", _edit_checkpoint(_drop_exp_avg), r"the optimizer in .*checkpoint.pt does not fit"),
    ("scheduler garbled", _edit_checkpoint(_set("scheduler", {"x": 1})), r"the (scheduler|optimizer) in .* not fit"),
    ("rng state garbled", _edit_checkpoint(_set("rng", {"torch": torch.zeros(3)})), r"the RNG state in .* not fit"),
    ("config.json empty", _write("config.json", ""), r"config.json is not valid JSON"),
    ("config.json truncated", _truncate("config.json"), r"config.json is not valid JSON"),
    ("config.json random bytes", _write("config.json", RANDOM), r"config.json is not valid JSON"),
    ("config.json a list", _write("config.json", "[1, 2]"), r"config.json holds a list, not a run configuration"),
    ("config.json unknown field", _edit_json("config.json", lambda d: {**d, "speed": 3}),
     r"config.json is not a valid run configuration \(unknown TrainConfig fields \['speed'\]"),
    ("config.json wrong type", _edit_json("config.json", lambda d: {**d, "steps": "many"}),
     r"config.json is not a valid run configuration \(steps must be an integer"),
    ("config.json bad value", _edit_json("config.json", lambda d: {**d, "manifold": "klein"}),
     r"config.json is not a valid run configuration \(manifold must be one of"),
    ("config.json missing", _remove("config.json"), r"config.json does not exist; start the run without --resume"),
    ("metrics.csv missing", _remove("metrics.csv"), r"metrics.csv is missing: the checkpoint is at step 6"),
    ("metrics.csv empty", _write("metrics.csv", ""), r"metrics.csv is garbled \(its columns are None"),
    ("metrics.csv random bytes", _write("metrics.csv", RANDOM), r"metrics.csv is garbled"),
    ("metrics.csv other columns", _edit_metrics(lambda ls: ["a,b,c\n", *ls[1:]]),
     r"metrics.csv is garbled \(its columns are \['a', 'b', 'c'\]"),
    ("metrics.csv a word for a number", _edit_metrics(lambda ls: [*ls[:3], ls[3].replace(",", ",x", 1), *ls[4:]]),
     r"metrics.csv is garbled \(line 4: could not convert"),
    ("metrics.csv a short row", _edit_metrics(lambda ls: [*ls[:3], "3,0.5\n", *ls[4:]]),
     r"metrics.csv is garbled \(line 4 has 2 values for 7 columns"),
    ("metrics.csv a row lost", _edit_metrics(lambda ls: [*ls[:3], *ls[4:]]),
     r"metrics.csv is garbled \(line 4 is step 4, expected 3"),
    ("metrics.csv cut short", _edit_metrics(lambda ls: ls[:5]), r"metrics.csv holds 4 steps, but the checkpoint is at"),
    ("probes.json garbled", _write("probes.json", "[{"), r"probes.json is garbled"),
]


@pytest.mark.parametrize("label, damage, message", DAMAGED, ids=[row[0] for row in DAMAGED])
def test_a_damaged_file_on_resume_is_named_and_nothing_is_touched(finished_run, tmp_path, capsys, label, damage,
                                                                    message):
    out = copy_run(finished_run, tmp_path)
    damage(out)
    before = snapshot(out)
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 2
    err = one_line_error(capsys, message)
    if "missing" not in label:
        assert "restore it from a copy, or start a new run in another folder" in err or "start the run" in err
    assert snapshot(out) == before


def test_a_half_written_metrics_row_after_the_checkpoint_is_not_an_error(finished_run, tmp_path, capsys):
    # a crash flushes the metrics buffer where it stands: rows after the checkpoint may be cut anywhere
    out = copy_run(finished_run, tmp_path)
    with open(out / "metrics.csv", "a") as f:
        f.write("7,0.12")
    assert main(["train", "--out", str(out), "--resume"] + TINY[-2:]) == 0
    assert len((out / "metrics.csv").read_text().splitlines()) == 7  # header and steps 1-6


# --------------------------------------------------------------------------
# resume: which fields may change


CONFLICTS = [
    # label, extra argv on --resume, expected status, regex
    ("learning rate", ["--lr", "0.5"], 2, r"another configuration: lr = 0.001 in the run, 0.5 now\. Only steps, "
                                          r"checkpoint_every, eval_pairs, eval_seed, limit, divergence_ratio may"),
    ("batch size", ["--batch-size", "32"], 2, r"batch_size = 16 in the run, 32 now"),
    ("hidden widths", ["--hidden", "8"], 2, r"hidden = \(4,\) in the run, \(8,\) now"),
    ("seed", ["--seed", "1"], 2, r"seed = 0 in the run, 1 now"),
    ("penalty", ["--penalty", "ratio"], 2, r"penalty = 'squared' in the run, 'ratio' now"),
    ("two fields", ["--lam", "0.2", "--warmup", "3"], 2, r"lam = 0.1 in the run, 0.2 now; warmup = 2 in the run, 3"),
    ("manifold", ["--manifold", "sphere", "--latent-dim", "3"], 2, r"manifold = 'circle' in the run, 'sphere' now"),
    ("steps below the checkpoint", ["--steps", "4"], 2, r"steps = 4 is below step 6, which the checkpoint in .*"
                                                         r"has reached; give steps >= 6"),
    ("steps not a count", ["--steps", "0"], 2, r"steps must be an integer >= 1"),
    ("checkpoint interval", ["--checkpoint-every", "2"], 0, None),
    ("evaluation pairs", ["--eval-pairs", "128"], 0, None),
    ("limit", ["--limit", "monte-carlo"], 0, None),
    ("same steps", ["--steps", "6"], 0, None),
]


@pytest.mark.parametrize("label, extra, status, message", CONFLICTS, ids=[row[0] for row in CONFLICTS])
def test_what_resume_may_change(finished_run, tmp_path, capsys, label, extra, status, message):
    out = copy_run(finished_run, tmp_path)
    before = snapshot(out)
    assert main(["train", "--out", str(out), "--resume", "--no-progress", "--json", *extra]) == status
    if status:
        one_line_error(capsys, message)
        assert snapshot(out) == before
    else:
        assert json.loads(capsys.readouterr().out)["steps"] == 6


def _rows(out):
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resume_extends_a_finished_run_with_a_stretched_schedule(finished_run, tmp_path, capsys):
    out = copy_run(finished_run, tmp_path)
    before = _rows(out)
    assert main(["train", "--out", str(out), "--resume", "--steps", "10", "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 10
    rows = _rows(out)
    assert len(rows) == 10 and rows[:6] == before  # the first six steps are kept as they were
    assert json.loads((out / "config.json").read_text())["steps"] == 10
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 10
    # from the resume point on, the learning rate follows the cosine of the 10-step run ...
    schedule = WarmupCosine(2, 10, TrainConfig.final_lr_ratio)
    for row in rows[6:]:
        assert float(row["lr"]) == pytest.approx(1e-3 * schedule(int(row["step"]) - 1), rel=1e-12)
    # ... while steps 1-6 followed the 6-step one: not the run that was started with 10 steps
    assert main(tiny(tmp_path / "ten", steps=10)) == 0
    capsys.readouterr()
    assert [r["lr"] for r in _rows(tmp_path / "ten")][:6] != [r["lr"] for r in rows[:6]]
    events = [json.loads(line)["event"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert events == ["start", "finished", "resume", "finished"]


def test_an_extended_run_resumes_bit_for_bit(finished_run, tmp_path, capsys):
    # the extension is itself a run: cut and resumed, it ends where the uncut extension ends
    whole, cut = copy_run(finished_run, tmp_path / "w"), copy_run(finished_run, tmp_path / "c")
    assert main(["train", "--out", str(whole), "--resume", "--steps", "12", "--no-progress"]) == 0
    calls = _interrupt_after(4)
    with calls:
        assert main(["train", "--out", str(cut), "--resume", "--steps", "12", "--no-progress"]) == 130
    assert "the last checkpoint (step 9)" in capsys.readouterr().err
    assert main(["train", "--out", str(cut), "--resume", "--no-progress"]) == 0
    a = torch.load(whole / "checkpoint.pt", weights_only=False)
    b = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 12
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    without_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert without_time(_rows(whole)) == without_time(_rows(cut))


# --------------------------------------------------------------------------
# Ctrl-C


class _interrupt_after:
    """Within ``with``: the trainer's ``n``-th loss evaluation raises KeyboardInterrupt (as Ctrl-C would)."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __enter__(self):
        self.real = train_loop.pair_terms

        def pair_terms(*args, **kw):
            self.calls += 1
            if self.calls == self.n:
                raise KeyboardInterrupt
            return self.real(*args, **kw)

        train_loop.pair_terms = pair_terms
        return self

    def __exit__(self, *exc):
        train_loop.pair_terms = self.real


INTERRUPTS = [
    # label, argv (out from tmp_path), interrupt at the n-th step, regex
    ("before the first checkpoint", lambda t: tiny(t / "run", steps=20, every=5), 3,
     r"^gammalimit train: interrupted at step 2 of 20, before the first checkpoint \(step 5\): nothing to resume; "
     r"run the same command again to start over$"),
    ("after a checkpoint", lambda t: tiny(t / "run", steps=20, every=5), 8,
     r"^gammalimit train: interrupted at step 7 of 20; the last checkpoint \(step 5\) is .*run/checkpoint.pt; "
     r"continue with: gammalimit train --out \S*run --resume$"),
    ("at the first step", lambda t: tiny(t / "run", steps=20, every=5), 1, r"interrupted at step 0 of 20, before"),
    ("with --threads", lambda t: tiny(t / "run", "--threads", "1", steps=20, every=5), 12,
     r"the last checkpoint \(step 10\) .* continue with: gammalimit train --out \S*run --resume --threads 1$"),
    ("a path with a space", lambda t: tiny(t / "my run", steps=20, every=5), 8,
     r"continue with: gammalimit train --out '\S*my run' --resume$"),
    ("without --out", lambda t: tiny(None, steps=20, every=5), 8,
     r"^gammalimit train: interrupted at step 7 of 20; without --out nothing was saved$"),
]


@pytest.mark.parametrize("label, argv, n, message", INTERRUPTS, ids=[row[0] for row in INTERRUPTS])
def test_ctrl_c_is_one_line_with_the_command_that_resumes(tmp_path, capsys, label, argv, n, message):
    with _interrupt_after(n):
        assert main(argv(tmp_path)) == 130
    err = one_line_error(capsys, message)
    if "continue with:" in err:  # the printed command resumes the run, to its end
        command = shlex.split(err.split("continue with: ", 1)[1])
        assert command[:2] == ["gammalimit", "train"]
        assert main(command[1:] + ["--no-progress", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["steps"] == 20
        events = [json.loads(line)["event"] for line in (Path(command[3]) / "log.jsonl").read_text().splitlines()]
        assert events == ["start", "interrupted", "resume", "finished"]


def test_interrupt_in_the_library_says_what_is_kept(tmp_path):
    config = TrainConfig(manifold="circle", latent_dim=2, delta=0.1, steps=20, batch_size=16, hidden=(4,),
                         warmup=2, checkpoint_every=5)

    def stop(step, model):
        if step == 12:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 12 of 20: the last checkpoint \(step 10\) "
                                                  r"is kept at .*checkpoint.pt; resume=True continues") as info:
        train(config, out=tmp_path, progress=False, callback=stop, probe_every=1)
    assert (info.value.step, info.value.checkpoint_step) == (12, 10)
    assert isinstance(info.value, KeyboardInterrupt)
    # the lock is released: the same process resumes at once
    assert train(config, out=tmp_path, resume=True, progress=False, evaluate_final=False).steps == 20


def _default_sigint():
    # a pytest-xdist worker may ignore SIGINT, and a child inherits an ignored signal: Python then
    # installs no KeyboardInterrupt handler, and the run would never see the Ctrl-C this test sends
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-c", "import sys; from gammalimit.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=_default_sigint, **kw)


def test_sigint_and_the_lock_against_a_real_second_process(tmp_path, capsys):
    out = tmp_path / "run"
    proc = _cli("train", *TINY[:-1], "--steps", "100000", "--checkpoint-every", "5", "--out", str(out))
    try:
        deadline = time.time() + 180  # a loaded machine imports torch slowly
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline
            time.sleep(0.05)
        # while it runs, a second writer is refused, fresh or resuming; nothing of the run is touched
        for argv in (tiny(out, steps=10), ["train", "--out", str(out), "--resume"]):
            assert main(argv) == 2
            one_line_error(capsys, rf"another process \(pid {proc.pid}\) is writing the run folder {out} \(it holds "
                           rf"{out}/.lock\); wait for it to finish, stop it, or choose another folder$")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.count("\n") == 1 and "Traceback" not in err, err
    step = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    assert re.fullmatch(rf"gammalimit train: interrupted at step \d+ of 100000; the last checkpoint \(step {step}\) "
                        rf"is {out}/checkpoint.pt; continue with: gammalimit train --out {out} --resume\n", err), err
    # the lock went with the process: the run resumes here, shortened to end at its checkpoint
    assert main(["train", "--out", str(out), "--resume", "--steps", str(step), "--no-progress"]) == 0


LOCKED = [
    # label, prepare the folder, argv, regex
    ("a fresh run into an empty folder", lambda out, fin: out.mkdir(), lambda out: tiny(out), r"is writing the run"),
    ("a fresh run into a finished run", lambda out, fin: shutil.copytree(fin, out), lambda out: tiny(out),
     r"another process \(pid \d+\) is writing"),
    ("a resume", lambda out, fin: shutil.copytree(fin, out), lambda out: ["train", "--out", str(out), "--resume"],
     r"is writing the run folder .*run \(it holds .*run/.lock\)"),
    ("an extension", lambda out, fin: shutil.copytree(fin, out),
     lambda out: ["train", "--out", str(out), "--resume", "--steps", "9"], r"wait for it to finish"),
]


@pytest.mark.parametrize("label, prepare, argv, message", LOCKED, ids=[row[0] for row in LOCKED])
def test_a_locked_run_folder_is_refused(finished_run, tmp_path, capsys, label, prepare, argv, message):
    out = tmp_path / "run"
    prepare(out, finished_run)
    before = snapshot(out)
    with FolderLock(out):  # as another process would hold it
        assert main(argv(out)) == 2
        one_line_error(capsys, message)
    assert snapshot(out) == before


def test_a_crashed_writer_leaves_no_lock(finished_run, tmp_path, capsys):
    out = copy_run(finished_run, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; "
                               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
                               "os.write(fd, b'%d' % os.getpid()); print('locked', flush=True); time.sleep(60)",
                               str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderLocked, match=rf"pid {holder.pid}"):
            FolderLock(out, what="run folder")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0


# --------------------------------------------------------------------------
# progress and threads


def test_progress_shows_lr_and_how_the_smoothed_loss_moved(capsys):
    from collections import deque

    assert progress_postfix(0.5, 1e-3, deque(), None) == "loss 0.5 | lr 0.001"
    text = progress_postfix(0.5, 1e-3, deque([2.0, 1.5, 1.0]), 4.0)
    assert text == "loss 0.5 | lr 0.001 | -50%/2 steps | -75% overall"
    train(TrainConfig(manifold="circle", latent_dim=2, delta=0.1, steps=4, batch_size=16, hidden=(4,), warmup=1),
          progress=True, evaluate_final=False)
    err = capsys.readouterr().err
    assert re.search(r"lr [0-9.e-]+ \| [-+][0-9.e+]+%/3 steps \| [-+][0-9.e+]+% overall", err), err
    assert PROGRESS_WINDOW == 100


THREADS = [
    # label, argv extra, expected status, regex or recorded threads
    ("one thread", ["--threads", "1"], 0, 1),
    ("two threads", ["--threads", "2"], 0, 2),
    ("zero threads", ["--threads", "0"], 2, r"threads must be an integer >= 1, got 0"),
    ("negative threads", ["--threads", "-3"], 2, r"threads must be an integer >= 1"),
]


@pytest.mark.parametrize("label, extra, status, expected", THREADS, ids=[row[0] for row in THREADS])
def test_threads_are_set_recorded_and_restored(tmp_path, capsys, label, extra, status, expected):
    before = torch.get_num_threads()
    assert main(tiny(tmp_path / "run", *extra, steps=2)) == status
    assert torch.get_num_threads() == before
    if status:
        one_line_error(capsys, expected)
        return
    assert json.loads(capsys.readouterr().out)["threads"] == expected
    assert json.loads((tmp_path / "run" / "result.json").read_text())["threads"] == expected
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[0]["threads"] == expected


def test_the_default_threads_leave_room_for_a_second_run(monkeypatch):
    from gammalimit.cli import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() is None  # torch's own setting, which follows the variable
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == max(1, torch.get_num_threads() // 2)


# --------------------------------------------------------------------------
# the README says it


def test_readme_says_how_to_reach_the_cli_and_what_is_refused():
    readme = (REPO / "README.md").read_text()
    assert "source .venv/bin/activate" in readme and "make quick" in readme
    section = readme.split("## What the tool refuses, and why", 1)[1].split("\n## ", 1)[0]
    for word in ("--out", "--resume", "checkpoint.pt", "config.json", "metrics.csv", "lock", "130", "--steps"):
        assert word in section, word
