"""Trainer throughput next to the bare generator + sensor cost of the same images, on the shapes3d world.

Prints, per method: steps/s and images/s of the trainer, the time of one forward+backward of the
generator and the sensor on the same number of images, and their ratio (the trainer's overhead).
Usage: .venv/bin/python benchmarks/discover_speed.py [--steps 20] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from contrafeat.discovery.config import build_config
from contrafeat.discovery.methods import build_navigator, build_objective
from contrafeat.discovery.subspace import compute_pca
from contrafeat.discovery.trainer import Trainer
from contrafeat.features import build_sensor
from contrafeat.gan.zoo import load_generator


def time_bare(generator, sensor, num_images: int, repeats: int) -> float:
    """Seconds for one forward+backward of generator and sensor on `num_images` codes."""
    z = torch.randn(num_images, generator.z_dim, generator=torch.Generator().manual_seed(0))
    ws = generator.broadcast(generator.mapping(z)).requires_grad_(True)
    timings = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        features = sensor(generator.synthesis(ws, noise_mode="random"))
        sum(f.square().mean() for f in features).backward()
        timings.append(time.perf_counter() - start)
    return min(timings[1:])


def time_trainer(trainer: Trainer, steps: int) -> float:
    """Seconds per trainer step (after one warm-up step)."""
    trainer.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = load_generator("shapes3d")
    pca = compute_pca(generator, num_samples=50_000, progress=False)
    print(f"{'method':10s} {'steps/s':>8s} {'images/s':>9s} {'step s':>8s} {'bare s':>8s} {'overhead':>8s}")
    for method in ("contra-bi", "contra-pt"):
        config = build_config("shapes3d", None, {"method": method})
        sensor = build_sensor(config.sensor, input_size=config.sensor_input_size)
        with tempfile.TemporaryDirectory() as folder:
            trainer = Trainer(config, generator, sensor, pca, build_navigator(config, generator, pca), build_objective(config, generator), Path(folder))
            step_seconds = time_trainer(trainer, args.steps)
        images = int(trainer.objective.images_per_code * config.batch_size)
        bare_seconds = time_bare(generator, sensor, images, repeats=args.steps // 4 + 1)
        print(
            f"{method:10s} {1 / step_seconds:8.2f} {images / step_seconds:9.1f} {step_seconds:8.3f} {bare_seconds:8.3f} {step_seconds / bare_seconds:8.2f}"
        )


if __name__ == "__main__":
    main()
