"""trainlab.preprocess: streaming statistics against one-shot float64 numpy, and normalizers
against hand computations."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainlab import preprocess
from trainlab.errors import DataError, RegistryError
from trainlab.preprocess import (
    NORMALIZERS,
    DatasetStats,
    FlatStatsAccumulator,
    StatsAccumulator,
    compute_flat_stats,
    compute_stats,
    dataset_stats,
    fit_normalizer,
    format_stats,
    make_normalizer,
)

RTOL = 1e-9


def _uint8(n: int, shape=(3, 5, 4), seed: int = 0, low: int = 0, high: int = 256) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (n, *shape), dtype=torch.uint8, generator=g)


def _reference(images: np.ndarray) -> dict[str, np.ndarray]:
    """One-shot float64 numpy statistics, population variance, on the [0, 1] scale."""
    a = images.astype(np.float64)
    if images.dtype == np.uint8:
        a = a / 255.0
    c = a.shape[1]
    pixels = a.transpose(1, 0, 2, 3).reshape(c, -1)
    return {
        "mean": np.asarray(a.mean()),
        "std": np.asarray(a.std()),
        "mean_image": a.mean(0),
        "pixel_std": a.std(0),
        "channel_mean": pixels.mean(1),
        "channel_std": pixels.std(1),
        "channel_cov": np.cov(pixels, bias=True).reshape(c, c),
    }


def _assert_close(actual: torch.Tensor, expected: np.ndarray, rtol: float = RTOL, name: str = ""):
    """Relative to the reference's scale: entries near zero (covariances) get that scale too."""
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, name
    scale = max(np.max(np.abs(expected)), 1e-300)
    err = np.max(np.abs(actual - expected)) / scale if expected.size else 0.0
    assert err <= rtol, f"{name}: relative error {err:.3g} > {rtol}"


def _assert_matches_reference(stats: DatasetStats, images: np.ndarray, rtol: float = RTOL):
    ref = _reference(images)
    assert stats.count == images.shape[0]
    for name, expected in ref.items():
        _assert_close(getattr(stats, name), expected, rtol, name)


def _assert_same_stats(a: DatasetStats, b: DatasetStats, rtol: float):
    assert a.count == b.count
    for name in ("mean", "std", "mean_image", "pixel_std", "channel_mean", "channel_cov"):
        _assert_close(getattr(a, name), getattr(b, name).numpy(), rtol, name)


# ---------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("low", [0, 250])  # 250..255: variance tiny beside mean^2 (cancellation)
def test_uint8_stats_match_numpy(low):
    images = _uint8(41, low=low)
    stats = compute_stats(images, batch_size=7)
    _assert_matches_reference(stats, images.numpy())
    assert all(t.dtype == torch.float64 and t.device.type == "cpu" for t in _tensors(stats))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_float_stats_match_numpy(dtype):
    g = torch.Generator().manual_seed(1)
    # values near 0.7 with spread 1e-3: a naive sum-of-squares variance would lose ~6 digits
    images = (0.7 + 1e-3 * torch.randn(29, 2, 3, 3, generator=g, dtype=torch.float64)).to(dtype)
    stats = compute_stats(images, batch_size=5)
    _assert_matches_reference(stats, images.numpy())


def _tensors(stats: DatasetStats):
    return [getattr(stats, name) for name in DatasetStats._TENSORS]


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 60), max_size=8),
    use_float=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_batch_split_gives_one_shot_result(cuts, use_float, seed):
    images = _uint8(60, shape=(3, 4, 2), seed=seed)
    data = images.to(torch.float64) / 255.0 if use_float else images
    bounds = sorted({0, 60, *cuts, 1, 2})  # always one size-1 batch at the start
    acc = StatsAccumulator()
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        acc.update(data[lo:hi])
    _assert_matches_reference(acc.result(), data.numpy())


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=3, max_size=3), seed=st.integers(0, 2**16))
def test_merge_is_associative_and_equals_one_pass(sizes, seed):
    images = _uint8(sum(sizes), shape=(2, 3, 3), seed=seed)
    parts = torch.split(images, sizes)

    def acc(i):
        return StatsAccumulator().update(parts[i])

    left = acc(0).merge(acc(1)).merge(acc(2)).result()
    right = acc(0).merge(acc(1).merge(acc(2))).result()
    swapped = acc(2).merge(acc(0)).merge(acc(1)).result()
    one_pass = StatsAccumulator().update(images).result()
    for other in (right, swapped, one_pass):
        _assert_same_stats(left, other, 1e-12)


