"""Building a run: device, data splits, model, optimizer, schedule, loader, augmentation, mixing,
loss, penalty, diagnostics and autocast, each in the form the step calls unconditionally."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.data import DeviceLoader, ImageDataset
from trainlab.distributed import SINGLE, DistContext, ShardedLoader, wrap_model
from trainlab.engine.checkpoint import load_initial_weights
from trainlab.engine.ema import NoAverage, WeightAverage
from trainlab.engine.model import (
    ModelSource,
    build_training_model,
    uses_channels_last,
)
from trainlab.engine.splits import Splits, prepare_splits
from trainlab.engine.step import (
    NoScaler,
    Run,
    channels_last_layout,
    constant_lr,
    fill_lr_tensors,
    forward_backward_update,
    lr_factor,
    no_augmentation,
    no_clipping,
    no_diagnostics,
    no_mixing,
    no_step_mark,
    same_layout,
    unweighted_loss,
)
from trainlab.errors import RecipeError
from trainlab.recipe import Recipe


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
    """The recipe's optimizer over two parameter groups: weights with ``optim.weight_decay``,
    biases and norm parameters without. ``optim.momentum`` is SGD's and RMSprop's momentum and
    Adam's beta1; ``optim.beta2`` the second-moment decay (RMSprop's alpha).

    SGD with momentum (Polyak 1964) or Nesterov's (Sutskever et al. 2013); Adam (Kingma & Ba
    2015); AdamW, Adam with decoupled weight decay (Loshchilov & Hutter 2019); RMSprop (Hinton,
    Lecture 6e of "Neural Networks for Machine Learning", 2012)."""
    from trainlab.regularize.penalties import decay_param_groups

    cfg = recipe.optim
    groups = decay_param_groups(model, cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
        )
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.beta2, momentum=cfg.momentum)
    adam = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return adam(groups, lr=cfg.lr, betas=(cfg.momentum, cfg.beta2))


def grad_scaler(recipe: Recipe, device: torch.device) -> Any:
    """fp16 autocast on CUDA scales the loss so that small gradients do not underflow to zero
    in float16 (Micikevicius et al. 2018, "Mixed Precision Training"): torch.amp.GradScaler,
    which skips a step whose gradients overflowed and backs its scale off. bf16 has float32's
    range and needs none; nor does a run without autocast."""
    if recipe.train.autocast == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return NoScaler()


def gradient_clipper(recipe: Recipe, model: nn.Module) -> Callable[[], Any]:
    """``optim.clip_grad_norm``: rescale all gradients together so that their global L2 norm is at
    most the threshold, g <- g min(1, c / (||g|| + 1e-6)) (Pascanu et al. 2013, "On the
    difficulty of training recurrent neural networks"). The foreach kernels compute the norm and
    the factor on the device: no host synchronization."""
    max_norm = recipe.optim.clip_grad_norm
    if max_norm <= 0:
        return no_clipping
    params = [p for p in model.parameters() if p.requires_grad]
    return functools.partial(torch.nn.utils.clip_grad_norm_, params, max_norm, foreach=True)


def build_run(
    recipe: Recipe,
    dataset: ImageDataset | None = None,
    *,
    ctx: DistContext = SINGLE,
    device: torch.device | None = None,
    state: dict[str, Any] | None = None,
    diagnostics: Callable[[nn.Module], Any] | None = None,
    compile_backend: Any = "inductor",
    model: ModelSource = None,
    init_from: str | Path | None = None,
) -> Run:
    """Data, model, optimizer, schedule, augmentation, mixing and diagnostics for ``recipe``.

    ``model`` is the user's own network (an ``nn.Module`` or a factory ``(in_shape,
    num_classes) -> nn.Module``) instead of the recipe's; ``init_from`` a checkpoint whose
    weights the model starts from (fine-tuning: :func:`load_initial_weights`).
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
    stored_notes = list(state.get("notes", [])) if state is not None else []
    notices = stored_notes + [n for n in splits.notes if n not in stored_notes]
    model = build_training_model(recipe, splits, stats, model).to(device)
    if init_from is not None:
        notices += load_initial_weights(model, init_from)
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
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else NoAverage()
    steps_per_epoch = len(loader)
    run = Run(
        recipe=recipe,
        device=device,
        model=model,
        step_model=step_model,
        optimizer=optimizer,
        loader=loader,
        # under torchrun the sharded loader draws augmentation per global batch itself
        augment=pipeline if pipeline is not None and not ctx.distributed else no_augmentation,
        layout=channels_last_layout if channels_last else same_layout,
        mix=_mixer(recipe, len(splits.classes), stats),
        loss=_loss_for(recipe),
        regularize=_regularizer(recipe, model, loader, ctx),
        lr_factor=lambda step: lr_factor(recipe, step, steps_per_epoch),
        clip_gradients=gradient_clipper(recipe, model),
        diag=diagnostics(model) if diagnostics else _diagnostics_for(recipe, model),
        ctx=ctx,
        autocast=autocast_for(recipe, device),
        mark_step=torch.compiler.cudagraph_mark_step_begin if graphs else no_step_mark,
        scaler=grad_scaler(recipe, device),
        ema=ema,
        eval_model=_eval_model(recipe, model if ema.average is None else ema.average),
        splits=splits,
        seed=cfg.seed,
        stats=stats,
        timing={"start": t_start, "data_seconds": data_seconds},
        notices=notices,
    )
    if cfg.compile and cfg.compile_scope == "step":  # forward, backward and optimizer step
        for group in optimizer.param_groups:
            group["lr"] = torch.tensor(group["lr"], device=device)
        run.set_lr = functools.partial(fill_lr_tensors, run)
        run.update = torch.compile(
            functools.partial(forward_backward_update, run), mode=mode, backend=compile_backend
        )
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        run.epoch, run.step = state["epoch"], state["step"]
        run.metrics = list(state["metrics"])  # the checkpoint's own record: metrics.jsonl may lag
        run.confusion = state.get("confusion")
        run.extensions = list(state.get("extensions", []))
        run.selection = dict(state.get("selection") or run.selection)
        if state.get("scaler"):
            run.scaler.load_state_dict(state["scaler"])
        if state.get("ema") is not None:
            run.ema.load_state_dict(state["ema"])
    return run


