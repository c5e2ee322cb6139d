"""Time to accuracy of the fast recipes, and the measurements behind their engine settings.

On the CPU: recipes/fashion-mnist-fast.toml, 3 seeds, target 93.0% in under 3 minutes a run
(issue 9). Its training step is timed in float32 and bf16 autocast, eager and compiled, and
torch.compile is used for the timed runs only where it measured faster.

On a GPU (`--device cuda`, or benchmarks/gpu_check.sh), in one budget of 8 minutes:
1. recipes/fashion-mnist-fast-gpu.toml: the step timed eager and compiled (bf16), 5 seeds
   against 94.0% in under 5 s, and the host-device synchronizations of an epoch listed;
2. CIFAR-10: the CIFAR_CANDIDATES, cheapest first (multiply-adds x epochs), one seed each,
   until one reaches CANDIDATE_BAR; then 5 seeds of that one (or, if none does, of the most
   accurate) against 94.0% in under 10 s, compiled where that measured faster. Each step checks
   the clock: what would not fit is skipped, and said to be.
Timed runs follow one untimed warm-up run that pays compilation and cuDNN's algorithm search
(airbench times the same way). The report is rewritten after every run, so a run cut short
still brings back what it measured.

Timing: `trainlab bench time-to-accuracy`'s convention, from the data on the device to the
end of the final evaluation; the data loading time is reported once, apart.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_speed.py [--device cpu|cuda]
Writes docs/benchmarks/speed.md (CPU) or docs/benchmarks/speed_gpu.md (GPU); --out FILE
writes elsewhere. `--device cpu --gpu-plan --smoke` rehearses the GPU check's every code path
on tiny subsets in a few minutes (not a measurement). With --gpu-recipes-on-cpu it trains seed
0 of each GPU recipe on the CPU instead, for its accuracy alone
(docs/benchmarks/gpu_recipes_on_cpu.md).
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
import traceback
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

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
GPU_BUDGET_S = 8.0 * 60  # gpu_check.sh stops the whole check at 8.5 minutes
# CIFAR-10 configurations, cheapest first. On an H200 (docs/benchmarks/gpu_tune.md) the
# recipe as written reached 89.8%, and every larger or longer network 89.7 to 91.1%: a
# VGG-style stack at the widths of Page's ResNet-9 (Page 2018) 91.1% in 24 epochs, a ResNet-18
# 90.8%. These are the ones worth their time on the next GPU; the last asks whether length
# still pays.
CIFAR_CANDIDATES = [
    [],
    ["model.widths=[64,128,256,512]", "train.epochs=24"],
    ["model.widths=[64,128,256,512]", "train.epochs=40"],
    ["model.kind=resnet", "model.widths=[64,128,256,512]", "model.depth=2", "train.epochs=40"],
]
CANDIDATE_BAR = 94.25  # seed 0's accuracy (%) that earns 5 seeds: seeds spread by about 0.15
# where its target is missed: on the H200 it met 94% (94.29%) but not 5 s, and 10 epochs gave
# 94.11% at seed 0 in 7.5 s (docs/benchmarks/speed_gpu.md), so shorter runs come first
FMNIST_VARIANTS = [["train.epochs=10"], ["train.epochs=12"]]
# --smoke: every code path of the GPU check on tiny subsets, one epoch a run
SMOKE = ["data.subset=1024", "data.test_subset=500", "train.epochs=1"]
STEPS = 30  # timed training steps per variant, after warm-up steps


def machine(device: torch.device) -> str:
    base = f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({base})"
    return base


def step_throughput(
    recipe,
    splits,
    device,
    *,
    amp: bool,
    compiled: bool,
    steps: int = STEPS,
    mode: str | None = None,
) -> tuple[float, float]:
    """Training images per second of the recipe's step (forward, loss, backward, SGD step), and
    the seconds its 5 warm-up steps took (torch.compile's code generation, where compiled).
    ``mode`` is torch.compile's (None: its default; "reduce-overhead" adds CUDA graphs)."""
    torch.manual_seed(0)
    model = build_training_model(recipe, splits, None).to(device)
    channels_last = uses_channels_last(recipe)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, model)
    step_model = torch.compile(model, mode=mode) if compiled else model
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
    t_warm = time.perf_counter()
    for _ in range(5):  # warm-up: compilation, cuDNN's algorithm search, the allocator
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * bs / (time.perf_counter() - t0), t0 - t_warm


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


class Report:
    """Markdown lines, echoed as they come and rewritten to ``out`` (atomically) on flush."""

    def __init__(self, out: Path):
        self.out, self.lines = out, []

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
        self.lines += lines

    def flush(self) -> None:
        write_text(self.out, "\n".join(self.lines) + "\n")


