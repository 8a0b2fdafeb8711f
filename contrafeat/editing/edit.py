"""Editing a W+ code with one direction of a Directions artefact: strips of renders at several strengths."""
from __future__ import annotations

import math

import torch

from contrafeat.checks import check_shape
from contrafeat.discovery.directions import Directions
from contrafeat.errors import UserError
from contrafeat.gan.interface import GeneratorLike

MAX_STRENGTHS = 100
STRENGTH_FORMAT = "START:STOP:COUNT (e.g. -2:2:5) or a comma list (e.g. -1,0,2.5)"


def finite_number(text: str, what: str, expected: str = "a finite number") -> float:
    """float(text), or a UserError "<what> 'text' is not a (finite) number; expected <expected>"."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{what} {text.strip()!r} is not a number; expected {expected}") from None
    if not math.isfinite(value):
        raise UserError(f"{what} {text.strip()!r} is not a finite number; expected {expected}")
    return value


def _number(text: str, spec: str) -> float:
    return finite_number(text, f"--strength {spec!r}:", STRENGTH_FORMAT)


def _count(text: str, spec: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 2 <= count <= MAX_STRENGTHS:
        raise UserError(f"--strength {spec!r}: COUNT must be a whole number from 2 to {MAX_STRENGTHS}, got {text.strip()!r}")
    return count


def parse_strengths(spec: str) -> list[float]:
    """'START:STOP:COUNT' -> COUNT evenly spaced values from START to STOP; 'a,b,c' -> those values."""
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise UserError(f"--strength {spec!r}: expected {STRENGTH_FORMAT}")
        start, stop, count = _number(parts[0], spec), _number(parts[1], spec), _count(parts[2], spec)
        return [start + (stop - start) * i / (count - 1) for i in range(count)]
    values = [_number(part, spec) for part in spec.split(",")]
    if len(values) > MAX_STRENGTHS:
        raise UserError(f"--strength {spec!r}: {len(values)} values; at most {MAX_STRENGTHS}")
    return values


@torch.no_grad()
def edit_strip(
    generator: GeneratorLike, ws: torch.Tensor, directions: Directions, index: int, strengths: list[float]
) -> torch.Tensor:
    """Renders [S, 3, R, R] of one code ws [1, L, C] edited by direction `index` at each absolute strength (const noise).

    Strength s adds s * attention (outer) vector, as `Directions.apply`; s = k * directions.strengths[index] walks k
    suggested strengths, which is how `contrafeat edit` and `contrafeat traverse` read their strength values.
    """
    directions.check_shape_of(generator)
    check_shape(ws, [1, generator.num_ws, generator.w_dim], "ws")
    if not strengths:
        raise ValueError("strengths: expected at least one value")
    count = len(strengths)
    codes = ws.to(generator.w_avg.device).expand(count, -1, -1)
    indices = torch.full((count,), directions.resolve_index(index), dtype=torch.long)
    edited = directions.apply(codes, indices, torch.tensor(strengths))
    return generator.synthesis(edited, noise_mode="const").cpu()
