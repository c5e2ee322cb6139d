"""The lab's frame: an experiment states a claim, its source and the rule that decides it, before
it runs; it then measures, draws its figures and returns its numbers and verdict.

    result = run_experiment("zero-init", out="lab/zero-init", quick=True, seed=0)

writes ``out/result.json``::

    {"name", "claim", "source", "rule", "verdict": "held" | "did not hold" | "partly held",
     "measured": {...numbers...}, "figures": ["fig.png", ...], "quick", "seed", "seconds",
     "notes"}

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
from trainlab.fileio import write_json, write_with
from trainlab.registry import Registry

VERDICTS = ("held", "did not hold", "partly held")


@dataclass
class Outcome:
    """What an experiment's ``run`` returns: the numbers, the verdict and the figures."""

    verdict: str
    measured: dict[str, Any]
    figures: list[str] = field(default_factory=list)
    notes: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass(frozen=True)
class Experiment:
    """A claim of the lecture made measurable.

    ``run(out: Path, quick: bool, seed: int) -> Outcome`` does the work; figures are written
    into ``out`` (use :func:`save_figure`) and named in the outcome.
    """

    name: str
    claim: str
    source: str
    rule: str
    run: Callable[[Path, bool, int], Outcome]


EXPERIMENTS: Registry[Experiment] = Registry("lab experiment")
_ORDER: list[str] = []


def experiment(name: str, *, claim: str, source: str, rule: str):
    """Register ``run(out, quick, seed) -> Outcome`` as the experiment ``name``."""

    def decorate(run: Callable[[Path, bool, int], Outcome]) -> Callable[[Path, bool, int], Outcome]:
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
    outcome = exp.run(out, quick, seed)
    result = {
        "name": exp.name,
        "claim": exp.claim,
        "source": exp.source,
        "rule": exp.rule,
        "verdict": outcome.verdict,
        "measured": outcome.measured,
        "figures": outcome.figures,
        "notes": outcome.notes,
        "quick": quick,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / "result.json", result)
    return result


def save_figure(fig: Any, out: Path, name: str) -> str:
    """Save a matplotlib figure atomically as ``out/name`` and close it; returns ``name``."""
    import matplotlib.pyplot as plt

    write_with(out / name, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return name


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def verdict_from(checks: dict[str, bool]) -> str:
    """All checks true: held; none: did not hold; some: partly held."""
    if not checks:
        raise TrainlabError("an experiment's verdict needs at least one check")
    passed = sum(checks.values())
    return "held" if passed == len(checks) else "did not hold" if passed == 0 else "partly held"


def _load_all() -> None:
    """Import the experiment modules, which register themselves."""
    import importlib
    import pkgutil

    import trainlab.lab as lab

    for info in sorted(pkgutil.iter_modules(lab.__path__), key=lambda i: i.name):
        if info.name.startswith("exp_"):
            importlib.import_module(f"trainlab.lab.{info.name}")


def accuracy_bars(
    out: Path,
    name: str,
    title: str,
    runs: dict[str, list[dict]],
    acc: dict[str, tuple[float, float]],
    colors: list[str],
) -> str:
    """Mean test accuracy per variant with its spread, each seed's run as a dot; saved as
    ``out/name``."""
    plt = pyplot()
    names = list(runs)
    fig, ax = plt.subplots(figsize=(8, 4))
    means = [acc[n][0] for n in names]
    ax.bar(range(len(names)), means, yerr=[acc[n][1] for n in names], color=colors, alpha=0.7)
    for i, n in enumerate(names):
        values = [r["test_acc"] for r in runs[n]]
        ax.scatter([i] * len(values), values, color="k", s=8, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(max(0.0, min(means) - 0.1), None)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, out, name)
