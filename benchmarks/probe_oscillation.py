"""Does a far too high rate make a batch-norm network swing? Three constructions of the doctor
corpus's "oscillating" kind, watched as bench_doctor.py watches a setup (no repair), at seeds 0
and 1, with AutoTrainer's unstable rule as the judge that owes nothing to the doctor's
detectors. Written after the held-out runs missed every oscillating CNN and ResNet (seeds 1-3),
to look for a construction that swings before changing the corpus; none was found, so the
corpus is unchanged (docs/benchmarks/doctor_remarks.md).

With --plain, the candidate the remarks left for next: networks without batch norm (the plain
MLP and CNN, the synthetic deep MLP and CNN) at a constant rate 4, 6 and 8 times their base,
just under the rates of the corpus's diverging family (10 times and up), plain momentum.

With --momentum, the third candidate (after seed 9): momentum far above 0.9, the heavy ball that
overshoots and swings back (Polyak 1964; Goh, "Why momentum really works", Distill 2017: past
critical damping the iterates oscillate). In all eight groups, batch-norm and plain, a constant
rate, no Nesterov: momentum 0.99 and 0.995 at the same effective step lr / (1 - momentum) as the
base's 0.9, and 0.99 at the base rate (ten times the step). Decision rule, written before the
runs: a setting is an oscillating construction in a group when AutoTrainer's unstable rule fires
on it at both seeds; if at least four groups have one, the corpus's oscillating family is built
from those settings (its own stratum in the split, so no earlier setup changes half), the old
family is kept and scored beside it, and the corpus is judged at a fresh seed. Otherwise the
corpus stays as it is.

With --ungated, a check of the judge itself (after the momentum probe): AutoTrainer names
"unstable" only while training converges (best accuracy at least 0.7 and gaining), which no
CIFAR-10 group of the corpus reaches in its watched run, so there the judge could not fire. This
mode runs the corpus's own oscillating family (all twelve, both halves) and the healthy base of
each group, and applies AutoTrainer's oscillation test itself (paired local maxima and minima of
the per-check accuracy differing by 0.03 on 20% of the checks) to the training and to the
validation accuracy, without the convergence gate. Decision rule, written before the runs: if
the ungated test fires on any healthy base at either seed it cannot tell a swing from noise and
nothing follows from it; otherwise an oscillating setup swings when it fires at both seeds, and
the count of those says whether the corpus's misses are the detector's (they swing) or the
construction's (they do not).

Run:  PYTHONPATH=src .venv/bin/python benchmarks/probe_oscillation.py [--plain | --momentum |
      --ungated] > /tmp/probe.jsonl
The rows of the --momentum and --ungated runs (2026-12-07, 2-core AMD EPYC, one thread per
process) are kept in docs/benchmarks/probe_oscillation.json; the remarks
(docs/benchmarks/doctor_remarks.md) read them.
"""

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_doctor as bench  # noqa: E402

bench.half_of = lambda setup: "probe"  # these setups are in neither half
BASE_LR = {"fm-mlp": 0.05, "fm-cnn": 0.025, "c10-cnn": 0.05, "c10-resnet": 0.05}
CONSTRUCTIONS = {  # the corpus's own (rates 1.5 and 3), a constant schedule, no momentum
    "current": lambda lr: [["optim.nesterov=false", f"optim.lr={x}"] for x in (1.5, 3.0)],
    "constant": lambda lr: [["optim.nesterov=false", "schedule.name=constant",
                             f"optim.lr={lr * k:.3g}"] for k in (10, 20, 40)],
    "no-momentum": lambda lr: [["optim.momentum=0.0", "schedule.name=constant",
                                f"optim.lr={lr * k:.3g}"] for k in (20, 40, 80)],
}  # fmt: skip
PLAIN_BASE_LR = {"fm-plain": 0.02, "c10-plain": 0.01, "syn-deep": 0.02, "syn-cnn": 0.02}
PLAIN = {  # below the diverging family's 10x, a constant rate, no Nesterov
    "edge": lambda lr: [["optim.nesterov=false", "schedule.name=constant",
                         f"optim.lr={lr * k:.3g}"] for k in (4, 6, 8)],
}  # fmt: skip
MOMENTUM = {  # momentum 0.99 and 0.995 at the base's effective step, and 0.99 at the base rate
    "heavy": lambda lr: [["optim.nesterov=false", "schedule.name=constant",
                          f"optim.momentum={m}", f"optim.lr={lr * (1 - m) / 0.1:.3g}"]
                         for m in (0.99, 0.995)]
    + [["optim.nesterov=false", "schedule.name=constant", "optim.momentum=0.99",
        f"optim.lr={lr:.3g}"]],
}  # fmt: skip
SEEDS = (0, 1)


HISTORIES: list[dict] = []  # the accuracy histories of the setup this process watches


class _Recording(bench.AutoTrainerRules):
    def __init__(self, total_checks: int):
        super().__init__(total_checks)
        HISTORIES.append(self.history)


def judge_one(job: tuple[str, str, list[str], int]) -> dict:
    """The ungated oscillation test on one watched setup's accuracy histories."""
    name, group, overrides, seed = job
    bench.AutoTrainerRules = _Recording
    HISTORIES.clear()
    setup = bench._s(name, group, overrides, ("oscillating",), (), 1)
    row = bench.run_setup(setup, repair=False, train=False, seed=seed)
    history = HISTORIES[-1]
    rules = bench.AutoTrainerRules
    judged = {key: bench._ol_judge(history[key], rules.ZETA, rules.ETA)
              for key in ("acc", "val_acc")}  # fmt: skip
    return {"name": name, "seed": seed, "ungated": judged, "autotrainer": row["autotrainer"],
            "doctor": row["codes"], "acc": [round(a, 3) for a in history["acc"]],
            "val_acc": [round(a, 3) for a in history["val_acc"]]}  # fmt: skip


def ungated_jobs() -> list[tuple[str, str, list[str], int]]:
    setups = [s for s in bench.corpus() if s.stratum == "oscillating"]  # built to swing
    setups += [s for s in bench.corpus() if s.name.endswith("/healthy-0")]
    return [(s.name, s.group, list(s.overrides), seed) for s in setups for seed in SEEDS]


def watch_one(job: tuple[str, str, list[str], int]) -> dict:
    name, group, overrides, seed = job
    setup = bench._s(name, group, overrides, ("oscillating",), (), 1)
    row = bench.run_setup(setup, repair=False, train=False, seed=seed)
    return {"name": name, "seed": seed, "overrides": overrides,
            "autotrainer": row["autotrainer"], "doctor": row["codes"]}  # fmt: skip


def main() -> int:
    if "--ungated" in sys.argv[1:]:
        with ProcessPoolExecutor(2) as pool:
            for row in pool.map(judge_one, ungated_jobs()):
                print(json.dumps(row), flush=True)
        return 0
    if "--momentum" in sys.argv[1:]:
        constructions, base = MOMENTUM, {**BASE_LR, **PLAIN_BASE_LR}
    elif "--plain" in sys.argv[1:]:
        constructions, base = PLAIN, PLAIN_BASE_LR
    else:
        constructions, base = CONSTRUCTIONS, BASE_LR
    jobs = [(f"{group}/{kind}-{i}", group, overrides, seed)
            for kind, make in constructions.items() for group, lr in base.items()
            for i, overrides in enumerate(make(lr)) for seed in SEEDS]  # fmt: skip
    with ProcessPoolExecutor(2) as pool:
        for row in pool.map(watch_one, jobs):
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