def header(report: Report, device: torch.device, title: str) -> None:
    script = Path(sys.argv[0]).name
    command = f"PYTHONPATH=src .venv/bin/python benchmarks/{script} " + " ".join(sys.argv[1:])
    report.add(
        f"## {title}",
        "",
        f"Machine: {machine(device)}. Date: "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Command: `{command.strip()}`.",
        "",
        "Each run is timed from its data on the device to the end of its final evaluation "
        "(airbench's convention); the data set is loaded once and that time is given apart.",
    )


def measure_step(report, recipe, splits, device, *, steps=STEPS, other_precision=False):
    """Time the recipe's step eager and compiled in each of torch.compile's modes worth trying;
    the fastest wins where it beats eager by 5%. With ``other_precision`` the step is also timed
    in the precision the recipe does not use (float32 against bf16 autocast), for the record.
    Returns (the `--set` overrides that select the winner, the seconds its compiled warm-up
    took)."""
    amp = autocast_for(recipe, device) is not contextlib.nullcontext  # as the engine runs it
    report.add(
        f"Training step at batch {recipe.train.batch_size} ({steps} steps after 5 warm-up "
        "steps; compilation not included):",
        "",
        "| variant | images/s | warm-up (s) |",
        "|---|---:|---:|",
    )
    modes = {"eager": None, "compiled": "default"}
    if device.type == "cuda":  # CUDA graphs: the launch-bound step replayed at once
        modes["compiled, reduce-overhead (CUDA graphs)"] = "reduce-overhead"
    rates = {}
    for precision in sorted({amp, not amp} if other_precision else {amp}):
        for label, mode in modes.items():
            label = f"{'bf16 autocast' if precision else 'float32'}, {label}"
            try:
                rate, warm = step_throughput(
                    recipe,
                    splits,
                    device,
                    amp=precision,
                    compiled=mode is not None,
                    steps=steps,
                    mode=None if mode in (None, "default") else mode,
                )
            except Exception as exc:  # a compiler missing on this machine, for one
                report.add(f"| {label} | failed: {type(exc).__name__}: {exc} | |")
                continue
            if precision == amp:
                rates[mode] = (rate, warm)
            report.add(f"| {label} | {rate:,.0f} | {warm:.1f} |")
    eager = rates.get(None, (0.0, 0.0))[0]
    best = max((m for m in rates if m is not None), key=lambda m: rates[m][0], default=None)
    if best is None or rates[best][0] <= 1.05 * eager:
        report.add(
            "",
            "torch.compile for the timed runs: **off** (no mode beat the eager step in the "
            "recipe's precision by 5%"
            + (f"; best {rates[best][0] / max(eager, 1e-9):.2f}x" if best else "")
            + ").",
        )
        return ["train.compile=false"], 0.0
    report.add(
        "",
        f"torch.compile for the timed runs: **on, mode {best}** "
        f"({rates[best][0] / max(eager, 1e-9):.2f}x the eager step in the recipe's precision).",
    )
    return ["train.compile=true", f"train.compile_mode={best}"], rates[best][1]


def seeds_table(report, stats, target, limit) -> tuple[bool, bool]:
    """The per-seed table and the target verdicts; returns (accuracy met, time met)."""
    acc, sec = stats["accuracy"], stats["seconds"]
    ok_acc = acc["mean"] >= target / 100
    ok_time = sec["max"] < limit
    report.add(
        "",
        "| seed | test accuracy (%) | seconds |",
        "|---:|---:|---:|",
        *(
            f"| {r['seed']} | {100 * r['test_acc']:.2f} | {r['seconds']:.2f} |"
            for r in stats["runs"]
        ),
        f"| mean +- std | {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} | "
        f"{sec['mean']:.2f} +- {sec['std']:.2f} |",
        "",
        f"Warm-up runs not counted: {stats['warmup_runs']}.",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| mean test accuracy >= {target:.1f}% over {len(stats['runs'])} seeds | "
        f"{100 * acc['mean']:.2f}% | {'yes' if ok_acc else 'NO'} |",
        f"| every run under {limit:g} s | slowest {sec['max']:.2f} s | "
        f"{'yes' if ok_time else 'NO'} |",
    )
    return ok_acc, ok_time


def multiply_adds(recipe, splits) -> int:
    """Multiply-adds of one image's forward pass through the recipe's model (convs, linears)."""
    model = build_training_model(recipe, splits, None).eval()
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
            total += output.numel() * k // module.groups
        else:
            total += module.in_features * module.out_features

    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    handles = [m.register_forward_hook(count) for m in layers]
    with torch.no_grad():
        model(splits.train[0][:1])
    for h in handles:
        h.remove()
    return total


