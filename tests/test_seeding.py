"""trainlab.seeding against independent references.

References: the published first outputs of Vigna's splitmix64.c for state 0 (prng.di.unimi.it),
a NumPy uint64 re-implementation of the documented derivation (wrapping array arithmetic, not
Python ints and masks), a second Python process with a different hash salt (string keys), and
``torch.Generator().manual_seed`` for the generators.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from trainlab.errors import RegistryError
from trainlab.regularize.depth import DropPath, StochasticDepth
from trainlab.regularize.dropconnect import DropConnectLinear
from trainlab.regularize.dropout import Dropout
from trainlab.regularize.pooling import FractionalMaxPool2d
from trainlab.seeding import (
    RandomModule,
    as_seed,
    derive_seed,
    make_generator,
    random_modules,
    reseed_all,
    splitmix64,
)

GAMMA = 0x9E3779B97F4A7C15


def reference_mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's step on uint64 arrays: NumPy wraps array arithmetic modulo 2^64."""
    z = x + np.uint64(GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def reference_key(key: int | str) -> np.ndarray:
    if isinstance(key, str):
        return np.frombuffer(hashlib.blake2b(key.encode(), digest_size=8).digest(), dtype="<u8")
    return np.array([key % 2**64], dtype=np.uint64)


def reference_derive_seed(seed: int, *keys: int | str) -> int:
    state = reference_mix(reference_key(seed))
    for key in keys:
        state = reference_mix(state ^ reference_key(key))
    return int(state[0] >> np.uint64(1))


# ----------------------------------------------------------------------------- derive_seed


def test_splitmix64_matches_published_outputs():
    # splitmix64.c's n-th output from state 0 is the step applied to n * gamma
    published = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC]
    assert [splitmix64(n * GAMMA % 2**64) for n in range(4)] == published
    assert derive_seed(0) == 0xE220A8397B1DCDAF >> 1


# The calls train.py, the loader and the lab make today, plus edge values of the seed.
PATHS = [
    (0,),
    (0, 1),
    (1, 0),
    (123, "loader-order", 7),
    (123, "loader-transform", 7),
    (5, 3, 2),
    (5, 3, 2, 1),
    (2**40, "x"),
    (2**64 - 1, 0),
    (-3, "lab", 4),
    (7, "synthetic", "train"),
]


@pytest.mark.parametrize("path", PATHS)
def test_derive_seed_matches_an_independent_implementation(path):
    value = derive_seed(*path)
    assert value == reference_derive_seed(*path)
    assert 0 <= value < 2**63  # manual_seed-safe


def test_derive_seed_separates_nearby_paths_and_refuses_other_keys():
    seeds = {derive_seed(s, e) for s in range(20) for e in range(20)}
    assert len(seeds) == 400  # seed * K + epoch style schemes collide; this must not
    assert derive_seed(0, 1, 2) != derive_seed(0, 2, 1)
    for bad in (1.5, None, True, (1,)):
        with pytest.raises(TypeError, match="int or str"):
            derive_seed(0, bad)


def test_string_streams_are_distinct():
    names = ["loader-order", "loader-transform", "mix", "modules", "global", "dropout", "eval"]
    seeds = [derive_seed(9, name, 2) for name in names]
    assert len(set(seeds)) == len(names)
    assert derive_seed(9, "mix", 2) != derive_seed(9, "mix", 3) != derive_seed(10, "mix", 2)


