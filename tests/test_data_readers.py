"""Readers: IDX, image folders and archives, CIFAR pickles, on small files the tests write.

References: IDX files are built byte by byte with ``struct`` from the format description;
images are written with Pillow from known numpy arrays; CIFAR pickles are dicts in the
official layout, pixels checked against the documented row layout (R, G, B planes of 32x32).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from trainlab.data import imagefolder, read_cifar_pickle, read_idx, read_image_folder
from trainlab.data.cifar import read_cifar10_folder, read_cifar100_folder
from trainlab.errors import DataError

# ----------------------------------------------------------------------------- IDX

IDX_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def idx_bytes(array: np.ndarray, code: int | None = None) -> bytes:
    """The IDX encoding, written from the format description (not from trainlab)."""
    code = IDX_CODES[array.dtype.type] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", list(IDX_CODES))
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_matches_numpy(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 5, 4)) * 100).astype(dtype)
    raw = idx_bytes(array)
    # Names lie on purpose: the reader must go by the gzip magic bytes, not the suffix.
    path = tmp_path / ("plain.gz" if not compress else "compressed-no-suffix")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype).newbyteorder("=") and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_idx_one_dimensional_labels(tmp_path):
    labels = np.array([9, 0, 0, 3, 255], dtype=np.uint8)
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(labels))
    np.testing.assert_array_equal(read_idx(path), labels)


def test_idx_bad_magic_names_file_and_bytes(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match=r"bad magic number 0x01020801 in .*bad: expected"):
        read_idx(path)


def test_idx_unknown_type_code(tmp_path):
    path = tmp_path / "weird"
    path.write_bytes(idx_bytes(np.zeros(2, np.uint8), code=0x0A))
    with pytest.raises(DataError, match="unknown IDX type code 0x0A"):
        read_idx(path)


def test_idx_truncated_data(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(idx_bytes(np.zeros((4, 3), np.int16))[:-1])
    with pytest.raises(
        DataError, match=r"truncated IDX file .*short.*need 24 bytes of data, found 23"
    ):
        read_idx(path)


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "header"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 2))
    with pytest.raises(DataError, match="truncated IDX file"):
        read_idx(path)


def test_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8)) + b"xyz")
    with pytest.raises(DataError, match=r"3 trailing bytes in IDX file .*long"):
        read_idx(path)


def test_idx_corrupt_gzip(tmp_path):
    packed = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.int32))))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(bytes(packed[: len(packed) // 2]))
    with pytest.raises(DataError, match=r"corrupt gzip stream in IDX file .*cut\.gz"):
        read_idx(cut)
    packed[-6] ^= 0xFF  # the CRC32/length trailer no longer matches the data
    bad_crc = tmp_path / "crc.gz"
    bad_crc.write_bytes(bytes(packed))
    with pytest.raises(DataError, match="corrupt gzip stream"):
        read_idx(bad_crc)


def test_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path / "absent")


# ----------------------------------------------------------------------------- image folders


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))


def random_rgb(rng, h=6, w=5) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_png_tree(root: Path, layout: dict[str, dict[str, int]], seed=0) -> dict:
    """Write random RGB PNGs: layout[split][class] = count. Returns {(split, class, i): array}."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                arrays[(split, name, i)] = array = random_rgb(rng)
                Image.fromarray(array).save(folder / f"{i:03d}.png")
    return arrays


def expected_split(arrays: dict, split: str, classes: list[str]):
    """Images (N, C, H, W) and labels in class order, then file order."""
    keys = sorted((k for k in arrays if k[0] == split), key=lambda k: (classes.index(k[1]), k[2]))
    images = np.stack([arrays[k].transpose(2, 0, 1) for k in keys])
    return images, np.array([classes.index(k[1]) for k in keys])


def make_tar(tar_path: Path, folder: Path, arcname: str) -> None:
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(folder, arcname=arcname)


def test_image_folder_with_splits_png_exact(tmp_path):
    layout = {"train": {"cat": 3, "dog": 2, "ant": 2}, "test": {"dog": 1, "cat": 2}}
    arrays = write_png_tree(tmp_path / "set", layout)
    result = read_image_folder(tmp_path / "set")
    assert result.classes == ["ant", "cat", "dog"]
    for split in ("train", "test"):
        images, labels = result.splits[split]
        want_images, want_labels = expected_split(arrays, split, result.classes)
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


