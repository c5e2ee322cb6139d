"""Run lab experiments and show them: one self-contained HTML gallery, and docs/lab.md.

    results = run_lab("all", "lab-out", quick=True, seed=0)   # lab-out/<name>/result.json
    write_gallery("lab-out", results)                         # lab-out/gallery.html
    text = lab_markdown(results, command="trainlab lab all")  # the Markdown page

The gallery embeds every figure as a base64 PNG, so the one file can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import json
import math
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainlab.errors import TrainlabError
from trainlab.fileio import write_text
from trainlab.lab.base import VERDICTS, check_scale, experiment_names, run_experiment

VERDICT_COLOURS = {
    "held": "#1a7f37",
    "inconclusive": "#9a6700",
    "did not hold": "#cf222e",
    "not reached": "#57606a",
}
COMPARISON_COLUMNS = (
    "role",
    "comparison",
    "arms",
    "difference",
    "interval (level)",
    "sign-flip p (above, below)",
    "difference must be",
    "pairs",
    "verdict",
)


def comparison_cells(c: dict[str, Any]) -> list[str]:
    """One comparison record of result.json as table cells, in :data:`COMPARISON_COLUMNS`'
    order: the treatment - baseline difference on the metric's scale (a ratio beside it on
    the log scale), its interval at its level, the exact sign-flip test's one-sided p-values,
    the bound the difference must pass (the minimum effect in the claimed direction), the pairs
    kept (and the runs left out as diverged or collapsed), the verdict (and, for the primary,
    its sensitivity)."""
    d, ci = c["difference"], c["ci"]
    diff = "n/a" if d is None else f"{d:+.4f}"
    if d is not None and c["scale"] == "log":
        diff += f" (x{math.exp(d):.3g})"
    interval = "n/a" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}] ({c['level']:.3g})"
    flip = c.get("sign_flip")
    flip_cell = "-" if not flip else f"{flip['p_above']:.3g}, {flip['p_below']:.3g}"
    # the bound the difference must pass: direction x minimum effect (a negative minimum is a
    # claim of non-inferiority), or ± it for agreement
    if c["direction"] == 0:
        bound = f"±{c['min_effect']:.4g}"
    else:
        bound = f"{'>' if c['direction'] > 0 else '<'} {c['direction'] * c['min_effect']:+.4g}"
    excluded = [
        f"{n} {arm} {status}" for arm, v in c.get("excluded", {}).items() for status, n in v.items()
    ]
    left_out = f"; left out: {', '.join(excluded)}" if excluded else ""
    verdict = c["verdict"]
    if c.get("sensitive"):
        verdict += " (sensitive)"
    return [
        c["role"],
        c["name"],
        " - ".join(c["arms"]),
        diff,
        interval,
        flip_cell,
        f"{bound} ({c['metric']}, {c['scale']})",
        f"{len(c['seeds'])}: {format_value(c['seeds'])}{left_out}",
        verdict,
    ]


def run_line(result: dict[str, Any]) -> str:
    """Where and how one result was measured: size, seed, seconds, threads, torch, date,
    commit and the rule's hash."""
    parts = [
        f"{result.get('size', _size(result))} size",
        f"seed {result.get('seed')}",
        f"{result.get('seconds')} s ({result.get('cpu_seconds', '?')} s CPU)",
    ]
    if "threads" in result:
        parts.append(f"{result['threads']} thread(s), torch {result.get('torch')}")
    for key, label in (("date", ""), ("commit", "commit "), ("rule_hash", "rule ")):
        if key in result:
            parts.append(f"{label}{result[key]}")
    return ", ".join(parts)


