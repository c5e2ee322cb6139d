"""The fit loop: one function a reader can follow from data to report.

    data (uint8, on the device) -> augment (uint8, batched) -> mix (float) -> model
        -> loss (+ penalty) -> backward -> optimizer step (lr from the schedule)

Per epoch: append a line to ``metrics.jsonl`` and write the checkpoint atomically; every
``train.eval_every`` epochs and after the last, evaluate on the test split (and the validation
split, if any) first. Every random stream (shuffling, augmentation,
mixing, dropout masks) is derived from ``(seed, epoch)``, so ``--resume`` continues an
interrupted run exactly as an uninterrupted one would have gone on.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.data import DeviceLoader, ImageDataset, derive_seed, load_dataset, split_validation
from trainlab.distributed import (
    SINGLE,
    DistContext,
    ShardedLoader,
    all_reduce_,
    average_buffers,
    broadcast_object,
    distributed_run,
    reduce_diagnostics_,
    shard_bounds,
    wrap_model,
)
from trainlab.errors import CheckpointError, RecipeError, TrainingDiverged
from trainlab.fileio import write_json, write_text, write_with
from trainlab.recipe import Recipe, load_recipe

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "trainlab-checkpoint/1"

# Named random streams, each derived from (seed, epoch, stream) so they never overlap.
_STREAM_SUBSET, _STREAM_INIT, _STREAM_MIX, _STREAM_MODULES, _STREAM_GLOBAL, _STREAM_TEST = range(
    1, 7
)


# ---------------------------------------------------------------------------------------------
# Set-up: device, data, model, optimizer, schedule.


def select_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise RecipeError(f"train.device = {spec!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"train.device = {spec!r}: no CUDA device is available here")
    return device


@dataclass
class Splits:
    """The three splits as uint8 (N, C, H, W) tensors on the CPU, labels int64."""

    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    classes: list[str]

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])  # type: ignore[return-value]


def prepare_splits(recipe: Recipe, dataset: ImageDataset | None = None) -> Splits:
    cfg, seed = recipe.data, recipe.train.seed
    ds = dataset or load_dataset(cfg.name, cfg.data_dir or None)
    x, y = ds.train_images, ds.train_labels
    if cfg.subset:
        if cfg.subset > len(x):
            raise RecipeError(
                f"data.subset = {cfg.subset}: the training set has only {len(x)} images"
            )
        g = torch.Generator().manual_seed(derive_seed(seed, _STREAM_SUBSET))
        keep = torch.randperm(len(x), generator=g)[: cfg.subset].sort().values
        x, y = x[keep], y[keep]
    val = None
    if cfg.val_fraction > 0:
        x, y, vx, vy = split_validation(x, y, cfg.val_fraction, seed)
        val = (vx, vy)
    tx, ty = held_out_split(ds, cfg.test_subset)
    return Splits((x, y), (tx, ty), val, list(ds.classes))


def held_out_split(ds: ImageDataset, test_subset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images, or ``test_subset`` of them drawn by a fixed seed: the same images for
    every run and seed, and never a prefix (class-sorted sets would give one class)."""
    tx, ty = ds.test_images, ds.test_labels
    if test_subset and test_subset < len(tx):
        g = torch.Generator().manual_seed(derive_seed(0, _STREAM_TEST))
        keep = torch.randperm(len(tx), generator=g)[:test_subset].sort().values
        tx, ty = tx[keep], ty[keep]
    return tx, ty


def build_training_model(recipe: Recipe, splits: Splits, stats: Any = None) -> nn.Module:
    """Normalizer from the training split's statistics, model from its spec, then initialization;
    the weights depend on the seed alone."""
    from trainlab.init import initialize, zero_init_residual
    from trainlab.models import build_model
    from trainlab.preprocess import make_normalizer

    x = splits.train[0]
    normalize = make_normalizer(
        recipe.data.normalize, _stats_for(recipe.data.normalize, x, stats), shape=splits.in_shape
    )
    seed = derive_seed(recipe.train.seed, _STREAM_INIT)
    generator = torch.Generator().manual_seed(seed)
    probe = x[torch.randperm(len(x), generator=generator)[:256]]  # data-driven schemes (LSUV)
    with torch.random.fork_rng(devices=[]):  # PyTorch's default init draws from the global RNG
        torch.manual_seed(seed)
        model = build_model(recipe.model, splits.in_shape, len(splits.classes), normalize)
    if recipe.init.scheme != "default":
        initialize(
            model,
            recipe.init.scheme,
            activation=recipe.model.activation,
            generator=generator,
            batch=probe,
        )
    if recipe.model.kind == "resnet" and recipe.init.zero_init_residual:
        zero_init_residual(model)
    return model


