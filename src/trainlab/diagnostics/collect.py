"""Hooks that collect per-layer and per-unit statistics on the device.

Every ``every``-th step is *sampled*: the hooks reduce each watched tensor to a few numbers and
add them to accumulators that live on the same device as the model. Nothing is read back by the
host until :meth:`Diagnostics.report`; the hooks contain no ``.item()``, no ``bool(tensor)``, no
``nonzero`` and no Python branch that depends on a tensor's value, so a CUDA stream never waits
for the host between reports. Unsampled steps cost one Python attribute check per hook.

Statistics are gathered over *windows* of ``window`` training steps. At the first sampled step
of a new window the accumulators of the last one are moved into the history (a device-side
copy, still no sync) and zeroed. Per window and per layer:

* element statistics: mean, std, fraction of exact zeros and max (activations only), the
  number of units holding a non-finite value (excluded from the other statistics), and a
  ``bins``-bin histogram over a fixed range (values outside land in the edge bins) of the
  first whole samples of each batch, up to ``HIST_SAMPLE`` values;
* per unit (channel of a (B, C, ...) tensor, feature of a (B, F) one): mean output, maximum
  output (a ReLU unit whose maximum over the window is <= 0 is *dead*: it passed no gradient
  for any sample), and the fraction of outputs in the activation's saturated region, where
  ``|f'(x)| < sat_eps * max|f'|`` (``|tanh| > 0.99`` at the default 0.02; see
  ``trainlab.activations.ActivationInfo.saturated``).

For weighted layers (Linear, Conv, any module whose ``weight`` has >= 2 dimensions):

* the gradient norm ``||dL/dW||`` after ``backward``;
* the update-to-weight ratio ``||W_after - W_before|| / ||W_before||`` measured from the
  optimizer's step itself, so it is right for Adam, momentum and weight decay alike (the usual
  ``lr * ||g|| / ||W||`` is right only for plain SGD); the lecture's rule of thumb is ~1e-3.

The first step at which each layer's activations or gradients held a non-finite value is kept
on the device with ``torch.where``; its resolution is the sampling interval.

What the hooks cannot see: activations applied as functions inside ``forward``
(``F.relu(x)``) have no module to hook; the report names the activation modules it found and
says so. In-place activations (``nn.ReLU(inplace=True)``) are fine: a forward hook runs before
the next module overwrites the tensor, so the preceding layer's pre-activations are read first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainlab.activations import Activation, ActivationInfo, activation_info

__all__ = [
    "Diagnostics",
    "DiagnosticsReport",
    "LayerSeries",
    "WeightSeries",
    "DEFAULT_EVERY",
    "DEFAULT_WINDOW",
    "HIST_BINS",
    "SAT_EPS",
    "activation_spec",
]

# Sampling every 50th step costs about 1% of the default recipe's training time
# (docs/benchmarks/diagnostics.md); a window of 200 steps holds 4 sampled batches at that rate.
DEFAULT_EVERY = 50
DEFAULT_WINDOW = 200
HIST_BINS = 48
HIST_RANGE = 4.0  # histogram range for unbounded outputs: [-4, 4]
HIST_SAMPLE = 1 << 16  # values per batch and layer read by the histogram (whole samples)
SAT_EPS = 0.02  # saturated where |f'(x)| < SAT_EPS * max|f'| (|tanh| > 0.99)

# torch.nn activation modules -> the trainlab spec with the same formula.
_TORCH_ACTIVATIONS: dict[type[nn.Module], Any] = {
    nn.ReLU: lambda m: "relu",
    nn.LeakyReLU: lambda m: f"leaky_relu({m.negative_slope})",
    nn.PReLU: lambda m: "prelu",
    nn.ELU: lambda m: f"elu({m.alpha})",
    nn.SELU: lambda m: "selu",
    nn.GELU: lambda m: f"gelu('{m.approximate}')" if m.approximate != "none" else "gelu",
    nn.SiLU: lambda m: "silu",
    nn.Sigmoid: lambda m: "sigmoid",
    nn.Tanh: lambda m: "tanh",
}
# Activation modules without a trainlab formula: statistics only, no dead/saturation rule.
_OTHER_ACTIVATIONS = (
    nn.ReLU6,
    nn.Hardtanh,
    nn.Softplus,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.CELU,
    nn.RReLU,
    nn.LogSigmoid,
    nn.Softsign,
    nn.Tanhshrink,
)


def activation_spec(module: nn.Module) -> str | None:
    """The trainlab spec of an activation module (trainlab's or torch.nn's), else None."""
    if isinstance(module, Activation):
        return module.spec
    for cls, spec in _TORCH_ACTIVATIONS.items():
        if type(module) is cls:
            return spec(module)
    return None


def _is_activation(module: nn.Module) -> bool:
    return activation_spec(module) is not None or isinstance(module, _OTHER_ACTIVATIONS)


def _is_weighted(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, nn.Parameter) and weight.dim() >= 2 and not _is_activation(module)


def _hist_range(info: ActivationInfo | None) -> tuple[float, float]:
    """Bounded outputs (tanh, sigmoid) get their own range, so saturation shows at the edges."""
    if info is not None:
        lo, hi = info.output_range
        if math.isfinite(lo) and math.isfinite(hi):
            return float(lo), float(hi)
    return -HIST_RANGE, HIST_RANGE


class _Probe:
    """Accumulators for one watched tensor (an activation's output or a layer's output)."""

    def __init__(
        self, index: int, name: str, module: nn.Module, role: str, bins: int, sat_eps: float
    ):
        self.index, self.name, self.role = index, name, role
        self.type = type(module).__name__
        self.spec = activation_spec(module) if role == "activation" else None
        self.info = activation_info(self.spec) if self.spec is not None else None
        self.inplace = bool(getattr(module, "inplace", False))
        # Saturation needs the slope; ReLU's flat half is its dead rule, not saturation.
        self.rates_saturation = (
            self.info is not None and self.info.saturates is not None and not self.info.can_die
        )
        self.monotone = self.info is not None and self.info.grad_from_output is not None
        self.bins, self.sat_eps = bins, sat_eps
        self.lo, self.hi = _hist_range(self.info)
        self.units: int | None = None
        self.acc: dict[str, Tensor] = {}
        self.history: list[dict[str, Tensor]] = []
        self.first_bad: Tensor | None = None

    def _zero(self, y: Tensor) -> None:
        dev, f64 = y.device, torch.float64
        units = y.shape[1] if y.dim() >= 2 else 1
        self.units = units
        self.acc = {
            "n": torch.zeros((), dtype=f64, device=dev),
            "sum": torch.zeros((), dtype=f64, device=dev),
            "sumsq": torch.zeros((), dtype=f64, device=dev),
            "zeros": torch.zeros((), dtype=f64, device=dev),
            "nonfinite": torch.zeros((), dtype=f64, device=dev),
            "max": torch.full((), -math.inf, dtype=f64, device=dev),
            "hist": torch.zeros(self.bins, dtype=f64, device=dev),
            "unit_n": torch.zeros((), dtype=f64, device=dev),
            "unit_sum": torch.zeros(units, dtype=f64, device=dev),
            "unit_sumsq": torch.zeros(units, dtype=f64, device=dev),
            "within_var": torch.zeros((), dtype=f64, device=dev),
            "batches": torch.zeros((), dtype=f64, device=dev),
            "unit_max": torch.full((units,), -math.inf, dtype=f64, device=dev),
            "unit_sat": torch.zeros(units, dtype=f64, device=dev),
        }
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.int64, device=dev)

    def close_window(self) -> None:
        if self.acc and self.history is not None:
            self.history.append(self.acc)
        self.acc = {}

    @torch.no_grad()
    def observe(self, y: Tensor, x: Tensor | None, step: Tensor) -> None:
        """Add one batch to the window. ``x`` is the activation's input (for non-monotone ones).

        Each full-size pass is costly at every-step sampling, so the element statistics are
        built from per-unit reductions (sum and norm: two passes; activations add one for the
        maximum and one for zeros); the histogram reads a slice of the batch.
        """
        if not self.acc:
            self._zero(y)
        a = self.acc
        yf = y.detach().float()
        dims = tuple(d for d in range(yf.dim()) if d != 1) if yf.dim() >= 2 else (0,)
        per_unit = yf.numel() // max(1, self.units or 1)
        s = yf.sum(dim=dims).double().reshape(-1)
        ss = torch.linalg.vector_norm(yf, dim=dims).double().reshape(-1).square()
        # A NaN or inf anywhere in a unit makes its sum non-finite: no extra pass to find it.
        ok = torch.isfinite(s) & torch.isfinite(ss)
        bad = (~ok).sum()
        self.first_bad = torch.where((self.first_bad < 0) & (bad > 0), step, self.first_bad)
        s, ss = torch.where(ok, s, 0.0), torch.where(ok, ss, 0.0)
        a["nonfinite"] += bad
        a["n"] += ok.sum() * per_unit
        a["sum"] += s.sum()
        a["sumsq"] += ss.sum()
        a["unit_n"] += per_unit
        a["unit_sum"] += s
        a["unit_sumsq"] += ss
        if self.role == "activation":  # zeros and maxima say nothing about pre-activations
            a["zeros"] += (yf == 0).sum()
            top = yf.amax(dim=dims).double().reshape(-1)  # NaN if the unit holds a NaN
            torch.fmax(a["max"], top.max(), out=a["max"])
            torch.maximum(a["unit_max"], top, out=a["unit_max"])
        # Variance over this batch's samples, per unit: the signal a layer passes on. Taken
        # per batch so that weights changing between sampled steps do not count as signal.
        m = s / per_unit
        a["within_var"] += (ss / per_unit - m * m).clamp_min(0).mean()
        a["batches"] += 1
        self._histogram(yf)
        self._saturation(yf, x, dims)

    def _histogram(self, yf: Tensor) -> None:
        # The first samples of the (shuffled) batch, at most HIST_SAMPLE values: a slice of
        # dim 0 is a view, so nothing is copied but what is counted.
        per_sample = max(1, yf[0].numel()) if yf.dim() >= 1 and len(yf) else 1
        take = max(1, HIST_SAMPLE // per_sample)
        part = yf[:take].reshape(-1)
        part = torch.where(torch.isfinite(part), part, 0.0)
        # index_add_ into fixed bins: unlike histc/bincount it never asks the host for a size.
        scale = self.bins / (self.hi - self.lo)
        idx = ((part - self.lo) * scale).floor_().clamp_(0, self.bins - 1).long()
        ones = torch.ones(1, dtype=torch.float64, device=yf.device).expand(idx.numel())
        self.acc["hist"].index_add_(0, idx, ones)

    def _saturation(self, yf: Tensor, x: Tensor | None, dims: tuple[int, ...]) -> None:
        if not self.rates_saturation:
            return
        if self.monotone:
            sat = self.info.saturated_from_output(yf, self.sat_eps)
        elif x is not None and not self.inplace:
            sat = self.info.saturated(x.detach().float(), self.sat_eps)
        else:  # non-monotone and its input was overwritten in place: undecidable
            return
        self.acc["unit_sat"] += sat.sum(dim=dims).reshape(-1)


class _Weight:
    """Gradient norms and update ratios of one weighted layer, summed over the window."""

    def __init__(self, index: int, name: str, module: nn.Module):
        self.index, self.name, self.type = index, name, type(module).__name__
        self.param: nn.Parameter = module.weight
        self.numel = self.param.numel()


@dataclass
class LayerSeries:
    """One watched tensor's statistics, one row per window (numpy, on the host)."""

    index: int
    name: str
    type: str
    role: str  # "activation" (an activation module's output) or "layer" (Linear/Conv output)
    spec: str | None
    units: int
    hist_range: tuple[float, float]
    mean: np.ndarray
    std: np.ndarray
    signal_std: np.ndarray  # sqrt(mean over batches and units of the variance over a batch)
    zero_fraction: np.ndarray
    max: np.ndarray
    nonfinite: np.ndarray
    hist: np.ndarray  # (windows, bins) counts
    dead_fraction: np.ndarray  # fraction of units with max output <= 0 (only for can-die kinds)
    saturated_fraction: np.ndarray  # fraction of units saturated on > UNIT_SATURATED of outputs
    unit_saturation: np.ndarray  # (windows, units): fraction of each unit's outputs saturated
    unit_mean: np.ndarray  # (windows, units)
    unit_max: np.ndarray  # (windows, units)
    first_nonfinite_step: int | None
    can_die: bool
    rates_saturation: bool
    zero_centred: bool | None
    saturates: str | None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k, v in out.items():
            if isinstance(v, np.ndarray):
                out[k] = _json_array(v)
        return out


