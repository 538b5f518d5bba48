"""Errors a user can cause. The CLI turns every `UserError` into one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """Bad input from the user: a file, a config value, a command-line argument.

    The message must say what is wrong (quote the value), where (file, YAML key path), and what is valid.
    """


class ConfigError(UserError):
    """A search-space file or override is invalid."""


class DataError(UserError):
    """A dataset, annotation or prediction file is missing, truncated or malformed."""


class TrialFailure(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); ends the trial with this reason."""


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a near miss among `allowed`, else ''."""
    options = {str(a).lower(): str(a) for a in allowed}
    match = difflib.get_close_matches(str(value).lower(), list(options), n=1, cutoff=0.6)
    return f" (did you mean {options[match[0]]!r}?)" if match and options[match[0]] != str(value) else ""
