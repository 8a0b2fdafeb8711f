"""The whole ablation suite (every study of `contrafeat ablate`) on the shapes3d world, with its wall time.

Prints each study's mean +- std table (also written with its figure under --out) and, last, the wall
time, the machine and the settings. Options are those of `contrafeat ablate` (e.g. --quick, --seeds,
--steps, --jobs, --work, --out); finished runs in --work are reused, so an interrupted suite resumes.
Usage: .venv/bin/python benchmarks/ablations.py [--quick] [--jobs 2] [--out ablation_results]
"""
from __future__ import annotations

import os
import platform
import sys
import time

import torch

from contrafeat.cli import main as contrafeat_main


def main() -> int:
    started = time.perf_counter()
    status = contrafeat_main(["ablate", "all", *sys.argv[1:]])
    minutes = (time.perf_counter() - started) / 60
    print(f"suite wall time {minutes:.1f} min on {os.cpu_count()} CPU core(s), {platform.processor() or platform.machine()}, torch {torch.__version__}")
    return status


if __name__ == "__main__":
    sys.exit(main())
