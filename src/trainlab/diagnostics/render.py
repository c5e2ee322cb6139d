"""Figures, the self-contained HTML page, findings.json and a Markdown section.

Figures (matplotlib, Agg):

* ``diag_histograms.png``: the lecture's per-layer activation histograms, one panel per layer,
  first window filled, last window outlined;
* ``diag_colourful.png``: the "colourful dimension" plot, each layer's histogram over training
  time (x: step, y: value, colour: log density);
* ``diag_dead_saturated.png``: dead and saturated unit fractions over time per layer;
* ``diag_gradients.png``: gradient norms and update-to-weight ratios per layer over time;
* ``diag_depth.png``: activation mean and std against depth, first and last window.

Figures are drawn only for a report with at least one sampled step, so every layer shown has
at least one window.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.diagnostics.collect import DiagnosticsReport, LayerSeries
from trainlab.diagnostics.findings import Finding
from trainlab.fileio import write_json, write_text, write_with

_MAX_PANELS = 16
_NO_FINDING = "No finding: every rule's threshold was met."
_HEADER = ("layer", "kind", "role", "units", "mean", "std", "zeros %", "dead %", "saturated %")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(a: np.ndarray) -> str:
    """The last finite value, for tables and titles."""
    finite = a[np.isfinite(a)]
    return f"{finite[-1]:.3g}" if len(finite) else "n/a"


def _panels(report: DiagnosticsReport, title: str) -> tuple[Any, list[tuple[Any, LayerSeries]]]:
    """A grid with one panel per layer: the activation layers if there are any (the lecture's
    plots), else the layer outputs; at most 16, evenly spaced, first and last kept."""
    layers = [s for s in report.layers if s.role == "activation"] or report.layers
    if len(layers) > _MAX_PANELS:
        idx = np.unique(np.linspace(0, len(layers) - 1, _MAX_PANELS).round().astype(int))
        layers = [layers[i] for i in idx]
    cols = min(4, max(1, len(layers)))
    rows = (len(layers) + cols - 1) // cols
    fig, axes = _plt().subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in list(axes.flat)[len(layers) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig, list(zip(axes.flat, layers, strict=False))


def fig_histograms(report: DiagnosticsReport) -> Any:
    fig, panels = _panels(report, "activation histograms per layer (first and last window)")
    for ax, s in panels:
        lo, hi = s.hist_range
        bins = s.hist.shape[1]
        centres = lo + (hi - lo) / bins * (np.arange(bins) + 0.5)
        for h, style in (
            (s.hist[0], {"alpha": 0.5, "label": "first"}),
            (s.hist[-1], {"histtype": "step", "label": "last"}),
        ):
            if h.sum() > 0:
                ax.hist(centres, bins=bins, range=s.hist_range, weights=h / h.sum(), **style)
        ax.set_title(
            f"{s.name} ({s.spec or s.type})\nmean {_fmt(s.mean)} std {_fmt(s.std)}", fontsize=8
        )
        ax.tick_params(labelsize=7)
    fig.axes[0].legend(fontsize=7)
    return fig


def fig_colourful(report: DiagnosticsReport) -> Any:
    title = "histogram over training time (x: step, y: value, colour: log density)"
    fig, panels = _panels(report, title)
    steps = (report.window_start[0], report.window_end[-1])
    for ax, s in panels:
        h = s.hist / np.maximum(s.hist.sum(axis=1, keepdims=True), 1)
        ax.imshow(
            np.log10(h.T + 1e-6),
            aspect="auto",
            origin="lower",
            cmap="viridis",
            extent=(*steps, *s.hist_range),
            interpolation="nearest",
        )
        ax.set_title(f"{s.name} ({s.spec or s.type})", fontsize=8)
        ax.tick_params(labelsize=7)
    return fig


def fig_dead_saturated(report: DiagnosticsReport) -> Any:
    fig, axes = _plt().subplots(1, 2, figsize=(10, 3.4))
    for ax, attr, title in (
        (axes[0], "dead_fraction", "dead units (ReLU-like)"),
        (axes[1], "saturated_fraction", "saturated units"),
    ):
        for s in report.layers:
            v = getattr(s, attr)
            if s.role == "activation" and np.isfinite(v).any():
                ax.plot(report.window_start, 100 * v, marker=".", label=s.name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("% of units")
        ax.set_ylim(-2, 102)
        if ax.lines:
            ax.legend(fontsize=6, ncol=2)
        else:
            ax.text(0.5, 0.5, "no layer of this kind", ha="center", transform=ax.transAxes)
    return fig


def fig_gradients(report: DiagnosticsReport) -> Any:
    fig, axes = _plt().subplots(1, 2, figsize=(10, 3.4))
    axes[0].set_title("gradient norm ||dL/dW|| per layer", fontsize=9)
    axes[1].set_title("update / weight ||dW|| / ||W|| per step", fontsize=9)
    for ax, attr in zip(axes, ("grad_norm", "update_ratio"), strict=True):
        for w in report.weights:
            ax.plot(report.window_start, getattr(w, attr), marker=".", label=w.name)
        ax.set_xlabel("step")
        values = np.array([getattr(w, attr) for w in report.weights], dtype=float)
        if (np.isfinite(values) & (values > 0)).any():
            ax.set_yscale("log")
        ax.legend(fontsize=6, ncol=2)
    axes[1].axhline(1e-3, color="grey", ls="--", lw=0.8)  # the rule of thumb
    return fig


def fig_depth(report: DiagnosticsReport) -> Any:
    layers = [s for s in report.layers if s.role == "activation"] or report.layers
    fig, axes = _plt().subplots(1, 2, figsize=(10, 3.2))
    x = np.arange(len(layers))
    for ax, attr in zip(axes, ("mean", "std"), strict=True):
        for i, label in ((0, "first window"), (-1, "last window")):
            ax.plot(x, [getattr(s, attr)[i] for s in layers], marker="o", label=label)
        ax.set_title(f"{attr} per layer", fontsize=9)
        ax.set_xticks(x, [s.name for s in layers], rotation=60, fontsize=6)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    return fig


_FIGURES = {
    "diag_histograms": fig_histograms,
    "diag_colourful": fig_colourful,
    "diag_dead_saturated": fig_dead_saturated,
    "diag_gradients": fig_gradients,
    "diag_depth": fig_depth,
}


def diagnostics_figures(report: DiagnosticsReport) -> dict[str, bytes]:
    """Each figure as PNG bytes, by name; none when no step was sampled (nothing to draw)."""
    if report.sampled_steps == 0:
        return {}
    plt = _plt()
    out: dict[str, bytes] = {}
    for name, make in _FIGURES.items():
        fig = make(report)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _layer_rows(report: DiagnosticsReport) -> list[tuple[str, ...]]:
    return [
        (
            s.name,
            s.spec or s.type,
            s.role,
            str(s.units),
            _fmt(s.mean),
            _fmt(s.std),
            _fmt(100 * s.zero_fraction),
            _fmt(100 * s.dead_fraction) if s.can_die else "-",
            _fmt(100 * s.saturated_fraction) if s.rates_saturation else "-",
        )
        for s in report.layers
    ]


def _summary(report: DiagnosticsReport) -> str:
    kinds = ", ".join(f"{k} x{n}" for k, n in report.activation_kinds.items()) or "none"
    return (
        f"Sampled every {report.every} steps ({report.sampled_steps} sampled steps, "
        f"windows of {report.window} steps). Activation modules seen: {kinds}."
    )


def diagnostics_markdown(
    report: DiagnosticsReport, found: list[Finding], figures_dir: str = "figures"
) -> str:
    """A Markdown section for a run report (figures referenced under ``figures_dir``)."""
    lines = ["## Diagnostics", "", _summary(report), ""]
    lines += [f"- {n}" for n in report.notes] + ["", "### Findings", ""]
    lines += [f"- **{f.severity}** `{f.code}`: {f.message}: {f.advice}" for f in found]
    lines += [] if found else [_NO_FINDING]
    lines += ["", "### Layers (last window)", "", "| " + " | ".join(_HEADER) + " |"]
    lines += ["|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _layer_rows(report)] + [""]
    lines += [f"![{name}]({figures_dir}/{name}.png)" for name in _FIGURES]
    return "\n".join(lines) + "\n"


def _html(report: DiagnosticsReport, found: list[Finding], pngs: dict[str, bytes]) -> str:
    esc = html.escape
    items = "".join(
        f"<li class='{esc(f.severity)}'><b>{esc(f.severity)}</b> <code>{esc(f.code)}</code>: "
        f"{esc(f.message)}: <i>{esc(f.advice)}</i></li>"
        for f in found
    )
    table = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in _layer_rows(report)
    )
    head = "".join(f"<th>{esc(h)}</th>" for h in _HEADER)
    imgs = "".join(
        f"<h3>{esc(name)}</h3><img src='data:image/png;base64,{base64.b64encode(data).decode()}'/>"
        for name, data in pngs.items()
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in report.notes)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>trainlab diagnostics</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}
li.error{{color:#a00}}li.warning{{color:#a60}}img{{max-width:100%}}</style></head><body>
<h1>Diagnostics</h1>
<p>{esc(_summary(report))}</p><ul>{notes}</ul>
<h2>Findings</h2><ul>{items or f"<li>{_NO_FINDING}</li>"}</ul>
<h2>Layers (last window)</h2><table><tr>{head}</tr>{table}</table>
<h2>Figures</h2>{imgs}
</body></html>
"""


def write_diagnostics(out_dir: str | Path, report: DiagnosticsReport, found: list[Finding]) -> Path:
    """Write ``diagnostics.html`` (figures embedded), ``findings.json``, ``diagnostics.json``
    and ``figures/diag_*.png`` into ``out_dir``, each atomically. Returns the HTML path."""
    out = Path(out_dir)
    pngs = diagnostics_figures(report)
    for name, data in pngs.items():
        write_with(out / "figures" / f"{name}.png", lambda p, d=data: p.write_bytes(d))
    write_json(out / "findings.json", [f.to_dict() for f in found])
    write_json(out / "diagnostics.json", report.to_dict())
    write_text(out / "diagnostics.html", _html(report, found, pngs))
    return out / "diagnostics.html"