def _stats_for(spec: str, images: torch.Tensor, stats: Any = None) -> Any:
    """The statistics a normalizer needs, computed from the training split alone."""
    from trainlab.preprocess import compute_flat_stats, compute_stats
    from trainlab.registry import parse_spec

    name = parse_spec(spec)[0]
    if name in ("scale", "none"):
        return None
    if name in ("pca_whiten", "zca_whiten"):
        return compute_flat_stats(images)
    return stats if stats is not None else compute_stats(images)


def empty_model(recipe: Recipe, in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The model's shape with placeholder statistics, ready for a checkpoint's state_dict."""
    from trainlab.models import build_model
    from trainlab.preprocess import make_normalizer

    normalize = make_normalizer(recipe.data.normalize, None, shape=in_shape)
    return build_model(recipe.model, in_shape, num_classes, normalize)


def uses_channels_last(recipe: Recipe) -> bool:
    """NHWC lets oneDNN and cuDNN run conv, batch norm and pooling without layout shuffles: on
    this project's 2-core CPU it halves the default CNN's forward pass (max pooling in NCHW
    alone was 39% of it). An MLP has nothing to gain."""
    return recipe.train.channels_last and recipe.model.kind != "mlp"


def autocast_for(recipe: Recipe, device: torch.device) -> Callable[[], Any]:
    """A factory of the recipe's autocast context on ``device`` (a no-op context where off).

    Half precision on the GPU; on the CPU only when ``train.cpu_autocast`` asks (a CPU with
    native bf16, such as AVX512-BF16 or AMX, runs the default CNN 1.4x faster; one that
    emulates it, slower)."""
    cfg = recipe.train
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.autocast)
    if dtype is None or not (device.type == "cuda" or cfg.cpu_autocast):
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def build_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    from trainlab.regularize.penalties import decay_param_groups

    cfg = recipe.optim
    groups = decay_param_groups(model, cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
        )
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, cfg.beta2))


def lr_factor(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """The schedule as a pure function of the step: nothing to save, exact on resume."""
    cfg = recipe.schedule
    total = recipe.train.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        return cfg.gamma ** (step // (cfg.step_epochs * steps_per_epoch))
    if cfg.name == "cosine":
        return cfg.final_lr + (1 - cfg.final_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - (1.0 - cfg.final_lr) * progress  # linear


# ---------------------------------------------------------------------------------------------
# Evaluation.


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    confusion: torch.Tensor  # (K, K): rows are true classes, columns predictions


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    batch_size: int = 1024,
    device: torch.device | None = None,
    autocast: Callable[[], Any] = contextlib.nullcontext,
) -> Evaluation:
    """Loss (plain cross-entropy, no smoothing) and accuracy over a whole split, in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device, non_blocking=True)
        y = labels[start : start + batch_size].to(device, non_blocking=True)
        with autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes**2)
    model.train(was_training)
    confusion = confusion.view(num_classes, num_classes).cpu()
    n = max(1, len(images))
    return Evaluation(loss_sum.item() / n, confusion.diag().sum().item() / n, confusion)


def evaluate_sharded(
    ctx: DistContext,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], Any] = contextlib.nullcontext,
) -> Evaluation:
    """:func:`evaluate` with each rank on a contiguous part of the split; loss sums and the
    confusion matrix are summed over the ranks, so every rank returns the whole split's result."""
    if not ctx.distributed:
        return evaluate(model, images, labels, num_classes, batch_size, device, autocast)
    lo, hi = shard_bounds(len(images), ctx.rank, ctx.world_size)
    part = evaluate(model, images[lo:hi], labels[lo:hi], num_classes, batch_size, device, autocast)
    loss_sum = all_reduce_(torch.tensor(part.loss * max(1, hi - lo), device=device).double(), ctx)
    confusion = all_reduce_(part.confusion.to(device), ctx).cpu()
    n = max(1, len(images))
    return Evaluation(loss_sum.item() / n, confusion.diag().sum().item() / n, confusion)


# ---------------------------------------------------------------------------------------------
# Checkpoints: tensors and plain values only, loaded with weights_only=True.


