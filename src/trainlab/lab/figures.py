"""The lab's figures: matplotlib without a display, files written atomically, and the plots
several experiments share (one curve per arm; test accuracy per arm over seeds)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    out: Path,
    name: str,
    title: str,
    runs: dict[str, list[dict]],
    baseline_of: Callable[[str], str],
) -> str:
    """Mean test accuracy per arm with its spread over seeds, each seed's run as a dot; an arm
    is grey if it is a baseline, else green if its mean beats its baseline's, red if not."""
    from trainlab.lab.numbers import mean_std

    acc = {arm: mean_std([r["test_acc"] for r in rows]) for arm, rows in runs.items()}
    means = [m for m, _ in acc.values()]
    colors = [
        "tab:gray" if baseline_of(a) == a else "tab:green" if m > acc[baseline_of(a)][0]
        else "tab:red"
        for a, (m, _) in acc.items()
    ]  # fmt: skip
    fig, ax = pyplot().subplots(figsize=(8, 4))
    ax.bar(range(len(runs)), means, yerr=[s for _, s in acc.values()], color=colors, alpha=0.7)
    for i, rows in enumerate(runs.values()):
        ax.scatter([i] * len(rows), [r["test_acc"] for r in rows], color="k", s=8, zorder=3)
    ax.set_xticks(range(len(runs)), list(runs), rotation=35, ha="right", fontsize=8)
    ax.set(ylabel="test accuracy", ylim=(max(0.0, min(means) - 0.1), None))
    ax.set_title(f"{title} (green: beats its baseline)")
    return save_figure(fig, out, name)


VERDICT_MARKS = {"held": "#1a7f37", "did not hold": "#cf222e", "inconclusive": "#9a6700"}


def comparison_intervals(out: Path, name: str, title: str, comparisons: Sequence[Any]) -> str:
    """Each comparison (:class:`trainlab.lab.evidence.Comparison`) on its own row, in its own
    metric's units (accuracies in points): the mean paired difference with its 95% interval,
    beside zero (solid) and the minimum effect in the claimed direction (dashed; both sides for
    a claim of agreement); coloured by verdict (grey: not reached)."""
    n = len(comparisons)
    fig, axes = pyplot().subplots(n, 1, figsize=(6.5, 0.95 * n + 0.9), squeeze=False)
    for ax, c in zip(axes[:, 0], comparisons, strict=True):
        scale, unit = (100, "points") if "acc" in c.metric else (1, "")
        lo, hi = c.ci95
        d = c.difference
        colour = VERDICT_MARKS.get(c.verdict, "#57606a")
        ax.errorbar(
            scale * d, 0, xerr=[[scale * (d - lo)], [scale * (hi - d)]], fmt="o", color=colour,
            capsize=4,
        )  # fmt: skip
        bounds = [c.min_effect, -c.min_effect] if c.direction == 0 else [c.direction * c.min_effect]
        for b in bounds:
            ax.axvline(scale * b, color="k", ls="--", lw=0.8)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks([])
        ax.set_ylabel(f"{c.verdict}\n{len(c.seeds)} seeds", fontsize=7, rotation=0, ha="right",
                      va="center", color=colour)  # fmt: skip
        ax.set_title(f"{c.name} ({' - '.join(c.arms)})", fontsize=7, loc="left")
        ax.set_xlabel(f"{c.metric} {unit}".strip(), fontsize=7, labelpad=1)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"{title}\n(paired-t 95% interval; dashed: minimum effect)", fontsize=9)
    return save_figure(fig, out, name)
