"""The learning-rate range test: train with a rate that grows exponentially from ``start`` to
``end``, one step at a time, and watch the loss (Smith 2017, "Cyclical Learning Rates for
Training Neural Networks", section 3.3; fastai's ``lr_find``).

    rate(i) = start * (end / start) ** (i / (N - 1)),   i = 0 .. N - 1,
    N = min(steps, batches in one epoch)

Each step is the engine's own :func:`~trainlab.engine.step.train_step` on the recipe's run
(its model, optimizer, augmentation, mixing and penalty), with the run's ``lr_factor`` set to
``rate(i) / optim.lr`` so that the optimizer's rate is ``rate(i)`` exactly.

The loss is smoothed as fastai does, an exponential moving average with its start-up bias
removed (Kingma & Ba 2015, section 3):

    avg_i = beta avg_{i-1} + (1 - beta) loss_i,   avg_{-1} = 0,
    smoothed_i = avg_i / (1 - beta^(i+1))

with beta = 0.98. The sweep stops once ``smoothed_i > DIVERGE_FACTOR * min_{j<=i} smoothed_j``
(4, fastai's ``stop_div`` rule) or a loss is not finite; the record ends at that step.

The suggested rate is **the rate at the minimum of the smoothed loss, divided by
SUGGEST_DIVISOR = 3**: at the minimum the rate is already too high to keep improving, a third of
it still learns fast. As in fastai's ``lr_min`` (Howard & Gugger 2020, "Fastai: A Layered API
for Deep Learning"), the minimum is sought over steps ``N // 10`` to ``kept - 5``: the first
tenth of the sweep is skipped (the average has seen few batches, and one lucky first batch
would be the minimum), the last five recorded steps too (the loss turning up).

The divisor was first fastai's 10, fixed before ``benchmarks/bench_lr_find.py``'s grid judged
it: on that grid (cut-down runs, seeds 1-3) a tenth of the minimum reached 0.957 and 0.947 of
the best grid rate's accuracy, and the best grid rates lay at about a third of the minimum.
The divisor was then changed to 3, after seeing that data, and judged again on fresh seeds
(4-6) that the first grid never used; both results are on docs/benchmarks/lr_find.md.

Host synchronization: the step's losses stay on the device in one preallocated tensor; the host
reads them once every ``CHECK_EVERY`` steps (and at the end) to apply the stop rule, so a
diverged sweep runs at most ``CHECK_EVERY - 1`` steps past its stopping step (not recorded).

Nothing is written into a run folder and no checkpoint is made: the run lives in memory. The
caller's global random state is restored afterwards (the engine seeds it per epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from trainlab.errors import OutputError, TrainlabError
from trainlab.fileio import write_json, write_with
from trainlab.recipe import Recipe

BETA = 0.98  # smoothing of the loss (fastai's)
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum
CHECK_EVERY = 8  # steps between reads of the losses on the host
SUGGEST_DIVISOR = 3.0  # was 10 (fastai's lr_min) until the grid check; see the docstring
RULE = "the rate at the minimum of the smoothed loss, divided by 3 (fastai's lr_min divides by 10)"


@dataclass
class Sweep:
    rates: list[float]  # the rate of each recorded step
    losses: list[float]  # the batch's training loss at that step
    smoothed: list[float]  # debiased exponential moving average of the losses
    suggestion: float
    rule: str
    stopped: str  # why the sweep ended
    steps_run: int  # steps taken, the unrecorded ones after the stop included
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep_rate(i: int, start: float, end: float, steps: int) -> float:
    """The rate at step ``i`` of an exponential sweep of ``steps`` rates from start to end."""
    return start * (end / start) ** (i / (steps - 1))


def smooth(losses: Sequence[float], beta: float = BETA) -> list[float]:
    """The debiased exponential moving average of ``losses`` (see the module's docstring)."""
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def stop_index(smoothed: Sequence[float], factor: float = DIVERGE_FACTOR) -> int | None:
    """The first step whose smoothed loss is not finite or exceeds ``factor`` times the
    minimum so far, or None."""
    best = math.inf
    for i, value in enumerate(smoothed):
        if not math.isfinite(value) or value > factor * best:
            return i
        best = min(best, value)
    return None


def suggest(rates: Sequence[float], smoothed: Sequence[float], planned: int) -> float:
    """The suggested rate: the rate at the minimum of the smoothed loss over steps
    ``planned // 10`` to ``len(smoothed) - 5`` (all of them where that is empty), divided by
    ``SUGGEST_DIVISOR``."""
    first, last = planned // 10, len(smoothed) - 5
    window = range(first, last) if first < last else range(len(smoothed))
    finite = [(smoothed[i], i) for i in window if math.isfinite(smoothed[i])]
    if not finite:
        raise TrainlabError("lr-find: no finite loss was recorded; lower --start")
    return rates[min(finite)[1]] / SUGGEST_DIVISOR


def lr_find(
    recipe: Recipe,
    *,
    start: float = 1e-6,
    end: float = 10.0,
    steps: int = 100,
    dataset: Any = None,
    check_every: int = CHECK_EVERY,
) -> Sweep:
    """Sweep the rate from ``start`` to ``end`` over ``steps`` steps (at most one epoch) of the
    recipe's own training step; stop when the loss diverges; suggest a rate (``RULE``)."""
    from trainlab.engine import begin_epoch, build_run, train_step
    from trainlab.engine.step import no_diagnostics

    if not (0 < start < end and math.isfinite(end)):
        raise TrainlabError(f"--start {start} --end {end}: expected 0 < start < end")
    if steps < 2:
        raise TrainlabError(f"--steps {steps}: expected at least 2 steps")
    t0 = time.perf_counter()
    cuda = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=cuda):  # begin_epoch seeds the global generator
        run = build_run(recipe, dataset, diagnostics=lambda model: no_diagnostics())
        n = min(steps, len(run.loader))
        base = run.base_lrs[0]  # every parameter group starts at optim.lr
        run.lr_factor = lambda step: sweep_rate(step, start, end, n) / base
        begin_epoch(run)
        on_device = torch.zeros(n, dtype=torch.float32, device=run.device)
        losses: list[float] = []
        stop, steps_run = None, 0
        for i, (x, y) in enumerate(run.loader):
            if i == n:
                break
            on_device[i] = train_step(run, x, y).float()
            steps_run = i + 1
            if steps_run % check_every == 0 or steps_run == n:
                losses += on_device[len(losses) : steps_run].tolist()  # the one host sync
                stop = stop_index(smooth(losses))
                if stop is not None:
                    break
    rates = [sweep_rate(i, start, end, n) for i in range(n)]
    kept = len(losses) if stop is None else stop + 1
    smoothed = smooth(losses[:kept])
    if stop is None:
        stopped = f"end of the sweep ({n} steps)"
    else:
        stopped = (
            f"diverged at step {stop} (rate {rates[stop]:.3g}): smoothed loss "
            f"{smoothed[stop]:.4g} > {DIVERGE_FACTOR:g} x its minimum {min(smoothed[:stop]):.4g}"
            if stop > 0 and math.isfinite(smoothed[stop])
            else f"non-finite loss at step {stop} (rate {rates[stop]:.3g})"
        )
    return Sweep(
        rates=rates[:kept],
        losses=losses[:kept],
        smoothed=smoothed,
        suggestion=suggest(rates[:kept], smoothed, n),
        rule=RULE,
        stopped=stopped,
        steps_run=steps_run,
        seconds=time.perf_counter() - t0,
    )


