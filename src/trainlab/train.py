"""The engine: one training step for every training in the project.

    build_run(recipe, dataset) -> Run
    fit:  while run.epoch < epochs: train_epoch(run) [train_step per batch]; end_epoch(run, out)

    train_step: data (uint8, on the device) -> augment (uint8, batched) -> mix (float) -> model
        -> loss (+ penalty) -> backward -> optimizer step (lr from the schedule)

``trainlab train`` runs :func:`fit`, ``trainlab diagnose`` :func:`run_diagnostics`, the lab
:func:`bare_run` and :func:`train_step`, the benchmarks the same. Per epoch, :func:`end_epoch`
appends a line to ``metrics.jsonl`` and writes the checkpoint atomically; every
``train.eval_every`` epochs and after the last, it first evaluates on the test split (and the
validation split, if any). Every random stream (shuffling, augmentation, mixing, dropout masks)
is derived from ``(seed, epoch)``, so ``--resume`` continues an interrupted run exactly as an
uninterrupted one would have gone on.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.data import (
    DeviceLoader,
    ImageDataset,
    derive_seed,
    load_dataset,
    make_generator,
    split_validation,
)
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
from trainlab.errors import CheckpointError, OutputError, RecipeError, TrainingDiverged, summary
from trainlab.fileio import atomic_open, folder_lock, write_json, write_text
from trainlab.recipe import Recipe, load_recipe

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "trainlab-checkpoint/1"
CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "step", "recipe", "in_shape", "num_classes")

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
    # Serialized in memory first: torch.save reports a failed write (a full disk) as a
    # RuntimeError of its zip writer, a plain write as an OSError that names the cause.
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (expected a run folder or {CHECKPOINT})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file, a foreign pickle: all unreadable to us
        # torch wraps the unpickler's one-line reason in paragraphs of advice: keep the reason.
        text = str(exc)
        refused = re.search(r"GLOBAL (\S+)", text)
        reason = text.split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        if refused:
            cause = f"refused to unpickle {refused.group(1)}"
        elif text.startswith("Weights only load failed") and reason.strip():
            cause = next(line.strip() for line in reason.splitlines() if line.strip())
        else:
            cause = summary(exc)
        cause = cause[:300]
        raise CheckpointError(f"{path}: not a readable trainlab checkpoint ({cause})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a trainlab checkpoint (format {CHECKPOINT_FORMAT})")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"{path}: an incomplete trainlab checkpoint (no {', '.join(missing)})"
        )
    return state


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, Recipe, dict[str, Any]]:
    """Rebuild the trained model (with its normalizer) from a checkpoint or run folder."""
    import tomllib

    from trainlab.recipe import recipe_from_dict

    state = load_checkpoint(path)
    try:
        recipe = recipe_from_dict(tomllib.loads(state["recipe"]), where=f"{path} (recipe)")
        model = empty_model(recipe, tuple(state["in_shape"]), state["num_classes"])
        model.load_state_dict(state["model"])
    except (tomllib.TOMLDecodeError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: its model cannot be rebuilt ({summary(exc)})") from exc
    return model, recipe, state


# ---------------------------------------------------------------------------------------------
# The engine: build_run -> (train_step per batch, inside train_epoch) -> end_epoch, per epoch.


@dataclass(eq=False)
class Run:
    """Everything one training needs, built once by :func:`build_run`.

    Every technique is held in a form the step can call unconditionally: no augmentation is the
    identity, no mixing passes ``(x, y)`` through, no diagnostics is :class:`NoDiagnostics`, a
    single process weights its loss by nothing. So :func:`train_step` has no branches.
    """

    recipe: Recipe
    device: torch.device
    model: nn.Module  # the plain model: optimizer, penalty, evaluation and checkpoints see it
    step_model: Callable[[torch.Tensor], torch.Tensor]  # what the step runs (DDP, compiled)
    optimizer: torch.optim.Optimizer
    loader: Any  # DeviceLoader, or ShardedLoader under torchrun
    augment: Callable[[torch.Tensor, Any], torch.Tensor]
    layout: Callable[[torch.Tensor], torch.Tensor]  # NHWC where the model is convolutional
    mix: Callable[[torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    regularize: Callable[[torch.Tensor, int], torch.Tensor]  # rank weight, then penalty
    lr_factor: Callable[[int], float]
    update: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None  # fwd, bwd, step
    set_lr: Callable[[float], None] | None = None
    diag: Any = field(default_factory=lambda: _no_diagnostics())
    ctx: DistContext = SINGLE
    autocast: Callable[[], Any] = contextlib.nullcontext
    mark_step: Callable[[], None] = lambda: None  # a CUDA-graph replay's step boundary
    eval_model: nn.Module | None = None
    splits: Splits | None = None
    seed: int = 0
    step: int = 0
    epoch: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    confusion: torch.Tensor | None = None
    stats: Any = None
    base_lrs: list[float] = field(default_factory=list)
    # this epoch's random streams and device-side tallies (set by begin_epoch)
    aug_generator: Any = None
    mix_generator: Any = None
    tally: Any = None
    timing: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base_lrs = self.base_lrs or [float(g["lr"]) for g in self.optimizer.param_groups]
        self.update = self.update or functools.partial(forward_backward_update, self)
        self.set_lr = self.set_lr or functools.partial(_set_lr, self)
        self.eval_model = self.model if self.eval_model is None else self.eval_model
        self.reset_tally()

    def reset_tally(self) -> None:
        """Start counting loss, accuracy and divergence afresh (an epoch's, by default)."""
        self.tally = _Tally(self.device, self.step)


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimizer step on the batch ``(x, y)``, all on the device: no host synchronization.

    augment -> mix -> forward under autocast -> loss (+ penalty) -> backward -> optimizer step.
    Returns the detached loss of the batch.
    """
    run.set_lr(run.lr_factor(run.step))  # a pure function of the step: exact on resume
    x = run.layout(run.augment(x, run.aug_generator))
    x, target = run.mix(x, y, run.mix_generator)
    run.diag.begin_step(run.step)
    run.mark_step()
    loss, logits = run.update(x, target, run.step - run.tally.first_step)
    run.tally.add(loss, logits, y, run.step)
    run.step += 1
    return loss


def forward_backward_update(run: Run, x: torch.Tensor, target: torch.Tensor, batch_index: int):
    """The part of the step that ``train.compile_scope = "step"`` hands to torch.compile whole:
    forward under autocast, loss (+ penalty), backward, optimizer step. Returns the detached
    loss and logits."""
    with run.autocast():
        logits = run.step_model(x)
    loss = run.loss(logits.float(), target)
    run.optimizer.zero_grad(set_to_none=True)
    run.regularize(loss, batch_index).backward()
    run.diag.after_backward()
    run.diag.before_optimizer_step()
    run.optimizer.step()
    run.diag.after_optimizer_step()
    return loss.detach(), logits.detach()


def _set_lr(run: Run, factor: float) -> None:
    for group, base in zip(run.optimizer.param_groups, run.base_lrs, strict=True):
        group["lr"] = base * factor


def _fill_lr(run: Run, factor: float) -> None:
    """A compiled optimizer step reads its lr from a tensor, so a moving schedule does not make
    torch.compile trace the step again for every new value."""
    for group, base in zip(run.optimizer.param_groups, run.base_lrs, strict=True):
        group["lr"].fill_(base * factor)


def train_epoch(
    run: Run,
    watch: Any = None,
    *,
    max_steps: int | None = None,
    on_step: Callable[[Run, torch.Tensor], None] | None = None,
) -> None:
    """:func:`train_step` over one epoch of the loader; ``max_steps`` stops the run's step count
    there, ``on_step(run, loss)`` records whatever a caller needs after each step."""
    watch = watch or _Quiet()
    begin_epoch(run)
    watch.begin(run)
    for i, (x, y) in enumerate(run.loader):
        if max_steps is not None and run.step >= max_steps:
            break
        loss = train_step(run, x, y)
        if on_step is not None:
            on_step(run, loss)
        watch.step(run, i)


def begin_epoch(run: Run) -> None:
    """Seed the epoch's streams from ``(seed, epoch)``: a resumed run draws what an uninterrupted
    one would have drawn. Masks and mixing partners are per rank (no keys in one process)."""
    from trainlab.regularize.dropout import reseed_all

    seed, epoch, keys = run.seed, run.epoch, run.ctx.keys()
    torch.manual_seed(derive_seed(seed, epoch, _STREAM_GLOBAL, *keys))  # nn.Dropout and kin
    reseed_all(run.model, derive_seed(seed, epoch, _STREAM_MODULES, *keys))
    run.mix_generator = torch.Generator(run.device).manual_seed(
        derive_seed(seed, epoch, _STREAM_MIX, *keys)
    )
    run.aug_generator = make_generator(seed, "loader-transform", epoch, device=run.device)
    run.loader.set_epoch(epoch)
    run.model.train()
    run.reset_tally()
    run.timing["epoch_start"] = time.perf_counter()


def end_epoch(run: Run, out: Path | None = None, watch: Any = None) -> dict[str, Any]:
    """Close the epoch: combine the ranks' tallies, stop on a non-finite loss, test when due,
    append the metrics row and (in ``out``, rank 0) write the checkpoint and metrics.jsonl."""
    watch = watch or _Quiet()
    cfg, ctx, tally = run.recipe.train, run.ctx, run.tally
    if ctx.distributed:  # the epoch over all ranks; any rank's divergence stops all
        all_reduce_(tally.first_bad, ctx, "max")
        all_reduce_(tally.loss_sum, ctx)
        all_reduce_(tally.correct, ctx)
        tally.seen = int(all_reduce_(torch.tensor(tally.seen, device=run.device), ctx).item())
        average_buffers(run.model, ctx)  # per-rank batch-norm statistics -> one model to save
    watch.end(run)
    _stop_if_diverged(tally.first_bad, run.epoch, out)
    run.diag.snapshot(run.step)
    train_seconds = time.perf_counter() - run.timing["epoch_start"]
    seen = max(1, tally.seen)
    row: dict[str, Any] = {
        "epoch": run.epoch + 1,
        "train_loss": tally.loss_sum.item() / seen,
        "train_acc": tally.correct.item() / seen,
    }
    # The last epoch is always tested; eval_every = 0 tests it alone (the speed records' way).
    last = run.epoch + 1 == cfg.epochs
    if run.splits is not None and (
        last or (cfg.eval_every and (run.epoch + 1) % cfg.eval_every == 0)
    ):
        for name, split in (("test", run.splits.test), ("val", run.splits.val)):
            if split is not None:
                result = evaluate_run(run, *split)
                row.update({f"{name}_loss": result.loss, f"{name}_acc": result.accuracy})
                run.confusion = result.confusion if name == "test" else run.confusion
    row.update(
        lr=run.optimizer.param_groups[0]["lr"],
        seconds=time.perf_counter() - run.timing["epoch_start"],
        train_seconds=train_seconds,
        images_per_s=tally.seen / max(1e-9, train_seconds),
    )
    run.metrics.append(row)
    run.epoch += 1
    if out is not None and ctx.is_main:  # the ranks hold the same model: one of them writes
        t_io = time.perf_counter()
        save_run_checkpoint(run, out)
        write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in run.metrics))
        run.timing["io_seconds"] = run.timing.get("io_seconds", 0.0) + time.perf_counter() - t_io
    watch.epoch_line(run, row)
    return row


def evaluate_run(run: Run, images: torch.Tensor, labels: torch.Tensor) -> Evaluation:
    """Loss and accuracy of the run's evaluation model (test-time flips where asked)."""
    assert run.splits is not None and run.eval_model is not None
    return evaluate_sharded(
        run.ctx, run.eval_model, images, labels, len(run.splits.classes),
        run.recipe.train.eval_batch_size, run.device, run.autocast,
    )  # fmt: skip


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
    state = load_checkpoint(out) if resume else None
    recipe = load_recipe(out / "recipe.toml") if resume else recipe
    if recipe is None:
        raise RecipeError("fit() needs a recipe, or resume=True with a run folder")
    # Under torchrun every rank runs this; rank 0 alone shows progress and writes files.
    with distributed_run(recipe.train.device) as (ctx, device):
        out = Path(broadcast_object(str(out), ctx))  # a timestamped default may differ per rank
        owner = folder_lock(out) if ctx.is_main else contextlib.nullcontext()
        # the caller's global RNG is left as it was
        with owner, torch.random.fork_rng(devices=[]):
            run = build_run(recipe, dataset, ctx=ctx, device=device, state=state)
            start_run_folder(run, out, resumed=state is not None)
            watch = _Progress(recipe.train, out) if progress and ctx.is_main else _Quiet()
            run.timing["run_start"] = time.perf_counter()  # the data is on the device from here
            while run.epoch < recipe.train.epochs:
                train_epoch(run, watch)
                end_epoch(run, out, watch)
            return finish_run(run, out, report)


def train_steps(
    run: Run, steps: int, on_step: Callable[[Run, torch.Tensor], None] | None = None
) -> int:
    """``steps`` more steps of :func:`train_step`, over as many epochs of the loader as they
    take, starting a new epoch; no evaluation and no files (``trainlab diagnose``, benchmarks).
    Returns the run's step count."""
    stop = run.step + steps
    while run.step < stop:
        train_epoch(run, max_steps=stop, on_step=on_step)
        run.epoch += 1
    return run.step


def bare_run(model: nn.Module, optimizer: torch.optim.Optimizer) -> Run:
    """A run around a model and optimizer of the caller's own, fed batches by the caller (the
    lab's networks on in-memory tensors): plain cross-entropy, no augmentation, mixing, penalty
    or schedule. ``train_step(run, x, y)`` is then exactly the step every other training runs."""
    device = next(model.parameters()).device
    return Run(
        recipe=Recipe(), device=device, model=model, step_model=model, optimizer=optimizer,
        loader=None, augment=_unchanged, layout=_same, mix=_unmixed, loss=F.cross_entropy,
        regularize=_unweighted, lr_factor=_constant,
    )  # fmt: skip


@dataclass
class DiagnosisResult:
    report: Any  # trainlab.diagnostics.DiagnosticsReport
    findings: list[Any]
    html: Path | None
    steps: int


def run_diagnostics(
    recipe: Recipe | str | Path | None = None,
    out: str | Path | None = None,
    *,
    steps: int = 400,
    every: int = 10,
    window: int = 50,
    dataset: ImageDataset | None = None,
) -> DiagnosisResult:
    """``trainlab diagnose RECIPE``: the recipe's own step for ``steps`` steps with diagnostics
    sampled every ``every`` steps, at the schedule's starting learning rate held constant (where
    most faults show); no evaluation, no checkpoint. The report goes to ``out``."""
    import dataclasses

    from trainlab.diagnostics import Diagnostics, findings, write_diagnostics

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"run_diagnostics: steps must be a positive int, got {steps!r}")
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    constant = dataclasses.replace(recipe.schedule, name="constant", warmup_epochs=0.0)
    recipe = dataclasses.replace(recipe, schedule=constant)
    with torch.random.fork_rng(devices=[]):
        run = build_run(
            recipe, dataset, diagnostics=lambda m: Diagnostics(m, every=every, window=window)
        )
        try:
            done = train_steps(run, steps)
        finally:
            run.diag.detach()
    report = run.diag.report()
    found = findings(report)
    html = write_diagnostics(out, report, found) if out is not None else None
    return DiagnosisResult(report, found, html, done)


