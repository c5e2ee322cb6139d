import math

import pytest
import torch

from trainlab.errors import RegistryError
from trainlab.regularize.pooling import (
    POOLING,
    FractionalMaxPool2d,
    output_length,
    pseudo_random_boundaries,
    random_boundaries,
)
from trainlab.seeding import derive_seed

pytestmark = pytest.mark.usefixtures("one_thread")


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_pseudo_random_boundaries_hand_cases():
    # L = 5, n = 3, alpha = 5/3: a_i = ceil(5 (i + u) / 3) - ceil(5 u / 3), worked by hand
    got = pseudo_random_boundaries(5, 3, torch.tensor([0.5, 0.9, 0.1]))
    assert got.tolist() == [[0, 2, 4, 5], [0, 2, 3, 5], [0, 1, 3, 5]]
    # alpha = 1.5 and u = 1/2: ceil(1.5 i + 0.75) - 1 -> 0, 2, 3, 5, 6
    assert pseudo_random_boundaries(6, 4, torch.tensor([0.5])).tolist() == [[0, 2, 3, 5, 6]]


@pytest.mark.parametrize("length, n_out", [(10, 7), (31, 22), (9, 5), (8, 8)])
def test_boundaries_have_steps_of_one_and_two(length, n_out):
    g = torch.Generator().manual_seed(1)
    pseudo = pseudo_random_boundaries(length, n_out, torch.rand(50, generator=g))
    rand = random_boundaries(length, n_out, 50, g, torch.device("cpu"))
    for bounds in (pseudo, rand):
        steps = bounds.diff(dim=-1)
        assert bounds.shape == (50, n_out + 1)
        assert (bounds[:, 0] == 0).all() and (bounds[:, -1] == length).all()
        assert ((steps == 1) | (steps == 2)).all()
        assert ((steps == 2).sum(-1) == length - n_out).all()
    if 0 < length - n_out < n_out:  # both kinds of step present: the order really varies
        assert len({tuple(r) for r in rand.tolist()}) > 1


def test_output_size_is_floor_of_n_over_ratio_clamped():
    assert output_length(32, math.sqrt(2), overlapping=False) == 22
    assert output_length(32, 1.5, overlapping=True) == 21
    assert output_length(5, 1.9, overlapping=False) == 3  # floor(2.63) = 2 < ceil(5/2): clamped
    layer = FractionalMaxPool2d(1.25)
    assert layer(torch.zeros(1, 1, 20, 10)).shape == (1, 1, 16, 8)


def naive_pool(x, rows, cols, overlapping):
    """Reference: a loop over regions with slicing and amax."""
    extra = 1 if overlapping else 0
    out = torch.empty(*x.shape[:2], len(rows) - 1, len(cols) - 1)
    for i in range(len(rows) - 1):
        for j in range(len(cols) - 1):
            region = x[:, :, rows[i] : rows[i + 1] + extra, cols[j] : cols[j + 1] + extra]
            out[:, :, i, j] = region.amax(dim=(2, 3))
    return out


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("pseudo_random", [False, True])
def test_values_match_naive_loop(overlapping, pseudo_random):
    x = randn(2, 3, 9, 11)
    layer = FractionalMaxPool2d(1.4, pseudo_random=pseudo_random, overlapping=overlapping, seed=2)
    y = layer(x)
    # replay the layer's draws to learn its regions
    g = torch.Generator().manual_seed(2)
    h_out, w_out = layer.output_shape(9, 11)
    rows = layer._boundaries(9, h_out, 1, g, x.device)[0].tolist()
    cols = layer._boundaries(11, w_out, 1, g, x.device)[0].tolist()
    torch.testing.assert_close(y, naive_pool(x, rows, cols, overlapping), rtol=0, atol=0)
    layer.eval()
    length_h, length_w = (8, 10) if overlapping else (9, 11)
    canonical_rows = [math.ceil(length_h * (i + 0.5) / h_out) for i in range(h_out + 1)]
    canonical_cols = [math.ceil(length_w * (i + 0.5) / w_out) for i in range(w_out + 1)]
    rows = [a - canonical_rows[0] for a in canonical_rows]
    cols = [a - canonical_cols[0] for a in canonical_cols]
    torch.testing.assert_close(layer(x), naive_pool(x, rows, cols, overlapping), rtol=0, atol=0)


