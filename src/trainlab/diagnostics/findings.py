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
``symmetric``          a trainable layer's units are still copies of each other at the report
                       (every row of its weight equal: zero or constant init), so every unit
                       gets the same gradient and they stay copies (cs231n; lab: zero-init)
``no_gradient``        a trainable layer's gradient was exactly zero (or absent) at every one
                       of at least NO_GRAD_SAMPLES sampled steps: it never learned (a .detach(),
                       .data, argmax or integer cast on the way to the loss, a layer never used,
                       or all the units after it dead)
``probability_output`` every output of the network at every sampled step lay in [0, 1]: it
                       ends in a softmax (or sigmoid), and cross-entropy, which expects raw
                       scores, applies log-softmax to them again
``linear_network``     where the caller measured it (the doctor and ``trainlab diagnose``, after
                       their runs, with ``collect.midpoint_nonlinearity``): the
                       network's output at the midpoint of two inputs is the midpoint of its
                       outputs, to LINEAR_TOLERANCE of their difference, for every pair tried:
                       no nonlinearity between its layers, so its depth is one linear map
``input_not_centred``  the first layer's input has |mean| > INPUT_MEAN_RATIO * std (per channel)
``not_zero_centred``   a non-zero-centred saturating activation (sigmoid) has
                       |mean| > OUTPUT_MEAN_RATIO * std: the next layer's gradients share a sign
``collapse``           activation std falls more than DEPTH_RATIO x from the first to the last
                       activation layer (LeCun et al. 1998; Glorot & Bengio 2010)
``explode``            ... or grows more than DEPTH_RATIO x; or the first step's loss is above
                       EXPLODE_INIT_LOSS x ln classes (the loss of a guess is ln classes)
