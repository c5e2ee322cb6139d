"""Run the lab at full size, record the runs in the ledger, and write docs/lab.md from them.

Equivalent to ``trainlab lab all --out DIR`` followed by the pages: each experiment writes
``DIR/<name>/result.json`` and its figures; ``DIR/gallery.html`` shows them all. Every full-size
result is recorded in ``src/trainlab/lab/ledger.json`` under its rule's version (a new version
when the rule's hash is new), with its commit, seeds and whether they were fresh;
``docs/lab_ledger.md`` is written from the ledger, ``docs/lab.md`` from DIR and the ledger, and
``docs/benchmarks/lab_time.md`` from the results' own seconds.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/run_lab_full.py [--out DIR] [--only NAME ...]
          [--quick] [--seed S] [--jobs N] [--collect] [--commit HASH]

``--seed S`` is the base seed: paired seeds S, S+1, ..., tuning seeds S+10000, S+10001, ...; a
second run on fresh seeds takes another base (the ledger says whether they were fresh).
``--jobs N`` runs N experiments at a time, each in its own process with one intra-op thread
(two jobs on the two-core CPU). ``--commit`` names the commit the code came from when running
from an exported tree (``git archive``), which is not a checkout. ``benchmarks/lab_remarks.md``,
if present, is shown on the page as remarks written after the run. ``--collect`` runs nothing:
it records DIR's results and rewrites the pages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
REMARKS = ROOT / "benchmarks" / "lab_remarks.md"  # comments on the last run, shown on the page

import torch  # noqa: E402

from trainlab.bench import cpu_model  # noqa: E402
from trainlab.fileio import write_json, write_text  # noqa: E402
from trainlab.lab import ledger  # noqa: E402
from trainlab.lab.base import experiment_names  # noqa: E402
from trainlab.lab.gallery import lab_markdown, load_results, run_lab, write_gallery  # noqa: E402

LIMIT_S = {"quick": 60, "full": 20 * 60}  # per experiment; all of them: 2 hours at full size


def machine() -> str:
    """The CPU, cores, torch and Python; the threads each experiment ran with are in its
    result (``--jobs`` gives each one thread)."""
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def run_jobs(names: list[str], args: argparse.Namespace) -> None:
    """Each experiment in its own process (``--only NAME``) with OMP_NUM_THREADS=1, ``--jobs``
    at a time, the longest first (by the seconds of a result already in ``--out``, if any) so
    that no long one is left running alone at the end."""
    from concurrent.futures import ThreadPoolExecutor

    def seconds(name: str) -> float:
        path = Path(args.out) / name / "result.json"
        return json.loads(path.read_text(encoding="utf-8"))["seconds"] if path.is_file() else 0.0

    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def one(name: str) -> int:
        cmd = [sys.executable, __file__, "--out", args.out, "--only", name, "--seed",
               str(args.seed), "--commit", args.commit, "--no-pages",
               *(["--quick"] if args.quick else [])]  # fmt: skip
        return subprocess.run(cmd, env=env, check=False).returncode

    names = sorted(names, key=seconds, reverse=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        failed = [n for n, rc in zip(names, pool.map(one, names), strict=True) if rc != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)


def time_section(results: list[dict], command: str, wall: str) -> str:
    """docs/benchmarks' section on the lab's time budget, from the results' own seconds."""
    total = sum(r["seconds"] for r in results)
    cpu = sum(r.get("cpu_seconds", 0) for r in results)
    rows = [
        f"| {r['name']} | {r['size']} | {r['seconds']:.0f} | {r.get('cpu_seconds', 0):.0f} | "
        f"{r['threads']} | "
        f"{r.get('commit', '?')} | {r['date']} | "
        f"{'yes' if r['seconds'] < LIMIT_S.get(r['size'], float('inf')) else 'no'} |"
        for r in results
    ]
    return "\n".join([
        "## The lab at full size: time budget",
        "",
        f"Machine: {machine()}. Command: `{command}`. Limits (issue 25): at most 20 minutes "
        "per experiment at full size and 2 hours for all of them on the 2-core CPU. The "
        "machine was shared with other engineers' work while these ran, so the seconds are "
        "wall time under load and may be inflated; the CPU seconds (the experiment's own "
        "process time, one thread) leave the others' load out.",
        "",
        "| experiment | size | seconds (wall) | CPU seconds | threads | commit | date | under 20 "
        "min |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Sum of the experiments' seconds (one thread each): {total:.0f} s wall ({total / 60:.1f} "
        f"min), {cpu:.0f} s CPU ({cpu / 60:.1f} min). {wall}",
    ]) + "\n"  # fmt: skip


