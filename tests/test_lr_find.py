"""trainlab lr-find: the optimizer's rate follows the exponential sweep exactly, the stop rule
fires where a hand computation says on a planted divergence, the suggestion rule gives the
hand-computed rate, and the sweep leaves the global RNG and every run folder alone."""

import json
import math

import pytest
import torch

import trainlab.engine
from trainlab.cli import main
from trainlab.lr_find import CHECK_EVERY, lr_find, smooth, stop_index, suggest, sweep_rate
from trainlab.recipe import load_recipe

TINY = [
    "data.name=synthetic(n=640, classes=4, size=8)", "train.batch_size=16", "train.device=cpu",
    "model.kind=mlp", "model.widths=[16]", "diagnostics.every=0", "augment.train=[]",
]  # fmt: skip


@pytest.fixture
def steps_seen(monkeypatch):
    """Wrap the engine's step: record each step's rate per parameter group, and let a test
    plant what the step returns (``plant(i, loss) -> loss``)."""
    record = {"lrs": [], "plant": lambda i, loss: loss}
    real = trainlab.engine.train_step

    def step(run, x, y):
        loss = real(run, x, y)
        record["lrs"].append([g["lr"] for g in run.optimizer.param_groups])
        return record["plant"](len(record["lrs"]) - 1, loss)

    monkeypatch.setattr(trainlab.engine, "train_step", step)
    return record


def test_the_optimizer_rate_follows_the_exponential_formula(steps_seen, one_thread):
    start, end, n = 1e-5, 1e-2, 24  # low enough that nothing diverges
    sweep = lr_find(load_recipe(None, TINY), start=start, end=end, steps=n)
    want = [start * (end / start) ** (i / (n - 1)) for i in range(n)]  # float64, by hand
    assert len(steps_seen["lrs"]) == n and len(sweep.rates) == n
    for i, groups in enumerate(steps_seen["lrs"]):
        assert len(groups) == 2  # decayed weights, undecayed biases: both follow the sweep
        for lr in groups:
            assert lr == pytest.approx(want[i], rel=1e-12)
    assert sweep.rates == pytest.approx(want, rel=1e-12)
    assert sweep.rates[0] == start and sweep.rates[-1] == pytest.approx(end, rel=1e-12)
    assert sweep_rate(3, 2.0, 2.0 * 10**6, 7) == pytest.approx(2.0 * 10**3, rel=1e-12)


def test_at_most_one_epoch():
    recipe = load_recipe(None, TINY)
    from trainlab.engine import prepare_splits

    batches = len(prepare_splits(recipe).train[0]) // 16
    sweep = lr_find(recipe, start=1e-5, end=1e-3, steps=10_000)
    assert len(sweep.rates) == batches
    assert sweep.rates[-1] == pytest.approx(1e-3, rel=1e-12)


def test_the_stop_rule_fires_on_a_planted_divergence(steps_seen, one_thread):
    steps_seen["plant"] = lambda i, loss: loss * (1.0 if i < 13 else 60.0)
    sweep = lr_find(load_recipe(None, TINY), start=1e-5, end=1e-3, steps=30)
    raw = [float(v) for v in sweep.losses]
    # the stop step by hand: the debiased average, and the first value above 4x the minimum
    avg, smoothed = 0.0, []
    for i, loss in enumerate(raw):
        avg = 0.98 * avg + 0.02 * loss
        smoothed.append(avg / (1 - 0.98 ** (i + 1)))
    expected = next(i for i in range(1, len(smoothed)) if smoothed[i] > 4 * min(smoothed[:i]))
    assert expected >= 13 and len(raw) == expected + 1  # the record ends at the stop step
    assert sweep.smoothed == pytest.approx(smoothed, rel=1e-9)
    assert sweep.stopped.startswith(f"diverged at step {expected} ")
    # the host read the losses every CHECK_EVERY steps: it stopped at the first read after
    assert sweep.steps_run == CHECK_EVERY * math.ceil((expected + 1) / CHECK_EVERY)
    assert len(steps_seen["lrs"]) == sweep.steps_run < 30


def test_a_non_finite_loss_stops_the_sweep(steps_seen):
    steps_seen["plant"] = lambda i, loss: loss * (1.0 if i < 5 else math.inf)
    sweep = lr_find(load_recipe(None, TINY), start=1e-5, end=1e-3, steps=20)
    assert len(sweep.rates) == 6 and sweep.stopped.startswith("non-finite loss at step 5")


def test_smoothing_and_stop_on_hand_made_values():
    # beta 0.5: avg 0.5 -> 0.5 / 0.5 = 1; avg 0.25 + 1.5 = 1.75 -> 1.75 / 0.75
    assert smooth([1.0, 3.0], beta=0.5) == pytest.approx([1.0, 1.75 / 0.75], rel=1e-15)
    assert stop_index([2.0, 1.0, 0.5, 1.9, 2.0]) is None  # 2.0 is not above 4 x 0.5
    assert stop_index([2.0, 1.0, 0.5, 1.9, 2.1]) == 4
    assert stop_index([2.0, math.nan]) == 1


def test_the_suggestion_on_a_hand_made_curve():
    rates = [10 ** (i / 4 - 4) for i in range(20)]  # 1e-4 .. 10^0.75
    smoothed = [0.5, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9, 1.05,
                1.3, 1.6, 2.0, 0.1, 3.0, 3.5]  # fmt: skip
    # steps 0..1 (the first tenth of 20) and the last five (15..19) are outside the window,
    # so neither the lucky first batch (0.5) nor the glitch at 17 (0.1) is the minimum:
    # the minimum is 0.9 at step 12, rate 10^(12/4 - 4) = 0.1, and a third of it is 0.0333
    assert suggest(rates, smoothed, planned=20) == pytest.approx(0.1 / 3, rel=1e-12)
    # a sweep stopped after 15 steps: the window is steps 2..9, its minimum 1.2 at step 9
    assert suggest(rates[:15], smoothed[:15], planned=20) == pytest.approx(rates[9] / 3)


def test_the_cli_writes_its_plot_and_sweep_and_nothing_else(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["lr-find", *[f for s in TINY for f in ("--set", s)], "--out", "sweep", "--steps", "20"]
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    assert main([*args, "--json"]) == 0
    assert torch.equal(torch.get_rng_state(), before)  # the engine seeds it per epoch: restored
    printed = json.loads(capsys.readouterr().out)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert written == ["sweep", "sweep/lr_find.json", "sweep/lr_find.png"]
    assert json.loads((tmp_path / "sweep/lr_find.json").read_text()) == printed
    assert (tmp_path / "sweep/lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert printed["suggestion"] == suggest(printed["rates"], printed["smoothed"], 20)
    # the same seed, the same sweep
    assert main(args) == 0
    assert json.loads((tmp_path / "sweep/lr_find.json").read_text())["losses"] == printed["losses"]


def test_a_run_folder_and_bad_flags_are_refused_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"a run")
    common = [f for s in TINY for f in ("--set", s)]
    assert main(["lr-find", *common, "--out", str(run)]) == 2
    assert "holds a training run" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt"]
    for flags, message in (
        (["--start", "0"], "expected 0 < start < end"),
        (["--start", "1", "--end", "0.1"], "expected 0 < start < end"),
        (["--steps", "1"], "at least 2 steps"),
    ):
        assert main(["lr-find", *common, "--out", str(tmp_path / "x"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "x").exists()
