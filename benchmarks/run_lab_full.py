"""Run the lab at full size and write docs/lab.md from the results.

Equivalent to ``trainlab lab all --out DIR`` followed by the Markdown page: each experiment
writes ``DIR/<name>/result.json`` and its figures; ``DIR/gallery.html`` shows them all; the
page lists which experiments ran at full size, which quick, and which not at all.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/run_lab_full.py [--out DIR] [--only NAME ...]
          [--quick] [--seed S] [--jobs N] [--collect]

``--jobs N`` runs N experiments at a time, each in its own process with one intra-op thread
(the lab's full size is sized for one thread each: two jobs on the two-core CPU).

``benchmarks/lab_remarks.md``, if present, is shown on the page as remarks written after the
run (they are not part of any result). ``--only`` runs just those experiments (results already
in DIR for the others are kept and shown); ``--collect`` runs nothing and only rewrites the
gallery and docs/lab.md from DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from trainlab.lab.base import experiment_names  # noqa: E402
from trainlab.lab.gallery import lab_markdown, load_results, run_lab, write_gallery  # noqa: E402


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

    names = sorted(names, key=seconds, reverse=True)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    extra = ["--quick"] if args.quick else []

    def one(name: str) -> int:
        cmd = [sys.executable, __file__, "--out", args.out, "--only", name]
        cmd += ["--seed", str(args.seed), *extra]
        return subprocess.run(cmd, env=env, check=False).returncode

    with ThreadPoolExecutor(args.jobs) as pool:
        failed = [n for n, rc in zip(names, pool.map(one, names), strict=True) if rc != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)


LIMIT_S = {"quick": 60, "full": 20 * 60}  # issue 17: quick < 60 s, full < 20 min each


def time_section(results: list[dict], command: str) -> str:
    """docs/benchmarks' section on the lab's time budget, from the results' own seconds."""
    total = sum(r["seconds"] for r in results)
    rows = [
        f"| {r['name']} | {r['size']} | {r['seconds']:.0f} | {r['threads']} | {r['commit']} | "
        f"{'yes' if r['seconds'] < LIMIT_S.get(r['size'], float('inf')) else 'no'} |"
        for r in results
    ]
    return "\n".join([
        "## The lab at full size: time budget",
        "",
        f"Machine: {machine()}. Command: `{command}`; per experiment its commit and date are in "
        "docs/lab.md. Limits (issue 17): under 20 minutes each at full size, all 13 under 2 hours "
        "on the 2-core CPU.",
        "",
        "| experiment | size | seconds | threads | commit | under its limit |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Sum of the experiments' seconds (one thread each): {total:.0f} s "
        f"({total / 60:.1f} min); `--jobs 2` runs two at a time, so the wall time is about half "
        "of that (docs/lab.md's remarks give the run's own).",
    ]) + "\n"  # fmt: skip


def commit() -> str:
    """The checkout's commit, marked "+changes" when the tree differs from it."""

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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--collect", action="store_true", help="only rewrite gallery and page")
    parser.add_argument("--jobs", type=int, default=0, help="experiments at once, one thread each")
    args = parser.parse_args()
    out = Path(args.out)
    if args.jobs and not args.collect:
        run_jobs(args.only or experiment_names(), args)
    elif not args.collect:
        for name in args.only or experiment_names():
            t0 = time.perf_counter()
            (result,) = run_lab([name], out, quick=args.quick, seed=args.seed)
            # which code measured it: experiments of one page may run at different commits
            path = out / name / "result.json"
            write_json(path, {**json.loads(path.read_text(encoding="utf-8")), "commit": commit()})
            print(f"{name}: {result['verdict']} ({time.perf_counter() - t0:.0f} s)", flush=True)
    results = load_results(out)
    write_gallery(out, results)
    ran = {r["name"] for r in results}
    command = "PYTHONPATH=src .venv/bin/python benchmarks/run_lab_full.py --jobs 2"
    page = lab_markdown(
        results,
        command=command + " (one thread per experiment, two at a time; each section names its "
        "size, commit, threads and date)",
        machine=machine(),
        not_run=[n for n in experiment_names() if n not in ran],
        remarks=REMARKS.read_text(encoding="utf-8") if REMARKS.is_file() else "",
    )
    write_text(ROOT / "docs" / "lab.md", page)
    write_text(ROOT / "docs" / "benchmarks" / "lab_time.md", time_section(results, command))
    print(f"wrote {out / 'gallery.html'}, docs/lab.md and docs/benchmarks/lab_time.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
