"""The first run on a GPU, in one command: correctness of the CUDA path and the speed and memory of every trained
method, printed as one table and written as JSON.

Checks, each recorded as ok / failed (with its error) / skipped (with the reason), never stopping at a failure:
- fixtures: the official StyleGAN2 checkpoints of ../shared/fixtures against their reference outputs on the device,
  with TF32 off, with the default TF32 / cuDNN settings, and with the grouped against the shared-weight modulated
  convolution; a random-weight config-f generator on the device against the same one on the CPU;
- training: Bi, Pt, LatentCLR+att and Recog+att steps on a random-weight FFHQ config-f generator (256 and 512 px)
  with the AlexNet sensor (random weights when the file is absent), at fp32, bf16 and fp16, with and without
  channels-last and --compile: s/step, images/s, the step's ratio to its bare render + sensor cost, peak memory;
  the largest micro-batch that fits at 1024 px per method;
- torchrun: a one-process nccl discover of a few steps, and the same run stopped half-way and resumed on gloo /
  CPU, whose directions must equal the straight run's within float tolerance.
`--device cpu --tiny` runs every check at toy sizes on the CPU (a test runs it, so the script cannot rot).
Usage: .venv/bin/python benchmarks/gpu_check.py [--device cuda] [--out gpu_check.json] [--tiny]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from memory_fit import ffhq_generator

from contrafeat.discovery.config import build_config
from contrafeat.discovery.directions import load_directions
from contrafeat.discovery.methods import build_navigator, uses_sensor
from contrafeat.discovery.objectives import build_objective
from contrafeat.discovery.precision import accelerate_sensor, autocast
from contrafeat.discovery.subspace import compute_pca
from contrafeat.discovery.trainer import Trainer
from contrafeat.errors import UserError, one_line
from contrafeat.features import build_sensor
from contrafeat.gan.assembly import finish
from contrafeat.gan.checkpoints import load_checkpoint
from contrafeat.gan.native import save_native
from contrafeat.gan.stylegan2 import Generator
from contrafeat.options import flag

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "stylegan2"
FIXTURE_NAMES = ("ada_size32.pkl", "rosinality_size32.pt")
METHODS = ("contra-bi", "contra-pt", "latentclr+att", "recog+att")
PRECISIONS = ("fp32", "bf16", "fp16")
RESUME_TOLERANCE = 1e-3
"""Largest |difference| of a direction vector between a straight run and one resumed on another device and backend."""


@dataclass(frozen=True)
class Sizes:
    """How big each check is: the real one for a GPU, the toy one for `--tiny`."""

    resolutions: tuple[int, ...]
    fit_resolution: int
    steps: int
    overrides: dict[str, Any] = field(default_factory=dict)
    """Discovery options over the ffhq preset (batch, K, subspace, PCA samples)."""
    network: dict[str, Any] = field(default_factory=dict)
    """Toy generator widths and dims (empty: FFHQ config-f)."""


FULL = Sizes(resolutions=(256, 512), fit_resolution=1024, steps=3, overrides={"pca_samples": 4096})
TINY = Sizes(
    resolutions=(32,),
    fit_resolution=32,
    steps=1,
    overrides={"pca_samples": 512, "batch_size": 4, "num_directions": 3, "subspace_dim": 4},
    network={"z_dim": 16, "w_dim": 16, "mapping_layers": 2, "width": 16},
)


@dataclass
class Row:
    section: str
    check: str
    status: str
    values: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


class Report:
    """The rows of every check; a failing check becomes a row with its error, and the next check runs."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def run(self, section: str, check: str, measure: Callable[[], dict[str, Any]]) -> None:
        try:
            values = measure()
        except Skipped as reason:
            self.rows.append(Row(section, check, "skipped", detail=str(reason)))
        except Exception as error:  # every failure is a result here, not a stop
            last = traceback.extract_tb(error.__traceback__)[-1]
            where = f"{Path(last.filename).name}:{last.lineno}"
            self.rows.append(Row(section, check, "failed", detail=f"{type(error).__name__}: {one_line(error)} ({where})"))
        else:
            self.rows.append(Row(section, check, "ok", values))
        row = self.rows[-1]
        print(f"{row.section:9s} {row.check:42s} {row.status:7s} {format_values(row.values) or row.detail}", flush=True)

    def write(self, path: Path, device: torch.device) -> None:
        facts = {"device": device_name(device), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
        path.write_text(json.dumps({**facts, "rows": [asdict(row) for row in self.rows]}, indent=1))


class Skipped(Exception):
    """A check that does not apply here (no fixtures, no CUDA); the message says why."""


def format_values(values: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in values.items())


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type} ({os.cpu_count()} cores)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_tf32(enabled: bool | None) -> None:
    """TF32 on, off, or (None) torch's defaults: matmul off, cuDNN convolutions on."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = True if enabled is None else enabled


def random_generator(resolution: int, sizes: Sizes, seed: int = 0) -> Generator:
    """A random-weight StyleGAN2 generator: FFHQ config-f (memory_fit.ffhq_generator) or the toy network of `sizes`."""
    if not sizes.network:
        return ffhq_generator(resolution, seed)
    torch.manual_seed(seed)
    network = dict(sizes.network)
    width = network.pop("width")
    return finish(Generator(channels={4 * 2**level: width for level in range(resolution.bit_length() - 2)}, **network))


# ---------------------------------------------------------------- fixtures


def fixture_difference(name: str, device: torch.device, tf32: bool | None, fused: bool | None) -> dict[str, Any]:
    """Max |ours on the device - the official code's CPU output| of the fixture's images."""
    path = FIXTURES / name
    if not path.is_file():
        raise Skipped(f"{path} not found")
    reference = np.load(path.with_name(path.name.replace(".pkl", "_ref.npz").replace(".pt", "_ref.npz")))
    set_tf32(tf32)
    generator = load_checkpoint(path).to(device)
    with torch.no_grad():
        ws = generator.broadcast(generator.mapping(torch.from_numpy(reference["z"]).to(device)))
        images = generator.synthesis(ws, noise_mode="const", fused_modconv=fused).cpu()
    return {"max_abs_diff": float((images - torch.from_numpy(reference["images"])).abs().max())}


def device_against_cpu(resolution: int, device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """Max |device - CPU| of one random-weight generator's images, TF32 off."""
    set_tf32(False)
    generator = random_generator(resolution, sizes)
    z = torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = generator(z, noise_mode="const")
        found = generator.to(device)(z.to(device), noise_mode="const").cpu()
    return {"max_abs_diff": float((found - expected).abs().max())}


