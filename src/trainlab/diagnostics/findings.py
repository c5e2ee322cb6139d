"""Rules that turn the statistics into plain sentences tied to a remedy.

Each rule has a stated threshold (the module constants below) and looks at the windows of a
:class:`DiagnosticsReport`. A finding names the layer(s), the step since which it holds, what
was measured and what to change. The thresholds are set so that healthy nets (Kaiming-initialised
ReLU nets, Xavier-initialised tanh nets, standardized inputs, ordinary learning rates) raise no
finding, and each planted fault in tests/test_diagnostics.py raises its own.

=====================  =========================================================================
rule                   fires when
=====================  =========================================================================
``non_finite``         any activation or gradient held NaN/inf (first layer and step are named)
``dead_units``         >= DEAD_FRACTION of a ReLU layer's units never fired over the last window
``saturated``          >= SATURATED_FRACTION of a sigmoid/tanh-like layer's units were saturated
                       (|f'| < 0.02 max|f'|) on more than half of their outputs, last window
``input_not_centred``  the first layer's input has |mean| > INPUT_MEAN_RATIO * std (per channel)
``not_zero_centred``   a non-zero-centred saturating activation (sigmoid) has
                       |mean| > OUTPUT_MEAN_RATIO * std: the next layer's gradients share a sign
``collapse``           activation std falls more than DEPTH_RATIO x from the first to the last
                       activation layer (LeCun et al. 1998; Glorot & Bengio 2010)
``explode``            ... or grows more than DEPTH_RATIO x
``vanishing_grad``     the first weighted layer's RMS gradient is < GRAD_RATIO x the last one's
``large_updates``      a layer's update-to-weight ratio ||dW|| / ||W|| exceeds UPDATE_RATIO_HIGH
                       (the lecture's rule of thumb is ~1e-3)
=====================  =========================================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainlab.diagnostics.collect import DiagnosticsReport, LayerSeries

DEAD_FRACTION = 0.4
SATURATED_FRACTION = 0.3
INPUT_MEAN_RATIO = 0.5
OUTPUT_MEAN_RATIO = 1.0
DEPTH_RATIO = 10.0
GRAD_RATIO = 1e-3
UPDATE_RATIO_HIGH = 0.1

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One problem: ``code`` names the rule; ``message`` says what, ``advice`` what to change."""

    code: str
    layers: list[str]
    severity: str
    message: str
    advice: str
    since_step: int | None = None
    value: float | None = None
    threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("value", "threshold"):
            if out[key] is not None and not math.isfinite(out[key]):
                out[key] = None
        return out

    def sentence(self) -> str:
        return f"{self.message}: {self.advice}"


def findings(report: DiagnosticsReport) -> list[Finding]:
    """All findings, errors first, then in layer order."""
    rules = (_non_finite, _dead, _saturated, _input_centred, _output_centred, _depth, _vanishing,
             _updates)  # fmt: skip
    found = [finding for rule in rules for finding in rule(report)]
    return sorted(found, key=lambda f: SEVERITIES.index(f.severity))


# -- helpers -------------------------------------------------------------------------------------
def _since(report: DiagnosticsReport, flagged: np.ndarray) -> int | None:
    """Start step of the run of flagged windows that reaches the last window."""
    if len(flagged) == 0 or not flagged[-1]:
        return None
    clear = np.flatnonzero(~flagged)
    return int(report.window_start[clear[-1] + 1 if len(clear) else 0])


def _when(since: int | None) -> str:
    return f" since step {since}" if since is not None else ""


def _activation_layers(report: DiagnosticsReport) -> list[LayerSeries]:
    return [s for s in report.layers if s.role == "activation"]


def _ranges(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]} ({len(names)} layers)"


def _init_advice(spec: str | None) -> str:
    from trainlab.init import gain

    if spec is None:
        return "use Kaiming initialization with the activation's gain, or add batch norm"
    name = spec.split("(")[0]
    g = gain(spec)
    if name in ("tanh", "sigmoid"):
        return (
            f"use Xavier initialization (std 1/sqrt(fan_in), or Kaiming with the exact gain "
            f"g = {g:.3g} for {spec}), or add batch norm"
        )
    if name == "selu":
        return "use LeCun normal initialization (std 1/sqrt(fan_in)) for selu"
    return f"use Kaiming initialization with gain g = {g:.3g} for {spec}, or add batch norm"


