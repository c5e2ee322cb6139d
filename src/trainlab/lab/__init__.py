"""The lab: every claim of "Training Neural Networks" as a measured experiment with a figure and
a verdict. Experiments live in ``exp_NN_*.py`` modules and register themselves; see
`trainlab.lab.base`. The current verdicts can be read without running (or importing) any
experiment: :func:`trainlab.lab.ledger.current_verdict`."""

import importlib

_FROM_BASE = (
    "EXPERIMENTS",
    "Experiment",
    "Outcome",
    "experiment",
    "experiment_names",
    "get_experiment",
    "run_experiment",
)

__all__ = [*_FROM_BASE, "save_figure"]


def __getattr__(name: str):
    # Lazy: `from trainlab.lab import ledger` must not import torch or the experiments.
    if name in _FROM_BASE:
        return getattr(importlib.import_module("trainlab.lab.base"), name)
    if name == "save_figure":
        return importlib.import_module("trainlab.lab.figures").save_figure
    raise AttributeError(f"module 'trainlab.lab' has no attribute {name!r}")
