"""What JPEG re-encoding costs in accuracy: Fashion-MNIST as released, and re-encoded as JPEG.

The CIFAR-10 set in ../shared/data was re-encoded by a public mirror as JPEG at quality 75
with 4:2:0 chroma subsampling, and on it every network the GPU sweep tried stopped at
89.7-91.1% (docs/benchmarks/gpu_tune.md), where the original data set gives 94% and more. The
original CIFAR-10 is not on this machine, so this measures the same kind of loss where both
versions are at hand: recipes/fashion-mnist-fast.toml trained on Fashion-MNIST as released and
on the same images after a JPEG round trip at quality 75 (Pillow, grey, so no chroma
subsampling: it bounds the luminance quantization's share alone), 3 seeds each.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/jpeg_ceiling.py   (about 10 minutes here)
Writes docs/benchmarks/jpeg_ceiling.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainlab.bench import cpu_model, time_to_accuracy  # noqa: E402
from trainlab.data import load_dataset  # noqa: E402
from trainlab.fileio import write_text  # noqa: E402
from trainlab.recipe import load_recipe  # noqa: E402

QUALITY = 75
RECIPE = ROOT / "recipes" / "fashion-mnist-fast.toml"


def jpeg_round_trip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """(N, 1, H, W) uint8 grey images encoded as JPEG at ``quality`` and decoded again."""
    out = np.empty_like(images.numpy())
    for i, image in enumerate(images.numpy()):
        buffer = io.BytesIO()
        Image.fromarray(image[0], mode="L").save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i, 0] = np.asarray(decoded)
    return torch.from_numpy(out)


def main() -> int:
    t0 = time.perf_counter()
    recipe = load_recipe(RECIPE)
    original = load_dataset(recipe.data.name)
    jpeg = dataclasses.replace(
        original,
        name=f"{original.name} (JPEG q{QUALITY})",
        train_images=jpeg_round_trip(original.train_images, QUALITY),
        test_images=jpeg_round_trip(original.test_images, QUALITY),
    )
    diff = (jpeg.test_images.float() - original.test_images.float()).abs()
    psnr = 10 * torch.log10(255.0**2 / diff.pow(2).mean())
    rows = []
    for label, dataset in (("as released", original), (f"JPEG quality {QUALITY}", jpeg)):
        stats = time_to_accuracy(recipe, 93.0, 3, dataset=dataset)
        acc = stats["accuracy"]
        seeds = ", ".join(f"{100 * r['test_acc']:.2f}" for r in stats["runs"])
        rows.append(f"| {label} | {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} | {seeds} |")
        print(rows[-1], flush=True)
    lines = [
        "## What JPEG re-encoding costs: Fashion-MNIST as released and after a JPEG round trip",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}. Date: "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Command: "
        "`PYTHONPATH=src .venv/bin/python benchmarks/jpeg_ceiling.py`.",
        "",
        f"`recipes/{RECIPE.name}`, seeds 0-2, on both versions of the data set; the JPEG "
        f"version is every image (train and test) encoded by Pillow at quality {QUALITY}, grey, "
        f"and decoded again (test-set PSNR against the original: {psnr:.1f} dB; mean absolute "
        f"change {diff.mean():.2f} grey levels).",
        "",
        "| data | test accuracy (%) | per seed |",
        "|---|---:|---|",
        *rows,
        "",
        f"Whole benchmark: {time.perf_counter() - t0:.0f} s.",
    ]
    write_text(ROOT / "docs" / "benchmarks" / "jpeg_ceiling.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
