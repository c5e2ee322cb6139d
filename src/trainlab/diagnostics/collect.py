"""Hooks that collect per-layer and per-unit statistics on the device.

Every ``every``-th step is *sampled*: the hooks reduce each watched tensor to a few numbers and
add them to accumulators on the model's device. They hold no ``.item()``, ``bool(tensor)``,
``nonzero`` or branch on a tensor's value, so nothing is read back until
:meth:`Diagnostics.report` and a CUDA stream never waits for the host between reports.

Statistics are summed over *windows* of ``window`` steps: one row per window in the fields of
:class:`LayerSeries` and :class:`WeightSeries`. A ReLU unit whose maximum output over a window
is <= 0 is *dead*: it passed no gradient for any sample. An output is *saturated* where
``|f'(x)| < sat_eps * max|f'|`` (``|tanh| > 0.99`` at the default 0.02). The update-to-weight
ratio ``||W_after - W_before|| / max(||W_before||, sqrt(rows))`` is measured from the optimizer's
actual step, so it is right for Adam, momentum and weight decay alike (``lr ||g|| / ||W||`` is
right only for plain SGD); the lecture's rule of thumb is ~1e-3. ``sqrt(rows)`` is the expected
norm of a gain-1 draw (variance 1 / fan_in over rows x fan_in entries): a layer started below it
(a classifier started small so that the first loss is ln(classes)) is judged against the scale
it grows into, not against its small start (issue 24; before, the plain ``||W_before||``).
In-place activations are fine: a forward hook runs before the next module overwrites the
tensor.

Three facts are kept for the run as a whole. The network's outputs, at sampled steps: how many
fell outside [0, 1] (none: they are probabilities, which a cross-entropy loss would put through
softmax again). Whether each weighted layer's rows (its units' incoming weights) are still all
equal when the report is made: units started as copies (zero or constant init) get equal
gradients and stay copies, the symmetry problem (read once, at the report, not in the step).
And which layers require a gradient.

Besides the windows, two curves are kept whole: every step's training loss (``after_step``, a
copy into a preallocated device buffer) and every sampled step's gradient norm per weighted
layer; the stalled, oscillating and exploding-gradient rules read them. Evaluations a caller
makes during training (``record_evaluation``: the doctor's validation loss) join the report for
the over-fitting rule.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainlab.activations import Activation, activation_info
from trainlab.checks import check_int, check_number

# Every 50th step costs about 1% of the default recipe's training time (docs/benchmarks.md);
# a window of 200 steps then holds 4 sampled batches.
DEFAULT_EVERY = 50
DEFAULT_WINDOW = 200
HIST_BINS = 48
HIST_RANGE = 4.0  # histogram range for unbounded outputs: [-4, 4]
HIST_SAMPLE = 1 << 16  # values per batch and layer read by the histogram (whole samples)
SAT_EPS = 0.02  # saturated where |f'(x)| < SAT_EPS * max|f'| (|tanh| > 0.99)
UNIT_SATURATED = 0.5  # a unit is saturated when more than this fraction of its outputs are
# Rows equal to within this share of the layer's largest weight count as copies: a random layer's
# rows differ by about its std, and copies made by equal gradients differ by rounding at most.
ROWS_EQUAL = 1e-4

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
    nn.ReLU6, nn.Hardtanh, nn.Softplus, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.CELU, nn.RReLU,
    nn.LogSigmoid, nn.Softsign, nn.Tanhshrink,
)  # fmt: skip


def activation_spec(module: nn.Module) -> str | None:
    """The trainlab spec of an activation module (trainlab's or torch.nn's), else None."""
    if isinstance(module, Activation):
        return module.spec
    spec = _TORCH_ACTIVATIONS.get(type(module))
    return None if spec is None else spec(module)


def _is_activation(module: nn.Module) -> bool:
    return activation_spec(module) is not None or isinstance(module, _OTHER_ACTIVATIONS)


def _is_weighted(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, nn.Parameter) and weight.dim() >= 2 and not _is_activation(module)


def _unit_dims(x: Tensor) -> tuple[int, ...]:
    """The dimensions reduced per unit: all but dim 1 of (B, C, ...); dim 0 of a vector."""
    return tuple(d for d in range(x.dim()) if d != 1) if x.dim() >= 2 else (0,)


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
        self.can_die = self.info is not None and self.info.can_die
        # Saturation needs the slope; ReLU's flat half is its dead rule, not saturation.
        self.rates_saturation = (
            self.info is not None and self.info.saturates is not None and not self.can_die
        )
        self.monotone = self.info is not None and self.info.grad_from_output is not None
        self.bins, self.sat_eps = bins, sat_eps
        # Bounded outputs (tanh, sigmoid) get their own range, so saturation shows at the edges.
        lo, hi = self.info.output_range if self.info is not None else (-math.inf, math.inf)
        bounded = math.isfinite(lo) and math.isfinite(hi)
        self.lo, self.hi = (float(lo), float(hi)) if bounded else (-HIST_RANGE, HIST_RANGE)
        self.units: int | None = None
        self.acc: dict[str, Tensor] = {}
        self.history: list[dict[str, Tensor]] = []  # one per window; {} if the layer did not run
        self.first_bad: Tensor | None = None
        self.is_output = False  # its output is the network's: a squashing head, not a hidden layer

    def _zero(self, y: Tensor) -> None:
        self.units = units = y.shape[1] if y.dim() >= 2 else 1
        kw: dict[str, Any] = {"dtype": torch.float64, "device": y.device}
        scalars = ("n", "sum", "sumsq", "zeros", "nonfinite", "unit_n", "within_var", "batches")
        self.acc = {k: torch.zeros((), **kw) for k in scalars}
        self.acc |= {k: torch.zeros(units, **kw) for k in ("unit_sum", "unit_sumsq", "unit_sat")}
        self.acc["hist"] = torch.zeros(self.bins, **kw)
        self.acc["max"] = torch.full((), -math.inf, **kw)
        self.acc["unit_max"] = torch.full((units,), -math.inf, **kw)
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.int64, device=y.device)

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
        dims = _unit_dims(yf)
        per_unit = yf.numel() // max(1, self.units)
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
        part = yf[: max(1, HIST_SAMPLE // per_sample)].reshape(-1)
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

    def window_row(self, acc: dict[str, Tensor]) -> dict[str, Any]:
        """One window's statistics on the host; NaN (empty histogram) if the layer did not run."""
        units, nan = self.units, math.nan
        if not acc:
            row = dict.fromkeys(_ELEMENTS + _UNIT_FRACTIONS, nan) | {"hist": np.zeros(self.bins)}
            return row | {k: np.full(units, nan) for k in _PER_UNIT}
        a = {k: v.cpu().numpy() for k, v in acc.items()}
        act = self.role == "activation"
        good = float(a["n"])  # elements of the units that stayed finite
        mean = float(a["sum"]) / good if good else nan
        per_unit = float(a["unit_n"])
        rates = self.rates_saturation
        unit_sat = a["unit_sat"] / per_unit if rates else np.full(units, nan)
        return {
            "mean": mean,
            "std": math.sqrt(max(float(a["sumsq"]) / good - mean * mean, 0.0)) if good else nan,
            "signal_std": math.sqrt(float(a["within_var"]) / float(a["batches"])),
            "zero_fraction": float(a["zeros"]) / (per_unit * units) if act else nan,
            "max": float(a["max"]) if act else nan,
            "nonfinite": float(a["nonfinite"]),  # units holding NaN/inf
            "dead_fraction": float((a["unit_max"] <= 0).mean()) if self.can_die else nan,
            "saturated_fraction": float((unit_sat > UNIT_SATURATED).mean()) if rates else nan,
            "hist": a["hist"],
            "unit_saturation": unit_sat,
            "unit_mean": a["unit_sum"] / per_unit,
            "unit_max": a["unit_max"] if act else np.full(units, nan),
        }


