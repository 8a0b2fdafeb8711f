"""Errors that reach the user as one actionable line (the CLI exits with code 2)."""


class UserError(Exception):
    """Bad input from the user: a missing or malformed file, an invalid option value."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read: wrong kind, truncated, unsafe or unsupported."""
