"""The comparison table: every discovery method over several seeds on one world, scored side by side.

For each (method, seed): `contrafeat discover` then `contrafeat evaluate` in a subprocess (runs that
finished earlier are reused, interrupted ones resumed), then mean +- std per method of the attribute
score and attributes found (fixed and calibrated strengths), cosine to the true edits and, through the
group-VAE distillation, FVM / MIG / DCI; beta-VAE and FactorVAE trained on the images are reference rows.
Writes discovery_table.csv / .md into --out and prints the Markdown table.

Trained methods get the same budget of generator renders (--renders, default the default contra-bi run's), not
the same steps. The answer-key rows are the world's: truth on `shapes3d`, best-linear on both worlds.

Usage: .venv/bin/python benchmarks/discovery_table.py [--checkpoint shapes3d-learned] [--seeds 0 1 2] [--renders 37500] [--jobs 2] [--distill-seeds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from contrafeat.commands.evaluate_commands import REFERENCE_KINDS
from contrafeat.discovery.config import DiscoveryConfig, build_config
from contrafeat.discovery.registry import METHODS, method_spec
from contrafeat.discovery.run import check_answer_key
from contrafeat.discovery.trainer import saved_state
from contrafeat.errors import UserError
from contrafeat.evaluation.disentanglement import COUNTS
from contrafeat.evaluation.distillation import DistillSettings
from contrafeat.evaluation.tables import aggregate, to_markdown, write_tables
from contrafeat.zoo import load_generator

CONTRAFEAT = [sys.executable, "-m", "contrafeat.cli"]
DEFAULT_RENDERS = build_config().renders_per_step * build_config().steps
"""The default run's renders (contra-bi: 1,500 steps of batch 10 at 2.5 renders per code)."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=DiscoveryConfig.checkpoint, help="the world (or generator) every method runs on")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), help="methods to compare (default: all the world allows)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="discovery seeds per method")
    parser.add_argument("--renders", type=int, default=DEFAULT_RENDERS, help="generator renders of each trained method's training")
    parser.add_argument("--distill-seeds", type=int, default=None, help="only the first N seeds get the group-VAE part (default: all)")
    parser.add_argument("--pairs", type=int, default=DistillSettings.num_pairs, help="pairs per distilled run")
    parser.add_argument("--vae-steps", type=int, default=DistillSettings.vae_steps, help="group-VAE and reference-VAE training steps")
    parser.add_argument("--metric-counts", default=DistillSettings.metric_counts, choices=list(COUNTS), help="FVM / MIG / DCI sample counts")
    parser.add_argument("--predictor", default="exact", help="attribute predictor of `contrafeat evaluate`")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, each with 1 torch thread per job's share of the cores")
    parser.add_argument("--only-finished", action="store_true", help="run nothing: tabulate the cells whose evaluation is already there")
    parser.add_argument("--work", type=Path, default=Path("benchmark_runs"), help="folder of the run folders")
    parser.add_argument("--out", type=Path, default=Path("benchmark_results"), help="folder of the tables")
    args = parser.parse_args()
    if args.renders < 1:
        parser.error(f"--renders {args.renders}: expected a positive integer")
    if args.methods is None:
        args.methods = methods_for(args.checkpoint)
    return args


def methods_for(checkpoint: str) -> list[str]:
    """Every method the generator can run: the answer keys only where it knows them."""
    generator = load_generator(checkpoint)
    config = DiscoveryConfig(checkpoint=checkpoint)
    usable = []
    for name in METHODS:
        try:
            check_answer_key(method_spec(name).directions, generator, config)
        except UserError:
            continue
        usable.append(name)
    return usable


