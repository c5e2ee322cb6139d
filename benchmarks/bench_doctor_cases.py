"""The doctor on faults it was not built from: networks and set-ups written as published fault
benchmarks describe real programs (benchmarks/doctor_cases.py says which), beside AutoTrainer's
rules on the same runs.

The corpus of bench_doctor.py plants the lecture's failure modes through trainlab's own model
kinds. Here every network is a user's own module (``model.kind = "import:..."``, its own
initialization kept), and the labels (MUST, MAY) were fixed by how each case was built and
committed before the first run. Each case is watched, repaired and trained in full exactly as a
corpus setup is (bench_doctor.run_setup), and judged as one is: detection by problem kind,
repair within 1 point of the best healthy control of the same network on every test image.

Four exact rules (``symmetric``, ``no_gradient``, ``probability_output``, ``linear_network``)
were written after a probe network showed the doctor missing five faults: a softmax before the
loss, a detached body, zero init under ReLU and under sigmoid, and layers with no activation
between them (``linear_network`` and the linear-stack case came after the cases' first runs).
The cases that repeat those faults on other networks are marked SEEN_IN_DESIGN; the rest were
first run here.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_doctor_cases.py [--jobs 2] [--seed 0]
Writes docs/benchmarks/doctor_cases.md and doctor_cases.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_doctor as bench  # noqa: E402

CASES_FILE = "benchmarks/doctor_cases.py"  # relative: the benchmark runs from the repository
FM = bench.FM
BASE = (
    "data.subset=4000", "train.batch_size=64", "train.epochs=9", "optim.lr=0.02",
    "init.scheme=keep", "augment.train=[]", "train.channels_last=false",
)  # fmt: skip
DIVERGED = ("exploding", "vanishing", "dead_units", "stalled", "oscillating", "saturated")
SEEN_IN_DESIGN = ("own-mlp/redundant-softmax", "own-mlp/zero-init", "own-cnn/detached-features",
                  "own-mlp/data-attribute", "own-mlp/linear-stack")  # fmt: skip


def _group(name: str, factory: str) -> bench.Group:
    return bench.Group(name, FM, (*BASE, f"model.kind=import:{CASES_FILE}:{factory}"))


GROUPS = {
    g.name: g
    for g in (
        _group("own-mlp", "mlp"),
        _group("own-cnn", "cnn"),
        _group("own-deep", "deep_mlp"),
    )
}


def _case(name, group, overrides=(), must=(), may=()) -> bench.Setup:
    return bench._s(f"{group}/{name}", group, tuple(overrides), must, may, 0 if not must else 1)


def _own(factory: str) -> str:
    return f"model.kind=import:{CASES_FILE}:{factory}"


def cases() -> list[bench.Setup]:
    """Every case and its labels, by how it was built."""
    return [
        # the healthy controls, and the same network at a second rate: the references of repair
        _case("healthy", "own-mlp"),
        _case("healthy-lr", "own-mlp", ["optim.lr=0.05"]),
        _case("healthy", "own-cnn"),
        _case("healthy-lr", "own-cnn", ["optim.lr=0.05"]),
        _case("healthy", "own-deep"),
        _case("healthy-lr", "own-deep", ["optim.lr=0.01"]),
        # faults in the network
        _case("redundant-softmax", "own-mlp", [_own("redundant_softmax")],
              ["probability_output"], ["stalled"]),
        _case("sigmoid-output", "own-cnn", [_own("sigmoid_output")],
              ["probability_output"], ["stalled"]),
        _case("zero-init", "own-mlp", [_own("zero_init")], ["symmetric"],
              ["dead_units", "stalled", "vanishing"]),
        _case("constant-init", "own-mlp", [_own("constant_init")], ["symmetric"],
              ["stalled", "vanishing", "saturated", "exploding"]),
        _case("detached-features", "own-cnn", [_own("DetachedFeatures")], ["vanishing"],
              ["stalled"]),
        _case("data-attribute", "own-mlp", [_own("DataAttribute")], ["vanishing"], ["stalled"]),
        _case("linear-stack", "own-mlp", [_own("linear_stack")], ["linear_network"]),
        _case("deep-sigmoid", "own-deep", [_own("deep_sigmoid")], ["vanishing"],
              ["saturated", "stalled"]),
        _case("negative-bias", "own-deep", [_own("negative_bias")], ["dead_units"],
              ["stalled", "vanishing"]),
        _case("large-init", "own-deep", [_own("large_init")], ["exploding"],
              [*DIVERGED, "diverging"]),
        # faults in the training set-up, on the healthy networks
        _case("raw-pixels", "own-mlp", ["data.normalize=none"], ["input_not_centred"],
              [*DIVERGED, "diverging"]),
        _case("rate-too-high", "own-cnn", ["optim.lr=2.0"], ["diverging"], DIVERGED),
        _case("rate-too-low", "own-mlp", ["optim.lr=2e-6"], ["stalled"]),
        _case("adam-rate-too-high", "own-deep", ["optim.name=adamw", "optim.lr=0.05"],
              ["dead_units"], ["stalled", "diverging", "oscillating", "vanishing"]),
    ]  # fmt: skip


def _one(args: tuple[bench.Setup, int]) -> dict[str, Any]:
    bench.GROUPS.update(GROUPS)
    bench.half_of = lambda setup: "cases"  # these are in neither half of the corpus
    setup, seed = args
    try:
        return bench.run_setup(setup, repair=True, seed=seed)
    except Exception as exc:  # a failing case is reported, not fatal
        return {"name": setup.name, "error": f"{type(exc).__name__}: {exc}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="case names (or prefixes) to run")
    parser.add_argument("--page", default="doctor_cases")
    args = parser.parse_args()
    chosen = [c for c in cases() if not args.only or any(c.name.startswith(o) for o in args.only)]
    t0 = time.perf_counter()
    rows = []
    jobs = [(c, args.seed) for c in chosen]
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else bench._Serial() as pool:
        for row in pool.map(_one, jobs):
            rows.append(row)
            brief = row.get("error") or (f"ours {row['codes']} theirs {row['autotrainer']} "
                                         f"{row['verdict']} {row.get('test_acc_all')}")  # fmt: skip
            print(f"{row['name']:32s} {brief}", flush=True)
    wall = time.perf_counter() - t0
    failed = [r for r in rows if "error" in r]
    if failed or args.only:
        return 1 if failed else 0
    write_page(rows, wall, args)
    return 0


def write_page(rows: list[dict[str, Any]], wall: float, args: Any) -> None:
    import torch

    from trainlab.bench import cpu_model
    from trainlab.fileio import write_json, write_text

    labels = {c.name: c for c in cases()}
    repaired = bench.repair_rate(rows, bench.best_healthy(rows, "test_acc_all"))
    ours, theirs = bench.score(rows, "ours"), bench.score(rows, "theirs")
    table = [
        "| case | built with | must show | may show | the doctor named | AutoTrainer named "
        "| verdict | test accuracy, every image (best control) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        setup = labels[r["name"]]
        seen = " (seen in design)" if r["name"] in SEEN_IN_DESIGN else ""
        built = ", ".join(f"`{o.replace(f'import:{CASES_FILE}:', '')}`" for o in setup.overrides)
        acc = r.get("test_acc_all")
        best = r.get("best_healthy")
        acc_text = "-" if acc is None else f"{100 * acc:.1f}%"
        if best is not None:
            mark = "repaired" if r.get("repaired") else "not within 1 point"
            acc_text += f" ({100 * best:.1f}%; {mark})"
        table.append(
            f"| `{r['name']}`{seen} | {built or 'the control'} | {', '.join(r['must']) or '-'} | "
            f"{', '.join(r['may']) or '-'} | {', '.join(r['codes']) or 'nothing'} | "
            f"{', '.join(r['autotrainer']) or 'nothing'} | {r['verdict']} | {acc_text} |"
        )
    broken = [r for r in rows if r["must"]]
    left = [r for r in broken if r.get("repaired") is False]
    told = "\n".join(f"- `{r['name']}`: " + " / ".join(f"{f}" for f in r["findings"]) for r in left)
    summary = {
        "cases": len(rows),
        "broken": len(broken),
        "doctor_recall": ours["overall"]["recall"],
        "doctor_precision": ours["overall"]["precision"],
        "doctor_false_positives": ours["healthy"]["false_positives"],
        "autotrainer_recall": theirs["overall"]["recall"],
        "autotrainer_precision": theirs["overall"]["precision"],
        "autotrainer_false_positives": theirs["healthy"]["false_positives"],
        "repaired": repaired.get("overall", (0, 0)),
        "cost_median": bench._median([r["cost"] for r in broken]),
        "cost_max": max(r["cost"] for r in rows),
    }
    done, total = summary["repaired"]
    cpu = sum(r.get("cpu_seconds", 0.0) for r in rows)
    seed = f", seed {args.seed}" if args.seed else ""
    text = f"""## The doctor on faults from published fault benchmarks (issue 24{seed})

