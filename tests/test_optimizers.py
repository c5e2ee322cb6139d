"""The recipe's optimizers against torch's own, built by hand with the same parameter groups
(weight decay on weights, none on biases and norm parameters): after a few steps on the same
gradients the weights agree exactly."""

import pytest
import torch
from torch import nn

from trainlab.engine.build import build_optimizer
from trainlab.recipe import load_recipe


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))


def by_hand(name, model, lr, wd):
    weights = [model[0].weight, model[3].weight]
    rest = [model[0].bias, model[1].weight, model[1].bias, model[3].bias]
    groups = [{"params": weights, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]
    return {
        "sgd": lambda: torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True),
        "sgd-plain": lambda: torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=False),
        "adam": lambda: torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.99)),
        "adamw": lambda: torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99)),
        "rmsprop": lambda: torch.optim.RMSprop(groups, lr=lr, alpha=0.99, momentum=0.9),
    }[name]()


@pytest.mark.parametrize("name", ["sgd", "sgd-plain", "adam", "adamw", "rmsprop"])
def test_each_optimizer_steps_as_torchs_own_with_the_same_groups(name):
    nesterov = "false" if name == "sgd-plain" else "true"
    settings = [f"optim.name={name.split('-')[0]}", "optim.lr=0.01", "optim.weight_decay=0.1",
                "optim.beta2=0.99", f"optim.nesterov={nesterov}"]  # fmt: skip
    ours_model, theirs_model = small_net(), small_net()
    ours = build_optimizer(load_recipe(None, settings), ours_model)
    theirs = by_hand(name, theirs_model, 0.01, 0.1)
    assert type(ours) is type(theirs)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(8, 1, 4, 4, generator=g)
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(ours_model.parameters(), theirs_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(ours_model[3].weight, small_net()[3].weight)  # they did move
