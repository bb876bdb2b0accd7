"""Serving a versioned prompt by name: ``"model": "prompt:NAME[@VERSION|@ALIAS]"``.

A chat request that names a prompt sends its values as ``"variables": {...}`` (the openai
client's ``extra_body``) and may send earlier turns as ``messages``. The deployment resolves
the prompt in the catalog (a bare NAME follows the prompt's split, see
:func:`llmops_desktop.prompts.store.choose`; the request's ``user``, when given, keeps one
user on one version), fills the system prompt and the template, appends the filled template
as the user's message and applies the prompt's sampling settings where the request sets
none (and its response schema as ``response_format``). The version served (NAME@N) goes to the request log (``prompt_ref``), to ``/metrics``
(``llmops_prompt_requests_total{prompt, version, status}``) and to any rating of the reply.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from prometheus_client import Counter

from llmops_desktop.serving.protocol import APIError

PREFIX = "prompt:"
_MARK = b'"' + PREFIX.encode()


class PromptResolver:
    """Rewrites a request that names a prompt into the request the engine serves."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self._count = itertools.count()
        self.requests = Counter("llmops_prompt_requests", "Requests that named a versioned "
                                "prompt, by the version served", ("prompt", "version", "status"),
                                registry=state.metrics.registry)

    @staticmethod
    def wants(raw: bytes) -> bool:
        """Cheap test (no JSON parsing) whether the body may name a prompt."""
        return _MARK in raw

    def _home(self) -> Any:
        from llmops_desktop.paths import Home

        return getattr(self.state.recorder, "home", None) or Home.resolve(None)

    def apply(self, raw: bytes, kind: str) -> tuple[bytes, str | None]:
        """The body to serve and the prompt version (NAME@N), or the body unchanged."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return raw, None  # parse_body says what is wrong
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, str) or not model.startswith(PREFIX):
            return raw, None
        if kind != "chat":
            raise APIError(400, "A prompt is served on /v1/chat/completions.", param="model",
                           code="invalid_value")
        values = data.pop("variables", None) or {}
        if not isinstance(values, dict):
            raise APIError(400, "'variables' must be an object of name: value.",
                           param="variables", code="invalid_value")
        messages = data.get("messages") or []
        if not isinstance(messages, list):
            raise APIError(400, "'messages' must be a list.", param="messages")
        version = self._resolve(model[len(PREFIX):], data)
        from llmops_desktop.errors import InvalidInputError
        from llmops_desktop.prompts.templates import fill

        try:
            system = fill(version.system_prompt, values, what=f"system prompt of {version.ref}")
            user = fill(version.template, values, what=f"template of {version.ref}")
        except InvalidInputError as exc:
            raise APIError(400, str(exc), param="variables", code="invalid_value") from None
        data["messages"] = ([{"role": "system", "content": system}] if system else []) + [
            *messages, {"role": "user", "content": user}]
        for name, value in version.params.items():
            data.setdefault(name, value)
        if version.response_schema is not None:  # the reply constrained to it (a grammar)
            data.setdefault("response_format", {"type": "json_schema", "json_schema": {
                "name": version.name, "schema": version.response_schema}})
        data["model"] = self.state.deployment.name
        return json.dumps(data).encode("utf-8"), version.ref

    def _resolve(self, spec: str, data: dict[str, Any]) -> Any:
        from llmops_desktop.catalog import Catalog
        from llmops_desktop.errors import InvalidInputError, NotFoundError
        from llmops_desktop.prompts.store import resolve_prompt

        user = data.get("user")
        key = f"user:{user}" if isinstance(user, str) and user else f"n:{next(self._count)}"
        try:
            with Catalog.open(self._home()) as catalog:
                return resolve_prompt(catalog, spec, key=key)[0]
        except NotFoundError as exc:
            raise APIError(404, str(exc), param="model", code="model_not_found") from None
        except InvalidInputError as exc:
            raise APIError(400, str(exc), param="model", code="invalid_value") from None

    def observe(self, prompt_ref: str, status: int) -> None:
        name, _, version = prompt_ref.rpartition("@")
        self.requests.labels(name, version, str(status)).inc()


_gateway_count = itertools.count()


def gateway_prompt_target(catalog: Any, model: str, payload: dict[str, Any]) -> tuple[str, str]:
    """At the gateway: the model a prompt request goes to (the artifact its version was
    written for) and the pinned ``prompt:NAME@N`` the deployment then serves, so the version
    the split picked is the one served. Raises NotFoundError / InvalidInputError."""
    from llmops_desktop.errors import InvalidInputError
    from llmops_desktop.prompts.store import resolve_prompt

    user = payload.get("user")
    key = f"user:{user}" if isinstance(user, str) and user else f"g:{next(_gateway_count)}"
    version, _ = resolve_prompt(catalog, model[len(PREFIX):], key=key)
    if not version.artifact_ref:
        raise InvalidInputError(f"{version.ref} names no model, so the gateway cannot tell "
                                "where to send it: make a version with 'llmops prompt create "
                                "--artifact MODEL', or ask the deployment itself.")
    return version.artifact_ref, f"{PREFIX}{version.ref}"
