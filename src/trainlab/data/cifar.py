"""CIFAR-10 and CIFAR-100 in their official "python version" layout (Krizhevsky 2009).

The official release is a set of Python 2 pickles of dicts (``b"data"``: N x 3072 uint8 rows,
1024 red then 1024 green then 1024 blue values of a 32x32 image; ``b"labels"`` or
``b"fine_labels"``: N ints). Unpickling runs whatever globals a file names, so the files are
read through :class:`RestrictedUnpickler`, which admits only what a numpy array needs to be
rebuilt and refuses everything else before it is called.
"""

from __future__ import annotations

import os
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.data.imagefolder import TAR_ERRORS, tar_fault
from trainlab.errors import DataError, summary

try:  # numpy >= 2 keeps the implementation in numpy._core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

# The only globals a pickled ndarray refers to; both module paths resolve to the same objects
# (numpy 1 writes numpy.core, numpy 2 writes numpy._core).
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
IMAGE_BYTES = 3 * 32 * 32
# Each release's folder, train batches, test batch, meta file, label key and class-names key.
Layout = tuple[str, tuple[str, ...], str, str, str, str]
CIFAR10: Layout = (CIFAR10_DIR, tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                   "batches.meta", "labels", "label_names")  # fmt: skip
CIFAR100: Layout = (CIFAR100_DIR, ("train",), "test", "meta", "fine_labels", "fine_label_names")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` returns only :data:`ALLOWED_GLOBALS`.

    Dicts, lists, strings, bytes and numbers are built by opcodes, not globals, so the
    official files load; a file naming any other global (``os.system``, ``builtins.eval``)
    raises before that global is looked up, let alone called.
    """

    def __init__(self, file: Any, path: str | Path):
        # Python 2 pickles: keep str values as bytes (numpy array payloads are raw bytes).
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to unpickle {self.path}: it names the global {_shown(module)}."
                f"{_shown(name)}, which is not needed to rebuild numpy arrays (possibly a hostile "
                "file)"
            ) from None


def read_cifar_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one CIFAR pickle (a batch or a meta file) safely; byte-string keys become str."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return _unpickle(handle, str(path))
    except OSError as exc:
        raise DataError(f"cannot read CIFAR file {path}: {exc.strerror or exc}") from exc


def _unpickle(handle: Any, where: str) -> dict[str, Any]:
    try:
        obj = RestrictedUnpickler(handle, where).load()
    except DataError:
        raise
    except Exception as exc:  # malformed pickle streams raise many types
        raise DataError(f"corrupt CIFAR pickle {where}: {summary(exc)}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR file {where} holds a {type(obj).__name__}: expected a dict")
    return {_text(k, where): v for k, v in obj.items()}


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch file's images as (N, 3, 32, 32) uint8 and labels as (N,) int64, shapes checked."""
    return _batch_arrays(read_cifar_pickle(path), str(path), label_key)


def _batch_arrays(batch: dict[str, Any], path: str, label_key: str):
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"CIFAR file {path} has no {key!r} entry; keys: {_keys(batch)}")
    data = batch["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(
            f"CIFAR file {path}: 'data' must be an N x {IMAGE_BYTES} uint8 array, got {got}"
        )
    if data.shape[1] != IMAGE_BYTES:
        raise DataError(
            f"CIFAR file {path}: 'data' rows have {data.shape[1]} values, expected {IMAGE_BYTES}"
        )
    try:
        labels = np.asarray(batch[label_key])
    except (ValueError, TypeError, OverflowError) as exc:  # ragged or mixed lists
        raise DataError(f"CIFAR file {path}: {label_key!r} is not a list of integers") from exc
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"CIFAR file {path}: {label_key!r} must be {len(data)} integers, "
            f"got {labels.dtype} {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar_archive(path: str | os.PathLike[str], hundred: bool = False) -> dict[str, Any]:
    """The official ``cifar-10-python.tar.gz`` (or ``cifar-100-python.tar.gz``), read in memory.

    Members are looked up by their official names and unpickled through
    :class:`RestrictedUnpickler`; nothing is extracted, so no member can escape a folder.
    Returns the same dict as :func:`read_cifar10_folder`.
    """
    path = Path(path)
    layout = CIFAR100 if hundred else CIFAR10
    folder = layout[0]
    try:
        with tarfile.open(path, "r:*") as archive:

            def member(name: str) -> tuple[dict[str, Any], str]:
                where = f"{path}:{folder}/{name}"
                try:
                    handle = archive.extractfile(f"{folder}/{name}")
                except KeyError:
                    handle = None
                if handle is None:
                    raise DataError(f"{path}: no regular file {folder}/{name} in the archive")
                return _unpickle(handle, where), where

            return _read_release(layout, member, path)
    except TAR_ERRORS as exc:
        raise DataError(f"{path}: not a readable CIFAR archive: {tar_fault(exc)}") from exc


def read_cifar10_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``cifar-10-batches-py``: data_batch_1..5 (train), test_batch, batches.meta."""
    return _read_folder(Path(folder), CIFAR10)


def read_cifar100_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``cifar-100-python``: train, test, meta; the 100 fine labels."""
    return _read_folder(Path(folder), CIFAR100)


def _read_folder(folder: Path, layout: Layout) -> dict[str, Any]:
    return _read_release(
        layout, lambda name: (read_cifar_pickle(folder / name), str(folder / name)), folder
    )


def _read_release(
    layout: Layout, load: Callable[[str], tuple[dict[str, Any], str]], source: Path
) -> dict[str, Any]:
    """Train and test arrays and class names; ``load(name)`` gives a file's dict and its name."""
    _, train_names, test_name, meta, label_key, names_key = layout
    train = [_batch_arrays(*load(name), label_key) for name in train_names]
    test_x, test_y = _batch_arrays(*load(test_name), label_key)
    classes = _class_names(*load(meta), names_key)
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    for split, labels in (("train", train_y), ("test", test_y)):
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(
                f"CIFAR folder {source}: {split} labels span {labels.min()}..{labels.max()} "
                f"but there are {len(classes)} class names"
            )
    return {"train": (train_x, train_y), "test": (test_x, test_y), "classes": classes}


def _class_names(meta: dict[str, Any], where: str, key: str) -> list[str]:
    if key not in meta:
        raise DataError(f"CIFAR file {where} has no {key!r} entry; keys: {_keys(meta)}")
    names = meta[key]
    if not isinstance(names, list | tuple) or not all(isinstance(n, bytes | str) for n in names):
        raise DataError(f"{where}: {key!r} must be a list of class names")
    return [_text(name, where) for name in names]


def _text(value: Any, where: str) -> Any:
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: {value[:40]!r} is not UTF-8 text") from exc


def _keys(entries: dict[Any, Any]) -> str:
    # Keys of any type, some of them not comparable with each other, shown on one line.
    return ", ".join(sorted(repr(k) for k in entries))[:300]


def _shown(name: str) -> str:
    return name if name.isprintable() else repr(name)
