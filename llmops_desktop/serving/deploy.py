"""A deployment request, and starting and stopping the server process that serves it.

:class:`DeployRequest` is what both front ends build: an artifact and a
:class:`~llmops_desktop.serving.config.ServeOptions` (every option ``llmops serve`` has,
so the window can set all of them), plus an API key that is never written anywhere.
:meth:`DeployRequest.check` refuses what the server would refuse, before a process
starts; :meth:`DeployRequest.to_argv` writes the child's command line from the options'
field metadata, the same metadata its argument parser is made from.
:func:`start_server` starts ``python -m llmops_desktop.serving`` in its own session (it
outlives the window if asked to); :func:`stop_server` stops one, ours or adopted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.fields import field_specs
from llmops_desktop.paths import Home
from llmops_desktop.procs import die_with_parent_preexec, terminate
from llmops_desktop.serving.config import (
    API_KEY_ENV,
    DEFAULT_HOST,
    GpuPlacement,
    ServeOptions,
    check_bind,
)
from llmops_desktop.serving.store import Deployment, is_server_process

STOP_GRACE_S = 5.0
SERVING_MODULE = "llmops_desktop.serving"


@dataclass(frozen=True)
class DeployRequest:
    """What the user asked to serve, and how."""

    artifact_id: int
    artifact_ref: str = ""  # how the artifact is shown (NAME@VERSION)
    options: ServeOptions = field(default_factory=ServeOptions)
    api_key: str = field(default="", repr=False)  # the child's environment, never its argv

    @classmethod
    def from_options(cls, artifact: int | str, options: ServeOptions | None = None, *,
                     artifact_ref: str = "", api_key: str = "",
                     **changes: Any) -> DeployRequest:
        """A request for ``artifact`` (an id, or a name or NAME@VERSION as ``llmops serve``
        takes) with ``options`` (default ``ServeOptions()``), overridden by ``changes``
        (option names: ``port=0``, ``lora="adapter@1"`` …)."""
        options = replace(options or ServeOptions(), **changes)
        text = str(artifact).strip()
        if text.isdigit():
            return cls(artifact_id=int(text), artifact_ref=artifact_ref, options=options,
                       api_key=api_key)
        return cls(artifact_id=0, artifact_ref=artifact_ref or text, options=options,
                   api_key=api_key)

    @property
    def artifact(self) -> str:
        """The artifact as the server's ``--artifact`` takes it: its id, else its name."""
        return str(self.artifact_id) if self.artifact_id else self.artifact_ref

    @classmethod
    def from_record(cls, d: Deployment) -> DeployRequest:
        """The request that would start ``d`` again (its API key is not kept anywhere)."""
        known = {f.name for f in fields(ServeOptions)}
        saved = {k: v for k, v in (d.settings or {}).items() if k in known}
        saved.update(engine=d.engine or saved.get("engine"), host=d.host or DEFAULT_HOST,
                     port=d.port or 0, name=d.name or saved.get("name"))
        return cls(artifact_id=d.artifact_id or 0, artifact_ref=d.artifact_ref,
                   options=ServeOptions(**saved))

    @property
    def name(self) -> str:
        """What the list shows before the server says its name."""
        return self.options.name or self.artifact_ref or f"#{self.artifact_id}"

    def check(self) -> DeployRequest:
        """Raise InvalidInputError for what the server would refuse: an option out of
        range, a malformed key, a non-loopback address without a key."""
        from llmops_desktop.netaddr import check_secret

        if not self.artifact:
            raise InvalidInputError("Say which artifact to serve (an id, a name or "
                                    "NAME@VERSION; see 'llmops list').")
        self.options.checked()
        check_secret(self.api_key, "API key")
        check_bind(self.options.host or DEFAULT_HOST, self.api_key or None)
        check_gpus(self.options.placement())
        return self

    def to_argv(self, home: Home) -> list[str]:
        """The server child's command line: a flag per option that has a value, written
        from the same field specifications its parser's flags are made from."""
        argv = [sys.executable, "-m", SERVING_MODULE, "--home", str(home.root),
                "--artifact", self.artifact]
        for s in field_specs(ServeOptions):
            value = getattr(self.options, s.name)
            if not s.exposed or value is None or (value == "" and s.optional):
                continue
            if s.type is bool:
                argv.append(s.option if value else "--no-" + s.option[2:])
            elif s.type is tuple:
                for item in value:
                    argv += [s.option, str(item)]
            else:
                argv += [s.option, str(value)]
        return argv

    def environment(self) -> dict[str, str]:
        """The child's environment: ours, its API key, and only its GPUs visible to CUDA
        (in the child alone: the window and the gateway keep theirs)."""
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop(API_KEY_ENV, None)
        if self.api_key:
            env[API_KEY_ENV] = self.api_key
        gpus = self.options.placement().visible_devices
        if gpus is not None:
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA numbers GPUs as nvidia-smi does
            env["CUDA_VISIBLE_DEVICES"] = gpus
        return env


