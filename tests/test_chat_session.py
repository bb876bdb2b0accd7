"""The core chat (what the Playground and ``llmops chat`` show) against a real server process
of the demo GGUF: replies stream with their figures, the conversation carries on, ratings
become feedback rows, Stop ends a reply at once, and a dead server fails one reply only."""

from __future__ import annotations

import pytest

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.serving.chat_session import (
    ChatSession,
    ChatTarget,
    Delta,
    ReplyEnded,
    Sampling,
    stats_text,
)
from llmops_desktop.serving.feedback import feedback_rows
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import server_process


@pytest.fixture
def served(home, catalog, demo_gguf):
    artifact = import_artifact(catalog, demo_gguf, "demo-gguf")
    with server_process(home.root, "--artifact", "demo-gguf", "--threads", "1", "--ctx", "512",
                        "--name", "chatty") as server:
        info = server.info
        yield artifact, ChatTarget(url=info["url"], model=info["name"],
                                   deployment_id=info["deployment_id"],
                                   artifact_id=artifact.id, artifact_ref=artifact.ref)


def test_chat_streams_carries_on_and_rates(catalog, served) -> None:
    artifact, target = served
    session = ChatSession(target, system="You are terse.", catalog=catalog,
                          sampling=Sampling(max_tokens=16, seed=7))
    events = list(session.send("Hello there"))
    deltas = [e for e in events if isinstance(e, Delta)]
    assert deltas and all(isinstance(e, Delta) for e in events[:-1])
    end = events[-1]
    assert isinstance(end, ReplyEnded) and end.state == "done", end.error
    first = session.turns[-1]
    assert first.content == "".join(d.text for d in deltas) and first.state == "done"
    assert end.stats.ttft_ms is not None and 0 < end.stats.completion_tokens <= 16
    assert end.stats.tokens_per_s is not None and end.stats.finish_reason in ("stop", "length")
    line = stats_text(first)
    assert "TTFT" in line and "tok/s" in line and f"{end.stats.completion_tokens} tokens" in line
    body = first.request["body"]
    assert body["model"] == "chatty" and body["seed"] == 7 and body["max_tokens"] == 16
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Hello there"}]

    # The second question carries the first exchange.
    second_events = list(session.send("And again?"))
    assert second_events[-1].state == "done"
    body = session.turns[-1].request["body"]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][2]["content"] == first.content
    assert not session.busy and len(session.turns) == 4

    # Ratings land in the catalog with the conversation, settings and who answered.
    session.rate(first.reply_id, 1)
    session.rate(session.turns[-1].reply_id, -1)
    rows = feedback_rows(catalog)
    assert [(r.reply_id, r.rating) for r in rows] == [(first.reply_id, 1),
                                                      (session.turns[-1].reply_id, -1)]
    row = rows[0]
    assert row.reply == first.content and row.prompt == "Hello there"
    assert row.system_prompt == "You are terse." and row.messages == [
        {"role": "user", "content": "Hello there"}]
    assert row.artifact_id == artifact.id and row.artifact_ref == artifact.ref
    assert row.deployment_id == target.deployment_id and row.params["seed"] == 7
    assert row.ttft_ms == first.stats.ttft_ms and first.rating == 1
    session.rate(first.reply_id, 0)  # taken back
    assert [r.rating for r in feedback_rows(catalog)] == [-1]

    # Starting over forgets the conversation, keeps the settings.
    session.reset()
    list(session.send("Fresh start"))
    assert [m["role"] for m in session.turns[-1].request["body"]["messages"]] == ["system",
                                                                                  "user"]


def test_stop_ends_a_reply_and_the_chat_goes_on(home, catalog, served) -> None:
    _, target = served
    session = ChatSession(target, catalog=catalog, sampling=Sampling(max_tokens=300, seed=1))
    turn = session.ask("Tell me a long story")
    assert session.busy
    with pytest.raises(InvalidInputError):
        session.ask("one at a time")
    pieces = []
    for event in session.stream(turn):
        if isinstance(event, Delta):
            pieces.append(event.text)
            session.stop()  # as the Stop button (another thread) or Ctrl-C does
    assert isinstance(event, ReplyEnded) and event.state == "stopped"
    assert len(pieces) == 1 and turn.content == pieces[0] and turn.state == "stopped"
    assert "stopped" in stats_text(turn) and not session.busy
    session.rate(turn.reply_id, 1)  # a stopped reply with text can be rated
    assert feedback_rows(catalog)[0].reply == pieces[0]

    # The stopped reply is part of the conversation; the next one streams normally.
    events = list(session.send("Shorter, please"))
    assert events[-1].state == "done"
    # A window shows a reply behind its stream: Stop on what it still shows as coming
    # marks it stopped even if the last token arrived meanwhile.
    session.stop(session.turns[-1])
    assert session.turns[-1].state == "stopped"
    assert [m["role"] for m in session.turns[-1].request["body"]["messages"]] == [
        "user", "assistant", "user"]


def test_an_unreachable_server_fails_one_reply(catalog) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    session = ChatSession(ChatTarget(url=f"http://127.0.0.1:{port}", model="gone"),
                          catalog=catalog)
    events = list(session.send("Hello?"))
    assert len(events) == 1 and events[0].state == "failed"
    assert "Cannot reach" in events[0].error and stats_text(session.turns[-1]).startswith(
        "Failed: Cannot reach")
    with pytest.raises(InvalidInputError):
        session.rate(session.turns[-1].reply_id, 1)  # nothing to rate
    # The failed exchange is not sent again.
    session.ask("Second try")
    assert session.turns[-1].request["history"] == [{"role": "user", "content": "Second try"}]

