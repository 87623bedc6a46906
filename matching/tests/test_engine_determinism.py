"""Determinism, snapshot/restore and replay."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matching.engine import PyOrderBook, Reason, Rejected, SnapshotError, events_to_bytes
from matching.engine.snapshot import decode_state

from .test_engine_model import build_commands, engine_settings, streams


def event_log(book: Any, cmds: list[Any]) -> bytes:
    return b"".join(events_to_bytes(book.apply(cmd)) for cmd in cmds)


def engines() -> list[type]:
    from matching.engine import NativeOrderBook

    return [PyOrderBook] if NativeOrderBook is None else [PyOrderBook, NativeOrderBook]


@engine_settings
@given(streams)
def test_same_stream_gives_byte_identical_logs(raw: list[Any]) -> None:
    cmds = build_commands(raw)
    logs = {event_log(cls(), cmds) for cls in engines() for _ in range(2)}
    assert len(logs) == 1


@engine_settings
@given(streams, st.data())
def test_snapshot_and_replay_equal_the_straight_run(raw: list[Any], data: st.DataObject) -> None:
    cmds = build_commands(raw)
    cut = data.draw(st.integers(0, len(cmds)))
    for cls in engines():
        straight = cls()
        straight_events = [straight.apply(cmd) for cmd in cmds]

        first = cls()
        for cmd in cmds[:cut]:
            first.apply(cmd)
        blob = first.snapshot()
        for restore_cls in engines():  # snapshots are portable between engines
            resumed = restore_cls.restore(blob)
            assert resumed.snapshot() == blob
            # replaying from the start is safe: everything already applied is refused
            for cmd in cmds[:cut]:
                events = resumed.apply(cmd)
                assert events == [Rejected(2, cmd.order_id, Reason.SEQ_NOT_INCREASING)]
            assert resumed.snapshot() == blob
            assert [resumed.apply(cmd) for cmd in cmds[cut:]] == straight_events[cut:]
            assert resumed.snapshot() == straight.snapshot()


def test_snapshot_rejects_damaged_bytes() -> None:
    book = PyOrderBook()
    blob = book.snapshot()
    assert decode_state(blob).last_seq == 0
    with pytest.raises(SnapshotError):
        PyOrderBook.restore(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(SnapshotError):
        PyOrderBook.restore(b"nonsense")
