"""Stochastic depth: the paper's decay schedule, the train/eval expectation rule, gating."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from trainlab.errors import RegistryError
from trainlab.regularize.depth import (
    DropPath,
    StochasticDepth,
    drop_path,
    linear_decay,
    survival_probs,
)
from trainlab.seeding import reseed_all


def test_linear_decay_paper_values():
    # Huang et al. 2016: 110-layer ResNet, L = 54 blocks, p_L = 0.5.
    assert linear_decay(0, 54, 0.5) == 1.0
    assert math.isclose(linear_decay(1, 54, 0.5), 1 - 0.5 / 54)
    assert math.isclose(linear_decay(27, 54, 0.5), 0.75)
    assert math.isclose(linear_decay(54, 54, 0.5), 0.5)
    probs = survival_probs(54, 0.5)
    np.testing.assert_allclose(probs, 1 - np.arange(1, 55) / 54 * 0.5, rtol=0, atol=1e-15)
    assert survival_probs(3, 1.0) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1, 54, 0.0), "p_L"),
        ((1, 54, 1.5), "p_L"),
        ((55, 54, 0.5), "block index"),
        ((-1, 54, 0.5), "block index"),
        ((1, 0, 0.5), "number of blocks"),
    ],
)
def test_linear_decay_bad_arguments(args, match):
    with pytest.raises(RegistryError, match=match):
        linear_decay(*args)


def test_survival_probs_bad_count():
    with pytest.raises(RegistryError, match="num_blocks"):
        survival_probs(0, 0.5)


@pytest.mark.parametrize("p", [0.0, -0.1, 1.01, True, "0.5"])
def test_bad_survival_prob_refused(p):
    with pytest.raises(RegistryError, match="survival"):
        StochasticDepth(nn.Identity(), p)
    with pytest.raises(RegistryError, match="survival"):
        drop_path(torch.ones(2, 2), p, torch.Generator(), True)


def test_bad_mode_and_branch_refused():
    with pytest.raises(RegistryError, match="mode"):
        StochasticDepth(nn.Identity(), 0.5, mode="row")
    with pytest.raises(RegistryError, match="branch"):
        StochasticDepth(lambda x: x, 0.5)


def _branch(seed=0, d=6):
    torch.manual_seed(seed)  # only to build fixed test weights; the modules never use it
    return nn.Sequential(nn.Linear(d, d), nn.Tanh())


def _x(b=5, d=6, seed=1):
    return torch.randn(b, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["sample", "batch"])
@pytest.mark.parametrize("scale_by_keep", [False, True])
@pytest.mark.parametrize("p", [0.3, 0.8])
@torch.no_grad()
def test_eval_equals_expected_train_output(mode, scale_by_keep, p):
    """Monte-Carlo mean of training outputs within 5 standard errors of the eval output.

    Each training output is x + b s f(x) with b ~ Bernoulli(p), so its exact per-element
    standard deviation is sqrt(p (1 - p)) s |f(x)|; the tolerance uses that, not an estimate.
    """
    block = StochasticDepth(_branch(), p, mode=mode, scale_by_keep=scale_by_keep, seed=3)
    x = _x()
    f = block.branch(x)
    s = 1 / p if scale_by_keep else 1.0
    block.eval()
    y_eval = block(x)
    torch.testing.assert_close(y_eval, x + (f if scale_by_keep else p * f))
    assert torch.equal(block(x), y_eval)  # deterministic
    block.train()
    n = 3000
    mean = sum(block(x).double() for _ in range(n)) / n
    se = math.sqrt(p * (1 - p)) * s * f.double().abs() / math.sqrt(n)
    assert ((mean - y_eval.double()).abs() <= 5 * se + 1e-6).all()


@pytest.mark.parametrize("mode", ["sample", "batch"])
@pytest.mark.parametrize("scale_by_keep", [False, True])
def test_identity_gating_when_survival_is_one(mode, scale_by_keep):
    block = StochasticDepth(_branch(), 1.0, mode=mode, scale_by_keep=scale_by_keep)
    x = _x()
    ref = x + block.branch(x)
    for training in (True, False):
        block.train(training)
        torch.testing.assert_close(block(x), ref, rtol=0, atol=0)


@torch.no_grad()
def test_per_sample_gates_differ_and_are_bernoulli():
    block = StochasticDepth(nn.Identity(), 0.5, scale_by_keep=True, seed=4).train()
    x = torch.ones(64, 3, 4, 4)
    gates = block(x) - x  # b / p with f(x) = x = 1
    per_sample = gates.flatten(1)
    assert (per_sample == per_sample[:, :1]).all()  # one gate per sample
    assert set(per_sample[:, 0].unique().tolist()) == {0.0, 2.0}  # both outcomes in one batch


class _Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


@torch.no_grad()
def test_batch_mode_shares_one_gate_and_skips_dropped_branch():
    branch = _Counting()
    block = StochasticDepth(branch, 0.5, mode="batch", seed=5).train()
    x = torch.ones(8, 4)
    kept = 0
    for _ in range(40):
        gate = block(x) - x
        assert (gate == gate[0, 0]).all()
        kept += int(gate[0, 0].item() == 1.0)
    assert 0 < kept < 40
    assert branch.calls == kept  # a dropped branch is never computed


def test_gradient_reaches_branch_only_through_kept_samples():
    block = StochasticDepth(nn.Linear(3, 3, bias=False), 0.5, seed=6).train()
    x = torch.ones(16, 3)
    y = block(x)
    gate = (y - x).detach().abs().sum(1) > 0
    y.sum().backward()
    # d/dW sum(b_i W x_i) = sum over kept samples of x_i = number kept, for every weight
    expected = torch.full((3, 3), float(gate.sum()))
    torch.testing.assert_close(block.branch.weight.grad, expected)


@torch.no_grad()
def test_seeded_runs_identical_and_seeds_differ():
    x = torch.ones(32, 4)

    def draws(seed):
        block = StochasticDepth(nn.Identity(), 0.5, seed=seed).train()
        return torch.stack([block(x) for _ in range(3)])

    assert torch.equal(draws(7), draws(7))
    assert not torch.equal(draws(7), draws(8))


@torch.no_grad()
def test_reseed_all_restarts_streams_and_global_rng_untouched():
    model = nn.Sequential(
        StochasticDepth(nn.Identity(), 0.5), StochasticDepth(nn.Identity(), 0.5)
    ).train()
    x = torch.ones(32, 4)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    reseed_all(model, (1, 0))
    first = model(x)
    model(x)
    reseed_all(model, (1, 0))
    assert torch.equal(model(x), first)
    assert torch.equal(torch.get_rng_state(), before)


def test_caller_generator_is_used():
    x = torch.ones(32, 4)
    a = StochasticDepth(nn.Identity(), 0.5, generator=torch.Generator().manual_seed(9)).train()
    b = StochasticDepth(nn.Identity(), 0.5, generator=torch.Generator().manual_seed(9)).train()
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("scale_by_keep", [False, True])
def test_drop_path_functional(scale_by_keep):
    f = torch.randn(10, 3, 2, 2, generator=torch.Generator().manual_seed(10))
    p = 0.6
    out_eval = drop_path(f, p, None, training=False, scale_by_keep=scale_by_keep)
    torch.testing.assert_close(out_eval, f if scale_by_keep else p * f)
    g = torch.Generator().manual_seed(11)
    out = drop_path(f, p, g, training=True, scale_by_keep=scale_by_keep)
    kept = f / p if scale_by_keep else f
    dropped = (out == 0).flatten(1).all(1)
    assert 0 < dropped.sum() < len(f)  # per-sample: both outcomes in one batch
    torch.testing.assert_close(out[~dropped], kept[~dropped])
    batch = drop_path(f, p, g, training=True, per_sample=False)
    assert torch.equal(batch, f) or torch.equal(batch, torch.zeros_like(f))
    with pytest.raises(RegistryError, match="generator"):
        drop_path(f, p, None, training=True)
    assert drop_path(f, 1.0, None, training=True) is f


@pytest.mark.parametrize("mode", ["sample", "batch"])
@pytest.mark.parametrize("scale_by_keep", [False, True])
@torch.no_grad()
def test_drop_path_module_with_projection_skip(mode, scale_by_keep):
    """shortcut(x) + DropPath(branch(x)): eval equals the Monte-Carlo mean of training (5 SE)."""
    p = 0.6
    shortcut, branch = nn.Linear(6, 4), nn.Linear(6, 4)
    drop = DropPath(p, mode=mode, scale_by_keep=scale_by_keep, seed=12)
    x = _x()
    f, s = branch(x), (1 / p if scale_by_keep else 1.0)
    drop.eval()
    y_eval = shortcut(x) + drop(f)
    torch.testing.assert_close(y_eval, shortcut(x) + (f if scale_by_keep else p * f))
    drop.train()
    n = 3000
    mean = sum((shortcut(x) + drop(f)).double() for _ in range(n)) / n
    se = math.sqrt(p * (1 - p)) * s * f.double().abs() / math.sqrt(n)
    assert ((mean - y_eval.double()).abs() <= 5 * se + 1e-6).all()
    gated = drop(f)
    kept = (gated != 0).flatten(1).any(1)
    if mode == "batch":
        assert kept.all() or not kept.any()


def test_drop_path_module_bad_arguments():
    with pytest.raises(RegistryError, match="survival"):
        DropPath(0.0)
    with pytest.raises(RegistryError, match="mode"):
        DropPath(0.5, mode="row")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"survival_prob": float("nan")}, "survival_prob"),
        ({"survival_prob": float("inf")}, "survival_prob"),
        ({"survival_prob": 0.5, "scale_by_keep": "yes"}, "scale_by_keep"),
    ],
)
def test_values_refused_by_meaning(kwargs, name):
    with pytest.raises(ValueError, match=rf"{name}.* must be .*got"):
        DropPath(**kwargs)
