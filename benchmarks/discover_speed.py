"""Trainer throughput next to the bare generator + sensor cost of the same images, on the shapes3d world.

Prints, per method: steps/s and images/s of the trainer, the time of one forward+backward of the
generator and the sensor on the same number of images, and their ratio (the trainer's overhead).
Then images/s of 1 process with `--threads` threads against `--threads` data-parallel gloo processes of 1 thread
(same global batch) for every trained objective, `--repeats` times, and fp32 against autocast on a GPU when one exists.
Usage: .venv/bin/python benchmarks/discover_speed.py [--steps 20] [--threads 2] [--parallel-steps 5] [--world stylegan2-64 --num-directions 30]
       [--micro-batch 2 --methods contra-pt --overhead-only]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from contrafeat.discovery import distributed
from contrafeat.discovery.config import build_config
from contrafeat.discovery.distributed import Runtime
from contrafeat.discovery.methods import build_navigator, uses_sensor
from contrafeat.discovery.objectives import build_objective
from contrafeat.discovery.subspace import PCABasis, compute_pca
from contrafeat.discovery.trainer import Trainer
from contrafeat.features import build_sensor
from contrafeat.gan.assembly import finish
from contrafeat.gan.stylegan2 import Generator
from contrafeat.zoo import load_generator


def bare_pass(generator, sensor, num_images: int, sensor_only: int = 0) -> Callable[[], float]:
    """A timer of one forward+backward of the generator on `num_images` codes and of the sensor (None: no sensor) on
    their images plus `sensor_only` more (Pt's K prototype patterns), in one sensor pass; returns seconds."""
    z = torch.randn(num_images, generator.z_dim, generator=torch.Generator().manual_seed(0))
    ws = generator.broadcast(generator.mapping(z)).requires_grad_(True)
    patterns = torch.zeros(sensor_only, 3, generator.img_resolution, generator.img_resolution, requires_grad=True)

    def timed() -> float:
        start = time.perf_counter()
        images = torch.cat([generator.synthesis(ws, noise_mode="random"), torch.tanh(patterns)])
        outputs = sensor(images) if sensor is not None else [images]
        sum(output.square().mean() for output in outputs).backward()
        return time.perf_counter() - start

    return timed


def time_trainer(trainer: Trainer, steps: int, warm_up: bool = True) -> float:
    """Seconds per trainer step (after one warm-up step unless the caller made it)."""
    if warm_up:
        trainer.train_step()
    if trainer.runtime.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    if trainer.runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


TRAINED_METHODS = ("contra-bi", "contra-pt", "latentclr+att", "recog+att")
"""One trained method of each objective (the +att variants train the same loss as their plain ones)."""


def overhead_table(world: str, pca: PCABasis, steps: int, methods: tuple[str, ...] = TRAINED_METHODS, **overrides) -> None:
    """Per method: the trainer's steps/s and images/s against the bare generator + sensor pass on as many images
    (Pt's K prototype patterns through the sensor counted in the bare pass; no sensor where the method reads none):
    `steps` trainer steps and bare passes, interleaved, and the ratio of their medians."""
    print(f"{world}, {overrides or 'preset values'}, {steps} interleaved trainer steps and bare passes (medians)")
    print(f"{'method':14s} {'steps/s':>8s} {'images/s':>9s} {'step s':>8s} {'bare s':>8s} {'overhead':>8s}")
    for method in methods:
        with tempfile.TemporaryDirectory() as folder:
            trainer = build_trainer(method, pca, Path(folder), world=world, **overrides)
            images = trainer.config.renders_per_step
            prototypes = trainer.navigator.num_directions if hasattr(trainer.objective, "prototypes") else 0
            sensor = trainer.features.sensor if uses_sensor(trainer.config, trainer.generator) else None
            bare = bare_pass(trainer.generator, sensor, images, sensor_only=prototypes)
            trainer.train_step()
            bare()
            step_times, bare_times = [], []
            for _ in range(steps):
                start = time.perf_counter()
                trainer.train_step()
                step_times.append(time.perf_counter() - start)
                bare_times.append(bare())
        step_seconds, bare_seconds = statistics.median(step_times), statistics.median(bare_times)
        print(
            f"{method:14s} {1 / step_seconds:8.2f} {images / step_seconds:9.1f} {step_seconds:8.3f} {bare_seconds:8.3f} {step_seconds / bare_seconds:8.2f}"
        )


def stylegan2_64() -> Generator:
    """A random-weight 64 px StyleGAN2 generator (z, w 512; widths 256 up to 16 px, then 128 and 64; 8 mapping layers)."""
    torch.manual_seed(0)
    return finish(Generator(z_dim=512, w_dim=512, channels={4: 256, 8: 256, 16: 256, 32: 128, 64: 64}, mapping_layers=8))


WORLDS = {"shapes3d": lambda: load_generator("shapes3d"), "stylegan2-64": stylegan2_64}
"""The generators the overhead is measured on."""


def build_trainer(method: str, pca: PCABasis, run_dir: Path, runtime: Runtime | None = None, world: str = "shapes3d", **overrides) -> Trainer:
    """A trainer of `method` with the shapes3d preset's batch on `world`, on the runtime's device."""
    device = runtime.device if runtime else torch.device("cpu")
    config = build_config("shapes3d", None, {"method": method, **overrides})
    generator = WORLDS[world]().to(device)
    sensor = build_sensor(config.sensor, input_size=config.sensor_input_size).to(device)
    return Trainer(config, generator, sensor, pca, build_navigator(config, generator, pca), build_objective(config, generator), run_dir, runtime)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_rank(rank: int, world_size: int, port: int, method: str, pca_path: Path, steps: int, threads: int, result: Path) -> None:
    """One spawned rank: train `steps` steps after a warm-up; rank 0 writes the seconds per step."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    runtime = distributed.start("cpu")
    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(method, PCABasis.load(pca_path), Path(folder), runtime)
        trainer.train_step()
        if runtime.distributed:
            dist.barrier()
        seconds = time_trainer(trainer, steps, warm_up=False)
    distributed.stop(runtime)
    if runtime.is_main:
        result.write_text(str(seconds))


def time_processes(method: str, pca_path: Path, world_size: int, steps: int, threads: int) -> float:
    """Seconds per step of `method` trained by `world_size` gloo processes on the CPU."""
    result = pca_path.with_name(f"seconds-{method}-{world_size}.txt")
    torch.multiprocessing.spawn(time_rank, args=(world_size, free_port(), method, pca_path, steps, threads, result), nprocs=world_size)
    return float(result.read_text())


def compare_processes(pca: PCABasis, steps: int, cores: int, repeats: int) -> None:
    """images/s of 1 process with `cores` threads against `cores` gloo processes with 1 thread each, on the same
    global batch, per method: the median and the range of `repeats` alternating measurements, and the ratio of medians."""
    print(f"\ndata-parallel on the CPU: 1 process x {cores} threads against {cores} gloo processes x 1 thread, same global batch")
    print(f"{'method':14s} {'1 proc img/s (range)':>24s} {f'{cores} procs img/s (range)':>24s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as folder:
        pca_path = Path(folder) / "pca.safetensors"
        pca.save(pca_path)
        for method in TRAINED_METHODS:
            images = build_config("shapes3d", None, {"method": method}).renders_per_step
            rates: dict[int, list[float]] = {1: [], cores: []}
            for _ in range(repeats):
                for world, threads in ((1, cores), (cores, 1)):
                    rates[world].append(images / time_processes(method, pca_path, world, steps, threads))
            one, many = (statistics.median(rates[world]) for world in (1, cores))
            spans = [f"{statistics.median(r):7.1f} ({min(r):.1f}-{max(r):.1f})" for r in rates.values()]
            print(f"{method:14s} {spans[0]:>24s} {spans[1]:>24s} {many / one:6.2f}")


def compare_precisions(pca: PCABasis, steps: int) -> None:
    """images/s of fp32 against bf16 and fp16 autocast on the GPU, per method."""
    if not torch.cuda.is_available():
        print("\nprecision: no CUDA device here; fp32 against autocast skipped")
        return
    runtime = Runtime(device=torch.device("cuda"))
    print(f"\nautocast on {torch.cuda.get_device_name()}")
    print(f"{'method':10s} {'fp32 img/s':>10s} {'bf16 img/s':>10s} {'fp16 img/s':>10s}")
    for method in TRAINED_METHODS:
        rates = []
        for precision in ("fp32", "bf16", "fp16"):
            with tempfile.TemporaryDirectory() as folder:
                trainer = build_trainer(method, pca, Path(folder), runtime, precision=precision, channels_last=True)
                seconds = time_trainer(trainer, steps)
            rates.append(trainer.config.renders_per_step / seconds)
        print(f"{method:10s} " + " ".join(f"{rate:10.1f}" for rate in rates) + f"   bf16/fp32 {rates[1] / rates[0]:.2f}  fp16/fp32 {rates[2] / rates[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel-steps", type=int, default=5, help="timed steps of the 1 vs 2 process comparison")
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements of that comparison (median and range)")
    parser.add_argument("--skip-overhead", action="store_true", help="only the data-parallel and precision comparisons")
    parser.add_argument("--world", choices=sorted(WORLDS), default="shapes3d", help="generator of the overhead table (stylegan2-64: that table alone)")
    parser.add_argument("--num-directions", type=int, default=None, help="K of the overhead table (default: the preset's 10)")
    parser.add_argument("--micro-batch", type=int, default=None, help="--micro-batch of the overhead table's trainers (default: none)")
    parser.add_argument("--methods", nargs="+", choices=TRAINED_METHODS, default=TRAINED_METHODS, help="methods of the overhead table")
    parser.add_argument("--overhead-only", action="store_true", help="only the overhead table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pca = compute_pca(WORLDS[args.world](), num_samples=50_000, progress=False)
    overrides = {name: value for name, value in (("num_directions", args.num_directions), ("micro_batch", args.micro_batch)) if value is not None}
    if not args.skip_overhead:
        overhead_table(args.world, pca, args.steps, tuple(args.methods), **overrides)
    if args.world == "shapes3d" and not args.overhead_only:
        compare_processes(pca, args.parallel_steps, args.threads, args.repeats)
        compare_precisions(pca, args.steps)


if __name__ == "__main__":
    main()
