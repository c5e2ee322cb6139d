"""Image folders: one sub-folder per class, JPEG or PNG files, from a folder or a tar archive.

Layouts read::

    ROOT/<class>/<image>                 one split, "train"
    ROOT/train/<class>/<image>           split folders (train, val, test)
    ROOT/test/<class>/<image>

``ROOT`` may sit below one wrapping folder (``cifar10-jpeg/train/...``) and may be a
``.tar``, ``.tar.gz`` or ``.tgz`` archive. Archive members are read into memory, never
extracted to paths they name; links and devices are skipped, absolute and ``..`` paths are
refused. Images are decoded once, on a thread pool (Pillow releases the GIL while decoding),
into uint8 (N, C, H, W) arrays that are cached in :func:`trainlab.fileio.cache_dir`, keyed by
the source's absolute path, sizes and modification times, so a changed source is decoded again.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import struct
import tarfile
import warnings
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from trainlab import fileio
from trainlab.errors import DataError, summary

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLIT_NAMES = ("train", "val", "test")
GRAY_MODES = ("1", "L", "LA")
CACHE_FORMAT = 2  # 2: resizing crops to the aspect ratio (ImageOps.fit)
CHUNK = 512  # images per pool task: large enough to amortise the task overhead
NOT_TAR = "not a tar archive (plain, gzip, bzip2 or xz compressed)"
# What reading a damaged tar archive raises, in tarfile or in its decompressors.
TAR_ERRORS = (
    tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError, MemoryError
)  # fmt: skip
# What Pillow raises for a damaged image; SyntaxError is its word for a broken PNG chunk.
IMAGE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError,
    Image.DecompressionBombError,
)  # fmt: skip

Parts = tuple[str, ...]
Source = bytes | Path  # in-memory archive member, or a file on disk


@dataclass
class ImageFolder:
    """Decoded splits: ``splits[name] = (images uint8 (N, C, H, W), labels int64 (N,))``."""

    classes: list[str]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    source: str
    from_cache: bool = False


@dataclass
class _Entry:
    split: str
    label: int
    name: str  # shown in error messages: archive member or file path
    data: Source


def read_image_folder(
    path: str | os.PathLike[str],
    *,
    size: int | tuple[int, int] | None = None,
    classes: Sequence[str] | None = None,
    cache: bool = True,
    workers: int | None = None,
) -> ImageFolder:
    """Read a class-per-folder image set from a folder or tar archive, decoding it at most once.

    ``size`` (H, W) or an int brings every image to that size instead of requiring equal sizes:
    the largest centred crop of that aspect ratio, resized with Pillow's antialiased bicubic
    filter (``ImageOps.fit``), so no image is distorted;
    ``classes`` fixes the class list (and its label order) instead of the sorted folder names
    of the training split. All images become RGB, or L (one channel) if every image is gray.
    """
    path = Path(path).absolute()
    target = _parse_size(size)
    classes = None if classes is None else list(classes)
    record = [CACHE_FORMAT, str(path), _fingerprint(path), target, classes]
    key = hashlib.sha256(json.dumps(record).encode()).hexdigest()
    cache_file = fileio.cache_dir() / "imagefolder" / f"{path.name}-{key[:24]}.npz"
    if cache:
        cached = _load_cache(cache_file, key, str(path))
        if cached is not None:
            return cached
    files, folders = _list_archive(path) if path.is_file() else _list_folder(path)
    class_names, entries = _assign_labels(path, files, folders, classes)
    result = ImageFolder(class_names, _decode_all(entries, target, workers), str(path))
    if cache:
        _save_cache(cache_file, key, result)
    return result


# ----------------------------------------------------------------------------- listing


def _list_folder(root: Path) -> tuple[dict[Parts, Source], set[Parts]]:
    """Image files (relative parts -> path) and every folder under ``root``."""
    files: dict[Parts, Source] = {}
    folders: set[Parts] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        folders.update(rel + (d,) for d in dirnames)
        for name in filenames:
            if not _hidden(name) and name.lower().endswith(IMAGE_SUFFIXES):
                files[rel + (name,)] = Path(dirpath) / name
    return files, folders


def _list_archive(path: Path) -> tuple[dict[Parts, Source], set[Parts]]:
    """Image members (relative parts -> bytes) and every folder of a tar archive."""
    files: dict[Parts, Source] = {}
    folders: set[Parts] = set()
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                parts = _safe_parts(member.name, path)
                if any(_hidden(p) for p in parts) or not parts:
                    continue
                folders.update(parts[:i] for i in range(1, len(parts)))
                if member.isdir():
                    folders.add(parts)
                elif member.isfile() and parts[-1].lower().endswith(IMAGE_SUFFIXES):
                    handle = tar.extractfile(member)
                    files[parts] = handle.read() if handle is not None else b""
                # links, devices and fifos are skipped: never followed, never created
    except TAR_ERRORS as exc:
        cause = tar_fault(exc, _zip_or_not_tar(path))
        raise DataError(f"cannot read archive {path}: {cause}") from exc
    return files, folders


def tar_fault(exc: BaseException, unreadable: str = NOT_TAR) -> str:
    """A :data:`TAR_ERRORS` exception in a few words; ``unreadable`` if tarfile cannot open it."""
    if isinstance(exc, tarfile.ReadError) and "could not be opened" in str(exc):
        return unreadable
    return summary(exc)


def _zip_or_not_tar(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            if handle.read(4) == b"PK\x03\x04":
                return "a zip archive; only tar archives are read (.tar, .tar.gz, .tgz)"
    except OSError:
        pass
    return NOT_TAR


def _safe_parts(name: str, archive: Path) -> Parts:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or ":" in (pure.parts[0] if pure.parts else ""):
        raise DataError(f"refusing archive {archive}: member {name!r} has an absolute or '..' path")
    return tuple(p for p in pure.parts if p != ".")


def _hidden(name: str) -> bool:
    # macOS archives carry "._x.jpg" resource forks and __MACOSX folders that are not images.
    return name.startswith(".") or name == "__MACOSX"


# ----------------------------------------------------------------------------- layout


def _assign_labels(
    root: Path, files: dict[Parts, Source], folders: set[Parts], classes: Sequence[str] | None
) -> tuple[list[str], list[_Entry]]:
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {root}")
    found = _layout(root, files, folders)
    if classes is None:  # the training split's folders name the classes
        classes = sorted(found["train" if "train" in found else next(iter(found))])
    class_names = list(classes)
    entries: list[_Entry] = []
    for split, class_files in found.items():
        for class_name in sorted(class_files):
            if class_name not in class_names:
                raise DataError(
                    f"unknown class folder {class_name!r} in split {split!r} of {root}: "
                    f"expected one of {class_names}"
                )
            label = class_names.index(class_name)
            for parts in sorted(class_files[class_name]):
                data = files[parts]
                name = str(data) if isinstance(data, Path) else f"{root}:{'/'.join(parts)}"
                entries.append(_Entry(split, label, name, data))
    return class_names, entries


def _layout(
    root: Path, files: dict[Parts, Source], folders: set[Parts]
) -> dict[str, dict[str, list[Parts]]]:
    """Split -> class -> images. Folders that wrap every image and are neither split nor class
    folders are skipped; without split folders, every image is in "train"."""
    prefix: Parts = ()
    while all(len(p) >= len(prefix) + 3 for p in files):
        heads = {p[len(prefix)] for p in files}
        if len(heads) != 1 or heads & set(SPLIT_NAMES):
            break
        prefix += tuple(heads)
    top = {p[len(prefix)] for p in files}
    splits = [s for s in SPLIT_NAMES if s in top]
    others = sorted(top - set(SPLIT_NAMES))
    if splits and others:
        raise DataError(
            f"{root} mixes split folders {splits} with other entries {others}: expected only "
            f"split folders ({', '.join(SPLIT_NAMES)}) or only class folders"
        )
    found: dict[str, dict[str, list[Parts]]] = {}
    for split, split_root in ({s: prefix + (s,) for s in splits} or {"train": prefix}).items():
        depth = len(split_root)
        class_files = found[split] = {}
        for parts in files:
            if parts[:depth] != split_root:
                continue
            if len(parts) == depth + 1:
                raise DataError(
                    f"image {'/'.join(parts)} in {root} is not inside a class folder: expected "
                    f"{'/'.join(split_root + ('<class>', parts[-1]))}"
                )
            class_files.setdefault(parts[depth], []).append(parts)
        under = [f for f in folders if len(f) == depth + 1 and f[:depth] == split_root]
        empty = sorted(f for f in under if f[-1] not in class_files)
        if empty:
            raise DataError(
                f"empty class folder {'/'.join(empty[0])} in {root}: it holds no images"
            )
    return found


# ----------------------------------------------------------------------------- decoding


def _decode_image(data: Source, name: str, size: tuple[int, int] | None) -> np.ndarray:
    """Decode one image to (H, W) uint8 if gray, (H, W, 3) otherwise; resize to ``size``."""
    try:
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        with Image.open(source, formats=("JPEG", "PNG")) as image:
            mode = "L" if image.mode in GRAY_MODES else "RGB"
            if image.mode != mode:  # most files need no conversion; skip the copy
                image = image.convert(mode)
            if size is not None and image.size != (size[1], size[0]):
                # The centred crop of the target's aspect ratio, resampled by Pillow's bicubic
                # filter widened by the reduction factor: antialiased, no aliasing on shrinking.
                image = ImageOps.fit(image, (size[1], size[0]), Image.Resampling.BICUBIC)
            return np.asarray(image)
    except IMAGE_ERRORS as exc:
        # Pillow's "cannot identify" text names a BytesIO object or repeats the path
        unknown = isinstance(exc, UnidentifiedImageError)
        cause = "not a PNG or JPEG image" if unknown else summary(exc)
        raise DataError(f"cannot decode image {name}: {cause}") from exc


def _decode_all(
    entries: list[_Entry], size: tuple[int, int] | None, workers: int | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    chunks = [entries[i : i + CHUNK] for i in range(0, len(entries), CHUNK)]
    workers = workers or min(16, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = pool.map(
            lambda chunk: [_decode_image(e.data, e.name, size) for e in chunk], chunks
        )
        arrays = [array for chunk in decoded for array in chunk]
    for entry, array in zip(entries, arrays, strict=True):
        if array.shape[:2] != arrays[0].shape[:2]:
            raise DataError(
                f"image {entry.name} is {_hw(array.shape)} but {entries[0].name} is "
                f"{_hw(arrays[0].shape)}: images must share one size, or give one to resize "
                f"them to (imagefolder(path=..., size=32))"
            )
    gray = all(a.ndim == 2 for a in arrays)
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in dict.fromkeys(e.split for e in entries):
        index = [i for i, e in enumerate(entries) if e.split == split]
        images = np.stack([_to_chw(arrays[i], gray) for i in index])
        labels = np.array([entries[i].label for i in index], dtype=np.int64)
        splits[split] = (images, labels)
    return splits


def _hw(shape: Iterable[int]) -> str:
    h, w = tuple(shape)[:2]
    return f"{h}x{w} (HxW)"


def _to_chw(array: np.ndarray, gray: bool) -> np.ndarray:
    if gray:
        return array[None]
    if array.ndim == 2:  # a gray image among colour ones: R = G = B
        array = np.repeat(array[:, :, None], 3, axis=2)
    return array.transpose(2, 0, 1)


def _parse_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(type(s) is int and s > 0 for s in pair):  # bool is no size
        raise ValueError(f"read_image_folder: size must be a positive int or (H, W), got {size!r}")
    return pair


# ----------------------------------------------------------------------------- cache


def _fingerprint(path: Path) -> list:
    """What invalidates the cache: size and mtime of the archive, or of every file in the folder."""
    if path.is_file():
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]
    if not path.is_dir():
        raise DataError(f"image folder or archive {path} does not exist")
    entries = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            stat = os.stat(os.path.join(dirpath, name))
            rel = os.path.relpath(os.path.join(dirpath, name), path)
            entries.append([rel, stat.st_size, stat.st_mtime_ns])
    return entries


def _load_cache(cache_file: Path, key: str, source: str) -> ImageFolder | None:
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            split_names = [str(s) for s in npz["splits"]]
            splits = {s: (npz[f"{s}_images"], npz[f"{s}_labels"]) for s in split_names}
            classes = [str(c) for c in npz["classes"]]
    except (OSError, ValueError, KeyError, zlib.error) as exc:
        warnings.warn(f"ignoring unreadable cache file {cache_file}: {exc}", stacklevel=3)
        return None
    return ImageFolder(classes, splits, source, from_cache=True)


def _save_cache(cache_file: Path, key: str, result: ImageFolder) -> None:
    arrays = {
        "key": np.array(key),
        "classes": np.array(result.classes),
        "splits": np.array(list(result.splits)),
    }
    for split, (images, labels) in result.splits.items():
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle, so np.savez does not append ".npz" to tmp
            np.savez(handle, **arrays)

    try:
        fileio.write_with(cache_file, write)
    except OSError as exc:
        warnings.warn(f"could not cache decoded images at {cache_file}: {exc}", stacklevel=3)
