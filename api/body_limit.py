"""The request body limit (``LD3_MAX_BODY_BYTES``), enforced while the body streams in.

Pure ASGI, outside the routes, so it acts before authentication and parsing. A declared
``Content-Length`` above the limit is answered at once, nothing read; otherwise the bytes are
counted as they arrive (a chunked body, a ``Content-Length`` that lies), and at the first chunk
past the limit the app's read fails and the 413 replaces whatever the app made of that. The 413
closes the connection, so the server does not go on receiving the rest.
"""

from __future__ import annotations

import json
from typing import Any, Callable


class BodyTooLarge(Exception):
    """Raised into the app's read of a body past the limit."""


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``, with the limit named in ``detail``."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes
        detail = f"request body larger than the limit of {max_bytes} bytes (LD3_MAX_BODY_BYTES)"
        self.refusal = json.dumps({"detail": detail}).encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_length(scope) > self.max_bytes:
            await self._refuse(send)
            return
        received, refused, started = 0, False, False

        async def receive_counted() -> dict:
            nonlocal received, refused
            if refused:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise BodyTooLarge
            return message

        async def send_unless_refused(message: dict) -> None:
            nonlocal started
            if refused:
                return  # the app's answer to a body it could not read whole: the 413 goes instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_counted, send_unless_refused)
        except BodyTooLarge:
            pass
        if refused and not started:
            await self._refuse(send)

    async def _refuse(self, send: Callable) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.refusal)).encode()),
                   (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": self.refusal})


def declared_length(scope: dict) -> int:
    """The request's ``Content-Length``, or 0 when it has none (or an unreadable one: the count still holds)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


__all__ = ["BodyLimitMiddleware", "BodyTooLarge"]