def run(command: list[str], log: Path) -> None:
    """Run a contrafeat command, its output appended to `log`; a failure stops the benchmark with the log named."""
    with open(log, "a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if result.returncode != 0:
        raise SystemExit(f"failed (exit {result.returncode}): {' '.join(command)}; see {log}")


def cell_folder(args: argparse.Namespace, method: str, seed: int) -> Path:
    return args.work / f"{method.replace('+', '_')}-seed{seed}"


def distill_options(args: argparse.Namespace) -> list[str]:
    return ["--pairs", str(args.pairs), "--vae-steps", str(args.vae_steps), "--metric-counts", args.metric_counts]


def metric_row(folder: Path, method: str, seed: int) -> dict:
    stored = json.loads((folder / "evaluation.json").read_text())
    return {"run": folder.name, "method": method, "seed": seed, **stored["metrics"]}


def discover_and_evaluate(method: str, seed: int, distill: bool, args: argparse.Namespace, threads: int) -> dict:
    """One (method, seed) cell: its run folder, reused or resumed when already there, and its metric row."""
    folder = cell_folder(args, method, seed)
    log = args.work / f"{folder.name}.log"
    base = [*CONTRAFEAT, "--threads", str(threads)]
    if not (folder / "directions.json").is_file():
        if saved_state(folder) is not None:
            command = [*base, "discover", "--resume", str(folder), "--no-progress"]
        else:
            command = [*base, "discover", "--checkpoint", args.checkpoint, "--method", method, "--seed", str(seed), "--out", str(folder), "--no-progress"]
            if method_spec(method).trains:
                command += ["--renders", str(args.renders)]
        run(command, log)
    evaluate = [*base, "evaluate", str(folder), "--out", str(folder / "evaluation"), "--predictor", args.predictor, "--no-progress"]
    evaluate += [*distill_options(args), "--seed", str(seed)] if distill else ["--no-distill"]
    run(evaluate, log)
    return metric_row(folder, method, seed)


def finished_rows(args: argparse.Namespace, distill_seeds: list[int]) -> list[dict]:
    """The rows of the cells (and reference VAEs) evaluated so far, running nothing."""
    rows = [
        metric_row(cell_folder(args, method, seed), method, seed)
        for seed in args.seeds
        for method in args.methods
        if (cell_folder(args, method, seed) / "evaluation.json").is_file()
    ]
    return rows + [row for seed in distill_seeds for row in reference_rows(args, seed, threads=1, run_missing=False)]


def reference_rows(args: argparse.Namespace, seed: int, threads: int, run_missing: bool = True) -> list[dict]:
    """beta-VAE and FactorVAE on the procedural images with one seed, a row each (only those already there unless run_missing)."""
    out = args.work / f"references-seed{seed}"
    if run_missing:
        command = [*CONTRAFEAT, "--threads", str(threads), "evaluate", "--references", "--checkpoint", args.checkpoint, "--out", str(out)]
        command += ["--no-progress", "--seed", str(seed)]
        run(command + distill_options(args), args.work / f"references-seed{seed}.log")
    rows = []
    for kind, weight in REFERENCE_KINDS.items():
        stored = out / "references" / f"{kind}.json"
        if stored.is_file():
            rows.append({"run": f"reference {kind}", "method": f"{kind} ({weight}, on the images)", "seed": seed, **json.loads(stored.read_text())["metrics"]})
    return rows


def main() -> None:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    distill_seeds = args.seeds[: len(args.seeds) if args.distill_seeds is None else args.distill_seeds]
    cells = [(method, seed, seed in distill_seeds) for seed in args.seeds for method in args.methods]
    start = time.perf_counter()
    if args.only_finished:
        rows = finished_rows(args, distill_seeds)
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            references = [pool.submit(reference_rows, args, seed, threads) for seed in distill_seeds]
            futures = [pool.submit(discover_and_evaluate, method, seed, distill, args, threads) for method, seed, distill in cells]
            rows = [future.result() for future in futures] + [row for future in references for row in future.result()]
    elapsed = time.perf_counter() - start
    order = {method: position for position, method in enumerate(args.methods)}
    rows.sort(key=lambda row: (order.get(row["method"], len(order)), row["seed"]))
    table = aggregate(rows)
    write_tables(rows, args.out / "discovery_runs")
    csv_path, md_path = write_tables(table, args.out / "discovery_table")
    print(
        f"{args.checkpoint}; seeds {args.seeds}; {args.renders} generator renders per trained method; predictor {args.predictor}; "
        "attribute matrix 500 samples, truncation 0.5;"
    )
    print(f"group VAE on seed(s) {distill_seeds}: {args.pairs} pairs, {args.vae_steps} steps, {args.metric_counts} metric counts")
    print(to_markdown(table))
    timing = "finished cells only" if args.only_finished else f"wall time {elapsed / 60:.1f} min with {args.jobs} job(s) x {threads} thread(s)"
    print(f"{timing}; tables: {csv_path}, {md_path}")


if __name__ == "__main__":
    main()
