"""Lab experiments 7 (deep-init) and 8 (residual-init): each runs at the smoke size and writes a
well-formed result with its comparison records; their measuring functions agree with
hand-computed cases; the identity that left residual-init's evidence (a zeroed block is the
identity) is checked here."""

import json
import math

import pytest
import torch
from lab_support import have, have_cifar

from trainlab.lab import data as lab_data
from trainlab.lab import run_experiment
from trainlab.lab.base import VERDICTS
from trainlab.lab.runs import SMOKE_ENV

RECORD_KEYS = {"name", "metric", "arms", "difference", "ci95", "min_effect", "seeds", "verdict"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["deep-init", "residual-init"])
def test_smoke_run_writes_comparisons(name, tmp_path, monkeypatch):
    if name == "residual-init" and not have_cifar():
        pytest.skip("CIFAR-10 missing")
    monkeypatch.setenv(SMOKE_ENV, "1")
    before = torch.random.get_rng_state()
    result = run_experiment(name, tmp_path, quick=True, seed=2)
    assert torch.equal(torch.random.get_rng_state(), before), "the global RNG was touched"
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert result["size"] == "smoke" and result["verdict"] in VERDICTS
    assert result["comparisons"]
    for c in result["comparisons"]:
        assert RECORD_KEYS <= set(c)
        assert c["verdict"] == "inconclusive", "2 smoke seeds decide nothing"
        lo, hi = c["ci95"]
        assert lo <= c["difference"] <= hi
    for fig in result["figures"]:
        assert (tmp_path / fig).read_bytes()[:8] == PNG_MAGIC
    assert "partly" not in result["rule"] + result["notes"]
    m = result["measured"]
    if name == "deep-init":
        assert m["depth"] == 30 and set(m["lr"]) == {"xavier", "kaiming"}
        for init in ("xavier", "kaiming"):
            assert len(m["steps_to_threshold"][init]) == 2
            assert all(1 <= s <= m["cap"] for s in m["steps_to_threshold"][init])
            assert len(m["lr_search"][init]["tried"]) >= 5
    else:
        assert len(result["comparisons"]) == 4
        assert set(m["lr"]) == {"bn/standard", "bn/zero", "no_bn/standard", "no_bn/zero"}
        assert all(v < 0 for v in (c["min_effect"] for c in result["comparisons"][2:]))


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
    # a non-finite loss ends the run: never reached afterwards
    assert steps_to_threshold([2.0] * WINDOW + [math.inf] + [0.1] * WINDOW) is None
    assert steps_to_threshold([3.0, 0.5, 1.0], threshold=2.0, window=2) == 2  # 1.75 < 2
    assert steps_to_threshold([3.0, 1.0, 1.0], threshold=2.0, window=2) == 3  # 2.0 is not below
    assert steps_to_threshold([3.0, 2.0, 1.0], threshold=2.0, window=2) == 3


def test_counted_steps_and_tuning_score():
    from trainlab.lab.exp_07_deep_init import WINDOW, counted_steps, tuning_score

    reached = [0.1] * WINDOW
    assert counted_steps(reached, 100) == WINDOW
    assert tuning_score(reached, 100) == WINDOW
    flat = [2.3] * 100
    assert counted_steps(flat, 100) == 100
    assert tuning_score(flat, 100) == pytest.approx(100 + 2.3)
    falling = [2.3] * 90 + [2.0] * 10  # not reached, but lower at the end: ranks above flat
    assert tuning_score(falling, 100) == pytest.approx(102.0)
    assert tuning_score([2.3] * 50 + [math.inf] * 50, 100) == math.inf
    assert tuning_score([2.3] * 90 + [2.4] * 10, 100) == math.inf  # ended above its start
    assert counted_steps([2.3, math.inf], 100) == 100


