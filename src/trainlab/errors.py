"""The errors trainlab raises for user mistakes.

Every message names what is wrong (file, field, value) and what was expected. The CLI turns a
`TrainlabError` into one line on stderr and exit code 2; anything else is a bug and keeps its
traceback.
"""


class TrainlabError(Exception):
    """Base class: a mistake in input the user controls (files, recipes, arguments)."""


class DataError(TrainlabError):
    """A data file or folder is missing, malformed or hostile."""


class RecipeError(TrainlabError):
    """A recipe or an override names an unknown key, has a wrong type or is out of range."""


class RegistryError(TrainlabError, ValueError):
    """A technique was asked for by a name that is not registered, or with bad arguments."""


class CheckpointError(TrainlabError):
    """A checkpoint or run folder is missing, incomplete or not trainlab's."""


class TrainingDiverged(TrainlabError):
    """The loss became non-finite; the last good checkpoint is kept."""
