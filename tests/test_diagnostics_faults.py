"""Three faults of the published fault benchmarks, each an exact condition: units that are copies
of each other (zero or constant init), layers that never get a gradient (a cut graph, a layer
the forward never calls), and a network that already outputs probabilities before the
cross-entropy loss. Each is planted in a small network trained for a few steps; what the rule
names is checked against the weights and outputs read here independently (numpy, a float64
formula), and the fault-free variants stay silent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diagnostics_support import watched_steps
from torch import nn

from trainlab.diagnostics import findings

CLASSES = 5


def train(model, *, steps=30, lr=0.1, every=2):
    """SGD with momentum on a fixed synthetic problem, watched; -> (report, findings, last loss)."""
    g = torch.Generator().manual_seed(1)
    x_all = torch.randn(512, 20, generator=g)
    y_all = x_all[:, :CLASSES].argmax(1)
    report, loss = watched_steps(model, x_all, y_all, g, steps=steps, lr=lr, every=every,
                                 window=10, loss_curve=True)  # fmt: skip
    return report, findings(report, classes=CLASSES), float(loss)


def mlp(act=nn.ReLU, widths=(32, 32), init=None):
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    n = 20
    for w in widths:
        layers += [nn.Linear(n, w), act()]
        n = w
    layers.append(nn.Linear(n, CLASSES))
    net = nn.Sequential(*layers)
    if init is not None:
        for m in net:
            if isinstance(m, nn.Linear):
                init(m)
    return net


def by_code(found):
    return {f.code: f for f in found}


def copied_rows(net) -> list[str]:
    """Names of the Linear layers whose rows are all equal now (numpy, exact to 1e-6)."""
    out = []
    for name, m in net.named_modules():
        if isinstance(m, nn.Linear):
            w = m.weight.detach().double().numpy()
            if np.abs(w - w[:1]).max() <= 1e-6 * max(np.abs(w).max(), 1e-300):
                out.append(name)
    return out


# -- copies: the symmetry problem ----------------------------------------------------------------
def zeros(m):
    nn.init.zeros_(m.weight)
    nn.init.zeros_(m.bias)


def constant(m):
    nn.init.constant_(m.weight, 0.1)
    nn.init.zeros_(m.bias)


@pytest.mark.parametrize(
    "act, init, copies",
    [
        # all zeros and ReLU: every hidden output is 0, so no weight moves, the head's neither
        (nn.ReLU, zeros, ["0", "2", "4"]),
        # constant and tanh: the hidden units stay copies; the head's rows (one per class) part
        (nn.Tanh, constant, ["0", "2"]),
        (nn.Sigmoid, zeros, ["0", "2"]),
    ],
)
def test_units_started_as_copies_stay_copies_and_are_named(act, init, copies):
    net = mlp(act, init=init)
    report, found, _ = train(net)
    assert copied_rows(net) == copies  # the identity the rule rests on, read independently
    f = by_code(found)["symmetric"]
    assert f.layers == copies
    assert "copies" in f.message and "random" in f.advice


@pytest.mark.parametrize(
    "act, zeroed",
    [
        # the first layer alone at zero under tanh: the random layer after it gives its units
        # different gradients, so they part at the first step (under ReLU, whose slope at 0 is
        # 0, they would not: zero is a fixed point there)
        (nn.Tanh, "0"),
        # the classifier at zero (as a residual branch's last layer): each class's row gets
        # its own gradient
        (nn.ReLU, "4"),
    ],
)
def test_one_zeroed_layer_among_random_ones_is_not_a_symmetry(act, zeroed):
    net = mlp(act)
    zeros(dict(net.named_modules())[zeroed])
    _, found, _ = train(net)
    assert copied_rows(net) == []
    assert "symmetric" not in by_code(found)


def test_a_frozen_layer_of_copies_is_the_users_choice():
    net = mlp()
    constant(net[0])
    net[0].requires_grad_(False)
    _, found, _ = train(net)
    assert "symmetric" not in by_code(found) and "no_gradient" not in by_code(found)


# -- no gradient -----------------------------------------------------------------------------------
class Detached(nn.Module):
    """A body whose output is detached before the head: the body never learns."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32))
        self.spare = nn.Linear(32, 32)  # defined, never called
        self.head = nn.Linear(32, CLASSES)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)).detach())


def test_layers_behind_a_detach_and_a_layer_never_called_get_no_gradient():
    net = Detached()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    report, found, _ = train(net)
    unchanged = [k[: -len(".weight")] for k, v in net.state_dict().items()
                 if k.endswith(".weight") and torch.equal(v, start[k])]  # fmt: skip
    assert unchanged == ["body.0", "body.2", "spare"]  # what never learned, read independently
    f = by_code(found)["no_gradient"]
    assert f.layers == unchanged and f.value == 0.0
    assert ".detach()" in f.advice
    # not a small gradient but none: the vanishing rule leaves it to this one
    assert "vanishing_grad" not in by_code(found)
    assert report.grad_norms.shape == (15, 4) and (report.grad_norms[:, :3] == 0).all()