def what_would_decide(c: dict[str, Any]) -> str:
    """For a comparison that was not decided (inconclusive, not reached), one sentence saying
    what would decide it; "" for a decided one. The seeds estimate scales the interval's
    half-width h as 1/sqrt(n) until it clears the minimum-effect boundary nearest the mean
    (n' = n (h / |difference - boundary|)^2, the t quantile's shrinking ignored)."""
    if c["verdict"] == "not reached":
        return (
            f"{c['name']}: not reached. The regime the claim is about (stated in the rule) did "
            "not occur; a larger or longer run that reaches it would decide the claim."
        )
    if c["verdict"] != "inconclusive":
        return ""
    n = len(c["seeds"])
    if n < 3 or c["ci"] is None:
        return f"{c['name']}: only {n} pairs; at least 3 are needed to decide anything."
    lo, hi = c["ci"]
    d, m, direction = c["difference"], c["min_effect"], c.get("direction", 1)
    boundaries = [m, -m] if direction == 0 else [direction * m]
    gap = min(abs(d - b) for b in boundaries)
    if gap == 0:
        return f"{c['name']}: the mean sits on the minimum effect; no number of seeds decides it."
    needed = math.ceil(n * ((hi - lo) / 2 / gap) ** 2)
    if needed <= n and c.get("t_verdict") != "inconclusive":
        return (
            f"{c['name']}: the t interval decides ({c['t_verdict']}) but the exact "
            f"sign-flip test does not at {n} pairs; more paired seeds would."
        )
    return (
        f"{c['name']}: inconclusive with {n} pairs; about {max(needed, n + 1)} paired seeds "
        "would narrow the interval enough to decide, if the mean difference stays where it "
        "is."
    )


def run_lab(
    names: Sequence[str] | str,
    out: str | Path,
    quick: bool = False,
    seed: int = 0,
    scale: str | None = None,
) -> list[dict[str, Any]]:
    """Run each experiment (``"all"``: every registered one, in order) into ``out/<name>/`` at
    ``scale`` (default ``"quick"`` if ``quick`` else ``"full"``); returns their results (the
    content of each ``result.json``). Unknown names, or a scale one of them does not offer, are
    refused before anything runs."""
    known = experiment_names()
    wanted = known if names == "all" else [names] if isinstance(names, str) else list(names)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise TrainlabError(
            f"unknown lab experiment(s) {', '.join(map(repr, unknown))}; valid names: "
            f"{', '.join(known)}, all"
        )
    scale = check_scale(wanted, scale or ("quick" if quick else "full"))
    return [run_experiment(name, Path(out) / name, seed=seed, scale=scale) for name in wanted]


def load_results(out: str | Path) -> list[dict[str, Any]]:
    """The results already written under ``out`` (``out/<name>/result.json``), in lab order."""
    paths = [Path(out) / name / "result.json" for name in experiment_names()]
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths if p.is_file()]