@dataclass
class WeightSeries:
    index: int
    name: str
    type: str
    numel: int
    grad_norm: np.ndarray  # (windows,) mean over the window's sampled steps
    update_ratio: np.ndarray  # (windows,) mean of ||dW|| / ||W|| over sampled steps (inf: NaN/inf)
    update_ratio_max: np.ndarray  # (windows,)
    first_nonfinite_grad_step: int | None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k, v in out.items():
            if isinstance(v, np.ndarray):
                out[k] = _json_array(v)
        return out


def _json_array(a: np.ndarray) -> Any:
    """Lists with None for non-finite values (JSON has no NaN)."""
    if a.dtype.kind == "f":
        return (
            [None if not math.isfinite(v) else v for v in a.reshape(-1).tolist()]
            if a.ndim == 1
            else [_json_array(r) for r in a]
        )
    return a.tolist()


@dataclass
class DiagnosticsReport:
    """Everything the hooks saw, on the host. Windows are ``[window_start[i], window_end[i])``."""

    every: int
    window: int
    sampled_steps: int
    window_start: np.ndarray
    window_end: np.ndarray
    layers: list[LayerSeries]
    weights: list[WeightSeries]
    input_channel_mean: np.ndarray | None  # per channel of the first weighted layer's input
    input_channel_std: np.ndarray | None
    input_name: str | None
    activation_kinds: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def layer(self, name: str) -> LayerSeries:
        for s in self.layers:
            if s.name == name:
                return s
        raise KeyError(f"no watched layer named {name!r}; watched: {[s.name for s in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "every": self.every,
            "window": self.window,
            "sampled_steps": self.sampled_steps,
            "window_start": self.window_start.tolist(),
            "window_end": self.window_end.tolist(),
            "layers": [s.to_dict() for s in self.layers],
            "weights": [w.to_dict() for w in self.weights],
            "input_name": self.input_name,
            "input_channel_mean": None
            if self.input_channel_mean is None
            else _json_array(self.input_channel_mean),
            "input_channel_std": None
            if self.input_channel_std is None
            else _json_array(self.input_channel_std),
            "activation_kinds": dict(self.activation_kinds),
            "notes": list(self.notes),
        }


