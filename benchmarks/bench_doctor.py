"""The doctor on a corpus of broken and healthy trainings, beside AutoTrainer's rules.

The corpus (CORPUS below) is built from the lecture's failure modes: each broken setup is a
healthy base of its group (data set and model) with one thing done wrong, at several severities,
and is labelled by how it was built with the problem kinds it must show (MUST) and those it may
show as consequences (MAY: a network whose units all died also stalls). Healthy setups are the
bases, tuned variants of them and the shipped recipes cut down. Data: Fashion-MNIST, CIFAR-10
and synthetic images; models: MLPs, CNNs and ResNets.

The corpus is split in two halves by SPLIT_SEED (a hash of each setup's name, so adding a setup
moves no other one). The detectors' thresholds (trainlab.diagnostics.findings) were tuned on the
tuning half only and committed before the held-out half was run; the numbers that count are
the held-out half's.

For every setup the doctor watches a short run (a third of the run's epochs) with a validation
split of VAL_FRACTION; AutoTrainer's rules (Zhang et al., ICSE 2021; implemented here from the
paper and its public monitor code, not in trainlab) watch the same run through the engine's
step hook, checking once per epoch as its code does (once per tenth of the watched run where a
watched run holds fewer than five epochs). With --repair the doctor then repairs, and the
repaired recipe is trained in full: a repair counts when its test accuracy comes within
REPAIR_MARGIN of the best healthy variant of the same group.

Reported per problem kind and overall, for both detectors: precision and recall, false positives
on the healthy setups, steps to detection (a share of the run); for the doctor, the repair rate
and the compute of doctor plus repair in runs of the recipe.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_doctor.py --half tuning|held-out
          [--repair] [--jobs 2] [--only NAME ...] [--save DIR]
Writes docs/benchmarks/doctor.md (and docs/benchmarks/doctor.json) for --half held-out.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import pickle
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SPLIT_SEED = 2024_24  # fixed before any threshold was tuned (issue 24)
VAL_FRACTION = 0.2
REPAIR_MARGIN = 0.01  # a repaired run within 1 point of the best healthy variant
# Repair is judged on every test image: 2,000 images (the watched runs' test subset) leave a
# standard error of about 0.8 points, as large as the margin, and the best of five healthy
# variants then sits about one standard error above their common level. Fashion-MNIST and
# CIFAR-10 have 10,000 test images; the synthetic bars get 8,192 drawn from the same generator
# (its default test split is n // 4 = 512). The 2,000-image measure is reported beside it.
FULL_TEST_BARS = 8192
REPAIR_MEASURES = {
    "test_acc_all": "every test image",
    "test_acc": "2,000 test images",
    # the rate check as it was before its range could grow (lr x 1/3, 1, 3 only): the repaired
    # recipe at that rule's choice, trained in full where it differs (paired, same seed)
    "test_acc_all_three_rates": "every test image, with the rate check's first three rates only",
    # a candidate (since seed 20): the rate check stepping back from a rate whose neighbour above
    # diverged in its run (step_back_rate), trained in full where it differs (paired)
    "test_acc_all_step_back": "every test image, with the rate check stepping back from a rate "
    "beside a diverged one (a candidate)",
    # a candidate at seeds 28-141: the same, only from a rate beyond the first three; the
    # doctor's rule since, and the rule before it measured beside (no_step_back)
    "test_acc_all_step_back_extended": "every test image, with the rate check stepping back "
    "from an extended rate beside a diverged one (the candidate at seeds 28-141)",
    "test_acc_all_no_step_back": "every test image, with the rate check not stepping back "
    "from an extended rate (the rule before seed 142)",
    # a candidate (since seed 28): saturation's fixes as alternatives too (DOCTOR_RULES)
    "test_acc_all_best_of_saturated": "every test image, with saturation's fix of lowest "
    "validation error kept (a candidate)",
    # a candidate at seeds 33 and 142-153: input_not_centred's standardizing retried at the
    # rate x 3 and x 1/3 where the watched loss rejects it alone; the doctor's rule since, and
    # the rule before it measured beside (DOCTOR_RULES)
    "test_acc_all_standardize_at_rate": "every test image, with standardizing retried at the "
    "rate x 3 and x 1/3 (the candidate at seeds 33 and 142-153)",
    "test_acc_all_standardize_alone": "every test image, with standardizing tried at the "
    "recipe's rate alone (the rule before seed 154)",
    # a candidate (since seed 37): the rate check keeping the rate of lowest validation loss;
    # not adopted at seeds 37-39 and 166
    "test_acc_all_lowest_loss": "every test image, with the rate check keeping the rate of "
    "lowest validation loss (a candidate)",
    # a candidate (since seed 167): over-fitting's verified regularisers also tried together;
    # not adopted at seeds 167-176
    "test_acc_all_together": "every test image, with the verified regularisers also tried "
    "together (a candidate)",
    # a candidate (since seed 171): weight decay at 5e-3 too, beside 5e-4, for over-fitting;
    # not adopted at seeds 171-180
    "test_acc_all_strong_wd": "every test image, with weight decay at 5e-3 tried beside 5e-4 "
    "(a candidate)",
    # a candidate judged a second time at seeds 36 and 154-165: ReLU first for a tanh stack
    # too; the doctor's rule since, and the rule before it measured beside (DOCTOR_RULES)
    "test_acc_all_tanh_relu_first": "every test image, with ReLU first for a tanh stack too "
    "(the candidate at seeds 36 and 154-165)",
    "test_acc_all_tanh_init_first": "every test image, with the right init first for a tanh "
    "stack (the rule before seed 37)",
    # a candidate (since seed 23): over-fitting's regularisers as alternatives, the one of
    # lowest validation error kept (DOCTOR_RULES), the doctor run again where it tried one
    "test_acc_all_best_of": "every test image, with the regulariser of lowest validation "
    "error kept (the candidate at seeds 23-25, the doctor's rule since)",
    # the rule before seed 23, the first verified regulariser kept, measured beside since
    "test_acc_all_first_verified": "every test image, with the first verified regulariser "
    "kept (the rule before seed 23)",
    # the bar as it was until seed 16: a healthy variant the doctor flagged counted as repaired
    "test_acc_all_repaired_bar": "every test image, against healthy variants as the doctor "
    "repaired them (the bar until seed 16)",
}


def healthy_measure(measure: str) -> str:
    """The key a group's bar reads for ``measure``: a healthy row runs no repair and no rate
    check, so every rule measured beside is judged against its accuracy on every test image;
    the 2,000-image measure against its own."""
    return measure if measure in ("test_acc_all", "test_acc") else "test_acc_all"


ACCURACY_OF = {"test_acc_all_repaired_bar": "test_acc_all"}  # a broken row's key for a measure
# The bar is a healthy variant as built. Until seed 16, a healthy variant the doctor flagged was
# trained as the doctor repaired it, and that accuracy set its group's bar (seed 15: a SELU
# variant at 98.2% after augmentation): since seed 17 it is also trained as built, which counts.
REPAIRED_BAR = {"test_acc_all_repaired_bar"}
# The detectors' rules before the change after seed 16 (two separate rises for a swing; the
# over-fitting rule on the mean of the last third of evaluations at 2 noise standard errors,
# with the training loss fallen 15%), designed on the tuning half at seeds 30 and 31: the same
# watched runs are scored under these as well (detection only; repairs follow the rules now).
RULES_BEFORE = {"OSC_SWINGS": 1, "OVERFIT_Z": 3.0, "OVERFIT_TAIL": 0.0, "OVERFIT_FALL": 0.0}
COMMAND = "PYTHONPATH=src .venv/bin/python benchmarks/bench_doctor.py --half held-out --repair"

# -- the corpus ---------------------------------------------------------------------------------
# Each code of the doctor counts for one problem kind; AutoTrainer's issues for the kinds below.
KIND_OF_CODE = {
    "non_finite": "diverging", "exploding_grad": "diverging", "large_updates": "diverging",
    "explode": "exploding", "collapse": "vanishing", "vanishing_grad": "vanishing",
    "dead_units": "dead_units", "saturated": "saturated", "stalled": "stalled",
    "oscillating": "oscillating", "overfitting": "overfitting",
    "input_not_centred": "input_not_centred",
    # added after seed 3 (exact rules for faults the corpus does not plant): a gradient of exactly
    # zero is the limit of a vanishing one; the other two have kinds of their own, so that any
    # firing on the corpus counts against precision and as a false positive on a healthy setup
    "no_gradient": "vanishing", "symmetric": "symmetric",
    "probability_output": "probability_output", "linear_network": "linear_network",
}  # fmt: skip
KINDS_OF_AUTOTRAINER = {
    "explode": ("diverging", "exploding"),  # a NaN, or the gradient ratio above 70
    "vanish": ("vanishing",),
    "relu": ("dead_units",),
    "unstable": ("oscillating",),
    "not_converge": ("stalled",),
}
KINDS = ("diverging", "exploding", "vanishing", "dead_units", "saturated", "stalled",
         "oscillating", "overfitting", "input_not_centred")  # fmt: skip


@dataclass(frozen=True)
class Group:
    """A data set and a model: the healthy base its broken setups are made from."""

    name: str
    data: str
    base: tuple[str, ...]


@dataclass(frozen=True)
class Setup:
    name: str
    group: str
    overrides: tuple[str, ...]
    must: frozenset[str] = frozenset()  # problem kinds it must show
    may: frozenset[str] = frozenset()  # kinds it may show as consequences
    severity: int = 0
    recipe_file: str | None = None  # a shipped recipe, cut down by the group's base
    # a setup relabelled after runs had been seen: its labels before (must, may), scored beside
    # the new ones, and the stratum it was split in, so that no setup changes half
    before: tuple[frozenset[str], frozenset[str]] | None = None
    stratum: str | None = None
    relabelled_after: int | None = None  # the last seed seen before the relabelling

    @property
    def healthy(self) -> bool:
        return not self.must


FM = "fashion-mnist"
C10 = "cifar10"
SYN = "synthetic(n=2048, classes=4, size=16)"
COMMON = ("train.device=cpu", "diagnostics.every=0", "train.eval_every=0",
          "data.test_subset=2000")  # fmt: skip

GROUPS = {
    g.name: g
    for g in (
        Group(
            "fm-mlp",
            FM,
            (
                "data.subset=4000",
                "model.kind=mlp",
                "model.widths=[256,256]",
                "model.norm=batch",
                "optim.lr=0.05",
                "train.batch_size=64",
                "train.epochs=18",
                "augment.train=['hflip']",
            ),
        ),
        Group(
            "fm-plain",
            FM,
            (
                "data.subset=4000",
                "model.kind=mlp",
                "model.widths=[256,256,256]",
                "model.norm=none",
                "optim.lr=0.02",
                "train.batch_size=64",
                "train.epochs=18",
                "augment.train=['hflip']",
            ),
        ),
        Group(
            "fm-cnn",
            FM,
            (
                "data.subset=2000",
                "model.kind=cnn",
                "model.widths=[16,32]",
                "model.norm=batch",
                "model.head=flatten",
                "optim.lr=0.025",
                "schedule.warmup_epochs=0.5",
                "train.batch_size=64",
                "train.epochs=12",
                "augment.train=['hflip']",
            ),
        ),
        Group(
            "c10-cnn",
            C10,
            (
                "data.subset=3000",
                "model.kind=cnn",
                "model.widths=[16,32,64]",
                "model.norm=batch",
                "model.head=avg",
                "optim.lr=0.05",
                "train.batch_size=64",
                "train.epochs=12",
                "augment.train=['hflip', 'pad_crop(2)']",
            ),
        ),
        Group(
            "c10-resnet",
            C10,
            (
                "data.subset=2000",
                "model.kind=resnet",
                "model.widths=[8,16]",
                "optim.lr=0.05",
                "train.batch_size=64",
                "train.epochs=12",
                "augment.train=['hflip', 'pad_crop(2)']",
            ),
        ),
        Group(
            "c10-plain",
            C10,
            (
                "data.subset=3000",
                "model.kind=cnn",
                "model.widths=[16,32,64]",
                "model.norm=none",
                "model.head=avg",
                "optim.lr=0.01",
                "train.batch_size=64",
                "train.epochs=12",
                "augment.train=['hflip', 'pad_crop(2)']",
            ),
        ),
        Group(
            "syn-deep",
            SYN,
            (
                "data.name=" + SYN,
                "model.kind=mlp",
                "model.widths=[128,128,128,128,128,128]",
                "model.norm=none",
                "optim.lr=0.02",
                "train.batch_size=64",
                "train.epochs=20",
                "augment.train=[]",
            ),
        ),
        Group(
            "syn-cnn",
            SYN,
            (
                "data.name=" + SYN,
                "model.kind=cnn",
                "model.widths=[8,16,32]",
                "model.norm=none",
                "model.head=avg",
                "optim.lr=0.02",
                "train.batch_size=64",
                "train.epochs=16",
                "augment.train=['pad_crop(2)']",
            ),
        ),
        Group(
            "fm-small",
            FM,
            (
                "data.subset=1000",
                "model.kind=mlp",
                "model.widths=[1024,1024]",
                "model.norm=none",
                "optim.lr=0.05",
                "optim.weight_decay=0.0",
                "train.batch_size=32",
                "train.epochs=60",
                "augment.train=[]",
            ),
        ),
        Group(
            "c10-small",
            C10,
            (
                "data.subset=1000",
                "model.kind=cnn",
                "model.widths=[16,32]",
                "model.norm=batch",
                "model.head=flatten",
                "optim.lr=0.0125",
                "schedule.warmup_epochs=0.5",
                "optim.weight_decay=0.0",
                "train.batch_size=32",
                "train.epochs=45",
                "augment.train=[]",
            ),
        ),
        Group("shipped", FM, ()),  # at full size: the watch alone (no broken setup to repair)
        Group("shipped-c10", C10, ("data.subset=10000", "train.epochs=9")),
    )  # fmt: skip
}


# The label rule written after seed 19, before any run at seed 20 or later: a setup built healthy
# may show a problem when the doctor's repair for it, trained in full, beats the setup as built on
# every test image on paired seeds, with the 95% t interval of the gain above zero; then naming
# that problem is no false positive (the setup stays healthy, and its as-built accuracy stays in
# its group's bar). On seeds 17-19, the only ones where both were trained (the benchmark trains
# a healthy setup as built only where the doctor changed it), two variants of the deep MLP with
# 2,048 synthetic training images met it, in points: tanh +1.9, +1.6, +1.4 (dropout; 95% t +1.0
# to +2.3), SELU +7.6, +7.8 (pad-crop; seeds 17, 18; +6.6 to +8.8), each repair with the rate
# its check kept (0.06 against the built 0.02). benchmarks/probe_overfit_as_built.py took the
# regulariser and the rate apart at seeds 40-47, with the rule, written before it ran, that a
# relabelling stands only where the regulariser alone gains: pad-crop alone gains +7.8 (+7.3 to
# +8.3) on the SELU variant, which stays relabelled; dropout alone costs the tanh variant 1.6
# (-1.9 to -1.3) while the rate alone gains +3.9, so its relabelling was withdrawn.
# After seed 22 the doctor came to keep pad-crop for the tanh variant (over-fitting's fixes as
# alternatives, adopted by its rule at seeds 23-25), and the same probe's rule, written before
# those seeds, was applied to it at seeds 48-55: pad-crop alone gains +12.5 (+11.9 to +13.0).
# Each relabelled setup: the last seed seen before its relabelling, and the evidence.
OVER_FIT_AS_BUILT = {
    "syn-deep/healthy-4": (19, "pad-crop alone +7.3 to +8.3 points (seeds 40-47)"),
    "syn-deep/healthy-3": (22, "pad-crop alone +11.9 to +13.0 points (seeds 48-55)"),
}


def _s(name, group, overrides=(), must=(), may=(), severity=0, recipe_file=None) -> Setup:
    return Setup(name, group, tuple(overrides), frozenset(must), frozenset(may), severity,
                 recipe_file)  # fmt: skip


def corpus() -> list[Setup]:
    """Every setup. Severities count up from 1; healthy setups have severity 0."""
    out: list[Setup] = []

    def family(kind, group, settings, must=None, may=(), prefix=None):
        for i, overrides in enumerate(settings, 1):
            name = f"{group}/{prefix or kind}-{i}"
            out.append(_s(name, group, overrides, must or (kind,), may, i))

    diverged = ("exploding", "vanishing", "dead_units", "stalled", "oscillating", "saturated")
    # healthy: the bases and tuned variants
    for group, variants in {
        "fm-mlp": ([], ["optim.lr=0.025"], ["optim.lr=0.1"], ["optim.name=adamw",
                   "optim.lr=0.001"], ["regularize.label_smoothing=0.1"],
                   ["model.dropout=dropout(0.2)"]),
        "fm-plain": ([], ["optim.lr=0.01"], ["optim.lr=0.04"], ["optim.name=adamw",
                     "optim.lr=0.0005"], ["model.activation=tanh", "init.scheme=xavier"]),
        "fm-cnn": ([], ["schedule.warmup_epochs=1.0"], ["optim.lr=0.0125"], ["optim.name=adamw",
                   "optim.lr=0.001"], ["model.activation=gelu"]),
        "c10-cnn": ([], ["optim.lr=0.025"], ["optim.lr=0.1"], ["optim.name=adamw",
                    "optim.lr=0.002"], ["model.activation=leaky_relu(0.1)"]),
        "c10-resnet": ([], ["optim.lr=0.1"], ["optim.lr=0.025"], ["optim.name=adamw",
                       "optim.lr=0.001"], ["regularize.label_smoothing=0.1"]),
        "c10-plain": ([], ["optim.lr=0.005"], ["optim.lr=0.02"], ["optim.name=adamw",
                      "optim.lr=0.001"], ["model.activation=leaky_relu(0.1)"]),
        "syn-deep": ([], ["optim.lr=0.01"], ["optim.lr=0.04"], ["model.activation=tanh",
                     "init.scheme=xavier"], ["model.activation=selu",
                     "init.scheme=lecun_normal"]),
        "syn-cnn": ([], ["optim.lr=0.01"], ["optim.lr=0.04"], ["optim.name=adamw",
                    "optim.lr=0.001"], ["model.activation=elu"]),
        "fm-small": (["optim.lr=0.02", "model.dropout=dropout(0.5)", "optim.weight_decay=0.005",
                      "augment.train=['hflip']"],
                     ["optim.lr=0.02", "model.dropout=dropout(0.5)", "optim.weight_decay=0.0005",
                      "augment.train=['hflip']"],
                     ["optim.weight_decay=0.005", "augment.train=['hflip', 'pad_crop(2)']"]),
        "c10-small": (["augment.train=['hflip', 'pad_crop(4)']"],
                      ["augment.train=['hflip', 'pad_crop(4)']", "optim.weight_decay=0.0005"],
                      ["model.dropout=dropout(0.5)", "augment.train=['hflip', 'pad_crop(4)']"]),
    }.items():  # fmt: skip
        for i, overrides in enumerate(variants):
            setup = _s(f"{group}/healthy-{i}", group, overrides)
            if setup.name in OVER_FIT_AS_BUILT:  # relabelled: see OVER_FIT_AS_BUILT
                after = OVER_FIT_AS_BUILT[setup.name][0]
                setup = dataclasses.replace(setup, may=frozenset({"overfitting"}),
                                            before=(setup.must, setup.may),
                                            relabelled_after=after)  # fmt: skip
            out.append(setup)
    for recipe in ("default", "fashion-mnist-fast"):
        out.append(_s(f"shipped/{recipe}", "shipped", recipe_file=f"recipes/{recipe}.toml"))
    for recipe in ("cifar10", "cifar10-cpu"):
        out.append(_s(f"shipped-c10/{recipe}", "shipped-c10", recipe_file=f"recipes/{recipe}.toml"))

    # diverging: the rate far above what the network can take
    family("diverging", "fm-plain", [["optim.lr=0.2"], ["optim.lr=0.6"], ["optim.lr=2.0"]],
           may=diverged)  # fmt: skip
    family("diverging", "syn-deep", [["optim.lr=0.2"], ["optim.lr=1.0"], ["optim.lr=5.0"]],
           may=diverged)  # fmt: skip
    family("diverging", "syn-cnn", [["optim.lr=0.3"], ["optim.lr=1.0"], ["optim.lr=5.0"]],
           may=diverged)  # fmt: skip
    adam = [["optim.name=adamw", "optim.lr=0.3"], ["optim.name=adamw", "optim.lr=1.0"]]
    family("diverging", "fm-plain", adam, may=diverged, prefix="diverging-adam")
    family("diverging", "c10-plain", [["optim.lr=0.15"], ["optim.lr=0.5"], ["optim.lr=2.0"]],
           may=diverged)  # fmt: skip
    # exploding: a fixed init std far above Kaiming's in a deep plain net
    family("exploding", "syn-deep", [["init.scheme=normal(0.3)"], ["init.scheme=normal(0.6)"],
           ["init.scheme=normal(1.5)"]], may=diverged + ("diverging",))  # fmt: skip
    family("exploding", "fm-plain", [["init.scheme=normal(0.25)"], ["init.scheme=normal(0.5)"],
           ["init.scheme=normal(1.0)"]], may=diverged + ("diverging",))  # fmt: skip
    family("exploding", "syn-cnn", [["init.scheme=normal(0.5)"], ["init.scheme=normal(1.0)"],
           ["init.scheme=normal(2.0)"]], may=diverged + ("diverging",))  # fmt: skip
    family("exploding", "c10-plain", [["init.scheme=normal(0.3)"], ["init.scheme=normal(0.6)"],
           ["init.scheme=normal(1.2)"]], may=diverged + ("diverging",))  # fmt: skip
    # vanishing: a small fixed init std, or sigmoid, in a deep plain net
    family("vanishing", "syn-deep", [["init.scheme=normal(0.04)"], ["init.scheme=normal(0.02)"],
           ["init.scheme=normal(0.005)"]], may=("stalled", "dead_units"))  # fmt: skip
    family("vanishing", "fm-plain", [["init.scheme=normal(0.03)"], ["init.scheme=normal(0.01)"],
           ["init.scheme=normal(0.003)"]], may=("stalled", "dead_units"))  # fmt: skip
    family("vanishing", "syn-deep", [["model.activation=sigmoid", "init.scheme=xavier"],
           ["model.activation=sigmoid", "init.scheme=normal(0.05)"],
           ["model.activation=sigmoid", "init.scheme=normal(0.02)"]],
           may=("stalled", "saturated", "dead_units"), prefix="vanishing-sigmoid")  # fmt: skip
    family("vanishing", "c10-plain", [["init.scheme=normal(0.01)"], ["init.scheme=normal(0.003)"],
           ["init.scheme=normal(0.001)"]], may=("stalled", "dead_units"))  # fmt: skip
    # dead units: Adam at a high rate knocks ReLUs below zero for good
    family("dead_units", "fm-plain", [["optim.name=adamw", "optim.lr=0.03"],
           ["optim.name=adamw", "optim.lr=0.06"], ["optim.name=adamw", "optim.lr=0.12"]],
           may=("stalled", "diverging", "oscillating", "vanishing"))  # fmt: skip
    family("dead_units", "syn-deep", [["optim.name=adamw", "optim.lr=0.02"],
           ["optim.name=adamw", "optim.lr=0.05"], ["optim.name=adamw", "optim.lr=0.1"]],
           may=("stalled", "diverging", "oscillating", "vanishing"))  # fmt: skip
    for group in ("c10-plain", "syn-cnn"):
        family("dead_units", group, [["optim.name=adamw", "optim.lr=0.02"],
               ["optim.name=adamw", "optim.lr=0.05"], ["optim.name=adamw", "optim.lr=0.1"]],
               may=("stalled", "diverging", "oscillating", "vanishing"))  # fmt: skip
    # saturated: tanh with a large fixed init std
    family("saturated", "fm-plain", [["model.activation=tanh", "init.scheme=normal(0.2)"],
           ["model.activation=tanh", "init.scheme=normal(0.5)"],
           ["model.activation=tanh", "init.scheme=normal(1.5)"]],
           may=("stalled", "vanishing", "diverging", "exploding"))  # fmt: skip
    family("saturated", "syn-deep", [["model.activation=tanh", "init.scheme=normal(0.3)"],
           ["model.activation=tanh", "init.scheme=normal(0.6)"],
           ["model.activation=tanh", "init.scheme=normal(1.5)"]],
           may=("stalled", "vanishing", "diverging", "exploding"))  # fmt: skip
    family("saturated", "syn-cnn", [["model.activation=tanh", "init.scheme=normal(0.5)"],
           ["model.activation=tanh", "init.scheme=normal(1.0)"],
           ["model.activation=tanh", "init.scheme=normal(2.0)"]],
           may=("stalled", "vanishing", "diverging", "exploding"))  # fmt: skip
    # stalled: the rate far below the reference
    for group, lr in (("fm-mlp", 0.05), ("fm-cnn", 0.025), ("c10-cnn", 0.05),
                      ("c10-resnet", 0.05), ("syn-cnn", 0.02), ("fm-plain", 0.02)):  # fmt: skip
        family("stalled", group, [[f"optim.lr={lr / k:.3g}"] for k in (1e4, 1e5, 1e6)])
    # A far too high rate with batch norm: built to swing, labelled "oscillating" until seed 9.
    # It does not swing: AutoTrainer's unstable rule fired on none of these networks in the
    # held-out runs or in 136 probe runs, nor did its oscillation test without the convergence
    # gate on the training accuracy, at seeds 0 and 1 (benchmarks/probe_oscillation.py); they
    # die or stall at 30-120 times their base rate. By how they are built they belong with the
    # diverging family (a rate 10 times its base and more), so since seed 14 they must show
    # "diverging". Pages score the old labels beside the new on the same runs.
    high = (1.5, 3.0, 6.0)
    before = (frozenset({"oscillating"}),
              frozenset({"diverging", "dead_units", "stalled", "vanishing"}))  # fmt: skip
    for group, rates in (("fm-mlp", high), ("fm-cnn", (1.0, 2.0, 4.0)), ("c10-cnn", high),
                         ("c10-resnet", high)):  # fmt: skip
        for i, lr in enumerate(rates, 1):
            settings = ("optim.nesterov=false", f"optim.lr={lr}")
            out.append(Setup(f"{group}/oscillating-{i}", group, settings,
                             frozenset({"diverging"}), frozenset(diverged), i, before=before,
                             stratum="oscillating", relabelled_after=9))  # fmt: skip
    # over-fitting: no regularization on little data
    family("overfitting", "fm-small", [["train.epochs=45"], ["train.epochs=60"],
           ["train.epochs=90"], ["model.widths=[2048,2048]"]])  # fmt: skip
    family("overfitting", "c10-small", [["train.epochs=45"], ["train.epochs=60"],
           ["train.epochs=90"]])  # fmt: skip
    # input not centred: raw or [0, 1] pixels
    for group in ("fm-plain", "syn-deep", "c10-cnn", "fm-mlp"):
        family("input_not_centred", group, [["data.normalize=scale"], ["data.normalize=none"]],
               may=diverged + ("diverging",))  # fmt: skip
    return out


def halves(setups: list[Setup]) -> dict[str, str]:
    """Each setup's half: within each stratum (its problem kind, or healthy) the setups are
    ordered by a hash of SPLIT_SEED and their name and dealt alternately to the two halves, so
    every kind is in both."""
    strata: dict[str, list[Setup]] = {}
    for s in setups:
        strata.setdefault(s.stratum or ",".join(sorted(s.must)) or "healthy", []).append(s)
    half = {}
    for members in strata.values():
        members.sort(key=lambda s: hashlib.sha256(f"{SPLIT_SEED}:{s.name}".encode()).hexdigest())
        for i, s in enumerate(members):
            half[s.name] = ("tuning", "held-out")[i % 2]
    return half


def labelled(rows: list[dict[str, Any]], undo: int | None = None) -> list[dict[str, Any]]:
    """Copies of ``rows`` with the corpus's labels as they are now, or (``undo``) as they were
    before the relabelling made after that seed: the same runs scored both ways."""
    labels = {
        s.name: (s.before if s.before and s.relabelled_after == undo else (s.must, s.may))
        for s in corpus()
    }
    return [
        {**r, "must": sorted(labels[r["name"]][0]), "may": sorted(labels[r["name"]][1])}
        if r["name"] in labels
        else dict(r)
        for r in rows
    ]


def half_of(setup: Setup) -> str:
    return halves(corpus())[setup.name]


def setup_recipe(setup: Setup, seed: int = 0):
    from trainlab.recipe import load_recipe

    group = GROUPS[setup.group]
    data = [] if setup.recipe_file else [f"data.name={group.data}"]
    common = [*COMMON, f"train.seed={seed}"]
    return load_recipe(setup.recipe_file, [*common, *data, *group.base, *setup.overrides])


# -- AutoTrainer's rules, the baseline ------------------------------------------------------
class AutoTrainerRules:
    """AutoTrainer's detection (Zhang et al., "AUTOTRAINER: An Automatic DNN Training Problem
    Detection and Repair System", ICSE 2021), from the paper and its public monitor code
    (AutoTrainer/utils/monitor.py), with its default parameters. Checked once per epoch:

    * gradients (of a batch at the epoch's end; here the epoch's last step): vanishing if the
      ratio of the first to the last layer's kernel gradient norm is below BETA_1 while the
      first is below BETA_2; exploding if that ratio exceeds BETA_3; dying ReLU if at least
      GAMMA of all gradient entries are exactly zero; any NaN counts as exploding;
    * the accuracy history, from 30% of the epochs on: unstable if local maxima and minima of
      the training accuracy, paired in order, differ by at least ZETA on at least ETA of the
      epochs; not converging if the best training or validation accuracy is below THETA;
      slow if no epoch gained DELTA in either;
    * as in the code, the gradient rules name a problem only while training is not converging
      (or slow), in the order dying ReLU, exploding, vanishing, then slow convergence;
      otherwise an unstable history names "unstable". A NaN loss or weight is "explode".
    """

    BETA_1, BETA_2, BETA_3, GAMMA = 1e-3, 1e-4, 70.0, 0.7
    ZETA, ETA, DELTA, THETA, JUDGMENT = 0.03, 0.2, 0.01, 0.7, 0.3

    def __init__(self, total_checks: int):
        self.total = total_checks
        self.history: dict[str, list[float]] = {"loss": [], "acc": [], "val_loss": [],
                                                "val_acc": []}  # fmt: skip
        self.counts = {"relu": 0, "explode": 0, "vanish": 0}
        self.nan = False
        self.issues: list[str] = []
        self.detected_at: int | None = None

    def check(self, step: int, row: dict[str, float], kernels: list[float], zero_fraction: float,
              grads_finite: bool, weights_finite: bool) -> None:  # fmt: skip
        if self.issues:
            return
        for key, value in (("loss", row["train_loss"]), ("acc", row["train_acc"]),
                           ("val_loss", row["val_loss"]), ("val_acc", row["val_acc"])):  # fmt: skip
            self.history[key].append(value)
        if not grads_finite:
            self.nan = True
        elif len(kernels) >= 2:
            ratio = kernels[0] / kernels[-1] if kernels[-1] > 0 else math.inf
            self.counts["vanish"] += ratio < self.BETA_1 and kernels[0] < self.BETA_2
            self.counts["explode"] += ratio > self.BETA_3
            self.counts["relu"] += zero_fraction >= self.GAMMA
        self.nan |= not weights_finite
        h = self.history
        losses = h["loss"] + h["val_loss"]
        if any(not math.isfinite(v) for v in losses) or h["val_loss"][-1] >= 1e5:
            self.nan = True
        unstable = not_converge = slow = False
        if not self.nan and len(h["acc"]) >= self.JUDGMENT * self.total:
            unstable = _ol_judge(h["acc"], self.ZETA, self.ETA)
            not_converge = max(h["val_acc"]) < self.THETA or max(h["acc"]) < self.THETA
            slow = _max_delta(h["val_acc"]) < self.DELTA and _max_delta(h["acc"]) < self.DELTA
        issues = ["explode"] if self.nan else []
        if not_converge or slow:
            for issue in ("relu", "explode", "vanish"):
                if self.counts[issue] >= 1:
                    issues.append(issue)
                    break
            else:
                if slow:
                    issues.append("not_converge")
        elif unstable:
            issues.append("unstable")
        self.issues = sorted(set(issues))
        if self.issues:
            self.detected_at = step


def _ol_judge(acc: list[float], threshold: float, rate: float) -> bool:
    """AutoTrainer's oscillation rule: local maxima and minima paired in order."""
    maxima = [
        acc[i] for i in range(1, len(acc) - 1) if acc[i] >= acc[i - 1] and acc[i] >= acc[i + 1]
    ]
    minima = [
        acc[i] for i in range(1, len(acc) - 1) if acc[i] <= acc[i - 1] and acc[i] <= acc[i + 1]
    ]
    count = sum(1 for a, b in zip(maxima, minima, strict=False) if a - b >= threshold)
    return count >= rate * len(acc)


