"""optim.clip_grad_norm: the global L2 norm of all gradients rescaled to at most the threshold,
checked against a float64 computation of the same formula, and inside the engine's step."""

import math

import pytest
import torch

from trainlab.engine.build import build_run, gradient_clipper
from trainlab.engine.loop import train_steps
from trainlab.recipe import load_recipe


def _grads(model):
    return [p.grad.detach().double().clone() for p in model.parameters()]


@pytest.mark.parametrize("max_norm", [1e-3, 0.5, 1e6])
def test_clipping_matches_the_float64_formula(max_norm):
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g) * 3
    before = _grads(model)
    norm = math.sqrt(sum(float((b**2).sum()) for b in before))
    factor = min(1.0, max_norm / (norm + 1e-6))
    recipe = load_recipe(None, [f"optim.clip_grad_norm={max_norm}"])
    gradient_clipper(recipe, model)()
    for b, a in zip(before, _grads(model), strict=True):
        torch.testing.assert_close(a, b * factor, rtol=2e-6, atol=1e-12)
    clipped = math.sqrt(sum(float((a**2).sum()) for a in _grads(model)))
    assert clipped == pytest.approx(min(norm, max_norm), rel=1e-5)


def test_a_clipped_sgd_step_moves_the_weights_by_at_most_lr_times_the_threshold():
    """Plain SGD (no momentum, no decay, constant rate 1): one step changes the weights by
    exactly the clipped gradient, so ||dθ|| = min(||g||, c)."""
    data_spec = "synthetic(n=64, classes=4, size=8)"
    common = [
        f"data.name={data_spec}", "train.batch_size=64", "train.epochs=1", "train.device=cpu",
        "model.kind=mlp", "model.widths=[16]", "optim.momentum=0", "optim.nesterov=false",
        "optim.weight_decay=0", "optim.lr=1", "schedule.name=constant", "diagnostics.every=0",
        "augment.train=[]",
    ]  # fmt: skip
    moved = {}
    for clip in (0.0, 1e-2):
        with torch.random.fork_rng(devices=[]):
            run = build_run(load_recipe(None, [*common, f"optim.clip_grad_norm={clip}"]))
            start = [p.detach().double().clone() for p in run.model.parameters()]
            train_steps(run, 1)
        end = [p.detach().double() for p in run.model.parameters()]
        moved[clip] = math.sqrt(
            sum(float(((e - s) ** 2).sum()) for e, s in zip(end, start, strict=True))
        )
    assert moved[0.0] > 1e-2  # the unclipped step is larger than the threshold
    assert moved[1e-2] == pytest.approx(1e-2, rel=1e-4)


def test_clipping_off_is_the_no_op_form():
    from trainlab.engine.step import no_clipping

    model = torch.nn.Linear(2, 2)
    assert gradient_clipper(load_recipe(None, []), model) is no_clipping
