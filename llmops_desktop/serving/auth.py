"""The API key check: every path but /health needs ``Authorization: Bearer <key>``."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from llmops_desktop.serving.protocol import APIError

OPEN_PATHS = frozenset({"/health"})  # answered without the API key
GENERATION_PATHS = frozenset({"/v1/completions", "/v1/chat/completions", "/v1/messages"})


class ApiKeyGuard:
    """Refuses every request without ``Authorization: Bearer <key>`` (but /health).

    The key is compared in constant time (as SHA-256 digests, so its length does not
    leak either) and is never logged."""

    def __init__(self, app: ASGIApp, key: str, rejected: Any = None) -> None:
        self.app = app
        self._digest = hashlib.sha256(key.encode("utf-8")).digest()
        self._counter = rejected  # a prometheus Counter labelled (endpoint, status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        supplied = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    supplied = token.strip()
            elif name == b"x-api-key" and not supplied:  # the anthropic client's header
                supplied = value.strip()
        if hmac.compare_digest(hashlib.sha256(supplied).digest(), self._digest):
            await self.app(scope, receive, send)
            return
        if self._counter is not None:
            path = scope["path"] if scope["path"] in GENERATION_PATHS else "other"
            self._counter.labels(path, "401").inc()
        message = ("This server needs an API key: send 'Authorization: Bearer <key>' (the "
                   "openai client's api_key) or 'x-api-key: <key>' (the anthropic client's)."
                   if not supplied else "Incorrect API key.")
        response = APIError(401, message, code="invalid_api_key",
                            headers={"WWW-Authenticate": "Bearer"}).response()
        await response(scope, receive, send)
