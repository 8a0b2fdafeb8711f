"""Render time of the built-in worlds: forward and forward+backward of the synthesis, 16 and 40 images at 64 px.

    .venv/bin/python benchmarks/render_speed.py [--threads 2] [--repeats 30]

Each figure is the median of `--repeats` timed passes after one untimed pass.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from contrafeat.zoo import load_generator

WORLDS = ("shapes3d", "shapes3d-learned")
BATCHES = (16, 40)


def timed(function, repeats: int) -> float:
    """Median seconds of `repeats` timed calls after one untimed call."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(max(1, args.threads))
    print("| world | images | forward | forward + backward |\n| --- | --- | --- | --- |")
    for name in WORLDS:
        generator = load_generator(name)
        for count in BATCHES:
            ws = generator.broadcast(generator.mapping(torch.randn(count, generator.z_dim, generator=torch.Generator().manual_seed(0))))
            codes = ws.clone().requires_grad_(True)

            def forward(generator=generator, ws=ws) -> None:
                with torch.no_grad():
                    generator.synthesis(ws)

            def forward_backward(generator=generator, codes=codes) -> None:
                codes.grad = None
                generator.synthesis(codes).square().mean().backward()

            print(f"| {name} | {count} | {timed(forward, args.repeats):.3f} s | {timed(forward_backward, args.repeats):.3f} s |")


if __name__ == "__main__":
    main()