def check_fixtures(report: Report, device: torch.device, sizes: Sizes) -> None:
    for name in FIXTURE_NAMES:
        for label, tf32 in (("tf32 off", False), ("default tf32", None)):
            report.run("fixtures", f"{name} {label}", partial(fixture_difference, name, device, tf32, None))
        for label, fused in (("grouped", True), ("shared-weight", False)):
            report.run("fixtures", f"{name} {label} modconv", partial(fixture_difference, name, device, False, fused))
    for resolution in sizes.resolutions:
        report.run("fixtures", f"config-f {resolution} px vs cpu", partial(device_against_cpu, resolution, device, sizes))
    set_tf32(None)


# ---------------------------------------------------------------- training


def sensor_name() -> str:
    """The paper's ImageNet AlexNet where its file is at hand, else the same network with random weights."""
    try:
        build_sensor("alexnet")
    except UserError:
        return "random-alexnet"
    return "alexnet"


def build_trainer(method: str, generator: Generator, pca, folder: Path, device: torch.device, sizes: Sizes, **options: Any) -> Trainer:
    """A trainer of `method` with the ffhq preset's settings on this generator, as `contrafeat discover` builds it."""
    config = build_config("ffhq", None, {"method": method, "sensor": sensor_name(), "device": device.type, **sizes.overrides, **options})
    sensor = None
    if uses_sensor(config, generator):
        sensor = accelerate_sensor(build_sensor(config.sensor, generator=generator).to(device), device, config.channels_last, config.compile)
    return Trainer(config, generator, sensor, pca, build_navigator(config, generator, pca), build_objective(config, generator), folder)


def bare_seconds(trainer: Trainer, repeats: int) -> float:
    """One forward + backward of the generator and the sensor on as many images as a step renders (and the sensor on
    Pt's prototypes), at the step's precision."""
    generator, device, config = trainer.generator, trainer.runtime.device, trainer.config
    z = torch.randn(config.renders_per_step, generator.z_dim, device=device)
    codes = generator.broadcast(generator.mapping(z)).requires_grad_(True)
    sensor = trainer.features.sensor
    prototypes = getattr(trainer.objective, "prototypes", None)  # Pt's K patterns go through the sensor every step
    timings = []
    for _ in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        with autocast(config.precision, device):
            images = generator.synthesis(codes, noise_mode="random")
            if prototypes is not None and sensor is not None:
                images = torch.cat([images, prototypes.patterns(False)])  # one sensor pass, as the Pt step makes it
            stages = sensor(images) if sensor is not None else [images]
            loss = sum(stage.float().square().mean() for stage in stages)
        loss.backward()
        synchronize(device)
        timings.append(time.perf_counter() - start)
    return min(timings[1:])


