"""What a benchmark ran on: CPU model and flags, cores, memory, library versions;
and the process's peak resident memory (Linux ``VmHWM``)."""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

from ..names import DISTRIBUTIONS, package_versions

#: CPU flags that matter for inference kernels; the full list is kept too.
KEY_CPU_FLAGS: tuple[str, ...] = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "neon",
    "asimd",
    "asimddp",
    "sve",
)


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """CPU model name and flags from ``/proc/cpuinfo`` (x86 ``flags`` or ARM ``Features``)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = path.read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = value.split()
    return model, flags


def _mem_total_bytes(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    """Describe this machine for a benchmark report.

    Returns:
        A JSON-ready dict: ``hostname``, ``os``, ``arch``, ``python``, ``cpu_model``,
        ``cpu_flags`` (full list), ``cpu_key_flags`` (the inference-relevant subset present),
        ``logical_cores`` (``os.cpu_count()``), ``usable_cores`` (the affinity mask size),
        ``mem_total_bytes``, ``load_avg`` (1/5/15 min, shared machines drift), ``libraries``.
    """
    model, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_key_flags": [f for f in KEY_CPU_FLAGS if f in set(flags)],
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "mem_total_bytes": _mem_total_bytes(),
        "load_avg": load,
        "libraries": package_versions(DISTRIBUTIONS),
    }


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS high-water mark (Linux >= 4.0, ``clear_refs`` = 5).

    Returns:
        ``True`` when reset, ``False`` where unsupported (then the peak is since process start).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def current_rss_bytes() -> int | None:
    """Resident set size of this process now, in bytes (``None`` where unknown)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes (``VmHWM``, else ``ru_maxrss``)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
