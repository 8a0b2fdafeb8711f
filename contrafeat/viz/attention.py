"""The K x num_ws layer-attention heat-map of a Directions artefact."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from contrafeat.discovery.directions import Directions  # noqa: E402


def write_attention_heatmap(directions: Directions, path: Path) -> Path:
    """Rows = directions (with names where known), columns = W+ layers, colour = attention weight."""
    attention = directions.attention.numpy()
    count, layers = attention.shape
    figure, axes = plt.subplots(figsize=(1.0 + 0.45 * layers, 1.0 + 0.35 * count))
    image = axes.imshow(attention, cmap="viridis", vmin=0.0, vmax=max(float(attention.max()), 1e-6), aspect="auto")
    axes.set_xticks(range(layers))
    axes.set_xlabel("W+ layer")
    axes.set_yticks(range(count))
    axes.set_yticklabels([f"{i}" + (f" {name}" if name else "") for i, name in enumerate(directions.names)])
    axes.set_ylabel("direction")
    for row in range(count):
        for column in range(layers):
            value = attention[row, column]
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6, color="white" if value < 0.5 * attention.max() else "black")
    figure.colorbar(image, ax=axes, fraction=0.04)
    axes.set_title("layer attention")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
