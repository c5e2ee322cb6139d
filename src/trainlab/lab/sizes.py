"""How large a lab experiment runs, and the constants its paper scale shares.

Four sizes: ``full`` (the default), ``quick`` (``--quick``: under a minute on two cores),
``smoke`` (``TRAINLAB_LAB_SMOKE=1``: seconds, for the test-suite; it checks that the code runs
and writes well-formed results, not that the claim holds, and may swap real data sets for
``synthetic``) and ``paper`` (``--scale paper``: the claim's source's own scale, for a GPU; only
the experiments whose size table has a fourth column offer it).

An experiment's size table maps each parameter to its value per size, ``{name: (smoke, quick,
full[, paper])}``; :func:`check_sizes` is what :func:`trainlab.lab.base.experiment` checks at
registration.
"""

from __future__ import annotations

import os
from typing import Any

SMOKE_ENV = "TRAINLAB_LAB_SMOKE"
SIZES = ("smoke", "quick", "full", "paper")
SCALES = ("quick", "full", "paper")  # what a user asks for; smoke is the test-suite's
TUNING_OFFSET = 10_000  # tuning seeds are seed + TUNING_OFFSET + k: never a paired seed

# The paper scale of the CIFAR-10 experiments: He et al. 2016's CIFAR ResNet-20 (widths 16, 32,
# 64; 3 basic blocks per stage), batches of 128, all 50,000 training and 10,000 test images.
PAPER_DEPTH = 3  # residual blocks per stage
PAPER_BATCH = 128
PAPER_TRAIN, PAPER_TEST = 50_000, 10_000
PAPER_WIDTHS = "[16, 32, 64]"


def size_of(scale: str) -> str:
    """``"smoke"`` when the test-suite asks for it, else ``scale`` (one of :data:`SCALES`)."""
    if os.environ.get(SMOKE_ENV, "") not in ("", "0"):
        return "smoke"
    return scale


def check_sizes(name: str, table: dict[str, tuple[Any, ...]]) -> tuple[str, ...]:
    """The scales a size table offers (``quick``, ``full`` and, with a fourth column,
    ``paper``); a ``ValueError`` naming the experiment and parameter when a value is not a tuple
    of 3 or 4 entries, when the columns differ in length, or when ``seeds`` is missing or
    below 2."""
    if "seeds" not in table:
        raise ValueError(f"lab experiment {name!r}: its size table needs 'seeds'")
    lengths = set()
    for key, values in table.items():
        if not isinstance(values, tuple) or len(values) not in (3, 4):
            raise ValueError(
                f"lab experiment {name!r}: size {key!r} must be a tuple (smoke, quick, full"
                f"[, paper]), got {values!r}"
            )
        lengths.add(len(values))
    if len(lengths) > 1:
        raise ValueError(f"lab experiment {name!r}: size columns differ in length {lengths}")
    if any(not isinstance(n, int) or n < 2 for n in table["seeds"]):
        raise ValueError(f"lab experiment {name!r}: seeds must be integers >= 2")
    return SCALES[: lengths.pop() - 1]


def at_size(table: dict[str, tuple[Any, ...]], size: str) -> dict[str, Any]:
    """An experiment's size table at ``size``."""
    return {name: values[SIZES.index(size)] for name, values in table.items()}


def paired_seeds(seed: int, n: int) -> list[int]:
    """The ``n`` paired seeds of a run from base ``seed``: seed, seed + 1, ..."""
    return [seed + i for i in range(n)]


def tuning_seeds(seed: int, n: int = 3) -> list[int]:
    """The ``n`` tuning seeds of a run from base ``seed``, none of them a paired seed."""
    return [seed + TUNING_OFFSET + k for k in range(n)]


def lab_device(size: str):
    """Where an experiment trains: the GPU at the paper's scale when there is one, else the CPU
    (the lab's CPU sizes are chosen for the CPU)."""
    import torch

    cuda = size == "paper" and torch.cuda.is_available()
    return torch.device("cuda" if cuda else "cpu")
