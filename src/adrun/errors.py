"""The one exception type a user can cause and fix: the CLI prints its message as a single line and exits non-zero."""


class UserError(Exception):
    """Bad input (missing data, impossible size, unknown class, …); the message says what to do."""
