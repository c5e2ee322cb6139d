"""Lab experiments 1 (activations) and 2 (not-zero-centred): the timing's comparisons on
constructed timings, the sign identities that are not evidence, and the per-sample SGD through
the engine's step against the hand-written update it must equal."""

import math

import pytest
import torch

from trainlab.lab import exp_01_activations as exp01
from trainlab.lab import exp_02_not_zero_centred as exp02


def _samples(ratio_fwd, ratio_bwd, rounds=6):
    """Made-up timings: ReLU's time changes between rounds (the load), the others' ratios not;
    two tensor sizes whose ratios differ (the median of the two counts)."""
    relu = [1e-3 * (1 + k % 3) for k in range(rounds)]
    samples = {"relu": {p: {1: relu, 2: relu} for p in exp01.PASSES}}
    for spec in exp01.TIMED:
        if spec == "relu":
            continue
        samples[spec] = {
            "forward": {1: [t * ratio_fwd for t in relu], 2: [t * ratio_fwd * 3 for t in relu]},
            "backward": {1: [t * ratio_bwd for t in relu], 2: [t * ratio_bwd for t in relu]},
        }
    return samples


def test_the_primary_takes_the_cheapest_forward_ratio_per_round():
    samples = _samples(ratio_fwd=2.0, ratio_bwd=1.03)
    samples["sigmoid"]["forward"] = {
        n: [t * 1.05 for t in v] for n, v in samples["relu"]["forward"].items()
    }
    # median of sizes (2, 6) = 4 for the others; sigmoid 1.05 everywhere is the cheapest
    assert exp01.round_ratios(samples, "tanh", "forward") == pytest.approx([4.0] * 6)
    primary = exp01.primary_of(samples, list(range(6)))
    assert primary.difference == pytest.approx(math.log(1.05)) and primary.scale == "log"
    assert primary.verdict == "did not hold"  # 5% dearer: below the 10% the claim counts
    dearer = exp01.primary_of(_samples(2.0, 1.0), list(range(6)))
    assert dearer.difference == pytest.approx(math.log(4.0)) and dearer.verdict == "held"


def test_activations_timing_rounds_shape_and_thread_count(monkeypatch):
    before = torch.get_num_threads()
    samples = exp01.timing_rounds((64, 128), rounds=2, repeats=1, seed=0)
    assert set(samples) == set(exp01.TIMED)
    assert all(len(samples[s][p][n]) == 2 for s in samples for p in exp01.PASSES for n in (64, 128))
    assert all(
        t > 0 for s in samples for p in exp01.PASSES for n in (64, 128) for t in samples[s][p][n]
    )
    assert torch.get_num_threads() == before


def test_single_sign_fraction_against_hand_cases():
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, -2.0, 3.0]], dtype=torch.float64)
    upstream = torch.tensor([[0.5, -1.0], [0.5, 0.0]], dtype=torch.float64)
    # sample 0: rows (+,+,+) and (-,-,-): both single-sign; sample 1: (+,-,+) and zeros: neither
    assert exp02.single_sign_fraction(x, upstream).tolist() == [1.0, 0.0]
    positive = torch.tensor([[0.2, 0.7, 0.9], [0.5, 0.1, 0.3]], dtype=torch.float64)
    up = torch.tensor([[-0.3, 1.2, 0.4, -2.0], [0.1, -0.1, 3.0, -0.5]], dtype=torch.float64)
    assert exp02.single_sign_fraction(positive, up).tolist() == [1.0, 1.0]
    assert exp02.single_sign_fraction(positive - positive.mean(0), up).tolist() == [0.0, 0.0]


def test_sgd_step_against_a_hand_computed_step():
    """e <- e - lr (e . x) x; with x > 0 both weights move the same way (quadrant I or III)."""
    new = exp02.sgd_step([1.0, -1.0], [1.0, 2.0], 0.1)  # e . x = -1: e + 0.1 (1, 2)
    assert new == pytest.approx([1.1, -0.8])
    assert exp02.sgd_step([1.0, -1.0], [1.0, -2.0], 0.1) == pytest.approx([0.7, -0.4])


def test_the_engines_step_is_the_lms_update():
    """sgd_run trains through the engine's step; its path equals the hand-written update."""
    p = exp02.problem(3, inputs=4, samples=16)
    run = exp02.sgd_run(p, "positive", 0.3, budget=10, every=1)
    # replay by hand: the same order (the loop's first epoch permutation from the seed's gen)
    from trainlab.lab.loop import epoch_batches
    from trainlab.lab.nets import generator

    order = torch.cat(epoch_batches(16, 1, generator(3, "not-zero-centred", "order"))).tolist()
    e = (p["w0"] - p["w_star"]).tolist()
    start = math.sqrt(sum(v * v for v in e))
    distances = [1.0]
    for i in order[:10]:
        e = exp02.sgd_step(e, p["x"]["positive"][i].tolist(), 0.3)
        distances.append(math.sqrt(sum(v * v for v in e)) / start)
    assert run["distance"] == pytest.approx(distances, rel=1e-5)  # float32 loss, float64 weights


def test_sgd_run_counts_steps_and_divergence():
    p = {
        "x": {"positive": torch.ones(4, 1, dtype=torch.float64)},
        "seed": 0,
        "w_star": torch.zeros(1, dtype=torch.float64),
        "w0": torch.ones(1, dtype=torch.float64),
    }
    # x = 1, lr 0.5: the error halves each step; 0.5^7 = 0.0078 <= 0.01 < 0.5^6
    run = exp02.sgd_run(p, "positive", 0.5, budget=100, every=1)
    assert run["steps"] == 7 and not run["diverged"]
    assert exp02.tuning_score(run, 100) == 7.0
    # lr 2.5: the error is multiplied by -1.5 each step, until it leaves ESCAPE times its start
    run = exp02.sgd_run(p, "positive", 2.5, budget=100, every=1)
    assert run["steps"] is None and run["diverged"]
    assert len(run["distance"]) - 1 == math.ceil(math.log(exp02.ESCAPE) / math.log(1.5))
    assert exp02.tuning_score(run, 100) == math.inf
    # lr 0.01 for 10 steps: 0.99^10 of the way left, not converged, not diverged
    run = exp02.sgd_run(p, "positive", 0.01, budget=10, every=1)
    assert run["steps"] is None and not run["diverged"]
    assert run["final_distance"] == pytest.approx(0.99**10)
    assert exp02.tuning_score(run, 10) == pytest.approx(10 * 0.99**10 / exp02.TOL)
