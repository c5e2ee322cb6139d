"""Watching a run: a progress bar and an epoch line when someone watches, nothing otherwise."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from trainlab.engine.checkpoint import stop_if_diverged
from trainlab.engine.step import Run


class Quiet:
    def begin(self, run: Run) -> None: ...
    def step(self, run: Run, i: int) -> None: ...
    def end(self, run: Run) -> None: ...
    def epoch_line(self, run: Run, row: dict[str, Any]) -> None: ...


class Progress(Quiet):
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
                    stop_if_diverged(tally.first_bad, run.epoch, self.out)
            elapsed = time.perf_counter() - run.timing["epoch_start"]
            loss, acc = tally.loss_sum.item() / tally.seen, tally.correct.item() / tally.seen
            rate = tally.seen / max(1e-9, elapsed)
            eta = _clock(run_eta(run, self.cfg.epochs * steps))
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.3f}", img_s=f"{rate:,.0f}",
                                     run_eta=eta)  # fmt: skip
            elif done < steps:  # the epoch line follows the last step
                print(
                    f"epoch {run.epoch + 1} step {done}/{steps}: train_loss {loss:.4f}  "
                    f"train_acc {acc:.4f}  ({rate:,.0f} img/s, run eta {eta})",
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
            f"{row['train_acc']:.4f}{tested}  ({row['seconds']:.1f}s, run eta "
            f"{_clock(run_eta(run, self.cfg.epochs * len(run.loader)))})",
            flush=True,
        )


def run_eta(run: Run, total_steps: int) -> float:
    """Seconds left in the whole run, at this process's average time a step so far (its test
    passes included, so a run that tests every epoch is not promised too early)."""
    start, first = run.timing.get("run_start"), run.timing.get("run_start_step", 0)
    done = run.step - first
    if start is None or done <= 0:
        return float("nan")
    return (time.perf_counter() - start) / done * max(0, total_steps - run.step)


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan: nothing to go on yet
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