def test_uint8_and_float_batches_mix_on_the_same_scale():
    images = _uint8(20)
    acc = StatsAccumulator().update(images[:8]).update(images[8:].to(torch.float64) / 255.0)
    _assert_same_stats(acc.result(), compute_stats(images), 1e-12)


def test_numpy_input_and_empty_batch():
    images = _uint8(9)
    acc = StatsAccumulator().update(images.numpy()).update(images[:0])
    _assert_matches_reference(acc.result(), images.numpy())


@pytest.mark.parametrize("use_float", [False, True])
def test_many_chunks_inside_one_update(monkeypatch, use_float):
    images = _uint8(50, shape=(3, 4, 4))
    data = images.to(torch.float64) / 255.0 if use_float else images
    monkeypatch.setattr(preprocess, "CHUNK_ELEMENTS", 100)  # 2 images per chunk
    threads = torch.get_num_threads()
    before = data.clone()
    stats = StatsAccumulator().update(data).result()
    assert torch.get_num_threads() == threads  # the process's thread setting is left alone
    assert torch.equal(data, before)  # the chunks' deviations never overwrite the input
    _assert_matches_reference(stats, data.numpy())
    again = StatsAccumulator().update(data).result()
    assert all(torch.equal(a, b) for a, b in zip(_tensors(stats), _tensors(again), strict=True))


def test_constant_images_have_zero_spread_exactly():
    images = _uint8(300, shape=(1, 1, 1), low=255)  # all 255: any cancellation would show
    stats = compute_stats(images, batch_size=7)
    _assert_matches_reference(stats, images.numpy())
    assert float(stats.std) == 0.0 and float(stats.mean) == 1.0


def test_eigen_decomposition_reconstructs_covariance():
    g = torch.Generator().manual_seed(2)
    mix = torch.tensor([[1.0, 0.5, 0.2], [0.0, 1.0, 0.7], [0.0, 0.0, 0.3]], dtype=torch.float64)
    noise = torch.randn(40, 8, 8, 3, generator=g, dtype=torch.float64)
    images = (0.5 + 0.1 * noise @ mix).permute(0, 3, 1, 2)
    stats = compute_stats(images)
    vals, vecs = stats.eigenvalues, stats.eigenvectors
    torch.testing.assert_close(
        vecs @ torch.diag(vals) @ vecs.T, stats.channel_cov, rtol=0, atol=1e-15
    )
    torch.testing.assert_close(vecs.T @ vecs, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-13)
    assert torch.all(vals[:-1] >= vals[1:])
    np.testing.assert_allclose(vals.numpy(), np.linalg.eigvalsh(stats.channel_cov.numpy())[::-1])
    pivots = vecs.abs().argmax(0)
    assert torch.all(vecs[pivots, torch.arange(3)] > 0)


def test_single_image_has_zero_pixel_std():
    stats = compute_stats(_uint8(1))
    assert torch.all(stats.pixel_std == 0)
    assert stats.count == 1


@pytest.mark.parametrize(
    ("batch", "error"),
    [
        (torch.zeros(2, 3, 4, dtype=torch.uint8), ValueError),
        (torch.zeros(2, 3, 4, 4, dtype=torch.int32), TypeError),
        ([1, 2, 3], TypeError),
    ],
)
def test_update_rejects_bad_batches(batch, error):
    with pytest.raises(error, match="batch|tensor"):
        StatsAccumulator().update(batch)


