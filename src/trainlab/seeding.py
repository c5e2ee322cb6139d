"""Seeds and generators: every random stream in trainlab is derived here.

A run has one integer seed. Each purpose (the loader's order, the augmentation draws, the mix
draws, a module's masks, an epoch, a rank) gets its own stream, named by a path of keys:
``derive_seed(seed, "loader-order", epoch)``. Nothing draws from the global RNG; modules that
draw own their generators (:class:`RandomModule`), and :func:`reseed_all` restarts them all, so
a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn

from trainlab.errors import RegistryError

MASK64 = (1 << 64) - 1

# A module's seed: an int, or a key path such as (run_seed, epoch) that derive_seed folds.
Seed = int | tuple[int | str, ...]


def splitmix64(x: int) -> int:
    """One step of SplitMix64 (Steele, Lea & Flood 2014, "Fast splittable PRNGs").

    ``z = x + 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
    z = (z ^ z>>27) * 0x94D049BB133111EB; return z ^ z>>31`` (all mod 2^64).
    A bijection on 64-bit integers whose outputs for nearby inputs are uncorrelated.
    """
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def key_to_int(key: int | str) -> int:
    """A key as a 64-bit integer: ints mod 2^64; strings by their 8-byte BLAKE2b digest of the
    UTF-8 bytes, read little-endian (Python's ``hash(str)`` is salted per process)."""
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise TypeError(f"derive_seed keys must be int or str, got {type(key).__name__} {key!r}")
    if isinstance(key, str):
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return key & MASK64


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed for one purpose, derived from a run's seed and a path of keys.

    ``s_0 = splitmix64(seed)``, ``s_{i+1} = splitmix64(s_i XOR key_i)``, result ``s_n >> 1``.
    Different paths give independent-looking streams (``derive_seed(0, 1) != derive_seed(1, 0)``),
    unlike ``seed * K + epoch``, which collides across runs. Strings name the purpose:
    ``derive_seed(seed, "dropout", epoch)``.
    """
    state = splitmix64(key_to_int(seed))
    for key in keys:
        state = splitmix64(state ^ key_to_int(key))
    return state >> 1  # torch.Generator.manual_seed takes any int64; keep it non-negative


def make_generator(
    seed: int, *keys: int | str, device: torch.device | str | None = None
) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (CPU if None), seeded with ``derive_seed(seed, *keys)``.

    Each purpose gets its own generator, so adding a draw to one stream never shifts another.
    """
    return torch.Generator(device=device or "cpu").manual_seed(derive_seed(seed, *keys))


def as_seed(seed: Seed) -> int:
    """An int seed as it is; a key path ``(seed, *keys)`` folded by :func:`derive_seed`."""
    bad = RegistryError(f"seed must be an int or a tuple of ints, got {seed!r}")
    if isinstance(seed, tuple) and seed:
        try:
            return derive_seed(*seed)
        except TypeError as exc:
            raise bad from exc
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise bad
    return seed


def _device_key(device: torch.device | str) -> tuple[str, int | None]:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return "cuda", torch.cuda.current_device()
    return device.type, device.index


class RandomModule(nn.Module):
    """Base for modules that draw randomness: a private generator per device, never the global RNG.

    ``generator``: a caller-owned ``torch.Generator``, used for inputs on its device.
    ``seed``: seeds the private generators created lazily for other devices (default 0).
    Subclasses call ``self.generator_for(x.device)`` for every draw.

    ``monte_carlo = True`` marks modules that ``mc_predict`` switches to training mode.
    The constructor is cooperative (``super().__init__(*args, **kwargs)``), so a subclass can
    also derive from ``nn.Linear`` or ``nn.Conv2d``.
    """

    monte_carlo: ClassVar[bool] = False

    def __init__(
        self, *args, seed: Seed = 0, generator: torch.Generator | None = None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.seed = as_seed(seed)
        self._generators: dict[tuple[str, int | None], torch.Generator] = {}
        if generator is not None:
            self.set_generator(generator)

    def set_generator(self, generator: torch.Generator) -> None:
        """Draw from ``generator`` (caller-owned) for inputs on its device."""
        if not isinstance(generator, torch.Generator):
            raise RegistryError(f"generator must be a torch.Generator, got {generator!r}")
        self._generators[_device_key(generator.device)] = generator

    def generator_for(self, device: torch.device | str) -> torch.Generator:
        """The generator for ``device``; created from ``seed`` on first use."""
        key = _device_key(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(torch.device(*key)).manual_seed(self.seed)
        return self._generators[key]

    def reseed(self, seed: Seed) -> None:
        """Restart every stream of this module from ``seed`` (caller-owned generators too)."""
        self.seed = as_seed(seed)
        for generator in self._generators.values():
            generator.manual_seed(self.seed)


def random_modules(model: nn.Module) -> Iterator[tuple[str, RandomModule]]:
    """Every :class:`RandomModule` in ``model``, in ``named_modules`` order."""
    for name, module in model.named_modules():
        if isinstance(module, RandomModule):
            yield name, module


def reseed_all(model: nn.Module, seed: Seed) -> int:
    """Reseed the i-th :class:`RandomModule` of ``model`` with ``derive_seed(as_seed(seed), i)``.

    ``seed`` may be a key path such as ``(run_seed, epoch)``. Each module gets its own stream,
    so two dropout layers never share masks. Returns how many modules were reseeded.
    """
    base = as_seed(seed)
    modules = [module for _, module in random_modules(model)]
    for index, module in enumerate(modules):
        module.reseed(derive_seed(base, index))
    return len(modules)
