"""NVIDIA GPUs through NVML (nvidia-ml-py's ``pynvml``): a diagnosis, and cheap readings.

:func:`diagnose` says whether NVML works here and, if not, why, in words a user can act
on: the Python binding missing, the driver library not loadable, the kernel driver not
running, permission denied, a driver/library version mismatch, or no device at all.
:class:`NvmlReader` reads each GPU's utilisation, memory, temperature, power and SM clock
(calls that cost microseconds, fine at 10 Hz) and, less often, the processes on it.
A call a GPU does not support is remembered and not made again.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_init_lock = threading.Lock()  # nvmlInit/nvmlShutdown are counted by NVML itself


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    uuid: str
    memory_total: int
    memory_free: int
    error: str = ""


@dataclass(frozen=True)
class GpuDiagnosis:
    """Whether NVML can be used; ``reason`` (a code) and ``message`` say why not."""

    available: bool
    reason: str  # "ok", "no-binding", "no-library", "driver-not-loaded", "no-permission", ...
    message: str
    driver_version: str = ""
    cuda_version: str = ""
    nvml_version: str = ""
    devices: tuple[GpuDevice, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["devices"] = [asdict(d) for d in self.devices]
        return data


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None  # None: NVML could not say (e.g. under MIG or in a container)
    owner: str = ""  # "job #3 finetune", "deployment demo", "" for processes not ours


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    util_pct: float = math.nan
    mem_used: float = math.nan
    mem_total: float = math.nan
    temp_c: float = math.nan
    power_w: float = math.nan
    power_limit_w: float = math.nan
    sm_clock_mhz: float = math.nan
    processes: tuple[GpuProcess, ...] | None = None  # None: not read this time
    error: str = ""

    @property
    def mem_pct(self) -> float:
        if not self.mem_total or math.isnan(self.mem_total):
            return math.nan
        return 100.0 * self.mem_used / self.mem_total

    def to_json(self) -> dict[str, Any]:
        data = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}
        data["mem_pct"] = None if math.isnan(self.mem_pct) else self.mem_pct
        return data


def _import_pynvml() -> Any:
    import pynvml

    return pynvml


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _failure(pynvml: Any, exc: Exception) -> tuple[str, str]:
    """(reason code, message) for an NVML error raised by nvmlInit."""
    value = getattr(exc, "value", None)
    if value == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND:
        return ("no-library", "The NVIDIA driver library (libnvidia-ml.so.1) could not be "
                "loaded: no NVIDIA driver is installed, or it is not on the library path. "
                "Install the NVIDIA driver; in a container, start it with GPU access (the "
                "NVIDIA Container Toolkit, 'docker run --gpus all').")
    if value == pynvml.NVML_ERROR_DRIVER_NOT_LOADED:
        return ("driver-not-loaded", "The NVIDIA driver library is installed but the kernel "
                "driver is not running. Load it ('sudo modprobe nvidia') or reboot after a "
                "driver installation; 'nvidia-smi' should then list the GPUs.")
    if value == pynvml.NVML_ERROR_NO_PERMISSION:
        return ("no-permission", "Permission denied opening the NVIDIA devices (/dev/nvidia*). "
                "Ask an administrator to add your user to the group that owns them "
                "(often 'video'), then log in again.")
    if value == getattr(pynvml, "NVML_ERROR_LIB_RM_VERSION_MISMATCH", -1):
        return ("version-mismatch", "The NVIDIA driver library and the kernel driver are of "
                "different versions (a driver update without a reboot). Reboot the machine.")
    if value == getattr(pynvml, "NVML_ERROR_INSUFFICIENT_POWER", -1):
        return ("insufficient-power", "A GPU is not receiving enough power: check its power "
                "cables.")
    return ("nvml-error", f"NVML could not start: {exc}. 'nvidia-smi' may say more.")


class Nvml:
    """An initialised NVML session (nvmlInit ... nvmlShutdown, reference-counted)."""

    def __init__(self) -> None:
        self.pynvml = _import_pynvml()
        with _init_lock:
            self.pynvml.nvmlInit()
        self._open = True

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        with _init_lock:
            try:
                self.pynvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - already shut down
                pass

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def versions(self) -> tuple[str, str, str]:
        """(driver, CUDA, NVML) versions, each "" when NVML cannot say."""
        n = self.pynvml
        driver = cuda = nvml = ""
        try:
            driver = _text(n.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001
            pass
        try:
            v = int(n.nvmlSystemGetCudaDriverVersion_v2())
            cuda = f"{v // 1000}.{(v % 1000) // 10}"
        except Exception:  # noqa: BLE001
            pass
        try:
            nvml = _text(n.nvmlSystemGetNVMLVersion())
        except Exception:  # noqa: BLE001
            pass
        return driver, cuda, nvml

    def devices(self) -> list[GpuDevice]:
        n = self.pynvml
        out = []
        for i in range(n.nvmlDeviceGetCount()):
            try:
                h = n.nvmlDeviceGetHandleByIndex(i)
                mem = n.nvmlDeviceGetMemoryInfo(h)
                out.append(GpuDevice(i, _text(n.nvmlDeviceGetName(h)),
                                     _text(n.nvmlDeviceGetUUID(h)), int(mem.total),
                                     int(mem.free)))
            except n.NVMLError as exc:
                out.append(GpuDevice(i, "", "", 0, 0, error=f"GPU {i} cannot be read: {exc}"))
        return out


def diagnose() -> GpuDiagnosis:
    """Whether NVIDIA GPUs can be monitored here, and the devices if so."""
    try:
        pynvml = _import_pynvml()
    except ImportError as exc:
        return GpuDiagnosis(False, "no-binding", "The NVML Python binding is not installed "
                            f"({exc}). Install it with 'pip install nvidia-ml-py'.")
    try:
        nvml = Nvml()
    except pynvml.NVMLError as exc:
        reason, message = _failure(pynvml, exc)
        return GpuDiagnosis(False, reason, message)
    except OSError as exc:  # a broken library file, say
        return GpuDiagnosis(False, "no-library", f"The NVIDIA driver library could not be "
                            f"loaded: {exc}. Reinstall the NVIDIA driver.")
    with nvml:
        driver, cuda, version = nvml.versions()
        try:
            devices = nvml.devices()
        except pynvml.NVMLError as exc:
            reason, message = _failure(pynvml, exc)
            return GpuDiagnosis(False, reason, message, driver, cuda, version)
    if not devices:
        return GpuDiagnosis(False, "no-device", f"The NVIDIA driver {driver or ''} is running "
                            "but sees no GPU. Check that the card is seated and enabled "
                            "('nvidia-smi'), and in a container that GPUs were passed in "
                            "(CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES).".replace("  ", " "),
                            driver, cuda, version)
    working = [d for d in devices if not d.error]
    if not working:
        return GpuDiagnosis(False, "device-error", "; ".join(d.error for d in devices), driver,
                            cuda, version, tuple(devices))
    return GpuDiagnosis(True, "ok", f"{len(working)} NVIDIA GPU(s), driver {driver}",
                        driver, cuda, version, tuple(devices))


@dataclass
class _Device:
    index: int
    handle: Any
    name: str
    unsupported: set[str] = field(default_factory=set)


class NvmlReader:
    """Reads every GPU, once per call; keeps NVML open between calls. Not thread-safe:
    use from the sampler thread only."""

    def __init__(self) -> None:
        self.nvml = Nvml()
        n = self.nvml.pynvml
        self._devices = []
        for i in range(n.nvmlDeviceGetCount()):
            h = n.nvmlDeviceGetHandleByIndex(i)
            self._devices.append(_Device(i, h, _text(n.nvmlDeviceGetName(h))))
        self._power_limit: dict[int, float] = {}

    def close(self) -> None:
        self.nvml.close()

    def _call(self, dev: _Device, what: str, fn: Any, *args: Any) -> Any:
        if what in dev.unsupported:
            return None
        n = self.nvml.pynvml
        try:
            return fn(dev.handle, *args)
        except n.NVMLError as exc:
            if getattr(exc, "value", None) in (n.NVML_ERROR_NOT_SUPPORTED,
                                               n.NVML_ERROR_NO_PERMISSION):
                dev.unsupported.add(what)
                return None
            raise

    def read(self, *, processes: bool = False) -> list[GpuReading]:
        """One reading per GPU; ``processes`` also lists the compute processes (slower)."""
        n = self.nvml.pynvml
        out = []
        for dev in self._devices:
            try:
                out.append(self._read_one(n, dev, processes))
            except n.NVMLError as exc:
                out.append(GpuReading(dev.index, dev.name, error=f"GPU {dev.index} cannot be "
                                      f"read: {exc}"))
        return out

    def _read_one(self, n: Any, dev: _Device, processes: bool) -> GpuReading:
        util = self._call(dev, "util", n.nvmlDeviceGetUtilizationRates)
        mem = self._call(dev, "mem", n.nvmlDeviceGetMemoryInfo)
        temp = self._call(dev, "temp", n.nvmlDeviceGetTemperature, n.NVML_TEMPERATURE_GPU)
        power = self._call(dev, "power", n.nvmlDeviceGetPowerUsage)
        clock = self._call(dev, "clock", n.nvmlDeviceGetClockInfo, n.NVML_CLOCK_SM)
        if processes or dev.index not in self._power_limit:  # rarely changes
            limit = self._call(dev, "limit", n.nvmlDeviceGetEnforcedPowerLimit)
            self._power_limit[dev.index] = limit / 1000.0 if limit is not None else math.nan
        procs = None
        if processes:
            found = self._call(dev, "procs", n.nvmlDeviceGetComputeRunningProcesses) or []
            procs = tuple(GpuProcess(int(p.pid), _used(p)) for p in found)
        return GpuReading(
            dev.index, dev.name,
            util_pct=float(util.gpu) if util is not None else math.nan,
            mem_used=float(mem.used) if mem is not None else math.nan,
            mem_total=float(mem.total) if mem is not None else math.nan,
            temp_c=float(temp) if temp is not None else math.nan,
            power_w=power / 1000.0 if power is not None else math.nan,
            power_limit_w=self._power_limit[dev.index],
            sm_clock_mhz=float(clock) if clock is not None else math.nan,
            processes=procs)


def _used(process: Any) -> int | None:
    value = getattr(process, "usedGpuMemory", None)
    # NVML_VALUE_NOT_AVAILABLE is (unsigned long long)(-1); pynvml may hand back None
    if value is None or value >= 2**63:
        return None
    return int(value)
