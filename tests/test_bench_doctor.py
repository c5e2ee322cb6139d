"""The doctor benchmark's repair verdict (benchmarks/bench_doctor.py), on hand-made rows."""

import importlib.util
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_doctor", ROOT / "benchmarks" / "bench_doctor.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_doctor"] = module
    spec.loader.exec_module(module)
    return module


def _row(name, group, must, ours, acc_all, acc_2000):
    return {"name": name, "group": group, "must": must, "ours": ours, "test_acc": acc_2000,
            "test_acc_all": acc_all}  # fmt: skip


def test_repair_is_judged_by_each_measure_against_that_measures_best_healthy_variant():
    bench = _bench()
    rows = [
        _row("g/healthy-0", "g", [], [], 0.840, 0.845),
        _row("g/healthy-1", "g", [], [], 0.846, 0.860),  # the best by both measures
        # 0.837 >= 0.846 - 0.01 on every image; 0.846 < 0.860 - 0.01 on the 2,000
        _row("g/stalled-1", "g", ["stalled"], ["stalled"], 0.837, 0.846),
        _row("g/stalled-2", "g", ["stalled"], ["stalled"], 0.830, 0.851),  # the other way round
        _row("g/stalled-3", "g", ["stalled"], [], 0.5, 0.5),  # not detected: not judged
        _row("g/dead-1", "g", ["dead_units"], ["dead_units"], None, None),  # diverged in full
    ]
    all_images = bench.repair_rate(rows, bench.best_healthy(rows, "test_acc_all"), "test_acc_all")
    subset = bench.repair_rate(rows, bench.best_healthy(rows, "test_acc"), "test_acc")
    assert bench.best_healthy(rows, "test_acc_all") == {"g": 0.846}
    assert all_images == {"stalled": (1, 2), "dead_units": (0, 1), "overall": (1, 3)}
    assert subset == {"stalled": (1, 2), "dead_units": (0, 1), "overall": (1, 3)}
    by_name = {r["name"]: r for r in rows}
    assert by_name["g/stalled-1"]["repaired"] and not by_name["g/stalled-1"]["repaired_test_acc"]
    assert not by_name["g/stalled-2"]["repaired"] and by_name["g/stalled-2"]["repaired_test_acc"]
    assert "repaired" not in by_name["g/stalled-3"]


def test_the_bar_is_a_healthy_variant_as_built_not_as_the_doctor_repaired_it():
    bench = _bench()
    flagged = _row("g/healthy-1", "g", [], ["overfitting"], 0.98, 0.98)  # trained as repaired
    flagged["test_acc_all_as_built"] = 0.90  # and as built
    rows = [
        _row("g/healthy-0", "g", [], [], 0.88, 0.88),
        flagged,
        _row("g/stalled-1", "g", ["stalled"], ["stalled"], 0.895, 0.895),
    ]
    assert bench.best_healthy(rows, "test_acc_all") == {"g": 0.90}
    assert bench.best_healthy(rows, "test_acc_all", as_built=False) == {"g": 0.98}
    now = bench.repair_rate(rows, bench.best_healthy(rows, "test_acc_all"), "test_acc_all")
    measure = "test_acc_all_repaired_bar"
    bar = bench.best_healthy(rows, bench.healthy_measure(measure), as_built=False)
    assert now["overall"] == (1, 1) and bench.repair_rate(rows, bar, measure)["overall"] == (0, 1)


def test_the_rules_before_are_scored_on_the_same_rows():
    bench = _bench()

    def row(name, must, ours, before):
        return {"name": name, "group": "g", "must": must, "may": [], "ours": ours,
                "ours_at": {}, "ours_rules_before": before}  # fmt: skip

    rows = [
        row("g/overfitting-1", ["overfitting"], ["overfitting"], []),  # found by the new rule only
        row("g/overfitting-2", ["overfitting"], ["overfitting"], ["overfitting"]),
        row("g/healthy-0", [], [], ["oscillating"]),  # a false positive of the old rule only
    ]
    text = bench._rules_before_section(rows)
    assert "| overfitting | 2 | 1.00 | 0.50 |" in text
    assert "| healthy (false positives) | 1 | 0 | 1 |" in text
    assert "`g/overfitting-1` (overfitting now; nothing before)" in text
    assert bench._rules_before_section([{k: v for k, v in rows[0].items()
                                         if k != "ours_rules_before"}]) == ""  # fmt: skip


