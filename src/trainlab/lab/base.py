"""The lab's frame: an experiment states a claim, its source, its size table and its registered
rule (:class:`~trainlab.lab.rules.Rule`) before it runs; the frame derives the scales it offers,
its paired and tuning seeds, runs it, judges its secondary comparisons at Holm's levels, draws
``comparisons.png`` and writes ``out/result.json``::

    result = run_experiment("zero-init", out="lab/zero-init", scale="quick", seed=0)

    {"name", "claim", "source", "rule", "rule_hash", "verdict", "sensitive",
     "comparisons": [primary record, secondary records...], "measured": {...},
     "figures": [...], "notes", "size", "seed", "seeds", "tuning_seeds", "seconds", ...}

The verdict is the primary comparison's (:mod:`trainlab.lab.evidence`): held, did not hold,
inconclusive or not reached. Checks that cannot fail (identities of the arithmetic) are unit
tests, not evidence. A claim that does not hold on our setup says so, with the numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainlab.errors import TrainlabError
from trainlab.fileio import write_json
from trainlab.lab import evidence
from trainlab.lab.loop import intra_op_threads
from trainlab.lab.rules import Rule, rule_hash
from trainlab.lab.sizes import SCALES, at_size, check_sizes, paired_seeds, size_of, tuning_seeds
from trainlab.registry import Registry

VERDICTS = evidence.VERDICTS


@dataclass
class Context:
    """What the frame hands an experiment's ``run``: where to write, the size and its table's
    values (``cfg``), the base seed, the paired seeds and the tuning seeds."""

    name: str
    out: Path
    size: str
    seed: int
    cfg: dict[str, Any]
    seeds: list[int]
    tuning_seeds: list[int]


@dataclass
class Outcome:
    """What an experiment's ``run`` returns: the primary comparison (it decides), the secondary
    ones, the measured numbers, the figures it wrote, its notes and its rate searches (the frame
    records the size's configuration, the chosen rates and their searches beside the numbers)."""

    primary: evidence.Comparison
    measured: dict[str, Any]
    figures: list[str] = field(default_factory=list)
    notes: str = ""
    secondaries: list[evidence.Comparison] = field(default_factory=list)
    searches: dict[str, Any] = field(default_factory=dict)  # arm -> its LRSearch

    @property
    def verdict(self) -> str:
        return self.primary.verdict


@dataclass(frozen=True)
class Experiment:
    """A claim of the lecture made measurable (see :func:`experiment`)."""

    name: str
    claim: str
    source: str
    rule: Rule
    sizes: dict[str, tuple[Any, ...]]
    run: Callable[[Context], Outcome]
    scales: tuple[str, ...]
    plan: Callable[[dict[str, Any]], list[Any]] | None = None

    @property
    def rule_text(self) -> str:
        return self.rule.text(self.sizes)

    @property
    def rule_hash(self) -> str:
        return rule_hash(self.name, self.claim, self.rule, self.sizes)


EXPERIMENTS: Registry[Experiment] = Registry("lab experiment")
_ORDER: list[str] = []


def experiment(
    name: str,
    *,
    claim: str,
    source: str,
    sizes: dict[str, tuple[Any, ...]],
    rule: Rule,
    plan: Callable[[dict[str, Any]], list[Any]] | None = None,
):
    """Register ``run(ctx) -> Outcome`` as the experiment ``name``. The size table (``{param:
    (smoke, quick, full[, paper])}``, with ``seeds``) is checked here and gives the scales
    (``paper`` where it has a fourth column, which then needs a ``plan`` of its runs)."""
    scales = check_sizes(name, sizes)
    if ("paper" in scales) != (plan is not None):
        raise ValueError(f"lab experiment {name!r}: a paper column and a plan go together")
    if not isinstance(rule, Rule):
        raise ValueError(f"lab experiment {name!r}: rule must be a Rule, got {type(rule)}")

    def decorate(run: Callable[[Context], Outcome]) -> Callable[[Context], Outcome]:
        exp = Experiment(name, claim, source, rule, sizes, run, scales, plan)
        EXPERIMENTS.register(name)(lambda: exp)
        _ORDER.append(name)
        return run

    return decorate


def experiment_names() -> list[str]:
    """Registered experiments, in the lecture's order."""
    _load_all()
    return list(_ORDER)


def get_experiment(name: str) -> Experiment:
    _load_all()
    return EXPERIMENTS.get(name)()


def context(exp: Experiment, out: Path, size: str, seed: int) -> Context:
    cfg = at_size(exp.sizes, size)
    seeds = paired_seeds(seed, cfg["seeds"])
    return Context(exp.name, out, size, seed, cfg, seeds, tuning_seeds(seed))


def run_experiment(
    name: str,
    out: str | Path,
    quick: bool = False,
    seed: int = 0,
    scale: str | None = None,
    budget: float | None = None,
) -> dict[str, Any]:
    """Run one experiment at ``scale`` (``"quick"``, ``"full"`` or ``"paper"``; by default
    ``"quick"`` if ``quick`` else ``"full"``), write ``out/result.json`` and return its content.
    An experiment that does not offer ``scale`` is refused before any work. At paper scale the
    runs are remembered in ``out/runs`` and the command stops after ``budget`` seconds
    (:mod:`trainlab.lab.paper`); the result then says ``{"unfinished": ...}`` and the same call
    again continues."""
    from trainlab.lab import figures, paper

    scale = check_scale([name], scale or ("quick" if quick else "full"))
    exp = get_experiment(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    size = size_of(scale)
    ctx = context(exp, out, size, seed)
    if scale == "paper":
        try:
            with paper.session(out, budget or paper.COMMAND_SECONDS):
                outcome = exp.run(ctx)
        except paper.Unfinished as stop:
            return {"name": name, "unfinished": str(stop), "runs_done_now": stop.done}
    else:  # the CPU sizes are sized for one thread: a pool's barriers on small tensors only wait
        with intra_op_threads(1):
            outcome = exp.run(ctx)
    secondaries = evidence.holm(outcome.secondaries)
    comparisons = [outcome.primary, *secondaries]
    outcome.figures.append(
        figures.comparison_intervals(
            out, "comparisons.png", f"{name}: primary (top) and secondary comparisons", comparisons
        )
    )
    import torch

    from trainlab.lab.numbers import rounded

    result = {
        "name": exp.name,
        "claim": exp.claim,
        "source": exp.source,
        "rule": exp.rule_text,
        "rule_hash": exp.rule_hash,
        "verdict": outcome.verdict,
        "sensitive": outcome.primary.sensitive,
        "comparisons": [rounded(c.to_dict()) for c in comparisons],
        "measured": rounded(_measured(ctx, outcome)),
        "figures": outcome.figures,
        "notes": (outcome.notes + _size_note(ctx)).strip(),
        "quick": scale == "quick",
        "size": size,
        "seed": seed,
        "seeds": ctx.seeds,
        "tuning_seeds": ctx.tuning_seeds,
        "seconds": round(time.perf_counter() - t0, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),  # the load of others left out
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    write_json(out / "result.json", result)
    return result


def _measured(ctx: Context, outcome: Outcome) -> dict[str, Any]:
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in ctx.cfg.items() if k != "seeds"}
    rates = {a: s.best for a, s in outcome.searches.items()}
    searches = {a: s.to_dict() for a, s in outcome.searches.items()}
    return {
        "config": config,
        **outcome.measured,
        **({"lr": rates, "lr_search": searches} if outcome.searches else {}),
    }


def _size_note(ctx: Context) -> str:
    note = f" Paired seeds {ctx.seeds}; tuning seeds {ctx.tuning_seeds}."
    if ctx.size == "smoke":
        note += " Smoke size (the test-suite's): plumbing only, synthetic data where needed."
    elif ctx.size != "full":
        note += f" Size '{ctx.size}': see the size table in the rule."
    return note


def check_scale(names: list[str], scale: str) -> str:
    """``scale`` if every experiment in ``names`` offers it; else a one-line error naming the
    first that does not and the scales it has."""
    if scale not in SCALES:
        raise TrainlabError(f"unknown lab scale {scale!r}; valid: {', '.join(SCALES)}")
    for name in names:
        offered = get_experiment(name).scales
        if scale not in offered:
            raise TrainlabError(
                f"lab experiment {name!r} has no {scale!r} scale; it offers {', '.join(offered)}"
            )
    return scale


def plan_text(name: str) -> str:
    """The priced plan of an experiment's paper-scale runs (``--plan``); nothing runs."""
    from trainlab.lab.paper import plan_lines

    check_scale([name], "paper")
    exp = get_experiment(name)
    assert exp.plan is not None
    return plan_lines(name, exp.plan(at_size(exp.sizes, "paper")))


def _load_all() -> None:
    """Import the experiment modules, which register themselves."""
    import importlib
    import pkgutil

    import trainlab.lab as lab

    for info in sorted(pkgutil.iter_modules(lab.__path__), key=lambda i: i.name):
        if info.name.startswith("exp_"):
            importlib.import_module(f"trainlab.lab.{info.name}")
