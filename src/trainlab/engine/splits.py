"""A recipe's data: the training split (a seeded subset, less a validation hold-out) and the
test split, as uint8 tensors on the CPU."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trainlab.data import ImageDataset, derive_seed, load_dataset, split_validation
from trainlab.errors import RecipeError
from trainlab.recipe import Recipe

# Named random streams of the data (the rest are the step's, in engine.step).
STREAM_SUBSET, STREAM_TEST = 1, 6


@dataclass
class Splits:
    """The three splits as uint8 (N, C, H, W) tensors on the CPU, labels int64."""

    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    classes: list[str]
    notes: list[str] = field(default_factory=list)  # the data set's, e.g. a held-out test split

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])  # type: ignore[return-value]


def prepare_splits(recipe: Recipe, dataset: ImageDataset | None = None) -> Splits:
    cfg, seed = recipe.data, recipe.train.seed
    ds = dataset or load_dataset(cfg.name, cfg.data_dir or None)
    x, y = ds.train_images, ds.train_labels
    if cfg.subset:
        if cfg.subset > len(x):
            raise RecipeError(
                f"data.subset = {cfg.subset}: the training set has only {len(x)} images"
            )
        g = torch.Generator().manual_seed(derive_seed(seed, STREAM_SUBSET))
        keep = torch.randperm(len(x), generator=g)[: cfg.subset].sort().values
        x, y = x[keep], y[keep]
    val = None
    if cfg.val_fraction > 0:
        x, y, vx, vy = split_validation(x, y, cfg.val_fraction, seed)
        val = (vx, vy)
    tx, ty = held_out_split(ds, cfg.test_subset)
    return Splits((x, y), (tx, ty), val, list(ds.classes), list(ds.notes))


def held_out_split(ds: ImageDataset, test_subset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images, or ``test_subset`` of them drawn by a fixed seed: the same images for
    every run and seed, and never a prefix (class-sorted sets would give one class)."""
    tx, ty = ds.test_images, ds.test_labels
    if test_subset and test_subset < len(tx):
        g = torch.Generator().manual_seed(derive_seed(0, STREAM_TEST))
        keep = torch.randperm(len(tx), generator=g)[:test_subset].sort().values
        tx, ty = tx[keep], ty[keep]
    return tx, ty