def test_the_published_fault_cases_build_and_name_kinds_the_scores_know(monkeypatch):
    """Every case of bench_doctor_cases.py builds its user network for Fashion-MNIST's shape,
    reads back through load_recipe, and is labelled with kinds the doctor's codes map to."""
    import torch

    from trainlab.model_kinds import import_factory
    from trainlab.recipe import load_recipe

    bench = _bench()
    monkeypatch.chdir(ROOT)  # the cases name their module by its path in the repository
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_doctor_cases as cases_bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    known = set(bench.KIND_OF_CODE.values())
    cases = cases_bench.cases()
    assert len([c for c in cases if c.must]) == 14 and len([c for c in cases if not c.must]) == 6
    for case in cases:
        assert set(case.must) | set(case.may) <= known, case.name
        group = cases_bench.GROUPS[case.group]
        recipe = load_recipe(None, [f"data.name={group.data}", *group.base, *case.overrides])
        net = import_factory(recipe.model.kind)((1, 28, 28), 10)
        assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10), case.name


def test_a_relabelled_setup_keeps_its_half_and_is_scored_both_ways():
    """Relabelling after runs were seen must not move any setup between the halves (the split
    is the one made before thresholds were tuned), and the old labels stay scoreable: the halves
    equal those of the corpus with the old labels put back, and one hand-made row scores a hit
    under the new label and a miss under the old."""
    import dataclasses

    bench = _bench()
    setups = bench.corpus()
    relabelled = [s for s in setups if s.before]
    assert relabelled, "the corpus records its relabelled setups"
    as_before = [
        dataclasses.replace(s, must=s.before[0], may=s.before[1], stratum=None) if s.before else s
        for s in setups
    ]
    assert bench.halves(setups) == bench.halves(as_before)
    one = next(s for s in relabelled if s.relabelled_after == 9)
    row = {"name": one.name, "group": one.group, "half": "held-out", "must": [], "may": [],
           "ours": ["diverging"], "ours_at": {"diverging": 0.1}}  # fmt: skip
    now, then = bench.labelled([row])[0], bench.labelled([row], undo=9)[0]
    assert now["must"] == ["diverging"] and then["must"] == ["oscillating"]
    assert bench.score([now], "ours")["overall"]["recall"] == 1.0
    assert bench.score([then], "ours")["overall"]["recall"] == 0.0


def test_a_healthy_setup_named_with_a_kind_it_may_show_is_no_false_positive():
    """The label rule after seed 19: a healthy variant that over-fits as built (a paired gain
    from the doctor's repair) may be named "overfitting"; under the labels before, and for any
    other kind, the same row is a false positive."""
    bench = _bench()
    name = next(iter(bench.OVER_FIT_AS_BUILT))

    def row(ours):
        return {"name": name, "group": "syn-deep", "half": "held-out", "must": [], "may": [],
                "ours": ours, "ours_at": {}}  # fmt: skip

    now = bench.labelled([row(["overfitting"])])[0]
    assert now["must"] == [] and now["may"] == ["overfitting"]
    assert bench.score([now], "ours")["healthy"] == {"setups": 1, "false_positives": 0}
    then = bench.labelled([row(["overfitting"])], undo=19)[0]
    assert bench.score([then], "ours")["healthy"]["false_positives"] == 1
    other = bench.labelled([row(["stalled"])])[0]
    assert bench.score([other], "ours")["healthy"]["false_positives"] == 1
    # undoing the relabelling after seed 9 leaves this one as it is now
    assert bench.labelled([row([])], undo=9)[0]["may"] == ["overfitting"]
    # the tanh variant, relabelled after seed 22: undone by undo=22 alone
    tanh = {**row(["overfitting"]), "name": "syn-deep/healthy-3"}
    assert bench.OVER_FIT_AS_BUILT[tanh["name"]][0] == 22
    assert bench.score(bench.labelled([tanh]), "ours")["healthy"]["false_positives"] == 0
    assert bench.score(bench.labelled([tanh], undo=19), "ours")["healthy"]["false_positives"] == 0
    assert bench.score(bench.labelled([tanh], undo=22), "ours")["healthy"]["false_positives"] == 1


