"""The gateway's deployments: one server process per loaded model, started on demand.

:class:`DeploymentPool` knows every model the policy lets the gateway serve (ready GGUF and
Hugging Face artifacts; only approved ones when Settings say so). A request for a model
that is not loaded starts its deployment (``python -m llmops_desktop.serving`` through
:func:`~llmops_desktop.serving.deploy.start_server`, with the options the Deployments page
would suggest, or the settings saved as that model's defaults) and waits until it answers;
a deployment is made to stop when the gateway's process ends, however it ends (see
:mod:`~llmops_desktop.gateway.children`). The gateway never loads a model itself, so a
model's crash or memory stays in its own process. A deployment idle for longer than
``idle_unload`` seconds is stopped; when a new one would not fit the memory budget, the
least recently used idle ones are stopped first. A deployment that dies is noted in the
audit log and started again by the next request for it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.errors import LLMOpsError

log = logging.getLogger("llmops_desktop.gateway")

STATES = ("unloaded", "loading", "loaded", "stopping")


class Unavailable(Exception):
    """A model that cannot answer now: HTTP ``status`` with a message for the client."""

    def __init__(self, status: int, message: str, retry_after: int | None = None,
                 code: str = "model_unavailable") -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after, self.code = status, message, retry_after, code


def memory_need(artifact: Artifact, options: Any) -> int:
    """Bytes a deployment of ``artifact`` with ``options`` will hold: the estimate the
    Deployments page uses when the model's shape is known, else its files plus a fifth."""
    md = artifact.metadata
    if md.get("parameters"):
        from llmops_desktop.quantize.targets import estimate

        quant = str(md.get("quantization") or md.get("dtype") or "F16")
        return int(estimate(md, quant, options.ctx or 4096)["memory_bytes"])
    return int(artifact.size_bytes * 1.2) + 64 * 2**20


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


@dataclass(eq=False)
class Slot:
    """One servable model and, when loaded, its deployment process."""

    artifact: Artifact
    options: Any  # ServeOptions
    need: int
    state: str = "unloaded"
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    deployment_id: int | None = None
    last_used: float = 0.0
    active: int = 0
    error: str | None = None
    starts: int = 0
    task: asyncio.Future[None] | None = None
    client: Any = None  # httpx AsyncClient bound to the deployment
    expected_exit: bool = False

    @property
    def name(self) -> str:
        return self.artifact.ref

    @property
    def names(self) -> tuple[str, str, str]:
        return (self.artifact.ref, self.artifact.model_name, str(self.artifact.id))

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


DEPLOYMENT_KEY_ENV = "LLMOPS_GATEWAY_DEPLOYMENT_KEY"


def _deployment_key() -> str:
    """The key the gateway's deployments require, so that nobody on this machine reaches
    them past the gateway: fresh per run, in memory and the children's environment only
    (a benchmark that measures a deployment directly sets it in the environment)."""
    import os

    return os.environ.get(DEPLOYMENT_KEY_ENV) or secrets.token_urlsafe(32)


@dataclass
class PoolOptions:
    idle_unload: float = 600.0  # seconds; 0: never
    memory_budget: int | None = None  # bytes; None: no budget
    load_timeout: float = 180.0


