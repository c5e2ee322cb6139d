"""The loss and gradient curves of trainlab.diagnostics and the rules that read them: stalled,
oscillating, exploding_grad, overfitting, explode at initialization.

Each rule is checked on hand-built curves whose answer is computed here independently (a mean,
a ratio, a count of rises), and on planted runs of the engine's own step: a rate far too low
stalls, one too high makes the gradient explode before the loss goes NaN, healthy runs raise
none of them.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from trainlab.data import load_dataset
from trainlab.diagnostics import Diagnostics, DiagnosticsReport, findings
from trainlab.recipe import load_recipe
from trainlab.train import build_run, train_steps

rules = importlib.import_module("trainlab.diagnostics.findings")  # the package exports findings()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


def report_of(loss=(), *, grads=None, evaluations=(), every=1) -> DiagnosticsReport:
    """A report holding only curves: what the curve rules read."""
    loss = np.asarray(loss, dtype=np.float64)
    grads = np.zeros((0, 1)) if grads is None else np.asarray(grads, dtype=np.float64)
    return DiagnosticsReport(
        every=every, window=10, sampled_steps=len(grads),
        window_start=np.zeros(0, dtype=np.int64), window_end=np.zeros(0, dtype=np.int64),
        layers=[], weights=[], input_channel_mean=None, input_channel_std=None,
        input_name=None, activation_kinds={},
        loss_steps=np.arange(len(loss)), loss=loss,
        grad_steps=np.arange(len(grads)) * every, grad_norms=grads,
        evaluations=list(evaluations),
    )  # fmt: skip


def codes(found):
    return {f.code for f in found}


def noise(n, scale, seed=0):
    return scale * np.random.default_rng(seed).standard_normal(n)


# -- recording -----------------------------------------------------------------------------------
def tiny_run(*extra, steps=None, every=5):
    data = load_dataset("synthetic(n=512, size=8)")
    recipe = load_recipe(None, [
        "data.name=synthetic", "train.device=cpu", "model.kind=mlp", "model.widths=[32,32]",
        "model.norm=none", "train.batch_size=32", "augment.train=[]", "diagnostics.every=0",
        *extra,
    ])  # fmt: skip
    return build_run(recipe, data, diagnostics=lambda m: Diagnostics(m, every=every, window=20))


def test_the_loss_curve_holds_every_step_of_the_engine():
    run = tiny_run()
    seen = []
    train_steps(run, 37, on_step=lambda run, loss: seen.append(float(loss)))
    report = run.diag.report()
    assert report.loss_steps.tolist() == list(range(37))
    np.testing.assert_allclose(report.loss, seen, rtol=1e-6)
    # sampled steps 0, 5, ..., 35: one row of per-layer gradient norms each
    assert report.grad_steps.tolist() == list(range(0, 37, 5))
    assert report.grad_norms.shape == (8, len(report.weights))
    assert (report.grad_norms > 0).all()


def test_recording_the_curves_reads_nothing_back_from_the_device(monkeypatch):
    counts = {"n": 0}
    for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            counts["n"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def reads(steps):
        run = tiny_run(every=4)
        counts["n"] = 0
        train_steps(run, steps)
        return counts["n"]

    # 300 steps outgrow the curve's first buffer (256): growing it reads nothing either
    assert reads(8) == reads(300) == 0


def test_until_keeps_what_training_had_reached():
    run = tiny_run(every=5)
    train_steps(run, 60)
    run.diag.record_evaluation(30, val_loss=1.0)
    run.diag.record_evaluation(60, val_loss=0.9)
    report = run.diag.report()
    part = report.until(40)
    assert part.loss_steps.tolist() == list(range(40))
    assert part.grad_steps.tolist() == [0, 5, 10, 15, 20, 25, 30, 35]
    assert part.window_end.tolist() == [16, 36]  # two windows of 20 steps: last samples + 1
    assert all(len(s.mean) == 2 for s in part.layers)
    assert [e["step"] for e in part.evaluations] == [30]


# -- stalled -------------------------------------------------------------------------------------
def test_stalled_compares_the_last_quarter_with_chance():
    chance = math.log(4)
    flat = np.full(200, chance) + noise(200, 0.01)
    found = [f for f in findings(report_of(flat), classes=4) if f.code == "stalled"]
    assert len(found) == 1
    assert found[0].value == pytest.approx(flat[150:].mean() / min(flat[:10].mean(), chance))
    # falling to half of chance: progress
    falling = np.linspace(chance, chance / 2, 200) + noise(200, 0.01)
    assert "stalled" not in codes(findings(report_of(falling), classes=4))


def test_stalled_threshold_is_the_stated_share():
    chance = math.log(10)
    for level, fires in ((rules.STALL_LEVEL + 0.005, True), (rules.STALL_LEVEL - 0.005, False)):
        curve = np.concatenate([np.full(150, chance), np.full(50, level * chance)])
        assert ("stalled" in codes(findings(report_of(curve), classes=10))) is fires


def test_a_rate_far_too_low_stalls_and_a_good_one_does_not():
    slow = tiny_run("optim.lr=0.00001")
    train_steps(slow, 120)
    assert "stalled" in codes(findings(slow.diag.report(), classes=4))
    good = tiny_run("optim.lr=0.05")
    train_steps(good, 120)
    assert "stalled" not in codes(findings(good.diag.report(), classes=4))


# -- oscillating ---------------------------------------------------------------------------------
def test_a_swinging_loss_oscillates_and_a_noisy_falling_one_does_not():
    steps = np.arange(400)
    falling = 2.0 * np.exp(-steps / 150) + 0.3
    swinging = falling + 0.6 * (np.sin(2 * np.pi * steps / 80) > 0)  # up 0.6 every 80 steps
    assert "oscillating" in codes(findings(report_of(swinging + noise(400, 0.1))))
    assert "oscillating" not in codes(findings(report_of(falling + noise(400, 0.1))))


def test_one_rise_and_recovery_is_a_spike_and_two_are_swings():
    # 20 parts of 20 steps falling 2 -> 0.5; a rise of 1.0 lasting 3 parts is one episode (3
    # risen parts, one rise), the same rise twice with a recovery between is two
    means = np.linspace(2.0, 0.5, 20)
    once, twice = means.copy(), means.copy()
    once[8:11] += 1.0
    twice[5:7] += 1.0
    twice[12:14] += 1.0
    step_noise = np.tile([0.05, -0.05], 200)
    for curve, swings in ((once, 1), (twice, 2)):
        report = report_of(np.repeat(curve, 20) + step_noise)
        risen, _ = rules._training_swings(report)
        assert len(risen) >= rules.OSC_COUNT and rules._separate_rises(risen) == swings
    assert "oscillating" not in codes(findings(report_of(np.repeat(once, 20) + step_noise)))
    assert "oscillating" in codes(findings(report_of(np.repeat(twice, 20) + step_noise)))
    assert rules._separate_rises([2, 3, 4, 9, 15, 16]) == 3 and rules._separate_rises([]) == 0


def test_training_swings_are_counted_against_the_noise_of_single_steps():
    # 20 parts of 10 steps; part 5 rises 0.8 above the lowest earlier part (part 4); steps
    # alternate +-0.2 around each part's mean, so the noise estimate is 1.4826 * 0.4 / sqrt 2
    means = np.r_[np.linspace(2.0, 1.0, 5), 1.8, np.full(14, 0.9)]
    curve = np.repeat(means, 10) + np.tile([0.2, -0.2], 100)
    risen, first = rules._training_swings(report_of(curve))
    noise_sd = 1.4826 * 0.4 / math.sqrt(2)  # |successive difference| is 0.4 everywhere
    assert 0.8 > rules.OSC_Z * noise_sd * math.sqrt(2 / 10) > 0.5
    assert risen == [5] and first == 50


def test_validation_peaks_are_jumps_over_both_neighbours():
    evals = [{"step": 10 * i, "val_loss": v} for i, v in enumerate([1.0, 2.0, 1.1, 1.0, 3.5, 1.2])]
    assert rules._validation_peaks(report_of(evaluations=evals)) == [10, 40]
    assert "oscillating" in codes(findings(report_of(np.linspace(2, 1, 100), evaluations=evals)))
    calm = [{"step": 10 * i, "val_loss": v} for i, v in enumerate([1.0, 1.4, 1.1, 1.0, 1.3, 1.2])]
    assert "oscillating" not in codes(findings(report_of(np.linspace(2, 1, 100), evaluations=calm)))


# -- exploding gradients -----------------------------------------------------------------------
def test_exploding_gradient_needs_growth_that_lasts_and_a_climbing_loss():
    n = 40
    growth = np.exp(np.linspace(0, np.log(1e4), n))[:, None]  # 10^4 over the run
    climbing = np.linspace(1.0, 3.0, 200)
    found = [f for f in findings(report_of(climbing, grads=growth, every=5))
             if f.code == "exploding_grad"]  # fmt: skip
    assert len(found) == 1
    # the running median of 3 first stands 100x above the start one step after the raw norm
    first_raw = int(np.flatnonzero(growth[:, 0] >= 100)[0])
    assert found[0].since_step == 5 * (first_raw + 1)
    # the same gradients while the loss falls: a network growing out of a tiny start
    falling = np.linspace(2.0, 0.5, 200)
    assert "exploding_grad" not in codes(findings(report_of(falling, grads=growth, every=5)))
    # a spike that passes is not growth without bound
    spike = np.ones((n, 1))
    spike[20:23] = 1e4
    assert "exploding_grad" not in codes(findings(report_of(climbing, grads=spike, every=5)))


def test_a_rate_too_high_explodes_the_gradient_before_the_loss_is_nan():
    run = tiny_run("model.widths=[128,128,128]", "optim.lr=0.8", every=1)  # 0.5 kills the units
    train_steps(run, 40)
    report = run.diag.report()
    found = {f.code: f for f in findings(report, classes=4)}
    assert "exploding_grad" in found
    bad = np.flatnonzero(~np.isfinite(report.loss))
    assert len(bad) and found["exploding_grad"].since_step < report.loss_steps[bad[0]]


# -- over-fitting ------------------------------------------------------------------------------
def evaluations(val, every=30):
    return [{"step": every * (i + 1), "val_loss": v} for i, v in enumerate(val)]


def test_overfitting_on_the_smoothed_validation_loss():
    train = np.linspace(2.0, 0.05, 300)
    val = [1.0, 0.7, 0.6, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95, 1.0]
    found = [f for f in findings(report_of(train, evaluations=evaluations(val)))
             if f.code == "overfitting"]  # fmt: skip
    smooth = np.convolve(val, np.ones(3) / 3, mode="valid")
    assert len(found) == 1
    assert found[0].value == pytest.approx(smooth[-1] / smooth.min() - 1)
    assert found[0].since_step == 30 * (int(np.argmin(smooth)) + 3)


def test_overfitting_judges_the_last_third_of_a_noisy_validation_loss():
    # 15 evaluations that swing +-0.12 about a rise from 0.7 to 1.0: the last three alone are
    # within the noise of the lowest (z < 3 by the old rule), the mean of the last five is not
    val = np.array([0.85, 0.72, 0.70, 0.68, 0.80, 0.66, 0.90, 0.75, 1.02, 0.80,
                    1.10, 0.86, 1.05, 0.84, 0.98])  # fmt: skip
    train = np.linspace(1.0, 0.02, 450)
    (found,) = [f for f in findings(report_of(train, evaluations=evaluations(val)))
                if f.code == "overfitting"]  # fmt: skip
    smooth = np.convolve(val, np.ones(3) / 3, mode="valid")
    tail = val[-5:]  # a third of 15
    noise = 1.4826 * np.median(np.abs(np.diff(val))) / math.sqrt(2)
    assert (tail.mean() - smooth.min()) / (noise * math.sqrt(1 / 5 + 1 / 3)) > rules.OVERFIT_Z
    assert (smooth[-1] - smooth.min()) / (noise * math.sqrt(2 / 3)) < 3.0
    assert found.value == pytest.approx(tail.mean() / smooth.min() - 1)


def test_a_run_that_learns_nothing_does_not_overfit():
    # the validation loss jumps while the training loss sits at chance (falls 1%): no fit to over
    val = [2.6, 2.5, 2.5, 2.49, 2.5, 2.5, 4.4, 2.6, 8.9, 4.0]
    flat = np.linspace(2.31, 2.29, 300)
    assert "overfitting" not in codes(findings(report_of(flat, evaluations=evaluations(val))))
    learning = np.linspace(2.31, 1.2, 300)
    assert "overfitting" in codes(findings(report_of(learning, evaluations=evaluations(val))))


@pytest.mark.parametrize(
    "val, train",
    [
        ([1.0, 0.7, 0.6, 0.8, 0.55, 0.75, 0.6, 0.7, 0.58, 0.72], "falling"),  # noise, no trend
        ([1.0, 0.7, 0.6, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95, 1.0], "rising"),  # everything worse
    ],
)
def test_no_overfitting_without_a_trend_or_with_a_rising_training_loss(val, train):
    curve = np.linspace(2.0, 0.05, 300) if train == "falling" else np.linspace(0.5, 2.0, 300)
    assert "overfitting" not in codes(findings(report_of(curve, evaluations=evaluations(val))))


# -- the first step ----------------------------------------------------------------------------
def test_a_first_loss_far_above_chance_is_an_explosion():
    chance = math.log(10)
    big = np.r_[rules.EXPLODE_INIT_LOSS * chance * 1.01, np.full(50, 2.0)]
    fine = np.r_[2 * chance, np.full(50, 2.0)]
    assert "explode" in codes(findings(report_of(big), classes=10))
    assert "explode" not in codes(findings(report_of(fine), classes=10))


# -- advice that knows the recipe ----------------------------------------------------------------
def test_advice_never_repeats_what_the_recipe_does():
    collapsed = np.r_[np.full(100, math.log(4))]
    report = report_of(collapsed)
    recipe = load_recipe(None, ["optim.lr=0.0001", "model.norm=batch", "init.scheme=kaiming"])
    (stalled,) = [f for f in findings(report, recipe=recipe, classes=4) if f.code == "stalled"]
    assert "--set optim.lr=0.05" in stalled.advice  # the reference rate for SGD at batch 128
    assert "model.norm" not in stalled.advice and "init.scheme" not in stalled.advice
    assert "no experiment backs it" in stalled.advice or "preprocessing" in stalled.advice
