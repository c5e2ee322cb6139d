"""trainlab.diagnostics: statistics against numpy, planted faults, healthy nets, reports.

Statistics are checked against numpy float64 on the very activations the model produced
(captured by an independent forward hook). Each planted fault must raise its own finding; the
healthy nets must raise none.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diagnostics_support import optimizer_step, watched_steps
from torch import nn

from trainlab.activations import make_activation
from trainlab.diagnostics import (
    Diagnostics,
    activation_spec,
    diagnostics_markdown,
    findings,
    write_diagnostics,
)
from trainlab.train import run_diagnostics

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


# -- helpers -------------------------------------------------------------------------------------
def mlp(act, depth=4, width=64, n_in=20, std=None, dead_bias=None, init="kaiming"):
    """Linear -> act stacks. ``std``: weight std (and zero biases); else Kaiming/Xavier."""
    g = torch.Generator().manual_seed(0)
    layers: list[nn.Module] = []
    n = n_in
    for i in range(depth):
        lin = nn.Linear(n, width)
        s = std if std is not None else math.sqrt((2.0 if init == "kaiming" else 1.0) / n)
        with torch.no_grad():
            lin.weight.normal_(0, s, generator=g)
            lin.bias.zero_()
            if dead_bias is not None and i == 1:
                lin.bias.fill_(dead_bias)
        layers += [lin, act()]
        n = width
    head = nn.Linear(n, 5)
    with torch.no_grad():
        head.weight.normal_(0, math.sqrt(1.0 / n), generator=g)
        head.bias.zero_()
    return nn.Sequential(*layers, head)


def train(model, *, lr=0.05, offset=0.0, steps=40, every=2, window=20, adam=False, n_in=20):
    g = torch.Generator().manual_seed(1)
    x_all = torch.randn(1024, n_in, generator=g)
    y_all = x_all[:, :5].argmax(1)
    report, _ = watched_steps(model, x_all, y_all, g, steps=steps, lr=lr, every=every,
                              window=window, adam=adam, offset=offset)  # fmt: skip
    return report, findings(report)


def codes(found):
    return {f.code for f in found}


# -- statistics against numpy --------------------------------------------------------------------
class Capture:
    """An independent record of what a module output at each forward call."""

    def __init__(self, module):
        self.outputs: list[np.ndarray] = []
        self.inputs: list[np.ndarray] = []
        module.register_forward_hook(self._hook)

    def _hook(self, _m, inputs, output):
        self.inputs.append(inputs[0].detach().double().numpy().copy())
        self.outputs.append(output.detach().double().numpy().copy())


def _per_unit(a: np.ndarray) -> np.ndarray:
    """(B, C, ...) -> (C, samples)."""
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
def test_layer_statistics_match_numpy(act):
    g = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(2, 6, 3, padding=1)
    activation = make_activation(act)
    model = nn.Sequential(conv, activation, nn.Flatten(), nn.Linear(6 * 5 * 5, 3))
    with torch.no_grad():
        conv.weight.normal_(0, 1.5, generator=g)  # wide spread: some saturation, some zeros
        conv.bias.normal_(0, 1.0, generator=g)
    cap = Capture(activation)
    cap_conv = Capture(conv)
    diag = Diagnostics(model, every=2, window=1000, bins=20)
    batches = [torch.randn(7, 2, 5, 5, generator=g) for _ in range(5)]
    with torch.no_grad():
        for step, x in enumerate(batches):
            diag.begin_step(step)
            model(x)
    report = diag.report()
    sampled = [0, 2, 4]
    y = np.concatenate([_per_unit(cap.outputs[i]) for i in sampled], axis=1)  # (C, samples)
    s = report.layer("1")
    assert report.sampled_steps == 3 and s.units == 6 and len(s.mean) == 1
    np.testing.assert_allclose(s.mean[0], y.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.std[0], y.std(), rtol=1e-4)
    np.testing.assert_allclose(s.zero_fraction[0], (y == 0).mean(), atol=1e-12)
    np.testing.assert_allclose(s.unit_mean[0], y.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.unit_max[0], y.max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(s.max[0], y.max(), rtol=1e-6)
    # Histogram: fixed bins over the layer's range, outside values in the edge bins.
    lo, hi = s.hist_range
    ref, _ = np.histogram(np.clip(y.ravel(), lo, hi - 1e-9), bins=20, range=(lo, hi))
    np.testing.assert_array_equal(s.hist[0], ref)
    # Within-batch (signal) std: mean over batches and units of the per-batch unit variance.
    var = [_per_unit(cap.outputs[i]).var(axis=1).mean() for i in sampled]
    np.testing.assert_allclose(s.signal_std[0], math.sqrt(np.mean(var)), rtol=1e-4)
    # The conv's own output (pre-activation) is watched too.
    pre = np.concatenate([_per_unit(cap_conv.outputs[i]) for i in sampled], axis=1)
    np.testing.assert_allclose(report.layer("0").mean[0], pre.mean(), rtol=1e-5, atol=1e-6)
    if act == "relu":
        np.testing.assert_allclose(s.dead_fraction[0], (y.max(axis=1) <= 0).mean())
        assert math.isnan(s.saturated_fraction[0])  # ReLU's flat half is its dead rule
    else:
        # Saturated where |f'(x)| < 0.02 max|f'|, decided here from the float64 input.
        x = np.concatenate([_per_unit(cap.inputs[i]) for i in sampled], axis=1)
        if act == "tanh":
            slope = 1 - np.tanh(x) ** 2
            peak = 1.0
        else:
            sig = 1 / (1 + np.exp(-x))
            slope, peak = sig * (1 - sig), 0.25
        frac = (slope < 0.02 * peak).mean(axis=1)
        np.testing.assert_allclose(s.unit_saturation[0], frac, atol=1e-12)
        np.testing.assert_allclose(s.saturated_fraction[0], (frac > 0.5).mean())
        assert math.isnan(s.dead_fraction[0])


def test_windows_split_the_time_series():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    cap = Capture(model[1])
    diag = Diagnostics(model, every=3, window=6)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for step in range(13):
            diag.begin_step(step)
            model(torch.randn(5, 4, generator=g))
    report = diag.report()
    # Sampled steps 0, 3, 6, 9, 12 -> windows [0, 6), [6, 12), [12, 18).
    assert report.sampled_steps == 5
    assert report.window_start.tolist() == [0, 6, 12]
    assert report.window_end.tolist() == [4, 10, 13]
    means = [np.concatenate([cap.outputs[i] for i in w]).mean() for w in ([0, 3], [6, 9], [12])]
    np.testing.assert_allclose(report.layer("1").mean, means, rtol=1e-5, atol=1e-7)


def test_gradient_norms_and_update_ratio_measured_from_adam_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():  # the first layer below sqrt(rows) (1.6 < 2.8), the last above (5 > 1.7)
        model[2].weight.mul_(5.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    diag = Diagnostics(model, every=2, window=100)
    g = torch.Generator().manual_seed(2)
    grads, ratios = [], []
    for step in range(6):
        diag.begin_step(step)
        x = torch.randn(16, 6, generator=g)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        diag.after_backward()
        diag.before_optimizer_step()
        w0 = [model[0].weight.detach().double().clone(), model[2].weight.detach().double().clone()]
        g0 = [model[0].weight.grad.double().norm(), model[2].weight.grad.double().norm()]
        opt.step()
        diag.after_optimizer_step()
        w1 = [model[0].weight.detach().double(), model[2].weight.detach().double()]
        if step % 2 == 0:
            grads.append([float(v) for v in g0])
            # judged against the larger of ||W|| and sqrt(rows), a gain-1 draw's norm
            ratios.append([
                float((b - a).norm() / max(float(a.norm()), math.sqrt(a.shape[0])))
                for a, b in zip(w0, w1, strict=True)
            ])  # fmt: skip
    report = diag.report()
    np.testing.assert_allclose(
        [w.grad_norm[0] for w in report.weights], np.mean(grads, 0), rtol=1e-5
    )
    np.testing.assert_allclose(
        [w.update_ratio[0] for w in report.weights], np.mean(ratios, 0), rtol=1e-4
    )
    np.testing.assert_allclose(
        [w.update_ratio_max[0] for w in report.weights], np.max(ratios, 0), rtol=1e-4
    )
    # Adam's update is ~lr per element whatever the gradient: lr * |g| / |W| would be wrong.
    naive = 0.01 * np.mean(grads, 0)[0] / float(model[0].weight.detach().norm())
    assert abs(report.weights[0].update_ratio[0] - naive) > 0.2 * naive


def test_unsampled_steps_touch_nothing():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    diag = Diagnostics(model, every=5)
    for step in range(1, 5):
        diag.begin_step(step)
        model(torch.randn(2, 4))
    assert not diag.sampling
    assert all(not p.acc and not p.history for p in diag.probes)
    report = diag.report()
    assert report.sampled_steps == 0 and report.layers == []
    assert findings(report) == []


def test_first_non_finite_layer_and_step():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    diag = Diagnostics(model, every=1, window=4)
    for step in range(6):
        diag.begin_step(step)
        if step == 3:
            with torch.no_grad():
                model[2].weight[0, 0] = float("nan")
        loss = model(torch.randn(8, 4)).sum()
        optimizer_step(diag, opt, loss)
    report = diag.report()
    assert report.layer("2").first_nonfinite_step == 3
    # The NaN gradient reaches layer 0's weights through the step, so it follows one step later.
    assert report.layer("0").first_nonfinite_step == 4
    found = findings(report)
    assert found[0].code == "non_finite" and found[0].severity == "error"
    assert found[0].layers == ["2"] and found[0].since_step == 3


# -- planted faults ------------------------------------------------------------------------------
def test_dead_relu_layer_is_named():
    report, found = train(mlp(nn.ReLU, dead_bias=-10.0))
    dead = [f for f in found if f.code == "dead_units"]
    assert dead and dead[0].layers == ["3"]  # the ReLU after the Linear with bias -10
    assert dead[0].value == 1.0 and dead[0].since_step == 0
    assert "Leaky ReLU" in dead[0].advice and "100% of units dead since step 0" in dead[0].message


def test_saturated_tanh_net():
    _, found = train(mlp(nn.Tanh, std=1.0))
    sat = [f for f in found if f.code == "saturated"]
    assert sat and set(sat[0].layers) == {"1", "3", "5", "7"}
    assert "Xavier" in sat[0].advice


def test_offset_input_is_not_zero_centred():
    _, found = train(mlp(nn.ReLU), offset=5.0)
    f = next(f for f in found if f.code == "input_not_centred")
    assert f.layers == ["0"] and 4.0 < f.value < 6.0  # mean 5 over std 1
    assert "standardization" in f.advice


def test_deep_small_init_collapses():
    _, found = train(mlp(nn.ReLU, depth=20, std=0.01), steps=10)
    f = next(f for f in found if f.code == "collapse")
    assert f.layers == ["1", "39"] and f.value < 1e-3 and f.since_step == 0
    assert "Kaiming" in f.advice and "1.41" in f.advice  # gain sqrt(2) for ReLU
    assert "vanishing_grad" in codes(found)


def test_learning_rate_100_explodes_updates():
    _, found = train(mlp(nn.ReLU), lr=100.0, steps=10)
    assert "large_updates" in codes(found)
    assert found[0].code == "non_finite"  # errors first


def test_sigmoid_outputs_not_zero_centred():
    _, found = train(mlp(nn.Sigmoid, init="xavier", depth=2), steps=10)
    assert "not_zero_centred" in codes(found)


# -- healthy nets --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "act,init,adam",
    [(nn.ReLU, "kaiming", False), (nn.Tanh, "xavier", False), (nn.LeakyReLU, "kaiming", True)],
)
def test_healthy_nets_raise_no_finding(act, init, adam):
    _, found = train(mlp(act, init=init), lr=1e-3 if adam else 0.05, adam=adam)
    assert found == [], [f.sentence() for f in found]


def test_healthy_cnn_with_batch_norm():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    g = torch.Generator().manual_seed(0)
    x_all = torch.randn(256, 1, 8, 8, generator=g)
    y_all = (x_all.mean((1, 2, 3)) > 0).long() + 2 * (x_all[:, :, :4].mean((1, 2, 3)) > 0).long()
    report, _ = watched_steps(model, x_all, y_all, g, steps=20, lr=0.05, every=2, window=10,
                              batch=32)  # fmt: skip
    assert findings(report) == []
    # In place: the conv's hook read the pre-activations before ReLU overwrote them.
    below = slice(0, report.layer("0").hist.shape[1] // 2)  # bins of [-4, 0)
    assert report.layer("0").hist[-1, below].sum() > 0
    assert report.layer("2").hist[-1, below].sum() == 0
    assert report.activation_kinds == {"relu": 2}
    assert any("In-place" in n for n in report.notes)


# -- what is and is not seen ---------------------------------------------------------------------
class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.b(F.relu(self.a(x)))


def test_functional_activations_are_reported_as_unseen():
    model = Functional()
    diag = Diagnostics(model, every=1)
    diag.begin_step(0)
    model(torch.randn(3, 4))
    report = diag.report()
    assert report.activation_kinds == {}
    assert {s.role for s in report.layers} == {"layer"}
    assert any("not seen" in n for n in report.notes)
    assert any("No activation modules" in n for n in report.notes)


def test_torch_activation_modules_map_to_trainlab_specs():
    assert activation_spec(nn.LeakyReLU(0.2)) == "leaky_relu(0.2)"
    assert activation_spec(nn.ELU(0.5)) == "elu(0.5)"
    assert activation_spec(nn.Tanh()) == "tanh"
    assert activation_spec(make_activation("leaky_relu(0.1)")) == "leaky_relu(0.1)"
    assert activation_spec(nn.Linear(2, 2)) is None


def test_gelu_saturation_is_decided_from_its_input():
    # GELU is not monotone, so its output alone cannot say; the hook uses the input.
    act = nn.GELU()
    model = nn.Sequential(nn.Identity(), act)
    diag = Diagnostics(model, every=1)
    diag.begin_step(0)
    x = torch.cat([torch.full((10, 1), -8.0), torch.full((10, 1), 1.0)], 1)  # unit 0 deep left
    model(x)
    s = diag.report().layer("1")
    np.testing.assert_allclose(s.unit_saturation[0], [1.0, 0.0])


def test_bad_arguments_are_named():
    model = nn.Linear(2, 2)
    for kwargs, word in (
        ({"every": 0}, "every"),
        ({"window": -1}, "window"),
        ({"sat_eps": 2.0}, "sat_eps"),
        ({"bins": 1}, "bins"),
    ):
        with pytest.raises(ValueError, match=word):
            Diagnostics(model, **kwargs)


# -- reports -------------------------------------------------------------------------------------
def test_write_diagnostics_files(tmp_path):
    report, found = train(mlp(nn.ReLU, dead_bias=-10.0), steps=20)
    html = write_diagnostics(tmp_path, report, found)
    assert html == tmp_path / "diagnostics.html"
    text = html.read_text()
    assert text.count("data:image/png;base64,") == 5 and "dead_units" in text
    saved = json.loads((tmp_path / "findings.json").read_text())
    assert [f["code"] for f in saved] == [f.code for f in found]
    full = json.loads((tmp_path / "diagnostics.json").read_text())
    assert [layer["name"] for layer in full["layers"]] == [s.name for s in report.layers]
    for name in ("histograms", "colourful", "dead_saturated", "gradients", "depth"):
        assert (tmp_path / "figures" / f"diag_{name}.png").read_bytes()[:4] == b"\x89PNG"
    md = diagnostics_markdown(report, found)
    assert "## Diagnostics" in md and found[0].message in md
    assert "functions inside forward" in md


def test_run_diagnostics_on_a_recipe(tmp_path):
    from trainlab.recipe import load_recipe

    recipe = load_recipe(
        None,
        [
            "data.name=synthetic(n=256, classes=4, channels=1, size=8)",
            "model.widths=[8, 16]",
            "train.batch_size=32",
            "train.device=cpu",
            "optim.lr=100.0",
            "model.norm=none",
        ],
    )
    result = run_diagnostics(recipe, tmp_path, steps=12, every=2, window=4)
    assert result.steps == 12 and result.report.sampled_steps == 6
    assert (tmp_path / "diagnostics.html").exists()
    assert "large_updates" in codes(result.findings) or "non_finite" in codes(result.findings)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sampled_training_never_syncs_between_reports():
    device = torch.device("cuda")
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(8 * 16, 4),
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    diag = Diagnostics(model, every=2, window=4)
    x = torch.randn(16, 3, 4, 4, device=device)
    y = torch.randint(0, 4, (16,), device=device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(10):
            diag.begin_step(step)
            optimizer_step(diag, opt, F.cross_entropy(model(x), y))  # zero_grad: set to None
    finally:
        torch.cuda.set_sync_debug_mode("default")
    report = diag.report()
    assert report.sampled_steps == 5


def test_histogram_reads_the_first_whole_samples(monkeypatch):
    import trainlab.diagnostics.collect as collect

    monkeypatch.setattr(collect, "HIST_SAMPLE", 300)  # 2 samples of 150 values
    act = nn.Tanh()
    model = nn.Sequential(nn.Identity(), act)
    cap = Capture(act)
    diag = Diagnostics(model, every=1, bins=10)
    diag.begin_step(0)
    model(torch.randn(9, 6, 5, 5, generator=torch.Generator().manual_seed(0)))
    s = diag.report().layer("1")
    ref, _ = np.histogram(np.clip(cap.outputs[0][:2].ravel(), -1, 1 - 1e-9), bins=10, range=(-1, 1))
    np.testing.assert_array_equal(s.hist[0], ref)
    np.testing.assert_allclose(s.mean[0], cap.outputs[0].mean(), rtol=1e-5, atol=1e-7)  # all 9


def test_snapshot_closes_the_window():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    diag = Diagnostics(model, every=1, window=100)
    with torch.no_grad():
        for step in range(5):
            diag.begin_step(step)
            model(torch.randn(2, 4))
            if step == 1:
                diag.snapshot(step)
    report = diag.report()
    assert report.window_start.tolist() == [0, 2] and report.window_end.tolist() == [2, 5]
    assert report.layer("1").hist.sum(axis=1).tolist() == [2 * 2 * 3, 3 * 2 * 3]
