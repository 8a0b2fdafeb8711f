"""`contrafeat mask-analysis`: the paper's Table 8 check of the L2 mask, on the shapes3d renderer."""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from contrafeat.commands.common import add_command
from contrafeat.discovery.losses import COS_MODES
from contrafeat.experiments.mask_analysis import (
    DEFAULT_SIGMA,
    MODE_TITLES,
    MODES,
    PAPER_TABLE8,
    SETTINGS,
    SIGMA,
    MaskAnalysis,
    check_options,
    pair_table,
    run_mask_analysis,
    summary_table,
)
from contrafeat.features import build_sensor
from contrafeat.io_utils import atomic_write_text
from contrafeat.options import COUNT, INDEX

CSV_FILE = "mask_analysis.csv"
MARKDOWN_FILE = "mask_analysis.md"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "mask-analysis",
        "Contrast loss of same-factor against other-factor edits of the shapes3d renderer, per similarity (the paper's Table 8).",
    )
    parser.add_argument("--sensor", default="mobilenet_v2", help="feature extractor (see `contrafeat sensors`)")
    parser.add_argument("--sensor-weights", type=Path, default=None, help="weights file of a pretrained sensor")
    parser.add_argument("--samples", type=COUNT, default=1000, help="samples per pair of factors (15 pairs)")
    parser.add_argument(
        "--sigma", type=SIGMA, default=DEFAULT_SIGMA, help="edit strengths ~ U(-sigma, sigma) in units of each factor's span"
    )
    parser.add_argument("--cos", default="abs", choices=COS_MODES, help="|cos| (as the paper's analysis) or cos^2 (as training)")
    parser.add_argument("--seed", type=INDEX, default=0, help="seed of the bases and edit strengths")
    parser.add_argument("--out", type=Path, default=None, help=f"folder to write {CSV_FILE} and {MARKDOWN_FILE} to")
    parser.add_argument("--per-pair", action="store_true", help="also print the breakdown per pair of factors")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_mask_analysis_command)


def _cell(row: dict) -> str:
    return f"{row['mean_loss']:.4f} ± {row['std_error']:.4f}"


def summary_markdown(rows: list[dict]) -> str:
    """Rows Pure / Mixed: mean loss ± std error and fraction correctly ordered per similarity, then the paper's losses."""
    titles = [MODE_TITLES[mode] for mode in MODES]
    header = ["setting", *titles, *(f"{title} correct" for title in titles), *(f"paper {title}" for title in titles)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(row["setting"], row["mode"]): row for row in rows}
    for setting in SETTINGS:
        cells = [setting]
        cells += [_cell(by_key[setting, mode]) for mode in MODES]
        cells += [f"{by_key[setting, mode]['fraction_correct']:.3f}" for mode in MODES]
        cells += [f"{PAPER_TABLE8[setting][mode]:.4f}" for mode in MODES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pairs_markdown(rows: list[dict]) -> str:
    """One line per setting and factor pair: mean loss and fraction correct per similarity."""
    titles = [MODE_TITLES[mode] for mode in MODES]
    header = ["setting", "pair", *titles, *(f"{title} correct" for title in titles)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(row["setting"], row["pair"], row["mode"]): row for row in rows}
    for setting, pair in dict.fromkeys((row["setting"], row["pair"]) for row in rows):
        cells = [setting, pair]
        cells += [f"{by_key[setting, pair, mode]['mean_loss']:.4f}" for mode in MODES]
        cells += [f"{by_key[setting, pair, mode]['fraction_correct']:.3f}" for mode in MODES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(result: MaskAnalysis) -> str:
    return (
        f"sensor {result.sensor}, {result.samples} samples per factor pair, sigma {result.sigma}, "
        f"cos mode {result.cos_mode}, seed {result.seed}; loss = sum over stages of -S(q, p) + S(q, n), lower is better; "
        "correct = share of samples with S(q, p) > S(q, n)"
    )


def write_outputs(folder: Path, result: MaskAnalysis, summary: list[dict], pairs: list[dict]) -> None:
    """mask_analysis.csv (summary rows with pair 'all', then per pair) and mask_analysis.md."""
    folder.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(summary[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary + pairs)
    atomic_write_text(folder / CSV_FILE, table.getvalue())
    sections = ["# L2-mask analysis (Table 8)", describe(result), summary_markdown(summary), "## Per factor pair", pairs_markdown(pairs)]
    atomic_write_text(folder / MARKDOWN_FILE, "\n\n".join(sections) + "\n")


def run_mask_analysis_command(args: argparse.Namespace) -> int:
    check_options(args.samples, args.sigma)
    sensor = build_sensor(args.sensor, weights=args.sensor_weights)
    result = run_mask_analysis(sensor, args.samples, args.sigma, args.cos, args.seed, progress=not args.no_progress)
    summary, pairs = summary_table(result), pair_table(result)
    print(describe(result))
    print(summary_markdown(summary))
    if args.per_pair:
        print(pairs_markdown(pairs))
    if args.out is not None:
        write_outputs(args.out, result, summary, pairs)
        print(f"wrote {CSV_FILE} and {MARKDOWN_FILE} to {args.out}", file=sys.stderr)
    return 0
