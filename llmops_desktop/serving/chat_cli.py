"""``llmops chat ARTIFACT_OR_DEPLOYMENT``: talk to a model from a terminal, as in the Playground.

A running deployment (its id or name, see ``llmops deployments``) is used as it is; an
artifact gets a server of its own for the length of the chat (on 127.0.0.1, a free port),
stopped on the way out. Replies stream to stdout as they arrive; the figures under each
(time to first token, tokens/s) go to stderr. The address of any OpenAI-compatible
server (``http://HOST:PORT``) works too. Lines starting with ``/`` are commands:
``/rate up|down`` stores a rating of the last reply in the catalog (as the Playground's
thumbs do), ``/system TEXT`` sets the system prompt, ``/reset`` starts over, ``/quit`` (or
Ctrl-D) leaves. Ctrl-C during a reply stops that reply and keeps the chat.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from llmops_desktop.errors import InvalidInputError, NotFoundError
from llmops_desktop.serving.chat_session import (
    ChatSession,
    ChatTarget,
    Delta,
    ReplyEnded,
    Sampling,
    stats_text,
)
from llmops_desktop.serving.config import ServeOptions

SERVER_OPTIONS = ("engine", "ctx", "threads", "gpu_layers")  # an artifact served for the chat
HELP = """Commands:
  /rate up|down   rate the last reply (stored in the catalog; 'llmops feedback' lists them)
  /system [TEXT]  set the system prompt (empty: none), then start over
  /reset          forget the conversation and start over
  /help           this list
  /quit           leave (Ctrl-D too); Ctrl-C stops a reply"""


def cmd_chat(args: argparse.Namespace) -> int:
    from llmops_desktop.catalog import Catalog
    from llmops_desktop.paths import Home
    from llmops_desktop.serving.config import API_KEY_ENV

    home = Home.resolve(args.home)
    catalog = Catalog.open(home)
    try:
        sampling = Sampling(temperature=args.temperature, top_p=args.top_p,
                            max_tokens=args.max_tokens, seed=args.seed)
        api_key = args.api_key or os.environ.get(API_KEY_ENV, "")
        with chat_target(catalog, home, args.target, api_key, _serve_options(args),
                         args.model or "") as target:
            session = ChatSession(target, system=args.system or "", sampling=sampling,
                                  catalog=catalog)
            return run_chat(session, sys.stdin, sys.stdout, sys.stderr)
    finally:
        catalog.close()


@contextlib.contextmanager
def chat_target(catalog: Any, home: Any, name: str, api_key: str,
                options: ServeOptions | None = None, model: str = "") -> Iterator[ChatTarget]:
    """A running deployment called ``name`` (id or name), else a server of our own for the
    artifact ``name``, stopped when the chat ends; or any OpenAI-compatible server by its
    address (``model``: default the first it lists)."""
    from llmops_desktop.serving.store import reconcile

    if name.startswith(("http://", "https://")):
        url = name.rstrip("/").removesuffix("/v1")
        model = model or _first_model(url, api_key)
        print(f"Chatting with {model} at {url}", file=sys.stderr)
        yield ChatTarget(url=url, model=model, api_key=api_key)
        return
    running = reconcile(catalog)
    found = [d for d in running if str(d.id) == name] or [d for d in running if d.name == name]
    if found:
        d = found[-1]
        print(f"Chatting with deployment #{d.id} {d.name} ({d.artifact_ref}) at {d.url}",
              file=sys.stderr)
        yield ChatTarget(url=d.url, model=d.name, api_key=api_key, deployment_id=d.id,
                         artifact_id=d.artifact_id, artifact_ref=d.artifact_ref)
        return
    try:
        artifact = catalog.resolve(name)
    except NotFoundError:
        raise NotFoundError(f"No running deployment and no artifact called {name!r}: see "
                            "'llmops deployments' and 'llmops list'.") from None
    from llmops_desktop.serving.deploy import DeployRequest

    request = DeployRequest.from_options(artifact.id, options, artifact_ref=artifact.ref,
                                         host="127.0.0.1", port=0).check()
    print(f"Starting a server for {artifact.ref}…", file=sys.stderr)
    with temporary_server(home, request) as info:
        print(f"Chatting with {info['name']} at {info['url']} (stopped when you leave)",
              file=sys.stderr)
        yield ChatTarget(url=info["url"], model=str(info["name"]), api_key="",
                         deployment_id=info.get("deployment_id"), artifact_id=artifact.id,
                         artifact_ref=artifact.ref)


def _first_model(url: str, api_key: str) -> str:
    """The first model an OpenAI-compatible server lists (``GET /v1/models``)."""
    import json
    import urllib.request

    from llmops_desktop.errors import NetworkError

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as stream_chat
    try:
        with opener.open(urllib.request.Request(url + "/v1/models", headers=headers),
                         timeout=30) as r:
            models = json.load(r).get("data") or []
    except (OSError, ValueError) as exc:
        raise NetworkError(f"Cannot list the models of {url}: {exc}. Is it an OpenAI-"
                           "compatible server (or say which with --model)?") from None
    if not models:
        raise NotFoundError(f"{url} serves no model.")
    return str(models[0]["id"])


@contextlib.contextmanager
def temporary_server(home: Any, request: Any) -> Iterator[dict[str, Any]]:
    """Start ``request``'s server (:func:`~llmops_desktop.serving.deploy.start_server`, as
    the window does: its own session, so the terminal's Ctrl-C reaches the chat only);
    yield its ready line's data; stop it on the way out."""
    import threading
    from collections import deque

    from llmops_desktop.errors import JobError
    from llmops_desktop.jobs.events import Error, Result
    from llmops_desktop.procs import read_events
    from llmops_desktop.serving.deploy import serving_log, start_server, stop_server

    proc = start_server(request, home)
    try:
        assert proc.stdout is not None
        events = read_events(proc.stdout)
        info: dict[str, Any] = {}
        for event in events:
            if isinstance(event, Result):
                info = dict(event.data)
                break
            if isinstance(event, Error):
                raise event.to_exception()
        if not info:
            raise JobError(f"The server exited ({proc.wait()}) before it was ready; see "
                           f"{serving_log(home)}.")
        # Keep reading its log lines, or a full pipe would stall it.
        threading.Thread(target=deque, args=(events, 0), daemon=True,
                         name="llmops-chat-server").start()
        yield info
    finally:
        stop_server(proc)


