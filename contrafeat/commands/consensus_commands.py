"""`contrafeat consensus`: how stable each direction is across runs on one generator, without labels."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from contrafeat.commands.common import add_command, add_force_option, check_generator_match, run_checkpoint
from contrafeat.discovery.directions import TENSORS_FILE, Directions, load_directions
from contrafeat.errors import UserError
from contrafeat.evaluation.consensus import (
    DEFAULT_SENSOR,
    DEFAULT_THRESHOLD,
    MATCHINGS,
    Matching,
    check_one_generator,
    consensus_directions,
    consensus_groups,
    edit_signatures,
    effect_signatures,
    group_rows,
    match_runs,
    purity_ranking,
    stability_table,
)
from contrafeat.evaluation.tables import to_markdown
from contrafeat.features import build_sensor
from contrafeat.gan.interface import GeneratorLike, has_factors, seeded_codes
from contrafeat.io_utils import atomic_write_text
from contrafeat.options import COUNT, FRACTION, INDEX, POSITIVE, SHARE
from contrafeat.zoo import load_generator

RESULT_FILE = "consensus.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    consensus = add_command(
        subparsers, "consensus", "Match the directions of several runs of one generator by what they do: how many runs found each, a consensus artefact."
    )
    consensus.add_argument("runs", type=Path, nargs="+", help="two or more run folders written by `contrafeat discover`")
    consensus.add_argument("--out", type=Path, required=True, help="folder of the consensus directions and consensus.json")
    consensus.add_argument("--checkpoint", default=None, help="generator (default: the one the first run was trained on)")
    consensus.add_argument("--match", default="effect", choices=MATCHINGS, help="match by the effect on the sensor features or by the W+ edits")
    consensus.add_argument("--sensor", default=DEFAULT_SENSOR, help="sensor of the effect matching (see `contrafeat sensors`)")
    consensus.add_argument("--samples", type=COUNT, default=32, help="seeded samples each direction's effect is measured on")
    consensus.add_argument("--seed", type=INDEX, default=0, help="seed of the samples")
    consensus.add_argument("--truncation", type=FRACTION, default=0.5, help="truncation psi of the samples")
    consensus.add_argument("--strength-multiplier", type=POSITIVE, default=1.0, help="scales the suggested strength of every direction")
    consensus.add_argument("--threshold", type=SHARE, default=DEFAULT_THRESHOLD, help="|cos| a mutual best match needs to count as found")
    add_force_option(consensus)
    consensus.set_defaults(handler=run_consensus)


def load_runs(folders: list[Path]) -> list[Directions]:
    """The runs' directions, refused when fewer than two or found on different generators."""
    if len(folders) < 2:
        raise UserError(f"consensus needs at least 2 run folders, got {len(folders)}")
    runs = [load_directions(folder) for folder in folders]
    check_one_generator(runs, [str(folder) for folder in folders])
    return runs


def signatures(kind: str, generator: GeneratorLike, runs: list[Directions], args: argparse.Namespace) -> list[torch.Tensor]:
    """Every run's signatures [K, D] of one kind of matching."""
    if kind == "edit":
        return [edit_signatures(directions) for directions in runs]
    sensor = build_sensor(args.sensor, generator=generator)
    codes = seeded_codes(generator, args.samples, args.seed, args.truncation)
    return [effect_signatures(generator, directions, sensor, codes, args.strength_multiplier) for directions in runs]


def printed_rows(rows: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The stability table as printed: 'found in k of n'."""
    return [{**row, "found_in": f"{row['found_in']} of {count}"} for row in rows]


def spearman_line(ranking: dict[str, float | None]) -> str:
    """The Spearman correlations of stability with purity as one printed line."""
    values = ", ".join(f"{kind} {'undefined' if value is None else f'{value:.3f}'}" for kind, value in ranking.items())
    return f"Spearman of stability with exact-factor purity, by matching: {values}"


def run_consensus(args: argparse.Namespace) -> int:
    runs = load_runs(args.runs)
    if (args.out / TENSORS_FILE).exists():
        raise UserError(f"--out {args.out}: already holds {TENSORS_FILE}; choose another folder")
    checkpoint = run_checkpoint(args.runs[0], args.checkpoint)
    generator = load_generator(checkpoint)
    check_generator_match(runs[0], generator, checkpoint, args.force)
    kinds = MATCHINGS if has_factors(generator) else (args.match,)
    matchings: dict[str, Matching] = {kind: match_runs(signatures(kind, generator, runs, args), args.threshold) for kind in kinds}
    groups = consensus_groups(matchings[args.match])
    labels = [str(folder) for folder in args.runs]
    rows = stability_table(matchings[args.match], labels, groups)
    ranking = purity_ranking(generator, runs, matchings)
    print(to_markdown(printed_rows(rows, len(runs))))
    if ranking is not None:
        print(spearman_line(ranking))
    consensus_directions(runs, groups).save(args.out)
    result = {"runs": labels, "match": args.match, "threshold": args.threshold, "directions": rows, "groups": group_rows(groups, labels), "spearman": ranking}
    atomic_write_text(args.out / RESULT_FILE, json.dumps(result, indent=2))
    found = sum(len(group.members) == len(runs) for group in groups)
    print(f"consensus: {args.out} ({len(groups)} directions, {found} found in every run)", file=sys.stderr)
    return 0
