"""A figure of real images next to several augmented versions of each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trainlab.augment._base import check_images
from trainlab.fileio import write_with


def plot_augment(
    images: Tensor,
    path: str | os.PathLike[str],
    pipeline: Any,
    generator: torch.Generator,
    n_images: int = 8,
    n_versions: int = 6,
) -> Path:
    """Save a grid: one row per image, the original then ``n_versions`` augmented versions.

    ``pipeline`` is any ``transform(x, generator)``; all versions come from one call on the
    batch repeated ``n_versions`` times, each copy with its own random parameters. The file
    format follows the suffix of ``path`` (png, pdf, svg); it is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    check_images(images, "images")
    if n_images < 1 or n_versions < 1:
        raise ValueError(f"n_images and n_versions must be >= 1, got {n_images}, {n_versions}")
    originals = images[:n_images]
    n = originals.shape[0]
    augmented = pipeline(originals.repeat(n_versions, 1, 1, 1), generator)
    augmented = augmented.reshape(n_versions, n, *augmented.shape[1:])

    fig, axes = plt.subplots(
        n, n_versions + 1, figsize=(1.3 * (n_versions + 1), 1.3 * n), squeeze=False
    )
    for i in range(n):
        row = [originals[i]] + [augmented[v, i] for v in range(n_versions)]
        for j, img in enumerate(row):
            ax = axes[i][j]
            ax.imshow(_displayable(img), cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("original", fontsize=8)
    for j in range(1, n_versions + 1):
        axes[0][j].set_title(f"aug {j}", fontsize=8)
    fig.tight_layout()
    target = Path(path)
    fmt = target.suffix.lstrip(".") or "png"
    try:
        write_with(target, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120))
    finally:
        plt.close(fig)
    return target


def _displayable(img: Tensor) -> Any:
    x = img.detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float().clamp(0, 1)
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()
