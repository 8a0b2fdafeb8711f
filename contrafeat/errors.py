"""Errors that reach the user as one actionable line (the CLI exits with code 2)."""


class UserError(Exception):
    """Bad input from the user: a missing or malformed file, an invalid option value."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read: wrong kind, truncated, unsafe or unsupported."""


def one_line(error: Exception | str, limit: int = 200) -> str:
    """An exception's text squashed onto one line and shortened."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
