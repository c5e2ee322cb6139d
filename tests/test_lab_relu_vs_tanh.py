"""Lab experiment 4 (relu-vs-tanh): the network, the target, the tuning score, AlexNet's fixed
Gaussian init beside the exact-gain one, and the paper column."""

import math

import torch

from trainlab.lab import exp_04_relu_vs_tanh as exp
from trainlab.lab.base import get_experiment
from trainlab.lab.sizes import at_size


def test_four_layer_cnn_shape_and_size():
    net = exp.four_layer_cnn("tanh", (4, 8), 16)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    expected = (3 * 25 + 1) * 4 + (4 * 25 + 1) * 8 + (8 * 64 + 1) * 16 + (16 + 1) * 10
    assert sum(p.numel() for p in net.parameters()) == expected


def test_epochs_to_target():
    assert exp.epochs_to_target([0.6, 0.3, 0.25, 0.2]) == 3  # <= target counts
    assert exp.epochs_to_target([0.2]) == 1
    assert exp.epochs_to_target([0.6, 0.26]) is None


def _run(errors, loss, diverged=False):
    return {
        "epochs": exp.epochs_to_target(errors),
        "diverged": diverged,
        "errors": errors,
        "last_loss": loss,
    }


def test_tuning_score_hand_cases():
    assert exp.tuning_score(_run([0.5, 0.2], 1.0)) == 2.5  # reached at 2, loss 1 -> 1/2
    assert exp.tuning_score(_run([0.5, 0.4, 0.3], 3.0)) == 4.75  # missed after 3: 3 + 1 + 3/4
    assert exp.tuning_score(_run([0.5, 0.2], 0.5, diverged=True)) == math.inf
    # fewer epochs always win, whatever the loss; equal epochs: the lower loss
    assert exp.tuning_score(_run([0.2], 100.0)) < exp.tuning_score(_run([0.3, 0.2], 0.0))
    assert exp.tuning_score(_run([0.3, 0.2], 0.4)) < exp.tuning_score(_run([0.3, 0.2], 0.5))


def test_alexnets_init_draws_std_0_01_and_pairs_the_activations():
    """Both activations of one init draw the same weights within a seed (init is by the seed's
    generator); AlexNet's arm draws N(0, 0.01^2) for every weight and the exact-gain arm
    Kaiming's std sqrt(gain^2 / fan_in)."""
    from trainlab.init import gain
    from trainlab.lab.nets import generator, initialized

    def net(act, init):
        make = lambda: exp.four_layer_cnn(act, (16, 32), 64)  # noqa: E731
        return initialized(make, exp.INITS[init], act, generator(5, "relu-vs-tanh", "weights"))

    relu, tanh = net("relu", "gaussian"), net("tanh", "gaussian")
    assert torch.equal(relu[0].weight, tanh[0].weight)  # the same draws
    assert abs(float(relu[3].weight.std()) - 0.01) < 0.0005  # 12,800 draws of std 0.01
    k = net("tanh", "kaiming")[3].weight
    assert abs(float(k.std()) - gain("tanh") / math.sqrt(16 * 25)) < 0.01


def test_the_paper_column_is_alexnets_figure_1_scale():
    exp_ = get_experiment("relu-vs-tanh")
    assert "paper" in exp_.scales and exp_.plan is not None
    paper = at_size(exp.SIZES, "paper")
    assert paper["n"] == 50_000 and paper["channels"] == (64, 64) and paper["hidden"] == 384
    assert paper["seeds"] >= 6 and paper["cap"] >= 60
