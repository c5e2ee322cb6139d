"""The IDX format of MNIST and Fashion-MNIST (LeCun et al. 1998; Xiao et al. 2017).

An IDX file is a 4-byte magic number ``0x00 0x00 TYPE NDIM``, then NDIM big-endian uint32
dimension sizes, then the values in C order, big-endian. The files are usually gzipped; the
reader tells by the gzip magic bytes (``0x1f 0x8b``), never by the file name.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from trainlab.errors import DataError, summary

GZIP_MAGIC = b"\x1f\x8b"

# Type byte of the magic number -> big-endian numpy dtype of the values.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a native-endian numpy array of its shape.

    Raises :class:`~trainlab.errors.DataError` naming the file for a bad magic number, an
    unknown type code, truncated data, trailing bytes or a corrupt gzip stream.
    """
    path = Path(path)
    raw = _read_bytes(path)
    dtype, shape, offset = _parse_header(raw, path)
    dims = "x".join(map(str, shape))
    # numpy refuses such a shape even when a zero dimension leaves no values to read
    if math.prod(d for d in shape if d) * dtype.itemsize > np.iinfo(np.intp).max:
        raise DataError(f"IDX file {path}: dimensions {dims} are too large for any array")
    expected = math.prod(shape) * dtype.itemsize
    available = len(raw) - offset
    if available < expected:
        raise DataError(
            f"truncated IDX file {path}: dimensions {dims} need "
            f"{expected} bytes of data, found {available}"
        )
    if available > expected:
        raise DataError(
            f"{available - expected} trailing bytes in IDX file {path} after the "
            f"{expected} bytes its dimensions {dims} describe"
        )
    values = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset)
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc.strerror or exc}") from exc
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error, MemoryError) as exc:
        raise DataError(f"corrupt gzip stream in IDX file {path}: {summary(exc)}") from exc


def _parse_header(raw: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return (dtype, shape, data offset) from the magic number and dimension sizes."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        magic = raw[:4].hex() or "(empty file)"
        raise DataError(
            f"bad magic number 0x{magic} in {path}: expected 0x0000TTNN "
            "(two zero bytes, a type code, the number of dimensions)"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise DataError(
            f"unknown IDX type code 0x{type_code:02X} in {path}: expected one of {known}"
        )
    if ndim == 0:
        raise DataError(f"IDX file {path} declares 0 dimensions: expected at least 1")
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(
            f"truncated IDX file {path}: the header needs {offset} bytes for {ndim} "
            f"dimensions, found {len(raw)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return IDX_TYPES[type_code], shape, offset
