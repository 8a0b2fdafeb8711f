"""Discovery recipes against renders and seeds: which settings give clean directions, and the same ones every run.

Each recipe (a name and `contrafeat discover` flags) is trained at each seed into WORK/NAME_sSEED, one run at a time
(or --jobs at once, each single-threaded), skipping runs that finished; every run logs its exact-factor score,
per-factor score and attributes found at each look (validation.jsonl). The script then writes, from whatever runs
exist: a CSV of every look, a table of the final scores (mean and sample std over the seeds, wall time), and a
picture of both scores against generator renders, mean and range over the seeds, one line per recipe.

Usage: .venv/bin/python benchmarks/discovery_budget.py --recipe "default=" --recipe "full-w=--subspace-dim 64 --averaging 0.5" \
           [--seeds 0 1 2] [--threads 1] [--jobs 1] [--work benchmark_runs/budget] [--out docs/study/budget] [--no-train]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from contrafeat.evaluation.tables import mean_std  # noqa: E402
from contrafeat.viz.progress import read_log  # noqa: E402

MEASURES = ("score", "factor_score", "found")


def recipe(text: str) -> tuple[str, list[str]]:
    """'NAME=FLAGS' -> (NAME, [flags])."""
    name, _, flags = text.partition("=")
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise argparse.ArgumentTypeError(f"--recipe {text!r}: expected NAME=FLAGS with a plain NAME")
    return name, shlex.split(flags)


def train(folder: Path, flags: list[str], seed: int, threads: int) -> None:
    """One `contrafeat discover` into `folder` (resumed when it stopped early); its stderr and stdout to folder.log."""
    if (folder / "directions.json").is_file():
        return
    where = ["--resume", str(folder)] if (folder / "training_state.pt").is_file() else ["--out", str(folder), *flags, "--seed", str(seed)]
    command = [sys.executable, "-m", "contrafeat.cli", "--threads", str(threads), "discover", "--no-progress", *where]
    with open(folder.with_suffix(".log"), "a") as log:
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        log.write(f"wall {time.perf_counter() - started:.1f} s\n")


def run_rows(name: str, folder: Path, seed: int) -> list[dict]:
    """Every look of one run with its renders so far."""
    config = yaml.safe_load((folder / "config.yaml").read_text())
    per_step = config["renders_per_step"]
    return [
        {"recipe": name, "seed": seed, "step": look["step"], "renders": look["step"] * per_step, **{key: look[key] for key in MEASURES if key in look}}
        for look in read_log(folder / "validation.jsonl")
    ]


def wall_seconds(folder: Path) -> float | None:
    """The run's wall time when its log holds one ('wall N s'; a resumed run's last part only)."""
    log = folder.with_suffix(".log")
    found = re.findall(r"wall ([0-9.]+) s", log.read_text()) if log.is_file() else []
    return float(found[-1]) if found else None


def summary(looks: list[dict], folders: dict[tuple[str, int], Path]) -> list[dict]:
    """Per recipe: runs, the final looks' measures as mean and std, the wall time's mean."""
    table = []
    for name in dict.fromkeys(row["recipe"] for row in looks):
        finals = {}
        for row in looks:
            if row["recipe"] == name:
                finals[row["seed"]] = row  # the last look of each seed
        entry: dict = {"recipe": name, "runs": len(finals), "renders": max(row["renders"] for row in finals.values())}
        for key in MEASURES:
            entry[key] = mean_std([float(row[key]) for row in finals.values()])
        entry["all six found"] = sum(row["found"] == 6 for row in finals.values())
        walls = [wall for wall in (wall_seconds(folders[name, seed]) for seed in finals) if wall is not None]
        entry["wall s"] = sum(walls) / len(walls) if walls else None
        table.append(entry)
    return table


def write_picture(looks: list[dict], path: Path) -> None:
    """Score and per-factor score against renders: the mean over seeds, shaded from the lowest to the highest seed."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for number, name in enumerate(dict.fromkeys(row["recipe"] for row in looks)):
        rows = [row for row in looks if row["recipe"] == name]
        renders = sorted({row["renders"] for row in rows})
        for axis, key in zip(axes, ("score", "factor_score")):
            values = [[row[key] for row in rows if row["renders"] == count] for count in renders]
            axis.plot(renders, [np.mean(v) for v in values], color=f"C{number}", label=name)
            axis.fill_between(renders, [min(v) for v in values], [max(v) for v in values], color=f"C{number}", alpha=0.15)
    for axis, title in zip(axes, ("score (mean over all K directions)", "per-factor score")):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("generator renders")
        axis.grid(alpha=0.3)
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def cell(value: object) -> str:
    if isinstance(value, tuple):
        return f"{value[0]:.3f} ± {value[1]:.3f}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=recipe, action="append", required=True, help="NAME=FLAGS of contrafeat discover (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="threads of each run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--work", type=Path, default=Path("benchmark_runs/budget"))
    parser.add_argument("--out", type=Path, default=None, help="stem of the CSV, table and picture (default: WORK/budget)")
    parser.add_argument("--no-train", action="store_true", help="only summarise the runs that exist")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    folders = {(name, seed): args.work / f"{name}_s{seed}" for name, _ in args.recipe for seed in args.seeds}
    if not args.no_train:
        flags = dict(args.recipe)
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda key: train(folders[key], flags[key[0]], key[1], args.threads), folders))
    looks = [row for (name, seed), folder in folders.items() if (folder / "directions.json").is_file() for row in run_rows(name, folder, seed)]
    if not looks:
        sys.exit("discovery_budget: no finished runs to summarise")
    stem = args.out or args.work / "budget"
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["recipe", "seed", "step", "renders", *MEASURES])
        writer.writeheader()
        writer.writerows(looks)
    table = summary(looks, folders)
    columns = list(table[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[column]) for column in columns) + " |" for row in table]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    write_picture(looks, stem.with_suffix(".png"))
    print(json.dumps({"csv": str(stem.with_suffix(".csv")), "picture": str(stem.with_suffix(".png"))}))


if __name__ == "__main__":
    main()
