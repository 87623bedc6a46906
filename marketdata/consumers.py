"""The public and private real-time stream at ``/ws/v1/``.

Messages are JSON objects with an ``op``. Every bad message gets an error frame
``{"op": "error", "code": ..., "message": ...}`` and the connection stays open.
"""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer


class StreamConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_error("binary_not_supported", "Send JSON text frames.")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            await self.send_error("malformed_json", "The message is not valid JSON.")
            return
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            await self.send_error("missing_op", 'A message is a JSON object with an "op".')
            return
        handler = getattr(self, f"op_{message['op']}", None)
        if handler is None:
            await self.send_error("unknown_op", f"Unknown op {message['op']!r}.")
            return
        await handler(message)

    async def op_ping(self, message: dict[str, Any]) -> None:
        await self.send_json({"op": "pong", "id": message.get("id")})

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json({"op": "error", "code": code, "message": message})