def test_per_sample_layouts_differ_and_match_naive_loop():
    x = randn(4, 1, 12, 12, seed=3)
    layer = FractionalMaxPool2d(1.5, pseudo_random=False, per_sample=True, seed=4)
    y = layer(x)
    g = torch.Generator().manual_seed(4)
    rows = layer._boundaries(12, 8, 4, g, x.device).tolist()
    cols = layer._boundaries(12, 8, 4, g, x.device).tolist()
    assert len({tuple(r) for r in rows}) > 1
    for b in range(4):
        ref = naive_pool(x[b : b + 1], rows[b], cols[b], overlapping=False)
        torch.testing.assert_close(y[b : b + 1], ref, rtol=0, atol=0)


def test_eval_deterministic_train_varies_seeded_identical():
    x = randn(2, 2, 15, 15)
    a, b = FractionalMaxPool2d(seed=5), FractionalMaxPool2d(seed=5)
    state = torch.get_rng_state()
    draws = [a(x) for _ in range(6)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert all(torch.equal(d, b(x)) for d in draws)
    assert torch.equal(torch.get_rng_state(), state)
    a.eval()
    assert torch.equal(a(x), a(x))
    avg = FractionalMaxPool2d(seed=5, test_samples=8).eval()
    assert torch.equal(avg(x), avg(x))


def test_test_samples_averages_k_draws_of_the_eval_stream():
    x = randn(2, 2, 10, 10)
    k = 5
    avg = FractionalMaxPool2d(1.3, test_samples=k, seed=6).eval()
    # the paper's rule, replayed: k single-batch draws from a generator seeded for eval
    replay = FractionalMaxPool2d(1.3, generator=torch.Generator(), seed=6)
    replay.generator_for("cpu").manual_seed(derive_seed(6, "eval"))
    expected = torch.stack([replay(x) for _ in range(k)]).mean(0)
    torch.testing.assert_close(avg(x), expected)


def test_gradient_flows_to_region_maxima():
    x = randn(1, 1, 6, 6).requires_grad_()
    FractionalMaxPool2d(1.5).eval()(x).sum().backward()
    # disjoint regions tile the input: each region's max gets gradient 1, everything else 0
    assert x.grad.sum().item() == 16 and set(x.grad.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("ratio", [1.0, 2.0, 0.5, 2.5, (1.5, 2.0)])
def test_ratio_outside_open_interval_is_refused(ratio):
    with pytest.raises(ValueError, match=r"ratio must be in \(1, 2\)"):
        FractionalMaxPool2d(ratio)


def test_other_bad_arguments():
    with pytest.raises(RegistryError, match="not both"):
        FractionalMaxPool2d(1.5, output_size=4)
    with pytest.raises(RegistryError, match="output_size"):
        FractionalMaxPool2d(output_size=2)(torch.zeros(1, 1, 10, 10))
    with pytest.raises(RegistryError, match="test_samples"):
        FractionalMaxPool2d(test_samples=-1)
    assert FractionalMaxPool2d(output_size=(7, 5))(torch.zeros(1, 1, 10, 9)).shape[2:] == (7, 5)


def test_registry():
    layer = POOLING.create("fractional_max_pool(1.5, overlapping=True, test_samples=4)")
    assert layer.ratio == (1.5, 1.5) and layer.overlapping and layer.test_samples == 4
    with pytest.raises(RegistryError, match="ratio"):
        POOLING.create("fmp(2.0)")


@pytest.mark.parametrize(
    "factory, args, kwargs, name",
    [
        ("fmp", (), {"ratio": float("nan")}, "ratio"),
        ("fmp", (float("inf"),), {}, "ratio"),
        ("fmp", (0,), {}, "ratio"),
        ("fmp", (1.5,), {"overlapping": "yes"}, "overlapping"),
        ("fmp", (1.5,), {"test_samples": 2.5}, "test_samples"),
    ],
)
def test_factories_refuse_values_by_meaning(factory, args, kwargs, name):
    # ValueError naming the argument and its value, at construction
    with pytest.raises(ValueError, match=rf"{name}.* must be .*got"):
        POOLING.get(factory)(*args, **kwargs)