def test_a_gradient_that_underflows_to_zero_is_also_vanishing():
    # 20 ReLU layers at std 0.01: the signal shrinks ~10x a layer and underflows float32, so the
    # first layers' gradients are exactly zero; collapse and vanishing name the cause
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(20):
        lin = nn.Linear(20 if i == 0 else 64, 64)
        nn.init.normal_(lin.weight, std=0.01)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(64, CLASSES))
    _, found, _ = train(net, steps=10)
    assert {"no_gradient", "collapse", "vanishing_grad"} <= set(by_code(found))


# -- probabilities as the loss's scores ----------------------------------------------------------
@pytest.mark.parametrize("last, softmax", [(nn.Softmax(dim=1), True), (nn.Sigmoid(), False)])
def test_a_network_ending_in_probabilities_is_named(last, softmax):
    net = nn.Sequential(mlp(), last)
    report, found, loss = train(net, steps=60, lr=0.5)
    f = by_code(found)["probability_output"]
    assert ("each row sums to 1" in f.message) is softmax
    assert report.output_values == 30 * 64 * CLASSES and report.output_outside_unit == 0
    # the floor the message states: scores in [0, 1] give at least ln(1 + (C - 1) / e)
    floor = math.log1p((CLASSES - 1) / math.e)
    assert loss >= floor - 1e-6
    if softmax:
        assert report.output_row_sum_error < 1e-5
    else:  # the sigmoid head is the output, not a hidden layer: no saturation or depth finding
        head = [s for s in report.layers if s.role == "activation"][-1]
        assert head.name == "1" and head.is_output
        assert not [s for s in report.layers if s.is_output and s.name != "1"]
        assert not {"saturated", "collapse", "not_zero_centred"} & set(by_code(found))


def test_log_probabilities_and_raw_scores_are_not_named():
    for net in (nn.Sequential(mlp(), nn.LogSoftmax(dim=1)), mlp()):
        report, found, _ = train(net)
        assert "probability_output" not in by_code(found)
        assert report.output_outside_unit > 0


def test_the_new_rules_are_silent_on_healthy_nets():
    for net in (mlp(), mlp(nn.Tanh), mlp(nn.GELU, widths=(64, 64, 64))):
        _, found, _ = train(net)
        assert not {"symmetric", "no_gradient", "probability_output"} & set(by_code(found))


# -- a network with no nonlinearity ------------------------------------------------------------
def test_a_network_without_activations_is_affine_and_named():
    from trainlab.diagnostics.collect import midpoint_nonlinearity

    torch.manual_seed(0)
    x = torch.rand(16, 20)
    linear = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.Linear(32, 32),
                           nn.Linear(32, CLASSES))  # fmt: skip
    linear.train()
    error = midpoint_nonlinearity(linear, x)
    assert error < 1e-5 and linear.training  # affine in eval mode; the mode is restored
    # the same network with ReLUs: the midpoint's output is far from the outputs' midpoint
    relu = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, CLASSES))  # fmt: skip
    assert midpoint_nonlinearity(relu, x) > 1e-2
    # a network whose output does not depend on its input is not a linear one
    constant = nn.Sequential(nn.Linear(20, CLASSES))
    nn.init.zeros_(constant[0].weight)
    assert midpoint_nonlinearity(constant, x) is None
    report, found, _ = train(linear)
    assert "linear_network" not in by_code(found)  # not measured by the training hooks
    report.midpoint_error = error
    f = by_code(findings(report, classes=CLASSES))["linear_network"]
    assert "nn.ReLU" in f.advice and f.value == error


def test_diagnose_names_a_users_linear_network(tmp_path):
    from trainlab.data import load_dataset
    from trainlab.recipe import load_recipe
    from trainlab.train import run_diagnostics

    (tmp_path / "linear_net.py").write_text(
        "from torch import nn\n\n\n"
        "def net(shape, classes):\n"
        "    n = shape[0] * shape[1] * shape[2]\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(n, 32), nn.Linear(32, classes))\n"
    )
    data = "synthetic(n=256, size=8)"
    sets = [f"data.name={data}", "train.device=cpu", "train.batch_size=32", "augment.train=[]",
            f"model.kind=import:{tmp_path / 'linear_net.py'}:net", "init.scheme=keep"]  # fmt: skip
    result = run_diagnostics(load_recipe(None, sets), None, steps=12, every=2,
                             dataset=load_dataset(data))  # fmt: skip
    assert result.report.midpoint_error < 1e-5
    assert "linear_network" in {f.code for f in result.findings}
