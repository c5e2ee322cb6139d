"""The lab's figures: matplotlib without a display, files written atomically, and the plots
several experiments share (one curve per arm; test accuracy per arm over seeds)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainlab.fileio import write_with


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: Path, name: str) -> str:
    """Lay out ``fig``, save it atomically as ``out/name`` and close it; returns ``name``."""
    fig.tight_layout()
    write_with(out / name, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    pyplot().close(fig)
    return name


def draw_curves(
    ax: Any, curves: dict[str, Sequence[float]], hide_above: float = math.inf, **style: Any
) -> None:
    """One line per entry of ``curves`` against step 1, 2, ...; non-finite values and values
    above ``hide_above`` are left out, so a diverged run leaves the plot instead of squashing it."""
    for label, values in curves.items():
        shown = [v if math.isfinite(v) and v < hide_above else math.nan for v in values]
        ax.plot(range(1, len(shown) + 1), shown, label=label, **style)


def plot_curves(
    out: Path,
    name: str,
    curves: dict[str, Sequence[float]],
    *,
    hide_above: float = math.inf,
    style: dict[str, Any] | None = None,
    **labels: Any,
) -> str:
    """:func:`draw_curves` alone in a figure; ``labels`` go to ``Axes.set`` (``xlabel``,
    ``ylabel``, ``title``, ``yscale``)."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    draw_curves(ax, curves, hide_above, **(style or {"lw": 1}))
    ax.set(**labels)
    ax.legend(fontsize=8)
    return save_figure(fig, out, name)


def accuracy_bars(
    out: Path, name: str, title: str, test_acc: dict[str, list[Any]], baseline: str
) -> str:
    """Mean test accuracy per arm over the seeds that trained, each seed's run as a dot (a
    failed run is left out); the baseline grey, an arm green if its mean beats the baseline's,
    else red."""
    kept = {a: [v for v in vs if not isinstance(v, str)] for a, vs in test_acc.items()}
    means = {a: sum(v) / len(v) if v else math.nan for a, v in kept.items()}
    colors = [
        "tab:gray" if a == baseline else "tab:green" if means[a] > means[baseline] else "tab:red"
        for a in kept
    ]
    fig, ax = pyplot().subplots(figsize=(8, 4))
    ax.bar(range(len(kept)), list(means.values()), color=colors, alpha=0.7)
    for i, values in enumerate(kept.values()):
        ax.scatter([i] * len(values), values, color="k", s=8, zorder=3)
    ax.set_xticks(range(len(kept)), list(kept), rotation=35, ha="right", fontsize=8)
    finite = [m for m in means.values() if math.isfinite(m)] or [0.1]
    ax.set(ylabel="test accuracy", ylim=(max(0.0, min(finite) - 0.1), None))
    ax.set_title(f"{title} (green: beats {baseline})")
    return save_figure(fig, out, name)


VERDICT_MARKS = {"held": "#1a7f37", "did not hold": "#cf222e", "inconclusive": "#9a6700"}


def comparison_intervals(out: Path, name: str, title: str, comparisons: Sequence[Any]) -> str:
    """Each comparison (:class:`trainlab.lab.evidence.Comparison`) on its own row, in its own
    metric's units (fractions in points): the mean paired difference with its interval at its
    level, beside zero (solid) and the minimum effect in the claimed direction (dashed; both
    sides for a claim of agreement); coloured by verdict (grey: not reached). A comparison
    without an interval (too few pairs) shows its verdict alone."""
    n = len(comparisons)
    fig, axes = pyplot().subplots(n, 1, figsize=(6.5, 0.95 * n + 0.9), squeeze=False)
    for ax, c in zip(axes[:, 0], comparisons, strict=True):
        scale, unit = (100, "points") if c.scale == "fraction" else (1, "")
        colour = VERDICT_MARKS.get(c.verdict, "#57606a")
        if c.ci is not None:
            lo, hi = c.ci
            d = c.difference
            ax.errorbar(
                scale * d,
                0,
                xerr=[[scale * (d - lo)], [scale * (hi - d)]],
                fmt="o",
                color=colour,
                capsize=4,
            )
        bounds = [c.min_effect, -c.min_effect] if c.direction == 0 else [c.direction * c.min_effect]
        for b in bounds:
            ax.axvline(scale * b, color="k", ls="--", lw=0.8)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks([])
        label = f"{c.role}\n{c.verdict}\n{len(c.seeds)} pairs, {c.level:.1%}"
        ax.set_ylabel(label, fontsize=6, rotation=0, ha="right", va="center", color=colour)
        ax.set_title(
            f"{c.name} ({' - '.join(c.arms)})",
            fontsize=7,
            loc="left",
            fontweight="bold" if c.role == "primary" else "normal",
        )
        log = {"log": "log ", "fraction": ""}.get(c.scale, "")
        ax.set_xlabel(f"{log}{c.metric} {unit}".strip(), fontsize=7, labelpad=1)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"{title}\n(paired-t interval at each level; dashed: minimum effect)", fontsize=9)
    return save_figure(fig, out, name)