def test_train_to_threshold_stops_where_the_curve_reaches_it_and_pairs_the_inits():
    from trainlab.lab.exp_07_deep_init import steps_to_threshold, train_to_threshold
    from trainlab.lab.runs import generator, initialized_mlp

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=gen)
    y = (x[:, 0] > 0).long()
    widths = [6, 16, 16, 2]
    losses = train_to_threshold("kaiming", x, y, widths, 0.05, 300, 0)
    steps = steps_to_threshold(losses)
    assert steps is not None and steps == len(losses) < 300
    assert len(train_to_threshold("kaiming", x, y, widths, 0.05, 5, 0)) == 5  # the cap
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
    from trainlab.lab.exp_08_residual_init import _resnet, block_variances, log_growth, pooled
    from trainlab.preprocess import make_normalizer

    data = lab_data.dataset("cifar10") if have("cifar10") else lab_data.dataset("cifar10-jpeg")
    for side in (32, 16):
        x = pooled(data.train_images[:16], side)
        for norm in ("batch", "none"):
            model = _resnet(norm, 3, 4, True, 0, make_normalizer("scale"), side=side)
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


def test_counted_loss_and_log_growth():
    from trainlab.lab.exp_08_residual_init import counted_loss, log_growth

    assert counted_loss([2.0] * 90 + [1.0] * 10) == pytest.approx(1.0)
    assert counted_loss([2.0, math.inf]) == pytest.approx(math.log(10))
    assert counted_loss([2.0] * 90 + [3.0] * 10) == pytest.approx(math.log(10))  # ended above
    assert log_growth([2.0, 5.0, 200.0]) == pytest.approx(2.0)


# ------------------------------------------------------------------- deep-init, paper scale


def test_deep_init_offers_the_paper_scale_with_issue_17s_size():
    """Issue 17 item 7: a 30-layer plain conv net on all 50,000 CIFAR-10 images, >= 3 seeds."""
    from trainlab.lab.base import get_experiment
    from trainlab.lab.exp_07_deep_init import DATA, DEPTH, NETWORK, SIZES
    from trainlab.lab.runs import at_size, sizes_in

    assert "paper" in get_experiment("deep-init").scales
    assert sizes_in(SIZES)[-1] == "paper"
    paper = at_size(SIZES, "paper")
    assert paper["n"] == 50000 and paper["seeds"] >= 3 and paper["width"] == 64
    assert NETWORK["paper"] == "conv" and DATA["conv"] == "cifar10" and DEPTH == 30
    assert all(NETWORK[s] == "mlp" for s in ("smoke", "quick", "full"))
    assert at_size(SIZES, "full") == {"n": 10000, "width": 128, "cap": 1500, "seeds": 5}


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


def test_paper_run_at_a_shrunk_paper_configuration(tmp_path, monkeypatch):
    """The paper size's code path (plain conv net, CIFAR-10 or its synthetic stand-in, the
    device of :func:`lab_device`) on a tiny paper column, on whatever device is here."""
    from trainlab.lab import exp_07_deep_init as exp

    monkeypatch.delenv(SMOKE_ENV, raising=False)
    tiny = {"n": (256, 4096, 10000, 96), "width": (8, 64, 128, 4), "cap": (30, 600, 1500, 12),
            "seeds": (2, 3, 5, 3)}  # fmt: skip
    monkeypatch.setattr(exp, "SIZES", tiny)
    result = run_experiment("deep-init", tmp_path, scale="paper", seed=1)
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert result["size"] == "paper" and result["quick"] is False
    assert result["verdict"] in VERDICTS
    (c,) = result["comparisons"]
    assert RECORD_KEYS <= set(c) and c["seeds"] == [1, 2, 3]
    m = result["measured"]
    assert m["depth"] == 30 and m["width"] == 4 and m["cap"] == 12 and m["seeds"] == [1, 2, 3]
    assert m["data"].startswith("cifar10 (96 train)") or m["data"].startswith("synthetic(")
    for init in ("xavier", "kaiming"):
        assert len(m["steps_to_threshold"][init]) == 3
        assert all(1 <= s <= 12 for s in m["steps_to_threshold"][init])
        assert len(m["lr_search"][init]["tried"]) >= 5
    for fig in result["figures"]:
        assert (tmp_path / fig).read_bytes()[:8] == PNG_MAGIC
    assert "conv net" in result["notes"] and "Size 'paper'" in result["notes"]
    assert result["notes"].startswith("30-layer plain ReLU conv net (29 3x3 convolutions")
    assert "CIFAR-10" in result["rule"] and "Fashion-MNIST" in result["rule"]
