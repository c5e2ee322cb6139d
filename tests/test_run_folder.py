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
    real = checkpoint_mod.save_checkpoint

    def save_then_die(path, **state):
        real(path, **state)
        raise KeyboardInterrupt  # stop after the first epoch's checkpoint

    monkeypatch.setattr(checkpoint_mod, "save_checkpoint", save_then_die)
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