``vanishing_grad``     the first weighted layer's RMS gradient is < GRAD_RATIO x the last one's
``large_updates``      a layer's update-to-weight ratio ||dW|| / max(||W||, sqrt(rows)) exceeds
                       UPDATE_RATIO_HIGH (the lecture's rule of thumb is ~1e-3); a window of step
                       0 alone (the first update, against random weights) is held to
                       UPDATE_RATIO_FIRST. The floor sqrt(rows), a gain-1 draw's norm, was added
                       after the held-out run (commit bec9a58), when the classifier began small
                       (``init.small_head``): see docs/doctor.md
``exploding_grad``     the global gradient norm (of the weighted layers, at sampled steps; a
                       running median of 3) rises EXPLODE_GROWTH x above its lowest point so far
                       and stays there to the end of the run, while the loss climbs: its last
                       tenth's mean EXPLODE_LOSS_RISE x its lowest tenth's (or non-finite)
``stalled``            the mean loss of the run's last STALL_TAIL share is above STALL_LEVEL x
                       min(the mean loss of its first twentieth, ln classes)
``oscillating``        the training loss cut in OSC_WINDOWS parts: at least OSC_COUNT parts whose
                       mean rose above the lowest earlier mean by OSC_Z standard errors (the noise
                       of one step from successive differences) and by OSC_RISE of that mean,
                       in at least OSC_SWINGS separate rises (one rise and its recovery is a
                       spike); or at least OSC_PEAKS evaluations whose validation loss is
                       OSC_PEAK x both neighbours'
``overfitting``        the mean validation loss (``record_evaluation``) of the last OVERFIT_TAIL
                       of the evaluations ends OVERFIT_RISE above its lowest value smoothed over
                       OVERFIT_SMOOTH evaluations and OVERFIT_Z noise standard errors above it,
                       while the training loss fell by OVERFIT_FALL and the gap widened
=====================  =========================================================================

Thresholds of the rules above ``exploding_grad`` were set on planted runs (issue 6); those from
``exploding_grad`` on, UPDATE_RATIO_FIRST and EXPLODE_INIT_LOSS were set on the tuning half of
the doctor's corpus (benchmarks/bench_doctor.py, issue 24), before its held-out half was run;
OSC_SWINGS, OVERFIT_TAIL, OVERFIT_FALL and OVERFIT_Z = 2 (it was 3, on the last smoothed value
alone) on the tuning half at seeds 30 and 31, after the held-out seed 16 and before seed 17.
``symmetric``, ``no_gradient``, ``probability_output`` and ``linear_network`` have no tuned
threshold: each tests an exact condition (equal rows, a zero gradient, values inside [0, 1], an
affine response, each up to rounding), so a healthy network cannot meet it by chance. They were
added after the corpus's seed-3 run (``linear_network`` after seed 9), for faults of published
fault benchmarks that the corpus does not hold (benchmarks/bench_doctor_cases.py).
The loss rules need at least MIN_CURVE_STEPS steps of loss curve; the over-fitting rule at
least OVERFIT_EVALS evaluations. The problem codes are those of :mod:`trainlab.doctor.problems`;
given the recipe, ``findings`` words each piece of advice as the recipe changes the doctor
would try (:mod:`trainlab.doctor.repairs`), none of which the recipe already does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
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
UPDATE_RATIO_FIRST = 1.0
EXPLODE_GROWTH = 100.0
EXPLODE_LOSS_RISE = 1.5
EXPLODE_INIT_LOSS = 8.0
STALL_TAIL = 0.25
STALL_LEVEL = 0.98
OSC_WINDOWS = 20
OSC_Z = 3.0
OSC_RISE = 0.1
OSC_COUNT = 3
OSC_SWINGS = 2  # separate rises (down between them): one rise and recovery is a spike, not a swing
OSC_PEAK = 1.5
OSC_PEAKS = 2
OVERFIT_SMOOTH = 3
OVERFIT_RISE = 0.15
OVERFIT_Z = 2.0
OVERFIT_FALL = 0.15  # the training loss fell by as much (a run that learns nothing fits nothing)
OVERFIT_TAIL = 1 / 3  # the rise: the mean of the last third of the evaluations, not the last few
OVERFIT_EVALS = 5
MIN_CURVE_STEPS = 20
NO_GRAD_SAMPLES = 2
LINEAR_TOLERANCE = 1e-3  # float32 rounding through a few layers is ~1e-6; a ReLU net's ~1e-1

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


def findings(
    report: DiagnosticsReport,
    *,
    recipe: Any = None,
    classes: int | None = None,
    own_model: bool = False,
) -> list[Finding]:
    """All findings, errors first, then in layer order.

    ``classes``: the number of classes (ln classes is the loss at chance; by default the width
    of the last weighted layer). ``recipe``: the run's recipe, so that advice names the keys to
    change and never what the recipe already does (``own_model``: a user's model, whose
    ``model.*`` keys mean nothing).
    """
    classes = classes or _output_width(report)
    rules = (_non_finite, _exploding_grad, _symmetric, _no_gradient, _probability_output,
             _linear_network, _dead, _saturated, _input_centred, _output_centred, _depth,
             _vanishing, _updates, _oscillating, _overfitting)  # fmt: skip
    found = [f for rule in rules for f in rule(report)] + _stalled(report, classes)
    if not any(f.code == "explode" for f in found):
        found += _explode_at_init(report, classes)
    found = _cut_graph_is_not_vanishing(found)
    if recipe is not None:
        activation = report.most_used_activation()
        found = [_recipe_advice(f, recipe, own_model, activation) for f in found]
    return sorted(found, key=lambda f: SEVERITIES.index(f.severity))


def _cut_graph_is_not_vanishing(found: list[Finding]) -> list[Finding]:
    """A first layer with no gradient at all while the signal reaches the end (no collapse) is
    a cut graph, which ``no_gradient`` names, not a vanishing gradient; a signal that collapses
    and underflows to zero keeps both findings."""
    by_code = {f.code: f for f in found}
    cut, vanishing = by_code.get("no_gradient"), by_code.get("vanishing_grad")
    if cut is None or vanishing is None or "collapse" in by_code:
        return found
    return [f for f in found if not (f is vanishing and vanishing.layers[0] in cut.layers)]


def _recipe_advice(found: Finding, recipe: Any, own_model: bool, activation: str | None) -> Finding:
    from trainlab.doctor.repairs import REPAIR_ORDER, advice

    text = advice(found.code, recipe, own_model=own_model, activation=activation)
    if text is None and REPAIR_ORDER.get(found.code):
        text = "the recipe already does what the lecture advises for this; " + found.advice
    elif text is None:  # no recipe key changes it: the advice says what to look for
        text = found.advice
    return replace(found, advice=text)


def _output_width(report: DiagnosticsReport) -> int | None:
    layers = [s for s in report.layers if s.role == "layer"]
    return layers[-1].units if layers else None


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
    """The hidden activations: not one whose output is the network's (a sigmoid head, which
    ``probability_output`` speaks for)."""
    return [s for s in report.layers if s.role == "activation" and not s.is_output]


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
    bad_loss = np.flatnonzero(~np.isfinite(report.loss))  # the loss curve holds every step
    if len(bad_loss):
        events.append((int(report.loss_steps[bad_loss[0]]), 2, 0, "the loss", "loss"))
    if not events:
        return []
    step, _, _, name, what = min(events)
    return [
        Finding(
            "non_finite",
            [name],
            "error",
            f"non-finite {what} first seen at step {step}"
            + ("" if what == "loss" else f" in {name} (checked every {report.every} steps)"),
            "lower the learning rate, clip the gradient norm, or use a schedule with warm-up; "
            "check the input for NaN",
            since_step=step,
        )
    ]


def _symmetric(report: DiagnosticsReport) -> list[Finding]:
    copies = [w for w in report.weights if w.trainable and w.rows_identical]
    if not copies:
        return []
    names = [w.name for w in copies]
    return [
        Finding(
            "symmetric",
            names,
            "warning",
            f"the units of {_ranges(names)} are copies of each other: every row of their weights "
            "is equal (zero or constant initialization), so each unit gets the same gradient "
            "and they stay copies; each layer is one unit wide",
            "initialize the weights at random (Kaiming, or Xavier for tanh) to break the symmetry",
            since_step=0,
        )
    ]


def _no_gradient(report: DiagnosticsReport) -> list[Finding]:
    norms = report.grad_norms
    if len(report.grad_steps) < NO_GRAD_SAMPLES or norms.shape[1] != len(report.weights):
        return []
    never = [w for j, w in enumerate(report.weights) if w.trainable and (norms[:, j] == 0).all()]
    if not never:
        return []
    names = [w.name for w in never]
    return [
        Finding(
            "no_gradient",
            names,
            "warning",
            f"{_ranges(names)} got no gradient at all: exactly zero at all "
            f"{len(report.grad_steps)} sampled steps, so {'its' if len(names) == 1 else 'their'} "
            "weights never learn",
            "look between the layer and the loss for a .detach(), .data, torch.no_grad(), an "
            "argmax or a cast to integers, or a layer the forward pass never calls; where the "
            "activations after it collapse or its units are dead or copies, see those findings",
            since_step=int(report.grad_steps[0]),
            value=0.0,
        )
    ]


def _probability_output(report: DiagnosticsReport) -> list[Finding]:
    if report.output_values == 0 or report.output_outside_unit > 0:
        return []
    row_sum_error = report.output_row_sum_error
    # a row of bfloat16 probabilities sums to 1 within about 1%
    softmax = row_sum_error is not None and row_sum_error <= 0.02
    what = "a softmax: each row sums to 1" if softmax else "a sigmoid or other squashing"
    return [
        Finding(
            "probability_output",
            [],
            "warning",
            f"every output of the network at {report.sampled_steps} sampled steps lies in "
            f"[0, 1] ({what}): cross-entropy expects raw scores and applies log-softmax "
            "itself, so the scores it sees differ by at most 1, the loss cannot fall far "
            "below ln(1 + (classes - 1) / e) and its gradient is small",
            "end the network with its last linear layer (no softmax or sigmoid after it); "
            "nn.CrossEntropyLoss takes the raw scores",
            since_step=0,
        )
    ]


def _linear_network(report: DiagnosticsReport) -> list[Finding]:
    error = report.midpoint_error
    if error is None or not error < LINEAR_TOLERANCE:
        return []
    return [
        Finding(
            "linear_network",
            [],
            "warning",
            "the network is linear: its output at the midpoint of two inputs is the midpoint "
            f"of its outputs (off by {error:.2g} of their difference, rule: < "
            f"{LINEAR_TOLERANCE:g}), so with no nonlinearity between its layers, its depth is "
            "one linear classifier",
            "put an activation (nn.ReLU) after each hidden layer of the network",
            value=error,
            threshold=LINEAR_TOLERANCE,
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
        # a first layer with no variation at all (copies of one constant: the symmetric
        # finding's) gives no scale to compare with
        ratio = np.where(first > 0, last / first, np.nan)
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
    # A window of step 0 alone (the doctor closes one) holds the first update, measured against
    # random weights: the rule of thumb is about weights being trained, so that window is held
    # to UPDATE_RATIO_FIRST instead: a first step larger than the weights themselves.
    first_alone = len(report.window_end) > 0 and report.window_end[0] == 1
    for w in report.weights:
        r = w.update_ratio
        limit = np.full(len(r), UPDATE_RATIO_HIGH)
        limit[:1] = UPDATE_RATIO_FIRST if first_alone else UPDATE_RATIO_HIGH
        bad = ~(r <= limit) & ~np.isnan(r)  # inf counts as too large
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


# -- the loss and gradient curves -----------------------------------------------------------------
def _finite_curve(report: DiagnosticsReport) -> tuple[np.ndarray, np.ndarray] | None:
    """The loss curve if it is long enough and finite throughout (a non-finite one is
    ``non_finite``'s finding, and its loss levels mean nothing)."""
    loss = report.loss
    if len(loss) < MIN_CURVE_STEPS or not np.isfinite(loss).all():
        return None
    return report.loss_steps, loss


def _loss_rise(report: DiagnosticsReport) -> float:
    """The mean loss of the curve's last tenth over that of its lowest tenth (inf if the curve
    went non-finite): how far the loss has climbed back up."""
    loss = report.loss
    if len(loss) < MIN_CURVE_STEPS:
        return math.nan
    if not np.isfinite(loss).all():
        return math.inf
    means = [part.mean() for part in np.array_split(loss, 10)]
    return float(means[-1] / max(min(means), 1e-12))


def _exploding_grad(report: DiagnosticsReport) -> list[Finding]:
    if len(report.grad_steps) < 3 or report.grad_norms.shape[1] == 0:
        return []
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sqrt(np.square(report.grad_norms).sum(axis=1))
    total = np.where(np.isfinite(total), total, np.inf)  # a NaN gradient is as large as it gets
    smooth = np.array([np.median(total[max(0, i - 2) : i + 1]) for i in range(len(total))])
    floor = np.minimum.accumulate(np.maximum(smooth, 1e-30))
    with np.errstate(invalid="ignore"):
        growth = smooth / floor
    above = growth >= EXPLODE_GROWTH
    # still up there at the end, and the loss climbing with it: growth out of a collapsed start
    # (a network escaping tiny initial weights) is not an explosion
    rise = _loss_rise(report)
    if not above[-1] or not rise >= EXPLODE_LOSS_RISE:
        return []
    clear = np.flatnonzero(~above)
    first = clear[-1] + 1 if len(clear) else 0
    step = int(report.grad_steps[first])
    worst = float(growth[-1])
    size = f"{worst:.3g}x" if math.isfinite(worst) else "to infinity"
    return [
        Finding(
            "exploding_grad",
            [w.name for w in report.weights],
            "error",
            f"the gradient norm grows without bound: {size} above its lowest point since step "
            f"{step}, and the loss climbs with it (global norm of the weighted layers, sampled "
            f"every {report.every} steps)",
            "lower the learning rate, or clip the gradient norm (optim.clip_grad_norm)",
            since_step=step,
            value=worst,
            threshold=EXPLODE_GROWTH,
        )
    ]


def _explode_at_init(report: DiagnosticsReport, classes: int | None) -> list[Finding]:
    """The first step's loss far above ln(classes): the outputs are far too large from the
    start (the lecture's sanity check: at initialization the loss is about ln classes)."""
    if not classes or classes < 2 or len(report.loss) == 0:
        return []
    first, chance = float(report.loss[0]), math.log(classes)
    if not first > EXPLODE_INIT_LOSS * chance:  # NaN: non_finite's
        return []
    return [
        Finding(
            "explode",
            [],
            "warning",
            f"the first step's loss is {first:.3g}, {first / chance:.3g}x ln {classes} (rule: "
            f"> {EXPLODE_INIT_LOSS:g}x): the activations are far too large from initialization",
            _init_advice(None),
            since_step=int(report.loss_steps[0]),
            value=first / chance,
            threshold=EXPLODE_INIT_LOSS,
        )
    ]


def _stalled(report: DiagnosticsReport, classes: int | None) -> list[Finding]:
    curve = _finite_curve(report)
    if curve is None:
        return []
    steps, loss = curve
    head = float(loss[: max(1, len(loss) // 20)].mean())
    tail_start = int(len(loss) * (1 - STALL_TAIL))
    tail = float(loss[tail_start:].mean())
    chance = math.log(classes) if classes and classes > 1 else math.inf
    ref = min(head, chance)
    if not tail > STALL_LEVEL * ref:
        return []
    where = f"ln {classes}, chance" if chance <= head else "its first steps"
    return [
        Finding(
            "stalled",
            [],
            "warning",
            f"the loss makes no progress: {tail:.3g} over the last {100 * STALL_TAIL:.0f}% of "
            f"the steps against {ref:.3g} ({where}); rule: above {STALL_LEVEL:g}x",
            "raise the learning rate; check the initialization and the input's scale",
            since_step=int(steps[tail_start]),
            value=tail / ref,
            threshold=STALL_LEVEL,
        )
    ]


def _oscillating(report: DiagnosticsReport) -> list[Finding]:
    risen, first = _training_swings(report)
    swings = _separate_rises(risen)
    peaks = _validation_peaks(report)
    swinging = len(risen) >= OSC_COUNT and swings >= OSC_SWINGS
    if not swinging and len(peaks) < OSC_PEAKS:
        return []
    what = []
    if swinging:
        what.append(
            f"in {len(risen)} of {OSC_WINDOWS} parts of the run, in {swings} separate rises, the"
            f" training loss rose above its earlier lowest (by > {OSC_Z:g} noise standard errors"
            f" and {100 * OSC_RISE:.0f}%)"
        )
    else:
        first = None
    if len(peaks) >= OSC_PEAKS:
        what.append(
            f"the validation loss jumped {len(peaks)} times to over {OSC_PEAK:g}x both its "
            "neighbouring evaluations and fell back"
        )
        first = min(x for x in (first, peaks[0]) if x is not None)
    return [
        Finding(
            "oscillating",
            [],
            "warning",
            "the loss swings: " + "; ".join(what),
            "lower the learning rate, or warm it up",
            since_step=first,
            value=float(max(len(risen), len(peaks))),
            threshold=float(OSC_COUNT),
        )
    ]


def _training_swings(report: DiagnosticsReport) -> tuple[list[int], int | None]:
    """The parts of the loss curve whose mean rose significantly above the lowest earlier one.

    The noise is that of single steps, estimated from successive differences (1.4826 x the
    median |l_t - l_t-1| / sqrt 2): slow swings do not inflate it as a part's own spread would."""
    curve = _finite_curve(report)
    if curve is None or len(curve[1]) < 2 * OSC_WINDOWS:
        return [], None
    steps, loss = curve
    noise = 1.4826 * float(np.median(np.abs(np.diff(loss)))) / math.sqrt(2)
    parts = np.array_split(np.arange(len(loss)), OSC_WINDOWS)
    means = np.array([loss[p].mean() for p in parts])
    sizes = np.array([len(p) for p in parts])
    risen = []
    for k in range(1, OSC_WINDOWS):
        low = int(np.argmin(means[:k]))
        rise = means[k] - means[low]
        error = noise * math.sqrt(1 / sizes[k] + 1 / sizes[low])
        if rise > OSC_Z * error and rise > OSC_RISE * means[low]:
            risen.append(k)
    return risen, int(steps[parts[risen[0]][0]]) if risen else None


def _separate_rises(risen: list[int]) -> int:
    """How many runs of consecutive risen parts: the loss came back down between two of them."""
    return sum(1 for i, k in enumerate(risen) if i == 0 or k != risen[i - 1] + 1)


def _validation_peaks(report: DiagnosticsReport) -> list[int]:
    """Steps of the evaluations whose validation loss is over OSC_PEAK x both neighbours'."""
    evals = [e for e in report.evaluations if "val_loss" in e]
    val = [e["val_loss"] for e in evals]
    return [
        evals[i]["step"]
        for i in range(1, len(val) - 1)
        if all(math.isfinite(v) for v in val[i - 1 : i + 2])
        and val[i] > OSC_PEAK * val[i - 1]
        and val[i] > OSC_PEAK * val[i + 1]
    ]


def _overfitting(report: DiagnosticsReport) -> list[Finding]:
    """The validation loss's lowest value smoothed over OVERFIT_SMOOTH evaluations (a small
    validation split is noisy) against the mean of its last OVERFIT_TAIL share of evaluations (at
    least OVERFIT_SMOOTH), which come after it: that mean OVERFIT_RISE above the lowest and
    OVERFIT_Z noise standard errors above it (the noise of one evaluation from successive
    differences, 1.4826 x the median |v_k - v_k-1| / sqrt 2), while the training loss fell by
    OVERFIT_FALL and the gap between them widened."""
    evals = [e for e in report.evaluations if math.isfinite(e.get("val_loss", math.nan))]
    if len(evals) < max(OVERFIT_EVALS, OVERFIT_SMOOTH + 1):
        return []
    val = np.array([e["val_loss"] for e in evals])
    smooth = np.convolve(val, np.ones(OVERFIT_SMOOTH) / OVERFIT_SMOOTH, mode="valid")
    best = int(np.argmin(smooth))
    tail = val[-max(OVERFIT_SMOOTH, round(OVERFIT_TAIL * len(val))) :]
    now_mean = float(tail.mean())
    rise = now_mean - smooth[best]
    noise = 1.4826 * float(np.median(np.abs(np.diff(val)))) / math.sqrt(2)
    error = noise * math.sqrt(1 / len(tail) + 1 / OVERFIT_SMOOTH)
    if (
        best >= len(val) - len(tail)  # the lowest is not behind the tail yet
        or not rise > OVERFIT_RISE * smooth[best]
        or not rise > (OVERFIT_Z * error)
    ):
        return []
    # the evaluations a smoothed value stands for end at index + OVERFIT_SMOOTH - 1
    then, now = evals[best + OVERFIT_SMOOTH - 1], evals[-1]
    train = [_train_loss_before(report, e["step"]) for e in (then, now)]
    if not all(math.isfinite(t) for t in train):
        return []
    gap_then, gap_now = smooth[best] - train[0], now_mean - train[1]
    if not (train[1] < (1 - OVERFIT_FALL) * train[0] and gap_now > gap_then):
        return []
    step = int(then["step"])
    return [
        Finding(
            "overfitting",
            [],
            "warning",
            f"over-fitting: the validation loss rose from {smooth[best]:.3g} (step {step}, mean "
            f"of {OVERFIT_SMOOTH} evaluations) to {now_mean:.3g} (mean of the last {len(tail)}) "
            f"while the training loss fell from {train[0]:.3g} to {train[1]:.3g}",
            "add dropout, weight decay or data augmentation; or stop earlier",
            since_step=step,
            value=float(now_mean / smooth[best] - 1),
            threshold=OVERFIT_RISE,
        )
    ]


def _train_loss_before(report: DiagnosticsReport, step: int, span: int = 0) -> float:
    """The mean training loss of the steps just before ``step`` (a twentieth of the curve)."""
    span = span or max(1, len(report.loss) // 20)
    before = report.loss[report.loss_steps < step][-span:]
    return float(before.mean()) if len(before) else math.nan
