"""Run every benchmark one after the other, then assemble docs/benchmarks.md.

Each ``bench_*.py`` writes its own section to ``docs/benchmarks/<topic>.md`` (machine, date,
command and numbers); this script runs them in a fixed order on an otherwise idle machine and
joins the sections. ``--collect`` only joins what is there.

Run:  .venv/bin/python benchmarks/run_all.py [--collect] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainlab.fileio import write_text  # noqa: E402

ORDER = [
    "main_job",
    "loader",
    "activations",
    "stats",
    "dropconnect",
    "mix",
    "augment",
    "diagnostics",
    "diagnostics_repeats4",  # the same design at 4 repeats, kept beside the 12-repeat run
    "distributed",
    "speed",  # the CPU part; the GPU part (speed_gpu.md) comes from benchmarks/gpu_check.sh
    "host_overhead",
    "own_model",
    "step_features",
    "step_features_process_pairs",  # the plain step against before, one process each (kept)
    "step_features_chunks6",  # the one-run design's first result, kept beside the new one
    "step_features_separate_runs",  # the first design's result, kept beside the new one
    "profile",
    "lr_find",
    "lr_find_longer",  # the same grid on 4x the images and 2x the epochs, seeds 7-9
    "lr_find_divisor10",  # the first rule's grid, kept beside the rule that replaced it
]
# pages of ORDER written by another script's options, or kept from an earlier design: not run
NOT_RUN = {
    "diagnostics_repeats4",
    "step_features_process_pairs",
    "step_features_chunks6",
    "step_features_separate_runs",
    "lr_find_longer",
    "lr_find_divisor10",
}

HEADER = """# Benchmarks

Speed and memory targets of trainlab, each measured against its baseline in the same process,
on the machine named in its section. Sections are written by the scripts in `benchmarks/`;
`benchmarks/run_all.py` runs them all and assembles this page. Timings on a shared 2-core
machine vary by several per cent from run to run; ratios measured in one process with the
baseline interleaved are the numbers to read.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collect", action="store_true", help="only assemble docs/benchmarks.md")
    parser.add_argument("--only", nargs="*", default=None, help="benchmarks to run (default: all)")
    args = parser.parse_args()
    if not args.collect:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        for name in args.only or [n for n in ORDER if n not in NOT_RUN]:
            script = ROOT / "benchmarks" / f"bench_{name}.py"
            print(f"== {script.name}", flush=True)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, check=True)
            print(f"   {time.perf_counter() - t0:.0f} s", flush=True)
    placed = [*ORDER]
    # written on a GPU machine (gpu_check.sh, gpu_tune.py), and by the 70-minute
    # bench_cifar10_cpu.py, the 45-minute --gpu-recipes-on-cpu and the 10-minute
    # jpeg_ceiling.py: not run from here
    placed[ORDER.index("host_overhead") + 1 : ORDER.index("host_overhead") + 1] = [
        "cifar10_cpu",
        "speed_gpu",
        "gpu_tune",
        "gpu_recipes_on_cpu",
        "jpeg_ceiling",
    ]
    sections = sorted(
        (ROOT / "docs" / "benchmarks").glob("*.md"),
        key=lambda p: (
            placed.index(p.stem.replace("-", "_"))
            if p.stem.replace("-", "_") in placed
            else len(placed),
            p.stem,
        ),
    )
    body = "\n\n".join(p.read_text().strip() for p in sections)
    write_text(ROOT / "docs" / "benchmarks.md", HEADER + "\n" + body + "\n")
    print(f"wrote docs/benchmarks.md from {len(sections)} sections")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
