"""Peak memory of one discovery training step per method on FFHQ-sized StyleGAN2 generators, and what fits a 24 GB GPU.

Each (method, resolution, micro-batch) runs ONE `Trainer.train_step()` in a fresh Python process on a
random-weight generator with the official FFHQ config-f architecture (z/w 512, 8 mapping layers,
min(32768 / res, 512) channels at each resolution) and the `random-alexnet` sensor (the tensors of
ImageNet AlexNet), with the `ffhq` preset's values for the method (K 30, subspace 100, the method's
batch). Memory is the kernel's high-water mark of the process's resident set (VmHWM, reset through
/proc/self/clear_refs just before the step) minus the resident set just before the step; large blocks
are handed back to the system when freed (fixed glibc mmap threshold), so it follows the tensors alive
at the step's peak. float32 activations and autograd buffers take the same bytes on a GPU; the CUDA
context, cuDNN workspaces and the caching allocator's slack are extra (the reserve below covers them).
The modulated convolutions take the form chosen on a GPU (`--modconv cuda`: the shared-weight form for renders that
back-propagate, grouped per-sample weights for the others); `--modconv grouped|shared` forces one form.

From the measured micro-batches of a method at a resolution it fits peak = fixed + per_code * M (M codes
per forward) and prints the largest micro-batch whose predicted GPU memory (the resident weights plus the
step's peak) stays under 24 GB minus a 1.5 GB reserve, and whether the whole batch fits. A measurement
predicted to grow by more than --max-gb is skipped; a resolution with fewer than two measurements is
extrapolated from the resolution below (see `memory_line`), and says so.
GB here is 2^30 bytes.

Usage: .venv/bin/python benchmarks/memory_fit.py [--methods contra-bi contra-pt latentclr+att recog+att]
       [--resolutions 512 1024] [--micro-batches 1 2] [--threads 2] [--max-gb 18] [--modconv cuda|grouped|shared]
`--micro-batches` counts the objective's units: a code, or a pair of codes for contra-bi (1 2 -> 2 and 4
codes); `full` adds the whole batch in one forward (what the run does without --micro-batch).
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from contrafeat.discovery.config import DiscoveryConfig, build_config
from contrafeat.discovery.methods import build_navigator, uses_sensor
from contrafeat.discovery.navigator import Navigator
from contrafeat.discovery.objectives import Objective, build_objective
from contrafeat.discovery.registry import METHODS, method_spec
from contrafeat.discovery.subspace import PCABasis, compute_pca
from contrafeat.discovery.trainer import Trainer
from contrafeat.features import build_sensor
from contrafeat.gan import ops
from contrafeat.gan.assembly import finish
from contrafeat.gan.stylegan2 import Generator

GB = 2**30
GPU_GB = 24.0
RESERVE_GB = 1.5
BUDGET_GB = GPU_GB - RESERVE_GB
PCA_SAMPLES = 4096
DEFAULT_METHODS = ("contra-bi", "contra-pt", "latentclr+att", "recog+att")
FULL = "full"
MODCONV_FORMS = ("cuda", "grouped", "shared")
MMAP_THRESHOLD = 64 * 1024
"""Bytes from which glibc serves (and on free returns) memory by mmap; fixed, so freed tensors leave the resident set."""


def ffhq_channels(resolution: int) -> dict[int, int]:
    """Config-f widths: min(32768 / res, 512) channels at 4, 8, ..., `resolution` px."""
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution {resolution}: expected a power of 2, at least 4")
    return {4 * 2**level: min(32768 // (4 * 2**level), 512) for level in range(int(math.log2(resolution)) - 1)}


def ffhq_generator(resolution: int, seed: int = 0) -> Generator:
    """A random-weight StyleGAN2 generator with the official FFHQ config-f architecture at `resolution` px."""
    torch.manual_seed(seed)
    return finish(Generator(z_dim=512, w_dim=512, channels=ffhq_channels(resolution), mapping_layers=8))


def method_config(method: str, micro_batch: int | None) -> DiscoveryConfig:
    """The `ffhq` preset's values for `method` (batch, K 30, subspace 100), with the random-weight AlexNet sensor."""
    overrides = {"method": method, "sensor": "random-alexnet", "micro_batch": micro_batch, "pca_samples": PCA_SAMPLES, "device": "cpu"}
    return build_config("ffhq", None, overrides)


def codes_per_unit(method: str) -> int:
    """Codes the method's objective trains on together (2 for the Bi loss's pairs, else 1)."""
    return build_objective(method_config(method, None), ffhq_generator(4)).codes_per_unit


