"""Lab experiments 5 (init-statistics) and 6 (zero-init): their measuring functions against
independent references (float64 formulas, hand-computed cases), and the identity that moved out
of zero-init's evidence (symmetric units stay identical)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from trainlab.lab import evidence
from trainlab.lab import exp_05_init_statistics as exp05
from trainlab.lab import exp_06_zero_init as exp06
from trainlab.lab.loop import sgd, train
from trainlab.lab.nets import generator, initialized_mlp


@pytest.fixture
def one_thread():
    from trainlab.lab.loop import intra_op_threads

    with intra_op_threads(1):
        yield


# --- init-statistics: measuring functions -------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "activation", "std"),
    [
        ("normal(0.01)", "tanh", 0.01),
        ("normal(0.05)", "tanh", 0.05),
        ("xavier", "tanh", 1 / 16),
        ("xavier", "relu", 1 / 16),
        ("kaiming", "relu", math.sqrt(2) / 16),
    ],
)
def test_weight_variance_is_what_the_init_scheme_draws(scheme, activation, std):
    assert exp05.weight_variance(scheme, activation, 256) == pytest.approx(std**2)
    net = initialized_mlp([256, 256], activation, scheme, torch.Generator().manual_seed(0))
    drawn = float(net[0].weight.detach().double().std())
    assert drawn == pytest.approx(std, rel=0.01)  # 65,536 draws: std error 0.3%


def test_small_signal_prediction_hand_computed():
    # (4096 * 1e-4)^(L/2) with L = 2: 0.4096, log10 = -0.38764...
    assert exp05.small_signal_log10_ratio(4096, 1e-4, 1.0, 2) == pytest.approx(math.log10(0.4096))
    # ReLU Xavier: (n / n * 1/2)^(5/2) = 2^-2.5
    assert exp05.small_signal_log10_ratio(512, 1 / 512, 0.5, 5) == pytest.approx(
        -2.5 * 0.30103, abs=1e-5
    )
    assert exp05.small_signal_log10_ratio(512, 2 / 512, 0.5, 5) == 0.0


def _tanh_m2_trapezoid(q: float) -> float:
    """E[tanh(z)^2], z ~ N(0, q), by a float64 trapezoid rule on a fine grid (independent of the
    Gauss-Legendre panels the experiment uses)."""
    s = math.sqrt(q)
    z = np.linspace(-12.0, 12.0, 400_001)
    f = np.tanh(s * z) ** 2 * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return float(np.trapezoid(f, z))


@pytest.mark.parametrize("q", [1e-3, 0.1, 1.0, 10.24])
def test_tanh_second_moment_against_trapezoid(q):
    assert exp05.tanh_second_moment(q) == pytest.approx(_tanh_m2_trapezoid(q), rel=1e-9)


def test_tanh_second_moment_small_signal_series():
    # tanh z = z - z^3/3 + ...: E[tanh^2] = q - 2 q^2 + O(q^3) (E z^4 = 3 q^2)
    q = 1e-4
    assert exp05.tanh_second_moment(q) == pytest.approx(q - 2 * q * q, rel=1e-6)


def test_mean_field_recursion_hand_unrolled():
    q1, n_sigma2 = 0.5, 1.3
    m1 = _tanh_m2_trapezoid(q1)
    m2 = _tanh_m2_trapezoid(n_sigma2 * m1)
    m3 = _tanh_m2_trapezoid(n_sigma2 * m2)
    expected = [math.sqrt(m) for m in (m1, m2, m3)]
    assert exp05.mean_field_tanh_stds(q1, n_sigma2, 3) == pytest.approx(expected, rel=1e-8)


def test_saturated_fraction_hand_case():
    y = torch.tensor([[0.995, -0.999, 0.5, -0.98], [1.0, 0.0, -0.991, 0.99]])
    assert exp05.saturated_fraction(y) == pytest.approx(4 / 8)  # 0.99 itself is not above


def test_layer_statistics_relu_settings_differ_by_the_scale_alone(one_thread):
    """Common random numbers: ReLU Kaiming's matrices are ReLU Xavier's times sqrt(2), and ReLU
    is positively homogeneous, so layer l's activations differ by exactly 2^(l/2)."""
    stats, post = exp05.layer_statistics(64, 32, seed=0)
    xavier, kaiming = stats["relu, Xavier"]["std"], stats["relu, Kaiming"]["std"]
    for layer, (a, b) in enumerate(zip(xavier, kaiming, strict=True), start=1):
        assert b / a == pytest.approx(2 ** (layer / 2), rel=1e-4)
    assert len(post["tanh, Xavier"]) == exp05.LAYERS
    # a float64 forward of the first layer agrees with the statistics recorded
    x = torch.randn(32, 64, generator=generator(0, "init-statistics", "input")).double()
    g = torch.randn(64, 64, generator=generator(0, "init-statistics", "weights")).double()
    z = 0.01 * x @ g.T
    assert stats["tanh, N(0, 0.01^2)"]["pre_std"][0] == pytest.approx(float(z.std()), rel=1e-5)
    assert stats["tanh, N(0, 0.01^2)"]["std"][0] == pytest.approx(
        float(torch.tanh(z).std()), rel=1e-5
    )