def _max_delta(acc: list[float]) -> float:
    return max([0.0] + [b - a for a, b in zip(acc[:-1], acc[1:], strict=True)])


def _gradient_facts(model) -> tuple[list[float], float, bool, bool]:
    """First-to-last kernel gradient norms, the share of exactly-zero gradient entries, and
    whether gradients and weights are finite: what AutoTrainer reads at each epoch's end."""
    import torch
    from torch import nn

    kernels, zeros, total, finite = [], 0, 0, True
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and weight.dim() >= 2 and weight.grad is not None:
            kernels.append(float(torch.linalg.vector_norm(weight.grad.float())))
    for p in model.parameters():
        if p.grad is not None:
            zeros += int((p.grad == 0).sum())
            total += p.grad.numel()
            finite &= bool(torch.isfinite(p.grad).all())
    weights_ok = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    finite &= all(math.isfinite(k) for k in kernels)
    return kernels, zeros / max(1, total), finite, weights_ok


# -- one setup ----------------------------------------------------------------------------------
_DATA: dict[str, Any] = {}


def _dataset(name: str):
    from trainlab.data import load_dataset

    if name not in _DATA:
        _DATA[name] = load_dataset(name)
    return _DATA[name]


def _accuracy_on_every_test_image(run_dir: Path, recipe, subset_acc: float) -> float:
    """The trained model of ``run_dir`` on every test image of its data (on FULL_TEST_BARS
    fresh ones for the synthetic bars). Checks first that the rebuilt model scores what the
    run reported on its own test subset, so both measures judge the same weights."""
    from trainlab.engine.checkpoint import model_from_checkpoint
    from trainlab.engine.evaluate import evaluate
    from trainlab.engine.splits import held_out_split

    model, _, state = model_from_checkpoint(run_dir)
    data = _dataset(recipe.data.name)
    images, labels = held_out_split(data, recipe.data.test_subset)
    again = evaluate(model, images, labels, state["num_classes"]).accuracy
    if abs(again - subset_acc) > 1e-9:
        raise RuntimeError(f"{run_dir}: rebuilt model scores {again}, the run {subset_acc}")
    if recipe.data.name.startswith("synthetic("):
        data = _dataset(recipe.data.name[:-1] + f", test_n={FULL_TEST_BARS})")
    images, labels = held_out_split(data, 0)
    return evaluate(model, images, labels, state["num_classes"]).accuracy


