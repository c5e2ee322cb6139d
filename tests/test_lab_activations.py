"""Lab experiments 1 (activations) and 2 (not-zero-centred): each runs at the smoke size and
writes comparison records; their measuring functions are checked against hand-computed cases;
the sign identities that moved out of the evidence are tested here."""

import json
import math

import pytest
import torch

from trainlab.lab import run_experiment
from trainlab.lab.base import VERDICTS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMPARISON_KEYS = {"name", "metric", "arms", "difference", "ci95", "min_effect", "seeds", "verdict"}


@pytest.fixture(autouse=True)
def _smoke(monkeypatch):
    monkeypatch.setenv("TRAINLAB_LAB_SMOKE", "1")


def _check_result(result, tmp_path, count):
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk == result
    assert on_disk["size"] == "smoke" and on_disk["verdict"] in VERDICTS
    assert len(on_disk["comparisons"]) == count
    for c in on_disk["comparisons"]:
        assert COMPARISON_KEYS <= set(c)
        lo, hi = c["ci95"]
        assert lo <= c["difference"] <= hi
        assert c["direction"] == 1 and c["min_effect"] > 0
        assert c["verdict"] == "inconclusive", "2 smoke seeds decide nothing"
        assert len(c["seeds"]) == 2
    for fig in on_disk["figures"]:
        assert (tmp_path / fig).read_bytes()[:8] == PNG_MAGIC
    assert "comparisons.png" in on_disk["figures"]
    return on_disk


def test_activations_smoke_run(tmp_path):
    from trainlab.lab.exp_01_activations import EXP_BASED, MIN_EFFECT, PASSES

    before = torch.get_num_threads()
    result = _check_result(
        run_experiment("activations", tmp_path, quick=True), tmp_path, len(EXP_BASED) * 2
    )
    assert torch.get_num_threads() == before, "the timing's thread count is restored"
    assert {tuple(c["arms"]) for c in result["comparisons"]} == {(s, "relu") for s in EXP_BASED}
    assert all(c["min_effect"] == pytest.approx(MIN_EFFECT) for c in result["comparisons"])
    assert result["comparisons"][0]["seeds"] == [0, 1], "the seeds are the timing rounds"
    timing = result["measured"]["timing"]
    assert timing["relative_to_relu"]["relu"] == {p: 1.0 for p in PASSES}
    assert result["measured"]["threads"] == 1


def test_activation_comparisons_on_constructed_timings():
    from trainlab.lab.exp_01_activations import EXP_BASED, comparisons_of, log_ratios

    relu = [1e-3, 2e-3, 1.5e-3, 3e-3]  # the load changes between rounds; ratios do not
    samples = {"relu": {"forward": relu, "backward": relu}}
    for spec in EXP_BASED:
        samples[spec] = {
            "forward": [2 * t for t in relu],  # twice ReLU's time in every round: log 2
            "backward": [t * (1.05 if i % 2 else 1.03) for i, t in enumerate(relu)],  # 3-5%
        }
    assert log_ratios(samples, "tanh", "forward") == pytest.approx([math.log(2)] * 4)
    by_name = {c.name: c for c in comparisons_of(samples)}
    fwd, bwd = by_name["tanh forward dearer than relu"], by_name["tanh backward dearer than relu"]
    assert fwd.difference == pytest.approx(math.log(2)) and fwd.verdict == "held"
    assert fwd.ci95 == pytest.approx((math.log(2), math.log(2)))
    assert fwd.seeds == [0, 1, 2, 3]
    # mean of log 1.03 and log 1.05 is below log 1.10: the interval lies below the minimum
    assert bwd.difference == pytest.approx((math.log(1.03) + math.log(1.05)) / 2)
    assert bwd.verdict == "did not hold"


def test_not_zero_centred_smoke_run(tmp_path):
    from trainlab.lab.exp_02_not_zero_centred import GRID_POINTS, MIN_EFFECT

    result = _check_result(run_experiment("not-zero-centred", tmp_path, quick=True), tmp_path, 1)
    (c,) = result["comparisons"]
    assert c["arms"] == ["positive", "centred"] and c["min_effect"] == pytest.approx(MIN_EFFECT)
    measured = result["measured"]
    for arm in ("positive", "centred"):
        search = measured["lr_search"][arm]
        assert len(search["tried"]) >= GRID_POINTS and search["best"] == measured["lr"][arm]
        assert len(measured["steps"][arm]) == 2


