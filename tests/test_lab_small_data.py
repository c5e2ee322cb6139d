"""Lab experiment 12 (small-data): its sizes and baseline, its per-arm learning-rate tuning (on a
fake trainer, so the plumbing is checked without training), and one smoke run whose result.json
carries the comparison records, the tuned rates and a verdict that follows from the comparisons.

The smoke run checks the plumbing, not the claim (two seeds never decide)."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from lab_support import have

from trainlab.lab import arms as lab_arms
from trainlab.lab import evidence
from trainlab.lab import exp_12_small_data as exp12
from trainlab.lab import runs as lab_runs
from trainlab.lab.runs import at_size
from trainlab.recipe import load_recipe

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RECORD_KEYS = {"name", "metric", "arms", "difference", "ci95", "min_effect", "seeds", "verdict"}
T_975_DF1 = 12.706204736174707  # Student's t, 97.5% quantile, 1 degree of freedom (tables)


def test_sizes_meet_the_issue_rules():
    full, quick, smoke = (at_size(exp12.SIZES, s) for s in ("full", "quick", "smoke"))
    assert full["seeds"] >= 5 and quick["seeds"] >= 3 and smoke["seeds"] == 2
    assert set(full["claimed"]) == set(quick["claimed"]) == set(exp12.CLAIMED)
    assert full["other_seeds"] >= lab_arms.MIN_SEEDS  # no verdict on fewer seeds
    assert full["tune_epochs"] == full["epochs"]  # full size tunes at the paired runs' length
    assert set(exp12.CLAIMED) | set(exp12.OTHERS) | {"baseline"} == set(exp12.VARIANTS)
    assert len(lab_arms.log_grid(exp12.LR_CENTRE)) >= lab_arms.GRID_POINTS


def test_baseline_is_plain_with_a_flatten_head_and_every_arm_is_a_valid_recipe():
    cfg = at_size(exp12.SIZES, "full")
    base = exp12.base_overrides(cfg, 7)
    recipe = load_recipe(None, base + ["optim.lr=0.01"])
    assert recipe.model.head == "flatten" and recipe.model.norm == "none"
    assert recipe.augment.train == [] and recipe.optim.weight_decay == 0.0
    assert recipe.train.epochs == cfg["epochs"] and recipe.train.seed == 7
    assert recipe.data.subset == cfg["train_images"]
    assert load_recipe(None, exp12.base_overrides(cfg, 7, 3)).train.epochs == 3
    for arm, extra in exp12.VARIANTS.items():
        changed = load_recipe(None, base + extra + ["optim.lr=0.01"])
        assert (changed != recipe) == (arm != "baseline"), arm


def test_each_arm_is_tuned_on_the_tuning_seed_then_trained_at_its_rate(monkeypatch):
    """A fake trainer whose validation accuracy peaks at a different rate per arm: the search
    must find each arm's peak, on the tuning seed with a held-out split and the tuning epochs,
    and the paired runs must use it, on the paired seeds, for the full epochs."""
    peaks = {"none": 0.0316, "batch": 0.316}
    calls: list[dict] = []

    def fake_fit(overrides, data):
        recipe = load_recipe(None, overrides)
        calls.append(
            {
                "seed": recipe.train.seed,
                "epochs": recipe.train.epochs,
                "val": recipe.data.val_fraction,
                "lr": recipe.optim.lr,
                "norm": recipe.model.norm,
            }
        )
        distance = abs(math.log10(recipe.optim.lr / peaks[recipe.model.norm]))
        acc = 0.9 - 0.1 * distance
        return {"train_acc": 1.0, "test_acc": acc, "val_acc": acc, "train_loss": 0.1,
                "first_train_loss": 2.3}  # fmt: skip

    monkeypatch.setattr(lab_arms, "fit_recipe", fake_fit)
    cfg = {**at_size(exp12.SIZES, "quick"), "epochs": 9, "tune_epochs": 2}
    runs, searches = exp12.tuned_runs(cfg, ("baseline", "batch_norm"), [3, 4, 5], data=None)
    assert searches["baseline"].best == 0.0316 and searches["batch_norm"].best == 0.316
    assert searches["batch_norm"].bracketed and searches["batch_norm"].extensions == 2
    tuning = [c for c in calls if c["val"] > 0]
    paired = [c for c in calls if c["val"] == 0]
    assert {c["seed"] for c in tuning} == {3 + lab_arms.TUNING_SEED}
    assert {c["epochs"] for c in tuning} == {2} and {c["epochs"] for c in paired} == {9}
    assert sorted(c["seed"] for c in paired) == [3, 3, 4, 4, 5, 5]
    assert {(c["norm"], c["lr"]) for c in paired} == {("none", 0.0316), ("batch", 0.316)}
    assert [len(v) for v in runs.values()] == [3, 3]


@pytest.mark.skipif(not have("cifar10"), reason="CIFAR-10 (or its JPEG copy) is not installed")
def test_smoke_run_writes_comparisons_tuned_rates_and_a_derived_verdict(tmp_path, monkeypatch):
    from trainlab.lab.base import run_experiment

    monkeypatch.setenv(lab_runs.SMOKE_ENV, "1")
    result = run_experiment("small-data", tmp_path, quick=True, seed=0)
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert "partly held" not in json.dumps(result)
    assert (
        str(lab_arms.MIN_EFFECT) in result["rule"] and str(lab_arms.OVERFIT_GAP) in result["rule"]
    )
    m = result["measured"]
    seeds = m["seeds"]
    assert seeds == [0, 1]
    records = result["comparisons"]
    smoke = at_size(exp12.SIZES, "smoke")
    assert [tuple(c["arms"]) for c in records] == [(a, "baseline") for a in smoke["claimed"]]
    rebuilt = []
    for c in records:
        assert RECORD_KEYS <= set(c) and c["metric"] == "test_acc" and c["seeds"] == seeds
        assert c["min_effect"] == lab_arms.MIN_EFFECT
        assert c["verdict"] in ("inconclusive", "not reached")  # two seeds decide nothing
        treatment, baseline = c["arms"]
        runs = m["test_acc_runs"]
        diffs = [a - b for a, b in zip(runs[treatment], runs[baseline], strict=True)]
        mean = statistics.fmean(diffs)
        half = T_975_DF1 * statistics.stdev(diffs) / math.sqrt(2)
        assert c["difference"] == pytest.approx(mean, abs=1e-6)
        assert c["ci95"] == pytest.approx([mean - half, mean + half], abs=1e-5)
        args = {k: c[k] for k in ("name", "metric", "difference", "min_effect", "direction")}
        rebuilt.append(
            evidence.Comparison(
                **args, arms=tuple(c["arms"]), ci95=tuple(c["ci95"]), seeds=c["seeds"],
                verdict=c["verdict"],
            )
        )  # fmt: skip
    assert result["verdict"] == evidence.overall_verdict(rebuilt)
    if not m["baseline_overfits"]:
        assert {c["verdict"] for c in records} == {"not reached"}
    # Every arm's chosen rate is recorded, with its search of >= 5 points around it.
    for where in (m, m["others"]):
        for arm, lr in where["lr"].items():
            search = where["lr_search"][arm]
            assert len(search["tried"]) >= lab_arms.GRID_POINTS and lr == search["best"]
            assert lr in search["tried"]
    assert set(m["lr"]) == {"baseline", *smoke["claimed"]}
    assert set(m["others"]["lr"]) == set(smoke["others"])
    assert [c["arms"][0] for c in m["others"]["comparisons"]] == list(smoke["others"])
    for figure in result["figures"]:
        assert (tmp_path / figure).read_bytes()[:8] == PNG_MAGIC


# --- the paper's scale (issue 17 item 7): all of CIFAR-10 with a ResNet, on a GPU -------------


def _shrunk_paper(monkeypatch, module, **values):
    """``module.SIZES`` with its paper column replaced by ``values`` (a CPU-sized stand-in)."""
    sizes = {k: (*v[:3], values.get(k, v[3])) for k, v in module.SIZES.items()}
    monkeypatch.setattr(module, "SIZES", sizes)


def test_paper_column_is_all_of_cifar10_with_a_resnet_on_the_gpu(monkeypatch):
    import torch

    from trainlab.lab.base import get_experiment

    assert "paper" in get_experiment("small-data").scales
    assert lab_runs.sizes_in(exp12.SIZES) == lab_runs.SIZES
    paper = at_size(exp12.SIZES, "paper")
    assert paper["train_images"] == 50_000 and paper["test_images"] == 10_000
    assert paper["seeds"] >= 3 and paper["model"] == "resnet"
    assert set(paper["claimed"]) == set(exp12.CLAIMED)
    assert paper["tune_epochs"] == paper["epochs"]  # tuned as at full size
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    recipe = load_recipe(None, exp12.base_overrides(paper, 7) + ["optim.lr=0.01"])
    assert recipe.model.kind == "resnet" and recipe.model.depth == exp12.PAPER_DEPTH
    assert recipe.data.subset == 50_000 and recipe.train.device == "cuda"
    assert recipe.model.norm == "none" and recipe.augment.train == []
    assert recipe.optim.weight_decay == 0.0 and recipe.train.epochs == paper["epochs"]
    for extra in exp12.VARIANTS.values():  # every arm is a valid recipe on the ResNet
        load_recipe(None, exp12.base_overrides(paper, 7) + extra + ["optim.lr=0.01"])
    # The CPU sizes stay on the CPU.
    assert (
        load_recipe(None, exp12.base_overrides(at_size(exp12.SIZES, "full"), 7)).train.device
        == "cpu"
    )


@pytest.mark.skipif(not have("cifar10"), reason="CIFAR-10 is not installed")
def test_shrunk_paper_run_completes_on_the_cpu(tmp_path, monkeypatch):
    from trainlab.lab.base import run_experiment

    monkeypatch.delenv(lab_runs.SMOKE_ENV, raising=False)
    monkeypatch.setattr(exp12, "PAPER_DEPTH", 1)
    monkeypatch.setattr(exp12, "PAPER_BATCH", 32)
    _shrunk_paper(
        monkeypatch, exp12, claimed=("mixup",), train_images=128, test_images=128,
        widths="[4, 8]", epochs=1, tune_epochs=1, seeds=3,
    )  # fmt: skip
    result = run_experiment("small-data", tmp_path, seed=0, scale="paper")
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert result["size"] == "paper" and not result["quick"]
    m = result["measured"]
    assert m["seeds"] == [0, 1, 2] and m["train_images"] == 128 and "others" not in m
    assert [tuple(c["arms"]) for c in result["comparisons"]] == [("mixup", "baseline")]
    for c in result["comparisons"]:
        assert RECORD_KEYS <= set(c) and c["seeds"] == [0, 1, 2]
    rebuilt = [
        evidence.Comparison(
            **{
                **{k: c[k] for k in RECORD_KEYS | {"direction"}},
                **{"arms": tuple(c["arms"]), "ci95": tuple(c["ci95"])},
            }
        )
        for c in result["comparisons"]
    ]
    assert result["verdict"] == evidence.overall_verdict(rebuilt)
    assert "Paper scale" in result["notes"] and "model.kind=resnet" in result["notes"]
    assert set(m["lr"]) == {"baseline", "mixup"}