def step_back_rate(tried: list[dict[str, Any]], lr: float) -> float:
    """A candidate rule, measured beside the rate check and not the doctor's: where the rate the
    check keeps has a tried rate above it, within one of its factors of 3, that diverged, keep
    the best clean rate below it instead (the kept rate where none below is clean). At seed 17 the
    check kept 0.18 beside a diverged 0.54 and the full run diverged; earlier seeds kept such a
    rate 18 times without a divergence, so the rule is judged on fresh seeds before any use."""
    from trainlab.doctor.doctor import RATE_FACTORS, choose_rate

    chosen = choose_rate(tried, lr)
    above = [t for t in tried if chosen < t["lr"] <= chosen * RATE_FACTORS[1] * 1.01]
    below = [t for t in tried if t["lr"] < chosen and not t["problems"] and t["error"] is not None]
    if not below or not any(t["error"] is None for t in above):
        return chosen
    return choose_rate(below, lr)


def no_step_back(tried: list[dict[str, Any]], lr: float) -> float:
    """The rate check's choice before its step back from an extended rate beside a diverged one
    (adopted after seeds 82-141): the lowest clean error alone."""
    from trainlab.doctor.doctor import lowest_clean_error

    return lowest_clean_error(tried, lr)


def three_rates(tried: list[dict[str, Any]], lr: float) -> float:
    """The rate check before its range could grow (seed 3): its first three rates only."""
    from trainlab.doctor.doctor import choose_rate

    return choose_rate(tried[:3], lr)