def test_the_step_back_candidate_leaves_a_rate_beside_a_diverged_one():
    """step_back_rate on the rate check's record of seed 17 (the deep MLP repaired to ReLU):
    the check kept 0.18 beside a diverged 0.54, the candidate the best clean rate below; with
    nothing diverged above, or nothing clean below, it keeps the check's rate."""
    bench = _bench()
    seed17 = [{"lr": 0.02, "error": 0.15122, "problems": []},
              {"lr": 0.00667, "error": 0.273171, "problems": []},
              {"lr": 0.06, "error": 0.104878, "problems": []},
              {"lr": 0.18, "error": 0.078049, "problems": []},
              {"lr": 0.54, "error": None, "problems": ["non_finite"]}]  # fmt: skip
    assert bench.three_rates(seed17, 0.02) == 0.06
    assert bench.step_back_rate(seed17, 0.02) == 0.06
    assert bench.step_back_rate(seed17[:4], 0.02) == 0.18  # 0.54 not tried
    far = [*seed17[:4], {"lr": 1.62, "error": None, "problems": ["non_finite"]}]
    assert bench.step_back_rate(far, 0.02) == 0.18  # diverged, but not the next factor of 3
    alone = [{"lr": 0.18, "error": 0.1, "problems": []},
             {"lr": 0.06, "error": 0.2, "problems": ["stalled"]},
             {"lr": 0.54, "error": None, "problems": ["non_finite"]}]  # fmt: skip
    assert bench.step_back_rate(alone, 0.18) == 0.18  # nothing clean below


def test_the_rule_before_the_step_back_keeps_the_lowest_clean_error():
    """no_step_back, measured beside the doctor since it steps back: seed 27's record keeps
    0.18 beside a diverged 0.54, where the doctor's choose_rate keeps 0.06."""
    bench = _bench()
    from trainlab.doctor.doctor import choose_rate

    seed27 = [{"lr": 0.02, "error": 0.134146, "problems": []},
              {"lr": 0.00667, "error": 0.243902, "problems": []},
              {"lr": 0.06, "error": 0.087805, "problems": []},
              {"lr": 0.18, "error": 0.058537, "problems": []},
              {"lr": 0.54, "error": None, "problems": ["non_finite"]}]  # fmt: skip
    assert bench.no_step_back(seed27, 0.02) == 0.18 and choose_rate(seed27, 0.02) == 0.06
    tie = [{"lr": 0.1, "error": 0.3, "problems": []}, {"lr": 0.03, "error": 0.3, "problems": []}]
    assert bench.no_step_back(tie, 0.1) == 0.1 and bench.no_step_back(tie[1:], 0.1) == 0.03
    assert bench.no_step_back([{"lr": 1.0, "error": None, "problems": []}], 0.1) == 0.1


def test_the_loss_candidate_keeps_the_rate_of_lowest_validation_loss_as_the_check_would():
    bench = _bench()
    from trainlab.doctor.doctor import choose_rate

    def t(lr, error, loss, problems=()):
        return {"lr": lr, "error": error, "loss": loss, "problems": list(problems)}

    # seed 24's small MLP: a tie in error, which the check gives to the recipe's own rate
    tied = [t(0.05, 0.24, 0.78), t(0.0167, 0.24, 0.73), t(0.15, None, None)]
    assert choose_rate(tied, 0.05) == 0.05 and bench.lowest_clean_loss(tied, 0.05) == 0.0167
    # a lower loss with a problem is not kept; a tie in loss keeps the recipe's rate
    flagged = [t(0.05, 0.2, 0.7), t(0.0167, 0.3, 0.6, ["overfitting"]), t(0.15, 0.25, 0.7)]
    assert bench.lowest_clean_loss(flagged, 0.05) == 0.05
    # the step back from an extended rate beside a diverged one, as the check does
    edge = [t(0.02, 0.3, 0.9), t(0.00667, 0.4, 1.0), t(0.06, 0.2, 0.6), t(0.18, 0.1, 0.4),
            t(0.54, None, None)]  # fmt: skip
    assert bench.lowest_clean_loss(edge, 0.02) == 0.06 == choose_rate(edge, 0.02)