def training_step(method: str, resolution: int, device: torch.device, sizes: Sizes, **options: Any) -> dict[str, Any]:
    """s/step, images/s, ratio to the bare cost, peak memory of `method` at `resolution` px."""
    generator = random_generator(resolution, sizes).to(device)
    pca = compute_pca(generator, num_samples=sizes.overrides["pca_samples"], progress=False)
    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(method, generator, pca, Path(folder), device, sizes, **options)
        trainer.train_step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(sizes.steps):
            trainer.train_step()
        synchronize(device)
        seconds = (time.perf_counter() - start) / sizes.steps
        images = trainer.config.renders_per_step
        values = {"s_per_step": seconds, "images_per_s": images / seconds, "bare_ratio": seconds / bare_seconds(trainer, sizes.steps)}
    if device.type == "cuda":
        values["peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return values


def largest_micro_batch(method: str, device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """The largest --micro-batch (doubling from 1, up to the batch) whose training step fits at the fit resolution."""
    if device.type != "cuda":
        raise Skipped("out-of-memory is only measured on CUDA")
    generator = random_generator(sizes.fit_resolution, sizes).to(device)
    pca = compute_pca(generator, num_samples=sizes.overrides["pca_samples"], progress=False)
    fits, micro = 0, 1
    batch = build_config("ffhq", None, {"method": method, **sizes.overrides}).batch_size
    while micro <= batch:
        try:
            with tempfile.TemporaryDirectory() as folder:
                build_trainer(method, generator, pca, Path(folder), device, sizes, micro_batch=micro).train_step()
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
        fits, micro = micro, micro * 2
    return {"largest_micro_batch": fits, "batch": batch}


def training_variants(device: torch.device) -> list[tuple[str, dict[str, Any]]]:
    """(label, discovery options) of each timed variant: every precision the device has, then channels-last and --compile."""
    precisions = PRECISIONS if device.type == "cuda" else ("fp32", "bf16")
    return [(precision, {"precision": precision}) for precision in precisions] + [
        ("fp32 channels-last", {"channels_last": True}),
        ("fp32 --compile", {"compile": True}),
    ]


def check_training(report: Report, device: torch.device, sizes: Sizes) -> None:
    for resolution in sizes.resolutions:
        for method in METHODS:
            for label, options in training_variants(device):
                measure = partial(training_step, method, resolution, device, sizes, **options)
                if label != "fp32" and "precision" not in options:
                    measure = partial(cuda_only, device, measure)
                report.run("training", f"{method} {resolution} px {label}", measure)
    for method in METHODS:
        report.run("memory", f"{method} {sizes.fit_resolution} px", partial(largest_micro_batch, method, device, sizes))


def cuda_only(device: torch.device, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Channels-last and --compile are timed on CUDA only (the first applies there only; a CPU compilation takes minutes)."""
    if device.type != "cuda":
        raise Skipped("timed on CUDA only")
    return measure()


# ---------------------------------------------------------------- torchrun


def torchrun(arguments: list[str], threads: int = 1) -> None:
    """`torchrun --nproc_per_node 1 -m contrafeat.cli discover ...`; a failure raises with its last line."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "contrafeat.cli", "discover"]
    command += arguments
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if result.returncode != 0:
        raise RuntimeError(f"torchrun exit {result.returncode}: {(result.stderr.strip().splitlines() or [''])[-1]}")


def resume_across_devices(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """A straight run on the device (nccl on CUDA) against one stopped half-way there and resumed on gloo / CPU."""
    steps = 4
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        checkpoint = save_native(random_generator(sizes.resolutions[0], sizes), root / "generator")
        options = ["--checkpoint", str(checkpoint), "--sensor", "random-alexnet", "--save-every", "2", "--noise-mode", "const", "--no-progress"]
        small = {**sizes.overrides, "batch_size": 4, "num_directions": 3, "subspace_dim": 4}
        options += [f"{flag(key)}={value}" for key, value in small.items()]
        torchrun([*options, "--device", device.type, "--steps", str(steps), "--out", str(root / "straight")])
        torchrun([*options, "--device", device.type, "--steps", str(steps // 2), "--out", str(root / "stopped")])
        torchrun(["--resume", str(root / "stopped"), "--device", "cpu", "--steps", str(steps)])
        straight, resumed = (load_directions(root / name).vectors for name in ("straight", "stopped"))
        difference = float((straight - resumed).abs().max())
        shutil.rmtree(root / "generator")
    if difference > RESUME_TOLERANCE:
        raise AssertionError(f"resumed directions differ by {difference:.3g} (tolerance {RESUME_TOLERANCE:g})")
    return {"backend": "nccl" if device.type == "cuda" else "gloo", "max_abs_diff": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: the whole script in about a minute on a CPU")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON of every row")
    parser.add_argument("--sections", nargs="+", default=["fixtures", "training", "torchrun"], choices=["fixtures", "training", "torchrun"])
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here; use --device cpu --tiny")
    sizes = TINY if args.tiny else FULL
    report = Report()
    print(f"{device_name(device)}, torch {torch.__version__}, {'tiny' if args.tiny else 'full'} sizes")
    if "fixtures" in args.sections:
        check_fixtures(report, device, sizes)
    if "training" in args.sections:
        check_training(report, device, sizes)
    if "torchrun" in args.sections:
        report.run("torchrun", "discover stopped on the device, resumed on cpu", partial(resume_across_devices, device, sizes))
    report.write(args.out, device)
    failed = [row for row in report.rows if row.status == "failed"]
    print(f"{len(report.rows)} checks: {len(report.rows) - len(failed)} ok or skipped, {len(failed)} failed; table: {args.out}")


if __name__ == "__main__":
    main()
