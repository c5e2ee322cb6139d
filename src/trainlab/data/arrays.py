"""A data set stored as verified uint8 arrays: what ``trainlab data get`` leaves behind.

One folder per data set (``<data home>/cifar10/``) holds four ``.npy`` files and a manifest::

    train_images.npy   (N, H, W, C) uint8, the layout the published checksums are taken in
    train_labels.npy   (N,) uint8
    test_images.npy    (M, H, W, C) uint8
    test_labels.npy    (M,) uint8
    manifest.json      {"name", "classes", "source", "sha256": {array: hex digest}, ...}

The folder is written whole under a temporary name and renamed into place, so a reader never
sees half a data set. Loading checks every array's sha256 against the manifest and, where the
data set has published checksums, against those too (hashing 184 MB takes about 0.1 s with the
CPU's SHA instructions, so every load is verified, not only the first).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import tokenize
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.errors import DataError, summary

ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels")
MANIFEST = "manifest.json"


def sha256_of(array: np.ndarray) -> str:
    """The sha256 of an array's raw bytes in C order: how the data issue states its checksums."""
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def write_arrays(
    folder: str | os.PathLike[str],
    arrays: dict[str, np.ndarray],
    *,
    name: str,
    classes: list[str],
    source: str,
    expected: dict[str, str] | None = None,
) -> Path:
    """Verify ``arrays`` against ``expected`` and write them as ``folder``, atomically.

    Images are (N, H, W, C) uint8 and labels (N,) integers below ``len(classes)``, as the
    readers that produce them have checked; labels are stored as uint8. The folder is assembled
    as a hidden sibling and renamed into place; an existing folder is replaced only once the new
    one is complete.
    """
    folder = Path(folder)
    arrays = {key: np.ascontiguousarray(arrays[key], dtype=np.uint8) for key in ARRAY_NAMES}
    digests = {key: sha256_of(arrays[key]) for key in ARRAY_NAMES}
    for key, want in (expected or {}).items():
        if digests[key] != want:
            raise DataError(
                f"{name} from {source}: {key} has sha256 {digests[key][:16]}..., expected "
                f"{want[:16]}... (a damaged or different copy)"
            )
    manifest = {
        "name": name,
        "classes": list(classes),
        "source": source,
        "sha256": digests,
        "shapes": {key: list(arrays[key].shape) for key in ARRAY_NAMES},
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for key in ARRAY_NAMES:
            np.save(staging / f"{key}.npy", arrays[key], allow_pickle=False)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        if folder.exists():  # moved aside, so the name is never empty for long, then removed
            os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def is_array_folder(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise DataError(f"cannot read {path}: {summary(exc)}") from exc
    if not isinstance(manifest, dict) or not {"classes", "sha256", "source"} <= set(manifest):
        raise DataError(f"{path} is not a trainlab data manifest (classes, sha256, source)")
    classes, digests = manifest["classes"], manifest["sha256"]
    if not (
        isinstance(classes, list)
        and all(isinstance(c, str) for c in classes)
        and isinstance(digests, dict)
        and all(isinstance(d, str) for d in digests.values())
        and isinstance(manifest["source"], str)
    ):
        raise DataError(
            f"{path}: expected classes as a list of names, sha256 as an object of hex digests "
            "and source as text"
        )
    return manifest


def _load_npy(path: Path) -> np.ndarray:
    """One ``.npy`` file, its header checked against the file's length before any allocation."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise DataError(f"{path}: unsupported .npy format version {version}")
            need = math.prod(shape) * dtype.itemsize
            have = os.fstat(handle.fileno()).st_size - handle.tell()
            if dtype.hasobject or need != have:
                raise DataError(
                    f"{path}: its header describes {dtype} {tuple(shape)} ({need} bytes) but "
                    f"{have} bytes follow it: the file is damaged; run 'trainlab data get' again"
                )
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
    # numpy parses the header text with tokenize and ast: a damaged one raises their errors too
    except (OSError, ValueError, EOFError, MemoryError, SyntaxError, tokenize.TokenError) as exc:
        raise DataError(f"cannot read {path}: {summary(exc)}") from exc


def read_arrays(
    folder: str | os.PathLike[str], expected: dict[str, str] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load and verify a folder written by :func:`write_arrays`: (arrays, manifest).

    Every array's sha256 must match the manifest, and ``expected`` (published checksums) where
    given; a mismatch names the file.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    arrays = {}
    for key in ARRAY_NAMES:
        path = folder / f"{key}.npy"
        arrays[key] = _load_npy(path)
        digest = sha256_of(arrays[key])
        for want in (manifest["sha256"].get(key), (expected or {}).get(key)):
            if want is not None and digest != want:
                raise DataError(
                    f"{path} does not match its checksum (sha256 {want[:16]}...): the file is "
                    "damaged; run 'trainlab data get' again"
                )
    return arrays, manifest