class NoDiagnostics:
    """The no-op form of :class:`Diagnostics`: the engine's step calls the same hooks either way,
    so it has no branch for whether anyone is watching."""

    def begin_step(self, step: int) -> None: ...
    def after_backward(self) -> None: ...
    def before_optimizer_step(self) -> None: ...
    def after_optimizer_step(self) -> None: ...
    def snapshot(self, step: int | None = None) -> None: ...
    def detach(self) -> None: ...


class Diagnostics:
    """Attach to any model; call the step methods from the training loop (see the package doc).

    ``every``: sample every this many steps (1: every step). ``window``: steps per window of the
    time series. ``bins``: histogram bins. ``sat_eps``: slope fraction below which an output
    counts as saturated. ``unit_saturated``: a unit is saturated when more than this fraction of
    its outputs in a window are.
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = DEFAULT_EVERY,
        window: int = DEFAULT_WINDOW,
        *,
        bins: int = HIST_BINS,
        sat_eps: float = SAT_EPS,
        unit_saturated: float = 0.5,
        layers: bool = True,
    ):
        _check_int("every", every)
        _check_int("window", window)
        _check_int("bins", bins, lo=2)
        if not (isinstance(sat_eps, (int, float)) and 0 < sat_eps < 1):
            raise ValueError(f"Diagnostics: sat_eps must be in (0, 1), got {sat_eps!r}")
        if not (isinstance(unit_saturated, (int, float)) and 0 <= unit_saturated < 1):
            raise ValueError(
                f"Diagnostics: unit_saturated must be in [0, 1), got {unit_saturated!r}"
            )
        if not isinstance(model, nn.Module):
            raise ValueError(f"Diagnostics: model must be an nn.Module, got {type(model).__name__}")
        self.model, self.every, self.window = model, every, window
        self.unit_saturated = float(unit_saturated)
        self.sampling = False
        self.step = -1
        self.sampled_steps = 0
        self._window_index = -1
        self._window_bounds: list[tuple[int, int]] = []
        self._step_t: Tensor | None = None
        self._handles: list[Any] = []
        self.probes: list[_Probe] = []
        self.weights: list[_Weight] = []
        self._grad_acc: dict[str, Tensor] = {}
        self._grad_history: list[dict[str, Tensor]] = []
        self._grad_first_bad: Tensor | None = None
        self._before: list[Tensor] | None = None
        self._input_acc: dict[str, Tensor] = {}
        self.input_name: str | None = None
        self._attach(bins, sat_eps, layers)

    # -- set-up ----------------------------------------------------------------------------------
    def _attach(self, bins: int, sat_eps: float, layers: bool) -> None:
        for name, module in self.model.named_modules():
            name = name or type(module).__name__
            if _is_activation(module):
                self._watch(name, module, "activation", bins, sat_eps)
            elif _is_weighted(module):
                if self.input_name is None:
                    self.input_name = name
                    self._handles.append(module.register_forward_pre_hook(self._input_hook))
                self.weights.append(_Weight(len(self.weights), name, module))
                if layers:
                    self._watch(name, module, "layer", bins, sat_eps)

    def _watch(self, name: str, module: nn.Module, role: str, bins: int, sat_eps: float) -> None:
        probe = _Probe(len(self.probes), name, module, role, bins, sat_eps)
        self.probes.append(probe)

        def hook(_module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if not self.sampling or not isinstance(output, Tensor):
                return
            x = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
            probe.observe(output, x, self._step_t)

        self._handles.append(module.register_forward_hook(hook))

    def _input_hook(self, _module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if not self.sampling or not inputs or not isinstance(inputs[0], Tensor):
            return
        with torch.no_grad():
            x = inputs[0].detach().float()
            dims = tuple(d for d in range(x.dim()) if d != 1) if x.dim() >= 2 else (0,)
            n = x.numel() // (x.shape[1] if x.dim() >= 2 else 1)
            s = x.sum(dim=dims, dtype=torch.float64).reshape(-1)
            ss = x.square().sum(dim=dims, dtype=torch.float64).reshape(-1)
            if not self._input_acc:
                self._input_acc = {
                    "n": torch.zeros((), dtype=torch.float64, device=x.device),
                    "sum": torch.zeros_like(s),
                    "sumsq": torch.zeros_like(ss),
                }
            self._input_acc["n"] += n
            self._input_acc["sum"] += s
            self._input_acc["sumsq"] += ss

    def detach(self) -> None:
        """Remove every hook; the statistics gathered so far stay readable."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.sampling = False

    # -- the training loop's calls ---------------------------------------------------------------
    def begin_step(self, step: int) -> None:
        """Start training step ``step`` (0-based, increasing): decides whether it is sampled."""
        self.step = int(step)
        self.sampling = bool(self._handles) and self.step % self.every == 0
        if not self.sampling:
            return
        index = self.step // self.window
        if index != self._window_index:
            self._close_window()
            self._window_index = index
            self._window_bounds.append((self.step, self.step))
        start, _ = self._window_bounds[-1]
        self._window_bounds[-1] = (start, self.step + 1)
        self.sampled_steps += 1
        device = self._device()
        # A device scalar made by a fill kernel: no host-to-device copy on a CUDA stream.
        self._step_t = torch.full((), self.step, dtype=torch.int64, device=device)

    def after_backward(self) -> None:
        """Gradient norms of the weighted layers (sampled steps only)."""
        if not self.sampling or not self.weights:
            return
        with torch.no_grad():
            grads = [w.param.grad for w in self.weights]
            norms = torch.stack(
                [
                    torch.linalg.vector_norm(g.detach().float())
                    if g is not None
                    else torch.zeros((), device=self._step_t.device)
                    for g in grads
                ]
            ).double()
            acc = self._grad_window()
            acc["grad_sum"] += torch.where(torch.isfinite(norms), norms, 0.0)
            acc["grad_n"] += 1
            bad = ~torch.isfinite(norms)
            first = self._grad_first_bad
            self._grad_first_bad = torch.where((first < 0) & bad, self._step_t, first)

    def before_optimizer_step(self) -> None:
        """Snapshot the weights (sampled steps only) to measure the step's actual update."""
        if not self.sampling or not self.weights:
            return
        self._before = [w.param.detach().clone() for w in self.weights]

    def after_optimizer_step(self) -> None:
        """``||W_after - W_before|| / ||W_before||`` per weighted layer (sampled steps only).

        Ends the step: forward passes after it (evaluation) are not sampled."""
        if not self.sampling or self._before is None:
            self.sampling = False
            return
        self.sampling = False
        with torch.no_grad():
            after = [w.param.detach() for w in self.weights]
            delta = torch._foreach_sub(after, self._before)
            dn = torch.stack(torch._foreach_norm(delta)).double()
            wn = torch.stack(torch._foreach_norm(self._before)).double()
            ratio = dn / wn.clamp_min(1e-30)
            acc = self._grad_window()
            finite = torch.isfinite(ratio)
            acc["ratio_sum"] += torch.where(finite, ratio, 0.0)
            acc["ratio_bad"] += (~finite).double()
            acc["ratio_max"] = torch.where(finite, torch.maximum(acc["ratio_max"], ratio), math.inf)
            acc["ratio_n"] += 1
        self._before = None

    def snapshot(self, step: int | None = None) -> None:
        """End the current window now (e.g. at an epoch's end); the next sample opens a new one.

        No host sync. ``step`` (the engine's current step) is accepted for the call's symmetry
        with ``begin_step``; the window bounds are the sampled steps themselves.
        """
        del step
        self._close_window()
        self._window_index = -2  # even inside the same `window` span, the next sample opens one

    # -- internals -------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        for b in self.model.buffers():
            return b.device
        return torch.device("cpu")

    def _grad_window(self) -> dict[str, Tensor]:
        if not self._grad_acc:
            dev, n = self._step_t.device, len(self.weights)
            z = lambda: torch.zeros(n, dtype=torch.float64, device=dev)  # noqa: E731
            self._grad_acc = {
                "grad_sum": z(),
                "grad_n": torch.zeros((), dtype=torch.float64, device=dev),
                "ratio_sum": z(),
                "ratio_max": z(),
                "ratio_bad": z(),
                "ratio_n": torch.zeros((), dtype=torch.float64, device=dev),
            }
        if self._grad_first_bad is None:
            self._grad_first_bad = torch.full(
                (len(self.weights),), -1, dtype=torch.int64, device=self._step_t.device
            )
        return self._grad_acc

    def _close_window(self) -> None:
        if not self._window_bounds or len(self._grad_history) >= len(self._window_bounds):
            return
        for probe in self.probes:
            if not probe.acc:  # the layer did not run in this window: keep rows aligned
                probe.history.append({})
            probe.close_window()
        self._grad_history.append(self._grad_acc)
        self._grad_acc = {}

    # -- the report: the one place that reads back from the device ---------------------------------
    def report(self) -> DiagnosticsReport:
        """Copy the statistics to the host (this is where a GPU synchronises)."""
        self._close_window()
        self._window_index = -2
        starts = np.array([a for a, _ in self._window_bounds], dtype=np.int64)
        ends = np.array([b for _, b in self._window_bounds], dtype=np.int64)
        layers = [self._layer_series(p) for p in self.probes if p.units is not None]
        kinds: dict[str, int] = {}
        for p in self.probes:
            if p.role == "activation":
                key = p.spec or p.type
                kinds[key] = kinds.get(key, 0) + 1
        mean = std = None
        if self._input_acc:
            n = float(self._input_acc["n"])
            s = self._input_acc["sum"].cpu().numpy()
            ss = self._input_acc["sumsq"].cpu().numpy()
            mean = s / n
            std = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
        notes = [
            "Activations applied as functions inside forward (F.relu(x), torch.tanh(x)) are "
            "not seen: only activation modules are hooked.",
        ]
        if any(p.inplace for p in self.probes if p.role == "activation"):
            notes.append(
                "In-place activations are read by their own hook before the next "
                "module runs; the layer before them is read before it is overwritten."
            )
        if not kinds:
            notes.append(
                "No activation modules were found: if the model applies its "
                "activations as functions, dead and saturated units cannot be seen."
            )
        return DiagnosticsReport(
            every=self.every,
            window=self.window,
            sampled_steps=self.sampled_steps,
            window_start=starts,
            window_end=ends,
            layers=layers,
            weights=self._weight_series(len(starts)),
            input_channel_mean=mean,
            input_channel_std=std,
            input_name=self.input_name,
            activation_kinds=kinds,
            notes=notes,
        )

    def _layer_series(self, p: _Probe) -> LayerSeries:
        rows = p.history
        units = int(p.units or 0)
        nan = float("nan")

        def host(row: dict[str, Tensor]) -> dict[str, np.ndarray]:
            return {k: v.cpu().numpy() for k, v in row.items()}

        cols: dict[str, list[Any]] = {
            k: []
            for k in (
                "mean",
                "std",
                "signal_std",
                "zero_fraction",
                "max",
                "nonfinite",
                "hist",
                "dead_fraction",
                "saturated_fraction",
                "unit_saturation",
                "unit_mean",
                "unit_max",
            )
        }
        for row in map(host, rows):
            if not row:
                for k in (
                    "mean",
                    "std",
                    "signal_std",
                    "zero_fraction",
                    "max",
                    "nonfinite",
                    "dead_fraction",
                    "saturated_fraction",
                ):
                    cols[k].append(nan)
                cols["hist"].append(np.zeros(p.bins))
                for k in ("unit_saturation", "unit_mean", "unit_max"):
                    cols[k].append(np.full(units, nan))
                continue
            good = float(row["n"])  # elements of the units that stayed finite
            m = float(row["sum"]) / good if good else nan
            cols["mean"].append(m)
            cols["std"].append(
                math.sqrt(max(float(row["sumsq"]) / good - m * m, 0.0)) if good else nan
            )
            act = p.role == "activation"
            cols["zero_fraction"].append(
                float(row["zeros"]) / (float(row["unit_n"]) * units) if act else nan
            )
            cols["max"].append(float(row["max"]) if act else nan)
            cols["nonfinite"].append(float(row["nonfinite"]))  # units holding NaN/inf
            cols["hist"].append(row["hist"])
            un = float(row["unit_n"])
            umean = row["unit_sum"] / un
            cols["signal_std"].append(math.sqrt(float(row["within_var"]) / float(row["batches"])))
            cols["unit_mean"].append(umean)
            cols["unit_max"].append(row["unit_max"] if act else np.full(units, nan))
            dead = (row["unit_max"] <= 0).mean() if p.info is not None and p.info.can_die else nan
            cols["dead_fraction"].append(float(dead))
            usat = row["unit_sat"] / un
            cols["unit_saturation"].append(usat if p.rates_saturation else np.full(units, nan))
            cols["saturated_fraction"].append(
                float((usat > self.unit_saturated).mean()) if p.rates_saturation else nan
            )
        first = int(p.first_bad) if p.first_bad is not None else -1
        stack = lambda v, w: np.array(v, dtype=np.float64).reshape(len(rows), w)  # noqa: E731
        return LayerSeries(
            index=p.index,
            name=p.name,
            type=p.type,
            role=p.role,
            spec=p.spec,
            units=units,
            hist_range=(p.lo, p.hi),
            mean=np.array(cols["mean"]),
            std=np.array(cols["std"]),
            signal_std=np.array(cols["signal_std"]),
            zero_fraction=np.array(cols["zero_fraction"]),
            max=np.array(cols["max"]),
            nonfinite=np.array(cols["nonfinite"]),
            hist=stack(cols["hist"], p.bins),
            dead_fraction=np.array(cols["dead_fraction"]),
            saturated_fraction=np.array(cols["saturated_fraction"]),
            unit_saturation=stack(cols["unit_saturation"], units),
            unit_mean=stack(cols["unit_mean"], units),
            unit_max=stack(cols["unit_max"], units),
            first_nonfinite_step=first if first >= 0 else None,
            can_die=bool(p.info is not None and p.info.can_die),
            rates_saturation=p.rates_saturation,
            zero_centred=None if p.info is None else bool(p.info.zero_centred),
            saturates=None if p.info is None else p.info.saturates,
        )

    def _weight_series(self, windows: int) -> list[WeightSeries]:
        n = len(self.weights)
        grad = np.full((windows, n), np.nan)
        ratio = np.full((windows, n), np.nan)
        rmax = np.full((windows, n), np.nan)
        for i, row in enumerate(self._grad_history[:windows]):
            if not row:
                continue
            h = {k: v.cpu().numpy() for k, v in row.items()}
            if h["grad_n"] > 0:
                grad[i] = h["grad_sum"] / h["grad_n"]
            if h["ratio_n"] > 0:
                good = np.maximum(h["ratio_n"] - h["ratio_bad"], 1.0)
                # A step whose update or weights went non-finite makes the window's ratio inf.
                ratio[i] = np.where(h["ratio_bad"] > 0, np.inf, h["ratio_sum"] / good)
                rmax[i] = h["ratio_max"]
        first = (
            self._grad_first_bad.cpu().numpy()
            if self._grad_first_bad is not None
            else np.full(n, -1)
        )
        return [
            WeightSeries(
                index=w.index,
                name=w.name,
                type=w.type,
                numel=w.numel,
                grad_norm=grad[:, j],
                update_ratio=ratio[:, j],
                update_ratio_max=rmax[:, j],
                first_nonfinite_grad_step=int(first[j]) if first[j] >= 0 else None,
            )
            for j, w in enumerate(self.weights)
        ]


def _check_int(name: str, value: Any, lo: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"Diagnostics: {name} must be an int >= {lo}, got {value!r}")
