"""Techniques chosen by name: one small registry per pillar, one parser for all of them.

A spec is a name with optional literal arguments, as written in recipes::

    "relu"                  -> ("relu", (), {})
    "leaky_relu(0.1)"       -> ("leaky_relu", (0.1,), {})
    "kaiming(mode='fan_out')" -> ("kaiming", (), {"mode": "fan_out"})
    "kaiming(fan_in)"       -> ("kaiming", ("fan_in",), {})   bare words are strings

Arguments are Python literals (numbers, strings, booleans, None, tuples, lists); nothing is
evaluated, so a recipe can never run code.
"""

from __future__ import annotations

import ast
import difflib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from trainlab.errors import RegistryError

T = TypeVar("T")


def parse_spec(spec: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """Split ``"name(arg, key=value)"`` into its name, positional and keyword arguments."""
    if not isinstance(spec, str) or not spec.strip():
        raise RegistryError(
            f"expected a technique name such as 'relu' or 'leaky_relu(0.1)', got {spec!r}"
        )
    unreadable = f"cannot read {spec!r}: expected 'name' or 'name(arg, key=value)'"
    try:
        tree = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError as exc:
        raise RegistryError(unreadable) from exc
    if isinstance(tree, ast.Name):
        return tree.id, (), {}
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name)):
        raise RegistryError(unreadable)

    def literal(node: ast.expr) -> Any:
        if isinstance(node, ast.Name):  # bare word: kaiming(fan_in)
            return {"True": True, "False": False, "None": None}.get(node.id, node.id)
        try:
            return ast.literal_eval(node)
        except ValueError as exc:
            raise RegistryError(
                f"cannot read {spec!r}: argument {ast.unparse(node)!r} is not a literal value"
            ) from exc

    args = tuple(literal(a) for a in tree.args)
    kwargs = {kw.arg: literal(kw.value) for kw in tree.keywords if kw.arg is not None}
    if len(kwargs) != len(tree.keywords):
        raise RegistryError(f"cannot read {spec!r}: '**' is not allowed")
    return tree.func.id, args, kwargs


class Registry(Generic[T]):
    """Name -> factory, with errors that list the valid names.

    >>> acts = Registry("activation")
    >>> @acts.register("relu")
    ... def _relu(): ...
    >>> acts.names()
    ['relu']
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str, *aliases: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            for key in (name, *aliases):
                if key in self._entries:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
                self._entries[key] = factory
            return factory

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}{hint}; valid names: {', '.join(self.names())}"
            ) from None

    def validate(self, spec: str, **overrides: Any) -> tuple[Callable[..., T], tuple, dict]:
        """Check a spec's name and argument binding without building anything; returns the
        factory and the arguments it would be called with (``overrides`` added)."""
        name, args, kwargs = parse_spec(spec)
        factory = self.get(name)
        kwargs = {**kwargs, **overrides}
        try:
            inspect.signature(factory).bind(*args, **kwargs)
        except TypeError as exc:
            raise RegistryError(f"bad arguments for {self.kind} {spec!r}: {exc}") from None
        return factory, args, kwargs

    def create(self, spec: str, **overrides: Any) -> T:
        """Build the technique a spec names; ``overrides`` are extra keyword arguments."""
        factory, args, kwargs = self.validate(spec, **overrides)
        try:
            return factory(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise RegistryError(f"bad arguments for {self.kind} {spec!r}: {exc}") from exc
