"""``OPTIONS`` and 405 answers that name every method a path takes.

Starlette answers a method no route takes with a 405 whose ``Allow`` names the first matching
route's methods only (``OPTIONS /jobs`` gave ``allow: POST``, though ``GET /jobs`` exists).
This pure-ASGI middleware answers ``OPTIONS`` itself (204, ``Allow``: the methods of every
route whose path matches, and OPTIONS) and rewrites a 405's ``Allow`` the same way. A path no
route matches is left to the app (404). A CORS preflight is answered by the CORS middleware
outside this one, when CORS is configured.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match


class AllowedMethodsMiddleware:
    """Answer ``OPTIONS`` and correct a 405's ``Allow`` with the methods the path really takes."""

    def __init__(self, app: Any, routes: Sequence[BaseRoute]) -> None:
        self.app, self.routes = app, routes

    def allowed(self, scope: dict) -> list[str]:
        """Every method some route takes at ``scope``'s path, sorted, OPTIONS included; [] if none matches."""
        methods: set[str] = set()
        for route in iter_route_contexts(self.routes):
            taken = route.methods
            if taken and route.matches(scope)[0] != Match.NONE:
                methods |= taken
        return sorted(methods | {"OPTIONS"}) if methods else []

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and (allowed := self.allowed(scope)):
            headers = [(b"allow", ", ".join(allowed).encode()), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_allow(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = ", ".join(self.allowed(scope)).encode()
                message = {**message, "headers": [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                           + [(b"allow", allow)]}
            await send(message)

        await self.app(scope, receive, send_with_allow)


__all__ = ["AllowedMethodsMiddleware"]
