"""What ``model.kind`` names: one of trainlab's own networks, or the user's by import.

``import:package.module:factory`` imports ``factory`` from the user's environment, and
``import:path/to/file.py:factory`` from a file; ``python:NAME`` records a network passed to
``fit(model=...)`` from Python. The recipe resolves the kind when it loads (a ``.py`` path made
absolute, the factory imported once), so a network that cannot be imported is one line naming
the key before any data loads. Nothing here builds a network: the engine does
(``trainlab.engine.model``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainlab.errors import RecipeError, summary

BUILT_IN_KINDS = ("mlp", "cnn", "resnet")
Factory = Callable[..., Any]  # (in_shape, num_classes, **model.args) -> nn.Module


def import_factory(kind: str) -> Factory:
    """The callable that ``model.kind = "import:MODULE:NAME"`` names: ``MODULE`` is a dotted
    module on the Python path, or a ``.py`` file; a failure is one `RecipeError` naming the
    key."""
    spec = kind.removeprefix("import:")
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise RecipeError(
            f"model.kind = {kind!r}: expected import:package.module:factory or "
            "import:path/to/file.py:factory"
        )
    try:
        if module_name.endswith(".py"):
            module = _import_file(Path(module_name).expanduser())
        else:
            module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except Exception as exc:  # the user's code: any error it raises is the user's to see
        raise RecipeError(f"model.kind = {kind!r}: cannot import it ({summary(exc)})") from exc
    if not callable(factory):
        raise RecipeError(
            f"model.kind = {kind!r}: {attr} is a {type(factory).__name__}, not a factory"
        )
    return factory


def _import_file(path: Path) -> Any:
    """A ``.py`` file imported as a module of its own (once per path and process)."""
    path = path.absolute()
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    name = f"trainlab_user_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def resolved_model_kind(kind: str) -> str:
    """``kind`` with a ``.py`` file's path made absolute, so the run's recipe finds it from any
    working folder; the kind is checked to be known or importable."""
    if kind in BUILT_IN_KINDS or kind.startswith("python:"):
        return kind
    if not kind.startswith("import:"):
        raise RecipeError(
            f"model.kind = {kind!r}: expected one of {', '.join(BUILT_IN_KINDS)}, or "
            "import:package.module:factory for a network of your own"
        )
    module_name, _, attr = kind.removeprefix("import:").rpartition(":")
    if module_name.endswith(".py"):
        kind = f"import:{Path(module_name).expanduser().absolute()}:{attr}"
    import_factory(kind)  # importable now, not after the data has loaded
    return kind
