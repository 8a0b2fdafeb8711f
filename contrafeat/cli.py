"""The `contrafeat` command: one entry point, subcommands registered from `contrafeat.commands`."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import torch

from contrafeat.commands import COMMAND_MODULES
from contrafeat.commands.common import DefaultsHelpFormatter
from contrafeat.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand; option help shows defaults."""
    parser = argparse.ArgumentParser(
        prog="contrafeat",
        description="Discover, evaluate and apply semantic directions in StyleGAN2 latent spaces.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads torch may use (default: torch's own choice)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def set_threads(count: int) -> None:
    """Limit torch's intra-op threads (several processes on few cores otherwise slow each other down)."""
    if count < 1:
        raise UserError(f"--threads {count}: expected a positive integer")
    torch.set_num_threads(count)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors become one line on stderr and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.threads is not None:
            set_threads(args.threads)
        result = args.handler(args)
    except UserError as error:
        print(f"contrafeat: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("contrafeat: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