Generated by `benchmarks/bench_doctor_cases.py --jobs {args.jobs} --seed {args.seed}` on
{datetime.date.today().isoformat()}. Machine: {cpu_model()}, {os.cpu_count()} cores, torch
{torch.__version__}, one thread per process; {wall / 60:.1f} min of wall time, {cpu / 60:.1f}
CPU-minutes.

Every network is a user's own module from `{CASES_FILE}`, trained with its own initialization
(`init.scheme = "keep"`) on {FM} (4,000 training images, 9 epochs); labels were fixed by how
each case was built before the first run. The doctor watches a third of the run with a 20%
validation split; AutoTrainer's published rules watch the same run. A detected case counts as
repaired when its repaired recipe, trained in full, scores within 1 point of the best healthy
control of the same network on all 10,000 test images.

| | the doctor | AutoTrainer's rules |
|---|---|---|
| broken cases found (recall, by problem kind) | {_share(ours)} | {_share(theirs)} |
| precision | {bench._cell(summary["doctor_precision"])} | \
{bench._cell(summary["autotrainer_precision"])} |
| false positives on the {ours["healthy"]["setups"]} healthy cases | \
{summary["doctor_false_positives"]} | {summary["autotrainer_false_positives"]} |

Repaired within 1 point: {done} of {total} detected broken cases. Doctor plus repair: median
{bench._cell(summary["cost_median"])} runs of the recipe, at most
{bench._cell(summary["cost_max"])}.

{chr(10).join(table)}

What the doctor said of the cases it did not repair (the first watched run's findings, each
with its advice). A fault inside the forward (a softmax before the loss, a detached graph) or
an activation the network's code chose is beyond any recipe key: the doctor names it and says
what to change in the code.

{told}
"""
    out = bench.ROOT / "docs" / "benchmarks"
    write_text(out / f"{args.page}.md", text)
    write_json(out / f"{args.page}.json", {"summary": summary, "rows": rows})
    print(text)


def _share(scores: dict[str, dict[str, float]]) -> str:
    overall = scores["overall"]
    return f"{round(overall['recall'] * overall['setups'])}/{overall['setups']}"


if __name__ == "__main__":
    raise SystemExit(main())
