"""Checkpoints of partition state, so a restarted or new owner resumes without a gap.

Offsets are committed after every batch, so a processor that takes over a
partition never reads a record twice; but the join store of that partition
(puids still waiting for their feedback, dedupe identities, outcomes still
amendable) and its windows would be lost. A checkpoint keeps them: the
state is written on revoke and on shutdown, together with the committed
offset of every partition it covers, and restored on assignment only when

* the group's committed offsets are exactly the checkpoint's (the state
  then reflects every record before the resume point and none after it),
* and it is younger than the join TTL (the state's lifetime; older ones
  would only hold expired entries and stale windows).

Anything else is discarded with a log line: the partition starts empty,
which loses joins but never counts twice.

A checkpoint is one file: a JSON header line (format, saved_at, offsets)
and the engine snapshot bytes; written to a temporary name and renamed, so
a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["Checkpoint", "CheckpointStore"]

_log = logging.getLogger(__name__)
_FORMAT = "feedback-stream-checkpoint/1"

Offsets = Mapping[tuple[str, int], int]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    saved_at: float
    offsets: dict[tuple[str, int], int]
    state: bytes


class CheckpointStore:
    """Checkpoint files in one folder, one per state name."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.directory / f"{safe}.checkpoint"

    def save(self, name: str, offsets: Offsets, state: bytes, saved_at: float) -> None:
        header = {
            "format": _FORMAT,
            "saved_at": saved_at,
            "offsets": [
                [topic, partition, offset] for (topic, partition), offset in offsets.items()
            ],
        }
        path = self._path(name)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.write(orjson.dumps(header) + b"\n" + state)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    def load(self, name: str) -> Checkpoint | None:
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        head, _, state = data.partition(b"\n")
        try:
            header = orjson.loads(head)
            if header.get("format") != _FORMAT:
                raise ValueError(f"unknown format {header.get('format')!r}")
            offsets = {(str(t), int(p)): int(o) for t, p, o in header["offsets"]}
            return Checkpoint(float(header["saved_at"]), offsets, state)
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning("ignoring unreadable checkpoint %s: %s", path, exc)
            return None

    def discard(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(name).unlink()

    def usable(
        self, name: str, committed: Offsets, now: float, lifetime_s: float
    ) -> Checkpoint | None:
        """The checkpoint ``name`` if it matches ``committed`` and is within its lifetime."""
        checkpoint = self.load(name)
        if checkpoint is None:
            return None
        if now - checkpoint.saved_at > lifetime_s:
            _log.info("checkpoint %s is older than the join TTL; starting empty", name)
            return None
        if checkpoint.offsets != dict(committed):
            _log.warning(
                "checkpoint %s was taken at %s but the group resumes at %s; starting empty",
                name,
                checkpoint.offsets,
                dict(committed),
            )
            return None
        return checkpoint
