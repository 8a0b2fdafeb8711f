"""One HTML page with the traversals of several runs side by side: the same samples, one section per direction."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from contrafeat.discovery.directions import Directions
from contrafeat.gan.interface import GeneratorLike, seeded_codes
from contrafeat.io_utils import atomic_write_text
from contrafeat.viz.images import image_grid, to_pil
from contrafeat.viz.traversal import traversal_images

STYLE = (
    "body{font-family:sans-serif;margin:2em} .row{display:flex;flex-wrap:wrap;gap:1.5em} figure{margin:0}"
    " figcaption{font-size:12px;max-width:28em} img{image-rendering:pixelated}"
    " table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}"
)


@dataclass
class ComparedRun:
    """A run to show: its label (method and folder) and its directions."""

    label: str
    directions: Directions


def png_data_uri(image: torch.Tensor) -> str:
    """One image [3, H, W] in [-1, 1] as a PNG data URI (the page is a single self-contained file)."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(generator: GeneratorLike, run: ComparedRun, index: int, codes: torch.Tensor, num_frames: int, strength_multiplier: float, zoom: int) -> str:
    """A figure with the run's traversal grid of direction `index`, or a note when the run has fewer directions."""
    caption = html.escape(run.label)
    directions = run.directions
    if index >= directions.count:
        return f"<figure><figcaption>{caption}</figcaption><p>(no direction {index})</p></figure>"
    strength = float(directions.strengths[index]) * strength_multiplier
    images = traversal_images(generator, directions, index, codes, torch.linspace(-strength, strength, num_frames))
    grid = image_grid(images, columns=num_frames, padding=1)
    label = directions.names[index]
    name = f", {html.escape(label)}" if label else ""
    detail = f"strength &plusmn;{strength:.3g}, layers {directions.dominant_layers(index)}{name}"
    width = grid.shape[-1] * zoom
    return f'<figure><figcaption><b>{caption}</b><br>{detail}</figcaption><img width="{width}" src="{png_data_uri(grid)}"></figure>'


@torch.no_grad()
def write_comparison(
    generator: GeneratorLike,
    runs: Sequence[ComparedRun],
    path: Path,
    num_samples: int = 3,
    num_frames: int = 7,
    seed: int = 0,
    truncation_psi: float = 0.7,
    strength_multiplier: float = 1.0,
) -> Path:
    """Write `path`: per direction index, every run's traversal grid (rows: samples, columns: -s .. +s)."""
    codes = seeded_codes(generator, num_samples, seed, truncation_psi)
    zoom = max(1, 128 // generator.img_resolution)
    rows = "".join(
        f"<tr><td>{html.escape(run.label)}</td><td>{html.escape(run.directions.method)}</td><td>{run.directions.count}</td></tr>" for run in runs
    )
    parts = [
        "<h1>contrafeat: runs compared</h1>",
        f"<p>generator {html.escape(runs[0].directions.generator_id)}; {num_samples} samples (seed {seed}, truncation {truncation_psi}), "
        f"{num_frames} frames from -s to +s, s = each direction's suggested strength x {strength_multiplier}</p>",
        f"<table><tr><th>run</th><th>method</th><th>directions</th></tr>{rows}</table>",
    ]
    for index in range(max(run.directions.count for run in runs)):
        cells = "".join(_cell(generator, run, index, codes, num_frames, strength_multiplier, zoom) for run in runs)
        parts.append(f'<section><h2>direction {index}</h2><div class="row">{cells}</div></section>')
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>contrafeat: runs compared</title><style>{STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, document)
    return path
