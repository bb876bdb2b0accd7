"""Deployment settings chosen from the model and the machine, with the reason for each.

The deploy form starts from :func:`suggest_options`: the engine the artifact's kind needs,
the longest context that fits in memory (the model's own, at most 4096), one thread per
physical core (llama.cpp decodes fastest there; hyper-threads only contend), every layer on
the GPU when this llama.cpp build can offload and an NVIDIA GPU is present, and parallel
slots to match. Each choice comes with a sentence the form shows, so a user can see why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from llmops_desktop.catalog import Artifact
from llmops_desktop.quantize.targets import estimate
from llmops_desktop.serving.config import ENGINE_FOR_KIND, ServeOptions

DEFAULT_CTX = 4096  # the engines' own default when the model allows more
MIN_CTX = 512
MEMORY_SHARE = 0.8  # leave a fifth of the available memory to everything else


@dataclass(frozen=True)
class Hardware:
    physical_cores: int
    logical_cpus: int
    ram_available: int
    nvidia_gpus: int
    llama_gpu_offload: bool

    @property
    def cuda_offload(self) -> bool:
        return self.llama_gpu_offload and self.nvidia_gpus > 0


def _nvidia_gpu_count() -> int:
    """GPUs the NVIDIA driver exposes (no library load: the driver's /proc entries)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        return sum(1 for _ in gpus.iterdir())
    except OSError:
        return 0


# ggml's GPU back-ends, as shared libraries next to llama-cpp-python's own.
_GPU_BACKENDS = ("libggml-cuda", "libggml-hip", "libggml-vulkan", "libggml-metal",
                 "libggml-sycl")


@lru_cache(maxsize=1)
def _llama_gpu_offload() -> bool:
    """Whether the installed llama.cpp build has a GPU back-end, read from the libraries it
    ships, without loading them (the window keeps llama.cpp out of its process)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        lib = Path(folder) / "lib"
        if lib.is_dir() and any(p.name.startswith(_GPU_BACKENDS) for p in lib.iterdir()):
            return True
    return False


def detect_hardware() -> Hardware:
    """What this machine offers (cheap: no GPU library is loaded)."""
    import psutil

    logical = os.cpu_count() or 1
    return Hardware(physical_cores=psutil.cpu_count(logical=False) or logical,
                    logical_cpus=logical, ram_available=psutil.virtual_memory().available,
                    nvidia_gpus=_nvidia_gpu_count(), llama_gpu_offload=_llama_gpu_offload())


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def suggest_options(artifact: Artifact, hw: Hardware) -> tuple[ServeOptions, list[str]]:
    """Options for serving ``artifact`` on ``hw``, and one reason per choice."""
    md = artifact.metadata
    engine = ENGINE_FOR_KIND.get(artifact.kind, "llama.cpp")
    reasons = [f"{engine}: the engine for a {artifact.kind} artifact"]
    trained = int(md.get("context_length") or 0)
    ctx = min(trained or DEFAULT_CTX, DEFAULT_CTX)
    budget = hw.ram_available * MEMORY_SHARE
    if md.get("parameters"):
        quant = str(md.get("quantization") or md.get("dtype") or "F16")
        while ctx > MIN_CTX and estimate(md, quant, ctx)["memory_bytes"] > budget:
            ctx //= 2
        need = estimate(md, quant, ctx)["memory_bytes"]
        if ctx < min(trained or DEFAULT_CTX, DEFAULT_CTX):
            reasons.append(f"context {ctx}: a longer one would not fit in the "
                           f"{_gib(hw.ram_available)} of memory free now")
        else:
            reasons.append(f"context {ctx}: the model's own" if trained and trained <= ctx else
                           f"context {ctx} of the model's {trained or 'unknown'}; about "
                           f"{_gib(need)} of memory")
    else:
        reasons.append(f"context {ctx}")
    threads = max(1, hw.physical_cores)
    gpu_layers, parallel = 0, 1
    if engine == "llama.cpp":
        reasons.append(f"{threads} thread{'s' if threads != 1 else ''}: one per physical core")
        if hw.cuda_offload:
            gpu_layers, parallel = -1, 4
            reasons.append("all layers on the GPU; 4 requests at once")
        elif hw.nvidia_gpus:
            reasons.append("CPU only: this llama.cpp build cannot offload to the GPU")
        else:
            reasons.append("CPU only: no NVIDIA GPU found")
    else:
        reasons.append("device auto: CUDA when torch sees a GPU" if hw.nvidia_gpus
                       else "on the CPU: no NVIDIA GPU found")
    return ServeOptions(engine=engine, ctx=ctx, threads=threads if engine == "llama.cpp" else None,
                        gpu_layers=gpu_layers, parallel=parallel), reasons
