"""Does the rate that ``trainlab lr-find`` suggests train as well as the best rate of a grid?

Target (issue 26): on recipes/default.toml and recipes/fashion-mnist-fast.toml, the suggested
rate reaches at least 99% of the best grid rate's test accuracy, over paired seeds.

For each recipe: the finder runs once on the whole recipe, as ``trainlab lr-find RECIPE`` does
(the recipe's seed, 100 steps, its rule fixed in trainlab.lr_find before this grid was run);
then the recipe is trained with each rate of a log grid around the suggestion, s * 10^(k/2)
for k = -2 .. 2, and the recipe's own optim.lr, with the same seeds for every rate (paired: the
same subset, initialization and batch order). Each rate's accuracy is reported per seed, with
its mean and the paired difference to the suggestion (mean and 95% Student-t interval). The
verdict compares mean accuracies: suggestion / best.

The machine is 2 shared cores: ``--subset``, ``--epochs`` and ``--test-subset`` cut the recipes
down (the defaults below); a cut-down check is not the full claim, and the page says so. Run:

    PYTHONPATH=src nice -n 5 .venv/bin/python benchmarks/bench_lr_find.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from trainlab.bench import cpu_model  # noqa: E402
from trainlab.engine import fit  # noqa: E402
from trainlab.fileio import write_json, write_text  # noqa: E402
from trainlab.lab.evidence import paired_t_interval  # noqa: E402
from trainlab.lr_find import RULE, lr_find  # noqa: E402
from trainlab.recipe import load_recipe  # noqa: E402

RECIPES = ["recipes/default.toml", "recipes/fashion-mnist-fast.toml"]
GRID_HALF_DECADES = (-2, -1, 0, 1, 2)  # s * 10^(k/2): from s/10 to 10 s
# (the first rule's grid, (-1 .. 3), sat above its low suggestion; this one is centred)
TARGET = 0.99


def accuracy(path: str, overrides: list[str], rate: float, seed: int) -> float:
    recipe = load_recipe(ROOT / path, [*overrides, f"optim.lr={rate!r}", f"train.seed={seed}"])
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(recipe, Path(tmp) / "run", progress=False, report=False)
    return float(result.final["test_acc"])


def check_recipe(path: str, overrides: list[str], seeds: list[int], log) -> dict:
    recipe = load_recipe(ROOT / path, overrides)
    # the finder as a user runs it, on the whole recipe (its sweep takes 100 batches anyway)
    sweep = lr_find(load_recipe(ROOT / path, ["train.device=cpu"]))
    s = sweep.suggestion
    log(f"{path}: suggested {s:.4g} ({sweep.stopped}; {sweep.seconds:.0f} s)")
    grid = sorted({s * 10 ** (k / 2) for k in GRID_HALF_DECADES} | {recipe.optim.lr})
    acc: dict[float, list[float]] = {rate: [] for rate in grid}
    for seed in seeds:
        for rate in grid:
            t0 = time.perf_counter()
            acc[rate].append(accuracy(path, overrides, rate, seed))
            seconds = time.perf_counter() - t0
            log(f"  seed {seed} rate {rate:.4g}: {acc[rate][-1]:.4f} ({seconds:.0f} s)")
    return {"recipe": path, "recipe_lr": recipe.optim.lr, "suggestion": s, "grid": grid,
            "sweep": sweep.to_dict(), "acc": {repr(r): a for r, a in acc.items()}}  # fmt: skip


def table(result: dict, seeds: list[int]) -> tuple[list[str], bool]:
    s = result["suggestion"]
    acc = {float(r): a for r, a in result["acc"].items()}
    means = {r: statistics.fmean(a) for r, a in acc.items()}
    best = max(means, key=means.get)
    ratio = means[s] / means[best]
    seed_cols = " | ".join(f"seed {k}" for k in seeds)
    lines = [
        f"| rate | {seed_cols} | mean | paired diff. to the suggestion (95% interval) |",
        "|" + "---|" * (len(seeds) + 3),
    ]
    for rate in sorted(acc):
        tags = [t for t, on in (("suggested", rate == s), ("recipe's", rate == result["recipe_lr"]),
                                ("best", rate == best)) if on]  # fmt: skip
        name = f"{rate:.3g}" + (f" ({', '.join(tags)})" if tags else "")
        cells = " | ".join(f"{100 * v:.2f}" for v in acc[rate])
        if rate == s:
            diff = "—"
        else:
            d, (lo, hi) = paired_t_interval(acc[rate], acc[s])
            diff = f"{100 * d:+.2f} ({100 * lo:+.2f}, {100 * hi:+.2f})"
        lines.append(f"| {name} | {cells} | {100 * means[rate]:.2f} | {diff} |")
    met = ratio >= TARGET
    lines.append("")
    lines.append(
        f"Suggested {s:.3g} (the recipe has {result['recipe_lr']:g}); sweep: "
        f"{len(result['sweep']['rates'])} steps recorded, {result['sweep']['stopped']}. Mean "
        "accuracy of the suggestion / the best grid rate "
        f"({best:.3g}) = {100 * means[s]:.2f} / {100 * means[best]:.2f} = **{ratio:.4f}**: "
        f"target >= {TARGET} **{'met' if met else 'not met'}**."
    )
    return lines, met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=2560, help="training images (0: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--test-subset", type=int, default=1000, help="test images (0: all)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=4,
        help="seeds first-seed, first-seed + 1, ...: 1-3 judged the first rule",
    )
    parser.add_argument("--recipes", nargs="+", default=RECIPES)
    parser.add_argument("--page", default="docs/benchmarks/lr_find.md", help="the page written")
    parser.add_argument("--record", default=str(Path(tempfile.gettempdir()) / "bench_lr_find.json"))
    args = parser.parse_args()
    cut = [f"data.subset={args.subset}", f"train.epochs={args.epochs}",
           f"data.test_subset={args.test_subset}", "train.eval_every=0",
           "diagnostics.every=0", "train.device=cpu"]  # fmt: skip
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.perf_counter()
    results = []
    for path in args.recipes:
        results.append(check_recipe(path, cut, seeds, lambda line: print(line, flush=True)))
        write_json(args.record, results)  # what is done survives an interrupted run
    sections = []
    for result in results:
        lines, _ = table(result, seeds)
        sections += [f"### {result['recipe']}", "", *lines, ""]
    page = [
        "## lr-find: the suggested rate against a grid (bench_lr_find.py)",
        "",
        f"Machine: {cpu_model()}, {torch.get_num_threads()} thread(s), shared with other jobs; "
        f"{started}; {(time.perf_counter() - t0) / 60:.0f} min. Command: "
        f"`PYTHONPATH=src nice -n 5 .venv/bin/python benchmarks/bench_lr_find.py "
        f"--subset {args.subset} --epochs {args.epochs} --test-subset {args.test_subset} "
        f"--seeds {args.seeds} --first-seed {args.first_seed}`.",
        "",
        f"**A cut-down check, not the full claim:** each recipe trained on {args.subset or 'all'} "
        f"training images for {args.epochs} epochs (the cosine schedule over those epochs), "
        f"tested on {args.test_subset or 'all'} test images, every other key as in the recipe. "
        "The finder ran on the whole recipe, as `trainlab lr-find RECIPE` does (1e-6 to 10 in "
        f"100 steps of its first epoch). Rule: {RULE}. Accuracies in %, seeds "
        f"{seeds[0]}..{seeds[-1]} paired across rates.",
        "",
        "The rule changed after the first grid: lr-find suggested the minimum / 10 (fastai's "
        "lr_min, fixed before that grid), which reached 0.957 and 0.947 of the best grid rate "
        "on seeds 1-3, whose best rates lay at about the minimum / 3 (the next section, kept). "
        "This grid judges the new divisor, 3, on seeds that the first grid never used, with the "
        "grid centred on the new suggestion (s/10 to 10 s).",
        "",
        *sections,
    ]
    write_text(ROOT / args.page, "\n".join(page).rstrip() + "\n")
    print(json.dumps({r["recipe"]: r["suggestion"] for r in results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
