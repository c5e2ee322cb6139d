"""The lab's frame: an experiment states a claim, its source and the rule that decides it, before
it runs; it then measures, draws its figures and returns its numbers and verdict.

    result = run_experiment("zero-init", out="lab/zero-init", quick=True, seed=0)

writes ``out/result.json``::

    {"name", "claim", "source", "rule", "verdict", "measured": {...numbers...},
     "comparisons": [{"name", "metric", "arms", "difference", "ci95", "min_effect", "seeds",
                      "verdict", ...}, ...],
     "figures": ["fig.png", ...], "quick", "size", "seed", "seconds", "notes"}

Every verdict comes from the experiment's comparisons (:mod:`trainlab.lab.evidence`: a paired
difference over seeds with its 95% interval against a minimum effect stated before the run;
held, did not hold, inconclusive or not reached), combined by the rule in the experiment's
docstring (:func:`~trainlab.lab.evidence.overall_verdict`). Checks that cannot fail (identities
of the arithmetic) are unit tests, not evidence. A claim that does not hold on our setup says
so, with the numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from trainlab.errors import TrainlabError
from trainlab.fileio import write_json
from trainlab.lab import evidence
from trainlab.lab.numbers import rounded
from trainlab.lab.runs import size_of
from trainlab.registry import Registry

VERDICTS = evidence.VERDICTS


@dataclass
class Outcome:
    """What an experiment's ``run`` returns: the numbers, the verdict and the figures."""

    verdict: str
    measured: dict[str, Any]
    figures: list[str] = field(default_factory=list)
    notes: str = ""
    comparisons: list[evidence.Comparison] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not self.comparisons:
            raise ValueError("an experiment's outcome needs at least one comparison")


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
    scales: tuple[str, ...] = ("quick", "full")


EXPERIMENTS: Registry[Experiment] = Registry("lab experiment")
_ORDER: list[str] = []


def experiment(
    name: str, *, claim: str, source: str, rule: str, scales: tuple[str, ...] = ("quick", "full")
):
    """Register ``run(out, size, seed) -> Outcome`` as the experiment ``name``, offered at
    ``scales`` (``"paper"`` too where its size table has the paper's column)."""

    def decorate(run: Callable[[Path, str, int], Outcome]) -> Callable[[Path, str, int], Outcome]:
        exp = Experiment(name, claim, source, rule, run, scales)
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
    name: str, out: str | Path, quick: bool = False, seed: int = 0, scale: str | None = None
) -> dict[str, Any]:
    """Run one experiment at ``scale`` (``"quick"``, ``"full"`` or ``"paper"``; by default
    ``"quick"`` if ``quick`` else ``"full"``), write ``out/result.json`` and return its content.
    An experiment that does not offer ``scale`` is refused before any work
    (:func:`check_scale`)."""
    scale = check_scale([name], scale or ("quick" if quick else "full"))
    exp = get_experiment(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    size = size_of(scale)
    outcome = exp.run(out, size, seed)
    result = {
        "name": exp.name,
        "claim": exp.claim,
        "source": exp.source,
        "rule": exp.rule,
        "verdict": outcome.verdict,
        "measured": outcome.measured,
        "comparisons": [c.to_dict() for c in outcome.comparisons],
        "figures": outcome.figures,
        "notes": outcome.notes,
        "quick": scale == "quick",
        "size": size,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 2),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    write_json(out / "result.json", result)
    return result


def check_scale(names: list[str], scale: str) -> str:
    """``scale`` if every experiment in ``names`` offers it; else a one-line error naming the
    first that does not and the scales it has."""
    from trainlab.lab.runs import SCALES

    if scale not in SCALES:
        raise TrainlabError(f"unknown lab scale {scale!r}; valid: {', '.join(SCALES)}")
    for name in names:
        offered = get_experiment(name).scales
        if scale not in offered:
            raise TrainlabError(
                f"lab experiment {name!r} has no {scale!r} scale; it offers {', '.join(offered)}"
            )
    return scale


def conclude(
    comparisons: list[evidence.Comparison],
    measured: dict[str, Any],
    figures: list[str],
    notes: str,
) -> Outcome:
    """The outcome of an experiment: the verdict is :func:`evidence.overall_verdict` of its
    ``comparisons`` (rule "all", stated in the experiment's docstring), every number of
    ``measured`` :func:`rounded` for JSON."""
    if not comparisons:
        raise TrainlabError("an experiment's verdict needs at least one comparison")
    verdict = evidence.overall_verdict(comparisons)
    return Outcome(verdict, rounded(measured), figures, notes, comparisons)


def _load_all() -> None:
    """Import the experiment modules, which register themselves."""
    import importlib
    import pkgutil

    import trainlab.lab as lab

    for info in sorted(pkgutil.iter_modules(lab.__path__), key=lambda i: i.name):
        if info.name.startswith("exp_"):
            importlib.import_module(f"trainlab.lab.{info.name}")