def _last(a: np.ndarray) -> float:
    finite = a[np.isfinite(a)]
    return float(finite[-1]) if len(finite) else float("nan")


# -- rules ---------------------------------------------------------------------------------------
def _non_finite(report: DiagnosticsReport) -> list[Finding]:
    # Within a step the forward pass (activations, in layer order) precedes the backward.
    events = [
        (s.first_nonfinite_step, 0, s.index, s.name, "activations")
        for s in report.layers
        if s.first_nonfinite_step is not None
    ]
    events += [
        (w.first_nonfinite_grad_step, 1, w.index, w.name, "gradients")
        for w in report.weights
        if w.first_nonfinite_grad_step is not None
    ]
    if not events:
        return []
    step, _, _, name, what = min(events)
    return [
        Finding(
            "non_finite",
            [name],
            "error",
            f"non-finite {what} first seen at step {step} in {name} (checked every {report.every} "
            "steps)",
            "lower the learning rate, clip the gradient norm, or use a schedule with warm-up; "
            "check the input for NaN",
            since_step=step,
        )
    ]


def _dead(report: DiagnosticsReport) -> list[Finding]:
    out = []
    for s in _activation_layers(report):
        frac = _last(s.dead_fraction)
        if not (s.can_die and frac >= DEAD_FRACTION):
            continue
        since = _since(report, np.nan_to_num(s.dead_fraction) >= DEAD_FRACTION)
        out.append(
            Finding(
                "dead_units",
                [s.name],
                "warning",
                f"{s.name} ({s.spec or s.type}): {100 * frac:.0f}% of units dead{_when(since)} "
                f"(never positive over a window of {report.window} steps)",
                "lower the learning rate, or use Leaky ReLU or ELU; "
                "check for a large negative bias",
                since_step=since,
                value=frac,
                threshold=DEAD_FRACTION,
            )
        )
    return out


def _saturated(report: DiagnosticsReport) -> list[Finding]:
    hits = [
        s
        for s in _activation_layers(report)
        if s.rates_saturation and _last(s.saturated_fraction) >= SATURATED_FRACTION
    ]
    if not hits:
        return []
    fracs = [_last(s.saturated_fraction) for s in hits]
    sinces = [
        _since(report, np.nan_to_num(s.saturated_fraction) >= SATURATED_FRACTION) for s in hits
    ]
    since = min((x for x in sinces if x is not None), default=None)
    kinds = sorted({s.spec or s.type for s in hits})
    names = [s.name for s in hits]
    return [
        Finding(
            "saturated",
            names,
            "warning",
            f"{'/'.join(kinds)} layers {_ranges(names)} saturated{_when(since)}: up to "
            f"{100 * max(fracs):.0f}% of units have |f'| below 2% of its peak on most outputs",
            _init_advice(hits[0].spec) + "; saturated units pass almost no gradient",
            since_step=since,
            value=max(fracs),
            threshold=SATURATED_FRACTION,
        )
    ]


def _input_centred(report: DiagnosticsReport) -> list[Finding]:
    mean, std = report.input_channel_mean, report.input_channel_std
    if mean is None or std is None or len(mean) == 0:
        return []
    if len(mean) > 4:  # features of a flattened image: judge the whole input, not one pixel
        m = float(mean.mean())
        s = float(np.sqrt(np.mean(std**2 + mean**2) - m * m))
        ratio = abs(m) / max(s, 1e-12)
    else:
        ratio = float(np.max(np.abs(mean) / np.maximum(std, 1e-12)))
    if not ratio > INPUT_MEAN_RATIO:
        return []
    return [
        Finding(
            "input_not_centred",
            [report.input_name or "input"],
            "warning",
            f"input not zero-centred: |mean| is {ratio:.2g} x its std at {report.input_name}",
            "add per-channel standardization (data.normalize = 'standardize'): with all-positive "
            "inputs every weight of a unit gets a gradient of the same sign",
            value=ratio,
            threshold=INPUT_MEAN_RATIO,
        )
    ]