def run_chat(session: ChatSession, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """The read-reply loop until /quit or end of input."""
    interactive = stdin.isatty() and stdout.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing and history for input()
        print("Type a message; /help for commands, /quit or Ctrl-D to leave.", file=stderr)
    while True:
        try:
            line = _read_line(stdin, stdout, interactive)
        except KeyboardInterrupt:
            print("\n(Use /quit or Ctrl-D to leave.)", file=stderr)
            continue
        if line is None:
            return 0
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if _command(session, text, stderr) == "quit":
                return 0
            continue
        _reply(session, text, stdout, stderr)


def _read_line(stdin: TextIO, stdout: TextIO, interactive: bool) -> str | None:
    if interactive and stdin is sys.stdin:
        try:
            return input(">>> ")
        except EOFError:
            stdout.write("\n")
            return None
    line = stdin.readline()
    return line if line else None


def _reply(session: ChatSession, text: str, stdout: TextIO, stderr: TextIO) -> None:
    turn = session.ask(text)
    with _ctrl_c_stops(session.stop):
        for event in session.stream(turn):
            if isinstance(event, Delta):
                stdout.write(event.text)
                stdout.flush()
            elif isinstance(event, ReplyEnded):
                stdout.write("\n")
                stdout.flush()
                if event.state == "failed":
                    print(f"error: {event.error}", file=stderr)
                else:
                    print(f"[{stats_text(turn)}]", file=stderr)
                stderr.flush()


@contextlib.contextmanager
def _ctrl_c_stops(stop: Callable[[], None]) -> Iterator[None]:
    """While a reply streams, Ctrl-C (SIGINT) stops the reply instead of the program."""
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: stop())
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _command(session: ChatSession, text: str, stderr: TextIO) -> str:
    name, _, rest = text.partition(" ")
    name, rest = name.lower(), rest.strip()
    if name in ("/quit", "/exit", "/bye"):
        return "quit"
    if name == "/help":
        print(HELP, file=stderr)
    elif name == "/reset":
        session.reset()
        print("(New conversation.)", file=stderr)
    elif name == "/system":
        session.system = rest
        session.reset()
        print(f"(System prompt {'set' if rest else 'cleared'}; new conversation.)",
              file=stderr)
    elif name == "/rate":
        value = {"up": 1, "+": 1, "+1": 1, "down": -1, "-": -1, "-1": -1, "none": 0,
                 "clear": 0}.get(rest.lower())
        reply = session.last_reply()
        if value is None:
            print("Say /rate up or /rate down.", file=stderr)
        elif reply is None or not reply.rateable:
            print("Nothing to rate yet: the last reply must have finished with some text.",
                  file=stderr)
        else:
            try:
                session.rate(reply.reply_id, value)
            except (InvalidInputError, OSError) as exc:
                print(f"error: could not store the rating: {exc}", file=stderr)
            else:
                print({1: "(Rated up.)", -1: "(Rated down.)", 0: "(Rating taken back.)"}[value],
                      file=stderr)
    else:
        print(f"Unknown command {name}; /help lists them.", file=stderr)
    stderr.flush()
    return ""


def _serve_options(args: argparse.Namespace) -> ServeOptions:
    """The serve options given for an artifact served for the chat (others: defaults)."""
    given = {name: getattr(args, name) for name in SERVER_OPTIONS
             if getattr(args, name, None) is not None}
    return ServeOptions(**given)


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    from llmops_desktop.serving.chat_session import DEFAULT_MAX_TOKENS
    help_of = {i["name"]: i["description"] for i in ServeOptions.field_info()}
    sp = add("chat", cmd_chat,
             "chat with a running deployment, or with an artifact (served for the chat); "
             "/rate up|down, /system, /reset, /quit")
    sp.add_argument("target", metavar="ARTIFACT_OR_DEPLOYMENT",
                    help="a running deployment's id or name, an artifact (id, name, "
                         "NAME@VERSION) to serve for the length of the chat, or the address "
                         "of any OpenAI-compatible server (http://HOST:PORT)")
    sp.add_argument("--system", help="system prompt")
    sp.add_argument("--temperature", type=float, default=0.7,
                    help="randomness: 0 always picks the likeliest token (default 0.7)")
    sp.add_argument("--top-p", type=float, default=0.95,
                    help="sample only from the likeliest tokens that together have this "
                         "probability (default 0.95)")
    sp.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                    help=f"longest reply in tokens (default {DEFAULT_MAX_TOKENS})")
    sp.add_argument("--seed", type=int, help="the same seed, prompt and settings give the "
                                             "same reply")
    sp.add_argument("--api-key", help="the deployment's API key (prefer LLMOPS_API_KEY)")
    sp.add_argument("--model", help="with a server's address: the model to ask (default: "
                                    "the first it lists)")
    for name in SERVER_OPTIONS:
        sp.add_argument("--" + name.replace("_", "-"), type=None if name == "engine" else int,
                        help=help_of[name] + " Only for an artifact served for the chat.")