def use_modconv_form(form: str) -> None:
    """Make the modulated convolutions take `form`: cuda (the choice made on an accelerator: shared for renders that
    back-propagate, grouped for the others), grouped (per-sample weights) or shared (scaled input, shared weight)."""
    if form not in MODCONV_FORMS:
        raise ValueError(f"modulated-convolution form {form!r}: expected one of {', '.join(MODCONV_FORMS)}")
    if form == "cuda":
        choose = ops.default_fused_modconv
        ops.default_fused_modconv = lambda x, styles: choose(x.to("meta"), styles.to("meta"))
        return
    grouped = form == "grouped"
    ops.default_fused_modconv = lambda x, styles: grouped


def resident_bytes() -> int:
    """The process's resident set now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_resident() -> None:
    """Set the kernel's resident-set high-water mark (VmHWM) back to the current resident set."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_resident_bytes() -> int:
    """The resident-set high-water mark (VmHWM) since the last reset."""
    return int(re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE).group(1)) * 1024


def tensor_bytes(*modules: nn.Module | None) -> int:
    """Bytes of the distinct parameters and buffers of `modules` (what sits on the device between steps)."""
    tensors = {t.data_ptr(): t.numel() * t.element_size() for m in modules if m is not None for t in [*m.parameters(), *m.buffers()]}
    return sum(tensors.values())


@dataclass
class Measurement:
    """One train_step: codes per forward (`codes` == `batch` without micro-batching), renders per forward, memory and time."""

    method: str
    resolution: int
    batch: int
    micro_batch: int | None
    codes: int
    renders: float
    peak_gb: float
    weights_gb: float
    seconds: float


@dataclass
class Parts:
    """What a run of one method builds before training, on the CPU."""

    config: DiscoveryConfig
    generator: Generator
    sensor: nn.Module | None
    pca: PCABasis
    navigator: Navigator
    objective: Objective

    def weights_gb(self) -> float:
        """GB of the tensors a run keeps on the device between steps (generator, sensor, navigator, objective)."""
        return tensor_bytes(self.generator, self.sensor, self.navigator, self.objective) / GB


def build_parts(method: str, resolution: int, micro_batch: int | None) -> Parts:
    """Config, config-f generator, sensor (where the objective reads one), PCA of a few thousand w, navigator and objective."""
    config = method_config(method, micro_batch)
    generator = ffhq_generator(resolution)
    sensor = build_sensor(config.sensor) if uses_sensor(config, generator) else None
    pca = compute_pca(generator, num_samples=PCA_SAMPLES, batch_size=PCA_SAMPLES, progress=False)
    return Parts(config, generator, sensor, pca, build_navigator(config, generator, pca), build_objective(config, generator))