def test_string_streams_are_stable_across_processes():
    # Python salts str hashes per process; the seeds must not depend on the salt.
    paths = [(9, "loader-order", 2), (0, "dropout"), (3, "lab-b", "init", 1)]
    script = (
        f"from trainlab.seeding import derive_seed\nprint([derive_seed(*p) for p in {paths!r}])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str([derive_seed(*p) for p in paths])


def test_as_seed_folds_key_paths_and_refuses_other_values():
    assert as_seed(17) == 17
    assert as_seed((3, 0)) == reference_derive_seed(3, 0)
    assert as_seed((3, "eval")) == reference_derive_seed(3, "eval")
    for bad in ((), 1.5, "3", True, (1, 2.5)):
        with pytest.raises(RegistryError, match="seed must be"):
            as_seed(bad)


# ----------------------------------------------------------------------------- make_generator


def test_make_generator_is_seeded_with_the_derived_seed():
    generator = make_generator(4, "loader-order", 1)
    assert generator.device == torch.device("cpu")
    expected = torch.Generator().manual_seed(reference_derive_seed(4, "loader-order", 1))
    assert torch.equal(torch.rand(8, generator=generator), torch.rand(8, generator=expected))


def test_make_generator_reproduces_and_separates_streams():
    def draws(*path):
        return torch.randperm(50, generator=make_generator(*path, device="cpu"))

    assert torch.equal(draws(2, "x", 0), draws(2, "x", 0))
    assert not torch.equal(draws(2, "x", 0), draws(2, "x", 1))
    assert not torch.equal(draws(2, "x", 0), draws(2, "y", 0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_make_generator_on_cuda():
    generator = make_generator(1, "t", device="cuda")
    expected = torch.Generator(device="cuda").manual_seed(reference_derive_seed(1, "t"))
    assert generator.device.type == "cuda"
    torch.testing.assert_close(
        torch.rand(4, generator=generator, device="cuda"),
        torch.rand(4, generator=expected, device="cuda"),
        rtol=0,
        atol=0,
    )


# ----------------------------------------------------------------------------- RandomModule


class Noisy(RandomModule, nn.Linear):
    """A user's own random layer: RandomModule is cooperative with nn.Linear."""


def zoo() -> tuple[nn.Module, list[RandomModule]]:
    """A model with every kind of RandomModule, one of them nested inside another."""
    inner = Dropout(0.2, seed=1)
    modules = [
        Dropout(0.5, seed=11),
        StochasticDepth(nn.Sequential(nn.Linear(4, 4), inner), 0.5, seed=2),
        inner,
        DropConnectLinear(4, 4, 0.3, seed=3),
        DropPath(0.9, seed=4),
        FractionalMaxPool2d(seed=5),
        Noisy(4, 4, seed=6),
    ]
    model = nn.Sequential(
        modules[0],
        nn.Sequential(nn.Linear(4, 4), modules[1]),
        modules[3],
        nn.ModuleDict({"path": modules[4], "pool": modules[5]}),
        modules[6],
    )
    return model, modules


def test_reseed_all_reaches_every_random_module():
    model, modules = zoo()
    for module in modules:
        torch.rand(3, generator=module.generator_for("cpu"))  # streams already advanced
    owned = torch.Generator().manual_seed(99)
    modules[0].set_generator(owned)  # a caller-owned generator is restarted too

    assert reseed_all(model, (3, 0)) == len(modules)
    base = reference_derive_seed(3, 0)
    expected = [reference_derive_seed(base, i) for i in range(len(modules))]
    assert [module.seed for module in modules] == expected  # named_modules order
    assert len(set(expected)) == len(modules)  # no two modules share a stream
    for module, seed in zip(modules, expected, strict=True):
        fresh = torch.Generator().manual_seed(seed)
        got = torch.rand(5, generator=module.generator_for("cpu"))
        assert torch.equal(got, torch.rand(5, generator=fresh))
    assert modules[0].generator_for("cpu") is owned


def test_reseed_all_restarts_masks_and_moves_on_with_the_epoch():
    model = nn.Sequential(Dropout(0.5), nn.Linear(6, 6), Dropout(0.5))
    x = torch.ones(4, 6)
    state = torch.get_rng_state()
    reseed_all(model, (3, 0))
    first = model[0](x)
    reseed_all(model, (3, 0))
    assert torch.equal(model[0](x), first)
    reseed_all(model, (3, 1))
    assert not torch.equal(model[0](x), first)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is never drawn from


def test_random_modules_and_constructor():
    layer = Noisy(3, 2, seed=(4, "x"))
    assert isinstance(layer, nn.Linear) and layer.weight.shape == (2, 3)
    assert layer.seed == reference_derive_seed(4, "x")
    model, modules = zoo()
    assert [module for _, module in random_modules(model)] == modules
    with pytest.raises(RegistryError, match="generator"):
        Noisy(3, 2, generator="cpu")
