"""A run folder has one writer, and a write that fails loses nothing already written."""

import json
import os
import resource
import signal
import socket
import subprocess
import sys

import pytest

import trainlab.engine.checkpoint as checkpoint_mod
from trainlab.errors import OutputError
from trainlab.fileio import LOCK
from trainlab.recipe import load_recipe
from trainlab.train import fit, load_checkpoint

TINY = [
    "data.name=synthetic(n=256, classes=4, size=16)",
    "train.batch_size=64",
    "train.epochs=2",
    "model.widths=[8,16]",
    "diagnostics.every=0",
]


def tiny():
    return load_recipe(None, TINY)


def write_lock(folder, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    owner = {"pid": pid, "host": host or socket.gethostname(), "since": 0}
    (folder / LOCK).write_text(json.dumps(owner))


def test_a_busy_folder_is_refused_naming_its_owner(tmp_path):
    owner = subprocess.Popen(["sleep", "60"])
    try:
        write_lock(tmp_path, owner.pid)
        with pytest.raises(OutputError, match=rf"in use by process {owner.pid} on "):
            fit(tiny(), tmp_path, progress=False, report=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK]  # nothing else written
    finally:
        owner.kill()
        owner.wait()


def test_a_lock_held_on_another_host_is_respected(tmp_path):
    write_lock(tmp_path, 1, host="another-machine.invalid")
    with pytest.raises(OutputError, match="another-machine.invalid"):
        fit(tiny(), tmp_path, progress=False, report=False)


def test_a_stale_lock_is_taken_over_and_released_at_the_end(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()  # its process id now belongs to no process
    write_lock(tmp_path, gone.pid)
    result = fit(tiny(), tmp_path, progress=False, report=False)
    assert len(result.metrics) == 2 and not (tmp_path / LOCK).exists()


def test_a_failed_start_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new"
    bad = load_recipe(None, [*TINY, "train.batch_size=1000"])  # larger than the 256 images
    with pytest.raises(Exception, match="train.batch_size = 1000"):
        fit(bad, out, progress=False, report=False)
    assert not out.exists()


def test_an_uncreatable_folder_is_one_error_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=f"cannot create the run folder {blocker / 'run'}"):
        fit(tiny(), blocker / "run", progress=False, report=False)


def test_a_full_disk_ends_in_exit_2_with_the_last_checkpoint_intact(tmp_path, monkeypatch):
    real = checkpoint_mod.write_checkpoint

    def save_then_die(path, data):
        real(path, data)
        raise KeyboardInterrupt  # stop after the first epoch's checkpoint

    monkeypatch.setattr(checkpoint_mod, "write_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(), tmp_path, progress=False, report=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def small_files():  # a file-size limit below one checkpoint, as a full disk would be
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, len(before) // 2))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process

    done = subprocess.run(
        [sys.executable, "-m", "trainlab", "train", "--resume", str(tmp_path)],
        capture_output=True, text=True, preexec_fn=small_files, timeout=300,
        env={**os.environ, "TRAINLAB_VERBOSE": "0"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint.pt" in lines[0] and "last good checkpoint" in lines[0]
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(tmp_path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("damage", ["drop-recipe", "wrong-shape", "bad-toml"])
def test_a_checkpoint_in_our_format_but_damaged_is_one_checkpoint_error(tmp_path, damage):
    import torch

    from trainlab.errors import CheckpointError
    from trainlab.train import model_from_checkpoint, save_checkpoint

    fit(tiny(), tmp_path / "run", progress=False, report=False)
    state = load_checkpoint(tmp_path / "run")
    state.pop("format")
    if damage == "drop-recipe":
        del state["recipe"]
    elif damage == "wrong-shape":
        state["in_shape"] = [3, 16, 16]  # the weights were trained on one channel
    else:
        state["recipe"] = "[train\nepochs = "
    save_checkpoint(tmp_path / "bad.pt", **state)
    with pytest.raises(CheckpointError, match="bad.pt") as info:
        model_from_checkpoint(tmp_path / "bad.pt")
    assert "\n" not in str(info.value)
    assert torch.load(tmp_path / "bad.pt", weights_only=True)["epoch"] == 2


# ---------------------------------------------------------------------------------------------
# A run folder is never lost by accident: --out onto a run, --overwrite, --resume of a finished
# run, lengthening a run, starting from another run's weights, permissions.


def snapshot(folder):
    """Every file's bytes, by relative path: what "changes no byte" compares."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def weights(folder):
    return load_checkpoint(folder)["model"]


def same_weights(a, b):
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_out_onto_a_run_is_refused_naming_resume_and_overwrite(tmp_path, capsys):
    from trainlab.cli import main

    fit(tiny(), tmp_path, progress=False, report=False)
    before = snapshot(tmp_path)
    argv = ["train", *[a for t in TINY for a in ("--set", t)], "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "--overwrite" in err, err
    assert f"{tmp_path} holds a run (2/2 epochs, finished)" in err
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_a_run_only_once_the_new_one_has_its_data(tmp_path):
    fit(tiny(), tmp_path, progress=False, report=False)
    (tmp_path / "my-notes.txt").write_text("the user's own file")
    before = snapshot(tmp_path)
    missing = load_recipe(None, [*TINY, f"data.name=imagefolder:{tmp_path / 'nowhere'}"])
    with pytest.raises(Exception, match="nowhere"):
        fit(missing, tmp_path, overwrite=True, progress=False, report=False)
    assert snapshot(tmp_path) == before, "a new run whose data did not load replaced nothing"
    other = load_recipe(None, [*TINY, "train.epochs=1", "train.seed=7"])
    fit(other, tmp_path, overwrite=True, progress=False, report=False)
    assert load_checkpoint(tmp_path)["epoch"] == 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    assert (tmp_path / "my-notes.txt").read_text() == "the user's own file"


def test_resuming_a_finished_run_changes_no_byte(tmp_path):
    first = fit(tiny(), tmp_path, progress=False)  # with its report and diagnostics
    before = snapshot(tmp_path)
    again = fit(None, tmp_path, resume=True, progress=False)
    assert again.already_complete and again.metrics == first.metrics
    assert snapshot(tmp_path) == before
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {p.split("/")[0] for p in before}, "no lock or temporary file left behind"


def test_a_constant_schedule_run_lengthened_equals_the_straight_run_bit_for_bit(tmp_path):
    constant = [*TINY, "schedule.name=constant", "regularize.mix=mixup(0.2)"]
    straight = fit(load_recipe(None, [*constant, "train.epochs=3"]), tmp_path / "straight",
                   progress=False, report=False)  # fmt: skip
    fit(load_recipe(None, [*constant, "train.epochs=1"]), tmp_path / "grown", progress=False,
        report=False)  # fmt: skip
    longer = load_recipe(None, [*constant, "train.epochs=3"])
    grown = fit(longer, tmp_path / "grown", resume=True, progress=False, report=False)
    assert same_weights(weights(tmp_path / "straight"), weights(tmp_path / "grown"))
    for a, b in zip(straight.metrics, grown.metrics, strict=True):
        assert (a["train_loss"], a["train_acc"], a["test_acc"]) == (
            b["train_loss"], b["train_acc"], b["test_acc"]
        )  # fmt: skip
    summary = json.loads((tmp_path / "grown" / "summary.json").read_text())
    assert summary["extended"] == [{"at_epoch": 1, "from_epochs": 1, "to_epochs": 3}]
    assert "epochs = 3" in (tmp_path / "grown" / "recipe.toml").read_text()


def test_a_lengthened_cosine_run_lays_its_schedule_out_again_and_its_report_says_so(tmp_path):
    import math

    fit(load_recipe(None, [*TINY, "train.epochs=1"]), tmp_path, progress=False, report=False)
    result = fit(load_recipe(None, [*TINY, "train.epochs=4"]), tmp_path, resume=True,
                 progress=False)  # fmt: skip
    steps = 256 // 64
    # the last step of epoch 2 (step 7 of 16) is on the cosine of the 4-epoch run
    expected = 0.05 * 0.5 * (1 + math.cos(math.pi * (2 * steps - 1) / (4 * steps)))
    assert result.metrics[1]["lr"] == pytest.approx(expected)
    report = (tmp_path / "report.md").read_text()
    assert "extended at epoch 1 from 1 to 4 epochs" in report


@pytest.mark.parametrize(
    ("override", "needle"),
    [("optim.lr=0.2", "optim.lr cannot change on resume"),
     ("train.epochs=1", "a run can only be lengthened")],
)  # fmt: skip
def test_on_resume_only_a_longer_run_is_allowed(tmp_path, override, needle):
    from trainlab.errors import RecipeError

    fit(tiny(), tmp_path, progress=False, report=False)
    before = snapshot(tmp_path)
    with pytest.raises(RecipeError, match=needle):
        fit(load_recipe(None, [*TINY, override]), tmp_path, resume=True, progress=False)
    assert snapshot(tmp_path) == before


def test_init_from_loads_every_weight_and_starts_a_head_of_another_class_count_afresh(
    tmp_path, capsys
):
    import torch

    from trainlab.engine import build_run

    fit(tiny(), tmp_path / "base", progress=False, report=False)
    source = weights(tmp_path / "base")
    same = load_recipe(None, [*TINY, "train.epochs=1"])
    run = build_run(same, init_from=tmp_path / "base")
    assert same_weights({k: v.cpu() for k, v in run.model.state_dict().items()}, source)
    assert "all weights loaded" in run.notices[-1]

    three = load_recipe(None, [*TINY, "data.name=synthetic(n=256, classes=3, size=16)"])
    fresh = build_run(three).model.state_dict()
    tuned = build_run(three, init_from=tmp_path / "base")
    loaded = tuned.model.state_dict()
    head = [k for k in loaded if k.startswith("head.")]
    assert head == ["head.weight", "head.bias"]
    for key in loaded:
        expected = fresh[key] if key in head else source[key]
        assert torch.equal(loaded[key].cpu(), expected.cpu()), key
    assert "has 4 classes there and 3 here: initialised afresh" in tuned.notices[-1]


def test_init_from_a_checkpoint_of_another_shape_names_the_parameters(tmp_path):
    from trainlab.engine import build_run
    from trainlab.errors import CheckpointError

    fit(tiny(), tmp_path / "base", progress=False, report=False)
    wider = load_recipe(None, [*TINY, "model.widths=[8,24]"])
    with pytest.raises(CheckpointError, match=r"shapes differ: features\.\S+ \(16,") as info:
        build_run(wider, init_from=tmp_path / "base")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_run_files_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        fit(tiny(), tmp_path, progress=False)
    finally:
        os.umask(old)
    for path in tmp_path.rglob("*"):
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert path.stat().st_mode & 0o777 == expected, path


# ---------------------------------------------------------------------------------------------
# The property: whatever a user runs, and wherever a run is killed, every completed epoch's
# checkpoint and metrics stay intact, unless an explicit --overwrite replaced them.

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY = [
    "data.name=synthetic(n=64, classes=3, size=6)", "train.batch_size=32", "model.kind=mlp",
    "model.widths=[6]", "diagnostics.every=0", "schedule.name=constant", "augment.train=[]",
]  # fmt: skip
ACTIONS = st.tuples(
    st.sampled_from(["train", "train-onto", "overwrite", "resume", "lengthen"]),
    st.integers(1, 3),  # epochs asked
    st.one_of(st.none(), st.integers(0, 12)),  # killed at the k-th file replaced, if any
)
EXAMPLES = 300 if os.environ.get("HYPOTHESIS_PROFILE") == "nightly" else 6


class Killed(BaseException):
    """A kill at a random point: nothing after it runs, as after SIGKILL."""


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory):
    """The uninterrupted run of each seed, 6 epochs: every epoch of every folder must match it
    (a constant schedule makes a lengthened run equal to the straight one)."""
    root = tmp_path_factory.mktemp("straight")
    return {
        seed: fit(load_recipe(None, [*PROPERTY, "train.epochs=6", f"train.seed={seed}"]),
                  root / str(seed), progress=False, report=False).metrics
        for seed in (0, 1)
    }  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None)
@given(actions=st.lists(ACTIONS, min_size=1, max_size=5), seeds=st.lists(st.integers(0, 1)))
def test_no_sequence_of_commands_and_kills_loses_a_completed_epoch(
    tmp_path_factory, straight_runs, actions, seeds
):
    import trainlab.fileio as fileio
    from trainlab.errors import TrainlabError

    out = tmp_path_factory.mktemp("run")
    real_replace = os.replace
    seeds = iter(seeds)
    committed = None  # (seed, epochs) of the run the folder holds, from its checkpoint
    for kind, epochs, kill_at in actions:
        seed = committed[0] if kind in ("resume", "lengthen") and committed else next(seeds, 0)
        recipe = load_recipe(None, [*PROPERTY, f"train.epochs={epochs}", f"train.seed={seed}"])
        before = snapshot(out)
        replaced = {"n": 0}

        def replace(src, dst, kill_at=kill_at, replaced=replaced):
            replaced["n"] += 1
            if kill_at is not None and replaced["n"] == kill_at:
                raise Killed  # before this file is in place
            real_replace(src, dst)

        fileio.os.replace = replace
        try:
            if kind == "resume":
                fit(None, out, resume=True, progress=False, report=False)
            elif kind == "lengthen":
                held = load_checkpoint(out)["epoch"] if committed else 0
                longer = load_recipe(None, [*PROPERTY, f"train.epochs={held + epochs}",
                                            f"train.seed={seed}"])  # fmt: skip
                fit(longer, out, resume=True, progress=False, report=False)
            else:
                fit(recipe, out, overwrite=kind == "overwrite", progress=False, report=False)
        except (Killed, TrainlabError):
            pass
        finally:
            fileio.os.replace = real_replace
        for leftover in out.glob(".*.tmp"):  # a killed process leaves its temporary file
            leftover.unlink()
        (out / LOCK).unlink(missing_ok=True)  # ... and its lock, which a new run takes over
        if not (out / "checkpoint.pt").is_file():
            assert committed is None or kind == "overwrite", (kind, "lost the checkpoint")
            committed = None
            continue
        state = load_checkpoint(out)  # whole: it loads
        run_seed = int(state["recipe"].split("seed = ")[1].split()[0])
        if kind != "overwrite" and committed is not None:
            assert run_seed == committed[0] and state["epoch"] >= committed[1], (kind, "went back")
        if kind == "train-onto" and committed is not None:
            assert snapshot(out) == before, "a refused --out changed the folder"
        reference = straight_runs[run_seed]
        keys = ("epoch", "train_loss", "train_acc")
        for row in state["metrics"]:
            assert {k: row[k] for k in keys} == {k: reference[row["epoch"] - 1][k] for k in keys}
        logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert len(logged) in (state["epoch"], state["epoch"] - 1), "metrics.jsonl lags by <= 1"
        for row in logged:
            assert {k: row[k] for k in keys} == {k: reference[row["epoch"] - 1][k] for k in keys}
        committed = (run_seed, state["epoch"])


def test_a_run_killed_for_real_resumes_to_the_uninterrupted_weights(tmp_path):
    """SIGKILL mid-run, in a process of its own: the lock it leaves is taken over, the last
    checkpoint loads, and the resumed run ends with the weights of a run never killed."""
    import time

    settings_ = [*PROPERTY, "train.epochs=8", "data.name=synthetic(n=1024, classes=3, size=6)"]
    argv = [a for s in settings_ for a in ("--set", s)]
    cut = tmp_path / "cut"
    child = subprocess.Popen(
        [sys.executable, "-m", "trainlab", "train", *argv, "--out", str(cut), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (cut / "checkpoint.pt").exists() and child.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within two minutes"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    assert (cut / LOCK).exists(), "a killed process leaves its lock"
    assert 1 <= load_checkpoint(cut)["epoch"] < 8
    resumed = fit(None, cut, resume=True, progress=False, report=False)
    straight = fit(load_recipe(None, settings_), tmp_path / "straight", progress=False,
                   report=False)  # fmt: skip
    assert same_weights(weights(cut), weights(tmp_path / "straight"))
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in straight.metrics]
