"""report.html of a run: what was found first (tables, attribute matrix, attention, traversals), then how training
went (the progress picture and a verdict on convergence), the configuration last."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Sequence

import yaml

from contrafeat.io_utils import atomic_write_text
from contrafeat.viz.progress import convergence_verdict, read_log, write_progress_curves


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
    for caption, rows in tables:
        parts.append(html_table(rows, caption))
    pictures = (
        ("attribute_matrix.png", "attribute matrix (rows: directions, columns: factors, each row divided by its largest change)"),
        ("attention.png", "layer attention"),
        ("prototypes.png", "prototype patterns"),
    )
    for name, heading in pictures:
        if (run_dir / name).is_file():
            parts.append(f'<h2>{html.escape(heading)}</h2><img src="{name}">')
    traversals = sorted((run_dir / "traversals").glob("traversal_*.png"))
    if traversals:
        parts.append("<h2>traversals (rows: samples, columns: -s .. +s)</h2>")
        meta = _direction_meta(run_dir)
        for path in traversals:
            index = int(path.stem.split("_")[1])
            parts.append(f"<h3>direction {index}{meta.get(index, '')}</h3><img src=\"traversals/{path.name}\">")
    validation = read_log(run_dir / "validation.jsonl")
    curves = write_progress_curves(read_log(run_dir / "log.jsonl"), validation, run_dir / "loss_curves.png")
    if curves:
        parts.append("<h2>training progress</h2>")
        if validation:
            parts.append(f"<p>{html.escape(convergence_verdict(validation))}</p>")
        parts.append('<img src="loss_curves.png">')
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        config = yaml.safe_load(config_path.read_text())
        parts.append(html_table([{"option": k, "value": v} for k, v in config.items()], "configuration"))
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
