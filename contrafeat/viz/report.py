"""report.html of a run: config, loss curves, traversals, attention and prototype pictures, tables."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from contrafeat.io_utils import atomic_write_text  # noqa: E402


def read_log(path: Path) -> list[dict]:
    """The entries of a log.jsonl file (missing file -> empty list)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_loss_curves(log: list[dict], path: Path) -> Path | None:
    """One panel per logged loss term against the step; None when nothing was logged."""
    terms = [key for key in (log[0] if log else {}) if key not in ("step", "time", "images_per_s")]
    if not terms:
        return None
    figure, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 2.6), squeeze=False)
    steps = [entry["step"] for entry in log]
    for axis, term in zip(axes[0], terms):
        axis.plot(steps, [entry[term] for entry in log], lw=1)
        axis.set_title(term, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def html_table(rows: Sequence[dict], caption: str) -> str:
    """A plain HTML table from a list of dicts sharing keys (floats to 3 decimals)."""
    if not rows:
        return ""
    keys = list(rows[0])
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))  # noqa: E731
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{cell(row[k])}</td>" for k in keys) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def write_report(run_dir: Path, tables: Sequence[tuple[str, Sequence[dict]]] = (), title: str = "contrafeat run") -> Path:
    """Assemble report.html from what the run folder holds (pictures are referenced relatively)."""
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(str(run_dir.resolve()))}</p>"]
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        config = yaml.safe_load(config_path.read_text())
        parts.append(html_table([{"option": k, "value": v} for k, v in config.items()], "configuration"))
    for caption, rows in tables:
        parts.append(html_table(rows, caption))
    curves = write_loss_curves(read_log(run_dir / "log.jsonl"), run_dir / "loss_curves.png")
    if curves:
        parts.append('<h2>loss curves</h2><img src="loss_curves.png">')
    for name, heading in (("attention.png", "layer attention"), ("prototypes.png", "prototype patterns")):
        if (run_dir / name).is_file():
            parts.append(f'<h2>{heading}</h2><img src="{name}">')
    traversals = sorted((run_dir / "traversals").glob("traversal_*.png"))
    if traversals:
        parts.append("<h2>traversals (rows: samples, columns: -s .. +s)</h2>")
        meta = _direction_meta(run_dir)
        for path in traversals:
            index = int(path.stem.split("_")[1])
            parts.append(f"<h3>direction {index}{meta.get(index, '')}</h3><img src=\"traversals/{path.name}\">")
    style = (
        "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;margin:1em 0} "
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px} img{max-width:100%}"
    )
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
    document = f"<!doctype html><html><head>{head}</head><body>{''.join(parts)}</body></html>"
    target = run_dir / "report.html"
    atomic_write_text(target, document)
    return target


def _direction_meta(run_dir: Path) -> dict[int, str]:
    """' (name, layers ..., step ...)' per direction index from directions.json, when present."""
    path = run_dir / "directions.json"
    if not path.is_file():
        return {}
    entries = json.loads(path.read_text())["directions"]
    return {
        e["index"]: f" ({(e['name'] + ', ') if e.get('name') else ''}layers {e['dominant_layers']}, strength {e['suggested_strength']:.3g})"
        for e in entries
    }
