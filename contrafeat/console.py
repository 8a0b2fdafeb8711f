"""What the package tells its user, through `logging`: progress lines on the `contrafeat` logger, result tables on
`contrafeat.results`. A library call prints nothing unless the caller configures logging (or `attach_console`);
the command line attaches the console: messages to stderr, results to stdout."""
from __future__ import annotations

import logging
import sys

LOG = logging.getLogger("contrafeat")
RESULTS = logging.getLogger("contrafeat.results")


class ConsoleHandler(logging.Handler):
    """Writes each record's message (a warning's as `warning: ...`) to the stream that `sys.<stream>` is at the moment (so a
    redirected stream is honoured)."""

    def __init__(self, stream: str) -> None:
        super().__init__(logging.INFO)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        prefix = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        stream = getattr(sys, self.stream)
        stream.write(prefix + record.getMessage() + "\n")
        stream.flush()


def attach_console() -> None:
    """Messages (INFO and above) to stderr and result tables to stdout, once per process."""
    for logger, stream in ((LOG, "stderr"), (RESULTS, "stdout")):
        if not any(isinstance(handler, ConsoleHandler) for handler in logger.handlers):
            logger.addHandler(ConsoleHandler(stream))
        logger.setLevel(logging.INFO)
    RESULTS.propagate = False
