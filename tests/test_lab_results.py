"""Every lab experiment, run once at its smoke size (tests/lab_support.py), writes a well-formed
result: the primary comparison first and deciding the verdict, the secondaries judged at Holm's
levels, records the statistics module can rebuild, the frame's registered rule and its hash,
finite numbers, real PNG figures; the gallery and docs/lab.md page show every comparison and
every number.

Smoke runs check the plumbing, not the claims (three seeds cannot pass the sign-flip test): the
claims are the experiments' own job at full size (docs/lab.md)."""

from __future__ import annotations

import base64
import html
import json
import math
import re

import pytest
import torch
from lab_support import needs_data, numbers, smoke_lab

from trainlab.lab import evidence
from trainlab.lab.base import VERDICTS, experiment, experiment_names, get_experiment
from trainlab.lab.gallery import (
    comparison_cells,
    flatten,
    format_value,
    lab_markdown,
    what_would_decide,
    write_gallery,
)
from trainlab.lab.rules import Rule, Spec

RECORD_KEYS = {
    "name",
    "role",
    "metric",
    "scale",
    "arms",
    "difference",
    "ci",
    "level",
    "min_effect",
    "direction",
    "seeds",
    "excluded",
    "verdict",
    "t_verdict",
    "sign_flip",
    "p_value",
    "sensitive",
    "neighbours",
    "note",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
pytestmark = needs_data


@pytest.fixture(scope="module")
def lab():
    out, results, untouched = smoke_lab()
    assert untouched, "the lab touched the global RNG"
    return out, results


def test_every_registered_experiment_ran(lab):
    _, results = lab
    assert list(results) == experiment_names() and results  # no count: whatever is registered


@pytest.mark.parametrize("name", experiment_names())
def test_result_file_is_well_formed(lab, name):
    out, results = lab
    result = json.loads((out / name / "result.json").read_text())
    assert result == results[name]
    exp = get_experiment(name)
    assert (result["name"], result["claim"], result["source"]) == (name, exp.claim, exp.source)
    assert result["rule"] == exp.rule_text and result["rule_hash"] == exp.rule_hash
    assert result["verdict"] in VERDICTS and result["size"] == "smoke"
    assert result["seeds"] == list(range(exp.sizes["seeds"][0]))
    assert result["tuning_seeds"] == [10_000, 10_001, 10_002]
    assert not set(result["seeds"]) & set(result["tuning_seeds"])
    assert result["threads"] >= 1 and result["torch"] == torch.__version__
    assert "config" in result["measured"]  # the frame records the size's values
    assert all(math.isfinite(v) for _, v in numbers(result["measured"]))
    assert "comparisons.png" in result["figures"] and len(result["figures"]) >= 2
    for figure in result["figures"]:
        assert (out / name / figure).read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("name", experiment_names())
def test_the_primary_decides_and_secondaries_are_holm_judged(lab, name):
    _, results = lab
    result = results[name]
    primary, *secondaries = result["comparisons"]
    for c in result["comparisons"]:
        assert set(c) == RECORD_KEYS and c["verdict"] in evidence.VERDICTS
        assert c["scale"] in evidence.SCALES and len(c["arms"]) == 2
        if c["ci"] is not None:
            lo, hi = c["ci"]
            assert lo <= c["difference"] <= hi
            if c["scale"] == "fraction":
                assert -1 <= lo and hi <= 1
        if len(c["seeds"]) < 6:  # the exact sign-flip test cannot pass below 6 pairs
            assert c["verdict"] in ("inconclusive", "not reached")
    assert primary["role"] == "primary" and primary["level"] == 0.95
    assert result["verdict"] == primary["verdict"] and result["sensitive"] == primary["sensitive"]
    exp = get_experiment(name)
    assert primary["name"] == exp.rule.primary.name
    assert primary["min_effect"] == pytest.approx(exp.rule.primary.min_effect, rel=1e-5)
    assert all(c["role"] == "secondary" for c in secondaries)
    judged = [c for c in secondaries if c["ci"] is not None and c["verdict"] != "not reached"]
    # Holm: the k-th of m by p-value at level 1 - 0.05 / (m - k), or the first failure's level
    allowed = {1 - 0.05 / (len(judged) - k) for k in range(len(judged))}
    assert all(any(c["level"] == pytest.approx(a) for a in allowed) for c in judged)
    assert len({c["name"] for c in result["comparisons"]}) == len(result["comparisons"])


@pytest.mark.parametrize("name", experiment_names())
def test_tuned_experiments_recheck_the_primary_at_neighbouring_rates(lab, name):
    _, results = lab
    result = results[name]
    searches = result["measured"].get("lr_search", {})
    primary = result["comparisons"][0]
    if not searches or primary["sensitive"] is None:
        return  # nothing tuned decides this primary (timing, init statistics)
    assert primary["neighbours"], "a tuned primary is re-decided at neighbouring rates"
    for n in primary["neighbours"]:
        assert n["verdict"] in evidence.VERDICTS
    assert primary["sensitive"] == any(
        n["verdict"] != primary["verdict"] for n in primary["neighbours"]
    )
    for search in searches.values():
        assert len(search["tuning_seeds"]) >= 3 and search["best"] in search["tried"]


def test_gallery_embeds_every_claim_comparison_and_figure(lab):
    out, results = lab
    page = write_gallery(out, list(results.values())).read_text()
    for r in results.values():
        assert html.escape(r["claim"]) in page and f'id="{r["name"]}"' in page
        assert all(html.escape(c["name"]) in page for c in r["comparisons"])
    n_figures = sum(len(r["figures"]) for r in results.values())
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == n_figures
    assert all(base64.b64decode(b)[:8] == PNG_MAGIC for b in embedded)


def test_markdown_shows_every_comparison_and_every_number(lab):
    _, results = lab
    md = lab_markdown(list(results.values()), command="x", machine="m", ledger_rows=["| r |"])
    assert "| r |" in md
    for r in results.values():
        assert f"## {r['name']}" in md and r["claim"] in md and f"**Verdict: {r['verdict']}" in md
        assert r["rule_hash"] in md
        for c in r["comparisons"]:
            assert "| " + " | ".join(comparison_cells(c)) + " |" in md
        for key, value in flatten(r["measured"]):  # no number cut from the page
            assert f"| {key} | {format_value(value)} |" in md


def _record(verdict, difference, ci, seeds=6, min_effect=0.005, direction=1, t="inconclusive"):
    return {
        "name": "c",
        "metric": "test_acc",
        "arms": ["a", "b"],
        "difference": difference,
        "ci": list(ci),
        "min_effect": min_effect,
        "seeds": list(range(seeds)),
        "verdict": verdict,
        "direction": direction,
        "t_verdict": t,
    }


def test_what_would_decide_an_undecided_comparison():
    assert what_would_decide(_record("held", 0.02, (0.01, 0.03))) == ""
    assert "not reached" in what_would_decide(_record("not reached", 0.02, (0.01, 0.03)))
    # Half-width 0.01, mean 0.005 from the 0.005 boundary: the width must shrink 2x, so 4x the
    # seeds (1/sqrt(n) scaling): 6 -> 24.
    assert "about 24 paired seeds" in what_would_decide(_record("inconclusive", 0.010, (0.0, 0.02)))
    assert "at least 3" in what_would_decide(_record("inconclusive", 0.0, (-1, 1), seeds=2))
    # The t interval decided but the sign-flip test did not: more seeds, not a wider mean.
    text = what_would_decide(_record("inconclusive", 0.1, (0.05, 0.15), seeds=5, t="held"))
    assert "sign-flip" in text


def test_registration_checks_sizes_and_the_paper_plan():
    rule = Rule("d", Spec("p", ("a", "b"), "m", "linear", 0.1, 1))
    with pytest.raises(ValueError, match="'bad'.*needs 'seeds'"):
        experiment("bad", claim="c", source="s", sizes={"n": (1, 2, 3)}, rule=rule)
    with pytest.raises(ValueError, match="size 'n' must be a tuple"):
        experiment("bad", claim="c", source="s", sizes={"n": (1, 2), "seeds": (3, 3, 6)}, rule=rule)
    with pytest.raises(ValueError, match="differ in length"):
        experiment(
            "bad", claim="c", source="s", sizes={"n": (1, 2, 3, 4), "seeds": (3, 3, 6)}, rule=rule
        )
    with pytest.raises(ValueError, match="paper column and a plan"):
        experiment("bad", claim="c", source="s", sizes={"seeds": (3, 3, 6, 6)}, rule=rule)
    with pytest.raises(ValueError, match="scale must be one of"):
        Spec("p", ("a", "b"), "m", "ratio", 0.1, 1)
    assert "bad" not in experiment_names()


def test_the_rule_hash_moves_with_every_part_of_the_rule():
    from trainlab.lab.rules import rule_hash

    spec = Spec("p", ("a", "b"), "m", "log", 0.1, 1)
    base = rule_hash("x", "claim", Rule("d", spec), {"seeds": (3, 3, 6)})
    assert len(base) == 12
    changed = [
        rule_hash(
            "x", "claim", Rule("d", Spec("p", ("a", "b"), "m", "log", 0.2, 1)), {"seeds": (3, 3, 6)}
        ),
        rule_hash("x", "claim", Rule("d", spec, preconditions=("q",)), {"seeds": (3, 3, 6)}),
        rule_hash("x", "claim", Rule("d", spec), {"seeds": (3, 3, 8)}),
        rule_hash("x", "claim", Rule("d", spec), {"seeds": (3, 3, 6, 6)}),
        rule_hash("x", "other claim", Rule("d", spec), {"seeds": (3, 3, 6)}),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    assert base == rule_hash("x", "claim", Rule("d", spec), {"seeds": (3, 3, 6)})
    assert base == rule_hash("x", "claim", Rule("d", spec), {"seeds": (2, 4, 6)})  # previews


def test_runs_that_disagree_leave_the_page_inconclusive_and_say_so(lab):
    """Two full runs of one rule on different seeds, one 'held' and one 'did not hold': the
    page's table shows the rule's verdict over both (inconclusive, sensitive) with each run's,
    and the experiment's section keeps this run's own verdict beside it."""
    from trainlab.lab import ledger as ledger_module

    _, results = lab
    r = next(iter(results.values()))
    book = {"format": "x", "experiments": {}}
    for seed, verdict in ((0, "held"), (1000, "did not hold")):
        run = {**r, "size": "full", "seed": seed, "seeds": [seed + k for k in range(5)],
               "tuning_seeds": [], "verdict": verdict, "date": f"d{seed}"}  # fmt: skip
        book = ledger_module.record(book, run, commit="c")
    md = lab_markdown([r], ledger=book)
    assert "| **inconclusive** (sensitive) (2 runs: held, did not hold) |" in md
    assert "the runs on different seeds disagree" in md
    assert f"**Verdict: {r['verdict']}**" in md
    # one run only: the run's own verdict, as without a ledger
    single = ledger_module.record({"format": "x", "experiments": {}}, {**r, "size": "full"},
                                  commit="c")  # fmt: skip
    assert lab_markdown([r], ledger=single, date="d") == lab_markdown([r], date="d")