# The columns of a window's row: element statistics, fractions of units, per-unit values.
_ELEMENTS = ("mean", "std", "signal_std", "zero_fraction", "max", "nonfinite")
_UNIT_FRACTIONS = ("dead_fraction", "saturated_fraction")
_PER_UNIT = ("unit_saturation", "unit_mean", "unit_max")


class _Curve:
    """Values recorded at steps, held on the device in a buffer that doubles when full: adding
    one is a copy kernel, never a host sync (the steps are host ints the caller knows)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.buffer: Tensor | None = None

    def add(self, step: int, value: Tensor) -> None:
        n = len(self.steps)
        if self.buffer is None or n == len(self.buffer):
            grown = torch.full((max(256, 2 * n), *value.shape), math.nan, dtype=torch.float64,
                               device=value.device)  # fmt: skip
            if self.buffer is not None:
                grown[:n] = self.buffer
            self.buffer = grown
        self.buffer[n] = value
        self.steps.append(step)

    def steps_array(self) -> np.ndarray:
        return np.array(self.steps, dtype=np.int64)

    def values_array(self) -> np.ndarray:
        if self.buffer is None:
            return np.zeros(0)
        return self.buffer[: len(self.steps)].cpu().numpy()


class _Weight:
    """Gradient norms and update ratios of one weighted layer, summed over the window."""

    def __init__(self, index: int, name: str, module: nn.Module):
        self.index, self.name, self.type = index, name, type(module).__name__
        self.param: nn.Parameter = module.weight
        self.numel = self.param.numel()

    def rows_identical(self) -> bool:
        """Whether every row (output unit) of the weight equals the first, to ROWS_EQUAL of the
        layer's largest weight (all-zero weights count). Read at the report, not in the step."""
        w = self.param.detach().float().flatten(1)
        if w.shape[0] < 2:
            return False
        spread = (w - w[:1]).abs().amax()
        return bool(spread <= ROWS_EQUAL * w.abs().amax())


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
    nonfinite: np.ndarray  # units holding NaN/inf, left out of the other statistics
    hist: np.ndarray  # (windows, bins) counts of each batch's first samples; edges take outliers
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
    is_output: bool = False  # an activation whose output is the network's (a softmax-like head)


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
    trainable: bool = True  # the weight requires a gradient
    rows_identical: bool = False  # every unit's incoming weights equal, at the report


