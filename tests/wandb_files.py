"""Read W&B's offline run files (`run-<id>.wandb`) back: a LevelDB-style log of protobuf `Record`s (7-byte header
':W&B' + magic + version; 32 KiB blocks; each chunk = crc32, length, type FULL/FIRST/MIDDLE/LAST)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, chunks, pending = HEADER, [], b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
    return [wandb_internal_pb2.Record.FromString(chunk) for chunk in chunks]


def _items(items) -> dict[str, Any]:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def read_run(path: Path, wait_s: float = 20.0) -> dict[str, Any]:
    """{'id', 'name', 'project', 'group', 'config': {...}, 'history': [{...}, ...]} of one offline run file.

    wandb-core, a process of its own, may still be writing the file for a moment after `finish()` returned: read
    until its closing `exit` record is there (or `wait_s` passed)."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        kinds = [record.WhichOneof("record_type") for record in records(path)]
        if "exit" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    run: dict[str, Any] = {"config": {}, "history": []}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(id=record.run.run_id, name=record.run.display_name, project=record.run.project,
                       group=record.run.run_group)
            run["config"].update(_items(record.run.config.update))
        elif kind == "config":
            run["config"].update(_items(record.config.update))
        elif kind == "history":
            run["history"].append(_items(record.history.item))
    return run