# ---------------------------------------------------------------------------------------------
# Building a run.


def build_run(
    recipe: Recipe,
    dataset: ImageDataset | None = None,
    *,
    ctx: DistContext = SINGLE,
    device: torch.device | None = None,
    state: dict[str, Any] | None = None,
    diagnostics: Callable[[nn.Module], Any] | None = None,
    compile_backend: Any = "inductor",
) -> Run:
    """Data, model, optimizer, schedule, augmentation, mixing and diagnostics for ``recipe``.

    ``state`` (a checkpoint) restores the model, the optimizer and the epoch and step counters.
    ``diagnostics(model)`` builds the watcher instead of the recipe's (``trainlab diagnose``
    samples more often).
    ``compile_backend`` is torch.compile's backend when ``train.compile`` is on ("aot_eager"
    traces without generating code, which is how the CPU tests check the captured step).
    """
    from trainlab.augment import make_pipeline
    from trainlab.preprocess import compute_stats

    t_start = time.perf_counter()
    cfg = recipe.train
    device = device or select_device(cfg.device)
    if device.type == "cuda":  # fixed shapes: cuDNN's one-off algorithm search pays back soon
        torch.backends.cudnn.benchmark = True
    splits = prepare_splits(recipe, dataset)
    if cfg.batch_size > len(splits.train[0]):  # one short batch per epoch is not what was asked
        raise RecipeError(
            f"train.batch_size = {cfg.batch_size}: the training split has only "
            f"{len(splits.train[0])} images (see data.subset and data.val_fraction)"
        )
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
    mode = None if cfg.compile_mode == "default" else cfg.compile_mode
    compile_model = cfg.compile and cfg.compile_scope == "model"
    step_model = (
        torch.compile(train_model, mode=mode, backend=compile_backend)
        if compile_model
        else train_model
    )
    graphs = (
        cfg.compile
        and device.type == "cuda"
        and cfg.compile_mode in ("reduce-overhead", "max-autotune")
    )
    pipeline = make_pipeline(recipe.augment.train, stats=stats) if recipe.augment.train else None
    loader = _loader(recipe, splits, ctx, device, pipeline)
    optimizer = build_optimizer(recipe, model)
    steps_per_epoch = len(loader)
    run = Run(
        recipe=recipe,
        device=device,
        model=model,
        step_model=step_model,
        optimizer=optimizer,
        loader=loader,
        # under torchrun the sharded loader draws augmentation per global batch itself
        augment=pipeline if pipeline is not None and not ctx.distributed else _unchanged,
        layout=_channels_last if channels_last else _same,
        mix=_mixer(recipe, len(splits.classes), stats),
        loss=_loss_for(recipe),
        regularize=_regularizer(recipe, model, loader, ctx),
        lr_factor=lambda step: lr_factor(recipe, step, steps_per_epoch),
        diag=diagnostics(model) if diagnostics else _diagnostics_for(recipe, model),
        ctx=ctx,
        autocast=autocast_for(recipe, device),
        mark_step=torch.compiler.cudagraph_mark_step_begin if graphs else _nothing,
        eval_model=_eval_model(recipe, model),
        splits=splits,
        seed=cfg.seed,
        stats=stats,
        timing={"start": t_start, "data_seconds": data_seconds},
    )
    if cfg.compile and cfg.compile_scope == "step":  # forward, backward and optimizer step
        for group in optimizer.param_groups:
            group["lr"] = torch.tensor(group["lr"], device=device)
        run.set_lr = functools.partial(_fill_lr, run)
        run.update = torch.compile(
            functools.partial(forward_backward_update, run), mode=mode, backend=compile_backend
        )
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        run.epoch, run.step = state["epoch"], state["step"]
        run.metrics = list(state["metrics"])  # the checkpoint's own record: metrics.jsonl may lag
        run.confusion = state.get("confusion")
    return run