def test_image_folder_from_tar_gz_equals_folder(tmp_path):
    layout = {"train": {"a": 2, "b": 3}, "test": {"a": 1, "b": 1}}
    write_png_tree(tmp_path / "set", layout)
    make_tar(tmp_path / "set.tar.gz", tmp_path / "set", "wrapper")  # wrapper/train/a/000.png
    from_dir = read_image_folder(tmp_path / "set", cache=False)
    from_tar = read_image_folder(tmp_path / "set.tar.gz", cache=False)
    assert from_tar.classes == from_dir.classes == ["a", "b"]
    for split in ("train", "test"):
        for got, want in zip(from_tar.splits[split], from_dir.splits[split], strict=True):
            np.testing.assert_array_equal(got, want)


def test_image_folder_without_splits_is_train(tmp_path):
    arrays = write_png_tree(tmp_path / "flat", {"": {"x": 2, "y": 2}})
    result = read_image_folder(tmp_path / "flat")
    assert list(result.splits) == ["train"]
    want_images, want_labels = expected_split(arrays, "", ["x", "y"])
    np.testing.assert_array_equal(result.splits["train"][0], want_images)
    np.testing.assert_array_equal(result.splits["train"][1], want_labels)


def test_image_folder_jpeg_close_to_source(tmp_path):
    # Smooth images survive JPEG at quality 95 to within a few grey levels.
    yy, xx = np.mgrid[0:16, 0:16]
    smooth = np.stack([yy * 8, xx * 8, (yy + xx) * 4], axis=-1).astype(np.uint8)
    (tmp_path / "j" / "c").mkdir(parents=True)
    Image.fromarray(smooth).save(tmp_path / "j" / "c" / "0.jpg", quality=95)
    images, _ = read_image_folder(tmp_path / "j").splits["train"]
    diff = np.abs(images[0].astype(int) - smooth.transpose(2, 0, 1).astype(int))
    assert diff.mean() < 2.0 and diff.max() < 16


def test_image_folder_gray_stays_one_channel_and_mixed_becomes_rgb(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    (tmp_path / "g" / "c").mkdir(parents=True)
    Image.fromarray(gray).save(tmp_path / "g" / "c" / "0.png")
    images, _ = read_image_folder(tmp_path / "g").splits["train"]
    assert images.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(images[0, 0], gray)

    colour = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "g" / "c" / "1.png")
    images, _ = read_image_folder(tmp_path / "g").splits["train"]
    assert images.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(images[0], np.stack([gray] * 3))  # gray -> R = G = B
    np.testing.assert_array_equal(images[1], colour.transpose(2, 0, 1))


def test_unknown_class_folder_in_test_split(tmp_path):
    write_png_tree(tmp_path / "s", {"train": {"cat": 1}, "test": {"cat": 1, "bird": 1}})
    with pytest.raises(DataError, match=r"unknown class folder 'bird' in split 'test'"):
        read_image_folder(tmp_path / "s")


def test_unknown_class_folder_against_given_classes(tmp_path):
    write_png_tree(tmp_path / "s", {"": {"cat": 1, "dog": 1}})
    with pytest.raises(DataError, match="unknown class folder 'dog'"):
        read_image_folder(tmp_path / "s", classes=["cat"])
    result = read_image_folder(tmp_path / "s", classes=["dog", "cat"])
    assert result.classes == ["dog", "cat"]
    np.testing.assert_array_equal(result.splits["train"][1], [1, 0])  # cat is label 1 now


def test_empty_class_folder(tmp_path):
    write_png_tree(tmp_path / "s", {"train": {"cat": 1}})
    (tmp_path / "s" / "train" / "dog").mkdir()
    with pytest.raises(DataError, match=r"empty class folder train/dog"):
        read_image_folder(tmp_path / "s")


def test_undecodable_image_is_named(tmp_path):
    write_png_tree(tmp_path / "s", {"": {"cat": 2}})
    (tmp_path / "s" / "cat" / "broken.png").write_bytes(b"this is not a PNG")
    with pytest.raises(DataError, match=r"cannot decode image .*cat/broken\.png"):
        read_image_folder(tmp_path / "s")