def test_a_rules_verdict_counts_setups_repaired_one_way_only_and_gains_per_seed():
    """rule_verdict on two hand-made seeds: the bar is the best healthy variant as built, a
    setup is repaired within 1 point of it; the seed gains are the means over the rows that
    differ, their interval a t(0.975, 1) one computed by hand."""
    bench = _bench()
    m = "test_acc_all_step_back_extended"

    def row(name, must, ours, theirs, differs=True, half="held-out"):
        return {"name": name, "group": "syn-deep", "half": half, "must": must, "may": [],
                "ours": must, "test_acc": ours, "test_acc_all": ours, m: theirs,
                f"{m}_differs": differs}  # fmt: skip

    healthy = row("syn-deep/healthy-0", [], 0.95, 0.95, differs=False, half="tuning")
    seed_a = [
        healthy,
        row("x1", ["stalled"], None, 0.945),
        row("x2", ["stalled"], 0.90, 0.92),
        row("x3", ["stalled"], 0.95, 0.95, differs=False),
    ]
    seed_b = [healthy, row("x1", ["stalled"], 0.945, 0.93), row("x2", ["stalled"], 0.80, 0.84)]
    verdict = bench.rule_verdict([seed_a, seed_b], m)
    assert verdict["repaired_only_under_candidate"] == ["x1"]  # 94.5 >= 95 - 1; None is not
    assert verdict["repaired_only_under_doctor"] == ["x1"]  # seed b: 93 < 94
    assert verdict["pairs"] == 4
    gains = [((94.5 - 25.0) + (92.0 - 90.0)) / 2, ((93.0 - 94.5) + (84.0 - 80.0)) / 2]
    assert verdict["seed_gains"] == [round(g, 2) for g in gains]
    mean = sum(gains) / 2
    half = 12.706204736174707 * abs(gains[0] - gains[1]) / 2**0.5 / 2**0.5  # sd of 2 / sqrt(2)
    assert verdict["seed_mean"] == round(mean, 2)
    assert verdict["seed_interval"] == [round(mean - half, 2), round(mean + half, 2)]
    # a second judgement asks 97.5%: with one degree of freedom t is Cauchy, tan(pi (p - 1/2))
    strict = bench.rule_verdict([seed_a, seed_b], m, level=0.975)
    half = math.tan(math.pi * (0.9875 - 0.5)) * abs(gains[0] - gains[1]) / 2
    assert strict["seed_interval"] == [round(mean - half, 2), round(mean + half, 2)]


def test_a_rule_beside_is_set_in_the_doctor_only_for_the_duration():
    bench = _bench()
    from trainlab.doctor import doctor

    problem, constants = bench.DOCTOR_RULES["test_acc_all_first_verified"]
    assert problem == "overfitting" and doctor.BEST_OF == {"overfitting"}
    with bench._constants("trainlab.doctor.doctor", constants):
        assert doctor.BEST_OF == frozenset()
    assert doctor.BEST_OF == {"overfitting"}
    # the regularisers together: on only for the duration, beside BEST_OF as adopted
    problem, constants = bench.DOCTOR_RULES["test_acc_all_together"]
    assert problem == "overfitting" and doctor.STACK == frozenset()
    with bench._constants("trainlab.doctor.doctor", constants):
        assert doctor.STACK == {"overfitting"} and doctor.BEST_OF == {"overfitting"}
    assert doctor.STACK == frozenset()
    # the saturation candidate adds to the rule adopted, it does not drop it
    problem, constants = bench.DOCTOR_RULES["test_acc_all_best_of_saturated"]
    assert problem == "saturated" and constants["BEST_OF"] == {"overfitting", "saturated"}


def test_standardizing_alone_the_rule_before_is_set_only_for_the_duration():
    bench = _bench()
    from trainlab.doctor import repairs
    from trainlab.recipe import load_recipe

    problem, constants, module = bench.DOCTOR_RULES["test_acc_all_standardize_alone"]
    assert problem == "input_not_centred" and module == "trainlab.doctor.repairs"
    recipe = load_recipe(None, ["data.normalize=scale", "optim.lr=0.02"])
    adopted = [c.settings for c in repairs.repairs_for(problem, recipe)]
    with bench._constants(module, constants()):
        alone = [c.settings for c in repairs.repairs_for(problem, recipe)]
    assert alone == [{"data.normalize": "standardize"}]
    assert adopted == [{"data.normalize": "standardize"},
                       {"data.normalize": "standardize", "optim.lr": 0.06},
                       {"data.normalize": "standardize", "optim.lr": 0.00667}]  # fmt: skip
    assert [c.settings for c in repairs.repairs_for(problem, recipe)] == adopted  # restored


def test_strong_weight_decay_the_candidate_is_one_more_alternative_only_for_the_duration():
    """Weight decay at 5e-3 beside 5e-4 for over-fitting (a candidate): in the benchmark's rule
    only, between the first step and augmentation; not where the recipe already has 5e-4 (the
    first step's fix offers 5e-3 itself, and the same change is not tried twice)."""
    bench = _bench()
    from trainlab.doctor import repairs
    from trainlab.recipe import load_recipe

    problem, constants, module = bench.DOCTOR_RULES["test_acc_all_strong_wd"]
    assert problem == "overfitting" and module == "trainlab.doctor.repairs"
    small = ["model.kind=mlp", "model.dropout=none", "optim.weight_decay=0", "augment.train=[]"]
    recipe = load_recipe(None, small)
    adopted = [c.settings for c in repairs.repairs_for(problem, recipe)]
    with bench._constants(module, constants()):
        candidate = [c.settings for c in repairs.repairs_for(problem, recipe)]
        some = load_recipe(None, [*small, "optim.weight_decay=0.0005"])
        assert [c.settings for c in repairs.repairs_for(problem, some)][1:2] == [
            {"optim.weight_decay": 5e-3}
        ]
        assert repairs.strong_weight_decay(some, repairs.Context()) is None
    assert candidate == [adopted[0], {"optim.weight_decay": 5e-4}, {"optim.weight_decay": 5e-3},
                         adopted[2]]  # fmt: skip
    assert [c.settings for c in repairs.repairs_for(problem, recipe)] == adopted  # restored
    assert {"optim.weight_decay": 5e-3} not in adopted


