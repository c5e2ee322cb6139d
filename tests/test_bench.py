"""Time-to-accuracy statistics, checked on a tiny synthetic task against the per-run results."""

import statistics

import pytest

from trainlab.bench import summarize, time_to_accuracy
from trainlab.cli import main
from trainlab.errors import RecipeError
from trainlab.recipe import load_recipe

TINY = [
    "data.name=synthetic(n=256, classes=4, size=16)",
    "train.epochs=2",
    "train.batch_size=64",
    "model.widths=[8,16]",
]


def test_summarize_against_statistics_module():
    values = [0.91, 0.935, 0.92, 0.94]
    s = summarize(values)
    assert s["mean"] == pytest.approx(statistics.mean(values))
    assert s["std"] == pytest.approx(statistics.stdev(values))
    assert (s["min"], s["max"]) == (0.91, 0.94)
    assert summarize([0.5])["std"] == 0.0


def test_time_to_accuracy_aggregates_the_runs(tmp_path):
    recipe = load_recipe(None, TINY)
    stats = time_to_accuracy(recipe, 0.3, runs=3, out=tmp_path)
    accs = [r["test_acc"] for r in stats["runs"]]
    assert [r["seed"] for r in stats["runs"]] == [0, 1, 2]
    assert len(set(accs)) > 1 or accs[0] in (0.0, 1.0), "seeds differ, so runs differ"
    assert stats["accuracy"]["mean"] == pytest.approx(statistics.mean(accs))
    assert stats["accuracy"]["std"] == pytest.approx(statistics.stdev(accs))
    assert stats["reached"] == (statistics.mean(accs) >= 0.3)
    assert stats["runs_reaching_target"] == sum(a >= 0.3 for a in accs)
    assert all(r["seconds"] > 0 for r in stats["runs"]) and stats["load_seconds"] >= 0
    # each run's number is the final test accuracy that run wrote in its own metrics
    for r in stats["runs"]:
        last = (tmp_path / f"seed-{r['seed']}" / "metrics.jsonl").read_text().splitlines()[-1]
        assert f'"test_acc": {r["test_acc"]}' in last
    # an unreachable target is reported as not reached
    assert time_to_accuracy(recipe, 100, runs=1)["reached"] is False


def test_bad_arguments():
    recipe = load_recipe(None, TINY)
    with pytest.raises(RecipeError, match="--runs"):
        time_to_accuracy(recipe, 0.9, runs=0)
    with pytest.raises(RecipeError, match="--target"):
        time_to_accuracy(recipe, -3, runs=1)
    with pytest.raises(RecipeError, match="--warmup"):
        time_to_accuracy(recipe, 0.9, runs=1, warmup=-1)


def test_warmup_runs_are_trained_but_not_counted(tmp_path):
    recipe = load_recipe(None, [*TINY, "train.epochs=1"])
    plain = time_to_accuracy(recipe, 0.3, runs=2, out=tmp_path / "plain")
    warm = time_to_accuracy(recipe, 0.3, runs=2, out=tmp_path / "warm", warmup=1)
    assert warm["warmup_runs"] == 1 and [r["seed"] for r in warm["runs"]] == [0, 1]
    # a warm-up changes no counted result: every run is reproducible from its own seed
    assert [r["test_acc"] for r in warm["runs"]] == [r["test_acc"] for r in plain["runs"]]
    assert sorted(p.name for p in (tmp_path / "warm").iterdir()) == ["seed-0", "seed-1"]


def test_a_loaded_dataset_is_used_as_it_is(tmp_path, monkeypatch):
    from trainlab.data import load_dataset

    recipe = load_recipe(None, [*TINY, "train.epochs=1"])
    dataset = load_dataset(recipe.data.name)
    fresh = time_to_accuracy(recipe, 0.3, runs=1, out=tmp_path / "fresh")

    def no_loading(*args, **kwargs):
        raise AssertionError("time_to_accuracy loaded the data set again")

    monkeypatch.setattr("trainlab.data.load_dataset", no_loading)
    given = time_to_accuracy(recipe, 0.3, runs=1, out=tmp_path / "given", dataset=dataset)
    assert given["runs"][0]["test_acc"] == fresh["runs"][0]["test_acc"]
    assert given["load_seconds"] < 0.01


def test_cli_prints_the_statistics(capsys):
    argv = ["bench", "time-to-accuracy", "--target", "0.25", "--runs", "2"]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 runs, target 25.00%" in out and "time per run" in out


def test_the_median_interval_is_the_binomial_order_statistics_of_the_tables():
    """n = 40: the 14th and 27th of the sorted values (P(Binomial(40, 1/2) <= 13) = 0.0192,
    <= 14: 0.0403); n = 6: the smallest and largest (0.0156 and 0.109)."""
    from trainlab.bench import median_interval

    assert median_interval([float(i) for i in range(40)][::-1]) == (13.0, 26.0)
    assert median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0]) == (1.0, 6.0)