def test_agreement_comparison_reads_a_small_deviation_as_held():
    # measured log ratio within the tolerance of the prediction on every seed: held
    seeds = list(range(6))
    measured = [-1.02, -1.03, -1.025, -1.01, -1.03, -1.02]
    c = evidence.compare("x", "log10", ("m", "p"), measured, [-0.97] * 6, seeds, exp05.TOLERANCE, 0)
    assert c.verdict == "held"
    c = evidence.compare(
        "x", "log10", ("m", "p"), [-0.33] * 5 + [-0.331], [0.0] * 6, seeds, exp05.TOLERANCE, 0
    )
    assert c.verdict == "did not hold"


# --- zero-init: the identities that moved out of the evidence ---------------------------------


def test_unit_spread_is_zero_only_for_identical_rows():
    assert exp06.unit_spread(torch.full((4, 3), 0.1)) == 0.0
    assert exp06.unit_spread(torch.zeros(4, 3)) == 0.0
    w = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, -2.0]])
    assert exp06.unit_spread(w) == pytest.approx(4.0 / 2.0)


def _toy_data(n=96, d=12, classes=4):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=gen), torch.randint(classes, (n,), generator=gen)


def _hidden(net):
    return [m for m in net if isinstance(m, nn.Linear)][:-1]


def test_constant_init_units_stay_identical_and_xavier_units_differ(one_thread):
    x, y = _toy_data()
    for scheme in ("constant(0.1)", "xavier"):
        net = initialized_mlp([12, 8, 8, 4], "tanh", scheme, torch.Generator().manual_seed(1))
        done = train(
            net,
            sgd(net, 0.1, nesterov=False),
            x,
            y,
            batch=16,
            steps=30,
            gen=torch.Generator().manual_seed(2),
        )
        assert not done.diverged and len(done.losses) == 30
        spreads = [exp06.unit_spread(m.weight) for m in _hidden(net)]
        if scheme == "xavier":
            assert min(spreads) > 0.1
        else:
            assert max(spreads) <= 1e-6
            for m in _hidden(net):  # every unit's bias identical too
                assert float((m.bias - m.bias[0]).abs().max().detach()) <= 1e-6
            assert float(net[0].weight.detach().abs().max()) > 0.1  # they learned, all alike


def test_zero_init_tanh_moves_only_the_output_bias_hand_computed(one_thread):
    """With every weight 0, tanh(0) = 0 hides every hidden unit and zeroes every weight's
    gradient; the logits are the output bias b, whose gradient is mean(softmax(b) - onehot). One
    step of SGD (momentum's buffer starts at the gradient): b = -lr (1/C - class frequency)."""
    x, y = _toy_data()
    net = initialized_mlp([12, 8, 8, 4], "tanh", "zeros", torch.Generator().manual_seed(1))
    lr = 0.3
    gen = torch.Generator().manual_seed(2)
    train(net, sgd(net, lr, nesterov=False), x, y, batch=96, steps=1, gen=gen)
    freq = torch.bincount(y, minlength=4).double() / len(y)
    assert torch.allclose(net[-1].bias.double(), -lr * (0.25 - freq), atol=1e-7)
    for m in net:
        if isinstance(m, nn.Linear):
            assert float(m.weight.detach().abs().max()) == 0.0
    for m in _hidden(net):
        assert float(m.bias.detach().abs().max()) == 0.0
