"""The `contrafeat` command: one entry point, subcommands registered from `contrafeat.commands`."""
from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn, Sequence

import torch

from contrafeat.commands import COMMAND_MODULES
from contrafeat.commands.common import DefaultsHelpFormatter
from contrafeat.console import attach_console
from contrafeat.errors import UserError
from contrafeat.options import COUNT, RENAMED_OPTIONS, flag


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr and exit code 2 (argparse would print the usage first); the
    subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        flag_first = re.sub(r"^argument ([^:]+): ", r"\1 ", " ".join(message.split()))  # '--lr nan: expected ...', as a UserError says it
        choice = re.match(r"^(\S+) invalid choice: (.+?) \(choose from (.*)\)$", flag_first)
        if choice:
            flag_first = f"{choice[1]} {choice[2]}: expected one of {choice[3].replace(chr(39), '')}"
        if flag_first.startswith("unrecognized arguments:"):
            given = {token.split("=")[0] for token in flag_first.split()[2:]}
            flag_first += "".join(f"; {flag(old)} is now {flag(new)}" for old, new in RENAMED_OPTIONS.items() if flag(old) in given)
        self.exit(2, f"contrafeat: error: {flag_first} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand; option help shows defaults."""
    parser = OneLineParser(
        prog="contrafeat",
        description="Discover, evaluate and apply semantic directions in StyleGAN2 latent spaces.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--threads", type=COUNT, default=None, help="CPU threads torch may use (default: torch's own choice)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors become one line on stderr and exit code 2."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a bad argument (2, its line already printed)
        return stop.code if isinstance(stop.code, int) else 2
    attach_console()
    try:
        if args.threads is not None:
            torch.set_num_threads(args.threads)  # several processes on few cores otherwise slow each other down
        result = args.handler(args)
    except UserError as error:
        print(f"contrafeat: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("contrafeat: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