def test_mixed_sizes_name_first_offender_or_resize(tmp_path):
    write_png_tree(tmp_path / "s", {"": {"cat": 2}})  # 6x5 images
    big = np.random.default_rng(2).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "s" / "cat" / "zzz.png")
    with pytest.raises(DataError, match=r"zzz\.png is 9x7 \(HxW\) but .*000\.png is 6x5"):
        read_image_folder(tmp_path / "s")
    images, _ = read_image_folder(tmp_path / "s", size=(4, 3)).splits["train"]
    assert images.shape == (3, 3, 4, 3)
    reference = np.asarray(ImageOps.fit(Image.fromarray(big), (3, 4), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(images[2], reference.transpose(2, 0, 1))


def test_no_images(tmp_path):
    (tmp_path / "s" / "cat").mkdir(parents=True)
    (tmp_path / "s" / "cat" / "notes.txt").write_text("no pictures here")
    with pytest.raises(DataError, match="no images"):
        read_image_folder(tmp_path / "s")


def test_image_outside_class_folder(tmp_path):
    write_png_tree(tmp_path / "s", {"train": {"cat": 1}})
    Image.fromarray(random_rgb(np.random.default_rng(3))).save(
        tmp_path / "s" / "train" / "stray.png"
    )
    with pytest.raises(DataError, match="not inside a class folder"):
        read_image_folder(tmp_path / "s")


def test_cache_hit_skips_decoding_and_mtime_change_invalidates(tmp_path, monkeypatch):
    write_png_tree(tmp_path / "s", {"train": {"a": 2, "b": 2}, "test": {"a": 1}})
    make_tar(tmp_path / "s.tgz", tmp_path / "s", "s")
    first = read_image_folder(tmp_path / "s.tgz")
    assert not first.from_cache

    calls = []
    original = imagefolder._decode_image

    def counting(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(imagefolder, "_decode_image", counting)
    second = read_image_folder(tmp_path / "s.tgz")
    assert second.from_cache and calls == []
    assert second.classes == first.classes
    for split in first.splits:
        for got, want in zip(second.splits[split], first.splits[split], strict=True):
            np.testing.assert_array_equal(got, want)

    stat = (tmp_path / "s.tgz").stat()
    os.utime(tmp_path / "s.tgz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    third = read_image_folder(tmp_path / "s.tgz")
    assert not third.from_cache and len(calls) == 5


def test_folder_cache_invalidated_by_changed_file(tmp_path, monkeypatch):
    write_png_tree(tmp_path / "s", {"": {"a": 2}})
    read_image_folder(tmp_path / "s")
    replacement = np.zeros((6, 5, 3), np.uint8)
    Image.fromarray(replacement).save(tmp_path / "s" / "a" / "001.png")
    stat = (tmp_path / "s" / "a" / "001.png").stat()
    os.utime(tmp_path / "s" / "a" / "001.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    result = read_image_folder(tmp_path / "s")
    assert not result.from_cache
    np.testing.assert_array_equal(result.splits["train"][0][1], replacement.transpose(2, 0, 1))


def _png_bytes(rng) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(random_rgb(rng)).save(buffer, format="PNG")
    return buffer.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("evil", ["../escape/cat/0.png", "/abs/cat/0.png", "ok/../../x/cat/0.png"])
def test_archive_with_unsafe_paths_is_refused(tmp_path, evil):
    rng = np.random.default_rng(4)
    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        _add_bytes(tar, "set/cat/1.png", _png_bytes(rng))
        _add_bytes(tar, evil, _png_bytes(rng))
    with pytest.raises(DataError, match="absolute or '..' path"):
        read_image_folder(tmp_path / "evil.tar")
    assert not (tmp_path.parent / "escape").exists()


def test_archive_links_are_skipped(tmp_path):
    rng = np.random.default_rng(5)
    with tarfile.open(tmp_path / "links.tar", "w") as tar:
        _add_bytes(tar, "set/cat/1.png", _png_bytes(rng))
        link = tarfile.TarInfo("set/cat/2.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        hard = tarfile.TarInfo("set/cat/3.png")
        hard.type, hard.linkname = tarfile.LNKTYPE, "set/cat/1.png"
        tar.addfile(hard)
    images, labels = read_image_folder(tmp_path / "links.tar").splits["train"]
    assert images.shape == (1, 3, 6, 5) and labels.tolist() == [0]


def test_corrupt_archive(tmp_path):
    (tmp_path / "bad.tar.gz").write_bytes(gzip.compress(b"not a tar file at all" * 50)[:-10])
    with pytest.raises(DataError, match="cannot read archive"):
        read_image_folder(tmp_path / "bad.tar.gz")


# ----------------------------------------------------------------------------- CIFAR pickles


def cifar_batch(rng, n: int, label_key: str = "labels", classes: int = 10) -> dict:
    """A batch dict in the official layout (byte-string keys, N x 3072 uint8 rows)."""
    return {
        b"batch_label": b"testing batch",
        label_key.encode(): rng.integers(0, classes, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def dump(path: Path, obj) -> None:
    # Protocol 4: bytes stay bytes and ndarrays use numpy's _reconstruct, as in the official
    # Python 2 files (protocol 5 would use numpy's out-of-band buffer path instead).
    path.write_bytes(pickle.dumps(obj, protocol=4))


def write_cifar10(folder: Path, n: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": cifar_batch(rng, n) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(rng, n)
    for name, batch in batches.items():
        dump(folder / name, batch)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": n})
    return batches


def test_cifar10_pickle_folder_pixels_follow_row_layout(tmp_path):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py")
    data = read_cifar10_folder(tmp_path / "cifar-10-batches-py")
    train_x, train_y = data["train"]
    assert train_x.shape == (20, 3, 32, 32) and train_x.dtype == np.uint8
    assert data["classes"][0] == "airplane" and len(data["classes"]) == 10
    rows = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    # documented layout: value (c, y, x) of image i is row i, column c*1024 + y*32 + x
    i, c, y, x = 13, 2, 7, 30
    assert train_x[i, c, y, x] == rows[i, c * 1024 + y * 32 + x]
    np.testing.assert_array_equal(train_x.reshape(20, -1), rows)
    np.testing.assert_array_equal(train_y, labels)
    test_x, test_y = data["test"]
    np.testing.assert_array_equal(test_x.reshape(4, -1), batches["test_batch"][b"data"])
    np.testing.assert_array_equal(test_y, batches["test_batch"][b"labels"])


def test_cifar100_pickle_folder(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train, test = cifar_batch(rng, 6, "fine_labels", 100), cifar_batch(rng, 3, "fine_labels", 100)
    dump(folder / "train", train)
    dump(folder / "test", test)
    fine = [f"class{k}".encode() for k in range(100)]
    dump(folder / "meta", {b"fine_label_names": fine, b"coarse_label_names": [b"x"] * 20})
    data = read_cifar100_folder(folder)
    np.testing.assert_array_equal(data["train"][0].reshape(6, -1), train[b"data"])
    np.testing.assert_array_equal(data["test"][1], test[b"fine_labels"])
    assert data["classes"][42] == "class42"


class _RunsShell:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Evaluates:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_hostile_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    batch = cifar_batch(np.random.default_rng(0), 2)
    batch[b"labels"] = _RunsShell(f"touch {marker}")
    dump(path, batch)
    with pytest.raises(
        DataError, match=r"refusing to unpickle .*data_batch_1: .*(posix|os)\.system"
    ):
        read_cifar_pickle(path)
    assert not marker.exists()

    dump(path, {b"data": _Evaluates()})
    with pytest.raises(DataError, match=r"builtins\.eval"):
        read_cifar_pickle(path)


def test_cifar_batch_shapes_are_validated(tmp_path):
    folder = tmp_path / "c"
    write_cifar10(folder)
    rng = np.random.default_rng(0)
    wide = cifar_batch(rng, 3)
    wide[b"data"] = rng.integers(0, 256, (3, 3000), dtype=np.uint8)
    dump(folder / "data_batch_2", wide)
    with pytest.raises(
        DataError, match=r"data_batch_2: 'data' rows have 3000 values, expected 3072"
    ):
        read_cifar10_folder(folder)
    short = cifar_batch(rng, 3)
    short[b"labels"] = [1, 2]
    dump(folder / "data_batch_2", short)
    with pytest.raises(DataError, match=r"'labels' must be 3 integers"):
        read_cifar10_folder(folder)
    floats = cifar_batch(rng, 3)
    floats[b"data"] = floats[b"data"].astype(np.float32)
    dump(folder / "data_batch_2", floats)
    with pytest.raises(DataError, match="uint8"):
        read_cifar10_folder(folder)


def test_corrupt_pickle(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": 1}, protocol=4)[:-5])
    with pytest.raises(DataError, match="corrupt CIFAR pickle"):
        read_cifar_pickle(path)
