"""The command line: exit codes, one-line errors, and the commands end to end on tiny data."""

import json
import subprocess
import sys

import pytest

from trainlab import __version__
from trainlab.cli import main

TINY = [
    "--set",
    "data.name=synthetic(n=256, classes=4, size=16)",
    "--set",
    "train.epochs=1",
    "--set",
    "model.widths=[8,16]",
    "--set",
    "train.batch_size=64",
]


def test_version_in_a_real_process():
    done = subprocess.run(
        [sys.executable, "-m", "trainlab", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == f"trainlab {__version__}"


def one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trainlab: error:"), err
    assert needle in err
    return err


def test_user_mistakes_are_one_line_and_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepohcs = 3\n")
    one_line_error(capsys, ["train", str(bad), "--out", str(tmp_path / "o")], "train.epohcs")
    one_line_error(
        capsys, ["train", "--set", "optim.lr=-1", "--out", str(tmp_path / "o")], "optim.lr"
    )
    one_line_error(
        capsys,
        ["train", "--set", "data.name=nosuchdata", "--out", str(tmp_path / "o")],
        "nosuchdata",
    )
    one_line_error(capsys, ["eval", str(tmp_path)], "no checkpoint")
    one_line_error(capsys, ["train", "--resume", str(tmp_path / "missing")], "no checkpoint")
    assert not (tmp_path / "o").exists(), "nothing is written before the recipe is valid"


@pytest.mark.parametrize(
    "item",
    ["schedule.warmup_epochs=nan", "regularize.label_smoothing=nan", "data.val_fraction=nan",
     "optim.lr=inf", "model.activation=leaky_relu('abc')", "init.scheme=kaiming(mode='sideways')",
     "init.scheme=normal(-1)", "data.normalize=zca_whiten(eps=-1)", "data.name=synthetic(n=0)"],
)  # fmt: skip
def test_the_issue_examples_end_before_any_work(capsys, tmp_path, item):
    out = tmp_path / "o"
    one_line_error(capsys, ["train", "--set", item, "--out", str(out)], item.split("=")[0])
    assert not out.exists()


def test_verbose_shows_the_chain_and_still_ends_in_the_one_line(capsys, tmp_path, monkeypatch):
    junk = tmp_path / "checkpoint.pt"
    junk.write_bytes(b"PK\x03\x04 not a zip archive at all")
    monkeypatch.delenv("TRAINLAB_VERBOSE", raising=False)
    quiet = one_line_error(capsys, ["eval", str(junk)], str(junk))
    assert main(["eval", str(junk), "--verbose"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == quiet.strip()
    monkeypatch.setenv("TRAINLAB_VERBOSE", "1")
    assert main(["--verbose", "eval", str(junk)]) == 2 and "Traceback" in capsys.readouterr().err


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--bogus"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "train" in capsys.readouterr().out


def test_train_then_eval_then_resume(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["eval", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    final = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert evaluated["test_acc"] == pytest.approx(final["test_acc"])
    assert evaluated["test_loss"] == pytest.approx(final["test_loss"], rel=1e-5)
    # a finished run is complete: resuming it says so and writes nothing
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert "the run is complete (1 of 1 epochs)" in capsys.readouterr().out
    one_line_error(capsys, ["train", "--resume", str(out), "--set", "optim.lr=3"], "optim.lr")


def test_stats_prints_the_statistics(capsys):
    assert main(["stats", "synthetic(n=64, channels=3, size=8)", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert "channel_mean" in json.dumps(stats)


def test_diagnose_names_a_planted_fault(capsys, tmp_path):
    argv = [
        "diagnose",
        "--set",
        "data.name=synthetic(n=256)",
        "--set",
        "model.kind=mlp",
        "--set",
        "model.widths=[64,64,64]",
        "--set",
        "model.norm=none",
        "--set",
        "model.activation=tanh",
        "--set",
        "init.scheme=normal(1.0)",
        "--steps",
        "20",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "saturated" in out and "--set init.scheme=kaiming" in out  # the key, and a value
    found = json.loads((tmp_path / "findings.json").read_text())
    assert any(f["code"] == "saturated" for f in found)
    one_line_error(capsys, ["diagnose", "--steps", "0"], "--steps 0")
