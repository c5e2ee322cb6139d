"""The lab's frame: an experiment states a claim, its source and the rule that decides it, before
it runs; it then measures, draws its figures and returns its numbers and verdict.

    result = run_experiment("zero-init", out="lab/zero-init", quick=True, seed=0)

writes ``out/result.json``::

    {"name", "claim", "source", "rule", "verdict", "measured": {...numbers...},
     "figures": ["fig.png", ...], "quick", "seed", "seconds", "notes"}

plus ``"comparisons": [{"name", "metric", "arms", "difference", "ci95", "min_effect", "seeds",
"verdict", ...}, ...]`` for an experiment decided by paired comparisons
(:mod:`trainlab.lab.evidence`, verdicts held, did not hold, inconclusive, not reached). An
experiment not yet moved onto comparisons is decided by its checks (held, did not hold, partly
held).

Verdicts are decided by the experiment's ``rule`` as stated in code before any number is seen;
a claim that does not hold on our setup says so, with the numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.errors import TrainlabError
from trainlab.fileio import write_json
from trainlab.lab import evidence
from trainlab.lab.numbers import rounded
from trainlab.lab.runs import size_of
from trainlab.registry import Registry

CHECK_VERDICTS = ("held", "did not hold", "partly held")  # experiments decided by checks
VERDICTS = tuple(dict.fromkeys(CHECK_VERDICTS + evidence.VERDICTS))


@dataclass
class Outcome:
    """What an experiment's ``run`` returns: the numbers, the verdict and the figures."""

    verdict: str
    measured: dict[str, Any]
    figures: list[str] = field(default_factory=list)
    notes: str = ""
    comparisons: list[evidence.Comparison] | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass(frozen=True)
class Experiment:
    """A claim of the lecture made measurable.

    ``run(out: Path, size: str, seed: int) -> Outcome`` does the work at ``size`` (see
    :func:`trainlab.lab.runs.size_of`); figures are written into ``out`` (use
    :func:`trainlab.lab.figures.save_figure`) and named in the outcome.
    """

    name: str
    claim: str
    source: str
    rule: str
    run: Callable[[Path, str, int], Outcome]


EXPERIMENTS: Registry[Experiment] = Registry("lab experiment")
_ORDER: list[str] = []


def experiment(name: str, *, claim: str, source: str, rule: str):
    """Register ``run(out, size, seed) -> Outcome`` as the experiment ``name``."""

    def decorate(run: Callable[[Path, str, int], Outcome]) -> Callable[[Path, str, int], Outcome]:
        exp = Experiment(name, claim, source, rule, run)
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


def run_experiment(
    name: str, out: str | Path, quick: bool = False, seed: int = 0
) -> dict[str, Any]:
    """Run one experiment, write ``out/result.json`` and return its content."""
    exp = get_experiment(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    outcome = exp.run(out, size_of(quick), seed)
    result = {
        "name": exp.name,
        "claim": exp.claim,
        "source": exp.source,
        "rule": exp.rule,
        "verdict": outcome.verdict,
        "measured": outcome.measured,
        "figures": outcome.figures,
        "notes": outcome.notes,
        **(
            {"comparisons": [c.to_dict() for c in outcome.comparisons]}
            if outcome.comparisons is not None
            else {}
        ),
        "quick": quick,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / "result.json", result)
    return result


def verdict_from(checks: dict[str, bool]) -> str:
    """All checks true: held; none: did not hold; some: partly held."""
    if not checks:
        raise TrainlabError("an experiment's verdict needs at least one check")
    passed = sum(checks.values())
    return "held" if passed == len(checks) else "did not hold" if passed == 0 else "partly held"


def conclude(
    checks: dict[str, bool],
    measured: dict[str, Any],
    figures: list[str],
    notes: str,
    comparisons: list[evidence.Comparison] | None = None,
) -> Outcome:
    """The outcome of an experiment, with the checks stored last under ``measured`` and every
    number :func:`rounded` for JSON.

    With ``comparisons`` the verdict is :func:`evidence.overall_verdict` of them (rule "all",
    stated in the experiment's docstring), and ``checks`` are only reported: they do not count
    towards the verdict. Without, the checks decide it (:func:`verdict_from`)."""
    if comparisons is not None:
        verdict = evidence.overall_verdict(comparisons)
    else:
        verdict = verdict_from(checks)
    return Outcome(verdict, rounded({**measured, "checks": checks}), figures, notes, comparisons)


def _load_all() -> None:
    """Import the experiment modules, which register themselves."""
    import importlib
    import pkgutil

    import trainlab.lab as lab

    for info in sorted(pkgutil.iter_modules(lab.__path__), key=lambda i: i.name):
        if info.name.startswith("exp_"):
            importlib.import_module(f"trainlab.lab.{info.name}")
