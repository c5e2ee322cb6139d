"""The lab: every claim of "Training Neural Networks" as a measured experiment with a figure and
a verdict. Experiments live in ``exp_NN_*.py`` modules and register themselves; see
`trainlab.lab.base`."""

from trainlab.lab.base import (
    EXPERIMENTS,
    Experiment,
    Outcome,
    experiment,
    experiment_names,
    get_experiment,
    run_experiment,
)
from trainlab.lab.figures import save_figure

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "Outcome",
    "experiment",
    "experiment_names",
    "get_experiment",
    "run_experiment",
    "save_figure",
]