def test_not_zero_centred_same_seed_same_numbers(tmp_path):
    first = run_experiment("not-zero-centred", tmp_path / "1", quick=True, seed=5)
    second = run_experiment("not-zero-centred", tmp_path / "2", quick=True, seed=5)
    assert first["measured"] == second["measured"]
    assert first["comparisons"] == second["comparisons"]


def test_single_sign_fraction_against_hand_cases():
    from trainlab.lab.exp_02_not_zero_centred import single_sign_fraction

    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, -2.0, 3.0]], dtype=torch.float64)
    upstream = torch.tensor([[0.5, -1.0], [0.5, 0.0]], dtype=torch.float64)
    # sample 0: rows (+,+,+) and (-,-,-): both single-sign; sample 1: (+,-,+) and zeros: neither
    assert single_sign_fraction(x, upstream).tolist() == [1.0, 0.0]


def test_positive_inputs_give_single_sign_gradient_rows():
    """The identity that left the evidence: dL/dW_jd = u_j x_d has the sign of u_j for x > 0."""
    from trainlab.lab.exp_02_not_zero_centred import single_sign_fraction

    x = torch.tensor([[0.2, 0.7, 0.9], [0.5, 0.1, 0.3]], dtype=torch.float64)
    upstream = torch.tensor([[-0.3, 1.2, 0.4, -2.0], [0.1, -0.1, 3.0, -0.5]], dtype=torch.float64)
    assert single_sign_fraction(x, upstream).tolist() == [1.0, 1.0]
    centred = x - x.mean(0)  # rows (-0.15, 0.3, 0.3) and (0.15, -0.3, -0.3): mixed signs
    assert single_sign_fraction(centred, upstream).tolist() == [0.0, 0.0]


def test_sgd_step_against_a_hand_computed_step():
    """e <- e - lr (e . x) x; with x > 0 both weights move the same way (quadrant I or III)."""
    from trainlab.lab.exp_02_not_zero_centred import sgd_step

    # e = (1, -1), x = (1, 2): e . x = -1, so e + 0.1 * (1, 2) = (1.1, -0.8)
    new = sgd_step([1.0, -1.0], [1.0, 2.0], 0.1)
    assert new == pytest.approx([1.1, -0.8])
    move = [n - o for n, o in zip(new, [1.0, -1.0], strict=True)]
    assert move[0] * move[1] > 0
    # a centred input (1, -2) moves them in opposite directions: e . x = 3 -> (0.7, -0.4)
    assert sgd_step([1.0, -1.0], [1.0, -2.0], 0.1) == pytest.approx([0.7, -0.4])


def test_sgd_run_counts_steps_and_divergence_by_hand():
    from trainlab.lab.exp_02_not_zero_centred import BUDGET, ESCAPE, TOL, sgd_run, tuning_score

    # one input x = 1, lr 0.5: the error halves each step; 0.5^7 = 0.0078 <= 0.01 < 0.5^6
    assert TOL == 0.01
    run = sgd_run([[1.0]], [1.0], [0] * 100, 0.5)
    assert run["steps"] == 7 and not run["diverged"]
    assert run["distance"] == pytest.approx([0.5**k for k in range(8)])
    assert tuning_score(run) == 7.0
    # lr 2.5: the error is multiplied by -1.5 each step, until it leaves ESCAPE times its start
    run = sgd_run([[1.0]], [1.0], [0] * 100, 2.5)
    assert run["steps"] is None and run["diverged"]
    assert len(run["distance"]) - 1 == math.ceil(math.log(ESCAPE) / math.log(1.5))
    assert tuning_score(run) == math.inf
    # lr 0.01 for 10 steps: 0.99^10 of the way left, not converged, not diverged
    run = sgd_run([[1.0]], [1.0], [0] * 10, 0.01)
    assert run["steps"] is None and not run["diverged"]
    assert tuning_score(run) == pytest.approx(BUDGET * 0.99**10 / TOL)


def test_normalised_rate_by_hand():
    from trainlab.lab.exp_02_not_zero_centred import normalised_rate

    # ||x||^2 = 1 and 9: mean 5
    assert normalised_rate([[1.0, 0.0], [0.0, 3.0]]) == pytest.approx(0.2)