def test_shape_mismatch_and_empty_result_raise():
    acc = StatsAccumulator().update(_uint8(2, shape=(3, 4, 4)))
    with pytest.raises(ValueError, match=r"\(1, 4, 4\) differs"):
        acc.update(_uint8(2, shape=(1, 4, 4)))
    with pytest.raises(ValueError, match="differs"):
        acc.merge(StatsAccumulator().update(_uint8(2, shape=(3, 2, 2))))
    with pytest.raises(ValueError, match="no images"):
        StatsAccumulator().result()
    with pytest.raises(ValueError, match="batch_size"):
        compute_stats(_uint8(2), batch_size=0)


def test_dict_and_file_round_trip_is_exact(tmp_path):
    stats = compute_stats(_uint8(13))
    back = DatasetStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    for name in DatasetStats._TENSORS:
        assert torch.equal(getattr(back, name), getattr(stats, name)), name
    path = tmp_path / "s.json"
    stats.save(path)
    loaded = DatasetStats.load(path)
    assert loaded.count == stats.count and torch.equal(loaded.channel_cov, stats.channel_cov)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary behind


def test_from_dict_rejects_bad_input(tmp_path):
    data = compute_stats(_uint8(3)).to_dict()
    with pytest.raises(DataError, match="channel_cov"):
        DatasetStats.from_dict({**data, "channel_cov": [[1.0]]})
    with pytest.raises(DataError, match="format"):
        DatasetStats.from_dict({**data, "format": "other"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        DatasetStats.load(tmp_path / "bad.json")


def test_flat_stats_match_numpy_for_any_split():
    images = _uint8(30, shape=(1, 3, 3), seed=4)
    acc = FlatStatsAccumulator()
    for lo, hi in [(0, 1), (1, 11), (11, 12), (12, 30)]:
        acc.update(images[lo:hi])
    flat = images.numpy().reshape(30, -1).astype(np.float64) / 255.0
    result = acc.result()
    _assert_close(result.mean, flat.mean(0), RTOL, "mean")
    _assert_close(result.cov, np.cov(flat.T, bias=True), RTOL, "cov")


def test_flat_stats_refuse_large_images():
    with pytest.raises(ValueError, match="max_dim"):
        FlatStatsAccumulator(max_dim=100).update(_uint8(2, shape=(3, 8, 8)))


def test_format_stats_shows_channel_values():
    stats = compute_stats(_uint8(5))
    text = format_stats(stats)
    assert f"{float(stats.channel_mean[1]):.6f}" in text
    assert f"{float(stats.channel_std[2]):.6f}" in text
    assert "5 images of 3x5x4" in text


# ---------------------------------------------------------------------------- normalizers


def _fitted(images: torch.Tensor, spec: str):
    if spec.split("(")[0] in ("pca_whiten", "zca_whiten"):
        return make_normalizer(spec, compute_flat_stats(images))
    return make_normalizer(spec, compute_stats(images))


def test_each_normalizer_matches_a_numpy_computation():
    images = _uint8(16)
    x = images.numpy().astype(np.float64) / 255.0
    ref = _reference(images.numpy())
    cm = ref["channel_mean"][:, None, None]
    cs = ref["channel_std"][:, None, None]
    expected = {
        "scale": x,
        "none": x * 255.0,
        "mean_image": x - ref["mean_image"],
        "channel_mean": x - cm,
        "standardize": (x - cm) / cs,
    }
    stats = compute_stats(images)
    for spec, want in expected.items():
        norm = make_normalizer(spec, stats)
        out = norm(images)
        assert out.dtype == torch.float32, spec
        np.testing.assert_allclose(out.numpy(), want, rtol=0, atol=2e-5, err_msg=spec)
        as_float = norm(images.to(torch.float32) / 255.0)  # float input on [0, 1] is the same
        np.testing.assert_allclose(as_float.numpy(), want, rtol=0, atol=2e-5, err_msg=spec)


def test_standardized_training_data_has_zero_mean_unit_std():
    images = _uint8(64, low=30, high=200)
    out = make_normalizer("standardize", compute_stats(images))(images).double()
    per_channel = out.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(
        per_channel.mean(1), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        per_channel.std(1, correction=0), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-5
    )


SPECS = [
    "scale",
    "none",
    "mean_image",
    "channel_mean",
    "standardize",
    "pca_whiten",
    "zca_whiten(0.01)",
]


@pytest.mark.parametrize("spec", SPECS)
def test_state_dict_round_trip_into_an_empty_normalizer(spec):
    images = _uint8(40, shape=(1, 4, 4), seed=5)
    fitted = _fitted(images, spec)
    buffer = io.BytesIO()
    torch.save(fitted.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    empty = make_normalizer(spec, shape=(1, 4, 4))
    empty.load_state_dict(state)
    probe = _uint8(7, shape=(1, 4, 4), seed=6)
    assert torch.equal(empty(probe), fitted(probe))
    if state:  # statistics live in buffers, so they are in the checkpoint
        assert all(not p.requires_grad for p in empty.parameters())
        assert set(state) == {name for name, _ in fitted.named_buffers()}


@pytest.mark.parametrize("kind", ["pca", "zca"])
def test_whitening_gives_identity_covariance_on_fitting_data(kind):
    g = torch.Generator().manual_seed(7)
    d = 12
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    spread = torch.linspace(0.02, 0.1, d, dtype=torch.float64)  # std along each axis
    data = 0.5 + (torch.randn(500, d, generator=g, dtype=torch.float64) * spread) @ basis.T
    images = data.reshape(500, 3, 2, 2)
    eps = 1e-8
    flat_stats = compute_flat_stats(images)
    norm = make_normalizer(f"{kind}_whiten({eps})", flat_stats)
    out = norm(images).reshape(500, d).double()
    cov_out = np.cov(out.numpy().T, bias=True)
    lam = np.linalg.eigvalsh(np.cov(data.numpy().T, bias=True))
    assert lam.min() > 1e3 * eps  # so lambda / (lambda + eps) is 1 within 1e-3
    np.testing.assert_allclose(cov_out, np.eye(d), rtol=0, atol=2e-3)
    np.testing.assert_allclose(out.numpy().mean(0), np.zeros(d), rtol=0, atol=1e-4)
    w = norm.matrix.double().numpy()
    if kind == "zca":  # ZCA is the symmetric inverse square root of the covariance
        np.testing.assert_allclose(w, w.T, rtol=0, atol=1e-4 * np.abs(w).max())
    else:  # row k is u_k / sqrt(lambda_k + eps): principal components, largest variance first
        row_norms = np.linalg.norm(w, axis=1)
        np.testing.assert_allclose(row_norms, 1 / np.sqrt(lam[::-1] + eps), rtol=1e-4)


def test_whitening_eps_damps_small_directions():
    images = _uint8(300, shape=(1, 2, 2), seed=8)
    flat_stats = compute_flat_stats(images)
    lam = np.linalg.eigvalsh(flat_stats.cov.numpy())[::-1]
    eps = float(lam[0])  # as large as the top eigenvalue: that direction keeps half its variance
    out = make_normalizer(f"pca_whiten({eps})", flat_stats)(images).reshape(300, 4).double()
    np.testing.assert_allclose(out.numpy().var(0), lam / (lam + eps), rtol=1e-4)


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        ("standardise", {"shape": (3, 2, 2)}, "did you mean 'standardize'"),
        ("zca_whiten(-1)", {"shape": (1, 2, 2)}, "eps"),
        ("zca_whiten", {"shape": (3, 64, 64)}, "D <= "),
        ("standardize", {}, "shape"),
        ("standardize", {"shape": (3, 2)}, "shape"),
        ("mean_image", {"shape": (1, 5, 4), "stats": compute_stats(_uint8(2))}, "differs"),
    ],
)
def test_bad_specs_raise_registry_errors(spec, kwargs, match):
    with pytest.raises(RegistryError, match=match):
        make_normalizer(spec, **kwargs)


@pytest.mark.parametrize("name", ["pca_whiten", "zca_whiten"])
@pytest.mark.parametrize("eps", [-1, 0, float("nan"), float("inf"), True, "small"])
@pytest.mark.parametrize("shape", [None, (3, 32, 32), (3, 64, 64)])
def test_whitening_eps_is_checked_before_data_or_shape(name, eps, shape):
    # A recipe check builds the factory without data: the argument's error must come first.
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0, got"):
        NORMALIZERS.get(name)(eps, shape=shape)


def test_scale_and_none_check_a_given_shape():
    for spec in ("scale", "none"):
        assert make_normalizer(spec).shape is None
        assert make_normalizer(spec, shape=(1, 2, 2)).shape == (1, 2, 2)
        with pytest.raises(RegistryError, match=r"shape: expected \(C, H, W\)"):
            make_normalizer(spec, shape=(3, 0, 2))


def test_wrong_statistics_kind_is_refused():
    with pytest.raises(RegistryError, match="FlatStats"):
        make_normalizer("zca_whiten", compute_stats(_uint8(3)))
    with pytest.raises(RegistryError, match="DatasetStats"):
        make_normalizer("standardize", compute_flat_stats(_uint8(3)))


def test_constant_channel_cannot_be_standardized():
    images = _uint8(4)
    images[:, 1] = 9
    with pytest.raises(RegistryError, match=r"channel\(s\) \[1\]"):
        make_normalizer("standardize", compute_stats(images))


def test_normalizer_checks_input_shape():
    norm = make_normalizer("mean_image", compute_stats(_uint8(3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 5, 4\)"):
        norm(_uint8(2, shape=(3, 4, 5)))


def test_registry_lists_all_kinds():
    assert set(NORMALIZERS.names()) >= set(s.split("(")[0] for s in SPECS)


# ---------------------------------------------------------------------------- caching


def _dataset(images, name="toy", source="mem"):
    return SimpleNamespace(name=name, source=source, train_images=images)


def test_dataset_stats_are_cached_and_invalidated(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path))
    calls = []
    real = preprocess.compute_stats
    monkeypatch.setattr(preprocess, "compute_stats", lambda x: calls.append(1) or real(x))
    images = _uint8(11)
    first = dataset_stats(_dataset(images))
    second = dataset_stats(_dataset(images.clone()))
    assert len(calls) == 1
    assert torch.equal(first.channel_cov, second.channel_cov)
    assert len(list((tmp_path / "stats").glob("*.json"))) == 1
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1
    third = dataset_stats(_dataset(changed))
    assert len(calls) == 2
    _assert_matches_reference(third, changed.numpy())
    dataset_stats(_dataset(images, source="elsewhere"))
    assert len(calls) == 3
    dataset_stats(_dataset(images), cache=False)
    assert len(calls) == 4


def test_damaged_cache_entry_is_recomputed(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path))
    images = _uint8(6)
    dataset_stats(_dataset(images))
    (entry,) = (tmp_path / "stats").glob("*.json")
    entry.write_text("{}")
    _assert_matches_reference(dataset_stats(_dataset(images)), images.numpy())


def test_flat_stats_cache_and_fit_normalizer(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path))
    calls = []
    real = preprocess.compute_flat_stats
    monkeypatch.setattr(
        preprocess, "compute_flat_stats", lambda x, **kw: calls.append(1) or real(x, **kw)
    )
    ds = _dataset(_uint8(50, shape=(1, 3, 3)))
    a = fit_normalizer("zca_whiten(0.01)", ds)
    b = fit_normalizer("zca_whiten(0.01)", ds)
    assert len(calls) == 1
    assert torch.equal(a.matrix, b.matrix)
    std = fit_normalizer("standardize", ds)
    torch.testing.assert_close(
        std.mean.flatten().double(), dataset_stats(ds).channel_mean, rtol=0, atol=1e-7
    )
    with pytest.raises(RegistryError, match="unknown normalizer"):
        fit_normalizer("whiten", ds)