def measure_in_process(method: str, resolution: int, micro_batch: int | None, threads: int, modconv: str) -> Measurement:
    """Build a trainer here, then time one train_step and read its peak resident growth (sets this process's modconv form)."""
    torch.set_num_threads(threads)
    use_modconv_form(modconv)
    parts = build_parts(method, resolution, micro_batch)
    config, objective = parts.config, parts.objective
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, parts.generator, parts.sensor, parts.pca, parts.navigator, objective, Path(folder))
        codes = max(map(len, trainer.share(config.batch_size // objective.codes_per_unit).batches)) * objective.codes_per_unit
        gc.collect()
        before = resident_bytes()
        reset_peak_resident()
        start = time.perf_counter()
        trainer.train_step()
        seconds = time.perf_counter() - start
        peak = peak_resident_bytes() - before
    return Measurement(
        method,
        resolution,
        config.batch_size,
        micro_batch,
        codes,
        config.plan().renders_per_step(config.num_directions, codes),
        peak / GB,
        parts.weights_gb(),
        seconds,
    )


class MeasurementFailed(RuntimeError):
    """The measuring process died (killed for memory, or an error); the message says how."""


def measure(method: str, resolution: int, micro_batch: int | None, threads: int = 2, modconv: str = "cuda") -> Measurement:
    """`measure_in_process` in a fresh Python process, so that no earlier step's memory or caches count."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one", method, str(resolution), str(micro_batch or FULL)]
    command += ["--threads", str(threads), "--modconv", modconv]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        why = "killed (out of memory?)" if result.returncode in (-9, 137) else f"exit {result.returncode}"
        last = result.stderr.strip().splitlines()[-1:] or [""]
        raise MeasurementFailed(f"{why} {last[0]}".strip())
    return Measurement(**json.loads(result.stdout.strip().splitlines()[-1]))


@dataclass(frozen=True)
class Line:
    """Predicted step peak (GB) = fixed + per_code * codes per forward, and how it was obtained."""

    fixed: float
    per_code: float
    source: str

    def at(self, codes: float) -> float:
        return self.fixed + self.per_code * codes

    def largest_codes(self, budget_gb: float, step: int, batch: int) -> int:
        """The largest multiple of `step` codes, at most `batch`, whose predicted peak stays within `budget_gb` (0: none)."""
        if self.per_code <= 0:
            return batch if self.fixed <= budget_gb else 0
        codes = min(batch, math.floor((budget_gb - self.fixed) / self.per_code))
        return max(0, codes - codes % step)


def fit_line(points: list[tuple[int, float]]) -> Line | None:
    """Least-squares line through (codes, peak GB) points; None with fewer than two distinct code counts."""
    distinct = {codes for codes, _ in points}
    if len(distinct) < 2:
        return None
    mean_x = sum(c for c, _ in points) / len(points)
    mean_y = sum(p for _, p in points) / len(points)
    slope = sum((c - mean_x) * (p - mean_y) for c, p in points) / sum((c - mean_x) ** 2 for c, _ in points)
    return Line(mean_y - slope * mean_x, slope, f"fit of {len(points)} measurements")


def memory_line(points: list[tuple[int, float]], resolution: int, lower: tuple[int, Line] | None) -> Line | None:
    """The fit of `points`; else extrapolated from the line of the resolution below.

    With one point: the lower line's fixed part and the slope through the point (a fixed part that grows
    with the resolution lands in the slope, which over-predicts larger micro-batches: the safe side).
    With none: the lower line times the pixel count.
    """
    line = fit_line(points)
    if line is not None or lower is None:
        return line
    low_resolution, low = lower
    if points:
        codes, peak = points[0]
        source = f"extrapolated: {low_resolution} px fixed part, slope through the {codes}-code measurement"
        return Line(low.fixed, (peak - low.fixed) / codes, source)
    scale = (resolution / low_resolution) ** 2
    return Line(low.fixed * scale, low.per_code * scale, f"extrapolated: {low_resolution} px line x {scale:g} (pixel count; nothing measured)")


def guard_estimate(codes: int, points: list[tuple[int, float]], line: Line | None) -> float | None:
    """Predicted peak of a planned measurement: the line, else the largest smaller point scaled by codes (an upper bound)."""
    if line is not None:
        return line.at(codes)
    if points:
        known, peak = max(points)
        return peak * max(1.0, codes / known)
    return None


def parse_micro_batches(values: list[str]) -> list[int | None]:
    """Positive unit counts and `full` (None), deduplicated, in the order they are measured (full last)."""
    counts: set[int] = set()
    full = False
    for value in values:
        if value == FULL:
            full = True
        elif value.isdigit() and int(value) > 0:
            counts.add(int(value))
        else:
            raise SystemExit(f"--micro-batches {value!r}: expected positive integers or {FULL!r}")
    return sorted(counts) + ([None] if full else [])


def check_options(args: argparse.Namespace) -> None:
    """Refuse option values no measurement can use, naming the option."""
    for method in args.methods:
        if method not in METHODS or not method_spec(method).trains:
            trained = ", ".join(name for name, spec in METHODS.items() if spec.trains)
            raise SystemExit(f"--methods {method!r}: expected trained methods among {trained}")
    for resolution in args.resolutions:
        if resolution < 32 or resolution & (resolution - 1):
            raise SystemExit(f"--resolutions {resolution}: expected a power of 2, at least 32 (AlexNet's smallest input)")
    if args.threads < 1:
        raise SystemExit(f"--threads {args.threads}: expected a positive integer")
    if args.max_gb <= 0:
        raise SystemExit(f"--max-gb {args.max_gb}: expected a positive number")


def print_measurement(row: Measurement) -> None:
    micro = "-" if row.micro_batch is None else str(row.codes)
    print(
        f"{row.method:14s} {row.resolution:5d} {row.batch:5d} {micro:>5s} {row.renders:8.1f} {row.peak_gb:8.3f} {row.weights_gb:8.3f} {row.seconds:8.2f}",
        flush=True,
    )


def points_of(rows: list[Measurement]) -> list[tuple[int, float]]:
    return [(row.codes, row.peak_gb) for row in rows]


def resolution_lines(rows: dict[int, list[Measurement]]) -> dict[int, Line | None]:
    """Each resolution's memory line, ascending; one without two measurements of its own leans on the line below."""
    lines: dict[int, Line | None] = {}
    lower: tuple[int, Line] | None = None
    for resolution in sorted(rows):
        lines[resolution] = memory_line(points_of(rows[resolution]), resolution, lower)
        lower = (resolution, lines[resolution]) if lines[resolution] is not None else lower
    return lines


def measure_method(method: str, args: argparse.Namespace, micro_batches: list[int | None]) -> dict[int, list[Measurement]]:
    """A method's measurements per resolution (ascending, micro-batches ascending), skipping predicted excesses; rows printed as they come."""
    per_unit, batch = codes_per_unit(method), method_config(method, None).batch_size
    rows: dict[int, list[Measurement]] = {}
    for resolution in sorted(args.resolutions):
        rows[resolution] = []
        for micro in micro_batches:
            codes = batch if micro is None else min(batch, micro * per_unit)
            label = f"{method:14s} {resolution:5d} {batch:5d} {codes if micro else '-':>5}"
            points = points_of(rows[resolution])
            if codes in {known for known, _ in points}:
                continue
            estimate = guard_estimate(codes, points, resolution_lines(rows)[resolution])
            if estimate is not None and estimate > args.max_gb:
                print(f"{label} skipped: predicted {estimate:.1f} GB > --max-gb {args.max_gb:g}", flush=True)
                continue
            try:
                rows[resolution].append(measure(method, resolution, None if micro is None else codes, args.threads, args.modconv))
            except MeasurementFailed as failure:
                print(f"{label} failed: {failure}", flush=True)
                continue
            print_measurement(rows[resolution][-1])
    return rows


def print_fits(method: str, rows: dict[int, list[Measurement]]) -> None:
    """Per resolution: the memory line, the largest micro-batch within the GPU budget, and whether the whole batch fits."""
    per_unit, batch = codes_per_unit(method), method_config(method, None).batch_size
    for resolution, line in resolution_lines(rows).items():
        if line is None:
            print(f"{method:14s} {resolution:5d} {batch:5d} no line: fewer than two measurements and none at a lower resolution")
            continue
        measured = rows[resolution]
        weights = measured[0].weights_gb if measured else build_parts(method, resolution, None).weights_gb()
        largest = line.largest_codes(BUDGET_GB - weights, per_unit, batch)
        full = weights + line.at(batch)
        print(
            f"{method:14s} {resolution:5d} {batch:5d} {line.fixed:8.3f} {line.per_code:8.3f} {weights:7.3f} "
            f"{largest or 'none':>9} {full:8.2f} {'yes' if full <= BUDGET_GB else 'no':>9s}  {line.source}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--resolutions", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--micro-batches", nargs="+", default=["1", "2"], help=f"units per forward (a code; a pair for contra-bi), or {FULL}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-gb", type=float, default=18.0, help="skip a measurement whose step peak is predicted above this many GB")
    parser.add_argument(
        "--modconv", choices=MODCONV_FORMS, default="cuda",
        help="modulated convolution: cuda (as chosen on a GPU), grouped (per-sample weights) or shared (scaled input, shared weight)",
    )
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "RES", "MICRO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        method, resolution, micro = args.one
        row = measure_in_process(method, int(resolution), None if micro == FULL else int(micro), args.threads, args.modconv)
        print(json.dumps(dataclasses.asdict(row)))
        return
    check_options(args)
    micro_batches = parse_micro_batches(args.micro_batches)
    print(
        f"one train_step per row, each in a fresh process ({args.threads} thread(s));\n"
        "peak GB: growth of the resident-set high-water mark (VmHWM) over the resident set just before the step;\n"
        "float32 activations and autograd buffers take the same bytes on a GPU, the CUDA context (~1 GB) and cuDNN workspaces are extra;\n"
        f"modulated convolutions: {args.modconv}; wts GB: generator, sensor, navigator and objective tensors\n"
        "(a checkpoint's discriminator adds its own);\n"
        "micro: codes per forward ('-': the whole batch at once); renders: generator passes per forward (LatentCLR's stop after\n"
        "the third synthesis block; contra-pt also runs the sensor on its K prototype images, once per step)"
    )
    print(f"{'method':14s} {'res':>5s} {'batch':>5s} {'micro':>5s} {'renders':>8s} {'peak GB':>8s} {'wts GB':>8s} {'seconds':>8s}")
    found = {method: measure_method(method, args, micro_batches) for method in args.methods}
    print(
        f"\nGPU budget {GPU_GB:g} GB - {RESERVE_GB:g} GB reserve (CUDA context, cuDNN workspaces, allocator slack)"
        f" = {BUDGET_GB:g} GB for weights + step peak"
    )
    print(f"{'method':14s} {'res':>5s} {'batch':>5s} {'fixed GB':>8s} {'GB/code':>8s} {'wts GB':>7s} {'max micro':>9s} {'full GB':>8s} {'full fits':>9s}  line")
    for method, rows in found.items():
        print_fits(method, rows)


if __name__ == "__main__":
    main()
