"""A deployment's settings: typed fields with a description, reused for CLI flags and forms.

:class:`ServeOptions` is what the user chooses (``llmops serve`` flags, the GUI's deploy
form); :class:`DeploymentConfig` is those options resolved against one catalog artifact
(engine picked by the artifact's kind, the name clients send as ``model``). The API key
is deliberately not a field: it never lands in the catalog, a log or a command line.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import Artifact, ArtifactState
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.fields import add_arguments, field_specs, spec
from llmops_desktop.quantize.targets import BNB_MODES
from llmops_desktop.serving.engines.base import EngineSettings
from llmops_desktop.serving.templates import resolve_chat_template

DEFAULT_HOST = "127.0.0.1"
API_KEY_ENV = "LLMOPS_API_KEY"  # how a server child gets its key (never a command line)
DEFAULT_PORT = 8000
ENGINE_FOR_KIND = {"gguf": "llama.cpp", "hf": "torch", "lora": "torch"}


def option(default: Any, description: str, *, label: str, choices: tuple[str, ...] = (),
           minimum: int | None = None, maximum: int | None = None, metavar: str | None = None,
           ) -> Any:
    """A deployment setting: the shared field specification (``llmops_desktop.fields``)."""
    return spec(default, description, label=label, choices=choices, minimum=minimum,
                maximum=maximum, metavar=metavar, group="Serving")


def model_slug(ref: str) -> str:
    """The API model id for a catalog name: 'Gemma 3 270M@1' -> 'gemma-3-270m@1' (no spaces,
    lower case; clients may still send the catalog's own form, see ``aliases``)."""
    return re.sub(r"[^a-z0-9._@:+/-]+", "-", ref.strip().lower()).strip("-") or ref


@dataclass(frozen=True)
class ServeOptions:
    engine: str | None = option(
        None, "Inference engine: llama.cpp serves GGUF files, torch serves Hugging Face "
        "folders (default: chosen by the artifact's kind).", label="Engine",
        choices=("llama.cpp", "torch"))
    host: str = option(
        DEFAULT_HOST, "Address to listen on. Anything but a loopback address (127.0.0.1) makes "
        "the model reachable from the network and needs an API key.", label="Address")
    port: int = option(DEFAULT_PORT, f"TCP port (default {DEFAULT_PORT}; 0 picks a free one).",
                       label="Port", minimum=0, maximum=65535)
    name: str | None = option(
        None, "Deployment name, which clients send as 'model' (default: the artifact's "
        "NAME@VERSION).", label="Name")
    ctx: int | None = option(
        None, "Context length in tokens, prompt and completion together (default: the "
        "model's own, at most 4096).", label="Context length", minimum=16, metavar="TOKENS")
    threads: int | None = option(
        None, "CPU threads for generation (default: llama.cpp half the CPUs, torch its own).",
        label="Threads", minimum=1, maximum=1024, metavar="N")
    gpu_layers: int = option(
        0, "llama.cpp: layers to offload to the GPU (-1: all; 0: CPU only).",
        label="GPU layers", minimum=-1, metavar="N")
    parallel: int = option(
        1, "Requests the engine decodes together, batched at every step (llama.cpp: "
        "sequences of one context; torch: rows of one KV cache).", label="Parallel requests",
        minimum=1, maximum=64, metavar="N")
    max_queue: int = option(
        16, "Requests that may wait for a free slot; beyond that the server answers 503 "
        "with Retry-After.", label="Queue length", minimum=0, maximum=100_000, metavar="N")
    batch: int | None = option(
        None, "llama.cpp: prompt tokens evaluated per batch (n_batch; default 512).",
        label="Batch size", minimum=1, metavar="TOKENS")
    device: str = option(
        "auto", "torch: cpu, cuda, cuda:N, or auto (CUDA when torch sees a GPU).",
        label="Device")
    quantization: str | None = option(
        None, "torch: load the weights in bitsandbytes 4-bit (nf4, fp4) or 8-bit (int8).",
        label="Load quantized", choices=BNB_MODES)
    lora: str | None = option(
        None, "llama.cpp: a LoRA GGUF artifact (made by 'llmops lora-gguf') applied on top "
        "of the served GGUF, which must be its base model's.", label="LoRA adapter",
        metavar="ARTIFACT")
    chat_template: str | None = option(
        None, "Chat template for a model without one (or to replace its own): a llama.cpp "
        "built-in name (chatml, gemma, llama3, llama2, mistral, phi3, zephyr, vicuna, "
        "deepseek2) or a Jinja file.", label="Chat template", metavar="NAME|FILE")

    @classmethod
    def field_info(cls) -> list[dict[str, Any]]:
        return [s.info() for s in field_specs(cls)]

    def checked(self) -> ServeOptions:
        """Raise InvalidInputError on a value out of range (the GUI's forms call this too)."""
        for info in self.field_info():
            value = getattr(self, info["name"])
            if value is None:
                continue
            if info["choices"] and value not in info["choices"]:
                raise InvalidInputError(f"{info['label']}: one of "
                                        f"{', '.join(info['choices'])}, not {value!r}.")
            if isinstance(value, int) and not isinstance(value, bool):
                low, high = info["minimum"], info["maximum"]
                if (low is not None and value < low) or (high is not None and value > high):
                    raise InvalidInputError(f"{info['label']}: {value} is outside "
                                            f"{low}..{high if high is not None else ''}.")
        return self


def check_bind(host: str, api_key: str | None) -> None:
    from llmops_desktop.netaddr import is_loopback

    if not api_key and not is_loopback(host):
        raise InvalidInputError(
            f"Refusing to serve on {host} without an API key: anyone who can reach this "
            f"machine could use the model. Set {API_KEY_ENV} (or pass --api-key-file FILE), or "
            "bind to 127.0.0.1.")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--host``, ``--port``, ``--ctx``, … from :class:`ServeOptions`."""
    add_arguments(parser, ServeOptions)


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """The flags :func:`add_serve_arguments` added, over the defaults (None: not given)."""
    given = {i["name"]: getattr(args, i["name"]) for i in ServeOptions.field_info()
             if getattr(args, i["name"], None) is not None}
    return ServeOptions(**given).checked()


@dataclass(frozen=True)
class DeploymentConfig:
    """What one server process serves, and how."""

    name: str
    artifact_id: int
    artifact_ref: str
    model_name: str
    model_path: Path
    options: ServeOptions
    id: int = 0  # the deployment's row in the catalog, once it has one
    lora_path: Path | None = None  # llama.cpp: the LoRA GGUF on top
    base_path: Path | None = None  # torch serving an adapter: its base model's folder

    @property
    def engine(self) -> str:
        return self.options.engine or ""

    @property
    def aliases(self) -> frozenset[str]:
        """Every ``model`` value a client may send for this deployment."""
        return frozenset({self.name, self.artifact_ref, self.model_name,
                          str(self.artifact_id)})

    @classmethod
    def for_artifact(cls, artifact: Artifact, options: ServeOptions,
                     catalog: Any = None) -> DeploymentConfig:
        """Check ``options`` against ``artifact``; with ``catalog``, also find what an adapter
        needs (the base model of a LoRA adapter, the ``--lora`` GGUF)."""
        options = options.checked()
        if artifact.state != ArtifactState.READY:
            raise InvalidInputError(f"{artifact.ref} is {artifact.state.value}, not ready; "
                                    "only a ready artifact can be served.")
        if artifact.metadata.get("format") == "lora-gguf":
            raise InvalidInputError(
                f"{artifact.ref} is a LoRA adapter as GGUF: serve its base model's GGUF with "
                f"'--lora {artifact.ref}'.")
        engine = options.engine or ENGINE_FOR_KIND.get(artifact.kind)
        if engine is None:
            raise InvalidInputError(f"{artifact.ref} is a {artifact.kind!r} artifact, which "
                                    "no engine serves; pass --engine.")
        if artifact.kind == "lora" and engine != "torch":
            raise InvalidInputError(
                f"{artifact.ref} is a LoRA adapter: serve it with --engine torch, or make a "
                f"LoRA GGUF ('llmops lora-gguf {artifact.ref}') and serve the base model's GGUF "
                "with --lora, or merge it ('llmops merge').")
        lora_path = base_path = None
        if artifact.kind == "lora" and catalog is not None:
            base_path = _adapter_base(catalog, artifact)
        if options.lora:
            if engine != "llama.cpp":
                raise InvalidInputError("--lora applies a LoRA GGUF with the llama.cpp engine; "
                                        "the torch engine serves an adapter artifact directly.")
            if catalog is None:
                raise InvalidInputError("--lora needs the catalog to find the adapter.")
            lora = catalog.resolve(options.lora)
            if lora.metadata.get("format") != "lora-gguf":
                raise InvalidInputError(f"{lora.ref} is not a LoRA GGUF; make one with "
                                        f"'llmops lora-gguf ADAPTER'.")
            lora_path = Path(lora.path)
        expected = {"llama.cpp": "gguf", "torch": "hf"}.get(engine)
        if artifact.kind == "lora" and engine == "torch":
            expected = "lora"
        if expected and artifact.kind != expected:
            hint = ("quantize it to GGUF first ('llmops quantize ... --to Q4_K_M') or use "
                    "--engine torch" if engine == "llama.cpp" else "use --engine llama.cpp")
            raise InvalidInputError(f"The {engine} engine serves {expected} artifacts and "
                                    f"{artifact.ref} is {artifact.kind}: {hint}.")
        resolve_chat_template(options.chat_template)  # a bad name or file fails here
        name = (options.name or model_slug(artifact.ref)).strip()
        if not name:
            raise InvalidInputError("A deployment name cannot be empty.")
        return cls(name=name, artifact_id=artifact.id, artifact_ref=artifact.ref,
                   model_name=artifact.model_name, model_path=Path(artifact.path),
                   options=replace(options, engine=engine, name=name), lora_path=lora_path,
                   base_path=base_path)

    def engine_settings(self) -> EngineSettings:
        o = self.options
        return EngineSettings(ctx=o.ctx, threads=o.threads, gpu_layers=o.gpu_layers,
                              parallel=o.parallel, device=o.device,
                              quantization=o.quantization, batch=o.batch,
                              lora_path=str(self.lora_path) if self.lora_path else None,
                              base_path=str(self.base_path) if self.base_path else None,
                              chat_template=resolve_chat_template(o.chat_template))

    def settings_json(self) -> dict[str, Any]:
        """The options as the deployment record keeps them (no secrets among them)."""
        return asdict(self.options)


def _adapter_base(catalog: Any, adapter: Artifact) -> Path:
    """The base model a LoRA adapter artifact was trained on: its parent in the catalog."""
    parent = catalog.artifact(adapter.parent_id) if adapter.parent_id else None
    if parent is None or parent.kind != "hf" or parent.state != ArtifactState.READY:
        raise InvalidInputError(
            f"{adapter.ref} is a LoRA adapter whose base model is not in the catalog as a "
            "ready Hugging Face artifact. Import the base, or merge the adapter elsewhere.")
    return Path(parent.path)