def check_out_folder(out: str | Path) -> Path:
    """``out`` as a Path; a run folder (one holding a checkpoint) is refused: the sweep's
    files never go among a training's."""
    from trainlab.engine import CHECKPOINT

    out = Path(out)
    if (out / CHECKPOINT).exists():
        raise OutputError(f"--out {out}: holds a training run; give lr-find a folder of its own")
    return out


def write_sweep(sweep: Sweep, out: str | Path) -> tuple[Path, Path]:
    """``OUT/lr_find.json`` (the sweep) and ``OUT/lr_find.png`` (smoothed loss against the rate,
    log x, the suggestion marked), each written atomically. A run folder is refused."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = check_out_folder(out)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.semilogx(sweep.rates, sweep.losses, color="0.8", lw=0.8, label="batch loss")
    ax.semilogx(sweep.rates, sweep.smoothed, color="C0", lw=1.8, label="smoothed loss")
    ax.axvline(
        sweep.suggestion, color="C3", ls="--", label=f"suggested rate {sweep.suggestion:.3g}"
    )
    finite = [v for v in sweep.smoothed if math.isfinite(v)]
    if finite:  # the diverged tail would squash the curve
        ax.set_ylim(min(finite) * 0.9, min(max(finite), DIVERGE_FACTOR * min(finite)) * 1.1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("lr-find: suggested = " + sweep.rule.split(" (")[0], fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png, json_path = out / "lr_find.png", out / "lr_find.json"
    try:
        write_with(png, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
    write_json(json_path, sweep.to_dict())
    return png, json_path
