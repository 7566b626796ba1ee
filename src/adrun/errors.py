"""The one exception type a user can cause and fix: the CLI prints its message as a single line and exits non-zero."""


class UserError(Exception):
    """Bad input (missing data, impossible size, unknown class, …); the message says what to do."""


def check_choice(key: str, value, choices) -> None:
    """A key that takes one of a few named values: anything else is a UserError naming them."""
    if value not in choices:
        raise UserError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")
