"""Which sensor input size separates the shapes3d factors best, and at what cost.

For each sensor and input size, the exact per-factor edits of the shapes3d generator are applied to
pairs of codes; the margin is the mean masked similarity (the Bi loss's S, summed over stages) of two
codes changed by the same factor minus that of a change by a different factor. A larger margin means
the contrastive loss can tell the factors apart more easily. Also printed: forward+backward seconds
of the sensor on 40 images.
Usage: .venv/bin/python benchmarks/sensor_input_size.py [--sensors mobilenet_v2,random-mobilenet_v2] [--pairs 64]
"""
from __future__ import annotations

import argparse
import time

import torch

from contrafeat.discovery.losses import feature_changes, masked_similarity
from contrafeat.features import build_sensor
from contrafeat.shapes3d.truth import true_edit_tensor
from contrafeat.zoo import load_generator

SIZES = (None, 96, 128, 160, 224)


@torch.no_grad()
def margin(generator, sensor, pairs: int, strength: float, seed: int = 0) -> float:
    """Mean over factors of S(same factor, other code) - S(same code, other factor), summed over stages."""
    rng = torch.Generator().manual_seed(seed)
    truth = true_edit_tensor(generator)
    count = truth.shape[0]
    z = torch.randn(2 * pairs, generator.z_dim, generator=rng)
    ws = generator.broadcast(generator.mapping(z))
    w1, w2 = ws[:pairs], ws[pairs:]
    base1, base2 = sensor(generator.synthesis(w1)), sensor(generator.synthesis(w2))
    margins = []
    for factor in range(count):
        other = (factor + 1 + torch.randint(count - 1, (pairs,), generator=rng)) % count
        signs = torch.where(torch.rand(pairs, generator=rng) < 0.5, -1.0, 1.0)[:, None, None] * strength
        query = feature_changes(sensor(generator.synthesis(w1 + signs * truth[factor])), base1)
        positive = feature_changes(sensor(generator.synthesis(w2 + signs * truth[factor])), base2)
        negative = feature_changes(sensor(generator.synthesis(w2 + signs * truth[other])), base2)
        same = sum(masked_similarity(q, p).mean() for q, p in zip(query, positive))
        different = sum(masked_similarity(q, n).mean() for q, n in zip(query, negative))
        margins.append(float(same - different))
    return sum(margins) / len(margins)


def cost(sensor, images: torch.Tensor) -> float:
    """Best-of-3 seconds of a forward+backward pass."""
    timings = []
    for _ in range(3):
        batch = images.clone().requires_grad_(True)
        start = time.perf_counter()
        sum(f.square().mean() for f in sensor(batch)).backward()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", default="mobilenet_v2,random-mobilenet_v2,random-alexnet")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--strength", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    generator = load_generator("shapes3d")
    images = generator.synthesis(generator.broadcast(generator.mapping(torch.randn(40, generator.z_dim))))
    print(f"{'sensor':22s} {'input':>6s} {'margin':>8s} {'fwd+bwd(40) s':>14s}")
    for name in args.sensors.split(","):
        for size in SIZES:
            sensor = build_sensor(name, input_size=size)
            label = "as is" if size is None else str(size)
            print(f"{name:22s} {label:>6s} {margin(generator, sensor, args.pairs, args.strength):8.3f} {cost(sensor, images):14.3f}", flush=True)


if __name__ == "__main__":
    main()
