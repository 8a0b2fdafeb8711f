"""Result tables: mean +- std of metric rows grouped by method, as CSV and Markdown."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from contrafeat.io_utils import atomic_write_text

METRIC_LABELS = {
    "score_fixed": "score (fixed e)",
    "factor_score_fixed": "per-factor score (fixed e)",
    "found_fixed": "found (fixed e)",
    "score_calibrated": "score (calibrated e)",
    "factor_score_calibrated": "per-factor score (calibrated e)",
    "found_calibrated": "found (calibrated e)",
    "dead": "dead",
    "true_edit_cos": "cos to true edits (read span)",
    "flat_edit_cos": "cos in flat W+",
    "fvm": "FVM",
    "mig": "MIG",
    "dci": "DCI",
}
"""Column titles of the metrics, in table order."""


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(rows: list[dict], group: str = "method") -> list[dict]:
    """One row per group value (in first-seen order): runs counted, and (mean, std) per metric (the value itself when one run has it)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row[group]), []).append(row)
    table = []
    for name, members in groups.items():
        summary: dict = {group: name, "runs": len(members)}
        for metric in METRIC_LABELS:
            values = [float(member[metric]) for member in members if member.get(metric) is not None]
            if len(values) > 1:
                summary[metric] = mean_std(values)
            elif values:
                summary[metric] = values[0]
        table.append(summary)
    return table


def format_cell(value: object) -> str:
    if isinstance(value, tuple):
        mean, std = value
        return f"{mean:.3f} ± {std:.3f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def columns_of(table: list[dict]) -> list[str]:
    """The keys in first-seen order, metrics in METRIC_LABELS order."""
    keys: list[str] = []
    for row in table:
        keys.extend(key for key in row if key not in keys)
    leading = [key for key in keys if key not in METRIC_LABELS]
    return leading + [metric for metric in METRIC_LABELS if metric in keys]


def to_markdown(table: list[dict]) -> str:
    columns = columns_of(table)
    lines = [
        "| " + " | ".join(METRIC_LABELS.get(column, column) for column in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(format_cell(row.get(column)) for column in columns) + " |" for row in table]
    return "\n".join(lines) + "\n"


def to_csv(table: list[dict]) -> str:
    """Means and stds in separate columns (metric, metric_std) so the file stays numeric."""
    columns = columns_of(table)
    header: list[str] = []
    for column in columns:
        header += [column, f"{column}_std"] if any(isinstance(row.get(column), tuple) for row in table) else [column]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in table:
        cells: list[object] = []
        for column in columns:
            value = row.get(column)
            if f"{column}_std" in header:
                cells += list(value) if isinstance(value, tuple) else [value, ""]
            else:
                cells.append(value)
        writer.writerow(["" if cell is None else cell for cell in cells])
    return buffer.getvalue()


def write_tables(table: list[dict], stem: Path) -> tuple[Path, Path]:
    """stem.csv and stem.md, written atomically."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    atomic_write_text(csv_path, to_csv(table))
    atomic_write_text(md_path, to_markdown(table))
    return csv_path, md_path
