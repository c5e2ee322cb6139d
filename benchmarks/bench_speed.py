"""Time to accuracy of the fast recipes, and the measurements behind their engine settings.

On the CPU: recipes/fashion-mnist-fast.toml, 3 seeds, target 93.0% in under 3 minutes a run
(issue 9). On a GPU: recipes/cifar10-fast.toml (94.0% in under 10 s, 5 seeds) and
recipes/fashion-mnist-fast-gpu.toml (94.0% in under 5 s, 5 seeds), and a check that no
host-device synchronization happens inside an epoch. The whole GPU part is made to finish in
under 8 minutes on one H100: each part checks the clock and is skipped, and said to be, when the
budget is spent.

Before the timed runs, each recipe's training step is timed at its batch size in float32 and
bf16 autocast, eager and compiled (on a GPU, bf16 alone is compiled); torch.compile is used for
the timed runs only where it measured faster, and then with one untimed warm-up run that pays
its code generation (airbench times the same way). On a GPU, a recipe that misses a target is
followed by one seed of each of its VARIANTS while the budget lasts, so that one GPU session
brings back what is needed to retune it.

Timing: `trainlab bench time-to-accuracy`'s convention, from the data on the device to the
end of the final evaluation; the data loading time is reported once, apart.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_speed.py [--device cpu|cuda]
Writes docs/benchmarks/speed.md (CPU) or docs/benchmarks/speed_gpu.md (GPU); --out FILE
writes elsewhere. With --gpu-recipes-on-cpu it trains seed 0 of each GPU recipe on the CPU
instead, for its accuracy alone (docs/benchmarks/gpu_recipes_on_cpu.md).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainlab.bench import cpu_model, time_to_accuracy  # noqa: E402
from trainlab.fileio import write_text  # noqa: E402
from trainlab.recipe import load_recipe  # noqa: E402
from trainlab.train import (  # noqa: E402
    autocast_for,
    build_optimizer,
    build_training_model,
    prepare_splits,
    uses_channels_last,
)

RECIPES = ROOT / "recipes"
# (recipe, target accuracy %, seeds, time limit per run in seconds), per device type
CASES = {
    "cpu": [("fashion-mnist-fast.toml", 93.0, 3, 180.0)],
    "cuda": [
        ("cifar10-fast.toml", 94.0, 5, 10.0),
        ("fashion-mnist-fast-gpu.toml", 94.0, 5, 5.0),
    ],
}
GPU_BUDGET_S = 7.5 * 60  # the device check must end within 8 minutes
# Where a GPU recipe misses a target, one seed of each of these variants is tried, while the
# budget lasts, so that a single GPU session comes back with the data to retune it. The CIFAR-10
# recipe reached 89.5% at seed 0 on the CPU, and 90.4% with widths [64, 128, 256, 256]
# (docs/benchmarks/gpu_recipes_on_cpu.md): width alone is not enough, so length comes first.
VARIANTS = {
    "cifar10-fast.toml": [
        ["train.epochs=30"],
        ["train.epochs=40"],
        ["model.widths=[64,128,256,256]", "train.epochs=30"],
        ["model.widths=[64,128,256,512]", "train.epochs=40"],
    ],
    "fashion-mnist-fast-gpu.toml": [["train.epochs=10"], ["train.epochs=20"]],
}
STEPS = 30  # timed training steps per variant, after warm-up steps


def machine(device: torch.device) -> str:
    base = f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({base})"
    return base


def step_throughput(recipe, splits, device, *, amp: bool, compiled: bool) -> float:
    """Training images per second of the recipe's step (forward, loss, backward, SGD step)."""
    torch.manual_seed(0)
    model = build_training_model(recipe, splits, None).to(device)
    channels_last = uses_channels_last(recipe)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, model)
    step_model = torch.compile(model) if compiled else model
    bs = recipe.train.batch_size
    x = splits.train[0][:bs].to(device)
    y = splits.train[1][:bs].to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = torch.bfloat16

    def step() -> None:
        ctx = torch.autocast(device.type, dtype=dtype) if amp else contextlib.nullcontext()
        with ctx:
            logits = step_model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(5):  # warm-up: compilation, cuDNN's algorithm search, the allocator
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(STEPS):
        step()
    sync()
    return STEPS * bs / (time.perf_counter() - t0)


