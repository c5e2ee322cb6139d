"""trainlab: implements, measures and explains the techniques for training neural networks well."""

__version__ = "0.1.0"

from trainlab.errors import (  # noqa: E402
    CheckpointError,
    DataError,
    RecipeError,
    RegistryError,
    TrainingDiverged,
    TrainlabError,
)

__all__ = [
    "__version__",
    "TrainlabError",
    "DataError",
    "RecipeError",
    "RegistryError",
    "CheckpointError",
    "TrainingDiverged",
]