def test_the_right_init_first_for_tanh_the_rule_before_is_set_only_for_the_duration():
    bench = _bench()
    from trainlab.doctor import repairs
    from trainlab.recipe import load_recipe

    problems, constants, module = bench.DOCTOR_RULES["test_acc_all_tanh_init_first"]
    assert set(problems) == set(repairs.RELU_FIRST_CODES) and module == "trainlab.doctor.repairs"
    deep = ["model.kind=mlp", "model.norm=none", "model.activation=tanh", "init.scheme=normal(1.0)"]
    recipe = load_recipe(None, deep)
    sigmoid = load_recipe(None, [*deep, "model.activation=sigmoid"])
    for code in problems:
        assert repairs.repairs_for(code, recipe)[0].name == "relu_instead"
        with bench._constants(module, constants):
            order = [c.name for c in repairs.repairs_for(code, recipe)]
            assert repairs.repairs_for(code, sigmoid)[0].name == "relu_instead"  # kept for it
        assert order[0] == "right_init" and order.count("relu_instead") <= 1
        assert repairs.repairs_for(code, recipe)[0].name == "relu_instead"  # restored
    # the doctor is re-run for it where it tried a fix for any of those problems, not others
    row = {"test_acc_all": 0.5}
    result = type("R", (), {"repairs": [{"problem": "overfitting"}]})()
    assert bench._with_doctor_rule(result, None, recipe, None, "", row,
                                   "test_acc_all_tanh_init_first") == 0.5  # fmt: skip


def test_a_rules_gain_pairs_only_rows_whose_recipes_differ_and_scores_divergence_as_chance():
    bench = _bench()
    m = "test_acc_all_best_of"
    rows = [
        {"name": "a", "group": "fm-small", "test_acc_all": 0.80, m: 0.83, f"{m}_differs": True},
        {"name": "b", "group": "fm-small", "test_acc_all": 0.70, m: 0.72, f"{m}_differs": True},
        {"name": "c", "group": "syn-deep", "test_acc_all": 0.90, m: None, f"{m}_differs": True},
        {"name": "d", "group": "fm-small", "test_acc_all": 0.50, m: 0.50, f"{m}_differs": False},
        {"name": "e", "group": "fm-small", "test_acc_all": 0.60, m: 0.60},
    ]
    gain = bench.rule_gain(rows, m)
    d = [3.0, 2.0, 25.0 - 90.0]  # c diverged: 1 / 4 classes of the synthetic data
    mean = sum(d) / 3
    sd = (sum((x - mean) ** 2 for x in d) / 2) ** 0.5
    half = 4.302652729911275 * sd / 3**0.5  # t(0.975, 2 df)
    assert gain["pairs"] == 3 and gain["names"] == ["a", "b", "c"]
    assert gain["gains"] == [3.0, 2.0, -65.0]
    assert gain["mean"] == round(mean, 2)
    assert gain["interval"] == [round(mean - half, 2), round(mean + half, 2)]
    assert "interval" not in bench.rule_gain(rows[:1], m)  # one pair: no interval


def test_beside_names_only_rules_measured_beside_and_writes_no_page(monkeypatch, capsys):
    """``--beside`` runs a candidate's judging seeds at less compute: a name that is not a rule
    is refused with exit 2 before any run, as is a page (which reports every rule)."""
    import pytest

    bench = _bench()
    for argv, says in (
        (["--half", "held-out", "--beside", "test_acc_all_nope"], "'test_acc_all_nope' is not"),
        (["--half", "held-out", "--beside", "test_acc_all_together", "--page", "p"], "drop --page"),
    ):
        monkeypatch.setattr(sys, "argv", ["bench_doctor.py", *argv])
        with pytest.raises(SystemExit) as stopped:
            bench.main()
        assert stopped.value.code == 2 and says in capsys.readouterr().err
