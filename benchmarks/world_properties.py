"""The measured properties of both shapes3d worlds side by side: the written-down linear world and the learned one.

    .venv/bin/python benchmarks/world_properties.py [--samples 256] [--out docs/worlds]

Prints one table (per factor: gradient consistency across samples, coarse-half share of the layer sensitivity,
best linear edit share, KS distance of the level from uniform; per world: span overlap and rank, style rank,
dependence between factors) and writes it as JSON, a samples picture of the learned world and a picture of
each world's layer sensitivity.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from contrafeat.discovery.best_linear import best_linear_edits
from contrafeat.shapes3d.grid import FACTOR_NAMES
from contrafeat.shapes3d.world_properties import measure, sample_codes
from contrafeat.viz.images import save_image_grid
from contrafeat.zoo import load_generator

WORLDS = ("shapes3d", "shapes3d-learned")


def sensitivity_figure(results: dict[str, dict], path: Path) -> None:
    """One heat-map per world: factor rows, W+ layer columns, each row's share of the squared gradient."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 2.9), constrained_layout=True)
    for axis, (name, result) in zip(axes, results.items()):
        image = axis.imshow(result["properties"]["sensitivity"], cmap="magma", vmin=0, vmax=1, aspect="auto")
        axis.set_title(f"{name}: layer sensitivity")
        axis.set_yticks(range(len(FACTOR_NAMES)), FACTOR_NAMES)
        axis.set_xticks(range(10))
        axis.set_xlabel("W+ layer (coarse -> fine)")
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the squared gradient")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_table(results: dict[str, dict]) -> None:
    names = list(results)
    print("per factor: " + " | ".join(f"{name}: consistency, coarse share, best-linear share, KS" for name in names))
    for index, factor in enumerate(FACTOR_NAMES):
        cells = []
        for name in names:
            properties, shares = results[name]["properties"], results[name]["best_linear_share"]
            cells.append(
                f"{properties['gradient_consistency'][index]:.3f}  {properties['coarse_share'][index]:.3f}  "
                f"{shares[index]:.3f}  {properties['uniformity'][index]:.3f}"
            )
        print(f"  {factor:<12} " + "   |   ".join(cells))
    for key in ("span_overlap", "span_rank", "style_rank", "geometry_coarse", "colour_fine"):
        print(f"  {key:<16} " + "   ".join(f"{name} {results[name]['properties'][key]:.3f}" for name in names))
    for name in names:
        dependence, reference = results[name]["properties"]["dependence"], results[name]["properties"]["independent_reference"]
        print(
            f"  dependence {name}: max |Spearman| {dependence['max_abs_spearman']:.3f} (independent uniform sample: "
            f"{reference['max_abs_spearman']:.3f}), mean binned MI {dependence['mean_mutual_information']:.4f} nats "
            f"({reference['mean_mutual_information']:.4f})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256, help="codes for the gradient measures and the best-linear fit")
    parser.add_argument("--marginal-samples", type=int, default=20_000, help="codes for the distribution measures")
    parser.add_argument("--out", type=Path, default=Path("docs/worlds"), help="folder for world_properties.json and the pictures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.samples < 4 or args.marginal_samples < 100:
        print("world_properties: --samples must be >= 4 and --marginal-samples >= 100", file=sys.stderr)
        return 2
    results = {}
    for name in WORLDS:
        started = time.perf_counter()
        generator = load_generator(name)
        properties = measure(generator, args.samples, args.marginal_samples, args.seed)
        shares = [edit.share for edit in best_linear_edits(generator, samples=args.samples, seed=args.seed)]
        results[name] = {"properties": asdict(properties), "best_linear_share": shares, "seconds": time.perf_counter() - started}
        print(f"{name}: measured in {results[name]['seconds']:.0f} s", file=sys.stderr)
    print_table(results)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "worlds": results}
    (args.out / "world_properties.json").write_text(json.dumps(record, indent=1))
    sensitivity_figure(results, args.out / "layer_sensitivity.png")
    learned = load_generator("shapes3d-learned")
    with torch.no_grad():
        save_image_grid(learned.synthesis(sample_codes(learned, 32, args.seed + 7)), args.out / "learned_world_samples.png", columns=8, padding=2)
    print(f"wrote {args.out / 'world_properties.json'}, layer_sensitivity.png and learned_world_samples.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