def lowest_clean_loss(tried: list[dict[str, Any]], lr: float) -> float:
    """A candidate (since seed 37), measured beside the rate check: the rate kept by the final
    validation loss, the doctor's own verification score, in place of the error, with the same
    ties and the same step back from an extended rate (:func:`choose_rate`). The error of 200
    to 1,000 validation images moves in steps of 0.1-0.5 points: at 214 of the 534 checks of
    seeds 23-35 another clean rate's error was within 1.5 points of the kept one's, and the small
    Fashion-MNIST MLP's two rates tied or nearly so at most of them. Written after seeing those
    seeds. Rate rules read a fresh run's check, which records the loss since seed 37. Not
    adopted at seeds 37-39 and 166 (per-seed gain -4.1 to +2.1 points, 95% t; docs/doctor.md)."""
    from trainlab.doctor.doctor import choose_rate

    return choose_rate([{**t, "error": t["loss"]} for t in tried], lr)


# Other rules for the rate check, each measured beside it: the repaired recipe at that rule's
# rate, trained in full where it differs from the rate kept (paired: same seed, same repairs).
RATE_RULES = {
    "test_acc_all_three_rates": three_rates,
    "test_acc_all_step_back": step_back_rate,
    "test_acc_all_no_step_back": no_step_back,
    "test_acc_all_lowest_loss": lowest_clean_loss,
}


def _with_rate_rule(result, data, tmp: str, row: dict[str, Any], measure: str) -> float | None:
    """The accuracy on every test image of the repaired recipe at the rate RATE_RULES[measure]
    keeps from the rate check's runs: the same run where that is the rate the check kept."""
    from trainlab.doctor.doctor import apply_change
    from trainlab.doctor.repairs import Change

    checked = result.rate_check or {}
    if not checked.get("rates"):
        return row.get("test_acc_all")
    rate = RATE_RULES[measure](checked["rates"], checked["rates"][0]["lr"])
    row[f"{measure}_differs"] = rate != checked["chosen"]
    if rate == checked["chosen"]:
        return row.get("test_acc_all")
    recipe = apply_change(result.recipe, Change({"optim.lr": rate}, ""))
    return _in_full(recipe, data, Path(tmp) / measure)


def _in_full(recipe, data, folder: Path) -> float | None:
    """The recipe trained in full and scored on every test image; None where it diverged (not
    repaired, as where the doctor's own recipe diverges)."""
    from trainlab.engine import fit
    from trainlab.errors import TrainingDiverged

    try:
        final = fit(recipe, folder, progress=False, report=False, dataset=data)
    except TrainingDiverged:
        return None
    return _accuracy_on_every_test_image(folder, recipe, final.final["test_acc"])


