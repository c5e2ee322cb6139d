"""The problem vocabulary that the diagnostics, ``trainlab advise`` and ``trainlab doctor`` share.

Each problem has a code, a one-line description, a severity and the lab experiments that speak
about it. The rules that detect a problem live with their data: the training rules in
:mod:`trainlab.diagnostics.findings` (thresholds there), the recipe rules in
:mod:`trainlab.doctor.advise`; the repairs, in the order the doctor tries them, in
:mod:`trainlab.doctor.repairs`. Nothing here imports torch: ``trainlab advise`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Problem:
    code: str
    title: str  # what is wrong, in a few words
    severity: str  # "error": training failed; "warning": it suffers; "info": worth knowing
    seen_by: str  # "training" (the doctor and diagnose), "recipe" (advise) or "both"


PROBLEMS: dict[str, Problem] = {
    p.code: p
    for p in (
        Problem(
            "non_finite",
            "the loss, an activation or a gradient became NaN or infinite",
            "error",
            "training",
        ),
        Problem("exploding_grad", "the gradient norm grows without bound", "error", "training"),
        Problem(
            "symmetric",
            "a layer's units are copies of each other (zero or constant init) and stay so",
            "warning",
            "both",
        ),
        Problem(
            "no_gradient",
            "a layer gets no gradient at all, so it never learns",
            "warning",
            "training",
        ),
        Problem(
            "linear_network",
            "no nonlinearity between the layers: however deep, one linear classifier",
            "warning",
            "training",
        ),
        Problem(
            "probability_output",
            "the network outputs probabilities, and the loss applies softmax to them again",
            "warning",
            "training",
        ),
        Problem("explode", "activations grow layer after layer", "warning", "both"),
        Problem("collapse", "activations shrink layer after layer", "warning", "both"),
        Problem("vanishing_grad", "the first layers get almost no gradient", "warning", "both"),
        Problem("dead_units", "ReLU units that never fire", "warning", "training"),
        Problem("saturated", "sigmoid/tanh units stuck at their flat ends", "warning", "training"),
        Problem(
            "large_updates",
            "each step changes the weights by too large a fraction",
            "warning",
            "both",
        ),
        Problem("stalled", "the loss makes no progress", "warning", "both"),
        Problem(
            "oscillating", "the loss swings up and down beyond its noise", "warning", "training"
        ),
        Problem(
            "overfitting", "validation loss rises while training loss falls", "warning", "both"
        ),
        Problem("input_not_centred", "the input is not zero-centred", "warning", "both"),
        Problem(
            "not_zero_centred", "a sigmoid layer's outputs are all positive", "info", "training"
        ),
        Problem(
            "dropout_placement",
            "dropout where it does little: after global pooling in a "
            "conv net, not in large fully-connected layers",
            "info",
            "recipe",
        ),
    )  # fmt: skip
}


def problem(code: str) -> Problem:
    """The problem with this code (a KeyError names the known codes)."""
    try:
        return PROBLEMS[code]
    except KeyError:
        raise KeyError(f"unknown problem code {code!r}; known: {', '.join(PROBLEMS)}") from None


def is_problem(code: str) -> bool:
    """Whether the doctor acts on it: errors and warnings, not information."""
    return PROBLEMS[code].severity != "info"
