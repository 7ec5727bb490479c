"""Apache TVM adapter: the only module that imports ``tvm``.

Loading a TVM package needs the ``compile`` extra (``apache-tvm``), which is not part of a
runtime-only install; :func:`import_toolchain` says so when it is missing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..manifest import PackageError
from .base import Session

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..targets import Target

__all__ = [
    "import_toolchain",
    "import_compiler",
    "toolchain_versions",
    "open_session",
    "TVMSession",
    "host_mcpu",
    "set_num_threads",
    "available_cores",
    "tuned_threads",
    "fastest_threads",
    "cuda_device_present",
]


def import_toolchain() -> ModuleType:
    """Import Apache TVM (with Relax).

    Raises:
        ImportError: apache-tvm is not installed; TVM packages need ``pip install 'lanner[compile]'``.
    """
    # TVM sizes its thread pool once, when a thread first uses it, at TVM_NUM_THREADS or else half the
    # hardware threads on x86 (1 on a 2-core machine); config_threadpool can shrink it later, never grow
    # it. One per core here, so that set_num_threads can give every core.
    os.environ.setdefault("TVM_NUM_THREADS", str(available_cores()))
    try:
        import tvm
        from tvm import relax  # noqa: F401  (registers tvm.relax)
    except ImportError as exc:
        raise ImportError(
            "TVM packages need Apache TVM, which is not installed: pip install 'lanner[compile]' "
            "(apache-tvm==0.27.0.post1), or build an OpenVINO/ONNX Runtime package instead"
        ) from exc
    return tvm


def import_compiler() -> SimpleNamespace:
    """Import the TVM compiler pieces ``lanner.compile`` uses (kept here: one module imports TVM).

    Returns:
        A namespace with ``tvm``, ``relax``, ``from_onnx`` (the Relax ONNX frontend), ``cc``
        (``tvm.support.cc``, for cross-compiling shared libraries) and ``meta_schedule``
        (``tvm.s_tir.meta_schedule``, the tuner).
    """
    tvm = import_toolchain()
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx
    from tvm.s_tir import meta_schedule
    from tvm.support import cc

    return SimpleNamespace(tvm=tvm, relax=relax, from_onnx=from_onnx, cc=cc, meta_schedule=meta_schedule)


def cuda_device_present() -> bool:
    """Whether Apache TVM is installed and sees a CUDA device to run packages on (False without TVM)."""
    try:
        tvm = import_toolchain()
    except ImportError:
        return False
    return bool(tvm.cuda(0).exist)


def toolchain_versions() -> dict[str, str]:
    """Versions of the toolchain packages (recorded in manifests)."""
    return {"apache-tvm": import_toolchain().__version__}


def host_mcpu() -> str:
    """LLVM's name for this machine's CPU (e.g. ``znver5``), as TVM's LLVM detects it."""
    tvm = import_toolchain()
    return str(tvm.target.codegen.llvm_get_system_cpu())


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask), at least 1."""
    return max(1, len(os.sched_getaffinity(0)))


# The thread count each thread's TVM pool was last asked for (by set_num_threads): TVM keeps one pool per
# calling thread, so sessions of different counts that run in one thread resize it when they take turns.
_POOL = threading.local()


def set_num_threads(num_threads: int | None) -> int:
    """Size TVM's CPU thread pool (process-wide) and return its size.

    Always configured explicitly: left alone, TVM 0.27 sizes its pool at half the hardware threads
    on x86 (it assumes hyper-threading), which is 1 on a 2-core machine, and the first parallel
    kernel then pins the calling thread to core 0, with every thread and child process it starts.
    The pool belongs to the calling thread (TVM keeps one per thread) and cannot grow past the size
    it was created with (``TVM_NUM_THREADS``, which :func:`import_toolchain` sets to the cores
    available unless the environment already sets it).

    Args:
        num_threads: threads of the pool; None: one per core this process may run on.

    Returns:
        The pool size in effect (smaller than asked where TVM's pool was created smaller).
    """
    threads = int(num_threads) if num_threads else available_cores()
    tvm = import_toolchain()
    _POOL.requested = threads
    # config_threadpool also pins the *calling* thread to core 0, which every thread and
    # child process then inherits; restore the caller's CPU mask so only TVM's pool is sized.
    affinity = os.sched_getaffinity(0)
    try:
        tvm.get_global_func("runtime.config_threadpool")(0, threads)
    finally:
        os.sched_setaffinity(0, affinity)
    return int(tvm.get_global_func("runtime.NumThreads")())


# fewer threads than asked for only where they measured at least this much faster (see fastest_threads)
FEWER_THREADS_MARGIN = 0.10


def fastest_threads(requested: int, by_threads: Mapping[str, float]) -> int:
    """The threads a TVM package runs with when given ``requested``: fewer where fewer were measured faster.

    ``by_threads`` is the package's compile-time latency per thread count (``latency_ms.by_threads``,
    {"1": ms, "2": ms, ...}). Among the counts measured up to ``requested``, the fastest is taken when it is
    not the largest of them and beats the largest by ``FEWER_THREADS_MARGIN`` (more threads measured slower:
    a small model's kernels of a few microseconds each fork and join TVM's pool); otherwise ``requested``
    (nothing measured says more threads hurt). The margin because the choice is for good and the two errors
    cost unlike: a build timed while other work held a core once recorded a bridge model's 2.29 ms at 1
    thread against 2.44 at 2, which pinned a package that runs ~1.6x faster on 2 idle cores to one thread,
    where a small model kept on 2 threads by the margin loses at most 10%.

    Raises:
        ValueError: a thread count or latency that is not a positive number.
    """
    measured: dict[int, float] = {}
    for threads, ms in by_threads.items():
        try:
            t, value = int(threads), float(ms)
        except (TypeError, ValueError):
            t, value = 0, 0.0
        if t < 1 or not value > 0:
            raise ValueError(f"by_threads should map thread counts >= 1 to latencies > 0 ms, got {threads!r}: {ms!r}")
        if t <= requested:
            measured[t] = value
    if not measured:
        return requested
    best, most = min(measured, key=lambda t: (measured[t], t)), max(measured)
    return best if measured[best] * (1 + FEWER_THREADS_MARGIN) <= measured[most] else requested


def tuned_threads(manifest: Manifest) -> int | None:
    """The thread count a tuned package's trials were measured with (``target_info.tuning.threads``),
    or None for an untuned package or one tuned before it was recorded."""
    threads = manifest.target_info.get("tuning", {}).get("threads")
    return int(threads) if threads else None


class TVMSession(Session):
    """A TVM Relax VM over an exported shared library (parameters are embedded as constants).

    The per-call path is kept to what a small model can afford (measured in
    benchmarks/compile/README.md, "Where TVM's time went"): inputs are copied into TVM tensors
    that live as long as the session (one per input, reallocated only when its shape changes)
    through a NumPy view of their memory (DLPack), not wrapped anew with
    ``tvm.runtime.tensor`` each call; outputs are read through DLPack views instead of
    ``Tensor.numpy()``. Packages built since issue 18 also run their ``main`` as native code
    (``relax.build(exec_mode="compiled")``) instead of the VM's bytecode interpreter.

    Thread safety: not thread-safe on its own (the staged input tensors are shared state);
    :class:`lanner.Model` serialises its calls. It may be called from any thread: TVM keeps a thread
    pool per calling thread, and each call runs with the session's ``num_threads`` in it, also where
    sessions of other counts share the thread (the pool is resized when they take turns).
    """

    def __init__(
        self, library_path: str, input_names: list[str], *, device: str = "cpu", num_threads: int | None = None
    ) -> None:
        tvm = import_toolchain()
        if device == "cuda":
            dev = tvm.cuda(0)
            if not dev.exist:
                raise ValueError("this TVM package targets a CUDA GPU but no CUDA device is usable here")
        else:
            dev = tvm.cpu(0)
        # TVM keeps one pool per calling thread, started at its first kernel (and then pinning that
        # thread to core 0): sized before this session's first call in a thread, and again whenever another
        # session (or set_num_threads) left that thread's pool at another count.
        self._threads = int(num_threads) if num_threads else available_cores()
        self._size_pool()
        self._tvm = tvm
        self._dev = dev
        self._on_cpu = device != "cuda"
        self._lib = tvm.runtime.load_module(library_path)
        self._vm = tvm.relax.VirtualMachine(self._lib, dev)
        self._main = self._vm["main"]
        self._tensor_type = tvm.runtime.Tensor
        self._input_names = input_names
        # name -> (TVM tensor the VM reads, NumPy view of its memory on CPU or None, its shape, its dtype)
        self._staged: dict[str, tuple[Any, np.ndarray | None, tuple[int, ...], np.dtype]] = {}
        self._last: Any = None  # the previous call's outputs, kept alive while copy=False views exist

    def _stage(self, name: str, array: np.ndarray) -> Any:
        """Copy ``array`` into this input's persistent TVM tensor (made on first use or a new shape).

        The check compares NumPy shapes and dtypes kept beside the tensor: comparing with the TVM
        tensor's own ``shape``/``dtype`` crosses the FFI each call (5.6 us per input against 0.1 us,
        timeit's minimum of 5 repeats, here: 11 us of a 45 us face-quality call).
        """
        staged = self._staged.get(name)
        if staged is None or staged[2] != array.shape or staged[3] != array.dtype:
            tensor = self._tvm.runtime.empty(array.shape, str(array.dtype), self._dev)
            staged = (tensor, np.from_dlpack(tensor) if self._on_cpu else None, array.shape, array.dtype)
            self._staged[name] = staged
        tensor, view = staged[0], staged[1]
        if view is None:
            tensor.copyfrom(array)
        else:
            np.copyto(view, array)
        return tensor

    def _to_numpy(self, tensor: Any, copy: bool) -> np.ndarray:
        if not self._on_cpu:
            return tensor.numpy()
        view = np.from_dlpack(tensor)
        if copy:
            return view.copy()
        view.flags.writeable = False
        return view

    def _size_pool(self) -> None:
        if getattr(_POOL, "requested", None) != self._threads:
            set_num_threads(self._threads)

    def run(self, inputs: dict[str, np.ndarray], copy: bool = True) -> list[np.ndarray]:
        self._size_pool()
        result: Any = self._main(*[self._stage(name, inputs[name]) for name in self._input_names])
        outputs = [result] if isinstance(result, self._tensor_type) else list(result)
        self._last = None if copy else outputs
        return [self._to_numpy(tensor, copy) for tensor in outputs]

    def close(self) -> None:
        self._staged = {}
        self._last = None
        self._main = None
        self._vm = None
        self._lib = None


def open_session(package_dir: Path, manifest: Manifest, target: Target, num_threads: int | None) -> TVMSession:
    """Load the package's TVM shared library on the target's device."""
    path = manifest.artifact_path(package_dir, "library")
    built_for = manifest.target_info.get("tvm_target", {})
    built_for = built_for.get("host", built_for).get("mcpu") if isinstance(built_for, dict) else None
    if target.device == "cpu" and built_for:
        here = host_mcpu()
        if here != built_for:
            # LLVM code for one -mcpu may use instructions another CPU lacks (an illegal-instruction crash).
            raise PackageError(
                f"this TVM package was compiled for CPU {built_for!r} (LLVM -mcpu) but this machine's CPU is "
                f"{here!r}; rebuild it here (`lanner compile MODEL.onnx --target x86 --backend tvm`) or use an "
                "OpenVINO/ONNX Runtime package, which pick CPU kernels at run time"
            )
    if num_threads is None:
        # A tuned package runs by default with the threads it was tuned with (its target's num-cores).
        num_threads = tuned_threads(manifest)
    by_threads = (manifest.latency_ms or {}).get("by_threads")
    if target.device == "cpu" and by_threads:
        # fewer threads than given where fewer were measured faster when the package was compiled
        num_threads = fastest_threads(num_threads or available_cores(), by_threads)
    return TVMSession(str(path), [i.name for i in manifest.inputs], device=target.device, num_threads=num_threads)