@dataclass
class DeploymentPool:
    catalog: Catalog
    options: PoolOptions = field(default_factory=PoolOptions)
    slots: dict[str, Slot] = field(default_factory=dict)  # by artifact ref
    internal_key: str = field(default_factory=lambda: _deployment_key(), repr=False)

    def __post_init__(self) -> None:
        self._place = asyncio.Lock()
        self._hardware: Any = None
        self._client_factory: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_change: Any = None  # called with states() whenever a model's state changes

    def states(self) -> list[dict[str, Any]]:
        """Each known model's state, as the window's Gateway panel shows it."""
        return [{"model": s.name, "state": s.state, "memory_bytes": s.need,
                 "pid": s.process.pid if s.process is not None and s.alive() else None,
                 "starts": s.starts, "error": s.error} for s in self.slots.values()]

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.states())
            except Exception:  # noqa: BLE001 - a listener never stops the pool
                log.exception("gateway state listener failed")

    # ---- which models -------------------------------------------------------------------

    def refresh(self) -> list[Slot]:
        """Re-read the catalog: the models the policy allows now, in catalog order."""
        from llmops_desktop.serving.config import ENGINE_FOR_KIND
        from llmops_desktop.share.governance import check_servable

        allowed = []
        for artifact in self.catalog.artifacts():
            if artifact.kind not in ENGINE_FOR_KIND or artifact.kind == "lora":
                continue
            if artifact.metadata.get("format") == "lora-gguf":
                continue
            try:
                check_servable(self.catalog, artifact)
            except LLMOpsError:
                continue
            allowed.append(artifact)
        keep, known = {a.ref for a in allowed}, set(self.slots)
        for ref in list(self.slots):
            if ref not in keep and self.slots[ref].state == "unloaded":
                del self.slots[ref]
        for artifact in allowed:
            if artifact.ref not in self.slots:
                options = self.options_for(artifact)
                self.slots[artifact.ref] = Slot(artifact, options, memory_need(artifact, options))
        if set(self.slots) != known:
            self._changed()
        return [self.slots[a.ref] for a in allowed if a.ref in self.slots]

    def options_for(self, artifact: Artifact) -> Any:
        """The options a deployment of ``artifact`` starts with: its saved defaults where it
        has some, else those the Deployments page suggests for this machine."""
        from llmops_desktop.serving.defaults import detect_hardware, suggest_options
        from llmops_desktop.serving.model_settings import with_saved_settings

        if self._hardware is None:
            self._hardware = detect_hardware()
        options, _ = suggest_options(artifact, self._hardware)
        options, _saved = with_saved_settings(self.catalog, artifact.id, options)
        return replace(options, host="127.0.0.1", port=0, name=artifact.ref)

    def find(self, model: str) -> Slot | None:
        """The slot a client's ``model`` names: NAME@VERSION, NAME (its latest version) or
        the artifact id."""
        for attempt in range(2):
            if model in self.slots:
                return self.slots[model]
            latest = [s for s in self.slots.values() if model in s.names]
            if latest:
                return max(latest, key=lambda s: s.artifact.version)
            if attempt == 0:
                self.refresh()
        return None

    def in_use(self) -> int:
        return sum(s.need for s in self.slots.values() if s.state != "unloaded")

    def loaded_summary(self) -> str:
        busy = [f"{s.name} ({_gib(s.need)}, {'busy' if s.active else 'idle'}, {s.state})"
                for s in self.slots.values() if s.state != "unloaded"]
        return ", ".join(busy) or "nothing"

    # ---- load, use, release ---------------------------------------------------------------

    async def acquire(self, slot: Slot) -> Slot:
        """Wait until ``slot``'s deployment answers (starting it if need be); count the
        caller as using it until :meth:`release`."""
        deadline = time.monotonic() + self.options.load_timeout
        while True:
            if slot.state == "loaded" and slot.alive():
                slot.active += 1
                slot.last_used = time.monotonic()
                return slot
            if slot.state == "loaded":
                await self._died(slot)
            task = slot.task
            if task is None or task.done():
                task = slot.task = asyncio.ensure_future(
                    self._load(slot) if slot.state == "unloaded" else self._settle(slot))
            left = deadline - time.monotonic()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=max(left, 0.01))
            except asyncio.TimeoutError:
                raise Unavailable(503, f"{slot.name} is still loading after "
                                       f"{self.options.load_timeout:.0f} s; try again shortly.",
                                  retry_after=10) from None
            if slot.state == "unloaded" and slot.error:
                raise Unavailable(503, f"{slot.name} could not be loaded: {slot.error}",
                                  retry_after=30, code="model_load_failed")

    def release(self, slot: Slot) -> None:
        slot.active -= 1
        slot.last_used = time.monotonic()

    async def _settle(self, slot: Slot) -> None:
        while slot.state == "stopping":
            await asyncio.sleep(0.05)

    async def _load(self, slot: Slot) -> None:
        async with self._place:
            slot.error = None
            slot.options = self.options_for(slot.artifact)  # saved defaults may have changed
            slot.need = memory_need(slot.artifact, slot.options)
            await self._make_room(slot)
            slot.state = "loading"
            self._changed()
        try:
            await asyncio.to_thread(self._start, slot)
        except BaseException as exc:
            slot.state, slot.process = "unloaded", None
            slot.error = str(exc) or type(exc).__name__
            self.catalog.audit("gateway_load_failed", artifact_id=slot.artifact.id,
                               details={"model": slot.name, "error": slot.error})
            self._changed()
            if not isinstance(exc, Exception):
                raise
            return
        slot.client = self._client_factory(slot.url) if self._client_factory else None
        slot.state, slot.last_used = "loaded", time.monotonic()
        self._changed()
        log.info("loaded %s at %s (pid %s)", slot.name, slot.url, slot.process.pid)

    async def _make_room(self, slot: Slot) -> None:
        budget = self.options.memory_budget
        if budget is None:
            return
        if slot.need > budget:
            raise Unavailable(503, f"{slot.name} needs about {_gib(slot.need)}, more than the "
                                   f"whole memory budget of {_gib(budget)}; it cannot be "
                                   "loaded here. Raise --memory-budget.",
                              code="model_too_large")
        while self.in_use() + slot.need > budget:
            idle = [s for s in self.slots.values()
                    if s.state == "loaded" and s.active == 0 and s is not slot]
            if not idle:
                raise Unavailable(503, f"Not enough memory for {slot.name} (about "
                                       f"{_gib(slot.need)} of a {_gib(budget)} budget) while "
                                       f"the loaded models are busy. Loaded now: "
                                       f"{self.loaded_summary()}. Try again shortly.",
                                  retry_after=5, code="memory_budget_full")
            victim = min(idle, key=lambda s: s.last_used)
            log.info("unloading %s (least recently used) to make room for %s",
                     victim.name, slot.name)
            await self.unload(victim, reason="memory budget")

    def _start(self, slot: Slot) -> None:
        """Start the deployment and wait for its ready line (in a worker thread)."""
        from llmops_desktop.gateway.children import start_deployment
        from llmops_desktop.procs import read_events
        from llmops_desktop.serving.deploy import DeployRequest, stop_server

        request = DeployRequest(slot.artifact.id, slot.artifact.ref, slot.options,
                                api_key=self.internal_key)
        process = start_deployment(request, self.catalog.home)
        slot.process, slot.expected_exit = process, False
        slot.starts += 1
        assert process.stdout is not None
        events = read_events(process.stdout)
        try:
            for event in events:
                if event.type == "result":
                    slot.url = event.data["url"]
                    slot.deployment_id = event.data.get("deployment_id")
                    break
                if event.type == "error":
                    raise RuntimeError(event.message)
            else:
                raise RuntimeError(f"the server process ended (exit code {process.wait()}); "
                                   "see logs/serving.log")
        except BaseException:
            stop_server(process, grace=2)
            raise
        threading.Thread(target=self._watch, args=(slot, process, events), daemon=True).start()

    def _watch(self, slot: Slot, process: subprocess.Popen[bytes], events: Any) -> None:
        for _ in events:  # drain its stdout until it closes
            pass
        process.wait()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._exited(slot, process)))

    async def _exited(self, slot: Slot, process: subprocess.Popen[bytes]) -> None:
        if slot.process is process and slot.state == "loaded" and not slot.expected_exit:
            await self._died(slot)

    async def confirm_dead(self, slot: Slot, wait: float = 2.0) -> bool:
        """After a connection error: whether ``slot``'s process has ended (waiting up to
        ``wait`` seconds for a killed one to go); if so it is noted as died."""
        process = slot.process
        if process is None:
            return True
        deadline = time.monotonic() + wait
        while process.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        if slot.process is process and slot.state == "loaded":
            await self._died(slot)
        return True

    async def _died(self, slot: Slot) -> None:
        """A deployment that ended on its own: note it, free its place; the next request
        starts it again."""
        process = slot.process
        code = process.poll() if process is not None else None
        slot.state, slot.process = "unloaded", None
        slot.error = None
        self._changed()
        await self._close_client(slot)
        log.warning("deployment of %s died (exit code %s); the next request restarts it",
                    slot.name, code)
        self.catalog.audit("gateway_deployment_died", artifact_id=slot.artifact.id,
                           details={"model": slot.name, "exit_code": code,
                                    "deployment_id": slot.deployment_id})
        if slot.deployment_id:
            from llmops_desktop.serving.store import reconcile

            reconcile(self.catalog)  # its row says failed, not running

    async def unload(self, slot: Slot, *, reason: str) -> None:
        """Stop ``slot``'s deployment and wait until its process (and memory) is gone."""
        from llmops_desktop.serving.deploy import stop_server

        if slot.state != "loaded":
            return
        slot.state, slot.expected_exit = "stopping", True
        self._changed()
        process = slot.process
        await self._close_client(slot)
        if process is not None:
            await asyncio.to_thread(stop_server, process)
        slot.state, slot.process, slot.url = "unloaded", None, ""
        self._changed()
        self.catalog.audit("gateway_unload", artifact_id=slot.artifact.id,
                           details={"model": slot.name, "reason": reason})

    async def _close_client(self, slot: Slot) -> None:
        client, slot.client = slot.client, None
        if client is not None:
            await client.aclose()

    # ---- housekeeping ---------------------------------------------------------------------

    async def run_idle_unloader(self) -> None:
        idle = self.options.idle_unload
        if not idle or idle <= 0:
            return
        while True:
            await asyncio.sleep(min(1.0, idle / 4))
            now = time.monotonic()
            for slot in list(self.slots.values()):
                if slot.state == "loaded" and slot.active == 0 and now - slot.last_used >= idle:
                    log.info("unloading %s: idle for %.0f s", slot.name, now - slot.last_used)
                    await self.unload(slot, reason=f"idle for {idle:g} s")

    def bind(self, loop: asyncio.AbstractEventLoop, client_factory: Any) -> None:
        self._loop = loop
        self._client_factory = client_factory

    async def shutdown(self) -> None:
        for slot in list(self.slots.values()):
            if slot.state == "loaded":
                await self.unload(slot, reason="gateway stopped")
            elif slot.process is not None:
                from llmops_desktop.serving.deploy import stop_server

                slot.expected_exit = True
                await asyncio.to_thread(stop_server, slot.process)
