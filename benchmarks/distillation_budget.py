"""How much group-VAE training the distillation needs: the truth row's FVM / MIG / DCI against VAE steps, per recipe.

The truth row (the shapes3d world's exact per-factor edits) is the upper bound of the pipeline: pairs of its edits at
the calibrated strengths, a group VAE on them, the metrics on the grid. Each recipe (variant, learning rate, beta, batch,
pairs) is trained once up to the largest step count, with the metrics measured at every step count on the way (the
training resumes from its training state between points, so a point is what an uninterrupted run of that length gives).
Every point and its cumulative wall time (pairs + VAE + metrics) go to distillation_budget.csv; the plot to
distillation_budget.png. Finished points are reused when the script runs again.

Usage: .venv/bin/python benchmarks/distillation_budget.py [--recipes label:1e-3:1:64:20000 ...] [--points 500 1000 2000]
       [--seeds 0] [--counts quick] [--jobs 2] [--out docs/distillation]
A recipe is variant:lr:beta:batch:pairs.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from contrafeat.discovery.config import build_config
from contrafeat.discovery.run import answer_key_directions
from contrafeat.discovery.subspace import load_or_compute_pca
from contrafeat.evaluation.disentanglement import COUNTS
from contrafeat.evaluation.distillation import PAIRS_FOLDER, DistillSettings, pair_settings, truth_metrics
from contrafeat.evaluation.evaluate_run import EvaluationSettings, calibration_of
from contrafeat.evaluation.group_vae import train_vae
from contrafeat.evaluation.pairs import PairDataset, write_pairs
from contrafeat.features import build_sensor
from contrafeat.paths import cache_dir
from contrafeat.zoo import load_generator


@dataclass(frozen=True)
class Recipe:
    variant: str
    lr: float
    beta: float
    batch: int
    pairs: int

    @classmethod
    def parse(cls, text: str) -> "Recipe":
        try:
            variant, lr, beta, batch, pairs = text.split(":")
            return cls(variant, float(lr), float(beta), int(batch), int(pairs))
        except ValueError as error:
            raise SystemExit(f"--recipes {text!r}: expected variant:lr:beta:batch:pairs ({error})") from error

    @property
    def name(self) -> str:
        return f"{self.variant}-lr{self.lr:g}-beta{self.beta:g}-b{self.batch}-p{self.pairs}"


DEFAULT_RECIPES = ["label:1e-4:1:64:20000", "label:1e-3:1:64:20000", "label:1e-3:4:64:20000", "ada:1e-3:1:64:20000"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=DEFAULT_RECIPES, help="variant:lr:beta:batch:pairs")
    parser.add_argument("--points", nargs="+", type=int, default=[500, 1000, 2000, 4000, 8000], help="VAE step counts measured")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds of pairs, VAE and metrics")
    parser.add_argument(
        "--counts", default="quick", choices=list(COUNTS), help="metric sample counts (quick for the curve; full for a point beside published numbers)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="recipes at once, each in its own process with its share of the cores")
    parser.add_argument("--only-finished", action="store_true", help="run nothing: tabulate and plot the points measured so far (every --counts)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one recipe:seed in this process
    parser.add_argument("--work", type=Path, default=Path("benchmark_runs/distillation_budget"), help="pairs, training states, points")
    parser.add_argument("--out", type=Path, default=Path("docs/distillation"), help="folder of the CSV and the plot")
    return parser.parse_args()


def point_path(work: Path, recipe: Recipe, seed: int, point: int, counts: str) -> Path:
    """Where one measured point is stored (and read back on a later run)."""
    return work / f"{recipe.name}-seed{seed}" / f"point-{point}-{counts}.json"


def run_recipe(recipe: Recipe, seed: int, points: list[int], counts: str, work: Path, threads: int) -> None:
    """Every point of one recipe and seed not measured yet, resuming its VAE between points."""
    torch.set_num_threads(threads)
    folder = point_path(work, recipe, seed, 0, counts).parent
    folder.mkdir(parents=True, exist_ok=True)
    if all(point_path(work, recipe, seed, point, counts).is_file() for point in points):
        return
    settings = DistillSettings(
        num_pairs=recipe.pairs, batch=recipe.batch, beta=recipe.beta, lr=recipe.lr, variant=recipe.variant, seed=seed, metric_counts=counts
    )
    generator = load_generator("shapes3d")
    pca = load_or_compute_pca(generator, cache_dir("pca"), 1_000_000, progress=False)
    directions = answer_key_directions("truth", generator, pca, build_config(overrides={"method": "truth"}))
    started = time.perf_counter()
    sensor = build_sensor("mobilenet_v2", generator=generator)
    calibration = calibration_of(generator, directions, sensor, EvaluationSettings(seed=seed))
    pairs = pair_settings(generator, directions, sensor, calibration, settings)
    pair_folder = work / f"pairs-p{recipe.pairs}-seed{seed}" / PAIRS_FOLDER
    dataset = PairDataset(write_pairs(pair_folder, generator, directions, pairs, progress=False))
    timing_file = folder / "timings.json"
    if not timing_file.is_file():  # the first run's costs: pairs (rendered once), then VAE time per step count reached
        timing_file.write_text(json.dumps({"pairs": time.perf_counter() - started, "vae": 0.0, "step": 0}))

    def sample_batch(batch: int, rng: torch.Generator) -> tuple[torch.Tensor, ...]:
        first, second, labels = dataset.sample_batch(batch, rng)
        return (first, second, labels) if recipe.variant == "label" else (first, second)

    for point in sorted(points):
        stored = point_path(work, recipe, seed, point, counts)
        if stored.is_file():
            continue
        timings = json.loads(timing_file.read_text())
        started = time.perf_counter()
        model = train_vae(
            "ada-gvae", sample_batch, point, lr=recipe.lr, batch=recipe.batch, beta=recipe.beta, latent_dim=directions.count, seed=seed,
            progress=False, state_path=folder / "group_vae.pt", save_every=10**9,
        )
        if timings["step"] < point:
            timings = {**timings, "vae": timings["vae"] + time.perf_counter() - started, "step": point}
            timing_file.write_text(json.dumps(timings))
        started = time.perf_counter()
        metrics = truth_metrics(generator, model, settings)
        metric_seconds = time.perf_counter() - started
        row = {
            **asdict(recipe), "recipe": recipe.name, "seed": seed, "vae_steps": point, "counts": counts, **metrics,
            "pairs_s": round(timings["pairs"], 1), "vae_s": round(timings["vae"], 1), "metrics_s": round(metric_seconds, 1),
            "total_min": round((timings["pairs"] + timings["vae"] + metric_seconds) / 60, 2), "threads": threads,
        }
        stored.write_text(json.dumps(row))
        print(json.dumps(row), flush=True)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharex=True)
    targets = {"fvm": 0.95, "mig": 0.5, "dci": 0.8}
    colours: dict[str, str] = {}
    for axis, metric in zip(axes, ("fvm", "mig", "dci")):
        for recipe in dict.fromkeys(row["recipe"] for row in rows):
            styles = (("quick", dict(marker="o")), ("authors", dict(marker="s", linestyle="none")), ("full", dict(marker="*", markersize=12, linestyle="none")))
            for count, style in styles:
                mine = [row for row in rows if row["recipe"] == recipe and row["counts"] == count]
                if not mine:
                    continue
                steps = sorted({row["vae_steps"] for row in mine})
                means = [sum(r[metric] for r in mine if r["vae_steps"] == s) / sum(1 for r in mine if r["vae_steps"] == s) for s in steps]
                axis.plot(steps, means, label=f"{recipe} ({count} counts)", color=colours.setdefault(recipe, f"C{len(colours)}"), **style)
        axis.axhline(targets[metric], color="grey", linestyle="--", linewidth=1)
        axis.set_xscale("log")
        axis.set_title(metric.upper())
        axis.set_xlabel("group-VAE steps")
        axis.set_ylim(0, 1.02)
    axes[0].legend(fontsize=7, loc="lower right")
    figure.suptitle("truth row on shapes3d: FVM / MIG / DCI against group-VAE training steps (dashed: target)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    args = parse_args()
    cells = [(Recipe.parse(text), seed) for text in args.recipes for seed in args.seeds]
    jobs = max(1, min(args.jobs, len(cells)))
    threads = max(1, (os.cpu_count() or 2) // jobs)
    if args.one is not None:
        recipe, seed = args.one.rsplit("@", 1)
        run_recipe(Recipe.parse(recipe), int(seed), args.points, args.counts, args.work, threads)
        return 0
    started = time.perf_counter()
    if not args.only_finished:
        with ThreadPoolExecutor(jobs) as pool:
            commands = [[*sys.argv, "--one", f"{text}@{seed}", "--jobs", str(jobs)] for text in args.recipes for seed in args.seeds]
            for result in pool.map(lambda command: subprocess.run([sys.executable, *command]), commands):
                if result.returncode != 0:
                    raise SystemExit(f"a recipe failed (exit {result.returncode}): {' '.join(result.args)}")
    counts = list(COUNTS) if args.only_finished else [args.counts]
    paths = [point_path(args.work, recipe, seed, point, count) for recipe, seed in cells for count in counts for point in sorted(args.points)]
    rows = [json.loads(path.read_text()) for path in paths if path.is_file()]
    if not rows:
        raise SystemExit(f"no measured points under {args.work}")
    write_csv(rows, args.out / "distillation_budget.csv")
    plot(rows, args.out / "distillation_budget.png")
    print(f"wall {time.perf_counter() - started:.0f} s with {jobs} job(s) x {threads} thread(s); wrote {args.out / 'distillation_budget.csv'} and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