# Other rules of the doctor, each measured beside it: the doctor run again from the same
# watched run with constants of trainlab.doctor.doctor set so, where it tried a fix for the
# problem named, or one of the problems (before that the two agree), its recipe trained in full
# (paired: same seed).
# Seeds 23-25 measured over-fitting's regularisers as alternatives (doctor.BEST_OF) beside the
# doctor, which kept the first verified (test_acc_all_best_of in their rows); adopted after them,
# the rule before is measured beside since.
DOCTOR_RULES = {
    "test_acc_all_first_verified": ("overfitting", {"BEST_OF": frozenset()}),
    # a candidate (since seed 28): saturation's fixes (the init for the activation, batch norm,
    # ReLU, a lower rate) as alternatives, as over-fitting's are. Written after seeing the tanh
    # deep MLP repaired by its init at every held-out seed to 84-86%, short of the ReLU
    # variant's 92-94%: the watched run verified the init first and tried nothing after it.
    "test_acc_all_best_of_saturated": (
        "saturated",
        {"BEST_OF": frozenset({"overfitting", "saturated"})},
    ),
    # standardizing at the rate it needs: input_not_centred's fix retried at the rate x 3 and
    # x 1/3 where the watched loss rejects it alone. A candidate at seeds 33 and 142-153
    # (test_acc_all_standardize_at_rate), adopted after them; the rule before, standardizing
    # alone, measured beside since.
    "test_acc_all_standardize_alone": (
        "input_not_centred",
        lambda: {
            "REPAIR_ORDER": {
                **_repairs().REPAIR_ORDER,
                "input_not_centred": (_repairs().standardize,),
            }
        },
        "trainlab.doctor.repairs",
    ),
    # a candidate (since seed 167): where two or more of over-fitting's regularisers verify
    # alone, they are also tried together, one more alternative (STACK). Written after seeing
    # the small Fashion-MNIST MLP over-fitting not repaired at 12 of 16 fresh seeds, 1.0-2.6
    # points below its bar (a variant with dropout, weight decay and flips at once) with one
    # regulariser kept. Not adopted at seeds 167-176: it acted at one setup.
    "test_acc_all_together": ("overfitting", {"STACK": frozenset({"overfitting"})}),
    # a candidate (since seed 171): over-fitting's fixes with weight decay at 5e-3 as one more
    # alternative beside 5e-4 (repairs.strong_weight_decay). Written after a probe at seeds 23
    # and 24 (benchmarks/probe_regularisers.py): on the small Fashion-MNIST MLP, 5e-4 did not
    # clear the over-fitting in the watched run, 5e-3 did, and trained in full reached 81.6% and
    # 80.6% against augmentation's 79.9% and 78.7% (the doctor's choice; bars 82.0%, 81.0%).
    # Not adopted at seeds 171-180: +2.0 and +1.5 points on that MLP, -10.4 on the small CNN.
    "test_acc_all_strong_wd": (
        "overfitting",
        lambda: {
            "REPAIR_ORDER": {
                **_repairs().REPAIR_ORDER,
                "overfitting": (
                    _repairs().dropout,
                    _repairs().weight_decay,
                    _repairs().strong_weight_decay,
                    _repairs().augmentation,
                ),
            }
        },
        "trainlab.doctor.repairs",
    ),
    # ReLU first for a tanh stack, as for a sigmoid one, for every problem of the signal's scale:
    # not adopted at seeds 10-13, a candidate judged a second time at seeds 36 and 154-165
    # (test_acc_all_tanh_relu_first), adopted after them; the rule before, the right init first
    # for tanh, measured beside since.
    "test_acc_all_tanh_init_first": (
        ("explode", "collapse", "vanishing_grad", "saturated"),
        {"RELU_FIRST_FOR": ("sigmoid", "logistic")},
        "trainlab.doctor.repairs",
    ),
}


# Candidates of DOCTOR_RULES since adopted: their columns stay in the pages of the seeds that
# measured them.
ADOPTED = ("test_acc_all_standardize_at_rate", "test_acc_all_tanh_relu_first")


def _repairs():
    import trainlab.doctor.repairs

    return trainlab.doctor.repairs


def _with_doctor_rule(result, first, recipe, data, tmp: str, row: dict[str, Any], measure: str):
    """The accuracy on every test image of the recipe the doctor repairs under the rule
    DOCTOR_RULES[measure]: the doctor's own where it tried no fix for that rule's problem. The
    row keeps that doctor's changes and cost beside its own (``<measure>_repairs``, ``_cost``)."""
    from trainlab.doctor.doctor import doctor

    problem, constants, *module = DOCTOR_RULES[measure]
    problems = {problem} if isinstance(problem, str) else set(problem)
    if not any(r["problem"] in problems for r in result.repairs):
        return row.get("test_acc_all")
    constants = constants() if callable(constants) else constants
    with _constants(module[0] if module else "trainlab.doctor.doctor", constants):
        other = doctor(recipe, None, repair=True, dataset=data, val_fraction=VAL_FRACTION,
                       first=first)  # fmt: skip
    row[f"{measure}_repairs"] = [(r["change"], r["kept"], r["after"]) for r in other.repairs]
    row[f"{measure}_cost"] = other.cost
    row[f"{measure}_differs"] = other.recipe.to_toml() != result.recipe.to_toml()
    if not row[f"{measure}_differs"]:
        return row.get("test_acc_all")
    return _in_full(other.recipe, data, Path(tmp) / measure)


def rule_gain(rows: list[dict[str, Any]], measure: str) -> dict[str, Any]:
    """A candidate rule's gain over the doctor's (DOCTOR_RULES), in points of accuracy on every
    test image, on the rows where their repaired recipes differ (rows of several seeds pool: each
    setup at each seed is a pair), a recipe that diverged in full scored at chance; with its 95%
    paired t interval (trainlab.lab.evidence.paired_t_interval) where there are 2 pairs or more."""
    from trainlab.lab.evidence import paired_t_interval

    pairs = [r for r in rows if r.get(f"{measure}_differs")]
    ours = [_points(r, "test_acc_all") for r in pairs]
    theirs = [_points(r, measure) for r in pairs]
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "names": [r["name"] for r in pairs],
        "gains": [round(b - a, 2) for a, b in zip(ours, theirs, strict=True)],
    }
    if len(pairs) >= 2:
        mean, (lo, hi) = paired_t_interval(theirs, ours)
        out.update(mean=round(mean, 2), interval=[round(lo, 2), round(hi, 2)])
    return out


def _points(row: dict[str, Any], key: str) -> float:
    """Points of accuracy on every test image; a recipe that diverged in full at chance."""
    acc = row.get(key)
    classes = 4 if GROUPS[row["group"]].data == SYN else 10
    return 100 * (acc if acc is not None else 1 / classes)


def rule_verdict(
    seeds: list[list[dict[str, Any]]], measure: str, level: float = 0.95
) -> dict[str, Any]:
    """What a candidate's adoption rule reads, from the rows of several seeds (one list each,
    every row of its run: the held-out half is scored, against its groups' bars as built):
    rule_gain pooled over the seeds; the setups repaired under the candidate only and under the
    doctor only; and per seed where the recipes differ, the mean gain over those setups, with its
    t interval at ``level`` over the seeds where there are 2 or more (the setups of one seed share
    their data and often their repaired recipe, so a seed, not a setup, is the unit that
    repeats). A candidate judged a second time asks 0.975: two tests at 2.5% each."""
    from trainlab.lab.evidence import paired_t_interval

    pooled, ours, theirs = [], [], []
    only = {"candidate": [], "doctor": []}
    for rows in seeds:
        rows = labelled(rows)
        scored = [r for r in rows if r["half"] == "held-out"]
        repair_rate(scored, best_healthy(rows, "test_acc_all"))
        repair_rate(scored, best_healthy(rows, healthy_measure(measure)), measure)
        for r in scored:
            if "repaired" in r and r["repaired"] != r[f"repaired_{measure}"]:
                only["candidate" if r[f"repaired_{measure}"] else "doctor"].append(r["name"])
        differs = [r for r in scored if r.get(f"{measure}_differs")]
        pooled += scored
        if differs:
            ours.append(sum(_points(r, "test_acc_all") for r in differs) / len(differs))
            theirs.append(sum(_points(r, measure) for r in differs) / len(differs))
    out = {**rule_gain(pooled, measure),
           "repaired_only_under_candidate": only["candidate"],
           "repaired_only_under_doctor": only["doctor"],
           "seed_gains": [round(b - a, 2) for a, b in zip(ours, theirs, strict=True)]}  # fmt: skip
    if len(ours) >= 2:
        mean, (lo, hi) = paired_t_interval(theirs, ours, level)
        out.update(seed_mean=round(mean, 2), seed_interval=[round(lo, 2), round(hi, 2)])
    return out


def _rows_of(source: str) -> list[dict[str, Any]]:
    """A page's rows (docs/benchmarks/PAGE.json), or a run's (a .jsonl results file)."""
    if source.endswith(".jsonl"):
        lines = Path(source).read_text().splitlines()
        return [row for line in lines if "error" not in (row := json.loads(line))]
    return json.loads((ROOT / "docs" / "benchmarks" / f"{source}.json").read_text())["rows"]


