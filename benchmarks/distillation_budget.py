"""How much group-VAE training the distillation needs: the truth row's FVM / MIG / DCI against VAE steps, per recipe.

The truth row (the shapes3d world's exact per-factor edits) is the upper bound of the pipeline: pairs of its edits at
the calibrated strengths, a group VAE on them, the metrics on the grid. Each recipe (variant, learning rate, beta, batch,
pairs) is trained once up to the largest step count, with the metrics measured at every step count on the way (the
training resumes from its training state between points, so a point is what an uninterrupted run of that length gives).
Every point and its cumulative wall time (pairs + VAE + metrics; `vae_s` the group-VAE training seconds to reach
it, `step_s` per step) go to NAME.csv; the plot to NAME.png (top row: against steps; bottom row: against the VAE's
wall seconds, so recipes of different cost per step are compared at equal time). Finished points are reused when
the script runs again.

A `warmup-cosine` recipe is scheduled over its largest point (its horizon, part of its name): the smaller points
are the same run part-way along that schedule, not runs of their own length.

`--step-cost` measures only the seconds of one quiet group-VAE step (random pairs, after warm-up) for each
resolution x batch x channels-last x torch.compile asked, and prints a table.

Usage: .venv/bin/python benchmarks/distillation_budget.py [--recipes label:1e-3:1:64:20000 ...] [--points 500 1000 2000]
       [--seeds 0] [--counts quick] [--jobs 2] [--out docs/distillation] [--name distillation_budget]
       .venv/bin/python benchmarks/distillation_budget.py --step-cost [--resolutions 64 32] [--batches 64 128] [--channels-last] [--compile]
A recipe is variant:lr:beta:batch:pairs[:resolution[:schedule]] (resolution 64 | 32, schedule constant | warmup-cosine).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
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
from contrafeat.evaluation.group_vae import RESOLUTION, RESOLUTIONS, SCHEDULES, VAETraining, train_vae
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
    resolution: int = RESOLUTION
    schedule: str = "constant"

    @classmethod
    def parse(cls, text: str) -> "Recipe":
        fields = text.split(":")
        try:
            if not 5 <= len(fields) <= 7:
                raise ValueError(f"{len(fields)} fields")
            variant, lr, beta, batch, pairs = fields[:5]
            resolution = int(fields[5]) if len(fields) > 5 else RESOLUTION
            schedule = fields[6] if len(fields) > 6 else "constant"
            if resolution not in RESOLUTIONS or schedule not in SCHEDULES:
                raise ValueError(f"resolution in {RESOLUTIONS}, schedule in {SCHEDULES}")
            return cls(variant, float(lr), float(beta), int(batch), int(pairs), resolution, schedule)
        except ValueError as error:
            raise SystemExit(f"--recipes {text!r}: expected variant:lr:beta:batch:pairs[:resolution[:schedule]] ({error})") from error

    def name(self, horizon: int) -> str:
        """The published 64 px constant-rate recipes keep their earlier names; a schedule's name carries its horizon."""
        name = f"{self.variant}-lr{self.lr:g}-beta{self.beta:g}-b{self.batch}-p{self.pairs}"
        if self.resolution != RESOLUTION:
            name += f"-r{self.resolution}"
        if self.schedule != "constant":
            name += f"-{self.schedule}{horizon}"
        return name


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
    parser.add_argument("--name", default="distillation_budget", help="file name (without extension) of the CSV and the plot")
    parser.add_argument("--step-cost", action="store_true", help="only measure the seconds of one group-VAE step per setting")
    parser.add_argument("--resolutions", nargs="+", type=int, default=[64, 32], choices=RESOLUTIONS, help="--step-cost: VAE resolutions")
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 128], help="--step-cost: batch sizes (pairs)")
    parser.add_argument("--channels-last", action="store_true", help="--step-cost: also time channels-last memory format")
    parser.add_argument("--compile", action="store_true", help="--step-cost: also time torch.compile'd encoder and decoder")
    parser.add_argument("--repeats", type=int, default=20, help="--step-cost: timed steps per setting (after 5 warm-up steps)")
    return parser.parse_args()


def point_path(work: Path, recipe: Recipe, seed: int, point: int, counts: str, horizon: int) -> Path:
    """Where one measured point is stored (and read back on a later run)."""
    return work / f"{recipe.name(horizon)}-seed{seed}" / f"point-{point}-{counts}.json"


