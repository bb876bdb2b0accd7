"""``llmops doctor``: can this machine run the app, and with which GPU support?

Reports the NVIDIA diagnosis (or each GPU with driver and CUDA versions and free
memory), whether torch sees CUDA, whether the llama.cpp build can offload to a GPU, and
the Python and app versions, the data home, the catalog's schema and free disk. The app
is usable without any GPU; it is not without a catalog it can open or a home it can
write to.
"""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import sys
import tempfile
from typing import Any

from llmops_desktop import __version__
from llmops_desktop.monitor.gpu import diagnose
from llmops_desktop.paths import Home

LOW_DISK_BYTES = 5 * 10**9


def torch_report() -> dict[str, Any]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
        return {"installed": False, "error": f"{type(exc).__name__}: {exc}"}
    out: dict[str, Any] = {"installed": True, "version": torch.__version__,
                           "cuda_build": torch.version.cuda}
    try:
        out["cuda_available"] = bool(torch.cuda.is_available())
        out["device_count"] = int(torch.cuda.device_count()) if out["cuda_available"] else 0
        out["devices"] = [torch.cuda.get_device_name(i) for i in range(out["device_count"])]
    except Exception as exc:  # noqa: BLE001 - a driver too old for this build, say
        out.update(cuda_available=False, device_count=0, devices=[],
                   error=f"{type(exc).__name__}: {exc}")
    if not out["cuda_available"] and "error" not in out:
        out["reason"] = ("this torch is a CPU-only build" if not torch.version.cuda else
                         "torch was built for CUDA but sees no usable GPU")
    return out


def llama_cpp_report() -> dict[str, Any]:
    try:
        import llama_cpp
    except Exception as exc:  # noqa: BLE001 - ImportError, or the shared library failing
        return {"installed": False, "error": f"{type(exc).__name__}: {exc}"}
    out: dict[str, Any] = {"installed": True, "version": getattr(llama_cpp, "__version__", "")}
    try:
        out["gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception as exc:  # noqa: BLE001
        out.update(gpu_offload=False, error=f"{type(exc).__name__}: {exc}")
    if not out["gpu_offload"] and "error" not in out:
        out["reason"] = ("this llama.cpp build runs on the CPU only; rebuild llama-cpp-python "
                         "with CMAKE_ARGS=\"-DGGML_CUDA=on\" for GPU offload")
    return out


def catalog_report(home: Home) -> dict[str, Any]:
    from llmops_desktop.catalog import Catalog
    from llmops_desktop.catalog.schema import SCHEMA_VERSION
    from llmops_desktop.errors import CatalogError

    out: dict[str, Any] = {"path": str(home.catalog_path), "app_schema": SCHEMA_VERSION}
    try:
        with Catalog.open(home) as catalog:
            out["schema"] = int(catalog.conn.execute("PRAGMA user_version").fetchone()[0])
            out["artifacts"] = int(catalog.conn.execute(
                "SELECT COUNT(*) FROM artifacts").fetchone()[0])
            out["journal_mode"] = catalog.conn.execute("PRAGMA journal_mode").fetchone()[0]
        out["ok"] = True
    except (CatalogError, sqlite3.Error) as exc:
        out.update(ok=False, error=str(exc))
    return out


def home_report(home: Home) -> dict[str, Any]:
    out: dict[str, Any] = {"path": str(home.root)}
    try:
        with tempfile.NamedTemporaryFile(dir=home.root, prefix=".doctor-"):
            pass
        out["writable"] = True
    except OSError as exc:
        out.update(writable=False, error=str(exc))
    usage = shutil.disk_usage(home.root)
    out.update(disk_free=usage.free, disk_total=usage.total,
               disk_low=usage.free < LOW_DISK_BYTES)
    return out


def doctor_report(home: Home) -> dict[str, Any]:
    """Everything ``llmops doctor`` prints; ``usable`` and ``problems`` sum it up."""
    gpu = diagnose()
    report: dict[str, Any] = {
        "app_version": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "platform": platform.platform()},
        "home": home_report(home),
        "catalog": catalog_report(home),
        "gpu": gpu.to_json(),
        "torch": torch_report(),
        "llama_cpp": llama_cpp_report(),
        "cpu_count": os.cpu_count(),
    }
    problems, notes = [], []
    if not report["home"]["writable"]:
        problems.append(f"The data home {home.root} is not writable: "
                        f"{report['home'].get('error')}. Point LLMOPS_HOME at a folder you "
                        "can write to.")
    if not report["catalog"]["ok"]:
        problems.append(report["catalog"]["error"])
    if report["home"]["disk_low"]:
        notes.append(f"Only {report['home']['disk_free'] / 1e9:.1f} GB free on the disk of "
                     f"{home.root}: downloads and quantizing need room.")
    if not gpu.available:
        notes.append(f"No NVIDIA GPU can be used ({gpu.reason}); everything else works on "
                     "the CPU.")
    report["usable"] = not problems
    report["problems"] = problems
    report["notes"] = notes
    return report
