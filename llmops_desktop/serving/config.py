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


ENGINE_SERVES = {"llama.cpp": "gguf", "torch": "hf", "vllm": "hf"}  # the kind each serves
MAX_GPUS = 64  # more GPU indexes than any machine has: a hostile list stops here


def option(default: Any, description: str, *, label: str, choices: tuple[str, ...] = (),
           minimum: float | None = None, maximum: float | None = None,
           metavar: str | None = None, group: str = "Serving") -> Any:
    """A deployment setting: the shared field specification (``llmops_desktop.fields``)."""
    return spec(default, description, label=label, choices=choices, minimum=minimum,
                maximum=maximum, metavar=metavar, group=group)


def model_slug(ref: str) -> str:
    """The API model id for a catalog name: 'Gemma 3 270M@1' -> 'gemma-3-270m@1' (no spaces,
    lower case; clients may still send the catalog's own form, see ``aliases``)."""
    return re.sub(r"[^a-z0-9._@:+/-]+", "-", ref.strip().lower()).strip("-") or ref


@dataclass(frozen=True)
class ServeOptions:
    engine: str | None = option(
        None, "Inference engine: llama.cpp serves GGUF files, torch serves Hugging Face "
        "folders, vllm serves Hugging Face folders with vLLM's own server on NVIDIA GPUs "
        "(optional: pip install 'llmops-desktop[vllm]'; default: chosen by the artifact's "
        "kind).", label="Engine", choices=("llama.cpp", "torch", "vllm"))
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
    gpus: str | None = option(
        None, "GPUs this deployment may use, by index as nvidia-smi numbers them (0,1); "
        "only its process sees them (CUDA_VISIBLE_DEVICES). Default: every GPU.",
        label="GPUs", metavar="0,1", group="Placement")
    tensor_split: str | None = option(
        None, "llama.cpp: the share of the offloaded layers each chosen GPU takes, one "
        "number per GPU in --gpus (3,1: three quarters on the first). Default: by free "
        "memory.", label="Tensor split", metavar="3,1", group="Placement")
    split_mode: str | None = option(
        None, "llama.cpp: split the model across GPUs by layer (default) or by row "
        "(tensor parallel; needs fast links between the GPUs).", label="Split mode",
        choices=("layer", "row"), group="Placement")
    device_map: str | None = option(
        None, "torch: place the layers across the chosen GPUs with accelerate: auto (fill "
        "them in order), balanced (even), sequential. Default: the whole model on --device.",
        label="Device map", choices=("auto", "balanced", "sequential"), group="Placement")
    max_memory: str | None = option(
        None, "torch with a device map: GiB of each chosen GPU the weights may take, one "
        "number per GPU in --gpus (20,20); the rest stays free for the KV cache.",
        label="Memory per GPU (GiB)", metavar="GIB,GIB", group="Placement")
    gpu_memory_utilization: float | None = option(
        None, "vllm: the share of each GPU's memory vLLM may take for weights and KV cache "
        "(default: vLLM's 0.9).", label="GPU memory share", minimum=0.05, maximum=1.0,
        metavar="0.9", group="Placement")
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
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                low, high = info["minimum"], info["maximum"]
                if (low is not None and value < low) or (high is not None and value > high):
                    raise InvalidInputError(f"{info['label']}: {value} is outside "
                                            f"{low}..{high if high is not None else ''}.")
        self.placement()
        return self

    def placement(self) -> GpuPlacement:
        """The GPU options checked against each other (InvalidInputError naming the field)."""
        return GpuPlacement.parse(self.gpus, self.tensor_split, self.max_memory,
                                  split_mode=self.split_mode, device_map=self.device_map)


@dataclass(frozen=True)
class GpuPlacement:
    """Which GPUs a deployment uses and how its model is spread over them."""

    gpus: tuple[int, ...] = ()  # physical indexes (nvidia-smi's); () every GPU
    tensor_split: tuple[float, ...] = ()  # llama.cpp: a share per chosen GPU
    max_memory_gib: tuple[float, ...] = ()  # torch device map: GiB per chosen GPU
    split_mode: str | None = None
    device_map: str | None = None

    @classmethod
    def parse(cls, gpus: str | None, tensor_split: str | None = None,
              max_memory: str | None = None, *, split_mode: str | None = None,
              device_map: str | None = None) -> GpuPlacement:
        indexes = tuple(int(x) for x in _numbers(gpus, "GPUs", whole=True))
        if len(set(indexes)) != len(indexes):
            raise InvalidInputError(f"GPUs: {gpus!r} names a GPU twice; give each index once.")
        shares = _numbers(tensor_split, "Tensor split")
        memory = _numbers(max_memory, "Memory per GPU (GiB)")
        for label, values in (("Tensor split", shares), ("Memory per GPU (GiB)", memory)):
            if values and not indexes:
                raise InvalidInputError(f"{label} gives a number per GPU: choose the GPUs "
                                        "too (--gpus 0,1).")
            if values and len(values) != len(indexes):
                raise InvalidInputError(f"{label}: {len(values)} number(s) for "
                                        f"{len(indexes)} GPU(s) ({gpus}); give one per GPU.")
        if shares and not any(shares):
            raise InvalidInputError("Tensor split: at least one GPU needs a share above 0.")
        if memory and not all(memory):
            raise InvalidInputError("Memory per GPU (GiB): every chosen GPU needs more than "
                                    "0 GiB (leave a GPU out of --gpus instead).")
        return cls(indexes, shares, memory, split_mode, device_map)

    @property
    def visible_devices(self) -> str | None:
        """CUDA_VISIBLE_DEVICES for the deployment's process (None: leave it as it is)."""
        return ",".join(str(i) for i in self.gpus) if self.gpus else None

    def shares(self, count: int) -> list[tuple[int, float]]:
        """(GPU index, share of the model) for a model spread over the chosen GPUs (or the
        ``count`` GPUs there are): by the tensor split, else by memory per GPU, else even."""
        indexes = list(self.gpus) or list(range(count))
        weights = list(self.tensor_split or self.max_memory_gib) or [1.0] * len(indexes)
        total = sum(weights) or 1.0
        return [(i, w / total) for i, w in zip(indexes, weights, strict=True)]

    def check_against(self, count: int) -> None:
        """Refuse an index this machine does not have (``count`` GPUs)."""
        missing = [i for i in self.gpus if i >= count]
        if missing:
            have = f"GPUs 0..{count - 1}" if count else "no NVIDIA GPU"
            raise InvalidInputError(f"GPUs: this machine has {have}; there is no GPU "
                                    f"{', '.join(map(str, missing))}. See 'nvidia-smi'.")


