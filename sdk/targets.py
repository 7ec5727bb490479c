"""Deployment targets as data: one table, used by ``lanner.compile`` to build and by
``lanner.load`` to refuse a package built for another machine.

TVM targets are our own JSON dicts, not TVM tags: TVM 0.27's ``nvidia/jetson-orin-nano``
tag lists Xavier's ``carmel`` as the host CPU, while Orin's CPU cores are Cortex-A78AE.
The ``x86`` TVM target is completed at compile time with the build host's ``mcpu``
(LLVM's name for this CPU), which the manifest records.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Target", "TARGETS", "get_target", "host_machine"]

# Per-SM limits shared by every CUDA arch we target (sm_72 .. sm_90).
_CUDA_LIMITS = {
    "max_threads_per_block": 1024,
    "max_shared_memory_per_block": 49152,  # bytes, the default (non opt-in) limit
    "thread_warp_size": 32,
    "registers_per_block": 65536,
}
_X86_HOST = {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}
_AARCH64_HOST = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}


@dataclass(frozen=True)
class Target:
    """A deployment target (frozen: safe to share between threads).

    Attributes:
        name: the ``--target`` value.
        description: one line for humans.
        machine: ``platform.machine()`` of the host CPU that runs the package (``x86_64``, ``aarch64``).
        device: ``"cpu"`` or ``"cuda"`` (the accelerator the model runs on).
        backends: backends that can build for this target, in ``auto`` preference order.
        cuda_arch: e.g. ``"sm_87"`` for CUDA targets, else None.
        host_mcpu: LLVM CPU name of the host, ``None`` = detect on the build host (x86 only).
        cross_compiler: C++ compiler that links the TVM shared library, None = the host's.
    """

    name: str
    description: str
    machine: str
    device: str
    backends: tuple[str, ...]
    cuda_arch: str | None = None
    host_mcpu: str | None = None
    cross_compiler: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def tvm_host(self, detected_mcpu: str | None = None) -> dict[str, Any]:
        """The TVM ``llvm`` host target dict (``detected_mcpu`` fills in a host-detected CPU)."""
        host = dict(_X86_HOST if self.machine == "x86_64" else _AARCH64_HOST)
        mcpu = self.host_mcpu or detected_mcpu
        if mcpu:
            host["mcpu"] = mcpu
        return host

    def tvm_target(self, detected_mcpu: str | None = None) -> dict[str, Any]:
        """The TVM target dict: ``llvm`` for CPU targets, ``cuda`` with a ``host`` for GPU ones."""
        host = self.tvm_host(detected_mcpu)
        if self.device == "cpu":
            return host
        return {"kind": "cuda", "arch": self.cuda_arch, **_CUDA_LIMITS, "host": host}

    def runnable_here(self) -> tuple[bool, str]:
        """Whether this machine's CPU architecture matches (the GPU is checked by the backend).

        Returns:
            ``(ok, reason)``; ``reason`` explains a mismatch.
        """
        here = host_machine()
        if here != self.machine:
            return False, (
                f"the package was built for target {self.name!r} ({self.description}; {self.machine} host"
                + (f", CUDA {self.cuda_arch}" if self.cuda_arch else "")
                + f") but this machine is {here}; build a package for this machine's target instead "
                "(e.g. `lanner compile MODEL.onnx --target x86`)"
            )
        return True, ""


def host_machine() -> str:
    """This machine's CPU architecture with aliases folded (``amd64`` -> ``x86_64``, ``arm64`` -> ``aarch64``)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def _cuda(name: str, arch: str, description: str) -> Target:
    return Target(name, description, "x86_64", "cuda", ("tvm", "onnxruntime"), cuda_arch=arch)


def _jetson(name: str, arch: str, mcpu: str, description: str) -> Target:
    return Target(
        name,
        description,
        "aarch64",
        "cuda",
        ("tvm",),
        cuda_arch=arch,
        host_mcpu=mcpu,
        cross_compiler="aarch64-linux-gnu-g++",
    )


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("x86", "this x86-64 host's CPU", "x86_64", "cpu", ("openvino", "onnxruntime", "tvm")),
        _cuda("cuda", "sm_80", "NVIDIA GPU, Ampere A100 class (sm_80) on an x86-64 host"),
        _cuda("cuda-sm75", "sm_75", "NVIDIA GPU, Turing (sm_75) on an x86-64 host"),
        _cuda("cuda-sm86", "sm_86", "NVIDIA GPU, Ampere consumer (sm_86) on an x86-64 host"),
        _cuda("cuda-sm89", "sm_89", "NVIDIA GPU, Ada (sm_89) on an x86-64 host"),
        _cuda("cuda-sm90", "sm_90", "NVIDIA GPU, Hopper H100/H200 (sm_90) on an x86-64 host"),
        _jetson("jetson-orin-nano", "sm_87", "cortex-a78ae", "NVIDIA Jetson Orin Nano (Ampere sm_87, Cortex-A78AE)"),
        _jetson("jetson-orin-agx", "sm_87", "cortex-a78ae", "NVIDIA Jetson AGX Orin (Ampere sm_87, Cortex-A78AE)"),
        _jetson("jetson-xavier-nx", "sm_72", "carmel", "NVIDIA Jetson Xavier NX (Volta sm_72, Carmel)"),
    )
}


def get_target(name: str) -> Target:
    """Look up a target by name.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; expected one of {sorted(TARGETS)}") from None
