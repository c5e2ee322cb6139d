"""Data-parallel training on many processes, through PyTorch's own distributed engine.

``torchrun --nproc_per_node=N -m trainlab train RECIPE`` starts N processes; each one reads its
place from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joins one process
group (NCCL when the run is on CUDA, gloo on CPUs) and wraps the model in
``DistributedDataParallel``, which averages the gradients over the ranks during ``backward``
(Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training").
Without ``WORLD_SIZE`` (or with 1) there is no process group at all: the single-process path.

Every rank draws the same global permutation and augmentation parameters from ``(seed, epoch)``
and takes its contiguous part of each global batch (:class:`ShardedLoader`). Rank ``r`` with
``n_r`` of a batch's ``B`` samples weights its mean loss by ``n_r * W / B``, so DDP's average over
``W`` ranks is the gradient of the global batch's mean loss,
``(1/W) sum_r (n_r W / B) mean_r = (1/B) sum_i loss_i``. What still depends on the world size
(mixing partners, dropout masks, batch-norm statistics) is listed in docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from trainlab.errors import RecipeError
from trainlab.seeding import make_generator

TIMEOUT_ENV = "TRAINLAB_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: a single process, no process group

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes metrics, checkpoints and reports; the others write nothing."""
        return self.rank == 0

    def keys(self) -> tuple[int, ...]:
        """Extra ``derive_seed`` keys for per-rank streams: none in a single process, so a
        one-process run keeps exactly the streams it always had."""
        return (self.rank,) if self.distributed else ()


SINGLE = DistContext()


def _env_int(name: str, default: int, lo: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RecipeError(f"${name} = {raw!r}: expected an integer (set by torchrun)") from None
    if value < lo:
        raise RecipeError(f"${name} = {value}: expected at least {lo}")
    return value


def env_context() -> DistContext:
    """The context torchrun's environment describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    world = _env_int("WORLD_SIZE", 1, 1)
    if world == 1:
        return SINGLE
    rank = _env_int("RANK", -1, 0)
    if rank < 0 or rank >= world:
        raise RecipeError(f"$RANK = {os.environ.get('RANK')!r}: expected 0..{world - 1}")
    return DistContext(rank, world, _env_int("LOCAL_RANK", 0, 0))


def timeout() -> datetime.timedelta:
    """How long a collective may wait for the other ranks: ``$TRAINLAB_DIST_TIMEOUT`` seconds."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise RecipeError(f"${TIMEOUT_ENV} = {raw!r}: expected a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


def rank_device(spec: str, ctx: DistContext) -> torch.device | None:
    """The device of this rank, or None to let the single-process rule decide.

    On CUDA every rank takes the GPU of its ``LOCAL_RANK``: ``train.device`` may be ``auto`` or
    ``cuda`` then, not ``cuda:N`` (N processes cannot all use GPU N).
    """
    if not ctx.distributed:
        return None
    cuda = torch.cuda.is_available()
    if spec == "cpu" or (spec == "auto" and not cuda):
        return torch.device("cpu")
    if spec not in ("auto", "cuda"):
        raise RecipeError(
            f"train.device = {spec!r}: under torchrun use auto, cuda or cpu; "
            "each rank takes the GPU of its LOCAL_RANK"
        )
    if not cuda:
        raise RecipeError(f"train.device = {spec!r}: no CUDA device is available here")
    if ctx.local_rank >= torch.cuda.device_count():
        raise RecipeError(
            f"LOCAL_RANK {ctx.local_rank} has no GPU: this machine has "
            f"{torch.cuda.device_count()}; start at most that many processes per node"
        )
    return torch.device("cuda", ctx.local_rank)


@contextlib.contextmanager
def distributed_run(device_spec: str) -> Iterator[tuple[DistContext, torch.device | None]]:
    """Initialise (if torchrun asks for it), run, and tear down; a failing rank says who it is.

    The failure is printed with the rank and host, and recorded in torchrun's error file so that
    torchrun's summary names it too; torchrun then stops the other ranks. A rank that hangs
    instead makes the others' collectives fail after the timeout (:func:`timeout`).

    The backend follows the device: NCCL for CUDA, gloo for the CPU. A process group the caller
    already initialised is used as it is, and left for the caller to tear down.
    """
    created = not (dist.is_available() and dist.is_initialized())
    if created:
        ctx = env_context()
    else:
        local_rank = _env_int("LOCAL_RANK", 0, 0)
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend())
    device = rank_device(device_spec, ctx)
    if created and ctx.distributed:
        if device.type == "cuda":
            torch.cuda.set_device(device)
            # a rank whose peer died or hangs raises after the timeout instead of waiting forever
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
            dist.init_process_group("nccl", timeout=timeout(), device_id=device)
        else:
            dist.init_process_group("gloo", timeout=timeout())
        ctx = replace(ctx, backend=dist.get_backend())
    try:
        yield ctx, device
        if created and ctx.distributed:
            dist.barrier()  # leave together: rank 0 may still be writing the report
    except BaseException as exc:
        if ctx.distributed:
            report_failure(ctx, exc)
            created = False  # the peers may be gone: tearing down could wait on them
        raise
    finally:
        if created and ctx.distributed:
            # Objects of the run just ended (a DDP wrapper was seen still alive in a reference
            # cycle) can hold the process group until interpreter exit, when tearing down its
            # gloo threads aborted a finished rank ("terminate called without an active
            # exception"; 2 jobs in 17 here). Collected now, while the group can still shut
            # down cleanly: 0 aborts in 40 kill-and-resume jobs.
            gc.collect()
            dist.destroy_process_group()


