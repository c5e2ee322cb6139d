"""Lab experiments 8-13: their measuring functions against independent computations, and the
lab's small helpers. Every experiment's smoke run and the gallery: tests/test_lab_results.py."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.lab import data as lab_data
from trainlab.lab import numbers as lab_numbers
from trainlab.lab import runs as lab_runs
from trainlab.lab.gallery import flatten, format_value, run_lab


def _have(name: str) -> bool:
    try:
        lab_data.dataset(name)
    except Exception:
        return False
    return True


needs_data = pytest.mark.skipif(
    not ((_have("cifar10") or _have("cifar10-jpeg")) and _have("fashion-mnist")),
    reason="CIFAR-10 (or its JPEG copy, which smoke runs accept) / Fashion-MNIST missing",
)


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield value


@needs_data
def test_same_seed_same_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv(lab_runs.SMOKE_ENV, "1")
    a = run_lab(["selu"], tmp_path / "a", quick=True, seed=3)[0]
    b = run_lab(["selu"], tmp_path / "b", quick=True, seed=3)[0]
    c = run_lab(["selu"], tmp_path / "c", quick=True, seed=4)[0]
    assert a["measured"] == b["measured"]  # timing lives in "seconds", outside "measured"
    assert a["measured"]["final_train_loss"] != c["measured"]["final_train_loss"]


def test_unknown_experiment_is_a_clear_error(tmp_path):
    from trainlab.errors import TrainlabError

    with pytest.raises(TrainlabError, match="unknown lab experiment.*'nope'.*valid names"):
        run_lab(["nope"], tmp_path)


# ------------------------------------------------------------------ measuring functions


@needs_data
def test_zero_init_blocks_are_identity_so_variance_is_the_stems():
    from trainlab.lab.exp_08_residual_init import _resnet, block_variances
    from trainlab.preprocess import make_normalizer

    x = lab_data.dataset("cifar10") if _have("cifar10") else lab_data.dataset("cifar10-jpeg")
    x = x.train_images[:16]
    for norm in ("batch", "none"):
        model = _resnet(norm, 3, 4, True, 0, make_normalizer("scale"))
        stem = model.features[:3]  # conv -> norm -> relu
        with torch.no_grad():
            model.train()
            expected = stem(model.normalize(x)).double().var().item()
        got = block_variances(model, x)
        assert len(got) == 3
        assert got == pytest.approx([expected] * 3, rel=1e-6)


def test_layer_stats_match_a_manual_forward():
    from trainlab.lab.exp_09_selu import _activations, _mlp, layer_stats
    from trainlab.preprocess import make_normalizer

    model = _mlp("selu", "lecun_normal", 3, 16, 0, make_normalizer("scale"))
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    means, stds = layer_stats(model, x)
    h = x.flatten(1)
    linears = [m for m in model.features if isinstance(m, nn.Linear)]
    assert len(_activations(model)) == len(linears) == 3
    for i, lin in enumerate(linears):
        h = torch.nn.functional.selu(h @ lin.weight.T + lin.bias)
        assert means[i] == pytest.approx(h.double().mean().item(), abs=1e-6)
        assert stds[i] == pytest.approx(h.double().std().item(), rel=1e-5)


def test_weight_sensitivity_restores_weights_and_grows_with_input_offset():
    from trainlab.lab.exp_10_preprocessing import _model, weight_sensitivity

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 4, 4, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    model = _model("linear", 16, 0, 0)
    before = [p.clone() for p in model.parameters()]
    centred = weight_sensitivity(model, x, y, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # The lecture's picture: the same weights, inputs moved far from the origin.
    shifted = weight_sensitivity(model, x + 5.0, y, torch.Generator().manual_seed(1))
    assert shifted > 3 * centred


def test_relative_error_and_flatten():
    from trainlab.lab.exp_11_dropout import relative_error

    a, b = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 8.0])
    assert relative_error(a, b) == pytest.approx(5.0 / 8.0)
    rows = flatten({"a": {"b": 1, "c": {"d": 2.5}}, "e": [1, 2], "f": True})
    assert rows == [("a.b", 1), ("a.c.d", 2.5), ("e", [1, 2]), ("f", True)]
    assert format_value(0.123456) == "0.1235"
    assert format_value(None) == "n/a"
    assert format_value(list(range(20))) == "[" + ", ".join(map(str, range(20))) + "]"


def test_kit_helpers():
    g = torch.Generator().manual_seed(0)
    batches = lab_runs.step_batches(10, 3, 7, g)
    assert len(batches) == 7 and all(len(b) == 3 for b in batches)
    # each epoch's slices come from one permutation: no repeats within the first three
    assert len(set(torch.cat(batches[:3]).tolist())) == 9
    assert lab_numbers.tail_mean([5.0] * 90 + [1.0] * 10) == 1.0
    assert lab_numbers.mean_std([1.0, 3.0]) == (2.0, math.sqrt(2.0))
    assert lab_numbers.rounded([math.inf, 1.23456789]) == [None, 1.23457]
    assert lab_numbers.diverged_at([2.0, 1.0, math.inf, math.inf]) == 3
    assert lab_numbers.diverged_at([2.0, 1.0]) is None