def _loader(recipe: Recipe, splits: Splits, ctx: DistContext, device: torch.device, pipeline):
    cfg = recipe.train
    if ctx.distributed:  # this rank's part of the same global batches, augmentation draws too
        return ShardedLoader(
            *splits.train, cfg.batch_size, rank=ctx.rank, world_size=ctx.world_size,
            seed=cfg.seed, device=device, transform=pipeline,
        )  # fmt: skip
    return DeviceLoader(*splits.train, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device)


def _unchanged(x: torch.Tensor, generator: Any) -> torch.Tensor:
    return x


def _unmixed(x: torch.Tensor, y: torch.Tensor, generator: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return x, y


def _unweighted(loss: torch.Tensor, batch_index: int) -> torch.Tensor:
    return loss


def _constant(step: int) -> float:
    return 1.0


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _nothing() -> None:
    return None


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _no_diagnostics() -> Any:
    from trainlab.diagnostics import NoDiagnostics

    return NoDiagnostics()


def _diagnostics_for(recipe: Recipe, model: nn.Module) -> Any:
    if recipe.diagnostics.every <= 0:
        return _no_diagnostics()
    from trainlab.diagnostics import Diagnostics  # hooks on the plain model see DDP's forward

    return Diagnostics(model, every=recipe.diagnostics.every, window=recipe.diagnostics.window)


def _mixer(recipe: Recipe, num_classes: int, stats: Any):
    """``(x, y, generator) -> (x, target)``: mixup/CutMix/Cutout on [0, 1] floats with soft
    (and smoothed) targets, or the batch unchanged with its hard labels."""
    from trainlab.regularize.smoothing import smooth_targets
    from trainlab.techniques import make_mix

    if recipe.regularize.mix == "none":
        return _unmixed
    mix = make_mix(recipe.regularize.mix, tuple(stats.channel_mean.tolist()))
    smoothing = recipe.regularize.label_smoothing

    def mixed(x: torch.Tensor, y: torch.Tensor, generator: Any):
        x, target, _ = mix(x.float().div_(255) if x.dtype == torch.uint8 else x, y,
                           num_classes, generator)  # fmt: skip
        return x, smooth_targets(target, num_classes, smoothing) if smoothing else target

    return mixed


def _loss_for(recipe: Recipe):
    from trainlab.regularize.smoothing import soft_target_cross_entropy

    if recipe.regularize.mix != "none":
        return soft_target_cross_entropy
    smoothing = recipe.regularize.label_smoothing
    return lambda logits, y: F.cross_entropy(logits, y, label_smoothing=smoothing)


def _regularizer(recipe: Recipe, model: nn.Module, loader: Any, ctx: DistContext):
    """``(loss, batch_index) -> total``: DDP averages gradients over ranks, so each rank's loss is
    weighted by n_r W / B (1 for an even split); then the recipe's penalty is added."""
    from trainlab.regularize.penalties import PENALTIES

    penalty = (
        None if recipe.regularize.penalty == "none" else PENALTIES.create(recipe.regularize.penalty)
    )
    if ctx.distributed and penalty is not None:
        return lambda loss, i: loss * loader.loss_weight(i) + penalty(model)
    if ctx.distributed:
        return lambda loss, i: loss * loader.loss_weight(i)
    if penalty is not None:
        return lambda loss, i: loss + penalty(model)
    return _unweighted


def _eval_model(recipe: Recipe, model: nn.Module) -> nn.Module:
    if recipe.augment.tta != "flip":
        return model
    from trainlab.augment import TTA

    return TTA(model, flips=True)


class _Tally:
    """An epoch's loss, accuracy and first non-finite step, kept on the device."""

    def __init__(self, device: torch.device, first_step: int) -> None:
        self.first_step = first_step
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.seen = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, step: int) -> None:
        self.first_bad = torch.where(  # new_full is a fill kernel: no host-to-device copy
            (self.first_bad < 0) & ~torch.isfinite(loss), self.first_bad.new_full((), step),
            self.first_bad,
        )  # fmt: skip
        self.loss_sum += loss.double() * len(y)
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += len(y)