def commit() -> str:
    """The checkout's commit, marked "+changes" when the tree under src differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src").strip()
    return head + ("+changes" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "lab-full"), help="results folder")
    parser.add_argument("--only", nargs="*", default=None, help="experiments to run")
    parser.add_argument("--quick", action="store_true", help="quick size instead of full")
    parser.add_argument("--seed", type=int, default=0, help="base seed (see the docstring)")
    parser.add_argument("--collect", action="store_true", help="only record and write pages")
    parser.add_argument("--jobs", type=int, default=0, help="experiments at once, one thread each")
    parser.add_argument("--commit", default="", help="the commit an exported tree came from")
    parser.add_argument("--no-pages", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    # a full hash given by hand is shortened to the form rev-parse --short gives
    code = args.commit = (
        args.commit[:7] if re.fullmatch(r"[0-9a-f]{40}", args.commit) else (args.commit or commit())
    )
    t0 = time.perf_counter()
    if args.jobs and not args.collect:
        run_jobs(args.only or experiment_names(), args)
    elif not args.collect:
        for name in args.only or experiment_names():
            t1 = time.perf_counter()
            (result,) = run_lab([name], out, quick=args.quick, seed=args.seed)
            path = out / name / "result.json"  # which code measured it, for the ledger
            write_json(path, {**json.loads(path.read_text(encoding="utf-8")), "commit": code})
            print(f"{name}: {result['verdict']} ({time.perf_counter() - t1:.0f} s)", flush=True)
    if args.no_pages:
        return 0
    results = load_results(out)
    if args.quick:  # a preview: the gallery only; the ledger and the pages hold full sizes
        write_gallery(out, results)
        print(f"wrote {out / 'gallery.html'} (quick sizes: the ledger and docs are unchanged)")
        return 0
    book = ledger.load()
    for r in results:
        if r["size"] in ledger.DECIDING_SIZES:
            book = ledger.record(book, r, commit=r.get("commit", code), machine=machine())
    ledger.save(book)
    names = experiment_names()
    write_gallery(out, results)
    command = (
        f"PYTHONPATH=src .venv/bin/python benchmarks/run_lab_full.py --jobs 2 --seed {args.seed}"
    )
    write_text(ROOT / "docs" / "lab_ledger.md", ledger.ledger_markdown(book, names))
    page = lab_markdown(
        results,
        command=command + " (one thread per experiment, two at a time; each section names its "
        "size, commit, rule, threads and date)",
        machine=machine(),
        not_run=[n for n in names if n not in {r["name"] for r in results}],
        remarks=REMARKS.read_text(encoding="utf-8") if REMARKS.is_file() else "",
        ledger_rows=ledger.summary_rows(book, names),
        ledger=book,
    )
    write_text(ROOT / "docs" / "lab.md", page)
    wall = "" if args.collect else f"This command's wall time: {time.perf_counter() - t0:.0f} s."
    write_text(ROOT / "docs" / "benchmarks" / "lab_time.md", time_section(results, command, wall))
    print(f"wrote {out / 'gallery.html'}, the ledger, docs/lab.md, docs/lab_ledger.md and "
          "docs/benchmarks/lab_time.md")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
