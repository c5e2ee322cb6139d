"""Distributed training: the sharding arithmetic in-process, then real 2-process gloo jobs.

The jobs run under ``torchrun --standalone`` through a small launcher written by the test: it
calls the CLI unchanged, after planting test-only behaviour in the process (rank 1 refuses to
write files; rank 1 dies or raises mid-run). Production code carries no test hooks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from trainlab.augment import make_pipeline
from trainlab.data import DeviceLoader
from trainlab.distributed import (
    DistContext,
    ShardedLoader,
    all_reduce_,
    average_buffers,
    broadcast_object,
    check_batch_split,
    env_context,
    reduce_diagnostics_,
    reduce_stats_,
    shard_bounds,
    slice_params,
    timeout,
)
from trainlab.errors import RecipeError
from trainlab.recipe import load_recipe
from trainlab.train import evaluate, evaluate_sharded, fit, load_checkpoint

TORCHRUN = Path(sys.executable).with_name("torchrun")
SRC = Path(__file__).resolve().parents[1] / "src"

# Float32 sums over a batch split in two and averaged by DDP differ from the one-process sums by
# rounding (~1e-7 relative per gradient); over the 16 SGD steps of these runs the weights
# (|w| < 2) drift apart by under 1e-6 in practice. 1e-5 leaves room and still catches any
# real difference (a wrong shard, a lost sample or misweighted loss moves weights by ~1e-2).
WEIGHT_TOL = 1e-5

RECIPE = """
[data]
name = "synthetic(n=512, classes=4, size=16)"
subset = 501                  # last batch 53 = 26 + 27: an uneven split, weighted losses
normalize = "scale"
[model]
norm = "none"                 # per-rank batch norm would differ from one process by design
widths = [8, 16]
[train]
epochs = 2
batch_size = 64
device = "cpu"
[augment]
train = ["pad_crop(2)", "hflip", "jitter(0.3, 0.3, 0.3, p=0.5)"]
"""

LAUNCHER = """
import os, signal, sys
import trainlab.distributed as D
import trainlab.report
import trainlab.engine.checkpoint as C
import trainlab.engine.folder as F
import trainlab.engine.loop as L
from trainlab.cli import main

rank, mode = int(os.environ["RANK"]), os.environ.get("TEST_MODE", "")
if rank != 0:
    def refuse(*args, **kwargs):
        raise AssertionError(f"rank {rank} tried to write a file")
    F.write_text = F.write_json = L.write_text = C.write_checkpoint = refuse
    trainlab.report.write_report = refuse
if rank == 1 and mode:
    weight = D.ShardedLoader.loss_weight
    def planted(self, i):
        # step 1 of epoch 2: rank 0 has written the epoch-1 checkpoint (step 0's all-reduce waited)
        if self.epoch == 1 and i == 1:
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("planted failure")
        return weight(self, i)
    D.ShardedLoader.loss_weight = planted
sys.exit(main(sys.argv[1:]))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", TRAINLAB_DIST_TIMEOUT="30", **extra)
    return env


def _torchrun(tmp: Path, args: list[str], **env: str) -> subprocess.CompletedProcess:
    launcher = tmp / "launch.py"
    launcher.write_text(textwrap.dedent(LAUNCHER))
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(launcher), *args]
    return subprocess.run(
        cmd, env=_env(**env), capture_output=True, text=True, timeout=120, cwd=tmp
    )


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


# ---------------------------------------------------------------------------------------------
# In-process: the arithmetic of shards, streams and weights.


