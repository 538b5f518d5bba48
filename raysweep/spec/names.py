"""Experiment names and storage locations, checked before anything is written.

An experiment lives at `<storage>/<name>`: a name with `/`, `..` or an absolute path would write outside the
storage (and on a URI, `posixpath.join` drops the bucket for an absolute name), so a name is exactly one folder name.
"""

from __future__ import annotations

import os
import re

NAME_RULE = "one folder name: letters, digits, '.', '_', '-', '+', '=', '@' (e.g. defr-lr-sweep)"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+=@-]*$")
MAX_NAME_CHARS = 200


def name_problem(name: str) -> str | None:
    """Why `name` cannot be an experiment folder name, or None when it can."""
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "is not a folder name"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "contains a control character (newline, tab, ...)"
    if len(name) > MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters"
    if not _NAME.match(name):
        return "has characters a folder name here may not have"
    return None


def check_name(name: str) -> str:
    """`name` when it is a valid experiment name; ValueError (pydantic turns it into the key's message) otherwise."""
    return _checked(name, name_problem(name), "experiment name", f"; give {NAME_RULE}")


def storage_problem(location: str) -> str | None:
    """Why `location` cannot be a storage folder or URI, or None. Only what needs no I/O: writability is probed
    later (`storage.check_writable`)."""
    if not location.strip():
        return "is empty; give a folder or a URI (s3://bucket/prefix)"
    if any(ord(ch) < 32 for ch in location):
        return "contains a control character (newline, tab, ...)"
    if location.startswith("~") and os.path.expanduser(location) == location:
        user = location[1:].split("/", 1)[0]
        return f"starts with '~{user}', but there is no user {user!r} to expand it to; give an absolute path"
    return None


def check_storage(location: str) -> str:
    """`location` when it can be a storage folder or URI; ValueError otherwise."""
    return _checked(location, storage_problem(location), "storage")


def _checked(value: str, problem: str | None, what: str, hint: str = "") -> str:
    if problem:
        raise ValueError(f"{what} {_quote(value)} {problem}{hint}")
    return value


def _quote(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:79] + "…"
