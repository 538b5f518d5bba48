"""Experiment storage on a local folder or a URI (s3://, gs://), through pyarrow filesystems."""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from raysweep.errors import UserError

PROBE_RETRY_S = 20  # how long checking a bucket may retry before it counts as not writable


def is_uri(path: str) -> bool:
    return "://" in path


def normalise(path: str) -> str:
    """Absolute local path (with ~ expanded) or the URI unchanged."""
    return path.rstrip("/") if is_uri(path) else str(Path(os.path.expanduser(path)).resolve())


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_uri(base) else str(Path(base, *parts))


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if not is_uri(path):
        return pafs.LocalFileSystem(), path
    try:
        return pafs.FileSystem.from_uri(path)
    except Exception as exc:  # noqa: BLE001 - any pyarrow error becomes one line
        raise UserError(f"storage {path!r}: cannot open ({str(exc).splitlines()[0]})") from None


def exists(path: str) -> bool:
    fs, inner = filesystem(path)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def read_text(path: str) -> str:
    """The file's text; a missing or unreadable file is the user's one-line error, naming it."""
    fs, inner = filesystem(path)
    try:
        with fs.open_input_stream(inner) as stream:
            return stream.read().decode()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: cannot read ({reason})") from None


def read_json(path: str) -> Any:
    """`read_text` + JSON parsing, where broken JSON (a crash mid-write, a hand edit) is one line naming the file."""
    try:
        return json.loads(read_text(path))
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Local: temp file in the same folder, then rename. Object stores: one PUT, which is atomic already."""
    if is_uri(path):
        fs, inner = filesystem(path)
        fs.create_dir(posixpath.dirname(inner), recursive=True)
        with fs.open_output_stream(inner) as stream:
            stream.write(data)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a results file is as readable as any other
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def check_writable(path: str) -> None:
    """One clear error before any trial starts if the storage cannot be written; leaves no trace either way
    (local folders it had to create are removed again, so a later failing check leaves no empty storage behind)."""
    probe = join(path, f".raysweep-write-probe-{uuid.uuid4().hex[:8]}")
    created = [] if is_uri(path) else missing_folders(Path(path))
    try:
        if is_uri(path):
            fs, inner = _probe_filesystem(probe)
            if not _is_gcs(fs):  # GCS has no folders (and its create_dir ignores the retry limit)
                fs.create_dir(posixpath.dirname(inner), recursive=True)
            with fs.open_output_stream(inner) as stream:
                stream.write(b"ok")
        else:
            write_bytes_atomic(probe, b"ok")
            fs, inner = filesystem(probe)
        fs.delete_file(inner)
    except Exception as exc:  # noqa: BLE001 - any failure to write is the one error the user needs
        reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"storage {path!r} is not writable ({reason[:300]}); choose another with --storage") from None
    finally:
        for folder in created:  # deepest first; rmdir leaves a folder someone else wrote into alone
            try:
                folder.rmdir()
            except OSError:
                break


def _probe_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The URI's filesystem, with GCS's retries capped: by default it retries for 15 minutes before failing."""
    fs, inner = pafs.FileSystem.from_uri(uri)
    if _is_gcs(fs) and "?" not in uri:
        fs = pafs.GcsFileSystem(retry_time_limit=timedelta(seconds=PROBE_RETRY_S))
    return fs, inner


def _is_gcs(fs: pafs.FileSystem) -> bool:
    return type(fs).__name__ == "GcsFileSystem"


def missing_folders(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and not path.is_symlink() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing
