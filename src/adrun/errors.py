"""Errors a user can cause and fix, and how each becomes the one line the CLI prints (exit status 2).

`one_line(error)` is the message for a user's error, or None for a bug (which keeps its traceback). A sweep whose jobs
did not all finish ends with `IncompleteSweep`: one line, exit status 1.
"""

from __future__ import annotations

import difflib
import re


class UserError(Exception):
    """Bad input (missing data, impossible size, unknown class, …); the message says what to do."""


class IncompleteSweep(SystemExit):
    """A multirun ended with failed or unfinished jobs; `message` names them (the summary lists all). A SystemExit
    (status 1), since Hydra turns an Exception raised in a callback into a warning; `adrun` prints the message."""

    def __init__(self, message: str):
        super().__init__(1)
        self.message = message


def check_choice(key: str, value, choices) -> None:
    """A key that takes one of a few named values: anything else is a UserError naming them."""
    if value not in choices:
        raise UserError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")


def key_hint(key: str, known: list[str]) -> str:
    """' (did you mean …?)' for an unknown key: the known keys that hold it as a word (`epochs` → `gan_epochs`), else
    the closest spelling; '' when nothing is near."""
    name = key.rpartition(".")[2]
    parent = key.rpartition(".")[0]
    close = [k for k in known if name in k.split("_") and k != name] or difflib.get_close_matches(name, known, n=1)
    if not close:
        return ""
    shown = " or ".join(f"'{parent + '.' if parent else ''}{k}'" for k in close[:3])
    return f" (did you mean {shown}?)"


def epoch_keys(keys) -> list[str]:
    """Of a method's keys (its yaml's, or its constructor's), those that say how long it trains (`epochs`,
    `gan_epochs`, `high_epoch`, …); `epochs` where none does. The one rule for every message that names them."""
    return [str(k) for k in keys if "epoch" in str(k)] or ["epochs"]


def epochs_hint(key: str, parent) -> str:
    """`trainer.max_epochs` (a Lightning user's first try): the method's own epoch keys, which set it."""
    if key != "trainer.max_epochs" or parent is None:
        return ""
    keys = [f"method.{k}" for k in epoch_keys(parent._get_root().get("method") or {})]
    return f" (the method sets the epochs: {' or '.join(keys)})"


def group_hint(name: str, root) -> str:
    """' (did you mean …?)' for an unknown top-level key that some group has (`epochs` → `method.epochs`)."""
    from omegaconf import DictConfig

    found = [f"{group}.{name}" for group in root if isinstance(root.get(group), DictConfig) and name in root[group]]
    return f" (did you mean {' or '.join(repr(k) for k in found)}?)" if found else ""


def one_line(error: BaseException) -> str | None:
    """The message for an error the user can fix, or None for a bug."""
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, UserError):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(error).split())
    if isinstance(error, ValueError) and text.startswith("Config group override must be a string or a list. Got None"):
        return "a config group cannot be set to null: remove it with a ~ (e.g. '~logger' for no loggers)"
    if isinstance(error, ConfigCompositionException) and (added := re.match(r"Multiple values for (\w+)\.", text)):
        group = added.group(1)
        return f"{group} is a config group with a default: choose with {group}=NAME, without the + (+ adds a new key)"
    if isinstance(error, MissingConfigException) and (error.missing_cfg_file or "").startswith("hydra/launcher/"):
        plugin = error.missing_cfg_file.rsplit("/", 1)[1]  # launcher=local|slurm without its Hydra plugin
        return f'the {plugin} launcher is not installed; pip install -e ".[cluster]" (Hydra\'s launcher plugins)'
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and "/" in error.missing_cfg_file:
        group, name = error.missing_cfg_file.split("/", 1)
        options = ", ".join(error.options or [])
        own = (
            f"; or your own: DIR/method/{name}.yaml (its _target_ importable), then hydra.searchpath=[file://DIR] "
            "(README: Your own method)"
            if group == "method"
            else ""
        )
        return f"unknown {group} '{name}'; choose one of: {options}{own}"
    if isinstance(error, ConfigCompositionException) and isinstance(
        error.__cause__, ConfigKeyError | ConfigAttributeError
    ):
        key_error, parent = error.__cause__, error.__cause__.parent_node
        known = [str(k) for k in parent] if parent is not None else []
        hint = epochs_hint(str(key_error.full_key), parent) or key_hint(str(key_error.full_key), known)
        if not hint and parent is not None and "." not in str(key_error.full_key):
            hint = group_hint(str(key_error.full_key), parent)
        return f"unknown key '{key_error.full_key}'{hint}; `adrun --cfg job` lists every key"
    if isinstance(error, OSError) and error.filename:  # the environment's fault: a dir that cannot be made or written
        return f"cannot use {error.filename}: {error.strerror}"
    if isinstance(error, ConfigCompositionException | OverrideParseException | InstantiationException):
        return " ".join(str(error).split())
    return None