# ---------------------------------------------------------------------------------------------
# The run folder: recipe, metrics, checkpoint, summary and report.


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


def start_run_folder(run: Run, out: Path, resumed: bool) -> None:
    if not run.ctx.is_main:
        return
    out.mkdir(parents=True, exist_ok=True)
    if not resumed:
        write_text(out / "recipe.toml", run.recipe.to_toml())
        write_text(out / "metrics.jsonl", "")


def save_run_checkpoint(run: Run, out: Path) -> None:
    assert run.splits is not None
    try:
        save_checkpoint(
            out / CHECKPOINT,
            model=run.model.state_dict(),
            optimizer=run.optimizer.state_dict(),
            epoch=run.epoch,
            step=run.step,
            recipe=run.recipe.to_toml(),
            classes=run.splits.classes,
            in_shape=list(run.splits.in_shape),
            num_classes=len(run.splits.classes),
            confusion=run.confusion,
            metrics=run.metrics,
        )
    except OutputError as exc:  # the write is atomic: the previous checkpoint is still whole
        kept = f"; the last good checkpoint is kept in {out / CHECKPOINT}"
        raise OutputError(f"{exc}{kept if (out / CHECKPOINT).exists() else ''}") from exc


def finish_run(run: Run, out: Path, report: bool) -> RunResult:
    """summary.json, the diagnostics and the report; every rank calls it, rank 0 writes."""
    assert run.splits is not None
    timing, now = run.timing, time.perf_counter()
    # training and evaluation from data on the device to the final evaluation, files excluded
    run_seconds = now - timing.get("run_start", now) - timing.get("io_seconds", 0.0)
    result = RunResult(out, run.metrics, run.confusion, run.splits.classes)
    result.summary = summary = {
        "final": result.final,
        "data_seconds": timing["data_seconds"],
        "run_seconds": run_seconds,
        "total_seconds": now - timing["start"],
        "device": str(run.device),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "train_images": len(run.splits.train[0]),
        "test_images": len(run.splits.test[0]),
        "world_size": run.ctx.world_size,
    }
    diagnosis = None
    if hasattr(run.diag, "report"):
        diagnosis = _write_diagnosis(run.diag, out, run.ctx)
        summary["findings"] = [f.sentence() for f in diagnosis[1]]
    if not run.ctx.is_main:
        return result
    write_json(out / "summary.json", summary)
    if report:
        from trainlab.report import write_report

        write_report(out, run.recipe, run.metrics, run.confusion, run.splits.classes, summary,
                     diagnosis)  # fmt: skip
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


