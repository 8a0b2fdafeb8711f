"""The domains of numeric options: one definition per kind of value, used as argparse types and to check the same
values when they come from a file (a YAML config, a settings dataclass), so a flag and its key fail with one line."""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from contrafeat.errors import UserError

MAX_COUNT = 2**31 - 1
"""The largest integer option (counts, seeds): beyond it torch's int32 sizes and numpy's seeds overflow."""
MAX_NUMBER = 1e6
"""The largest float option: no setting of this tool means anything beyond it, so larger values are typing errors."""


@dataclass(frozen=True)
class Domain:
    """The values an option accepts: a kind (int or float, always finite), a range and how to say it."""

    kind: type
    low: float | None
    high: float
    text: str
    open_low: bool = False

    @property
    def __name__(self) -> str:  # argparse names the type in its messages
        return self.text

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.kind is int and not isinstance(value, int)):
            return False
        if not math.isfinite(value) or value > self.high:
            return False
        return self.low is None or value > self.low or (value == self.low and not self.open_low)

    def check(self, value: Any, name: str) -> None:
        """A UserError naming the flag (`--lr`, from the field name `lr`) unless the value is in the domain."""
        if not self.accepts(value):
            raise UserError(f"{flag(name)} {value!r}: expected {self.text}")

    def __call__(self, text: str) -> int | float:
        """argparse's `type`: parse, then refuse what is out of the domain."""
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {self.text}") from None
        if not self.accepts(value):
            raise argparse.ArgumentTypeError(f"{text}: expected {self.text}")
        return value


COUNT = Domain(int, 1, MAX_COUNT, "a positive integer")
INDEX = Domain(int, 0, MAX_COUNT, "an integer >= 0")
"""Seeds and indices."""
PORT = Domain(int, 0, 65535, "a port number in 0..65535 (0: any free port)")
POSITIVE = Domain(float, 0, MAX_NUMBER, "a positive number at most 1e6", open_low=True)
NON_NEGATIVE = Domain(float, 0, MAX_NUMBER, "a number in [0, 1e6]")
FINITE = Domain(float, -MAX_NUMBER, MAX_NUMBER, "a number in [-1e6, 1e6]")
SHARE = Domain(float, 0, 1, "a number in [0, 1]")
FRACTION = Domain(float, 0, 1, "a number in (0, 1]", open_low=True)


RENAMED_OPTIONS = {
    "step_scale": "strength_range",
    "step_multiplier": "strength_multiplier",
    "fixed_step": "fixed_strength",
    "checkpoint_every": "save_every",
    "recog_shift_weight": "recog_strength_weight",
}
"""Older names of options and their names today: still read as config.yaml / --config keys, and named in the
error a command line with the older flag gets."""


def flag(name: str) -> str:
    """`micro_batch` -> `--micro-batch`; a name that already is a flag stays as it is."""
    return name if name.startswith("-") else "--" + name.replace("_", "-")


def option(default: Any, help: str, domain: Domain | None = None) -> Any:
    """A dataclass field of a settings class: its help text and, for a number, its domain."""
    return dataclasses.field(default=default, metadata={"help": help, "domain": domain})


def check_settings(settings: Any) -> None:
    """Check every field of a settings dataclass that has a domain (None stays allowed for optional fields)."""
    for spec in dataclasses.fields(settings):
        domain = spec.metadata.get("domain")
        value = getattr(settings, spec.name)
        if domain is not None and value is not None:
            domain.check(value, spec.name)