def save_checkpoint(path: Path, **state: Any) -> None:
    write_with(path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (expected a run folder or {CHECKPOINT})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file, a foreign pickle: all unreadable to us
        raise CheckpointError(f"{path}: not a readable trainlab checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a trainlab checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, Recipe, dict[str, Any]]:
    """Rebuild the trained model (with its normalizer) from a checkpoint or run folder."""
    state = load_checkpoint(path)
    import tomllib

    from trainlab.recipe import recipe_from_dict

    recipe = recipe_from_dict(tomllib.loads(state["recipe"]), where=f"{path} (recipe)")
    model = empty_model(recipe, tuple(state["in_shape"]), state["num_classes"])
    model.load_state_dict(state["model"])
    return model, recipe, state


# ---------------------------------------------------------------------------------------------
# The run.


@dataclass
class RunResult:
    out: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    confusion: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1] if self.metrics else {}


def fit(
    recipe: Recipe | None,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    dataset: ImageDataset | None = None,
    report: bool = True,
) -> RunResult:
    """Train the recipe, writing metrics, checkpoints and the report to ``out``.

    With ``resume=True`` the recipe is read back from ``out/recipe.toml`` and training continues
    after the last completed epoch of ``out/checkpoint.pt``.
    """
    out = Path(out)
    state = None
    if resume:
        state = load_checkpoint(out)
        recipe = load_recipe(out / "recipe.toml")
    if recipe is None:
        raise RecipeError("fit() needs a recipe, or resume=True with a run folder")
    # Under torchrun every rank runs this; rank 0 alone shows progress and writes files.
    with distributed_run(recipe.train.device) as (ctx, device):
        out = Path(broadcast_object(str(out), ctx))  # a timestamped default may differ per rank
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
            return _fit(recipe, out, state, progress and ctx.is_main, dataset, report, ctx, device)


def _fit(
    recipe: Recipe,
    out: Path,
    state: dict[str, Any] | None,
    progress: bool,
    dataset: ImageDataset | None,
    report: bool,
    ctx: DistContext = SINGLE,
    rank_device: torch.device | None = None,
) -> RunResult:
    from trainlab.augment import make_pipeline
    from trainlab.preprocess import compute_stats
    from trainlab.regularize.dropout import reseed_all
    from trainlab.regularize.penalties import PENALTIES
    from trainlab.regularize.smoothing import smooth_targets, soft_target_cross_entropy
    from trainlab.techniques import make_mix

    t_start = time.perf_counter()
    cfg, seed = recipe.train, recipe.train.seed
    device = rank_device or select_device(cfg.device)
    if device.type == "cuda":
        # The shapes of a run are fixed (the batch, and the last partial one): cuDNN's one-off
        # search for the fastest convolution algorithm per shape pays back within an epoch.
        torch.backends.cudnn.benchmark = True
    splits = prepare_splits(recipe, dataset)
    num_classes = len(splits.classes)
    data_seconds = time.perf_counter() - t_start

    stats = compute_stats(splits.train[0])  # the training split's, never the test split's
    model = build_training_model(recipe, splits, stats).to(device)
    channels_last = uses_channels_last(recipe)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Under torchrun the step runs through DDP, which averages gradients over the ranks;
    # everything else (optimizer, penalty, evaluation, checkpoints) sees the plain model.
    train_model = wrap_model(model, ctx, device, cfg.sync_batchnorm)
    model = getattr(train_model, "module", train_model)
    # torch.compile fuses the elementwise tails (batch norm, activation) into the convolutions'
    # neighbours. In its default mode it made the fast recipes' step slower, 0.63x on this
    # project's CPU and 0.66-0.78x on an H200 (docs/benchmarks.md), so it is off unless a recipe
    # asks. Mode "reduce-overhead" also records the step as CUDA graphs: a small network's eager
    # step on a GPU is bound by kernel launches, and replaying them at once made the H200's step
    # 2.4x as fast. Evaluation stays eager.
    mode = None if cfg.compile_mode == "default" else cfg.compile_mode
    step_model = torch.compile(train_model, mode=mode) if cfg.compile else train_model
    graphs = cfg.compile and cfg.compile_mode in ("reduce-overhead", "max-autotune")
    autocast = autocast_for(recipe, device)

    optimizer = build_optimizer(recipe, model)
    base_lrs = [g["lr"] for g in optimizer.param_groups]  # before a resumed state overwrites them
    penalty = (
        None if recipe.regularize.penalty == "none" else PENALTIES.create(recipe.regularize.penalty)
    )
    mix = make_mix(recipe.regularize.mix, tuple(stats.channel_mean.tolist()))
    mixing = recipe.regularize.mix != "none"
    smoothing = recipe.regularize.label_smoothing
    augment = make_pipeline(recipe.augment.train, stats=stats) if recipe.augment.train else None
    if ctx.distributed:  # this rank's part of the same global batches, augmentation draws too
        loader: DeviceLoader | ShardedLoader = ShardedLoader(
            *splits.train,
            cfg.batch_size,
            rank=ctx.rank,
            world_size=ctx.world_size,
            seed=seed,
            device=device,
            transform=augment,
        )
    else:
        loader = DeviceLoader(
            *splits.train,
            cfg.batch_size,
            shuffle=True,
            drop_last=False,
            seed=seed,
            device=device,
            transform=augment,
        )
    diag = None
    if recipe.diagnostics.every > 0:  # hooks on the plain model; they see DDP's forward too
        from trainlab.diagnostics import Diagnostics

        diag = Diagnostics(model, every=recipe.diagnostics.every, window=recipe.diagnostics.window)
    eval_model: nn.Module = model
    if recipe.augment.tta == "flip":
        from trainlab.augment import TTA

        eval_model = TTA(model, flips=True)

    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    metrics: list[dict[str, Any]] = []
    start_epoch, step = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step = state["epoch"], state["step"]
        metrics = list(state["metrics"])  # the checkpoint's own record: metrics.jsonl may lag it
    elif ctx.is_main:
        write_text(out / "recipe.toml", recipe.to_toml())
        write_text(out / "metrics.jsonl", "")

    steps_per_epoch = len(loader)
    confusion = None
    t_run, io_seconds = time.perf_counter(), 0.0  # the data is on the device from here
    for epoch in range(start_epoch, cfg.epochs):
        t_epoch = time.perf_counter()
        # Masks and mixing partners are per rank (ctx.keys() is empty in a single process).
        rank_keys = ctx.keys()
        torch.manual_seed(derive_seed(seed, epoch, _STREAM_GLOBAL, *rank_keys))  # nn.Dropout etc.
        reseed_all(model, derive_seed(seed, epoch, _STREAM_MODULES, *rank_keys))
        mix_gen = torch.Generator(device).manual_seed(
            derive_seed(seed, epoch, _STREAM_MIX, *rank_keys)
        )
        loader.set_epoch(epoch)
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        seen = 0
        bar = _progress(progress, steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}")
        for i, (x, y) in enumerate(loader):
            factor = lr_factor(recipe, step, steps_per_epoch)
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * factor
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if mixing:
                x, target, _ = mix(
                    x.float().div_(255) if x.dtype == torch.uint8 else x, y, num_classes, mix_gen
                )
                if smoothing:
                    target = smooth_targets(target, num_classes, smoothing)
            if diag is not None:
                diag.begin_step(step)
            if graphs:  # this step's graph replay may overwrite the last step's outputs
                torch.compiler.cudagraph_mark_step_begin()
            with autocast():
                logits = step_model(x)
            if mixing:
                loss = soft_target_cross_entropy(logits.float(), target)
            else:
                loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
            # DDP averages gradients over ranks: weighting by n_r W / B (1 for an even split)
            # makes the average the gradient of the global batch's mean loss.
            total = loss * loader.loss_weight(i) if ctx.distributed else loss
            total = total + penalty(model) if penalty is not None else total
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if diag is not None:
                diag.after_backward()
                diag.before_optimizer_step()
            optimizer.step()
            if diag is not None:
                diag.after_optimizer_step()

            # Book-keeping stays on the device; the host looks only every log_every steps.
            detached = loss.detach()
            first_bad = torch.where(  # new_full is a fill kernel: no host-to-device copy
                (first_bad < 0) & ~torch.isfinite(detached), first_bad.new_full((), step), first_bad
            )
            loss_sum += detached.double() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            step += 1
            # The host looks only at log points, and only when someone watches the bar:
            # a silent run (benchmarks, the lab) has no host-device sync inside an epoch.
            if progress and ((i + 1) % cfg.log_every == 0 or i + 1 == steps_per_epoch):
                if not ctx.distributed:  # ranks stop together, at the end of the epoch
                    _stop_if_diverged(first_bad, epoch, out, bar)
                rate = seen / max(1e-9, time.perf_counter() - t_epoch)
                bar.set_postfix(
                    loss=f"{loss_sum.item() / seen:.4f}",
                    acc=f"{correct.item() / seen:.3f}",
                    img_s=f"{rate:,.0f}",
                )
            bar.update(1)
        if ctx.distributed:  # the epoch's figures over all ranks; any rank's divergence stops all
            all_reduce_(first_bad, ctx, "max")
            all_reduce_(loss_sum, ctx)
            all_reduce_(correct, ctx)
            seen = int(all_reduce_(torch.tensor(seen, device=device), ctx).item())
            average_buffers(model, ctx)  # per-rank batch-norm statistics -> one model to save
        _stop_if_diverged(first_bad, epoch, out, bar)
        bar.close()
        if diag is not None:
            diag.snapshot(step)
        train_seconds = time.perf_counter() - t_epoch

        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss_sum.item() / max(1, seen),
            "train_acc": correct.item() / max(1, seen),
        }
        # The last epoch is always tested; eval_every = 0 tests it alone (the speed records'
        # way: a test pass per epoch is time spent on watching, not on training).
        last = epoch + 1 == cfg.epochs
        if last or (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0):
            test = evaluate_sharded(
                ctx, eval_model, *splits.test, num_classes, cfg.eval_batch_size, device, autocast
            )
            row.update(test_loss=test.loss, test_acc=test.accuracy)
            confusion = test.confusion
            if splits.val is not None:
                val = evaluate_sharded(
                    ctx, eval_model, *splits.val, num_classes, cfg.eval_batch_size, device, autocast
                )
                row.update(val_loss=val.loss, val_acc=val.accuracy)
        row.update(
            lr=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - t_epoch,
            train_seconds=train_seconds,
            images_per_s=seen / max(1e-9, train_seconds),
        )
        metrics.append(row)
        t_io = time.perf_counter()
        if ctx.is_main:  # the ranks hold the same model: one of them writes
            save_checkpoint(
                out / CHECKPOINT,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                epoch=epoch + 1,
                step=step,
                recipe=recipe.to_toml(),
                classes=splits.classes,
                in_shape=list(splits.in_shape),
                num_classes=num_classes,
                confusion=confusion,
                metrics=metrics,
            )
            write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
        io_seconds += time.perf_counter() - t_io
        if progress:
            tested = "".join(
                f"  {k} {row[k]:.4f}" for k in ("test_loss", "test_acc", "val_acc") if k in row
            )
            print(
                f"epoch {epoch + 1}: train_loss {row['train_loss']:.4f}  train_acc "
                f"{row['train_acc']:.4f}{tested}  ({row['seconds']:.1f}s)",
                flush=True,
            )

    # Training and evaluation from data on the device to the final evaluation, files excluded.
    run_seconds = time.perf_counter() - t_run - io_seconds
    if confusion is None and state is not None:  # resumed a run that had already finished
        confusion = state["confusion"]
    result = RunResult(out, metrics, confusion, splits.classes)
    summary = {
        "final": result.final,
        "data_seconds": data_seconds,
        "run_seconds": run_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "device": str(device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_images": len(splits.train[0]),
        "test_images": len(splits.test[0]),
        "world_size": ctx.world_size,
    }
    result.summary = summary
    diagnosis = None
    if diag is not None:
        diagnosis = _write_diagnosis(diag, out, ctx)
        summary["findings"] = [f.sentence() for f in diagnosis[1]]
    if not ctx.is_main:
        return result
    write_json(out / "summary.json", summary)
    if report:
        from trainlab.report import write_report

        write_report(out, recipe, metrics, confusion, splits.classes, summary, diagnosis)
    return result


def _write_diagnosis(diag: Any, out: Path, ctx: DistContext) -> tuple[Any, list[Any]]:
    """The run's diagnostics: diagnostics.html, findings.json and figures beside the report.

    Every rank calls this: under torchrun the ranks' statistics are combined first, so the
    findings describe whole global batches, and rank 0 writes them."""
    from trainlab.diagnostics import findings, write_diagnostics

    reduce_diagnostics_(diag, ctx)
    report = diag.report()
    diag.detach()
    found = findings(report)
    if ctx.is_main:
        write_diagnostics(out, report, found)
    return report, found


def _stop_if_diverged(first_bad: torch.Tensor, epoch: int, out: Path, bar: Any) -> None:
    bad = int(first_bad.item())
    if bad < 0:
        return
    bar.close()
    where = f"the loss became non-finite at step {bad} (epoch {epoch + 1})"
    if (out / CHECKPOINT).exists():
        raise TrainingDiverged(f"{where}; the last good checkpoint is kept in {out / CHECKPOINT}")
    raise TrainingDiverged(f"{where}, before the first checkpoint; try a lower optim.lr")


class _NoBar:
    def set_postfix(self, **_: Any) -> None: ...
    def update(self, _: int) -> None: ...
    def close(self) -> None: ...


def _progress(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
