"""Run reports: ``report.html`` (self-contained, figures embedded) and ``report.md``.

Both say the same things: final accuracies, time and throughput, loss and accuracy curves, the
confusion matrix and the full recipe. The Markdown version links its figures from
``figures/``; the HTML version embeds them as base64 PNG so that it travels as one file.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trainlab.fileio import write_text, write_with


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(metrics: Sequence[dict[str, Any]]):
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for split, style in (("train", "-o"), ("val", "-^"), ("test", "-s")):
        rows = [m for m in metrics if f"{split}_loss" in m]  # eval_every may skip epochs
        if rows:
            epochs = [m["epoch"] for m in rows]
            ax_loss.plot(epochs, [m[f"{split}_loss"] for m in rows], style, ms=3, label=split)
            ax_acc.plot(epochs, [100 * m[f"{split}_acc"] for m in rows], style, ms=3, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_figure(confusion: torch.Tensor, classes: Sequence[str]):
    plt = _pyplot()
    k = len(classes)
    counts = confusion.double()
    rates = counts / counts.sum(1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        for i in range(k):
            for j in range(k):
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    return fig


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    return buf.getvalue()


def _embedded(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return f'<figure><img alt="{name}" src="data:image/png;base64,{data}"></figure>'


def write_report(
    out: Path,
    recipe: Any,
    metrics: Sequence[dict[str, Any]],
    confusion: torch.Tensor | None,
    classes: Sequence[str],
    summary: dict[str, Any],
    diagnosis: tuple[Any, list[Any]] | None = None,
) -> None:
    """Write ``out/report.html``, ``out/report.md`` and ``out/figures/*.png``; with
    ``diagnosis`` (a diagnostics report and its findings) a diagnostics section as well."""
    figures: dict[str, bytes] = {}
    if metrics:
        figures["curves"] = _png_bytes(curves_figure(metrics))
    if confusion is not None:
        figures["confusion"] = _png_bytes(confusion_figure(confusion, classes))
    for name, data in figures.items():
        write_with(out / "figures" / f"{name}.png", lambda tmp, data=data: tmp.write_bytes(data))

    final = summary.get("final", {})
    tested = [m["test_acc"] for m in metrics if "test_acc" in m]  # eval_every may skip epochs
    images_per_s = [m["images_per_s"] for m in metrics]
    facts = [
        ("data set", f"{recipe.data.name} ({summary.get('train_images')} train, "
                     f"{summary.get('test_images')} test images)"),
        ("model", f"{recipe.model.kind}, {summary.get('parameters', 0):,} parameters"),
        ("epochs", str(final.get("epoch", 0))),
        ("final test accuracy", f"{100 * final.get('test_acc', float('nan')):.2f}%"),
        ("final test loss", f"{final.get('test_loss', float('nan')):.4f}"),
        ("final train accuracy", f"{100 * final.get('train_acc', float('nan')):.2f}%"),
        ("best test accuracy", f"{100 * max(tested, default=float('nan')):.2f}%"),
        ("device", str(summary.get("device"))),
        ("total time", f"{summary.get('total_seconds', 0):.1f} s "
                       f"(data loading {summary.get('data_seconds', 0):.1f} s)"),
        ("throughput", f"{sum(images_per_s) / max(len(images_per_s), 1):,.0f} training images/s"),
    ]  # fmt: skip
    if best := summary.get("best"):
        chosen = f"{best['epoch']}: {best['metric']} {best['value']:.4f} ({best['file']})"
        facts.insert(4, ("best epoch (validation)", chosen))
    if "val_acc" in final:
        facts.insert(4, ("final validation accuracy", f"{100 * final['val_acc']:.2f}%"))
    recipe_text = recipe.to_toml()
    header = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"]

    notes = _run_notes(summary)
    md = [f"# trainlab run: {recipe.data.name}", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in facts]
    md += ["", *[f"- Note: {n}" for n in notes]] if notes else []
    md += [""] + [f"![{name}](figures/{name}.png)" for name in figures] + [""]
    md += ["## Per epoch", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(_cell(m.get(h)) for h in header) + " |" for m in metrics]
    diag_html = ""
    if diagnosis is not None:
        from trainlab.diagnostics import diagnostics_markdown

        md += ["", diagnostics_markdown(*diagnosis), ""]
        md += ["Details: [diagnostics.html](diagnostics.html)"]
        diag_html = _diagnostics_html(out, diagnosis[1])
    md += ["", "## Recipe", "", "```toml", recipe_text.rstrip(), "```", ""]
    write_text(out / "report.md", "\n".join(md))

    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    imgs = "".join(_embedded(name, png) for name, png in figures.items())
    epoch_rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(m.get(h))}</td>" for h in header) + "</tr>" for m in metrics
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>trainlab run: {html.escape(recipe.data.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
pre {{ background: #f5f5f5; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>trainlab run: {html.escape(recipe.data.name)}</h1>
<table>{rows}</table>
{"".join(f"<p><b>Note.</b> {html.escape(n)}</p>" for n in notes)}
{imgs}
<h2>Per epoch</h2>
<table><tr>{"".join(f"<th>{h}</th>" for h in header)}</tr>{epoch_rows}</table>
{diag_html}
<h2>Recipe</h2>
<pre>{html.escape(recipe_text)}</pre>
</body></html>
"""
    write_text(out / "report.html", page)


def _run_notes(summary: dict[str, Any]) -> list[str]:
    """What a reader must know about how the run went: a held-out test split, a start from
    another run's weights, where the run was lengthened, what the diagnostics watched."""
    notes = list(summary.get("notes", []))
    if (first := summary.get("diagnostics_from_epoch")) is not None:
        notes.append(f"the run was resumed; the diagnostics watched epoch {first} onwards")
    return notes


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _diagnostics_html(out: Path, found: list[Any]) -> str:
    """Findings as sentences, and the diagnostics figures that write_diagnostics saved."""
    items = "".join(f"<li>{html.escape(f.sentence())}</li>" for f in found)
    body = f"<ul>{items}</ul>" if found else "<p>No findings: nothing unhealthy was seen.</p>"
    figs = "".join(
        _embedded(p.stem, p.read_bytes()) for p in sorted((out / "figures").glob("diag_*.png"))
    )
    return (
        f'<h2>Diagnostics</h2>{body}{figs}<p>Details: <a href="diagnostics.html">'
        "diagnostics.html</a>, findings.json</p>"
    )


# -- the doctor's page ---------------------------------------------------------------------------
def doctor_figure(result: Any):
    """The watched run's training loss and each repair's re-run, smoothed over a fiftieth of
    the steps (log scale: a diverging run and a healthy one fit on one axis)."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    runs = [("watched", result.first)] + [
        (change.flags().replace("--set ", ""), trial) for change, trial in result.tries
    ]
    for label, watched in runs:
        steps, loss = watched.report.loss_steps, watched.report.loss
        if len(loss) == 0:
            continue
        span = max(1, len(loss) // 50)
        smooth = np.convolve(np.where(np.isfinite(loss), loss, np.nan), np.ones(span) / span,
                             mode="valid")  # fmt: skip
        ax.plot(steps[span - 1 :], smooth, lw=1.2, label=label[:60])
    ax.set(xlabel="step", ylabel="training loss", yscale="log", title="Watched run and re-runs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _repair_outcome(row: dict[str, Any]) -> str:
    if row["kept"]:
        return "kept"
    # over-fitting's fixes are alternatives: another verified one had a lower error
    return "verified, another kept" if row.get("verified") else "not kept"


def rate_check_text(checked: dict[str, Any] | None) -> str:
    """The rate check in one line ("" if it did not run): each rate's score, and
    the problems of a run that showed any, and the rate kept (the page and repaired.toml)."""
    if not checked or not checked["rates"]:
        return ""
    errors = ", ".join(
        f"{t['lr']:.3g}: " + ("diverged" if t["error"] is None else f"{t['error']:.4g}")
        + (f" ({', '.join(t['problems'])})" if t["problems"] else "")
        for t in checked["rates"]
    )  # fmt: skip
    return f"{checked['score']} by optim.lr {errors}; kept {checked['chosen']:.3g}"


def write_doctor_page(out: Path, result: Any) -> None:
    """``out/doctor.md`` and ``out/doctor.html``: the problems found, each repair tried with the
    loss before and after its re-run, the verdict, the loss curves and the repaired recipe."""
    png = _png_bytes(doctor_figure(result))
    write_with(out / "figures" / "doctor_loss.png", lambda tmp: tmp.write_bytes(png))
    found = result.to_dict()
    problems = [
        (p["code"], "" if p["step"] is None else str(p["step"]), p["evidence"], p["advice"])
        for p in found["problems"]
    ]
    tried = [
        (r["problem"], " ".join(f"{k}={v}" for k, v in r["change"].items()), r["because"],
         r["lab"], _cell(r["before"]) or "inf", _cell(r["after"]) or "inf",
         "yes" if r["problem_gone"] else "no", _repair_outcome(r))
        for r in found["repairs"]
    ]  # fmt: skip
    facts = [
        ("verdict", found["verdict"]),
        ("watched", f"{found['watched_steps']} steps "
                    f"({found['watched_steps'] / found['steps_per_epoch']:.3g} epochs)"),
        ("loss compared", found["score"]),
        ("compute", f"{found['cost_in_runs']:.2f} runs of the recipe"),
    ]  # fmt: skip
    if rate_text := rate_check_text(result.rate_check):
        facts.append(("rate check", rate_text))
    heads = (("problem", "since step", "evidence", "advice"),
             ("problem", "change", "because", "lab", "loss before", "loss after",
              "problem gone", "result"))  # fmt: skip
    recipe_text = result.recipe.to_toml()
    md = [f"# trainlab doctor: {found['verdict']}", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in facts] + ["", "![loss](figures/doctor_loss.png)", ""]
    for title, head, rows in (("Problems", heads[0], problems), ("Repairs", heads[1], tried)):
        md += [f"## {title}", ""]
        if not rows:
            md += ["None.", ""]
            continue
        md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        md += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows] + [""]
    md += ["## Repaired recipe", "", "```toml", recipe_text.rstrip(), "```", ""]
    write_text(out / "doctor.md", "\n".join(md))

    def table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
        if not rows:
            return "<p>None.</p>"
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        return f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{cells}</table>"

    fact_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>trainlab doctor</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; vertical-align: top; }}
img {{ max-width: 100%; }} pre {{ background: #f5f5f5; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>trainlab doctor: {html.escape(found["verdict"])}</h1>
<table>{fact_rows}</table>
{_embedded("loss", png)}
<h2>Problems</h2>{table(heads[0], problems)}
<h2>Repairs</h2>{table(heads[1], tried)}
<h2>Repaired recipe</h2>
<pre>{html.escape(recipe_text)}</pre>
</body></html>
"""
    write_text(out / "doctor.html", page)
