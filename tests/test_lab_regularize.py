"""Lab experiments 11 (dropout) and 13 (augmentation): their smoke runs, and the identities that
moved out of their evidence (dropout's expectation and Monte-Carlo averages), each checked
against a hand-computed value or a float64 formula.

Smoke runs (``TRAINLAB_LAB_SMOKE=1``) check that each experiment writes a well-formed result
(comparison records, the learning rate chosen per arm and its search, a verdict derived from
the comparisons), not that the claim holds: that is the experiment's own job, at full size.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from lab_support import have, needs_data, numbers
from torch import nn

from trainlab.lab import arms as lab_arms
from trainlab.lab import evidence
from trainlab.lab import exp_11_dropout as exp11
from trainlab.lab import exp_13_augmentation as exp13
from trainlab.lab import runs as lab_runs
from trainlab.lab.base import VERDICTS, get_experiment, run_experiment
from trainlab.regularize.dropout import Dropout

NAMES = {"dropout": exp11, "augmentation": exp13}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RECORD_KEYS = {"name", "metric", "arms", "difference", "ci95", "min_effect", "seeds", "verdict"}


# --- identities: unit tests, no longer evidence -------------------------------------------------


def test_dropout_eval_output_is_the_training_expectation_hand_computed():
    """Inverted dropout trains with x * m / (1 - p) and is the identity at test; classic trains
    with x * m and scales by (1 - p) at test. Every training output element is 0 or the kept
    value, so the mean over the two values, weighted by p and 1 - p, is the eval output."""
    p = 0.25
    x = torch.tensor([[1.0, -2.0, 4.0, 0.5]])
    for mode, kept, test in (("inverted", x / (1 - p), x), ("classic", x, (1 - p) * x)):
        layer = Dropout(p, mode=mode, generator=torch.Generator().manual_seed(0))
        assert torch.equal(layer.eval()(x), test)
        y = layer.train()(x.repeat(2000, 1))
        assert torch.all((y == 0) | torch.isclose(y, kept.expand_as(y)))
        assert torch.allclose((1 - p) * kept, test)  # E[train output] = eval output


def test_dropout_expectation_error_matches_its_prediction():
    x = torch.rand(64, 256, generator=torch.Generator().manual_seed(0)) + 0.5
    for mode in ("inverted", "classic"):
        r = exp11.expectation_check(x, mode, 400, seed=0)
        assert r["predicted"] == pytest.approx(math.sqrt(0.5 / (0.5 * 400)))
        # E||mean - target||^2 / ||target||^2 = p / ((1-p) M) exactly; one realisation over
        # 16k elements is within a few per cent of it.
        assert 0.9 < r["ratio"] < 1.1


def test_one_inverted_pass_at_half_is_off_by_exactly_one():
    """At p = 0.5 each element of one inverted pass is 2x or 0, so |y - x| = |x| everywhere and
    the relative error of K = 1 pass is exactly 1 (hand-computed)."""
    x = torch.rand(32, 64, generator=torch.Generator().manual_seed(1)) + 0.1
    errors = exp11.mc_errors(nn.Identity(), x, [1], torch.Generator().manual_seed(2))
    assert errors == [pytest.approx(1.0, abs=1e-12)]


def test_mc_average_through_a_linear_layer_converges_as_one_over_sqrt_k():
    """Through a layer linear in the mask the average of K passes is unbiased for the eval pass,
    its error ~ error(1) / sqrt(K). Checked against the float64 formula of the running mean."""
    gen = torch.Generator().manual_seed(3)
    linear = lab_runs.built(lambda: nn.Linear(256, 10))
    x = torch.rand(128, 256, generator=gen)
    ks = [1, 4, 64, 256]
    errors = exp11.mc_errors(linear, x, ks, torch.Generator().manual_seed(4))
    for k, e in zip(ks, errors, strict=True):
        assert 0.5 < e * math.sqrt(k) / errors[0] < 2.0
    # The same running mean in float64 by hand, with the same masks.
    layer = Dropout(0.5, generator=torch.Generator().manual_seed(4)).train()
    with torch.no_grad():
        w, b = linear.weight.double(), linear.bias.double()
        target = x.double() @ w.T + b
        total = torch.zeros_like(target)
        for _ in range(4):
            total += layer(x).double() @ w.T + b
    expected = float((total / 4 - target).norm() / target.norm())
    assert errors[1] == pytest.approx(expected, rel=1e-4)


def test_relative_error_is_the_float64_norm_ratio():
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 8.0])
    assert exp11.relative_error(a, b) == pytest.approx(math.hypot(3.0, -4.0) / 8.0)


# --- sizes follow issue 17's rules --------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_sizes_follow_the_rules(name):
    module = NAMES[name]
    # smoke never decides; >= 3 quick; >= 5 full; >= 3 at the paper's scale
    assert module.SIZES["seeds"][:3] == (2, 3, 5) and module.SIZES["seeds"][3] >= 3
    grid = lab_arms.log_grid(module.LR_CENTRE)
    assert len(grid) >= lab_arms.GRID_POINTS and grid == sorted(grid)
    assert grid[0] < module.LR_CENTRE < grid[-1]


# --- smoke runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(lab_runs.SMOKE_ENV, "1")
        state = torch.random.get_rng_state()
        results = {n: run_experiment(n, out / n, quick=True, seed=0) for n in NAMES}
        assert torch.equal(torch.random.get_rng_state(), state), "the lab touched the global RNG"
    return out, results


@needs_data
@pytest.mark.parametrize("name", NAMES)
def test_smoke_result_is_decided_by_its_comparisons(smoke, name):
    out, _ = smoke
    result = json.loads((out / name / "result.json").read_text())
    exp = get_experiment(name)
    assert (result["name"], result["claim"], result["rule"]) == (name, exp.claim, exp.rule)
    assert result["size"] == "smoke" and result["verdict"] in VERDICTS
    measured = result["measured"]
    assert "checks" not in measured and "partly held" not in json.dumps(result)
    assert all(math.isfinite(v) for _, v in numbers(measured))
    records = result["comparisons"]
    assert records and len({c["name"] for c in records}) == len(records)
    rebuilt = []
    for c in records:
        assert RECORD_KEYS <= set(c) and c["metric"] == "test_acc" and c["direction"] == 1
        assert c["min_effect"] == lab_arms.MIN_EFFECT and c["seeds"] == measured["seeds"]
        treatment, baseline = c["arms"]
        diffs = [
            a - b
            for a, b in zip(
                measured["test_acc_runs"][treatment], measured["test_acc_runs"][baseline],
                strict=True,
            )
        ]  # fmt: skip
        assert c["difference"] == pytest.approx(sum(diffs) / len(diffs), abs=1e-5)
        lo, hi = c["ci95"]
        assert lo <= c["difference"] <= hi
        assert c["verdict"] in ("inconclusive", "not reached")  # 2 seeds decide nothing
        args = {k: c[k] for k in RECORD_KEYS | {"direction"}}
        args.update(arms=tuple(c["arms"]), ci95=tuple(c["ci95"]))
        rebuilt.append(evidence.Comparison(**args))
    assert result["verdict"] == evidence.overall_verdict(rebuilt)
    for figure in result["figures"]:
        assert (out / name / figure).read_bytes()[:8] == PNG_MAGIC


@needs_data
@pytest.mark.parametrize("name", NAMES)
def test_smoke_records_each_arms_learning_rate_and_its_search(smoke, name):
    out, _ = smoke
    measured = json.loads((out / name / "result.json").read_text())["measured"]
    assert set(measured["lr"]) == set(measured["test_acc_runs"])
    for arm, search in measured["lr_search"].items():
        assert len(search["tried"]) >= lab_arms.GRID_POINTS
        assert len(search["tried"]) == len(search["score"])
        assert search["best"] == measured["lr"][arm] and search["best"] in search["tried"]
        # The chosen rate scores best among the finite ones (None: diverged).
        scores = {
            lr: s for lr, s in zip(search["tried"], search["score"], strict=True) if s is not None
        }
        assert scores[search["best"]] == min(scores.values())
        # Past an edge holding the best the grid grew, unless it ran out of extensions.
        assert search["bracketed"] or search["extensions"] == lab_arms.MAX_EXTENSIONS


# --- the paper's scale (issue 17 item 7): all of CIFAR-10 with a ResNet, on a GPU -------------

OVERRIDES = {"dropout": exp11._mlp_overrides, "augmentation": exp13.cnn_flatten_overrides}


@pytest.mark.parametrize("name", NAMES)
def test_paper_column_is_all_of_cifar10_with_a_resnet_on_the_gpu(name, monkeypatch):
    from trainlab.recipe import load_recipe

    module = NAMES[name]
    assert "paper" in get_experiment(name).scales
    assert lab_runs.sizes_in(module.SIZES) == lab_runs.SIZES
    paper = lab_runs.at_size(module.SIZES, "paper")
    assert paper["train_images"] == 50_000 and paper["test_images"] == 10_000
    assert paper["seeds"] >= 3 and paper["model"] == "resnet"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    recipe = load_recipe(None, OVERRIDES[name](paper, 7) + ["optim.lr=0.01"])
    assert recipe.data.name == "cifar10" and recipe.data.subset == 50_000
    assert recipe.model.kind == "resnet" and recipe.model.depth == module.PAPER_DEPTH
    assert recipe.train.device == "cuda" and recipe.augment.train == []
    full = lab_runs.at_size(module.SIZES, "full")
    assert load_recipe(None, OVERRIDES[name](full, 7)).train.device == "cpu"


def test_paper_dropout_arms_put_dropout_before_the_resnet_classifier():
    from trainlab.recipe import load_recipe

    paper = lab_runs.at_size(exp11.SIZES, "paper")
    assert set(paper["arms"]) == set(exp11.ARMS)  # both scalings, as at full size
    for arm in paper["arms"]:
        extra = [f"model.dropout={exp11.ARMS[arm]}", "optim.lr=0.01"]
        recipe = load_recipe(None, exp11._mlp_overrides(paper, 7) + extra)
        assert recipe.model.kind == "resnet" and recipe.model.dropout == exp11.ARMS[arm]


SHRUNK = {
    "dropout": {"arms": ("none", "dropout"), "draws": 20, "k_max": 4, "mc_width": 16},
    "augmentation": {"augments": ("none", "hflip")},
}


@pytest.mark.skipif(not have("cifar10"), reason="CIFAR-10 is not installed")
@pytest.mark.parametrize("name", NAMES)
def test_shrunk_paper_run_completes_on_the_cpu(name, tmp_path, monkeypatch):
    module = NAMES[name]
    monkeypatch.delenv(lab_runs.SMOKE_ENV, raising=False)
    monkeypatch.setattr(module, "PAPER_DEPTH", 1)
    monkeypatch.setattr(module, "PAPER_BATCH", 32)
    widths = "mlp_widths" if name == "dropout" else "widths"
    values = {
        "train_images": 128, "test_images": 128, widths: "[4, 8]", "epochs": 1, "seeds": 3,
        **SHRUNK[name],
    }  # fmt: skip
    sizes = {k: (*v[:3], values.get(k, v[3])) for k, v in module.SIZES.items()}
    monkeypatch.setattr(module, "SIZES", sizes)
    result = run_experiment(name, tmp_path, seed=0, scale="paper")
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert result["size"] == "paper" and not result["quick"]
    assert result["verdict"] in VERDICTS and "Paper scale" in result["notes"]
    measured = result["measured"]
    assert measured["seeds"] == [0, 1, 2] and measured["train_images"] == 128
    assert all(math.isfinite(v) for _, v in numbers(measured))
    rebuilt = []
    for c in result["comparisons"]:
        assert RECORD_KEYS <= set(c) and c["seeds"] == [0, 1, 2]
        args = {k: c[k] for k in RECORD_KEYS | {"direction"}}
        args.update(arms=tuple(c["arms"]), ci95=tuple(c["ci95"]))
        rebuilt.append(evidence.Comparison(**args))
    assert rebuilt and result["verdict"] == evidence.overall_verdict(rebuilt)
    for figure in result["figures"]:
        assert (tmp_path / figure).read_bytes()[:8] == PNG_MAGIC
