"""The lab's ledger: runs recorded under their rule's version, fresh seeds checked against every
earlier run, the current verdict read without torch, and the page written from the same data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trainlab.lab import ledger


def _result(
    name="exp",
    rule_hash="aaa",
    seed=100,
    verdict="held",
    date="2026-12-01 10:00 UTC",
    sensitive=False,
    size="full",
):
    return {
        "name": name,
        "rule_hash": rule_hash,
        "rule": f"rule {rule_hash}",
        "date": date,
        "size": size,
        "seed": seed,
        "seeds": [seed + i for i in range(6)],
        "tuning_seeds": [seed + 10_000 + k for k in range(3)],
        "verdict": verdict,
        "sensitive": sensitive,
        "seconds": 12.5,
        "comparisons": [
            {
                "name": "p",
                "difference": 0.1,
                "ci": [0.05, 0.15],
                "level": 0.95,
                "scale": "linear",
                "verdict": verdict,
            },
            {"name": "s", "verdict": "inconclusive"},
        ],
    }


def test_runs_are_recorded_under_their_rule_version_with_fresh_seeds():
    book = {"format": ledger.FORMAT, "experiments": {}}
    book = ledger.record(
        book, _result(rule_hash="old", seed=0, verdict="did not hold"), commit="c1"
    )
    book = ledger.record(book, _result(seed=100), commit="c2")
    book = ledger.record(book, _result(seed=102, date="2026-12-02 10:00 UTC"), commit="c3")
    versions = book["experiments"]["exp"]["versions"]
    assert [v["rule_hash"] for v in versions] == ["old", "aaa"]
    assert [v["version"] for v in versions] == [1, 2]
    first, second = versions[1]["runs"]
    assert first["fresh"] and not second["fresh"]  # 102..107 overlaps 100..105
    assert first["secondaries"] == {"inconclusive": 1} and first["commit"] == "c2"
    assert ledger.used_seeds(book, "exp") >= set(range(0, 6)) | {10_100, 10_104}
    # recording the same run again replaces it
    book = ledger.record(book, _result(seed=100, verdict="inconclusive"), commit="c2")
    assert [r["verdict"] for r in book["experiments"]["exp"]["versions"][1]["runs"]] == [
        "held",
        "inconclusive",
    ]
    with pytest.raises(ValueError, match="records"):
        ledger.record(book, _result(size="smoke"), commit="c")


def test_current_verdict_agrees_or_is_inconclusive_and_sensitive(tmp_path):
    path = tmp_path / "ledger.json"
    book = {"format": ledger.FORMAT, "experiments": {}}
    book = ledger.record(book, _result(rule_hash="old", seed=0, verdict="did not hold"), commit="a")
    book = ledger.record(book, _result(seed=100), commit="b")
    ledger.save(book, path)
    now = ledger.current_verdict("exp", path)
    assert now["verdict"] == "held" and now["rule_hash"] == "aaa" and now["rule_version"] == 2
    assert now["confirmed"] and not now["sensitive"] and now["size"] == "full"
    # a second fresh run that disagrees: not established
    book = ledger.record(book, _result(seed=200, verdict="inconclusive", date="d2"), commit="c")
    ledger.save(book, path)
    now = ledger.current_verdict("exp", path)
    assert now["verdict"] == "inconclusive" and now["sensitive"]
    assert now["verdicts"] == ["held", "inconclusive"] and not now["confirmed"]
    assert ledger.current_verdict("unknown", path) is None
    assert ledger.current_verdict("exp", tmp_path / "missing.json") is None


def test_the_markdown_lists_every_version_and_run():
    book = {"format": ledger.FORMAT, "experiments": {}}
    book = ledger.record(book, _result(rule_hash="old", seed=0, verdict="did not hold"), commit="a")
    book = ledger.record(book, _result(seed=100, sensitive=True), commit="b")
    book["experiments"]["exp"]["versions"][0]["changed_after_data"] = "the threshold moved"
    md = ledger.ledger_markdown(book, ["exp"])
    assert "### Version 1 (rule old" in md and "### Version 2 (rule aaa" in md
    assert "Changed after seeing data: the threshold moved" in md
    assert "| 100-105 | 10100-10102 | yes | held | +0.1 [+0.05, +0.15] | yes | 12.5 |" in md
    (row,) = ledger.summary_rows(book, ["exp"])
    assert row.startswith("| exp | v1: did not hold") and "**held** (sensitive)" in row


def test_the_committed_ledger_is_well_formed_and_reads_without_torch():
    book = ledger.load()
    assert book["format"] == ledger.FORMAT and book["experiments"]
    for name, entry in book["experiments"].items():
        assert [v["version"] for v in entry["versions"]] == list(
            range(1, len(entry["versions"]) + 1)
        )
        for v in entry["versions"]:
            assert v["rule_hash"] and v["rule"] and v["origin"]
            for r in v["runs"]:
                assert r["verdict"] in ("held", "did not hold", "inconclusive", "not reached")
        assert ledger.current_verdict(name) is not None
    code = (
        "import sys, json; from trainlab.lab.ledger import current_verdict; "
        "v = current_verdict('dead-relu'); print(json.dumps([v['verdict'], "
        "'torch' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    verdict, torch_loaded = json.loads(out.stdout)
    assert verdict in ("held", "did not hold", "inconclusive", "not reached")
    assert not torch_loaded