def gpu_check(device: torch.device, out: Path, smoke: bool) -> int:
    """Issue 9's GPU check, in GPU_BUDGET_S (see the module's docstring)."""
    from trainlab.data import load_dataset

    t_start = time.perf_counter()

    def left() -> float:
        return GPU_BUDGET_S - (time.perf_counter() - t_start)

    torch.backends.cudnn.benchmark = True  # as the engine sets it for CUDA runs
    extra = SMOKE if smoke else []
    steps = 3 if smoke else STEPS
    report = Report(out)
    header(
        report,
        device,
        "Speed: time to accuracy on a GPU" + (" (SMOKE: not a measurement)" if smoke else ""),
    )
    dev = [f"train.device={device}"]
    fmnist, cifar = RECIPES / "fashion-mnist-fast-gpu.toml", RECIPES / "cifar10-fast.toml"
    data, load_seconds = {}, {}
    for path in (fmnist, cifar):
        name = load_recipe(path).data.name
        t0 = time.perf_counter()
        data[name] = load_dataset(name)
        load_seconds[name] = time.perf_counter() - t0
    report.add(
        "",
        f"Data loading (once, decoded and cached): Fashion-MNIST "
        f"{load_seconds['fashion-mnist']:.1f} s, CIFAR-10 {load_seconds['cifar10']:.1f} s.",
    )
    report.flush()
    compile_seconds = 60.0  # until measured

    # 1. Fashion-MNIST, 94.0% in under 5 s over 5 seeds.
    target, limit = 94.0, 5.0
    report.add("", f"### `recipes/{fmnist.name}`: target {target:.1f}% in under {limit:g} s", "")
    try:
        recipe = load_recipe(fmnist, [*dev, *extra])
        splits = prepare_splits(recipe, data["fashion-mnist"])
        compiling, compile_seconds = measure_step(report, recipe, splits, device, steps=steps)
        report.flush()
        timed = load_recipe(fmnist, [*dev, *compiling, *extra])
        stats = time_to_accuracy(timed, target, 5, warmup=1, dataset=data["fashion-mnist"])
        ok_acc, ok_time = seeds_table(report, stats, target, limit)
        report.flush()
        if device.type == "cuda":
            sites = sync_sites(timed, device)
            report.add(
                "",
                "Host-device synchronizations in a one-epoch fit (CUDA sync debug mode), by "
                "source line: " + ("; ".join(sites) if sites else "none") + ". The engine's own "
                "are the epoch-end reads of the running loss and accuracy and the evaluation's; "
                "any line inside the step loop would be a defect.",
            )
        if not (ok_acc and ok_time):
            report.add(
                "",
                "Variants, because a target was missed (seed 0 each, as timed above):",
                "",
                "| overrides | test accuracy (%) | seconds |",
                "|---|---:|---:|",
            )
            for overrides in FMNIST_VARIANTS:
                if left() < 0.6 * GPU_BUDGET_S:  # the rest belongs to CIFAR-10
                    report.add("| (the rest skipped: budget) | | |")
                    break
                variant = load_recipe(
                    fmnist,
                    [*dev, *compiling, *overrides, *extra],
                )
                run = time_to_accuracy(variant, target, 1, warmup=0, dataset=data["fashion-mnist"])[
                    "runs"
                ][0]
                report.add(
                    f"| `{' '.join(overrides)}` | {100 * run['test_acc']:.2f} | "
                    f"{run['seconds']:.2f} |"
                )
                report.flush()
    except Exception as exc:  # report it, and go on to CIFAR-10
        report.add("", f"Failed: `{type(exc).__name__}: {exc}`")
        traceback.print_exc()
    report.flush()

    # 2. CIFAR-10: the cheapest candidate to reach the bar, then 5 seeds of it.
    target, limit = 94.0, 10.0
    report.add(
        "",
        f"### `recipes/{cifar.name}` and its candidates: target {target:.1f}% in under {limit:g} s",
        "",
        f"One seed of each candidate, eager, cheapest first, until one reaches "
        f"{CANDIDATE_BAR}% (overrides of `recipes/{cifar.name}`):",
        "",
        "| candidate | M multiply-adds / image | epochs | test accuracy (%), seed 0 | seconds |",
        "|---|---:|---:|---:|---:|",
    )
    try:
        base = load_recipe(cifar, [*dev, *extra])
        splits = prepare_splits(base, data["cifar10"])
        tried = []  # (overrides, recipe, accuracy, seconds)
        per_unit = None  # seconds per multiply-add-epoch, from the last candidate run
        for overrides in CIFAR_CANDIDATES:
            recipe = load_recipe(cifar, [*dev, *overrides, *extra])
            macs = multiply_adds(recipe, splits)
            cost = macs * recipe.train.epochs
            label = f"`{' '.join(overrides)}`" if overrides else "the recipe as written"
            estimate = per_unit * cost if per_unit else 20.0
            # room for this one and a few seeds of it (the first run's time, cold, overstates)
            if 3 * estimate > left() - 15:
                report.add(
                    f"| {label} | {macs / 1e6:.0f} | {recipe.train.epochs} | skipped: about "
                    f"{estimate:.0f} s a run, {left():.0f} s of budget left | |"
                )
                break
            run = time_to_accuracy(recipe, target, 1, dataset=data["cifar10"])["runs"][0]
            per_unit = run["seconds"] / cost
            tried.append((overrides, recipe, run["test_acc"], run["seconds"]))
            report.add(
                f"| {label} | {macs / 1e6:.0f} | {recipe.train.epochs} | "
                f"{100 * run['test_acc']:.2f} | {run['seconds']:.2f} |"
            )
            report.flush()
            if 100 * run["test_acc"] >= CANDIDATE_BAR:
                break
        if not tried:
            raise RuntimeError("no CIFAR-10 candidate fitted in the budget")
        overrides, chosen, acc0, sec0 = next(
            (t for t in tried if 100 * t[2] >= CANDIDATE_BAR), max(tried, key=lambda t: t[2])
        )
        label = f"`{' '.join(overrides)}`" if overrides else "the recipe as written"
        report.add("", f"Chosen for 5 seeds: {label} (seed 0: {100 * acc0:.2f}% in {sec0:.2f} s).")
        compiling, warm = ["train.compile=false"], 0.0
        if left() > compile_seconds * 3 + 30 + 6 * sec0:  # two compilations, then the runs
            report.add("")
            compiling, warm = measure_step(report, chosen, splits, device, steps=steps)
        else:
            report.add("", "torch.compile not measured for it: the budget left was too short.")
        runs = 5
        while runs > 1 and (runs + 1) * sec0 * 1.1 + warm > left():
            runs -= 1
        final = load_recipe(cifar, [*dev, *overrides, *compiling, *extra])
        report.flush()
        stats = time_to_accuracy(final, target, runs, warmup=1, dataset=data["cifar10"])
        if runs < 5:
            report.add("", f"Only {runs} seeds fitted in the budget.")
        seeds_table(report, stats, target, limit)
    except Exception as exc:
        report.add("", f"Failed: `{type(exc).__name__}: {exc}`")
        traceback.print_exc()
    report.add("", f"Whole check: {time.perf_counter() - t_start:.0f} s.")
    report.flush()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--out", default=None, help="markdown file to write")
    parser.add_argument(
        "--gpu-plan", action="store_true", help="run the GPU check's plan (implied by cuda)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="the GPU plan on tiny subsets: a rehearsal"
    )
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
    gpu_plan = device.type == "cuda" or args.gpu_plan
    default = "speed_gpu.md" if gpu_plan else "speed.md"
    out = Path(args.out) if args.out else ROOT / "docs" / "benchmarks" / default
    if gpu_plan:
        return gpu_check(device, out, args.smoke)
    return cpu_check(device, out)


