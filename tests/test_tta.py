"""trainlab.augment.TTA: test-time averaging against explicit per-view computations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.augment import TTA


class TinyNet(nn.Module):
    """A small conv net on float or uint8 images; records the batch sizes it sees."""

    def __init__(self, flip_invariant: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)  # weights only; augmentation draws never use the global RNG
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)
        self.flip_invariant = flip_invariant
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.shape[0])
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        if self.flip_invariant:
            x = (x + x.flip(-1)) / 2
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def batch(b: int = 4, h: int = 12, w: int = 10) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g)


def test_flip_tta_of_a_flip_invariant_model_equals_the_model():
    model = TinyNet(flip_invariant=True).eval()
    x = batch()
    with torch.no_grad():
        torch.testing.assert_close(TTA(model, flips=True)(x), model(x), atol=1e-6, rtol=1e-6)


def test_flip_tta_averages_logits_of_image_and_mirror():
    model = TinyNet().eval()
    x = batch().float() / 255
    with torch.no_grad():
        expected = (model(x) + model(x.flip(-1))) / 2
        assert not torch.allclose(model(x), expected)  # the average matters for this model
        torch.testing.assert_close(TTA(model)(x), expected)


def test_ten_crop_probs_average_matches_explicit_views():
    model = TinyNet().eval()
    x = batch(h=12, w=10)
    crops = [(0, 0), (0, 3), (4, 0), (4, 3), (2, 2)]  # TL, TR, BL, BR, centre for 8x7 of 12x10
    views = [x[..., t : t + 8, l : l + 7] for t, l in crops]
    views += [x.flip(-1)[..., t : t + 8, l : l + 7] for t, l in crops]
    with torch.no_grad():
        probs = torch.stack([model(v).softmax(-1) for v in views]).mean(0)
        out = TTA(model, crops=10, crop_size=(8, 7), average="probs")(x)
    torch.testing.assert_close(out.exp(), probs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(x.shape[0]))


def test_five_crops_without_flips_and_centre_crop():
    model = TinyNet().eval()
    x = batch(h=12, w=10)
    with torch.no_grad():
        five = TTA(model, flips=False, crops=5, crop_size=8)(x)
        explicit = [
            x[..., :8, :8],
            x[..., :8, 2:],
            x[..., 4:, :8],
            x[..., 4:, 2:],
            x[..., 2:10, 1:9],
        ]
        torch.testing.assert_close(five, torch.stack([model(v) for v in explicit]).mean(0))
        centre = TTA(model, flips=False, crop_size=8)(x)
        torch.testing.assert_close(centre, model(x[..., 2:10, 1:9]))


def test_max_batch_chunks_the_forward_pass_without_changing_results():
    model = TinyNet().eval()
    x = batch(b=5)
    with torch.no_grad():
        whole = TTA(model, crops=10, crop_size=8)(x)
        assert model.seen[-1] == 50  # all 10 views of 5 images in one forward pass
        model.seen.clear()
        chunked = TTA(model, crops=10, crop_size=8, max_batch=16)(x)
    assert max(model.seen) <= 16 and sum(model.seen) == 50
    torch.testing.assert_close(chunked, whole)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="crop_size"):
        TTA(TinyNet(), crops=5)
    with pytest.raises(ValueError, match="average"):
        TTA(TinyNet(), average="votes")
    with pytest.raises(ValueError, match="crops"):
        TTA(TinyNet(), crops=3, crop_size=4)


@pytest.mark.parametrize(
    "kwargs, name", [({"max_batch": 2.5}, "max_batch"), ({"flips": 1}, "flips")]
)
def test_values_refused_by_meaning(kwargs, name):
    with pytest.raises(ValueError, match=rf"{name} must be .*got"):
        TTA(nn.Identity(), **kwargs)