def report_failure(ctx: DistContext, exc: BaseException) -> None:
    """One line on stderr naming this rank, its host and the error (with a hint for timeouts
    and vanished peers), and the same in torchrun's error file for its summary."""
    host = socket.gethostname()
    where = f"rank {ctx.rank} of {ctx.world_size} (local rank {ctx.local_rank} on {host})"
    text, hint = str(exc), ""
    if "timed out" in text.lower():
        hint = (
            f" [no answer from another rank within ${TIMEOUT_ENV} = "
            f"{timeout().total_seconds():g} s: a peer hangs or died; see its own message]"
        )
    elif "connection closed" in text.lower() or "connection reset" in text.lower():
        hint = " [a peer rank's process ended: see its own message]"
    line = f"trainlab: {where} failed: {type(exc).__name__}: {text}{hint}"
    print(line, file=sys.stderr, flush=True)
    if isinstance(exc, Exception):
        with contextlib.suppress(Exception):  # the error file is a courtesy to torchrun
            from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

            ErrorHandler().record_exception(RuntimeError(f"{where}: {exc}"))


# ---------------------------------------------------------------------------------------------
# Collectives: no-ops in a single process.


def all_reduce_(tensor: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` in place over the ranks (``sum``, ``max`` or ``min``) and return it."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op.upper()))
    return tensor


def reduce_stats_(
    stats: dict[str, torch.Tensor], ctx: DistContext, max_keys: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """Combine per-rank accumulators in place: sums (counts, sums of x and x^2, histograms)
    are summed, the entries named in ``max_keys`` take the maximum over the ranks; means and
    variances computed from the reduced sums are those of all ranks' samples together.
    """
    for key, value in stats.items():
        all_reduce_(value, ctx, "max" if key in max_keys else "sum")
    return stats


def reduce_diagnostics_(diag: Any, ctx: DistContext) -> None:
    """Combine a :class:`~trainlab.diagnostics.Diagnostics` over the ranks before its report.

    Each rank's activation statistics saw only its part of every sampled batch; reduced, the
    report describes whole global batches. Gradient norms and update ratios are read after DDP's
    all-reduce and are the same on every rank already. Call once, just before
    ``diag.report()``, on every rank (they all sample the same steps).
    """
    if not ctx.distributed:
        return
    diag.snapshot()  # close the open window so that it is reduced too
    for probe in diag.probes:
        for row in probe.history:
            reduce_stats_(row, ctx, max_keys=[k for k in row if "max" in k])
        if probe.first_bad is not None:  # the earliest step over the ranks, -1 where none
            never = torch.iinfo(torch.int64).max
            steps = all_reduce_(probe.first_bad.where(probe.first_bad >= 0, never), ctx, "min")
            probe.first_bad.copy_(steps.where(steps < never, -1))
    if diag._input_acc:
        reduce_stats_(diag._input_acc, ctx)


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (pickled: for small values such as a path)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Average batch norm's running mean and variance over the ranks.

    With per-rank batch norm each rank's running statistics saw only its part of the data; the
    average is the statistic of all of it (for the variance, up to the spread of the rank means).
    Done before evaluation and checkpoints so that every rank evaluates, and rank 0 saves, the
    same model. Other buffers (a normalizer's statistics) are equal on all ranks and left alone.
    """
    if not ctx.distributed:
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            for buffer in (module.running_mean, module.running_var):
                all_reduce_(buffer, ctx).div_(ctx.world_size)


def wrap_model(
    model: nn.Module, ctx: DistContext, device: torch.device, sync_bn: bool
) -> nn.Module:
    """The module the training step calls: ``model`` itself, or DDP around it.

    ``sync_bn`` converts batch norm to ``nn.SyncBatchNorm`` (Ioffe & Szegedy 2015 statistics over
    the global batch, as Goyal et al. 2017 discuss), which PyTorch implements for GPUs only.
    Buffers are not broadcast on every step: :func:`average_buffers` reconciles them per epoch.
    """
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn:
        if device.type != "cuda":
            raise RecipeError(
                "train.sync_batchnorm = true: PyTorch's SyncBatchNorm runs on GPUs only; "
                "on CPUs use per-rank statistics (false) or a model without batch norm"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


# ---------------------------------------------------------------------------------------------
# The rank's part of every global batch.


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous part ``[start, stop)`` of ``n`` items split ``world_size`` ways.

    ``start = floor(n r / W)``: sizes differ by at most one, and ranks in order cover ``0..n``.
    """
    return n * rank // world_size, n * (rank + 1) // world_size


def check_batch_split(num_samples: int, batch_size: int, world_size: int) -> None:
    """Every global batch must give every rank at least one sample (DDP needs all ranks to step)."""
    last = num_samples % batch_size or batch_size
    if min(batch_size, num_samples, last) < world_size:
        raise RecipeError(
            f"train.batch_size = {batch_size} with {num_samples} training images leaves a batch "
            f"of {min(batch_size, num_samples, last)}, too small to split over {world_size} "
            "ranks: change train.batch_size or data.subset"
        )


def slice_params(params: Sequence[dict[str, torch.Tensor]], start: int, stop: int, batch: int):
    """Rows ``start:stop`` of a pipeline's per-image parameters drawn for ``batch`` images."""
    for op_params in params:
        for key, value in op_params.items():
            if value.dim() == 0 or value.shape[0] != batch:
                raise ValueError(
                    f"slice_params: parameter {key!r} of shape {tuple(value.shape)} is not "
                    f"per image for a batch of {batch}"
                )
    return [{key: value[start:stop] for key, value in op_params.items()} for op_params in params]


class ShardedLoader:
    """One rank's part of the batches :class:`~trainlab.data.DeviceLoader` would give one process.

    Same permutation (``derive_seed(seed, "loader-order", epoch)``), same augmentation stream
    (``derive_seed(seed, "loader-transform", epoch)``, parameters drawn per global batch), so the
    ranks' batches concatenated in rank order are the single-process batches, bit for bit.
    ``images`` and ``labels`` stay on the host; :meth:`set_epoch` copies this epoch's part of
    them (about ``N / world_size`` images) to ``device``. ``transform`` is a
    :class:`~trainlab.augment.Pipeline` (anything with ``sample_params`` and ``apply``).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        rank: int,
        world_size: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        transform: Any = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"ShardedLoader: rank must be in 0..{world_size - 1}, got {rank}")
        check_batch_split(len(images), batch_size, world_size)
        self.images, self.labels = images, labels
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.seed, self.device, self.transform = seed, torch.device(device), transform
        self.set_epoch(0)

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def _bounds(self, b: int) -> tuple[int, int, int]:
        """Global batch ``b``: its size and this rank's ``[start, stop)`` within it."""
        size = min(self.batch_size, len(self.images) - b * self.batch_size)
        return (size, *shard_bounds(size, self.rank, self.world_size))

    def set_epoch(self, epoch: int) -> None:
        """Draw the epoch's permutation and move this rank's samples of it to the device."""
        self.epoch = epoch
        order = torch.randperm(
            len(self.images), generator=make_generator(self.seed, "loader-order", epoch)
        )
        parts = []
        for b in range(len(self)):
            _, lo, hi = self._bounds(b)
            parts.append(order[b * self.batch_size + lo : b * self.batch_size + hi])
        index = torch.cat(parts)
        self.local_images = self.images.index_select(0, index).to(self.device)
        self.local_labels = self.labels.index_select(0, index).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = make_generator(self.seed, "loader-transform", self.epoch, device=self.device)
        at = 0
        for b in range(len(self)):
            size, lo, hi = self._bounds(b)
            x = self.local_images[at : at + hi - lo]
            y = self.local_labels[at : at + hi - lo]
            at += hi - lo
            if self.transform is not None:
                params = self.transform.sample_params((size, *x.shape[1:]), generator, self.device)
                x = self.transform.apply(x, slice_params(params, lo, hi, size))
            yield x, y

    def loss_weight(self, batch_index: int) -> float:
        """``n_r * W / B`` for global batch ``batch_index``: 1 when the batch splits evenly."""
        size, lo, hi = self._bounds(batch_index)
        return (hi - lo) * self.world_size / size
