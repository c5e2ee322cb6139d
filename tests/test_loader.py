"""DeviceLoader and split_validation (derive_seed: test_seeding.py; the flip: test_augment.py)."""

from __future__ import annotations

import pytest
import torch

from trainlab.data import DeviceLoader, derive_seed, random_hflip, split_validation


def indexed(n: int, shape=(1, 2, 3)):
    """Images whose every pixel holds its sample index (mod 256), labels = index."""
    labels = torch.arange(n)
    images = (labels % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, *shape).contiguous()
    return images, labels


# ----------------------------------------------------------------------------- DeviceLoader


def collect(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_every_index_once_per_epoch_with_ragged_last_batch():
    images, labels = indexed(103)
    loader = DeviceLoader(images, labels, 10, seed=3)
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = collect(loader)
        assert len(batches) == len(loader) == 11
        assert [len(y) for _, y in batches] == [10] * 10 + [3]
        seen = torch.cat([y for _, y in batches])
        assert torch.equal(seen.sort().values, torch.arange(103))
        for x, y in batches:  # images travel with their labels
            assert torch.equal(x[:, 0, 0, 0], (y % 256).to(torch.uint8))


def test_order_is_the_documented_randperm():
    images, labels = indexed(50)
    loader = DeviceLoader(images, labels, 7, seed=11)
    loader.set_epoch(4)
    generator = torch.Generator().manual_seed(derive_seed(11, "loader-order", 4))
    expected = torch.randperm(50, generator=generator)
    assert torch.equal(torch.cat([y for _, y in loader]), expected)


def test_same_seed_same_order_other_epochs_and_seeds_differ():
    images, labels = indexed(64)

    def order(seed, epoch):
        loader = DeviceLoader(images, labels, 16, seed=seed)
        loader.set_epoch(epoch)
        return torch.cat([y for _, y in loader])

    assert torch.equal(order(1, 2), order(1, 2))
    assert not torch.equal(order(1, 2), order(1, 3))
    assert not torch.equal(order(1, 2), order(2, 2))


def test_resumed_loader_matches_uninterrupted_one():
    images, labels = indexed(40)
    running = DeviceLoader(images, labels, 8, seed=5, transform=random_hflip)
    for epoch in range(3):
        running.set_epoch(epoch)
        last = collect(running)
    resumed = DeviceLoader(images, labels, 8, seed=5, transform=random_hflip)
    resumed.set_epoch(2)
    for (x1, y1), (x2, y2) in zip(last, collect(resumed), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_drop_last():
    images, labels = indexed(103)
    loader = DeviceLoader(images, labels, 10, seed=0, drop_last=True)
    batches = collect(loader)
    assert len(loader) == len(batches) == 10 and all(len(y) == 10 for _, y in batches)
    assert len(torch.cat([y for _, y in batches]).unique()) == 100
    exact = DeviceLoader(*indexed(100), 10, drop_last=True)
    assert len(exact) == 10


def test_unshuffled_iteration_is_in_order_and_views():
    images, labels = indexed(25)
    loader = DeviceLoader(images, labels, 10, shuffle=False)
    batches = list(loader)
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(25))
    assert torch.equal(torch.cat([x for x, _ in batches]), images)
    assert batches[0][0].data_ptr() == loader.images.data_ptr()  # no copy for evaluation


def test_transform_receives_uint8_and_a_seeded_generator():
    images, labels = indexed(30)
    received = []

    def transform(x, generator):
        received.append((x.dtype, x.shape[0], generator.initial_seed()))
        return x.float() / 255

    loader = DeviceLoader(images, labels, 12, seed=9, transform=transform)
    loader.set_epoch(1)
    out = collect(loader)
    assert [r[:2] for r in received] == [(torch.uint8, 12), (torch.uint8, 12), (torch.uint8, 6)]
    assert {r[2] for r in received} == {derive_seed(9, "loader-transform", 1)}
    assert all(x.dtype == torch.float32 and x.max() <= 1 for x, _ in out)


def test_transform_draws_are_deterministic_per_epoch():
    images = torch.randint(0, 256, (64, 1, 4, 5), generator=torch.Generator().manual_seed(0))
    images = images.to(torch.uint8)
    labels = torch.arange(64)

    def flips(epoch):
        loader = DeviceLoader(images, labels, 64, seed=1, transform=random_hflip)
        loader.set_epoch(epoch)
        x, y = next(iter(loader))
        return (x != images[y]).flatten(1).any(1)

    assert torch.equal(flips(0), flips(0)) and not torch.equal(flips(0), flips(1))


def test_constructor_validation():
    images, labels = indexed(10)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        DeviceLoader(images, labels, 0)
    with pytest.raises(ValueError, match="disagree on the number of samples: 10 vs 9"):
        DeviceLoader(images, labels[:9], 4)
    with pytest.raises(ValueError, match="transform must be callable"):
        DeviceLoader(images, labels, 4, transform="flip")
    with pytest.raises(ValueError, match="epoch must be a non-negative int"):
        DeviceLoader(images, labels, 4).set_epoch(-1)


def test_device_defaults_to_the_inputs_device():
    images, labels = indexed(4)
    assert DeviceLoader(images, labels, 2).device == images.device
    assert DeviceLoader(images, labels, 2, device="cpu").images.device.type == "cpu"


# ----------------------------------------------------------------------------- split_validation


def test_split_validation_partitions_by_seed():
    images, labels = indexed(50)
    train_x, train_y, val_x, val_y = split_validation(images, labels, 0.2, seed=3)
    assert len(val_y) == 10 and len(train_y) == 40
    assert torch.equal(torch.cat([train_y, val_y]).sort().values, torch.arange(50))
    assert torch.equal(train_x[:, 0, 0, 0], train_y.to(torch.uint8))
    assert torch.equal(val_y, val_y.sort().values)  # original order kept
    again = split_validation(images, labels, 0.2, seed=3)
    other = split_validation(images, labels, 0.2, seed=4)
    assert torch.equal(again[3], val_y) and not torch.equal(other[3], val_y)


def test_split_validation_rejects_bad_fractions():
    images, labels = indexed(10)
    for fraction in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction must be in"):
            split_validation(images, labels, fraction, seed=0)
    with pytest.raises(ValueError, match="both must be at least 1"):
        split_validation(images, labels, 0.01, seed=0)