def cpu_check(device: torch.device, out: Path) -> int:
    """The CPU target: recipes/fashion-mnist-fast.toml, 93.0% in under 3 minutes, 3 seeds."""
    from trainlab.data import load_dataset

    t_start = time.perf_counter()
    report = Report(out)
    header(report, device, "Speed: time to accuracy on the CPU")
    for name, target, runs, limit in CASES["cpu"]:
        recipe = load_recipe(RECIPES / name, [f"train.device={device}"])
        report.add("", f"### `recipes/{name}`: target {target:.1f}% in under {limit:g} s", "")
        t0 = time.perf_counter()
        dataset = load_dataset(recipe.data.name, recipe.data.data_dir or None)
        load_seconds = time.perf_counter() - t0
        splits = prepare_splits(recipe, dataset)
        compiling, _ = measure_step(report, recipe, splits, device, other_precision=True)
        timed = load_recipe(RECIPES / name, [f"train.device={device}", *compiling])
        warmup = 1 if timed.train.compile else 0
        stats = time_to_accuracy(timed, target, runs, warmup=warmup, dataset=dataset)
        seeds_table(report, stats, target, limit)
        report.add("", f"Data loading: {load_seconds:.1f} s (once).")
        report.flush()
    report.add("", f"Whole benchmark: {time.perf_counter() - t_start:.0f} s.")
    report.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