@torch.no_grad()
def midpoint_nonlinearity(model: nn.Module, images: Tensor) -> float | None:
    """How far the network is from an affine map, on pairs of real inputs: for pairs (a, b) of
    ``images`` (floats, as the model takes them), the largest ``|f((a + b) / 2) - (f(a) + f(b))
    / 2|`` over the largest ``|f(a) - f(b)|``, in eval mode. 0 up to rounding (~1e-6) for a
    network with no nonlinearity between its layers (linear layers, batch norm in eval, average
    pooling): however deep, it is one linear classifier. None if the network's outputs do not
    differ between the inputs (a dead network is not a linear one) or there are no pairs.
    Read once, after training; the training mode is restored."""
    n = len(images) // 2
    if n < 1:
        return None
    a, b = images[:n], images[n : 2 * n]
    was_training = model.training
    model.eval()
    try:
        fa, fb, fm = (model(x).float() for x in (a, b, (a + b) / 2))
    finally:
        model.train(was_training)
    spread = float((fa - fb).abs().amax())
    if not spread > 0 or not math.isfinite(spread):
        return None
    return float((fm - (fa + fb) / 2).abs().amax()) / spread


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _jsonable(value: Any) -> Any:
    """Dataclasses as dicts, arrays as lists with None for non-finite values (JSON has no NaN)."""
    if dataclasses.is_dataclass(value):
        return {k: _jsonable(v) for k, v in value.__dict__.items()}
    if isinstance(value, list) or (isinstance(value, np.ndarray) and value.ndim > 1):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            return value.tolist()
        return [v if math.isfinite(v) else None for v in value.tolist()]
    return value


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
    loss_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))  # every step's training loss
    grad_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    grad_norms: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (sampled, layers)
    evaluations: list[dict[str, float]] = field(default_factory=list)  # record_evaluation's
    output_values: int = 0  # the network's output values seen at sampled steps
    output_outside_unit: int = 0  # how many of them fell outside [0, 1] (or were not finite)
    output_row_sum_error: float | None = None  # max |sum over dim 1 - 1|: 0 for softmax
    midpoint_error: float | None = None  # midpoint_nonlinearity's, where the caller measured it

    def most_used_activation(self) -> str | None:
        """The activation the network's modules use most (its spec), or None if none is seen."""
        kinds = self.activation_kinds
        return max(kinds, key=kinds.get) if kinds else None

    def layer(self, name: str) -> LayerSeries:
        for s in self.layers:
            if s.name == name:
                return s
        raise KeyError(f"no watched layer named {name!r}; watched: {[s.name for s in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(self)

    def until(self, step: int) -> DiagnosticsReport:
        """What the report held once training had reached ``step`` (steps < ``step`` done): the
        windows closed by then, the curves up to it. Rules run on it say when they would have
        fired (the doctor's steps to detection)."""
        keep = int(np.searchsorted(self.window_end, step, side="right"))

        def cut(series: Any) -> Any:
            values = {}
            for f in dataclasses.fields(series):
                v = getattr(series, f.name)
                values[f.name] = v[:keep] if isinstance(v, np.ndarray) else v
            for name in ("first_nonfinite_step", "first_nonfinite_grad_step"):
                if getattr(series, name, None) is not None and getattr(series, name) >= step:
                    values[name] = None
            return type(series)(**values)

        loss_keep, grad_keep = self.loss_steps < step, self.grad_steps < step
        return dataclasses.replace(
            self,
            window_start=self.window_start[:keep],
            window_end=self.window_end[:keep],
            layers=[cut(s) for s in self.layers],
            weights=[cut(w) for w in self.weights],
            loss_steps=self.loss_steps[loss_keep],
            loss=self.loss[loss_keep],
            grad_steps=self.grad_steps[grad_keep],
            grad_norms=self.grad_norms[grad_keep],
            evaluations=[e for e in self.evaluations if e["step"] <= step],
        )


class NoDiagnostics:
    """The no-op form of :class:`Diagnostics`: the engine's step calls the same hooks either way,
    so it has no branch for whether anyone is watching."""

    def begin_step(self, step: int) -> None: ...
    def after_step(self, loss: Tensor) -> None: ...
    def after_backward(self) -> None: ...
    def before_optimizer_step(self) -> None: ...
    def after_optimizer_step(self) -> None: ...
    def snapshot(self, step: int | None = None) -> None: ...
    def record_evaluation(self, step: int, **values: float) -> None: ...
    def detach(self) -> None: ...


class Diagnostics:
    """Attach to any model; call the step methods from the training loop (see the package doc).

    ``every``: sample every this many steps (1: every step). ``window``: steps per window of the
    time series. ``bins``: histogram bins. ``sat_eps``: slope fraction below which an output
    counts as saturated.
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = DEFAULT_EVERY,
        window: int = DEFAULT_WINDOW,
        *,
        bins: int = HIST_BINS,
        sat_eps: float = SAT_EPS,
    ):
        check_int(every, "Diagnostics: every")
        check_int(window, "Diagnostics: window")
        check_int(bins, "Diagnostics: bins", 2)
        check_number(sat_eps, "Diagnostics: sat_eps", 0, 1, lo_open=True, hi_open=True)
        if not isinstance(model, nn.Module):
            raise ValueError(f"Diagnostics: model must be an nn.Module, got {type(model).__name__}")
        self.model, self.every, self.window = model, every, window
        self.sampling = False
        self.step = -1
        self.sampled_steps = 0
        self._window_index = -1
        self._window_bounds: list[list[int]] = []  # [first, last + 1] sampled step per window
        self._step_t: Tensor | None = None
        self._handles: list[Any] = []
        self.probes: list[_Probe] = []
        self.weights: list[_Weight] = []
        self._unit_gain_norm: Tensor | None = None  # sqrt(rows) per weighted layer
        self._grad_acc: dict[str, Tensor] = {}
        self._grad_history: list[dict[str, Tensor]] = []
        self._grad_first_bad: Tensor | None = None
        self._before: list[Tensor] | None = None
        self._input_acc: dict[str, Tensor] = {}
        self.input_name: str | None = None
        # the whole curves: every step's loss, every sampled step's gradient norm per layer
        self._loss = _Curve()
        self._grads = _Curve()
        self._evaluations: list[dict[str, float]] = []
        self._output_acc: dict[str, Tensor] = {}
        self._last_observed: tuple[_Probe, Tensor] | None = None
        self._handles.append(model.register_forward_hook(self._output_hook))
        for name, module in model.named_modules():
            name = name or type(module).__name__
            if _is_activation(module):
                self._watch(name, module, "activation", bins, sat_eps)
            elif _is_weighted(module):
                if self.input_name is None:
                    self.input_name = name
                    self._handles.append(module.register_forward_pre_hook(self._input_hook))
                self.weights.append(_Weight(len(self.weights), name, module))
                self._watch(name, module, "layer", bins, sat_eps)

    def _watch(self, name: str, module: nn.Module, role: str, bins: int, sat_eps: float) -> None:
        probe = _Probe(len(self.probes), name, module, role, bins, sat_eps)
        self.probes.append(probe)

        def hook(_module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if not self.sampling or not isinstance(output, Tensor):
                return
            x = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
            probe.observe(output, x, self._step_t)
            self._last_observed = (probe, output)  # the output hook asks whether it is the net's

        self._handles.append(module.register_forward_hook(hook))

    def _input_hook(self, _module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if not self.sampling or not inputs or not isinstance(inputs[0], Tensor):
            return
        with torch.no_grad():
            x = inputs[0].detach().float()
            dims = _unit_dims(x)
            s = x.sum(dim=dims, dtype=torch.float64).reshape(-1)
            ss = x.square().sum(dim=dims, dtype=torch.float64).reshape(-1)
            acc = self._input_acc
            if not acc:
                acc["n"] = torch.zeros((), dtype=torch.float64, device=x.device)
                acc["sum"], acc["sumsq"] = torch.zeros_like(s), torch.zeros_like(ss)
            acc["n"] += x.numel() // s.numel()
            acc["sum"] += s
            acc["sumsq"] += ss

    def _output_hook(self, _module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        """The network's outputs at sampled steps: how many lie outside [0, 1]. An activation
        module whose output is the network's own (a sigmoid head) is marked as the output."""
        last, self._last_observed = self._last_observed, None
        if not self.sampling or not isinstance(output, Tensor) or output.dim() < 2:
            return
        if last is not None and last[1] is output and last[0].role == "activation":
            last[0].is_output = True
        with torch.no_grad():
            y = output.detach().float()
            acc = self._output_acc
            if not acc:
                kw: dict[str, Any] = {"dtype": torch.float64, "device": y.device}
                acc |= {k: torch.zeros((), **kw) for k in ("n", "outside", "row_sum_error")}
            acc["n"] += y.numel()
            acc["outside"] += ((y < 0) | (y > 1) | ~torch.isfinite(y)).sum()
            row_error = (y.sum(dim=1) - 1).abs().amax().double()
            acc["row_sum_error"] = torch.maximum(acc["row_sum_error"], row_error)

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
            self._window_bounds.append([self.step, self.step])
        self._window_bounds[-1][1] = self.step + 1
        self.sampled_steps += 1
        first = next(itertools.chain(self.model.parameters(), self.model.buffers()), None)
        device = torch.device("cpu") if first is None else first.device
        # A device scalar made by a fill kernel: no host-to-device copy on a CUDA stream.
        self._step_t = torch.full((), self.step, dtype=torch.int64, device=device)

    def after_step(self, loss: Tensor) -> None:
        """The step's training loss, every step (sampled or not), kept on the device: a copy into
        a preallocated buffer, no host sync. The stalled and oscillating rules read this curve."""
        if self._handles:
            self._loss.add(self.step, loss.detach().reshape(()))

    def record_evaluation(self, step: int, **values: float) -> None:
        """An evaluation made during training (host floats the caller already has, such as
        ``val_loss=``, ``val_acc=``): the over-fitting rule compares them over time."""
        self._evaluations.append({"step": int(step), **{k: float(v) for k, v in values.items()}})

    def after_backward(self) -> None:
        """Gradient norms of the weighted layers (sampled steps only)."""
        if not self.sampling or not self.weights:
            return
        with torch.no_grad():
            zero = torch.zeros((), device=self._step_t.device)
            grads = [w.param.grad for w in self.weights]
            norms = [
                zero if g is None else torch.linalg.vector_norm(g.detach().float()) for g in grads
            ]
            norms = torch.stack(norms).double()
            self._grads.add(self.step, norms)  # non-finite norms kept: the rules read them
            finite = torch.isfinite(norms)
            acc = self._grad_window()
            acc["grad_sum"] += torch.where(finite, norms, 0.0)
            acc["grad_n"] += 1
            first = self._grad_first_bad
            self._grad_first_bad = torch.where((first < 0) & ~finite, self._step_t, first)

    def before_optimizer_step(self) -> None:
        """Snapshot the weights (sampled steps only) to measure the step's actual update."""
        if not self.sampling or not self.weights:
            return
        self._before = [w.param.detach().clone() for w in self.weights]

    def after_optimizer_step(self) -> None:
        """``||W_after - W_before|| / ||W_before||`` per weighted layer (sampled steps only).

        Ends the step: forward passes after it (evaluation) are not sampled."""
        sampled, self.sampling = self.sampling, False
        if not sampled or self._before is None:
            return
        with torch.no_grad():
            after = [w.param.detach() for w in self.weights]
            delta = torch._foreach_sub(after, self._before)
            dn = torch.stack(torch._foreach_norm(delta)).double()
            wn = torch.stack(torch._foreach_norm(self._before)).double()
            # A layer still below the scale of a gain-1 draw (a classifier started small, a
            # small Gaussian) is growing into it: its update is judged against that scale.
            if self._unit_gain_norm is None:  # once: the layers' shapes do not change
                rows = [math.sqrt(w.param.shape[0]) for w in self.weights]
                self._unit_gain_norm = torch.tensor(rows, dtype=wn.dtype, device=wn.device)
            ratio = dn / torch.maximum(wn, self._unit_gain_norm).clamp_min(1e-30)
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
        self._close_window()
        self._window_index = -2  # even inside the same `window` span, the next sample opens one

    # -- internals -------------------------------------------------------------------------------
    def _grad_window(self) -> dict[str, Tensor]:
        kw: dict[str, Any] = {"dtype": torch.float64, "device": self._step_t.device}
        if not self._grad_acc:
            per_layer = ("grad_sum", "ratio_sum", "ratio_max", "ratio_bad")
            self._grad_acc = {k: torch.zeros(len(self.weights), **kw) for k in per_layer}
            self._grad_acc |= {k: torch.zeros((), **kw) for k in ("grad_n", "ratio_n")}
        if self._grad_first_bad is None:
            kw["dtype"] = torch.int64
            self._grad_first_bad = torch.full((len(self.weights),), -1, **kw)
        return self._grad_acc

    def _close_window(self) -> None:
        if len(self._grad_history) >= len(self._window_bounds):  # none open
            return
        for probe in self.probes:
            probe.history.append(probe.acc)
            probe.acc = {}
        self._grad_history.append(self._grad_acc)
        self._grad_acc = {}

    # -- the report: the one place that reads back from the device ---------------------------------
    def report(self) -> DiagnosticsReport:
        """Copy the statistics to the host (this is where a GPU synchronises)."""
        self.snapshot()
        starts, ends = np.array(self._window_bounds, dtype=np.int64).reshape(-1, 2).T
        kinds = Counter(p.spec or p.type for p in self.probes if p.role == "activation")
        mean = std = None
        if self._input_acc:
            n = float(self._input_acc["n"])
            mean = self._input_acc["sum"].cpu().numpy() / n
            std = np.sqrt(np.maximum(self._input_acc["sumsq"].cpu().numpy() / n - mean**2, 0.0))
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
            layers=[self._layer_series(p) for p in self.probes if p.units is not None],
            weights=self._weight_series(len(starts)),
            input_channel_mean=mean,
            input_channel_std=std,
            input_name=self.input_name,
            activation_kinds=dict(kinds),
            notes=notes,
            loss_steps=self._loss.steps_array(),
            loss=self._loss.values_array(),
            grad_steps=self._grads.steps_array(),
            grad_norms=self._grads.values_array().reshape(-1, max(1, len(self.weights))),
            evaluations=list(self._evaluations),
            **self._output_facts(),
        )

    def _output_facts(self) -> dict[str, Any]:
        acc = self._output_acc
        if not acc:
            return {}
        return {
            "output_values": int(acc["n"]),
            "output_outside_unit": int(acc["outside"]),
            "output_row_sum_error": _finite_or_none(float(acc["row_sum_error"])),
        }

    def _layer_series(self, p: _Probe) -> LayerSeries:
        rows = [p.window_row(acc) for acc in p.history]

        def column(key: str, width: int | None = None) -> np.ndarray:
            shape = (len(rows),) if width is None else (len(rows), width)
            return np.array([r[key] for r in rows], dtype=np.float64).reshape(shape)

        first = int(p.first_bad)
        return LayerSeries(
            index=p.index,
            name=p.name,
            type=p.type,
            role=p.role,
            spec=p.spec,
            units=p.units,
            hist_range=(p.lo, p.hi),
            **{k: column(k) for k in _ELEMENTS + _UNIT_FRACTIONS},
            hist=column("hist", p.bins),
            **{k: column(k, p.units) for k in _PER_UNIT},
            first_nonfinite_step=first if first >= 0 else None,
            can_die=p.can_die,
            rates_saturation=p.rates_saturation,
            zero_centred=None if p.info is None else bool(p.info.zero_centred),
            saturates=None if p.info is None else p.info.saturates,
            is_output=p.is_output,
        )

    def _weight_series(self, windows: int) -> list[WeightSeries]:
        n = len(self.weights)
        grad, ratio, rmax = (np.full((windows, n), np.nan) for _ in range(3))
        for i, acc in enumerate(self._grad_history[:windows]):
            h = {k: v.cpu().numpy() for k, v in acc.items()}
            if h and h["grad_n"] > 0:
                grad[i] = h["grad_sum"] / h["grad_n"]
            if h and h["ratio_n"] > 0:
                good = np.maximum(h["ratio_n"] - h["ratio_bad"], 1.0)
                # A step whose update or weights went non-finite makes the window's ratio inf.
                ratio[i] = np.where(h["ratio_bad"] > 0, np.inf, h["ratio_sum"] / good)
                rmax[i] = h["ratio_max"]
        first = [-1] * n if self._grad_first_bad is None else self._grad_first_bad.tolist()
        return [
            WeightSeries(
                index=w.index,
                name=w.name,
                type=w.type,
                numel=w.numel,
                grad_norm=grad[:, j],
                update_ratio=ratio[:, j],
                update_ratio_max=rmax[:, j],
                first_nonfinite_grad_step=first[j] if first[j] >= 0 else None,
                trainable=w.param.requires_grad,
                rows_identical=w.rows_identical(),
            )
            for j, w in enumerate(self.weights)
        ]
