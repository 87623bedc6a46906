"""Book state and its byte form.

A snapshot holds everything the book needs to continue exactly where it was:
the last applied seq, the last trade price, every resting order of each side
in priority order (best price first, then arrival), and every held stop order
in acceptance order.  Level totals are derived, not stored.

Byte layout (little endian), identical for the pure and the compiled engine::

    b"KBOB"  magic
    u32      format version (1)
    i64      last_seq, last_price, n_bids, n_asks, n_stops
    n_bids x 8 x i64   order_id owner_id side price remaining filled post_only stp
    n_asks x 8 x i64   (same)
    n_stops x 11 x i64 order_id owner_id side trigger stop_price qty quote
                       limit_price tif protection_price stp
    u32      CRC-32 of everything before it

``decode_state`` checks magic, version, length and checksum and raises
``SnapshotError`` on any mismatch.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

MAGIC = b"KBOB"
VERSION = 1
_HEADER = struct.Struct("<4sI5q")
_CRC = struct.Struct("<I")
_ORDER_FIELDS = 8
_STOP_FIELDS = 11


class SnapshotError(ValueError):
    pass


class RestingOrder(NamedTuple):
    order_id: int
    owner_id: int
    side: int
    price: int
    remaining: int
    filled: int
    post_only: int
    stp: int


class StopOrder(NamedTuple):
    order_id: int
    owner_id: int
    side: int
    trigger: int
    stop_price: int
    qty: int
    quote: int
    limit_price: int
    tif: int
    protection_price: int
    stp: int


class BookState(NamedTuple):
    last_seq: int
    last_price: int
    bids: list[RestingOrder]
    asks: list[RestingOrder]
    stops: list[StopOrder]


def _flatten(rows: list, width: int) -> bytes:
    flat = [v for row in rows for v in row]
    return struct.pack(f"<{len(rows) * width}q", *flat)


def encode_state(state: BookState) -> bytes:
    body = b"".join(
        (
            _HEADER.pack(
                MAGIC,
                VERSION,
                state.last_seq,
                state.last_price,
                len(state.bids),
                len(state.asks),
                len(state.stops),
            ),
            _flatten(state.bids, _ORDER_FIELDS),
            _flatten(state.asks, _ORDER_FIELDS),
            _flatten(state.stops, _STOP_FIELDS),
        )
    )
    return body + _CRC.pack(zlib.crc32(body))


def _rows(data: bytes, offset: int, n: int, width: int, cls: type) -> tuple[list, int]:
    size = n * width * 8
    values = struct.unpack_from(f"<{n * width}q", data, offset)
    rows = [cls._make(values[i : i + width]) for i in range(0, n * width, width)]
    return rows, offset + size


def decode_state(data: bytes) -> BookState:
    if len(data) < _HEADER.size + _CRC.size:
        raise SnapshotError("snapshot too short")
    body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
    if zlib.crc32(body) != crc:
        raise SnapshotError("snapshot checksum mismatch")
    magic, version, last_seq, last_price, n_bids, n_asks, n_stops = _HEADER.unpack_from(body)
    if magic != MAGIC:
        raise SnapshotError("not an order book snapshot")
    if version != VERSION:
        raise SnapshotError(f"unsupported snapshot version {version}")
    expected = _HEADER.size + 8 * ((n_bids + n_asks) * _ORDER_FIELDS + n_stops * _STOP_FIELDS)
    if min(n_bids, n_asks, n_stops) < 0 or len(body) != expected:
        raise SnapshotError("snapshot length mismatch")
    offset = _HEADER.size
    bids, offset = _rows(body, offset, n_bids, _ORDER_FIELDS, RestingOrder)
    asks, offset = _rows(body, offset, n_asks, _ORDER_FIELDS, RestingOrder)
    stops, offset = _rows(body, offset, n_stops, _STOP_FIELDS, StopOrder)
    return BookState(last_seq, last_price, bids, asks, stops)
