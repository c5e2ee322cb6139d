"""The user's own data: image folders of any sizes, tensors and torch data sets in memory, the
one-line "not found", and output into a pipe that closes early."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from trainlab.cli import main
from trainlab.data import ImageDataset, load_dataset
from trainlab.errors import DataError
from trainlab.recipe import load_recipe


def write_folder(root, sizes, seed=0):
    """Two classes of RGB PNGs of the given (W, H) sizes; returns the images by path."""
    rng = np.random.default_rng(seed)
    images = {}
    for cls in ("ant", "bee"):
        (root / cls).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            image.save(root / cls / f"{i:03d}.png")
            images[root / cls / f"{i:03d}.png"] = image
    return images


def test_an_image_folder_of_mixed_sizes_is_brought_to_one_size_as_pillow_does(tmp_path):
    sizes = [(40, 30), (17, 50), (32, 32), (64, 16), (9, 9)] * 2
    images = write_folder(tmp_path / "set", sizes)
    with pytest.raises(DataError, match=r"imagefolder\(path=\.\.\., size=32\)"):
        load_dataset(f"imagefolder:{tmp_path / 'set'}")
    ds = load_dataset(f"imagefolder(path={str(tmp_path / 'set')!r}, size=12)")
    assert ds.image_shape == (3, 12, 12)
    # every image is the centred crop of its aspect ratio, resampled by Pillow's bicubic filter
    everything = torch.cat([ds.train_images, ds.test_images]).numpy()
    expected = {
        ImageOps.fit(image, (12, 12), Image.Resampling.BICUBIC).tobytes()
        for image in images.values()
    }
    got = {np.ascontiguousarray(x.transpose(1, 2, 0)).tobytes() for x in everything}
    assert got == expected


def test_the_run_keeps_the_folders_absolute_path_and_says_how_big_the_held_out_test_is(
    tmp_path, monkeypatch, capsys
):
    write_folder(tmp_path / "set", [(8, 8)] * 10)
    monkeypatch.chdir(tmp_path)
    settings = ["data.name=imagefolder(path='set', size=8)", "train.batch_size=6",
                "train.epochs=1", "model.widths=[4]", "diagnostics.every=0"]  # fmt: skip
    argv = ["train", *[a for s in settings for a in ("--set", s)], "--out", "run"]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    note = f"image folder {tmp_path / 'set'} has no test split: 2 of its 20 images"
    assert f"note: {note}" in printed
    assert note in (tmp_path / "run" / "report.md").read_text()
    recipe = (tmp_path / "run" / "recipe.toml").read_text()
    assert f"imagefolder(path='{tmp_path / 'set'}', size=8)" in recipe
    monkeypatch.chdir(tmp_path.parent)  # evaluate from elsewhere: the folder is still found
    assert main(["eval", str(tmp_path / "run")]) == 0
    assert "on 2 images" in capsys.readouterr().out


def test_from_tensors_takes_uint8_or_unit_floats_and_holds_out_a_test_split():
    g = torch.Generator().manual_seed(0)
    floats = torch.rand(50, 3, 4, 4, generator=g, dtype=torch.float64)
    labels = torch.arange(50) % 5
    ds = ImageDataset.from_tensors(floats, labels)
    assert ds.classes == ["0", "1", "2", "3", "4"] and ds.num_classes == 5
    assert len(ds.train_images) == 45 and len(ds.test_images) == 5
    assert ds.notes and "5 of its 50 images" in ds.notes[0]
    every = torch.cat([ds.train_images, ds.test_images]).sort(0).values
    reference = (floats * 255).round().to(torch.uint8).sort(0).values
    assert torch.equal(every, reference)
    gray = ImageDataset.from_tensors(
        np.zeros((6, 5, 5), np.uint8), [0, 1] * 3, np.zeros((2, 5, 5), np.uint8), [1, 0],
        classes=["cat", "dog"],
    )  # fmt: skip
    assert gray.image_shape == (1, 5, 5) and not gray.notes and gray.classes == ["cat", "dog"]


@pytest.mark.parametrize(
    ("images", "labels", "needle"),
    [(torch.full((4, 1, 2, 2), 1.5), [0] * 4, "must lie on [0, 1]"),
     (torch.zeros(4, 2, 2, dtype=torch.int32), [0] * 4, "expected uint8 or floats"),
     (torch.zeros(4, 1, 2, 2, dtype=torch.uint8), [0, 1, 2], "expected 4 integer labels"),
     (torch.zeros(4, 1, 2, 2, dtype=torch.uint8), [0.5] * 4, "expected 4 integer labels")],
)  # fmt: skip
def test_from_tensors_refuses_what_it_cannot_read_in_one_line(images, labels, needle):
    with pytest.raises(DataError, match=needle.replace("[", r"\[")) as info:
        ImageDataset.from_tensors(images, labels)
    assert "\n" not in str(info.value)


class PairsOfPil(torch.utils.data.Dataset):
    """What torchvision's data sets hand out: (PIL image, int label)."""

    classes = ["dark", "light"]

    def __init__(self, n, size=(6, 5), mode="RGB", seed=0):
        rng = np.random.default_rng(seed)
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        self.arrays = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
        self.mode = mode

    def __len__(self):
        return len(self.arrays)

    def __getitem__(self, i):
        return Image.fromarray(self.arrays[i]), i % 2


