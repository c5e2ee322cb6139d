"""Lab experiments 7 (deep-init) and 8 (residual-init): their measuring functions agree with
hand-computed cases, "stalls" is counted literally with the censoring guard, and the identity
that left residual-init's evidence (a zeroed block is the identity) is checked here."""

import math

import pytest
import torch
from lab_support import have, have_cifar

from trainlab.lab import data as lab_data

# ------------------------------------------------------------------------------ deep-init


def test_steps_to_threshold_against_hand_made_curves():
    from trainlab.lab.exp_07_deep_init import THRESHOLD, WINDOW, steps_to_threshold

    assert THRESHOLD == pytest.approx(0.5 * math.log(10))
    assert steps_to_threshold([2.0] * (3 * WINDOW)) is None
    # losses 2.0 then 0.5: the trailing mean of WINDOW is 2 - 1.5 k / WINDOW once k of them are
    # 0.5, below the threshold first at k = floor(WINDOW (2 - T) / 1.5) + 1
    curve = [2.0] * (2 * WINDOW) + [0.5] * WINDOW
    k = math.floor(WINDOW * (2 - THRESHOLD) / 1.5) + 1
    assert steps_to_threshold(curve) == 2 * WINDOW + k
    # a curve below the threshold from the start counts from the first full window
    assert steps_to_threshold([0.1] * WINDOW) == WINDOW
    assert steps_to_threshold([0.1] * (WINDOW - 1)) is None
    assert steps_to_threshold([3.0, 0.5, 1.0], threshold=2.0, window=2) == 2  # 1.75 < 2
    assert steps_to_threshold([3.0, 1.0, 1.0], threshold=2.0, window=2) == 3  # 2.0 is not below
    assert steps_to_threshold([3.0, 2.0, 1.0], threshold=2.0, window=2) == 3


def test_tuning_score():
    from trainlab.lab.exp_07_deep_init import WINDOW, tuning_score

    def run(losses, diverged=False):
        from trainlab.lab.exp_07_deep_init import steps_to_threshold

        return {"losses": losses, "diverged": diverged, "steps": steps_to_threshold(losses)}

    assert tuning_score(run([0.1] * WINDOW), 100) == WINDOW
    assert tuning_score(run([2.3] * 100), 100) == pytest.approx(100 + 2.3)
    falling = [2.3] * 90 + [2.0] * 10  # not reached, but lower at the end: ranks above flat
    assert tuning_score(run(falling), 100) == pytest.approx(102.0)
    assert tuning_score(run([2.3] * 50, diverged=True), 100) == math.inf
    assert tuning_score(run([2.3] * 90 + [2.4] * 10), 100) == math.inf  # ended above its start


def test_stalled_xavier_against_kaiming_and_the_censoring_guard():
    """The primary counts per seed stalled(Xavier) - stalled(Kaiming): all of Xavier's runs
    stalling while Kaiming's reach is a difference of 1 on every pair (held); if Kaiming stalls
    too the pair says nothing, and the claim is not reached."""
    from trainlab.lab.exp_07_deep_init import PRIMARY

    seeds = list(range(6))
    held = PRIMARY.compare([1.0] * 6, [0.0] * 6, seeds)
    assert held.difference == 1.0 and held.verdict == "held"
    assert PRIMARY.compare([0.0] * 6, [0.0] * 6, seeds).verdict == "did not hold"
    assert PRIMARY.compare([1.0] * 6, [1.0] * 6, seeds, reached=False).verdict == "not reached"


def test_train_to_threshold_stops_where_the_curve_reaches_it_and_pairs_the_inits():
    from trainlab.lab.exp_07_deep_init import train_to_threshold
    from trainlab.lab.nets import generator, initialized_mlp

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=gen)
    y = (x[:, 0] > 0).long()
    widths = [6, 16, 16, 2]
    run = train_to_threshold("kaiming", x, y, widths, 0.05, 300, 0)
    assert run["steps"] is not None and run["steps"] == len(run["losses"]) < 300
    capped = train_to_threshold("kaiming", x, y, widths, 0.05, 5, 0)
    assert len(capped["losses"]) == 5 and capped["steps"] is None  # the cap
    # within a seed, Xavier's weights are Kaiming's over sqrt(2) (the same normal draws)
    k = initialized_mlp(widths, "relu", "kaiming", generator(0, "deep-init", "weights"))
    xa = initialized_mlp(widths, "relu", "xavier", generator(0, "deep-init", "weights"))
    for a, b in zip(k.parameters(), xa.parameters(), strict=True):
        torch.testing.assert_close(a / math.sqrt(2), b)


