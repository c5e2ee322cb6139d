"""An exponential moving average of the weights (``train.ema_decay``), evaluated and checkpointed
in place of the raw weights.

After every optimizer step, ``w_ema <- w_ema + (1 - d_t) (w - w_ema)`` with
``d_t = min(d, (1 + t) / (10 + t))`` at step ``t``: Polyak averaging with an exponential window
(Polyak & Juditsky 1992), warmed up as TensorFlow's ``ExponentialMovingAverage`` does with
``num_updates``, so the first steps are not dragged towards the initialization. Buffers (batch
norm's running statistics) are copied, not averaged. One foreach lerp over all parameters: no host
synchronization.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The averaged copy of ``model``: ``average`` is an ``nn.Module`` of the same shape."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay!r}")
        self.decay = decay
        self.average = copy.deepcopy(model).eval().requires_grad_(False)
        self._params = [p for p in model.parameters()]
        self._avg_params = [p for p in self.average.parameters()]
        self._buffers = [b for b in model.buffers()]
        self._avg_buffers = [b for b in self.average.buffers()]

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self._avg_params, self._params, 1.0 - decay)
        if self._buffers:
            torch._foreach_copy_(self._avg_buffers, self._buffers)

    def state_dict(self) -> dict[str, Any]:
        return self.average.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state)


class NoAverage:
    """``train.ema_decay = 0``: nothing averaged, the raw weights are evaluated."""

    average = None

    def update(self, step: int) -> None:
        return None
