"""A chat with one deployment: the conversation, the request body, the reply's figures, ratings.

The Playground page and ``llmops chat`` both show a :class:`ChatSession`; neither builds a
request or stores feedback itself. A reply is two steps so that a front end can run the
slow one wherever it likes: :meth:`ChatSession.ask` (instant: adds the question and an empty
reply to the conversation and builds the request) and :meth:`ChatSession.stream` (a
generator of :class:`Delta` events that ends with one :class:`ReplyEnded`; run it on a
worker thread or in a terminal loop). :meth:`ChatSession.stop` may be called from any
thread: it closes the connection, which stops the server's generation too. Ratings go to
the catalog's feedback table (:mod:`llmops_desktop.serving.feedback`).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from llmops_desktop.errors import InvalidInputError, LLMOpsError
from llmops_desktop.serving.client import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    Cancel,
    ReplyStats,
    stream_chat,
)
from llmops_desktop.serving.feedback import Feedback, link_request, rate

DEFAULT_MAX_TOKENS = 256
REPLY_STATES = ("streaming", "done", "stopped", "failed")
CHAT, COMPLETION = "chat", "completion"
MODES = {CHAT: ("Chat", CHAT_PATH), COMPLETION: ("Plain completion", COMPLETIONS_PATH)}


@dataclass(frozen=True)
class ChatTarget:
    """Where replies come from: a running deployment's address and what it serves."""

    url: str
    model: str
    api_key: str = ""
    deployment_id: int | None = None
    artifact_id: int | None = None
    artifact_ref: str = ""


@dataclass
class Sampling:
    """How replies are sampled (``seed`` None: a different reply each time)."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = DEFAULT_MAX_TOKENS
    seed: int | None = None
    json_schema: dict[str, Any] | None = None  # replies constrained to it (response_format)
    tools: list[dict[str, Any]] | None = None  # OpenAI tool definitions the model may call
    tool_choice: str = "auto"  # auto, required or none (with tools)


@dataclass
class Turn:
    """One message of a conversation; an assistant turn also has what it took and its rating."""

    role: str
    content: str
    reply_id: str = ""
    state: str = "done"  # one of REPLY_STATES
    stats: ReplyStats | None = None
    error: str = ""
    rating: int = 0
    request: dict[str, Any] = field(default_factory=dict)  # what was sent for this reply
    target: ChatTarget | None = None  # who answered

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The tools the model called in this reply ({name, arguments} each)."""
        return self.stats.tool_calls if self.stats is not None else []

    @property
    def rateable(self) -> bool:
        return self.role == "assistant" and self.state in ("done", "stopped") and bool(self.content)


@dataclass(frozen=True)
class Delta:
    """A piece of the reply arrived (already appended to the turn's content)."""

    reply_id: str
    text: str


@dataclass(frozen=True)
class ReplyEnded:
    """The reply ended: ``state`` is done, stopped or failed (then ``error`` says why)."""

    reply_id: str
    state: str
    stats: ReplyStats
    error: str = ""


ChatEvent = Delta | ReplyEnded


def stats_text(turn: Turn) -> str:
    """The line under a reply: 'TTFT 41 ms · 87.3 tok/s · 64 tokens · hit max tokens'."""
    if turn.state == "streaming":
        return "…"
    if turn.state == "failed":
        return f"Failed: {turn.error}"
    s = turn.stats
    parts = []
    if s is not None and s.ttft_ms is not None:
        parts.append(f"TTFT {s.ttft_ms:.0f} ms")
    if s is not None and s.tokens_per_s is not None:
        parts.append(f"{s.tokens_per_s:.1f} tok/s")
    if s is not None and s.completion_tokens is not None:
        parts.append(f"{s.completion_tokens} tokens")
    if turn.state == "stopped":
        parts.append("stopped")
    elif s is not None and s.finish_reason:
        parts.append({"length": "hit max tokens"}.get(s.finish_reason, s.finish_reason))
    return " · ".join(parts)


