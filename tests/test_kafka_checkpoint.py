"""Checkpoint files: restored only at the exact resume offsets and within the TTL."""

from __future__ import annotations

from pathlib import Path

from feedback_stream.kafka.checkpoint import CheckpointStore

OFFSETS = {("seldon", 0): 120, ("seldon", 1): 98}


def test_a_checkpoint_round_trips(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "state")
    store.save("g-all", OFFSETS, b"\x00state\nbytes", saved_at=1000.0)
    checkpoint = store.load("g-all")
    assert checkpoint is not None
    assert checkpoint.offsets == OFFSETS
    assert checkpoint.state == b"\x00state\nbytes"
    assert not list((tmp_path / "state").glob("*.tmp"))


def test_only_exact_offsets_within_the_lifetime_are_usable(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save("g-seldon-0", OFFSETS, b"s", saved_at=1000.0)
    assert store.usable("g-seldon-0", OFFSETS, now=1500.0, lifetime_s=3600.0) is not None
    moved = {**OFFSETS, ("seldon", 1): 99}
    assert store.usable("g-seldon-0", moved, now=1500.0, lifetime_s=3600.0) is None
    assert store.usable("g-seldon-0", OFFSETS, now=5000.0, lifetime_s=3600.0) is None
    assert store.usable("missing", OFFSETS, now=1500.0, lifetime_s=3600.0) is None


def test_unreadable_files_are_ignored_and_names_are_safe(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    (tmp_path / "broken.checkpoint").write_bytes(b"not json\nstate")
    assert store.load("broken") is None
    store.save("group/../odd name", OFFSETS, b"s", saved_at=1.0)
    assert [p.name for p in tmp_path.iterdir() if "odd" in p.name] == [
        "group_.._odd_name.checkpoint"
    ]
    store.discard("group/../odd name")
    store.discard("group/../odd name")  # twice is fine
    assert store.load("group/../odd name") is None