def _output_centred(report: DiagnosticsReport) -> list[Finding]:
    hits = []
    for s in _activation_layers(report):
        if s.zero_centred is not False or not s.rates_saturation:
            continue  # ReLU is not zero-centred either, but that is its nature, not a fault
        m, sd = _last(s.mean), _last(s.std)
        if abs(m) > OUTPUT_MEAN_RATIO * max(sd, 1e-12):
            hits.append((s, abs(m) / max(sd, 1e-12)))
    if not hits:
        return []
    names = [s.name for s, _ in hits]
    worst = max(r for _, r in hits)
    return [
        Finding(
            "not_zero_centred",
            names,
            "info",
            f"{hits[0][0].spec} outputs not zero-centred in {_ranges(names)}: "
            f"mean {worst:.2g} x std",
            "use tanh or a zero-centred activation, or batch norm after it",
            value=worst,
            threshold=OUTPUT_MEAN_RATIO,
        )
    ]


def _depth(report: DiagnosticsReport) -> list[Finding]:
    layers = _activation_layers(report)
    if len(layers) < 2:  # no activation modules: the layer outputs but the logits
        layers = [s for s in report.layers if s.role == "layer"][:-1]
    if len(layers) < 2:
        return []
    # Variation over samples, not across units: a layer whose units are constant (biases only)
    # carries no signal however different the constants are.
    stds = np.stack([s.signal_std for s in layers])  # (layers, windows)
    first, last = stds[0], stds[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = last / first
    spec = next((s.spec for s in layers if s.spec), None)
    out = []
    for code, flagged, word, unbounded in (
        ("collapse", ratio < 1 / DEPTH_RATIO, "falls", "to zero"),
        ("explode", ratio > DEPTH_RATIO, "grows", "without bound"),
    ):
        idx = np.flatnonzero(flagged)
        if len(idx) == 0:
            continue
        w = int(idx[0])
        with np.errstate(divide="ignore"):
            factor = 1 / ratio[w] if code == "collapse" else ratio[w]
        fac = f"{factor:.3g}x" if math.isfinite(factor) else unbounded
        out.append(
            Finding(
                code,
                [layers[0].name, layers[-1].name],
                "warning",
                f"activation std (over samples) {word} {fac} from {layers[0].name} "
                f"({first[w]:.3g}) to {layers[-1].name} ({last[w]:.3g}) "
                f"at step {int(report.window_start[w])}",
                _init_advice(spec),
                since_step=int(report.window_start[w]),
                value=float(ratio[w]),
                threshold=DEPTH_RATIO,
            )
        )
    return out


def _vanishing(report: DiagnosticsReport) -> list[Finding]:
    ws = report.weights
    if len(ws) < 3:
        return []
    rms = np.stack([w.grad_norm / math.sqrt(w.numel) for w in ws])  # (layers, windows)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = rms[0] / rms[-1]
    idx = np.flatnonzero(ratio < GRAD_RATIO)
    if len(idx) == 0:
        return []
    w = int(idx[0])
    return [
        Finding(
            "vanishing_grad",
            [ws[0].name, ws[-1].name],
            "warning",
            f"gradients vanish: the RMS gradient of {ws[0].name} is {ratio[w]:.2g} x that of "
            f"{ws[-1].name} at step {int(report.window_start[w])}",
            "use Kaiming/Xavier initialization with the activation's gain, batch norm or residual "
            "connections; avoid saturating activations in deep stacks",
            since_step=int(report.window_start[w]),
            value=float(ratio[w]),
            threshold=GRAD_RATIO,
        )
    ]


def _updates(report: DiagnosticsReport) -> list[Finding]:
    hits = []
    for w in report.weights:
        r = w.update_ratio
        bad = ~(r <= UPDATE_RATIO_HIGH) & ~np.isnan(r)  # inf counts as too large
        idx = np.flatnonzero(bad)
        if len(idx):
            hits.append((w, int(idx[0]), float(r[idx[0]])))
    if not hits:
        return []
    since = min(int(report.window_start[i]) for _, i, _ in hits)
    worst = max(v for _, _, v in hits)
    names = [w.name for w, _, _ in hits]
    return [
        Finding(
            "large_updates",
            names,
            "warning",
            f"updates too large in {_ranges(names)}: ||dW|| / ||W|| up to {worst:.2g} per step "
            f"(threshold {UPDATE_RATIO_HIGH:g}; ~1e-3 is healthy) since step {since}",
            "lower the learning rate (about by the factor the ratio exceeds 1e-3), or add warm-up",
            since_step=since,
            value=worst,
            threshold=UPDATE_RATIO_HIGH,
        )
    ]