def run_setup(
    setup: Setup,
    repair: bool,
    save: str | None = None,
    train: bool = True,
    seed: int = 0,
    beside: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Watch the setup (doctor and AutoTrainer on the same run), then repair, and (``train``)
    train the repaired recipe in full: the broken setups and the healthy references of their
    groups, not the shipped recipes (no broken setup is measured against them). ``beside``: the
    rules of RATE_RULES and DOCTOR_RULES measured beside the doctor (None: all)."""
    import tempfile

    import torch

    from trainlab.diagnostics import findings
    from trainlab.doctor.doctor import doctor, watch
    from trainlab.engine import fit
    from trainlab.errors import TrainingDiverged

    torch.set_num_threads(1)
    recipe = setup_recipe(setup, seed)
    data = _dataset(recipe.data.name)
    t0, c0 = time.perf_counter(), time.process_time()
    box: dict[str, Any] = {}

    def on_check(run, row):
        if "at" not in box:
            box["at"] = AutoTrainerRules(_planned_checks(run, recipe))
        tally = run.tally
        row = {**row, "train_loss": float(tally.loss_sum) / max(1, tally.seen)}
        box["at"].check(run.step, row, *_gradient_facts(run.model))

    first = watch(recipe, dataset=data, val_fraction=VAL_FRACTION, on_check=on_check)
    watch_seconds = time.perf_counter() - t0
    run_steps = recipe.train.epochs * first.steps_per_epoch
    classes = len(data.classes)
    ours = {KIND_OF_CODE[c] for c in first.codes() if c in KIND_OF_CODE}
    found_at: dict[str, int] = {}
    for check in first.checks:
        part = first.report.until(int(check["step"]) + 1)
        codes = {f.code for f in findings(part, recipe=recipe, classes=classes)}
        for code in codes:
            kind = KIND_OF_CODE.get(code)
            if kind in ours and kind not in found_at:
                found_at[kind] = int(check["step"])
    with _rules(RULES_BEFORE):
        codes_before = {f.code for f in findings(first.report, recipe=recipe, classes=classes)}
    at = box.get("at")
    theirs = sorted({k for issue in (at.issues if at else []) for k in KINDS_OF_AUTOTRAINER[issue]})
    row: dict[str, Any] = {
        "name": setup.name, "group": setup.group, "half": half_of(setup),
        "must": sorted(setup.must), "may": sorted(setup.may), "severity": setup.severity,
        "codes": sorted(first.codes()), "ours": sorted(ours),
        "ours_rules_before": sorted({KIND_OF_CODE[c] for c in codes_before if c in KIND_OF_CODE}),
        "ours_at": {k: v / run_steps for k, v in found_at.items()},
        "autotrainer": sorted(at.issues) if at else [], "theirs": theirs,
        "theirs_at": (at.detected_at / run_steps) if at and at.detected_at is not None else None,
        "findings": [f.sentence() for f in first.findings],
        "watch_steps": first.steps, "run_steps": run_steps, "watch_seconds": watch_seconds,
    }  # fmt: skip
    if save:
        Path(save).mkdir(parents=True, exist_ok=True)
        with open(Path(save) / (setup.name.replace("/", "__") + ".pkl"), "wb") as f:
            pickle.dump({"report": first.report, "checks": first.checks, "row": row,
                         "classes": classes, "recipe": recipe.to_toml()}, f)  # fmt: skip
    row["cpu_seconds"] = time.process_time() - c0
    if not repair:
        return row
    t1 = time.perf_counter()
    result = doctor(recipe, None, repair=bool(first.problems), dataset=data,
                    val_fraction=VAL_FRACTION, first=first)  # fmt: skip
    row["verdict"] = result.verdict
    row["repairs"] = result.repairs
    row["rate_check"] = result.rate_check
    row["cost"] = result.cost
    row["doctor_seconds"] = time.perf_counter() - t1 + watch_seconds
    row["test_acc"] = None
    if train:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                final = fit(result.recipe, Path(tmp) / "run", progress=False, report=False,
                            dataset=data)  # fmt: skip
                row["test_acc"] = final.final.get("test_acc")
                row["test_acc_all"] = _accuracy_on_every_test_image(
                    Path(tmp) / "run", recipe, row["test_acc"]
                )
            except TrainingDiverged as exc:  # the repaired recipe failed in full: not repaired
                row["test_acc"], row["diverged"] = None, str(exc).split(";")[0]
            measured = [m for m in (*RATE_RULES, *DOCTOR_RULES) if beside is None or m in beside]
            for measure in measured:
                row[measure] = (
                    _with_rate_rule(result, data, tmp, row, measure)
                    if measure in RATE_RULES
                    else _with_doctor_rule(result, first, recipe, data, tmp, row, measure)
                )
            if setup.healthy and result.recipe.to_toml() != recipe.to_toml():
                # the bar of a group is its healthy variants as built, not as repaired
                built = fit(recipe, Path(tmp) / "built", progress=False, report=False,
                            dataset=data)  # fmt: skip
                row["test_acc_as_built"] = built.final.get("test_acc")
                row["test_acc_all_as_built"] = _accuracy_on_every_test_image(
                    Path(tmp) / "built", recipe, row["test_acc_as_built"]
                )
    row["seconds"] = time.perf_counter() - t0
    row["cpu_seconds"] = time.process_time() - c0
    return row


@contextlib.contextmanager
def _constants(module_name: str, constants: dict[str, Any]):
    """Some constants of a module set to other values, for the duration."""
    import importlib

    module = importlib.import_module(module_name)
    saved = {name: getattr(module, name) for name in constants}
    for name, value in constants.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def _rules(constants: dict[str, float]):
    """The detectors with some thresholds set to other values, for the duration."""
    return _constants("trainlab.diagnostics.findings", constants)


def _planned_checks(run, recipe) -> int:
    from trainlab.doctor.doctor import BUDGET_SHARE, CHECKS, MIN_EPOCHS

    per_epoch = len(run.loader)
    planned = max(1, round(max(1, round(recipe.train.epochs * BUDGET_SHARE)) * per_epoch))
    return planned // per_epoch if planned >= MIN_EPOCHS * per_epoch else CHECKS


def _one(
    args: tuple[Setup, bool, str | None, bool, int, tuple[str, ...] | None],
) -> dict[str, Any]:
    setup, repair, save, train, seed, beside = args
    try:
        return run_setup(setup, repair, save, train, seed, beside)
    except Exception as exc:  # a broken setup must not stop the corpus: it is reported
        import traceback

        return {"name": setup.name, "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()}  # fmt: skip


# -- scoring -----------------------------------------------------------------------------------
def score(rows: list[dict[str, Any]], detector: str) -> dict[str, dict[str, float]]:
    """Per kind and overall: recall over the setups that must show the kind, precision over the
    setups where the detector named it (true when the setup must or may show it), and steps to
    detection as a share of the run (median over the true detections)."""
    broken = [r for r in rows if r["must"]]
    out: dict[str, dict[str, float]] = {}
    at_key = "ours_at" if detector == "ours" else "theirs_at"
    for kind in (*KINDS, "overall"):
        must = [r for r in broken if kind in r["must"] or (kind == "overall")]
        named = [(r, k) for r in rows for k in r[detector] if kind in (k, "overall")]
        if kind == "overall":
            hits = sum(1 for r in must if set(r["must"]) & set(r[detector]))
        else:
            hits = sum(1 for r in must if kind in r[detector])
        true = sum(1 for r, k in named if k in r["must"] or k in r["may"])
        shares = []
        for r in must:
            for k in r["must"]:
                if k in r[detector] and (kind in (k, "overall")):
                    at = r[at_key].get(k) if detector == "ours" else r[at_key]
                    if at is not None:
                        shares.append(at)
        out[kind] = {
            "setups": len(must),
            "recall": hits / len(must) if must else math.nan,
            "named": len(named),
            "precision": true / len(named) if named else math.nan,
            "steps_to_detection": _median(shares),
        }
    healthy = [r for r in rows if not r["must"]]
    # a healthy setup named with a kind it may show is no false positive (OVER_FIT_AS_BUILT)
    out["healthy"] = {"setups": len(healthy), "false_positives":
                      sum(1 for r in healthy if set(r[detector]) - set(r["may"]))}  # fmt: skip
    return out


def _median(values: list[float]) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def best_healthy(rows: list[dict[str, Any]], measure: str, as_built: bool = True
                 ) -> dict[str, float]:  # fmt: skip
    """Per group, the best test accuracy of its healthy variants by ``measure``: as built (the
    recipe the variant is), or (not ``as_built``) as the doctor repaired it where it named a
    problem, as the bar was until seed 16."""
    best: dict[str, float] = {}
    for r in rows:
        acc = r.get(f"{measure}_as_built", r.get(measure)) if as_built else r.get(measure)
        if not r["must"] and acc is not None:
            best[r["group"]] = max(best.get(r["group"], 0.0), acc)
    return best


def repair_rate(
    rows: list[dict[str, Any]], healthy_acc: dict[str, float], measure: str = "test_acc_all"
) -> dict[str, Any]:
    """A detected broken setup is repaired when its repaired recipe, trained in full, comes
    within REPAIR_MARGIN of the best healthy variant of its group, both by ``measure``; the
    verdict is kept in the row under ``repaired`` (``repaired_<measure>`` for the others)."""
    per_kind: dict[str, list[bool]] = {}
    suffix = "" if measure == "test_acc_all" else f"_{measure}"
    for r in rows:
        if not r["must"] or not (set(r["must"]) & set(r["ours"])) or "test_acc" not in r:
            continue
        best, acc = healthy_acc.get(r["group"]), r.get(ACCURACY_OF.get(measure, measure))
        ok = best is not None and acc is not None and acc >= best - REPAIR_MARGIN
        r["repaired" + suffix] = ok
        r["best_healthy" + suffix] = best
        for kind in (*r["must"], "overall"):
            per_kind.setdefault(kind, []).append(ok)
    return {k: (sum(v), len(v)) for k, v in per_kind.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=("tuning", "held-out", "all"))
    parser.add_argument("--repair", action="store_true", help="repair and train in full")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="setup names (or prefixes) to run")
    parser.add_argument("--save", help="folder for each watched run's report (pickles)")
    parser.add_argument("--results", help="JSON lines of the rows (default: in --save or /tmp)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="train.seed of every setup: another seed gives fresh runs of the "
        "same corpus (the thresholds were tuned and judged at seed 0)",
    )
    parser.add_argument(
        "--page",
        default="doctor",
        help="docs/benchmarks/PAGE.md and PAGE.json (held-out or all halves)",
    )
    parser.add_argument(
        "--gain",
        nargs="+",
        metavar="PAGE",
        help="only print what each rule measured beside reads (rule_verdict) over these runs: "
        "pages, or .jsonl results files, one per seed",
    )
    parser.add_argument(
        "--beside",
        nargs="+",
        metavar="MEASURE",
        help="measure only these rules beside the doctor (of RATE_RULES and DOCTOR_RULES; "
        "default all): a candidate's runs at less compute; no page is written",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.beside or ()) - set(RATE_RULES) - set(DOCTOR_RULES))
    if unknown:
        parser.error(f"--beside: {unknown[0]!r} is not a rule measured beside; expected one of "
                     f"{', '.join(sorted({*RATE_RULES, *DOCTOR_RULES}))}")  # fmt: skip
    if args.beside and args.page != "doctor":
        parser.error("--beside: a page reports every rule measured beside; drop --page")
    if args.gain:
        seeds = [_rows_of(source) for source in args.gain]
        # every rule the runs measured beside the doctor (and said where it differed)
        measures = sorted({k.removesuffix("_differs") for rows in seeds for r in rows for k in r
                           if k.endswith("_differs")})  # fmt: skip
        print(json.dumps({m: rule_verdict(seeds, m) for m in measures}, indent=1))
        return 0
    if args.half is None:
        parser.error("the following arguments are required: --half (or --gain)")
    setups = corpus()
    chosen = [s for s in setups if args.half == "all" or half_of(s) == args.half]
    if args.repair:  # the healthy variants of the groups are the references of repair
        groups = {s.group for s in chosen if s.must}
        chosen += [s for s in setups if s.healthy and s.group in groups and s not in chosen]
    if args.only:
        chosen = [s for s in chosen if any(s.name.startswith(o) for o in args.only)]
    results = Path(args.results or f"/tmp/bench_doctor_{args.half}_seed{args.seed}.jsonl")
    done = {}
    if results.exists():
        for line in results.read_text().splitlines():
            row = json.loads(line)
            if "error" not in row and (not args.repair or "test_acc" in row):
                done[row["name"]] = row
    todo = [s for s in chosen if s.name not in done]
    print(f"{len(chosen)} setups ({len(todo)} to run) on {args.jobs} process(es)", flush=True)
    t0 = time.perf_counter()
    with_broken = {s.group for s in setups if s.must}
    beside = tuple(args.beside) if args.beside else None
    jobs = [(s, args.repair, args.save, s.group in with_broken, args.seed, beside) for s in todo]
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else _Serial() as pool:
        for row in pool.map(_one, jobs):
            done[row["name"]] = row
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            brief = row.get("error") or (f"ours {row['ours']} theirs {row['theirs']} "
                                         f"({row['watch_seconds']:.1f} s)")  # fmt: skip
            print(f"{row['name']:38s} {brief}", flush=True)
    wall = time.perf_counter() - t0
    rows = [done[s.name] for s in chosen if s.name in done and "error" not in done[s.name]]
    failed = [s for s in chosen if s.name in done and "error" in done[s.name]]
    rows = labelled(rows)
    scored = [r for r in rows if args.half in ("all", r["half"])]
    measures = [
        m
        for m in REPAIR_MEASURES  # older rows: 2,000 only, or no bar as built
        if any(ACCURACY_OF.get(m, m) in r for r in rows)
        and (m not in REPAIRED_BAR or any("test_acc_all_as_built" in r for r in rows))
    ]

    def repaired_by(scored):
        return {
            m: repair_rate(scored, best_healthy(rows, healthy_measure(m),
                                                as_built=m not in REPAIRED_BAR), m)
            for m in measures
        } if args.repair else {}  # fmt: skip

    repaired = repaired_by(scored)
    before = {}
    for after in RELABELLINGS:
        scored_before = labelled(scored, undo=after)
        before[after] = (scored_before, repaired_by(scored_before))
    report(scored, args, wall, failed)
    if args.half in ("held-out", "all") and not args.only and not args.beside:
        write_doc(scored, rows, repaired, wall, args, before)
    return 0


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items: Iterable[Any]):
        return map(fn, items)


def report(rows: list[dict[str, Any]], args: Any, wall: float, failed: list[Setup]) -> None:
    ours, theirs = score(rows, "ours"), score(rows, "theirs")
    print(f"\n{len(rows)} setups, {wall:.0f} s; failed: {[s.name for s in failed]}")
    print(f"{'kind':18s} {'n':>3s} | {'recall':>6s} {'prec':>6s} {'steps':>6s} | "
          f"{'recall':>6s} {'prec':>6s} {'steps':>6s}")  # fmt: skip
    for kind in (*KINDS, "overall"):
        a, b = ours[kind], theirs[kind]
        print(f"{kind:18s} {a['setups']:3d} | {a['recall']:6.2f} {a['precision']:6.2f} "
              f"{a['steps_to_detection']:6.2f} | {b['recall']:6.2f} {b['precision']:6.2f} "
              f"{b['steps_to_detection']:6.2f}")  # fmt: skip
    print(f"healthy: {ours['healthy']}, autotrainer {theirs['healthy']}")
    for r in rows:
        missed = set(r["must"]) - set(r["ours"])
        false = set(r["ours"]) - set(r["must"]) - set(r["may"])
        if missed or false:
            print(f"  {r['name']:36s} missed {sorted(missed)} false {sorted(false)}")


def _cell(x: float, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def thresholds_table() -> list[str]:
    """Every threshold the doctor's detectors use, as committed (trainlab.diagnostics.findings)."""
    import importlib

    rules = importlib.import_module("trainlab.diagnostics.findings")
    names = [n for n in dir(rules) if n.isupper() and isinstance(getattr(rules, n), int | float)]
    return [f"`{n} = {getattr(rules, n)!r}`" for n in sorted(names)]


def advise_timing(rounds: int = 5) -> tuple[float, float, float]:
    """Wall seconds of ``trainlab advise`` on every shipped recipe (median and largest over
    recipes of the median of ``rounds`` runs), and of a bare ``python -c pass`` beside it."""
    import statistics
    import subprocess

    def seconds(command: list[str]) -> float:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            subprocess.run(command, cwd=ROOT, capture_output=True, check=False)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    cli = [str(Path(sys.executable).with_name("trainlab"))]  # the console script, as users run it
    each = [seconds([*cli, "advise", str(p)]) for p in sorted((ROOT / "recipes").glob("*.toml"))]
    return statistics.median(each), max(each), seconds([sys.executable, "-c", "pass"])


def write_doc(scored, rows, repaired, wall, args, before=None) -> None:
    """docs/benchmarks/doctor.md and doctor.json: both detectors side by side, per kind; with
    ``before`` (rows and repairs under the labels before a relabelling), those scores beside."""
    import torch

    from trainlab.bench import cpu_model
    from trainlab.fileio import write_json, write_text

    ours, theirs = score(scored, "ours"), score(scored, "theirs")
    broken = [r for r in scored if r["must"]]
    lines = [
        "| problem kind | setups | doctor recall | doctor precision | doctor steps to detection "
        "| AutoTrainer recall | AutoTrainer precision | AutoTrainer steps to detection "
        "| repaired (within 1 point) | doctor + repair (runs, median) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    primary = next(iter(repaired), "test_acc")
    for kind in (*KINDS, "overall"):
        a, b = ours[kind], theirs[kind]
        done, total = repaired[primary].get(kind, (0, 0)) if repaired else (0, 0)
        rate = f"{done}/{total}" if total else "-"
        cost = _median([r["cost"] for r in broken if "cost" in r
                        and (kind == "overall" or kind in r["must"])])  # fmt: skip
        lines.append(
            f"| {kind} | {a['setups']} | {_cell(a['recall'])} | {_cell(a['precision'])} | "
            f"{_cell(a['steps_to_detection'])} | {_cell(b['recall'])} | {_cell(b['precision'])} "
            f"| {_cell(b['steps_to_detection'])} | {rate} | {_cell(cost)} |"
        )
    healthy = ours["healthy"]
    healthy_cost = _median([r["cost"] for r in scored if not r["must"] and "cost" in r])
    lines.append(
        f"| healthy (false positives) | {healthy['setups']} | {healthy['false_positives']} | | "
        f"| {theirs['healthy']['false_positives']} | | | | {_cell(healthy_cost)} |"
    )
    costs = sorted(r["cost"] for r in scored if "cost" in r)
    broken_costs = sorted(r["cost"] for r in broken if "cost" in r)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in rows)
    misses = [
        f"`{r['name']}` missed {sorted(set(r['must']) - set(r['ours']))}"
        for r in broken
        if set(r["must"]) - set(r["ours"])
    ]
    outside = [(r, set(r["ours"]) - set(r["must"]) - set(r["may"])) for r in scored]
    falses = [f"`{r['name']}` named {sorted(extra)}" for r, extra in outside if extra]
    suffix = "" if primary == "test_acc_all" else "_test_acc"
    unrepaired = [
        f"`{r['name']}` ("
        + (f"{100 * r[primary]:.1f}%" if r.get(primary) is not None else "diverged in full")
        + f" against {100 * r['best_healthy' + suffix]:.1f}%)"
        for r in broken
        if r.get("repaired" + suffix) is False and r.get("best_healthy" + suffix)
    ]
    wall_text = (
        f"{wall / 60:.1f} min of wall time for the setups this invocation ran (a run continues "
        "from `--results`: finished setups are not run again)"
        if wall > 1
        else "wall time: see the remarks below (this invocation only wrote the page)"
    )
    targets = _targets(ours, theirs, repaired, broken_costs)
    advise_median, advise_max, python_alone = advise_timing()
    targets.append(
        f"| `trainlab advise` under 1 s | median {advise_median:.2f} s, largest {advise_max:.2f} "
        f"s over the {len(list((ROOT / 'recipes').glob('*.toml')))} shipped recipes (Python "
        f"alone: {python_alone:.2f} s) | {'yes' if advise_max < 1 else '**no**'} |"
    )
    command = (
        COMMAND.replace("--half held-out", f"--half {args.half}")
        + f" --jobs {args.jobs}"
        + (f" --seed {args.seed} --page {args.page}" if args.seed or args.page != "doctor" else "")
    )
    before_text = (_before_section(before, targets) + _as_built_section(rows)
                   + _rules_before_section(scored))  # fmt: skip
    kinds = len({k for s in corpus() for k in s.must})
    which = "the held-out half's numbers" if args.half == "held-out" else "both halves' numbers"
    if args.seed:
        which += f", at train.seed = {args.seed}: fresh runs, never seen when the rules were set"
    text = f"""## The doctor on a corpus of broken trainings, beside AutoTrainer (issue 24{
        f"; seed {args.seed}" if args.seed else ""
    })

Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, one thread per
process, {args.jobs} processes. Date: {datetime.date.today()}. Command: `{command}`.
Wall times depend on what else the machine ran (the remarks say); CPU times are the work
itself.

**Corpus** (`benchmarks/bench_doctor.py`, `corpus()`): {len(corpus())} setups, of which
{sum(1 for s in corpus() if s.must)} broken ({kinds} problem kinds, each at 2-4 severities in up to
six groups of data set and model: Fashion-MNIST, CIFAR-10 and synthetic bars; MLPs, plain and
batch-norm CNNs, a ResNet) and {sum(1 for s in corpus() if not s.must)} healthy (the groups'
bases, tuned variants of them, and the four CPU-trainable shipped recipes cut down). Each
broken setup is labelled by how it was built with the kinds it must show, and the kinds it may
show as consequences (a network whose units died also stalls). The corpus was split in halves
by `SPLIT_SEED = {SPLIT_SEED}` (within each kind, alternately by a hash of the name) before any
threshold was tuned; the thresholds below were tuned on the tuning half only and committed
before this held-out run. **These are {which}**: {len(broken)} broken and
{ours["healthy"]["setups"]} healthy setups.

Each setup: the doctor watches a third of the run's epochs with a 20% validation split;
AutoTrainer's rules (implemented in the benchmark from the paper and its public monitor code:
gradient ratio first/last layer < 1e-3 with the first below 1e-4 vanishing, > 70 or a NaN
exploding; >= 70% zero gradients dying ReLU; accuracy swings >= 0.03 on >= 20% of epochs
unstable; best accuracy < 0.7 or gains < 0.01 not converging; the gradient rules only while not
converging; checked once per epoch, or per tenth of a watched run shorter than five epochs)
watch the same run. A doctor's code counts for one kind ({
        ", ".join(f"{k}: {v}" for k, v in KIND_OF_CODE.items())
    }); AutoTrainer's explode counts for diverging and exploding, vanish for
vanishing, relu for dead units, unstable for oscillating, not converging for stalled. Recall:
share of the setups that must show a kind where the detector named it; precision: share of the
kinds a detector named that the setup must or may show; steps to detection: median share of
the run (its full length) watched before the first check at which the detector named it. With
--repair, each detected setup is repaired and its repaired recipe trained in full: repaired
when its test accuracy comes within 1 point of the best healthy variant of its group (as
built), both on {REPAIR_MEASURES[primary]}. The targets below give the others measured:{
        "".join(f" {REPAIR_MEASURES[m]};" for m in list(repaired)[1:]) or " none;"
    } 2,000 images, the measure of the pages before seed 2, leave a standard error of about 0.8
points, as large as the margin; the first three rates alone are the rate check before its range
could grow (seed 3 on), the repaired recipe at that rule's choice trained in full where it
differs.

{chr(10).join(lines)}

Compute of doctor plus repair, in runs of the recipe (steps): median {_cell(_median(costs))},
broken setups median {_cell(_median(broken_costs))}, largest {
        _cell(max(broken_costs) if broken_costs else math.nan)
    }.
This run: {cpu / 60:.1f} min of CPU time over {len(rows)} setups (held-out, and the healthy
references of their groups; one thread each, so about half that in wall time on two idle cores),
{wall_text}. Rows: docs/benchmarks/{args.page}.json.

Misses: {"; ".join(misses) or "none"}. Named outside the labels: {"; ".join(falses) or "none"}.
Not repaired: {"; ".join(unrepaired) or "none"}.

| target | measured | met |
|---|---|---|
{chr(10).join(targets)}

{before_text}Thresholds (trainlab.diagnostics.findings, committed before this run): {
        ", ".join(thresholds_table())
    }.
"""
    write_text(ROOT / "docs" / "benchmarks" / f"{args.page}.md", text)
    keep = ("name", "group", "half", "must", "may", "severity", "codes", "ours", "ours_at",
            "autotrainer", "theirs", "theirs_at", "verdict", "cost", "test_acc", "best_healthy",
            "repaired", "test_acc_all", "repaired_test_acc", "best_healthy_test_acc",
            "test_acc_as_built", "test_acc_all_as_built", "ours_rules_before",
            *(f"{m}{part}" for m in RATE_RULES for part in ("", "_differs")),
            *(f"{m}{part}" for m in ("test_acc_all_best_of", *DOCTOR_RULES, *ADOPTED)
              for part in ("", "_repairs", "_cost", "_differs")),
            *(f"repaired_{m}" for m in ("test_acc_all_best_of", *DOCTOR_RULES, *ADOPTED)),
            "watch_steps", "run_steps", "cpu_seconds", "rate_check", "diverged")  # fmt: skip
    slim = [
        {**{k: r[k] for k in keep if k in r},
         "repairs": [{k: x[k] for k in ("problem", "change", "kept", "before", "after")}
                     for x in r.get("repairs", [])]}
        for r in rows
    ]  # fmt: skip
    write_json(ROOT / "docs" / "benchmarks" / f"{args.page}.json", {"rows": slim})
    print(text)


# Why each relabelling was made, by the last seed seen before it (Setup.relabelled_after).
RELABELLINGS = {
    9: 'The far too high rate with batch norm was built to swing and labelled "oscillating"; '
    "it does not swing by AutoTrainer's rule, gated or not (benchmarks/probe_oscillation.py), "
    'and by how it is built it now must show "diverging", as the corpus\'s other rates 10 '
    "times their base and more do.",
    19: "The SELU variant of the deep synthetic MLP over-fits as built: the doctor's repair for "
    "over-fitting beat it on paired seeds 17 and 18, and pad-crop alone does by +7.3 to +8.3 "
    "points at seeds 40-47 (OVER_FIT_AS_BUILT), so by the label rule written after seed 19 it "
    'may show "overfitting", and naming it is no false positive; it stays healthy and in its '
    "group's bar. (The tanh variant met the rule too, but dropout alone costs it points: its "
    "relabelling was withdrawn.)",
    22: "The tanh variant of the deep synthetic MLP over-fits as built: with over-fitting's "
    "regularisers tried as alternatives (adopted by the rule written before seed 23), the "
    "doctor keeps pad-crop for it, and pad-crop alone at the built rate gains +11.9 to +13.0 "
    "points at seeds 48-55 (OVER_FIT_AS_BUILT), so by the same label rule and probe rule it "
    'may show "overfitting"; it stays healthy and in its group\'s bar.',
}


def _before_section(before, targets_now: list[str]) -> str:
    """Per relabelling, the targets scored on the same runs with the labels before it, beside
    the labels now; empty where no setup of these rows was relabelled."""
    if not before:
        return ""
    out = ""
    for after, (rows, repaired) in before.items():
        names = {r["name"] for r in rows}
        changed = [s for s in corpus() if s.relabelled_after == after and s.name in names]
        if not changed:
            continue
        broken = sorted(r["cost"] for r in rows if r["must"] and "cost" in r)
        then = _targets(score(rows, "ours"), score(rows, "theirs"), repaired, broken)
        table = [
            "| target | labels now | labels before | met now, before |",
            "|---|---|---|---|",
        ]
        for now, old in zip(targets_now, then, strict=False):
            what, got_now, met_now = now.strip("| ").split(" | ")
            _, got_then, met_then = old.strip("| ").split(" | ")
            table.append(
                f"| {what} | {got_now} | {got_then} | {met_now.strip()}, {met_then.strip()} |"
            )
        listed = ", ".join(f"`{s.name}`" for s in changed)
        out += f"""**The same runs under the labels before the relabelling after seed {after}.**
{RELABELLINGS[after]} The labels changed after runs had been seen, so both are scored here; the
split did not change. Relabelled here: {listed}.

{chr(10).join(table)}

"""
    return out


def _as_built_section(rows: list[dict[str, Any]]) -> str:
    """The healthy setups that may over-fit, as built and as the doctor repaired them, where
    both were trained at this seed: the confirmation OVER_FIT_AS_BUILT asks of fresh seeds."""
    lines = []
    for r in rows:
        if r["name"] not in OVER_FIT_AS_BUILT:
            continue
        if r.get("test_acc_all_as_built") is None or r.get("test_acc_all") is None:
            lines.append(f"- `{r['name']}`: named {sorted(r['ours']) or 'nothing'}; "
                         "not changed by the doctor, so trained as built only")  # fmt: skip
            continue
        gain = 100 * (r["test_acc_all"] - r["test_acc_all_as_built"])
        kept = [f"{k}={v}" for x in r.get("repairs", []) if x.get("kept", True)
                for k, v in x["change"].items()]  # fmt: skip
        checked = r.get("rate_check") or {}
        if checked.get("rates") and checked["chosen"] != checked["rates"][0]["lr"]:
            kept.append(f"optim.lr={checked['chosen']} by the rate check")
        changes = ", ".join(kept)
        lines.append(f"- `{r['name']}`: named {sorted(r['ours'])}; as built "
                     f"{100 * r['test_acc_all_as_built']:.1f}%, repaired ({changes}) "
                     f"{100 * r['test_acc_all']:.1f}%: {gain:+.1f} points")  # fmt: skip
    if not lines:
        return ""
    return "Healthy setups that may over-fit, at this seed:\n\n" + "\n".join(lines) + "\n\n"


def _rules_before_section(rows: list[dict[str, Any]]) -> str:
    """Detection on the same watched runs under RULES_BEFORE, beside the rules now; empty for
    rows measured before both were recorded."""
    if not rows or not all("ours_rules_before" in r for r in rows):
        return ""
    now = score(rows, "ours")
    then = score([{**r, "ours": r["ours_rules_before"]} for r in rows], "ours")
    table = ["| kind | setups | recall now | recall before | precision now | precision before |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for kind in ("oscillating", "overfitting", "overall"):
        a, b = now[kind], then[kind]
        table.append(f"| {kind} | {a['setups']} | {_cell(a['recall'])} | {_cell(b['recall'])} | "
                     f"{_cell(a['precision'])} | {_cell(b['precision'])} |")  # fmt: skip
    table.append(
        f"| healthy (false positives) | {now['healthy']['setups']} | "
        f"{now['healthy']['false_positives']} | {then['healthy']['false_positives']} | | |"
    )
    changed = [
        f"`{r['name']}` ({', '.join(sorted(r['ours']))} now; "
        f"{', '.join(sorted(r['ours_rules_before'])) or 'nothing'} before)"
        for r in rows
        if set(r["ours"]) != set(r["ours_rules_before"])
    ]
    before = ", ".join(f"`{k} = {v!r}`" for k, v in RULES_BEFORE.items())
    return f"""**The same watched runs under the detectors' rules before seed 17** ({before}).
After seed 16 the oscillation rule came to need two separate rises (a rise and its recovery
is one spike), and the over-fitting rule to judge the mean of the last third of evaluations
at 2 noise standard errors, with the training loss fallen 15%; both were designed on the
tuning half (seeds 30 and 31), where the old over-fitting rule found 1 and 3 of its 4
over-fitting setups. Detection only: the repairs followed the rules now.

{chr(10).join(table)}

Setups whose kinds differ: {"; ".join(changed) or "none"}.

"""


def _targets(ours, theirs, repaired, costs) -> list[str]:
    o, t = ours["overall"], theirs["overall"]
    fp_o, fp_t = ours["healthy"]["false_positives"], theirs["healthy"]["false_positives"]
    primary = next(iter(repaired.values()), {})
    done, total = primary.get("overall", (0, 0))
    rate = done / total if total else math.nan
    others = [
        f"; on {REPAIR_MEASURES[m]}: {r['overall'][0]}/{r['overall'][1]}"
        for m, r in list(repaired.items())[1:]
        if "overall" in r
    ]
    over = sum(1 for c in costs if c > 3.0)
    n = ours["healthy"]["setups"]
    better = (
        o["recall"] >= t["recall"] and fp_o <= fp_t and (o["recall"] > t["recall"] or fp_o < fp_t)
    )
    rows = [
        ("recall >= 0.95 (held-out)", f"{o['recall']:.3f}", o["recall"] >= 0.95),
        ("no false positive on healthy", f"{fp_o} of {n}", fp_o == 0),
        ("at least as good as AutoTrainer on both, better on one",
         f"recall {o['recall']:.3f} vs {t['recall']:.3f}, false positives {fp_o} vs {fp_t}",
         better),
        (">= 95% of detected problems repaired",
         f"{done}/{total} = {_cell(rate, 3)}{''.join(others)}", rate >= 0.95),
        ("doctor plus repair <= 3 runs", f"{over} setups above 3", over == 0),
    ]  # fmt: skip
    return [f"| {what} | {got} | {'yes' if ok else '**no**'} |" for what, got, ok in rows]


if __name__ == "__main__":
    raise SystemExit(main())