def _numbers(text: str | None, label: str, *, whole: bool = False) -> tuple[float, ...]:
    """'3, 1' -> (3.0, 1.0): non-negative finite numbers (whole ones for indexes)."""
    import math

    if text is None or not str(text).strip():
        return ()
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) > MAX_GPUS:
        raise InvalidInputError(f"{label}: at most {MAX_GPUS} numbers.")
    out = []
    for part in parts:
        try:
            if whole and not part.isdigit():  # "1.5", "-1", "0x1", "" are not indexes
                raise ValueError
            value = float(part[:32])
        except ValueError:
            what = "GPU indexes such as 0 or 0,1" if whole else "numbers such as 3,1"
            raise InvalidInputError(f"{label}: {str(text)[:60]!r} is not {what}.") from None
        if not math.isfinite(value) or value < 0 or (whole and value >= MAX_GPUS):
            raise InvalidInputError(f"{label}: {part[:32]!r} is out of range (0 or more"
                                    f"{f', below {MAX_GPUS}' if whole else ''}).")
        out.append(value)
    return tuple(out)


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
        expected = ENGINE_SERVES.get(engine)
        if artifact.kind == "lora" and engine == "torch":
            expected = "lora"
        if expected and artifact.kind != expected:
            hint = ("quantize it to GGUF first ('llmops quantize ... --to Q4_K_M') or use "
                    "--engine torch" if engine == "llama.cpp" else "use --engine llama.cpp")
            raise InvalidInputError(f"The {engine} engine serves {expected} artifacts and "
                                    f"{artifact.ref} is {artifact.kind}: {hint}.")
        options = _placement_for(engine, options)
        if engine == "vllm":
            from llmops_desktop.serving.engines.vllm_engine import require_vllm

            require_vllm()  # vLLM importable and a CUDA GPU, else the reason
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
        place = o.placement()
        return EngineSettings(ctx=o.ctx, threads=o.threads, gpu_layers=o.gpu_layers,
                              parallel=o.parallel, device=o.device,
                              quantization=o.quantization, batch=o.batch,
                              lora_path=str(self.lora_path) if self.lora_path else None,
                              base_path=str(self.base_path) if self.base_path else None,
                              chat_template=resolve_chat_template(o.chat_template),
                              gpus=place.visible_devices,
                              tensor_split=place.tensor_split or None,
                              split_mode=place.split_mode,
                              device_map=place.device_map,
                              max_memory_gib=place.max_memory_gib or None)

    def settings_json(self) -> dict[str, Any]:
        """The options as the deployment record keeps them (no secrets among them)."""
        return asdict(self.options)


_PLACEMENT_ENGINES = {"tensor_split": ("llama.cpp",), "split_mode": ("llama.cpp",),
                      "device_map": ("torch",), "max_memory": ("torch",),
                      "gpu_memory_utilization": ("vllm",)}


def _placement_for(engine: str, options: ServeOptions) -> ServeOptions:
    """Refuse a placement option the engine does not use (it would silently do nothing);
    memory per GPU without a device map means accelerate's ``auto``."""
    for name, engines in _PLACEMENT_ENGINES.items():
        if getattr(options, name) is not None and engine not in engines:
            label = next(i["label"] for i in ServeOptions.field_info() if i["name"] == name)
            raise InvalidInputError(f"{label} applies to the {' and '.join(engines)} engine, "
                                    f"not {engine}; leave it empty.")
    if options.tensor_split and options.gpu_layers == 0:
        raise InvalidInputError("Tensor split spreads the layers offloaded to the GPUs, and "
                                "GPU layers is 0 (CPU only): set GPU layers (-1: all).")
    if options.max_memory and not options.device_map:
        options = replace(options, device_map="auto")
    return options


def _adapter_base(catalog: Any, adapter: Artifact) -> Path:
    """The base model a LoRA adapter artifact was trained on: its parent in the catalog."""
    parent = catalog.artifact(adapter.parent_id) if adapter.parent_id else None
    if parent is None or parent.kind != "hf" or parent.state != ArtifactState.READY:
        raise InvalidInputError(
            f"{adapter.ref} is a LoRA adapter whose base model is not in the catalog as a "
            "ready Hugging Face artifact. Import the base, or merge the adapter elsewhere.")
    return Path(parent.path)