def flatten(measured: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``[("a.b", 1), ("c", [1, 2])]``: nested mappings
    become dotted keys; lists of numbers stay one row."""
    rows: list[tuple[str, Any]] = []
    for key, value in measured.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def format_value(value: Any) -> str:
    """Numbers to 4 significant digits; lists in full; booleans as yes/no; None (JSON's
    stand-in for a diverged run's infinite loss, or "never" for a divergence step) as n/a."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #1f2328; }
section { border: 1px solid #d0d7de; border-radius: 8px; padding: 1em 1.5em; margin: 1.5em 0; }
.verdict { color: white; padding: 0.15em 0.6em; border-radius: 1em; font-weight: 600; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
td, th { border: 1px solid #d0d7de; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
img { max-width: 100%; margin: 0.5em 0; border: 1px solid #eee; }
.meta { color: #57606a; font-size: 0.85em; }
"""


def _size(result: dict[str, Any]) -> str:
    return result.get("size") or ("quick" if result.get("quick") else "full")


def _badge(verdict: str) -> str:
    colour = VERDICT_COLOURS.get(verdict, "#57606a")
    return f'<span class="verdict" style="background:{colour}">{html.escape(verdict)}</span>'


def _figure_tag(folder: Path, name: str) -> str:
    path = folder / name
    if not path.is_file():
        return f"<p class='meta'>(figure {html.escape(name)} missing)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'


def _section(result: dict[str, Any], folder: Path) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(k)}</td><td>{e(format_value(v))}</td></tr>"
        for k, v in flatten(result.get("measured", {}))
    )
    figures = "".join(_figure_tag(folder, f) for f in result.get("figures", []))
    comparisons = ""
    if result.get("comparisons"):
        head = "".join(f"<th>{e(h)}</th>" for h in COMPARISON_COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in comparison_cells(c)) + "</tr>"
            for c in result["comparisons"]
        )
        comparisons = f"<table><tr>{head}</tr>{body}</table>"
    return f"""
<section id="{e(result["name"])}">
<h2>{e(result["name"])} {_badge(result["verdict"])}</h2>
<p><b>Claim.</b> {e(result["claim"])}</p>
<p><b>Source.</b> {e(result["source"])}</p>
<p><b>Rule {e(result.get("rule_hash", ""))} (registered before the run).</b> {e(result["rule"])}</p>
{comparisons}
<table><tr><th>measured</th><th>value</th></tr>{rows}</table>
{figures}
<p><b>Notes.</b> {e(result.get("notes", ""))}</p>
<p class="meta">{e(run_line(result))}</p>
</section>"""


def write_gallery(out: str | Path, results: Sequence[dict[str, Any]]) -> Path:
    """Write ``out/gallery.html``: every experiment's claim, source, rule, coloured verdict,
    measured numbers and figures (embedded), and notes. Figures are read from
    ``out/<name>/``."""
    out = Path(out)
    summary = "".join(
        f"<tr><td><a href='#{html.escape(r['name'])}'>{html.escape(r['name'])}</a></td>"
        f"<td>{_badge(r['verdict'])}{' sensitive' if r.get('sensitive') else ''}</td>"
        f"<td>{html.escape(secondary_counts(r))}</td></tr>"
        for r in results
    )
    body = "".join(_section(r, out / r["name"]) for r in results)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>trainlab lab gallery</title>
<style>{_CSS}</style></head><body>
<h1>trainlab lab: the lecture's claims, measured</h1>
<p class="meta">{len(results)} experiments, written {stamp} on {html.escape(platform.node())}.
Verdicts: {", ".join(VERDICTS)}.</p>
<table><tr><th>experiment</th><th>verdict (primary)</th><th>secondaries</th></tr>{summary}</table>
{body}
</body></html>
"""
    path = out / "gallery.html"
    write_text(path, page)
    return path


def secondary_counts(result: dict[str, Any]) -> str:
    """The secondary comparisons' verdicts counted, e.g. "3 held, 1 inconclusive"."""
    from trainlab.lab.evidence import count_verdicts

    counts = count_verdicts(result["comparisons"][1:])
    return ", ".join(f"{n} {v}" for v, n in counts.items()) or "none"


PAGE_INTRO = (
    "Each experiment states a claim, its source and a rule registered as data before it runs "
    "(`src/trainlab/lab/exp_*.py`; every version of every rule, with the verdicts it gave, is "
    "in [lab_ledger.md](lab_ledger.md)). One **primary** comparison over paired seeds decides "
    "the verdict: the mean paired difference on the metric's scale (log for ratios and losses; "
    "bounded fractions keep their interval inside [-1, 1]) with its paired-t 95% interval "
    "against a minimum effect fixed in the rule, beside the exact sign-flip test (with five "
    "pairs or fewer the more conservative of the two decides). **held**: beyond the minimum "
    "effect in the claimed direction (inside the tolerance, for a claim of agreement); **did "
    "not hold**: short of it, or the other way; **inconclusive**: neither (or fewer than 3 "
    "pairs); **not reached**: the regime the claim is about did not occur. Secondary "
    "comparisons are judged at Holm's step-down levels and never overturn the primary. A run "
    "that diverged or collapsed is left out of its pair and counted, never given a value. "
    "Rates are tuned on three tuning seeds; a verdict that flips when an arm moves to a "
    "neighbouring or tied rate of its grid is marked **sensitive**. In the tables, n/a stands "
    "for a value that does not exist (a diverged run's loss, a step that never came)."
)


def lab_markdown(
    results: Sequence[dict[str, Any]],
    *,
    command: str = "",
    machine: str = "",
    date: str | None = None,
    not_run: Sequence[str] = (),
    remarks: str = "",
    ledger_rows: Sequence[str] = (),
    ledger: dict[str, Any] | None = None,
) -> str:
    """The lab's Markdown page: the verdicts (and, from the ledger, every rule version's and
    every run's), ``remarks`` (a reader's comments on this run, written after it, kept apart
    from the measured results), then per experiment its claim, source, rule, verdict, its
    comparisons (with what would decide the undecided ones), every measured number and notes.
    With ``ledger``, the verdict shown is the current rule's over all its runs (runs on
    different seeds that disagree make it inconclusive and sensitive, with each run's verdict
    beside it); this run's own verdict stays in its section."""
    date = date or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# The lab: the lecture's claims, measured", "", PAGE_INTRO, "", f"- Date: {date}"]
    if machine:
        lines.append(f"- Machine: {machine}")
    if command:
        lines.append(f"- Command: `{command}`")
    lines += [
        "",
        "| experiment | size | verdict (primary) | secondaries | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        verdict = _verdict_cell(r, ledger)
        lines.append(
            f"| [{r['name']}](#{r['name']}) | {_size(r)} | {verdict} | "
            f"{secondary_counts(r)} | {r['seconds']} |"
        )
    lines += [f"| {name} | not run | - | - | - |" for name in not_run]
    if ledger_rows:
        lines += [
            "",
            "Every rule version and run (from the ledger):",
            "",
            "| experiment | earlier rule versions | current rule's runs | current verdict |",
            "|---|---|---|---|",
            *ledger_rows,
        ]
    if remarks.strip():
        lines += ["", "## Remarks on this run (written after it)", "", remarks.strip()]
    for r in results:
        numbers = [f"| {k} | {format_value(v)} |" for k, v in flatten(r.get("measured", {}))]
        lines += [
            "",
            f"## {r['name']}",
            "",
            f"**Verdict: {r['verdict']}**"
            + (" (sensitive)" if r.get("sensitive") else "")
            + f" ({run_line(r)})"
            + _across_runs(r, ledger),
            "",
            f"- Claim: {r['claim']}",
            f"- Source: {r['source']}",
            f"- Rule: {r['rule']}",
            "",
            "Comparisons (mean paired difference; the primary first):",
            "",
            "| " + " | ".join(COMPARISON_COLUMNS) + " |",
            "|" + "---|" * len(COMPARISON_COLUMNS),
        ]
        lines += ["| " + " | ".join(comparison_cells(c)) + " |" for c in r["comparisons"]]
        primary = r["comparisons"][0]
        if primary.get("neighbours"):
            moved = "; ".join(
                f"{n['arm']} at {n['lr']:g}: {n['verdict']}" for n in primary["neighbours"]
            )
            lines += ["", f"Primary re-decided at neighbouring rates: {moved}."]
        deciders = [what_would_decide(c) for c in r["comparisons"]]
        lines += ["", *[f"- {d}" for d in deciders if d]] if any(deciders) else []
        lines += ["", "| measured | value |", "|---|---|", *numbers]
        if r.get("notes"):
            lines += ["", f"Notes: {r['notes']}"]
        if r.get("figures"):
            lines += ["", "Figures: " + ", ".join(f"`{f}`" for f in r["figures"])]
    return "\n".join(lines) + "\n"


def _current(result: dict[str, Any], ledger: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ledger's verdict for ``result``'s rule, if the ledger holds this rule's runs."""
    from trainlab.lab.ledger import verdict_in

    now = verdict_in(ledger, result["name"]) if ledger else None
    return now if now and now["rule_hash"] == result.get("rule_hash") else None


def _verdict_cell(result: dict[str, Any], ledger: dict[str, Any] | None) -> str:
    now = _current(result, ledger)
    if now is None or now["runs"] < 2:
        return f"**{result['verdict']}**" + (" (sensitive)" if result.get("sensitive") else "")
    cell = f"**{now['verdict']}**" + (" (sensitive)" if now["sensitive"] else "")
    return cell + f" ({now['runs']} runs: {', '.join(now['verdicts'])})"


def _across_runs(result: dict[str, Any], ledger: dict[str, Any] | None) -> str:
    now = _current(result, ledger)
    if now is None or now["runs"] < 2:
        return ""
    agree = len(set(now["verdicts"])) == 1
    return (
        f". Over the rule's {now['runs']} runs ({', '.join(now['verdicts'])}): "
        f"**{now['verdict']}**"
        + (" (sensitive)" if now["sensitive"] else "")
        + ("" if agree else "; the runs on different seeds disagree, so the claim is not settled")
        + (", confirmed on fresh seeds" if now["confirmed"] else "")
    )