class ChatSession:
    """One conversation with one deployment. ``catalog`` (optional) is where ratings go."""

    def __init__(self, target: ChatTarget, *, system: str = "",
                 sampling: Sampling | None = None, catalog: Any = None,
                 mode: str = CHAT) -> None:
        self.target = target
        self.mode = mode  # CHAT: /v1/chat/completions; COMPLETION: /v1/completions
        self.system = system
        self.sampling = sampling or Sampling()
        self.catalog = catalog
        self.turns: list[Turn] = []
        self._cancel: Cancel | None = None
        self._streaming: Turn | None = None
        self._lock = threading.Lock()  # a reply's end against a Stop from another thread

    # ---- the conversation --------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A reply is being streamed (a new question waits until it ends)."""
        return self._streaming is not None

    def history(self) -> list[dict[str, str]]:
        """The messages to send: every finished turn (a failed reply and its question are
        left out, so the model never sees an error as its own words)."""
        out: list[dict[str, str]] = []
        for i, t in enumerate(self.turns):
            if t.role == "assistant" and t.state in ("done", "stopped") and t.content:
                out.append({"role": "assistant", "content": t.content})
            elif t.role == "user":
                reply = self.turns[i + 1] if i + 1 < len(self.turns) else None
                if reply is None or reply.state != "failed":
                    out.append({"role": "user", "content": t.content})
        return out

    @property
    def mode_text(self) -> str:
        """'Chat (/v1/chat/completions)' or 'Plain completion (/v1/completions)'."""
        label, path = MODES.get(self.mode, MODES[CHAT])
        return f"{label} ({path})"

    def request_body(self, history: list[dict[str, str]]) -> dict[str, Any]:
        """The OpenAI body for ``history`` with this session's settings: chat messages, or
        in plain-completion mode the last message as the prompt to continue (for a model
        without a chat template; the system prompt, if any, goes before it)."""
        s = self.sampling
        system = self.system.strip()
        if self.mode == COMPLETION:
            prompt = history[-1]["content"] if history else ""
            what: dict[str, Any] = {"prompt": f"{system}\n\n{prompt}" if system else prompt}
        else:
            what = {"messages": ([{"role": "system", "content": system}] if system else [])
                    + history}
        body: dict[str, Any] = {
            "model": self.target.model,
            **what,
            "temperature": round(float(s.temperature), 3),
            "top_p": round(float(s.top_p), 3),
            "max_tokens": int(s.max_tokens)}
        if s.seed is not None and s.seed >= 0:
            body["seed"] = int(s.seed)
        if s.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "reply", "schema": s.json_schema}}
        if s.tools and self.mode == CHAT:
            body["tools"], body["tool_choice"] = s.tools, s.tool_choice
        return body

    def ask(self, text: str) -> Turn:
        """Add a question and its (empty, streaming) reply; returns the reply's turn."""
        text = text.strip()
        if not text:
            raise InvalidInputError("Nothing to send: type a message first.")
        if self.busy:
            raise InvalidInputError("A reply is still coming: wait for it or stop it first.")
        self.turns.append(Turn("user", text))
        history = self.history()
        body = self.request_body(history)
        turn = Turn("assistant", "", reply_id=uuid.uuid4().hex, state="streaming",
                    stats=ReplyStats(), target=self.target,
                    request={"body": body, "system": self.system.strip(), "history": history,
                             "prompt": text, "mode": self.mode,
                             "path": MODES.get(self.mode, MODES[CHAT])[1]})
        self.turns.append(turn)
        self._streaming, self._cancel = turn, Cancel()
        return turn

    def stream(self, turn: Turn) -> Iterator[ChatEvent]:
        """Stream ``turn``'s reply (from :meth:`ask`): :class:`Delta` events, then one
        :class:`ReplyEnded`. Errors end the reply as failed; they are never raised."""
        cancel = self._cancel if turn is self._streaming and self._cancel else Cancel()
        target = turn.target or self.target
        stats = turn.stats if turn.stats is not None else ReplyStats()
        turn.stats = stats
        error = ""
        try:
            for piece in stream_chat(target.url, turn.request["body"], api_key=target.api_key,
                                     cancel=cancel, stats=stats,
                                     path=turn.request.get("path", CHAT_PATH)):
                turn.content += piece
                yield Delta(turn.reply_id, piece)
        except (GeneratorExit, KeyboardInterrupt):  # the reader left or Ctrl-C: stopped
            cancel.set()
            raise
        except LLMOpsError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown under the reply, never a crash
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                if turn is self._streaming:
                    self._streaming = self._cancel = None
                if cancel.is_set():
                    turn.state = "stopped"
                elif error:
                    turn.state, turn.error = "failed", error
                else:
                    turn.state = "done"
        yield ReplyEnded(turn.reply_id, turn.state, stats, turn.error)

    def send(self, text: str) -> Iterator[ChatEvent]:
        """:meth:`ask` then :meth:`stream`, for a front end that waits on the reply."""
        return self.stream(self.ask(text))

    def stop(self, turn: Turn | None = None) -> None:
        """Stop the reply being streamed (from any thread); it ends as ``stopped``.

        A front end that shows the reply behind the stream (a window draws what a worker
        thread already received) names the ``turn`` it shows: if that reply has ended in the
        meantime, it is marked stopped all the same, since the user stopped what they saw.
        """
        with self._lock:
            if self._cancel is not None:
                self._cancel.set()
            if turn is not None and turn.state == "done":
                turn.state = "stopped"

    def reset(self) -> None:
        """Start over: forget the conversation (settings and system prompt stay)."""
        if self.busy:
            raise InvalidInputError("A reply is still coming: stop it before starting over.")
        self.turns = []

    # ---- ratings -----------------------------------------------------------------------------

    def find(self, reply_id: str) -> Turn | None:
        return next((t for t in self.turns if t.reply_id == reply_id), None)

    def last_reply(self) -> Turn | None:
        return next((t for t in reversed(self.turns) if t.role == "assistant"), None)

    def rate(self, reply_id: str, rating: int) -> Turn:
        """Store (``1``, ``-1``) or take back (``0``) the rating of a reply in the catalog,
        with the conversation that led to it, the settings and who answered."""
        turn = self.find(reply_id)
        if turn is None:
            raise InvalidInputError(f"No reply {reply_id!r} in this conversation.")
        if not turn.rateable:
            raise InvalidInputError("Only a finished reply with some text can be rated.")
        if self.catalog is None:
            raise InvalidInputError("This chat has no catalog to store ratings in.")
        req, stats = turn.request, turn.stats
        body, target = req.get("body", {}), turn.target or self.target
        response_id = stats.response_id if stats else ""  # the server's: its request row
        rate(self.catalog, link_request(self.catalog, response_id, Feedback(
            reply_id=turn.reply_id, rating=rating, reply=turn.content,
            prompt=req.get("prompt", ""), messages=req.get("history", []),
            system_prompt=req.get("system", ""), deployment_id=target.deployment_id,
            artifact_id=target.artifact_id, artifact_ref=target.artifact_ref,
            params={k: body[k] for k in ("model", "temperature", "top_p", "max_tokens", "seed")
                    if k in body},
            ttft_ms=stats.ttft_ms if stats else None,
            tokens_per_s=stats.tokens_per_s if stats else None, source="chat")))
        turn.rating = rating
        return turn