@pytest.mark.parametrize("n,world", [(10, 3), (53, 2), (64, 4), (3, 3), (7, 1)])
def test_shard_bounds_tile_the_batch_evenly(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(bounds[r][1] == bounds[r + 1][0] for r in range(world - 1))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n


def _batches(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_batches_concatenate_to_the_single_process_batches(world):
    # The single-process DeviceLoader is the independent reference: same order, same draws.
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (101, 3, 12, 12), dtype=torch.uint8, generator=g)
    labels = torch.arange(101)
    specs = ["pad_crop(3)", "hflip", "jitter(0.4, 0.4, 0.4, p=0.8)", "grayscale(0.3)"]
    pipeline = make_pipeline(specs)
    single = DeviceLoader(images, labels, 16, seed=7, transform=pipeline)
    ranks = [
        ShardedLoader(images, labels, 16, rank=r, world_size=world, seed=7, transform=pipeline)
        for r in range(world)
    ]
    for epoch in (0, 3):
        expected = _batches(single, epoch)
        parts = [_batches(loader, epoch) for loader in ranks]
        assert len(expected) == 7 and all(len(p) == 7 for p in parts)
        for b, (x, y) in enumerate(expected):
            assert torch.equal(torch.cat([p[b][0] for p in parts]), x)
            assert torch.equal(torch.cat([p[b][1] for p in parts]), y)
        # each rank holds only the samples it sees this epoch: its part, and nothing else
        held = [set(loader.local_labels.tolist()) for loader in ranks]
        assert sum(len(h) for h in held) == 101 and set().union(*held) == set(range(101))


def test_loss_weights_make_the_rank_average_the_global_mean():
    # DDP averages over W ranks; with weights n_r W / B that average is the batch mean (float64).
    images, labels = torch.zeros(53, 1, 2, 2, dtype=torch.uint8), torch.arange(53)
    losses = torch.rand(53, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for world in (2, 3, 5):
        total = 0.0
        for r in range(world):
            loader = ShardedLoader(images, labels, 64, rank=r, world_size=world)
            lo, hi = shard_bounds(53, r, world)
            total += loader.loss_weight(0) * losses[lo:hi].mean().item()
        assert total / world == pytest.approx(losses.mean().item(), rel=1e-12)


def test_batches_too_small_to_split_are_refused():
    check_batch_split(130, 64, 2)  # last batch of 2: one sample each
    with pytest.raises(RecipeError, match=r"train.batch_size = 64 .* batch of 1, .* over 2 ranks"):
        check_batch_split(129, 64, 2)
    with pytest.raises(RecipeError, match="train.batch_size = 2"):
        check_batch_split(100, 2, 4)
    check_batch_split(1, 64, 1)


def test_slice_params_refuses_parameters_that_are_not_per_image():
    rows = slice_params([{"a": torch.arange(6)}, {}], 2, 4, 6)
    assert torch.equal(rows[0]["a"], torch.tensor([2, 3])) and rows[1] == {}
    with pytest.raises(ValueError, match="not per image"):
        slice_params([{"m": torch.zeros(3, 3)}], 0, 2, 6)


def test_environment_is_read_and_checked(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TRAINLAB_DIST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    assert not env_context().distributed and timeout().total_seconds() == 300
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    ctx = env_context()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (2, 4, 0, False)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(RecipeError, match=r"RANK = '4': expected 0..3"):
        env_context()
    monkeypatch.setenv("TRAINLAB_DIST_TIMEOUT", "2.5")
    assert timeout().total_seconds() == 2.5
    monkeypatch.setenv("TRAINLAB_DIST_TIMEOUT", "soon")
    with pytest.raises(RecipeError, match="TRAINLAB_DIST_TIMEOUT"):
        timeout()


def _eval_data():
    g = torch.Generator().manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model, torch.randn(11, 3, 2, 2, generator=g), torch.randint(0, 3, (11,), generator=g)


COMBINED = ("n", "sum", "sumsq", "zeros", "unit_n", "unit_sum", "unit_sumsq", "max", "unit_max")


def _diagnosed(x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """Diagnostics after one sampled forward pass of a fixed small net over ``x``."""
    from trainlab.diagnostics import Diagnostics

    g = torch.Generator().manual_seed(11)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3), nn.Tanh())
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    diag = Diagnostics(net, every=1)
    diag.begin_step(0)
    net(x)
    diag.after_optimizer_step()
    return diag


def _collectives_worker(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    ctx = DistContext(rank, world, rank, "gloo")
    found: dict = {}
    found["sum"] = all_reduce_(torch.tensor([rank + 1.0, 10.0 * rank]), ctx)
    found["max"] = all_reduce_(torch.tensor([float(rank), -float(rank)]), ctx, "max")
    stats = {"n": torch.tensor(rank + 1.0), "max": torch.tensor([rank, -rank], dtype=float)}
    found["stats"] = reduce_stats_(stats, ctx, max_keys=("max",))
    found["object"] = broadcast_object(f"rank {rank}'s", ctx)
    norm = nn.BatchNorm1d(2)
    norm.running_mean.fill_(float(rank))
    average_buffers(norm, ctx)
    found["running_mean"] = norm.running_mean.clone()
    model, x, y = _eval_data()
    ev = evaluate_sharded(ctx, model, x, y, 3, 4, torch.device("cpu"))
    found["eval"] = (ev.loss, ev.accuracy, ev.confusion)
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    diag = _diagnosed(x[4 * rank : 4 * rank + 4])  # this rank's half of the batch
    reduce_diagnostics_(diag, ctx)
    found["diag"] = {p.name: dict(p.history[0]) for p in diag.probes}
    torch.save(found, f"{out}.{rank}")
    dist.destroy_process_group()


def test_collectives_and_sharded_evaluation_on_two_gloo_ranks(tmp_path):
    mp.spawn(
        _collectives_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path / "found")),
        nprocs=2,
        join=True,
    )
    model, x, y = _eval_data()
    whole = evaluate(model, x, y, 3, 4)  # the reference: one process over the whole split
    # diagnostics reference: one process seeing the whole batch of 8
    diag = _diagnosed(torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(2)))
    diag.snapshot()
    expected = {p.name: p.history[0] for p in diag.probes}
    for rank in range(2):
        found = torch.load(tmp_path / f"found.{rank}", weights_only=False)
        assert torch.equal(found["sum"], torch.tensor([3.0, 10.0]))
        assert torch.equal(found["max"], torch.tensor([1.0, 0.0]))
        assert found["stats"]["n"].item() == 3.0
        assert found["stats"]["max"].tolist() == [1.0, 0.0]
        assert found["object"] == "rank 0's"
        assert torch.equal(found["running_mean"], torch.full((2,), 0.5))
        loss, accuracy, confusion = found["eval"]
        assert torch.equal(confusion, whole.confusion) and accuracy == whole.accuracy
        assert loss == pytest.approx(whole.loss, rel=1e-6)  # float32 sums per eval batch
        assert found["diag"].keys() == expected.keys() and len(expected) >= 2
        for name, row in expected.items():
            for key in COMBINED:
                torch.testing.assert_close(
                    found["diag"][name][key], row[key], rtol=1e-6, atol=1e-9, msg=f"{name}.{key}"
                )