def test_from_torch_materialises_pil_and_tensor_data_sets_once_as_uint8():
    train, test = PairsOfPil(10), PairsOfPil(4, seed=1)
    ds = ImageDataset.from_torch(train, test)
    assert ds.classes == ["dark", "light"] and ds.image_shape == (3, 5, 6)
    for i in range(10):
        assert np.array_equal(ds.train_images[i].numpy().transpose(1, 2, 0), train.arrays[i])
    assert ds.test_labels.tolist() == [0, 1, 0, 1]
    # the same pixels as ToTensor's floats on [0, 1] give the same uint8 images back
    as_tensors = [(torch.from_numpy(a.transpose(2, 0, 1)).double() / 255, i % 2)
                  for i, a in enumerate(train.arrays)]  # fmt: skip
    same = ImageDataset.from_torch(as_tensors, as_tensors[:4])
    assert torch.equal(same.train_images, ds.train_images)


def test_from_torch_says_how_much_memory_a_set_needs_before_reading_it():
    class Huge(torch.utils.data.Dataset):
        reads = 0

        def __len__(self):
            return 10**6

        def __getitem__(self, i):
            Huge.reads += 1
            return torch.zeros(3, 64, 64, dtype=torch.uint8), 0

    with pytest.raises(DataError) as info:
        ImageDataset.from_torch(Huge(), memory_limit=2**30)
    assert str(info.value) == (
        "Huge: 1000000 images of 3x64x64 need 11.44 GiB as uint8, but only 1.00 GiB of memory "
        "is available"
    )
    assert Huge.reads == 1, "only the first image was read to estimate"


def test_from_torch_names_an_image_of_another_size():
    ragged = [(torch.zeros(1, 4, 4, dtype=torch.uint8), 0),
              (torch.zeros(1, 5, 4, dtype=torch.uint8), 1)]  # fmt: skip
    with pytest.raises(DataError, match=r"list train\[1\] is 1x5x4 \(C, H, W\) but the first"):
        ImageDataset.from_torch(ragged)


def test_a_missing_data_set_is_one_line_with_every_place_and_the_command(capsys, tmp_path):
    assert main(["train", "--set", "data.name=mnist", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--verbose" not in err, err
    assert f"looked in: {tmp_path} (" in err and "'trainlab data get mnist'" in err


def test_a_reader_that_closes_early_ends_the_command_quietly():
    """``trainlab ... | head``: the reader goes away; no traceback, SIGPIPE's exit status."""
    child = subprocess.Popen(
        [sys.executable, "-m", "trainlab", "stats", "synthetic(n=64, size=4)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    child.stdout.close()  # before the command writes a byte
    err = child.stderr.read().decode()
    assert child.wait() == 141 and err == "", err


def test_a_recipe_can_train_from_tensors_in_memory(tmp_path):
    from trainlab.engine import fit

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 1, 6, 6), generator=g, dtype=torch.uint8)
    ds = ImageDataset.from_tensors(x, torch.arange(64) % 2, x[:8], torch.arange(8) % 2)
    recipe = load_recipe(None, ["train.epochs=1", "train.batch_size=16", "model.kind=mlp",
                                "model.widths=[4]", "diagnostics.every=0"])  # fmt: skip
    result = fit(recipe, tmp_path, dataset=ds, progress=False, report=False)
    assert result.summary["train_images"] == 64 and result.summary["test_images"] == 8