def _stop_if_diverged(first_bad: torch.Tensor, epoch: int, out: Path | None) -> None:
    bad = int(first_bad.item())
    if bad < 0:
        return
    where = f"the loss became non-finite at step {bad} (epoch {epoch + 1})"
    if out is not None and (out / CHECKPOINT).exists():
        raise TrainingDiverged(f"{where}; the last good checkpoint is kept in {out / CHECKPOINT}")
    raise TrainingDiverged(f"{where}, before the first checkpoint; try a lower optim.lr")


# ---------------------------------------------------------------------------------------------
# Watching: a progress bar and an epoch line when someone watches, nothing otherwise.


class _Quiet:
    def begin(self, run: Run) -> None: ...
    def step(self, run: Run, i: int) -> None: ...
    def end(self, run: Run) -> None: ...
    def epoch_line(self, run: Run, row: dict[str, Any]) -> None: ...


class _Progress(_Quiet):
    """On a terminal, a bar per epoch refreshed every ``train.log_every`` steps; in a log (not a
    terminal), a line every ``train.log_steps`` steps (0: none) and the epoch line. The host reads
    the device's tallies only at these points, and only here: a silent run (benchmarks, the lab)
    has no host-device sync inside an epoch."""

    def __init__(self, cfg: Any, out: Path | None = None, terminal: bool | None = None) -> None:
        self.cfg, self.out, self.bar = cfg, out, None
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.every = cfg.log_every if self.terminal else cfg.log_steps

    def begin(self, run: Run) -> None:
        if self.terminal:
            from tqdm import tqdm

            desc = f"epoch {run.epoch + 1}/{self.cfg.epochs}"
            self.bar = tqdm(total=len(run.loader), desc=desc, leave=False, dynamic_ncols=True)

    def step(self, run: Run, i: int) -> None:
        done, steps = i + 1, len(run.loader)
        if self.every and (done % self.every == 0 or (self.terminal and done == steps)):
            tally = run.tally
            if not run.ctx.distributed:  # ranks stop together, at the end of the epoch
                if int(tally.first_bad.item()) >= 0:
                    self.end(run)
                    _stop_if_diverged(tally.first_bad, run.epoch, self.out)
            elapsed = time.perf_counter() - run.timing["epoch_start"]
            loss, acc = tally.loss_sum.item() / tally.seen, tally.correct.item() / tally.seen
            rate = tally.seen / max(1e-9, elapsed)
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.3f}", img_s=f"{rate:,.0f}")
            elif done < steps:  # the epoch line follows the last step
                print(
                    f"epoch {run.epoch + 1} step {done}/{steps}: train_loss {loss:.4f}  "
                    f"train_acc {acc:.4f}  ({rate:,.0f} img/s)",
                    flush=True,
                )
        if self.bar is not None:
            self.bar.update(1)

    def end(self, run: Run) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def epoch_line(self, run: Run, row: dict[str, Any]) -> None:
        tested = "".join(
            f"  {k} {row[k]:.4f}" for k in ("test_loss", "test_acc", "val_acc") if k in row
        )
        print(
            f"epoch {row['epoch']}: train_loss {row['train_loss']:.4f}  train_acc "
            f"{row['train_acc']:.4f}{tested}  ({row['seconds']:.1f}s)",
            flush=True,
        )
