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


def summary(exc: BaseException, limit: int = 300) -> str:
    """A library's exception in one line: its type name and the first non-empty line of its text.

    Readers put this after the file's name in the one-line message of the error they raise
    ``from exc``; the whole text stays reachable through ``__cause__``.
    """
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not hide the original error
        text = ""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    name = type(exc).__name__
    return f"{name}: {line}" if line else name


class OutputError(TrainlabError):
    """A file or folder trainlab writes cannot be written (permissions, a full disk), or a run
    folder is in use by another process."""