def _loader(recipe: Recipe, splits: Splits, ctx: DistContext, device: torch.device, pipeline):
    cfg = recipe.train
    if ctx.distributed:  # this rank's part of the same global batches, augmentation draws too
        return ShardedLoader(
            *splits.train, cfg.batch_size, rank=ctx.rank, world_size=ctx.world_size,
            seed=cfg.seed, device=device, transform=pipeline,
        )  # fmt: skip
    return DeviceLoader(*splits.train, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device)


def _diagnostics_for(recipe: Recipe, model: nn.Module) -> Any:
    if recipe.diagnostics.every <= 0:
        return no_diagnostics()
    from trainlab.diagnostics import Diagnostics  # hooks on the plain model see DDP's forward

    return Diagnostics(model, every=recipe.diagnostics.every, window=recipe.diagnostics.window)


def _mixer(recipe: Recipe, num_classes: int, stats: Any):
    """``(x, y, generator) -> (x, target)``: mixup/CutMix/Cutout on [0, 1] floats with soft
    (and smoothed) targets, or the batch unchanged with its hard labels."""
    from trainlab.regularize.smoothing import smooth_targets
    from trainlab.techniques import make_mix

    if recipe.regularize.mix == "none":
        return no_mixing
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
    return unweighted_loss


def _eval_model(recipe: Recipe, model: nn.Module) -> nn.Module:
    if recipe.augment.tta != "flip":
        return model
    from trainlab.augment import TTA

    return TTA(model, flips=True)


def bare_run(model: nn.Module, optimizer: torch.optim.Optimizer) -> Run:
    """A run around a model and optimizer of the caller's own, fed batches by the caller (the
    lab's networks on in-memory tensors): plain cross-entropy, no augmentation, mixing, penalty
    or schedule. ``train_step(run, x, y)`` is then exactly the step every other training runs."""
    device = next(model.parameters()).device
    return Run(
        recipe=Recipe(), device=device, model=model, step_model=model, optimizer=optimizer,
        loader=None, augment=no_augmentation, layout=same_layout, mix=no_mixing,
        loss=F.cross_entropy, regularize=unweighted_loss, lr_factor=constant_lr,
    )  # fmt: skip
