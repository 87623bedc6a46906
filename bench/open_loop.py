"""An open-loop HTTP/1.1 load generator on asyncio's transports.

Each request is sent at its planned time, whatever the server has answered so far, over a
pool of keep-alive connections (a new one is opened while all are busy, up to a limit;
past it, requests wait for a free connection, and that wait counts in their latency).
Latency is measured from the planned send time, so a stalled server cannot hide
queueing (no coordinated omission).

The requests are rendered to bytes before the clock starts and a response is read only as
far as its status line, its length and its body: the generator shares the machine with the
server it measures, and the less CPU it takes the less it disturbs the result. (An HTTP
client library took 0.4-0.9 ms of CPU a request here, as much as a fifth of the server's.)

A connection idle for longer than ``max_idle`` (4 s, under uvicorn's keep-alive timeout of
5 s) is closed instead of reused. The server closes such a connection on its own, and a
request sent on it while the server's close is on its way is lost: the connection ends
before the answer. A generator whose event loop is busy sees the close late, so the
window is wide exactly when the load is high. (Reusing connections idle 0.9-1.1 s against
uvicorn with a 1 s timeout lost every request sent after the timeout had passed, 255 of
480; idle 0.5-0.95 s lost none.) A request still lost that way is counted, with how long
its connection had been idle, in ``lost_after_idle``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class Answer:
    """One request's outcome: HTTP status (0 when the connection failed), the body, and
    the latency in seconds from the planned send time to the last byte of the answer."""

    status: int
    body: bytes
    latency: float


def render(method: str, path: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection(asyncio.Protocol):
    def __init__(self, generator: OpenLoop) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.index = -1  # the request in flight, -1 when idle
        self.buffer = bytearray()
        self.status = 0
        self.body_start = -1
        self.length = -1  # the body's length; -2: chunked
        self.idle_since = 0.0  # loop time when it last became idle
        self.idle_before_send = 0.0  # how long it had been idle when the request in flight went out

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, index: int, data: bytes, now: float) -> None:
        self.index = index
        self.idle_before_send = now - self.idle_since
        self.buffer.clear()
        self.body_start = -1
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.body_start < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            self.status = int(head[9:12])
            self.body_start = end + 4
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                self.length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
            elif b"transfer-encoding: chunked" in head:
                self.length = -2
            else:
                raise RuntimeError("an answer without a length")
        if self.length >= 0:
            if len(buffer) - self.body_start < self.length:
                return
            body = bytes(buffer[self.body_start : self.body_start + self.length])
        else:
            if not buffer.endswith(b"0\r\n\r\n"):
                return
            body = _unchunk(bytes(buffer[self.body_start :]))
            if body is None:
                return
        index, self.index = self.index, -1
        self.generator.answered(self, index, self.status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.lost(self)


def _unchunk(data: bytes) -> bytes | None:
    """A chunked body's content, or None when its last chunk has not arrived."""
    out, at = bytearray(), 0
    while True:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(data[at:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        if len(data) < line_end + 2 + size + 2:
            return None
        out += data[line_end + 2 : line_end + 2 + size]
        at = line_end + 2 + size + 2


class OpenLoop:
    """Send ``requests`` (rendered bytes), one every ``interval`` seconds, to host:port."""

    def __init__(
        self, host: str, port: int, requests: list[bytes], interval: float, connections: int, max_idle: float = 4.0
    ) -> None:
        self.host, self.port = host, port
        self.max_idle = max_idle
        self.lost_after_idle: list[float] = []  # per request lost with its connection: that connection's idle time
        self.requests = requests
        self.interval = interval
        self.max_connections = connections
        self.answers: list[Answer | None] = [None] * len(requests)
        self.idle: list[_Connection] = []
        self.opening = 0
        self.open = 0
        self.waiting: deque[int] = deque()
        self.planned: list[float] = [0.0] * len(requests)
        self.outstanding = len(requests)
        self.done: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wall_offset = 0.0

    def planned_wall(self, index: int) -> float:
        """When request ``index`` was planned, on the wall clock (``time.time()``)."""
        return self.planned[index] + self.wall_offset

    async def run(self, start_delay: float = 0.5) -> tuple[list[Answer], float]:
        """Every request's answer, in order, and the seconds from the first planned send
        to the last answer."""
        loop = self.loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        if not self.requests:
            return [], 0.0
        t0 = loop.time() + start_delay
        self.wall_offset = time.time() - loop.time()
        for index in range(len(self.requests)):
            self.planned[index] = t0 + index * self.interval
        index = 0
        while index < len(self.requests):
            now = loop.time()
            while index < len(self.requests) and self.planned[index] <= now:
                self._dispatch(index)
                index += 1
            if index < len(self.requests):
                await asyncio.sleep(self.planned[index] - loop.time())
        await self.done
        for connection in self.idle:
            assert connection.transport is not None
            connection.transport.close()
        answers = [answer for answer in self.answers if answer is not None]
        return answers, max(a.latency + p for a, p in zip(self.answers, self.planned, strict=True) if a) - t0

    def _dispatch(self, index: int) -> None:
        assert self.loop is not None
        now = self.loop.time()
        while self.idle:
            connection = self.idle.pop()
            if now - connection.idle_since > self.max_idle:  # the server may be closing it
                assert connection.transport is not None
                connection.transport.close()  # counted out in lost(), which opens another if one is needed
                continue
            connection.send(index, self.requests[index], now)
            return
        self.waiting.append(index)
        if self.open + self.opening < self.max_connections:
            self.opening += 1
            assert self.loop is not None
            self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        assert self.loop is not None
        try:
            _, connection = await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError:
            self.opening -= 1
            if self.waiting:  # the server refuses connections: the waiting request fails
                self._record(self.waiting.popleft(), 0, b"")
            return
        self.opening -= 1
        self.open += 1
        self._free(connection)

    def _free(self, connection: _Connection) -> None:
        assert self.loop is not None
        connection.idle_since = now = self.loop.time()
        if self.waiting:
            index = self.waiting.popleft()
            connection.send(index, self.requests[index], now)
        else:
            self.idle.append(connection)

    def answered(self, connection: _Connection, index: int, status: int, body: bytes) -> None:
        self._record(index, status, body)
        self._free(connection)

    def lost(self, connection: _Connection) -> None:
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        if connection.index >= 0:
            self.lost_after_idle.append(connection.idle_before_send)
            self._record(connection.index, 0, b"")
            connection.index = -1
        if self.waiting and self.open + self.opening < self.max_connections:
            self.opening += 1
            assert self.loop is not None
            self.loop.create_task(self._connect())

    def _record(self, index: int, status: int, body: bytes) -> None:
        assert self.loop is not None and self.done is not None
        self.answers[index] = Answer(status, body, self.loop.time() - self.planned[index])
        self.outstanding -= 1
        if not self.outstanding and not self.done.done():
            self.done.set_result(None)