def run_recipe(recipe: Recipe, seed: int, points: list[int], counts: str, work: Path, threads: int) -> None:
    """Every point of one recipe and seed not measured yet, resuming its VAE between points."""
    torch.set_num_threads(threads)
    horizon = max(points)
    folder = point_path(work, recipe, seed, 0, counts, horizon).parent
    folder.mkdir(parents=True, exist_ok=True)
    if all(point_path(work, recipe, seed, point, counts, horizon).is_file() for point in points):
        return
    settings = DistillSettings(
        num_pairs=recipe.pairs, batch=recipe.batch, beta=recipe.beta, lr=recipe.lr, variant=recipe.variant, seed=seed, metric_counts=counts,
        resolution=recipe.resolution, schedule=recipe.schedule,
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
        stored = point_path(work, recipe, seed, point, counts, horizon)
        if stored.is_file():
            continue
        timings = json.loads(timing_file.read_text())
        started = time.perf_counter()
        model = train_vae(
            "ada-gvae", sample_batch, point, lr=recipe.lr, batch=recipe.batch, beta=recipe.beta, latent_dim=directions.count, seed=seed,
            progress=False, state_path=folder / "group_vae.pt", save_every=10**9, resolution=recipe.resolution, schedule=recipe.schedule,
            schedule_steps=horizon,
        )
        if timings["step"] < point:
            timings = {**timings, "vae": timings["vae"] + time.perf_counter() - started, "step": point}
            timing_file.write_text(json.dumps(timings))
        started = time.perf_counter()
        metrics = truth_metrics(generator, model, settings)
        metric_seconds = time.perf_counter() - started
        row = {
            **asdict(recipe), "horizon": horizon if recipe.schedule != "constant" else point, "recipe": recipe.name(horizon), "seed": seed,
            "vae_steps": point, "counts": counts, **metrics,
            "pairs_s": round(timings["pairs"], 1), "vae_s": round(timings["vae"], 1), "step_s": round(timings["vae"] / point, 4),
            "metrics_s": round(metric_seconds, 1), "total_min": round((timings["pairs"] + timings["vae"] + metric_seconds) / 60, 2),
            "threads": threads, "torch": torch.__version__, "measured": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        }
        stored.write_text(json.dumps(row))
        print(json.dumps(row), flush=True)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(key for row in rows for key in row)), restval="")
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, grid = plt.subplots(2, 3, figsize=(13, 7.2), sharey=True)
    targets = {"fvm": 0.95, "mig": 0.5, "dci": 0.8}
    colours: dict[str, str] = {}
    styles = (("quick", dict(marker="o")), ("authors", dict(marker="s", linestyle="none")), ("full", dict(marker="*", markersize=12, linestyle="none")))
    for axes, (x_key, x_label) in zip(grid, (("vae_steps", "group-VAE steps"), ("vae_s", "group-VAE wall seconds (training only)"))):
        for axis, metric in zip(axes, ("fvm", "mig", "dci")):
            for recipe in dict.fromkeys(row["recipe"] for row in rows):
                for count, style in styles:
                    mine = [row for row in rows if row["recipe"] == recipe and row["counts"] == count]
                    if not mine:
                        continue
                    steps = sorted({row["vae_steps"] for row in mine})
                    at = [[r for r in mine if r["vae_steps"] == s] for s in steps]
                    xs = [sum(float(r[x_key]) for r in group) / len(group) for group in at]
                    means = [sum(float(r[metric]) for r in group) / len(group) for group in at]
                    axis.plot(xs, means, label=f"{recipe} ({count} counts)", color=colours.setdefault(recipe, f"C{len(colours)}"), **style)
            axis.axhline(targets[metric], color="grey", linestyle="--", linewidth=1)
            axis.set_xscale("log")
            axis.set_title(metric.upper())
            axis.set_xlabel(x_label)
            axis.set_ylim(0, 1.02)
    grid[0][0].legend(fontsize=7, loc="lower right")
    figure.suptitle("truth row on shapes3d: FVM / MIG / DCI against group-VAE steps (top) and wall seconds (bottom); dashed: target", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def step_cost(args: argparse.Namespace) -> None:
    """Seconds of one quiet label-tied group-VAE step on random pairs, per resolution x batch x layout x compile."""
    torch.set_num_threads(max(1, os.cpu_count() or 2))
    layouts = [False, True] if args.channels_last else [False]
    compiles = [False, True] if args.compile else [False]
    print("resolution,batch,channels_last,compile,median_step_s,min_step_s,pairs_per_s,warmup_s")
    for resolution in args.resolutions:
        for batch in args.batches:
            for channels_last in layouts:
                for compiled in compiles:
                    training = VAETraining("ada-gvae", 6, 3, 1e-3, 1.0, 10.0, 0, "cpu", resolution)
                    fixed = torch.Generator().manual_seed(0)
                    first, second = (torch.rand(batch, 3, 64, 64, generator=fixed) for _ in range(2))
                    pairs = (first, second, torch.randint(6, (batch,), generator=fixed))
                    if channels_last:
                        training.model = training.model.to(memory_format=torch.channels_last)
                        pairs = (pairs[0].contiguous(memory_format=torch.channels_last), pairs[1].contiguous(memory_format=torch.channels_last), pairs[2])
                    started = time.perf_counter()
                    if compiled:
                        training.model.encoder = torch.compile(training.model.encoder)
                        training.model.decoder = torch.compile(training.model.decoder)
                    for _ in range(5):
                        training.step(pairs)
                    warm = time.perf_counter() - started
                    times = []
                    for _ in range(args.repeats):
                        started = time.perf_counter()
                        training.step(pairs)
                        times.append(time.perf_counter() - started)
                    seconds = statistics.median(times)  # the median: robust to another process taking the cores for a moment
                    print(f"{resolution},{batch},{channels_last},{compiled},{seconds:.4f},{min(times):.4f},{batch / seconds:.0f},{warm:.1f}", flush=True)


def main() -> int:
    args = parse_args()
    if args.step_cost:
        step_cost(args)
        return 0
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
    # A scheduled recipe run now has the horizon max(points); --only-finished also finds those run to any listed horizon.
    horizons = sorted(args.points) if args.only_finished else [max(args.points)]
    paths = list(dict.fromkeys(
        point_path(args.work, recipe, seed, point, count, horizon)
        for recipe, seed in cells for horizon in (horizons if recipe.schedule != "constant" else [0]) for count in counts for point in sorted(args.points)
    ))
    rows = [json.loads(path.read_text()) for path in paths if path.is_file()]
    if not rows:
        raise SystemExit(f"no measured points under {args.work}")
    write_csv(rows, args.out / f"{args.name}.csv")
    plot(rows, args.out / f"{args.name}.png")
    print(f"wall {time.perf_counter() - started:.0f} s with {jobs} job(s) x {threads} thread(s); wrote {args.out / args.name}.csv and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