def sync_sites(recipe, device) -> list[str]:
    """Source lines that synchronized with the GPU during a short fit (CUDA's sync debug mode)."""
    from trainlab.train import fit

    # eager: compiling would cost time and change no line of the engine that synchronizes
    train = dataclasses.replace(recipe.train, epochs=1, compile=False)
    short = dataclasses.replace(recipe, train=train)
    sites: dict[str, int] = {}
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with tempfile.TemporaryDirectory() as tmp:
                fit(short, tmp, progress=False, report=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            site = f"{Path(w.filename).name}:{w.lineno}"
            sites[site] = sites.get(site, 0) + 1
    return [f"`{site}` x{n}" for site, n in sorted(sites.items())]


def gpu_recipes_on_cpu(out: Path) -> int:
    """One full-length seed of each GPU recipe on the CPU: their accuracy, where no GPU is lent."""
    command = "PYTHONPATH=src .venv/bin/python benchmarks/bench_speed.py --gpu-recipes-on-cpu"
    lines = [
        "## The GPU recipes' accuracy, checked on the CPU",
        "",
        f"Machine: {machine(torch.device('cpu'))}. Date: "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Command: `{command}`.",
        "",
        "Seed 0 of each GPU recipe at full length, on the CPU with bf16 autocast "
        "(`train.cpu_autocast = true`), as a GPU would run it in bf16. It says whether the recipe "
        "reaches its accuracy, not how fast a GPU gets there.",
        "",
        "| recipe | target | test accuracy, seed 0 | CPU time |",
        "|---|---:|---:|---:|",
    ]
    for name, target, _, _ in CASES["cuda"]:
        recipe = load_recipe(RECIPES / name, ["train.device=cpu", "train.cpu_autocast=true"])
        stats = time_to_accuracy(recipe, target, 1)
        run = stats["runs"][0]
        lines.append(
            f"| `recipes/{name}` | {target:.1f}% | {100 * run['test_acc']:.2f}% | "
            f"{run['seconds'] / 60:.1f} min |"
        )
        write_text(out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--out", default=None, help="markdown file to write")
    parser.add_argument(
        "--gpu-recipes-on-cpu",
        action="store_true",
        help="train seed 0 of each GPU recipe on the CPU, for its accuracy (about 45 min here)",
    )
    args = parser.parse_args()
    if args.gpu_recipes_on_cpu:
        default = ROOT / "docs" / "benchmarks" / "gpu_recipes_on_cpu.md"
        return gpu_recipes_on_cpu(Path(args.out) if args.out else default)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_speed: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    kind = device.type
    out = (
        Path(args.out)
        if args.out
        else ROOT / "docs" / "benchmarks" / ("speed.md" if kind == "cpu" else "speed_gpu.md")
    )
    t_start = time.perf_counter()
    command = "PYTHONPATH=src .venv/bin/python benchmarks/bench_speed.py " + " ".join(sys.argv[1:])
    title = "Speed: time to accuracy" + (" on a GPU" if kind == "cuda" else " on the CPU")
    lines = [
        f"## {title}",
        "",
        f"Machine: {machine(device)}. Date: "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Command: `{command.strip()}`.",
        "",
        "Each run is timed from its data on the device to the end of its final evaluation "
        "(airbench's convention); the data set is loaded once and that time is given apart.",
    ]

    def over_budget() -> bool:
        return kind == "cuda" and time.perf_counter() - t_start > GPU_BUDGET_S

    for name, target, runs, limit in CASES[kind]:
        recipe = load_recipe(RECIPES / name, [f"train.device={args.device}"])
        lines += ["", f"### `recipes/{name}`: target {target:.1f}% in under {limit:g} s", ""]
        if over_budget():
            lines.append("Skipped: the 8-minute budget of this check was spent before it.")
            continue
        splits = prepare_splits(recipe)
        variants = {}
        lines += [
            f"Training step at batch {recipe.train.batch_size} ({STEPS} steps after 5 warm-up "
            "steps; compilation time not included):",
            "",
            "| variant | images/s |",
            "|---|---:|",
        ]
        for amp in (False, True):
            for compiled in (False, True):
                if kind == "cuda" and compiled and not amp:
                    continue  # a GPU runs bf16; one compilation fewer keeps the check short
                precision = "bf16 autocast" if amp else "float32"
                label = f"{precision}, {'compiled' if compiled else 'eager'}"
                try:
                    rate = step_throughput(recipe, splits, device, amp=amp, compiled=compiled)
                except Exception as exc:  # a compiler missing on this machine, for one
                    lines.append(f"| {label} | failed: {type(exc).__name__}: {exc} |")
                    continue
                variants[(amp, compiled)] = rate
                lines.append(f"| {label} | {rate:,.0f} |")
        amp = autocast_for(recipe, device) is not contextlib.nullcontext  # as the engine runs
        eager, comp = variants.get((amp, False), 0.0), variants.get((amp, True), 0.0)
        use_compile = comp > 1.05 * eager  # on only where it pays
        lines += [
            "",
            f"torch.compile for the timed runs: **{'on' if use_compile else 'off'}** "
            f"({comp / max(eager, 1e-9):.2f}x the eager step with the recipe's precision).",
        ]
        if over_budget():
            lines.append("\nTimed runs skipped: the 8-minute budget of this check was spent.")
            continue
        timed = load_recipe(
            RECIPES / name,
            [f"train.device={args.device}", f"train.compile={str(use_compile).lower()}"],
        )
        warmup = 1 if (use_compile or kind == "cuda") else 0
        stats = time_to_accuracy(timed, target, runs, warmup=warmup)
        acc, sec = stats["accuracy"], stats["seconds"]
        ok_acc = acc["mean"] >= target / 100
        ok_time = sec["max"] < limit
        lines += [
            "",
            "| seed | test accuracy (%) | seconds |",
            "|---:|---:|---:|",
            *(
                f"| {r['seed']} | {100 * r['test_acc']:.2f} | {r['seconds']:.1f} |"
                for r in stats["runs"]
            ),
            f"| mean +- std | {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} | "
            f"{sec['mean']:.1f} +- {sec['std']:.1f} |",
            "",
            f"Data loading: {stats['load_seconds']:.1f} s (once); warm-up runs not counted: "
            f"{warmup}.",
            "",
            "| target | measured | met |",
            "|---|---|---|",
            f"| mean test accuracy >= {target:.1f}% | {100 * acc['mean']:.2f}% | "
            f"{'yes' if ok_acc else 'NO'} |",
            f"| every run under {limit:g} s | slowest {sec['max']:.1f} s | "
            f"{'yes' if ok_time else 'NO'} |",
        ]
        if kind == "cuda" and not over_budget():
            sites = sync_sites(timed, device)
            lines += [
                "",
                "Host-device synchronizations in a one-epoch fit (CUDA sync debug mode), by source "
                "line: " + ("; ".join(sites) if sites else "none") + ". The engine's own are the "
                "epoch-end reads of the running loss and accuracy and the evaluation's; any line "
                "inside the step loop is a defect.",
            ]
        # the first recipe may spend 60% of the budget on variants, the last all that is left
        deadline = GPU_BUDGET_S * (1.0 if name == CASES[kind][-1][0] else 0.6)
        variants = VARIANTS.get(name, []) if kind == "cuda" and not (ok_acc and ok_time) else []
        if variants:
            lines += [
                "",
                "Variants tried because a target was missed (seed 0 each, eager: a compilation "
                "per new shape would eat the budget):",
                "",
                "| overrides | test accuracy (%) | seconds |",
                "|---|---:|---:|",
            ]
        for overrides in variants:
            if time.perf_counter() - t_start > deadline:
                lines.append("| (the rest skipped: budget spent) | | |")
                break
            variant = load_recipe(RECIPES / name, [f"train.device={args.device}", *overrides])
            run = time_to_accuracy(variant, target, 1)["runs"][0]
            lines.append(
                f"| `{' '.join(overrides)}` | {100 * run['test_acc']:.2f} | {run['seconds']:.1f} |"
            )
            write_text(out, "\n".join(lines) + "\n")
        write_text(out, "\n".join(lines) + "\n")  # what is measured so far survives a kill
    lines += ["", f"Whole benchmark: {time.perf_counter() - t_start:.0f} s."]
    write_text(out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