def check_gpus(placement: GpuPlacement, gpu_count: Any = None) -> None:
    """Refuse GPU indexes this machine does not have, or that this process may not hand
    out (the gateway's ``--gpus`` limits what its deployments may pin). ``gpu_count``:
    a function giving the number of GPUs (default: NVML's count; the reason if none)."""
    if not placement.gpus:
        return
    allowed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if allowed is not None and all(p.strip().isdigit() for p in allowed.split(",")):
        outside = [i for i in placement.gpus if str(i) not in
                   {p.strip() for p in allowed.split(",")}]
        if outside:
            raise InvalidInputError(
                f"GPUs: {', '.join(map(str, outside))} is outside the GPUs this process may "
                f"use (CUDA_VISIBLE_DEVICES={allowed[:60]}, e.g. the gateway's --gpus); "
                "choose among those.")
    count, reason = (gpu_count or nvidia_gpu_count)()
    if count == 0:
        raise InvalidInputError(f"GPUs {placement.visible_devices}: no CUDA GPU found here. "
                                f"{reason} Leave GPUs empty to serve on the CPU.")
    placement.check_against(count)


def nvidia_gpu_count() -> tuple[int, str]:
    """How many NVIDIA GPUs NVML sees, and why none when it sees none."""
    from llmops_desktop.monitor.gpu import diagnose

    found = diagnose()
    return (len(found.devices), "") if found.available else (0, found.message)


def serving_log(home: Home) -> Path:
    """Where server children started by the window write their stderr."""
    return home.root / "logs" / "serving.log"


def start_server(request: DeployRequest, home: Home, *, die_with_parent: bool = False,
                 extra_env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Check ``request`` and start its server child: JSON lines on its stdout
    (:func:`llmops_desktop.procs.follow`), stderr appended to :func:`serving_log`. The
    child runs in its own session, so it may outlive the window and a terminal's hang-up;
    with ``die_with_parent`` it is sent SIGTERM when this process ends, however it ends
    (the gateway's deployments). ``extra_env`` is added to its environment."""
    request.check()
    log_path = serving_log(home)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**request.environment(), **(extra_env or {})}
    preexec = die_with_parent_preexec() if die_with_parent else None
    with open(log_path, "ab") as log:
        return subprocess.Popen(request.to_argv(home), stdout=subprocess.PIPE, stderr=log,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                preexec_fn=preexec)


def stop_server(target: subprocess.Popen[bytes] | int, *, wait: bool = True,
                grace: float = STOP_GRACE_S) -> bool:
    """SIGTERM a server (our child, or a pid from the catalog); with ``wait``, SIGKILL it
    if it has not stopped after ``grace`` seconds. Returns whether it is gone. A clean
    stop writes the request log and marks the deployment stopped first."""
    if isinstance(target, int):
        pid = target
        return terminate(pid, grace=grace if wait else None,
                         alive=lambda: is_server_process(pid))
    return terminate(target, grace=grace if wait else None)