# ---------------------------------------------------------------------------------------------
# Real 2-process gloo jobs under torchrun.


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One single-process run and one 2-process run of the same recipe; rank 1 may not write."""
    tmp = tmp_path_factory.mktemp("dist")
    (tmp / "r.toml").write_text(RECIPE)
    with torch.random.fork_rng(devices=[]):
        single = fit(load_recipe(tmp / "r.toml"), tmp / "single", progress=False, report=False)
    proc = _torchrun(tmp, ["train", "r.toml", "--out", "multi", "--no-progress"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, single, proc


def test_two_ranks_end_with_the_single_process_weights(runs):
    tmp, single, proc = runs
    one, two = load_checkpoint(tmp / "single"), load_checkpoint(tmp / "multi")
    assert _max_diff(one["model"], two["model"]) < WEIGHT_TOL
    for a, b in zip(single.metrics, two["metrics"], strict=True):
        # sharded evaluation reduced over ranks: the same counts, losses to rounding
        assert a["test_acc"] == b["test_acc"] and a["train_acc"] == b["train_acc"]
        assert a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-5)
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
    assert torch.equal(one["confusion"], two["confusion"])
    assert proc.stdout.count("done: test accuracy") == 1  # rank 0 speaks for the job


def test_rank_zero_alone_writes_the_outputs(runs):
    tmp, _, _ = runs  # rank 1 of that job raised on any write attempt, and the job succeeded
    files = {p.name for p in (tmp / "multi").iterdir()}
    assert {"checkpoint.pt", "metrics.jsonl", "recipe.toml", "summary.json", "report.html"} <= files
    assert len((tmp / "multi" / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_killed_rank_ends_the_job_and_resume_continues_it(runs):
    tmp, _, _ = runs
    t0 = time.perf_counter()
    proc = _torchrun(tmp, ["train", "r.toml", "--out", "cut", "--no-progress"], TEST_MODE="kill")
    elapsed = time.perf_counter() - t0
    assert proc.returncode != 0 and elapsed < 60  # well within the 30 s collective timeout + start
    assert "rank      : 1" in proc.stderr and "SIGKILL" in proc.stderr, proc.stderr[-3000:]
    assert load_checkpoint(tmp / "cut")["epoch"] == 1  # rank 0 had saved epoch 1

    proc = _torchrun(tmp, ["train", "--resume", "cut", "--no-progress"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    whole, resumed = load_checkpoint(tmp / "multi"), load_checkpoint(tmp / "cut")
    assert resumed["epoch"] == 2
    assert _max_diff(whole["model"], resumed["model"]) < WEIGHT_TOL
    assert [m["test_acc"] for m in resumed["metrics"]] == [m["test_acc"] for m in whole["metrics"]]


def test_a_rank_that_raises_is_named(runs):
    tmp, _, _ = runs
    proc = _torchrun(tmp, ["train", "r.toml", "--out", "bad", "--no-progress"], TEST_MODE="raise")
    assert proc.returncode != 0
    assert "trainlab: rank 1 of 2" in proc.stderr and "planted failure" in proc.stderr


OWN_NETWORK = """
from torch import nn


def small_cnn(in_shape, num_classes, width=6):
    return nn.Sequential(
        nn.Conv2d(in_shape[0], width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(width, num_classes),
    )
"""


def test_a_users_own_network_trains_under_torchrun_as_in_one_process(tmp_path):
    """model.kind = "import:...": the factory is imported on every rank, DDP wraps it, and two
    ranks end with the single process's weights."""
    (tmp_path / "nets.py").write_text(OWN_NETWORK)
    own = RECIPE.replace(
        "[model]\n", '[model]\nkind = "import:nets.py:small_cnn"\nargs = {width = 5}\n'
    )
    (tmp_path / "r.toml").write_text(own)
    with torch.random.fork_rng(devices=[]):
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            fit(load_recipe("r.toml"), tmp_path / "single", progress=False, report=False)
        finally:
            os.chdir(cwd)
    proc = _torchrun(tmp_path, ["train", "r.toml", "--out", "multi", "--no-progress"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = load_checkpoint(tmp_path / "single"), load_checkpoint(tmp_path / "multi")
    assert one["model"]["features.0.weight"].shape == (5, 1, 3, 3)
    assert _max_diff(one["model"], two["model"]) < WEIGHT_TOL