# -------------------------------------------------------------------------- residual-init


@pytest.mark.skipif(not have_cifar(), reason="CIFAR-10 (or its JPEG copy) missing")
def test_zero_init_blocks_are_identity_so_variance_is_the_stems():
    """The identity that is not evidence: with zeroed branches every block passes its input
    through, so each block's output variance equals the stem's, exactly."""
    from trainlab.lab.exp_08_residual_init import block_variances, log_growth, pooled, resnet
    from trainlab.preprocess import make_normalizer

    data = lab_data.dataset("cifar10") if have("cifar10") else lab_data.dataset("cifar10-jpeg")
    for side in (32, 16):
        x = pooled(data.train_images[:16], side)
        for norm in ("batch", "none"):
            model = resnet(norm, 3, 4, True, 0, make_normalizer("scale"), side=side)
            stem = model.features[:3]  # conv -> norm -> relu
            with torch.no_grad():
                model.train()
                expected = stem(model.normalize(x)).double().var().item()
            got = block_variances(model, x)
            assert got == pytest.approx([expected] * 3, rel=1e-6)
            assert log_growth(got) == pytest.approx(0.0, abs=1e-6)


def test_pooled_averages_2x2_blocks():
    from trainlab.lab.exp_08_residual_init import pooled

    x = torch.tensor([[[[0, 2, 10, 10], [4, 6, 10, 11], [1, 1, 0, 0], [1, 1, 0, 255]]]])
    x = x.to(torch.uint8)
    got = pooled(x, 2)
    assert got.dtype == torch.uint8
    assert got[0, 0].tolist() == [[3, 10], [1, 64]]  # 41/4 = 10.25; 255/4 = 63.75
    assert pooled(x, 4) is x


def test_log_growth():
    from trainlab.lab.exp_08_residual_init import log_growth

    assert log_growth([2.0, 5.0, 200.0]) == pytest.approx(2.0)


def test_deep_init_offers_the_paper_scale():
    """A 30-layer plain conv net on all 50,000 CIFAR-10 images, on enough seeds to decide."""
    from trainlab.lab.base import get_experiment
    from trainlab.lab.exp_07_deep_init import DEPTH, NETWORK, SIZES
    from trainlab.lab.sizes import at_size

    assert "paper" in get_experiment("deep-init").scales
    paper = at_size(SIZES, "paper")
    assert paper["n"] == 50000 and paper["seeds"] >= 6 and paper["width"] == 64
    assert NETWORK["paper"] == "conv" and DEPTH == 30
    assert all(NETWORK[s] == "mlp" for s in ("smoke", "quick", "full"))


def test_plain_conv_has_30_weight_layers_no_norm_and_pairs_the_inits():
    from torch import nn

    from trainlab.lab.exp_07_deep_init import DEPTH, network, plain_conv

    net = plain_conv(3, 8, 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == DEPTH - 1 and len(linears) == 1
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sorted(c.stride[0] for c in convs) == [1] * (DEPTH - 3) + [2, 2]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    before = torch.random.get_rng_state()
    k = network("kaiming", (3, 8, 10), 4)
    xa = network("xavier", (3, 8, 10), 4)
    assert torch.equal(torch.random.get_rng_state(), before), "the global RNG was touched"
    for (name, a), b in zip(k.named_parameters(), xa.parameters(), strict=True):
        if name.endswith("weight"):
            torch.testing.assert_close(a / math.sqrt(2), b)
        else:
            assert not a.any() and not b.any()  # biases start at 0
