"""Every lab experiment, run once at its smoke size, writes a well-formed result: the issue's
comparison records, a verdict that follows from them by the rule "all", finite numbers, real
PNG figures; the gallery and docs/lab.md page show every comparison and every number.

Smoke runs check the plumbing, not the claims (two seeds never decide): the claims are the
experiments' own job at full size (docs/lab.md)."""

from __future__ import annotations

import base64
import html
import json
import math
import re

import pytest
import torch
from lab_support import numbers

from trainlab.lab import evidence
from trainlab.lab import runs as lab_runs
from trainlab.lab.base import VERDICTS, experiment_names, get_experiment
from trainlab.lab.gallery import (
    flatten,
    format_value,
    lab_markdown,
    run_lab,
    what_would_decide,
    write_gallery,
)

RECORD_KEYS = {"name", "metric", "arms", "difference", "ci95", "min_effect", "seeds", "verdict"}
RECORD_EXTRA = {"direction", "interval"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_lab(tmp_path_factory):
    """Every experiment once at smoke size, into one lab folder."""
    out = tmp_path_factory.mktemp("lab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(lab_runs.SMOKE_ENV, "1")
        state = torch.random.get_rng_state()
        results = run_lab("all", out, quick=True, seed=0)
        assert torch.equal(torch.random.get_rng_state(), state), "the lab touched the global RNG"
    return out, {r["name"]: r for r in results}


def test_all_thirteen_experiments_ran(smoke_lab):
    _, results = smoke_lab
    assert list(results) == experiment_names() and len(results) == 13


@pytest.mark.parametrize("name", experiment_names())
def test_result_file_is_well_formed(smoke_lab, name):
    out, results = smoke_lab
    result = json.loads((out / name / "result.json").read_text())
    assert result == results[name]
    exp = get_experiment(name)
    assert (result["name"], result["claim"], result["source"]) == (name, exp.claim, exp.source)
    assert result["rule"] == exp.rule and result["verdict"] in VERDICTS
    assert result["size"] == "smoke" and result["quick"] is True and result["seed"] == 0
    assert result["threads"] >= 1 and result["torch"] == torch.__version__
    assert "checks" not in result["measured"], "identity checks are unit tests, not evidence"
    assert "partly held" not in json.dumps(result)
    # Infinite losses are stored as null (n/a); every other number is finite.
    assert all(math.isfinite(v) for _, v in numbers(result["measured"]))
    assert result["figures"]
    for figure in result["figures"]:
        assert (out / name / figure).read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("name", experiment_names())
def test_comparison_records_decide_the_verdict(smoke_lab, name):
    _, results = smoke_lab
    records = results[name]["comparisons"]
    assert records, "every verdict rests on at least one comparison"
    for c in records:
        assert set(c) == RECORD_KEYS | RECORD_EXTRA
        assert isinstance(c["name"], str) and c["name"] and isinstance(c["metric"], str)
        assert len(c["arms"]) == 2 and c["arms"][0] != c["arms"][1]
        lo, hi = c["ci95"]
        assert math.isfinite(lo) and math.isfinite(hi) and lo <= c["difference"] <= hi
        assert math.isfinite(c["min_effect"]) and c["direction"] in (1, -1, 0)
        assert c["interval"] == "paired t" and c["verdict"] in evidence.VERDICTS
        assert len(c["seeds"]) >= 2 and len(set(c["seeds"])) == len(c["seeds"])
        if len(c["seeds"]) < 3:  # the smoke size: two seeds decide nothing
            assert c["verdict"] in ("inconclusive", "not reached")
    assert len({c["name"] for c in records}) == len(records), "each sub-claim named once"
    rebuilt = [
        evidence.Comparison(
            c["name"],
            c["metric"],
            tuple(c["arms"]),
            c["difference"],
            tuple(c["ci95"]),
            c["min_effect"],
            c["direction"],
            c["seeds"],
            c["verdict"],
        )  # fmt: skip
        for c in records
    ]
    assert results[name]["verdict"] == evidence.overall_verdict(rebuilt)


def test_gallery_embeds_every_claim_comparison_and_figure(smoke_lab):
    out, results = smoke_lab
    page = write_gallery(out, list(results.values())).read_text()
    for r in results.values():
        assert html.escape(r["claim"]) in page and f'id="{r["name"]}"' in page
        assert all(html.escape(c["name"]) in page for c in r["comparisons"])
    n_figures = sum(len(r["figures"]) for r in results.values())
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == n_figures
    assert all(base64.b64decode(b)[:8] == PNG_MAGIC for b in embedded)


def test_markdown_shows_every_comparison_and_every_number(smoke_lab):
    _, results = smoke_lab
    md = lab_markdown(list(results.values()), command="x", machine="m")
    assert "partly held" not in md
    for r in results.values():
        assert f"## {r['name']}" in md and r["claim"] in md and f"**Verdict: {r['verdict']}" in md
        assert f"{r['threads']} thread(s)" in md
        for c in r["comparisons"]:
            lo, hi = c["ci95"]
            row = f"| {c['name']} | {' - '.join(c['arms'])} | {c['difference']:+.4f} | "
            assert row + f"[{lo:+.4f}, {hi:+.4f}] |" in md
        for key, value in flatten(r["measured"]):  # no number cut from the page
            assert f"| {key} | {format_value(value)} |" in md


def _record(verdict, difference, ci95, seeds=5, min_effect=0.005, direction=1):
    return {"name": "c", "metric": "test_acc", "arms": ["a", "b"], "difference": difference,
            "ci95": list(ci95), "min_effect": min_effect, "seeds": list(range(seeds)),
            "verdict": verdict, "direction": direction}  # fmt: skip


def test_what_would_decide_an_undecided_comparison():
    assert what_would_decide(_record("held", 0.02, (0.01, 0.03))) == ""
    assert "not reached" in what_would_decide(_record("not reached", 0.02, (0.01, 0.03)))
    # Half-width 0.01, mean 0.005 from the 0.005 boundary: the width must shrink 2x, so 4x the
    # seeds (1/sqrt(n) scaling): 5 -> 20.
    text = what_would_decide(_record("inconclusive", 0.010, (0.0, 0.02)))
    assert "about 20 paired seeds" in text
    assert "at least 3" in what_would_decide(_record("inconclusive", 0.0, (-1, 1), seeds=2))
    # Agreement: the nearest of the two boundaries +-0.05 counts.
    text = what_would_decide(_record("inconclusive", 0.03, (0.01, 0.05), min_effect=0.05,
                                     direction=0))  # fmt: skip
    assert "about 5 paired seeds" in text or "about 6 paired seeds" in text
