"""TVM builder: ONNX -> Relax (``tvm.relax.frontend.onnx.from_onnx``) -> ``tvm.compile`` for
the target's TVM target dict -> one shared library with the weights embedded as constants.

* ``x86``: LLVM for this host (``mtriple`` x86_64, ``mcpu`` detected, e.g. ``znver5``).
  TVM 0.27's default CPU pipeline lowers operators without tuned schedules, so expect it to
  be slower than OpenVINO; ``auto`` measures and decides.
* CUDA targets: ``cuda`` with the arch, host LLVM. The default CUDA pipeline applies the
  ``tvm.s_tir.dlight`` GPU schedule rules (thread bindings). TVM 0.27 embeds the CUDA
  *source* in the library and compiles it when the library is loaded (through
  ``tvm_callback_cuda_compile``: NVRTC or nvcc on the device). We therefore also compile the
  same kernels here with ``nvcc -cubin -arch=<arch>``, which proves they build for that arch,
  and ship the cubin (``kernels.<arch>.cubin``) beside the library as the arch record.
* Jetson targets: the host code is cross-compiled for aarch64 (our own target dict: Orin's
  Cortex-A78AE, Xavier's Carmel) and linked with ``aarch64-linux-gnu-g++``.

Precisions: fp32; fp16 via ``relax.transform.ToMixedPrecision`` (fp16 compute, fp32
accumulation); int8 on CPU targets: the QDQ model of ONNX Runtime's ``quantize_static``
(:func:`lanner.compile.onnxruntime_build.quantize_qdq`), imported, then its convolutions made
integer by :func:`lanner.compile.tvm_int8.integer_convolutions` (TVM 0.27's ONNX frontend alone
would compute them in float32), in the VNNI layout where the CPU has AVX512-VNNI. Tuned, they run
on ``vpdpbusd``; untuned, on TVM's default schedules. Every import first drops the ``Pad`` nodes whose
pads are all zero (:func:`lanner.compile.onnx_graph.without_zero_pads`; recorded as
``zero_pads_dropped``), which in an int8 graph lets the quantize/dequantize pairs around them fold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lanner.backends import ort_backend, tvm_backend
from lanner.targets import Target

from . import onnx_graph
from .artifact import BuildResult, UnsupportedError
from .calibration import Feed

if TYPE_CHECKING:
    from .tvm_tuning import TuningRequest

__all__ = ["build_tvm", "nvcc_version", "nvcc_archs"]

LIBRARY = "model.so"
# The Relax VM's ``main`` compiled to native code (VMTIRCodeGen) rather than interpreted bytecode: on a
# small model the interpreter's per-instruction dispatch is a large share of a call
# (benchmarks/compile/README.md). Packages load the same way; the manifest records the mode.
VM_EXEC_MODE = "compiled"


def nvcc_version() -> str | None:
    """``nvcc --version``'s release line, or None without nvcc."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False).stdout
    lines = [line for line in out.splitlines() if "release" in line]
    return lines[-1].strip() if lines else out.strip()


def nvcc_archs() -> list[str]:
    """The ``sm_XX`` archs this nvcc can build (from ``--list-gpu-arch``)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return []
    out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=False).stdout
    return [line.strip().replace("compute_", "sm_") for line in out.split() if line.strip().startswith("compute_")]


def _cuda_module(module):
    if module.kind == "cuda":
        return module
    for sub in module.imports:
        found = _cuda_module(sub)
        if found is not None:
            return found
    return None


def build_tvm(
    onnx_path: Path,
    out_dir: Path,
    target: Target,
    precision: str,
    calibration: Sequence[Feed] | None,
    progress: Callable[[str], None],
    tuning: TuningRequest | None = None,
) -> BuildResult:
    """Compile with TVM into ``out_dir/model.so`` (+ the CUDA source and cubin for GPU targets).

    With ``tuning``, MetaSchedule tunes the model first (:mod:`lanner.compile.tvm_tuning`) and
    the package gets its database in ``tuning/``; without it, TVM's default schedules.

    Raises:
        UnsupportedError: int8 for a GPU target or on a graph with no convolution to make integer;
            bf16; a CUDA arch this nvcc cannot build (e.g. sm_72 with CUDA 13); a missing cross
            compiler; a graph TVM cannot lower (e.g. a mirror average over a dynamic batch, as
            face-quality had until 2026-12-05).
        ImportError: apache-tvm is not installed.
        ValueError: int8 of a float model without calibration samples; tuning: dynamic input
            shapes, a foreign seed database, an unreachable tracker.
        TuningInterrupted: Ctrl-C during tuning (the records are kept in the cache).
    """
    own_qdq: list[str] = []  # the Q/DQ operators of a model that is already quantized
    if precision == "int8":
        own_qdq = onnx_graph.quantization_ops(onnx_graph.read_model(onnx_path))
        if target.device != "cpu":
            raise UnsupportedError(
                f"int8 for the tvm backend is supported on CPU targets only, not {target.name!r}; use fp16 or fp32"
            )
        if not calibration and not own_qdq:
            raise ValueError("int8 needs calibration samples: pass calib= (a folder of images or .npy arrays)")
    if precision == "bf16":
        raise UnsupportedError("bf16 is not supported for the tvm backend; use fp32 or fp16")
    if precision not in ("fp32", "fp16", "int8"):
        raise UnsupportedError(f"unknown precision {precision!r}")
    notes: dict = {}
    if target.device == "cuda":
        archs = nvcc_archs()
        if not archs:
            raise UnsupportedError(f"target {target.name!r} needs nvcc (CUDA toolkit) on the build machine; none found")
        if target.cuda_arch not in archs:
            raise UnsupportedError(
                f"this nvcc ({nvcc_version()}) cannot build {target.cuda_arch} for {target.name!r} (it builds "
                f"{', '.join(archs)}); CUDA 13 dropped sm_72 and older: build with a CUDA 12.x toolkit"
            )
    if target.cross_compiler and shutil.which(target.cross_compiler) is None:
        raise UnsupportedError(
            f"target {target.name!r} links with {target.cross_compiler}, which is not installed "
            "(Debian: apt-get install g++-aarch64-linux-gnu)"
        )
    tc = tvm_backend.import_compiler()
    tvm, relax = tc.tvm, tc.relax

    detected = tvm_backend.host_mcpu() if target.machine == "x86_64" and target.host_mcpu is None else None
    target_dict = target.tvm_target(detected)
    if precision == "int8":
        mod = _integer_module(
            tc, onnx_path, own_qdq, out_dir, tvm.target.Target(target_dict), calibration, notes, progress
        )
    else:
        progress(f"tvm: importing {onnx_path.name} into Relax")
        mod = _import(tc, onnx_path, out_dir, notes, progress)
    if precision == "fp16":
        try:
            mod = relax.transform.ToMixedPrecision(out_dtype="float32")(mod)
        except (RuntimeError, ValueError, TypeError) as exc:  # tvm.error.InternalError is a RuntimeError
            raise UnsupportedError(
                "fp16 is not supported for the tvm backend on this graph: TVM 0.27's ToMixedPrecision failed "
                f"({str(exc).splitlines()[-1][:200]}); use fp32"
            ) from None
        if "float16" not in mod.script(show_meta=False):
            raise UnsupportedError(
                "fp16 is not supported for the tvm backend on this graph: ToMixedPrecision "
                "converted no operator, so the package would compute in fp32; use fp32"
            )
        notes["fp16"] = "relax.transform.ToMixedPrecision(out_dtype=float32): fp16 compute, fp32 accumulation; fp32 I/O"
    if tuning is None:
        progress(f"tvm: compiling for {target_dict}")
        try:
            built_for = tvm.target.Target(target_dict)
            if target.device == "cuda":
                from .tvm_tuning import build_relax  # dlight's rules, with zero pads kept apart

                executable = build_relax(tc, mod, built_for, VM_EXEC_MODE)
            else:
                executable = relax.build(mod, target=built_for, exec_mode=VM_EXEC_MODE)
        except AssertionError as exc:  # a dlight GPU rule that cannot schedule a fused function
            raise UnsupportedError(f"TVM 0.27 cannot schedule this graph for {target.name}: {exc}") from None
        except RuntimeError as exc:  # tvm.error.InternalError: an operator TVM 0.27 cannot lower
            dynamic = [s.name for s in onnx_graph.read_specs(onnx_path)[0] if s.is_dynamic]
            raise UnsupportedError(
                f"TVM 0.27 cannot compile this graph ({str(exc).splitlines()[0][:160]})"
                + (
                    f"; its inputs {dynamic} have dynamic axes, which can leave operators it cannot lower "
                    "(e.g. a broadcast over a symbolic batch): fix them with --input-shape NAME=D0,D1,..."
                    if dynamic
                    else ""
                )
            ) from None
        artifacts = {"library": LIBRARY}
    else:
        if target_dict.get("kind") == "llvm" and "num-cores" not in target_dict:
            # MetaSchedule sizes parallel loops by the target's cores and refuses a CPU target without them;
            # the trials are measured with that many threads and the package runs with them by default.
            target_dict = {**target_dict, "num-cores": tvm_backend.available_cores()}
        executable, artifacts = _tuned(tc, mod, onnx_path, out_dir, target, target_dict, tuning, notes, progress)
    library = out_dir / LIBRARY
    if target.cross_compiler:
        executable.export_library(str(library), fcompile=tc.cc.cross_compiler(target.cross_compiler))
    else:
        executable.export_library(str(library))
    target_info = {"tvm_target": target_dict, "vm_exec_mode": VM_EXEC_MODE}
    if tuning is not None:
        target_info["tuning"] = notes.pop("tuning")
    toolchain = tvm_backend.toolchain_versions()
    if target.device == "cuda":
        cuda = _cuda_module(executable.mod)
        if cuda is None:
            raise RuntimeError("TVM produced no CUDA module for a CUDA target")
        source_name, cubin_name = "kernels.cu", f"kernels.{target.cuda_arch}.cubin"
        (out_dir / source_name).write_text(cuda.inspect_source(), encoding="utf-8")
        progress(f"tvm: nvcc -cubin -arch={target.cuda_arch} (ahead-of-time check of the CUDA kernels)")
        proc = subprocess.run(
            [
                "nvcc",
                "--cubin",
                f"-arch={target.cuda_arch}",
                "-O3",
                "-w",
                "-o",
                str(out_dir / cubin_name),
                str(out_dir / source_name),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"nvcc failed on TVM's CUDA kernels for {target.cuda_arch}:\n{proc.stderr[-2000:]}")
        artifacts.update(cuda_source=source_name, cuda_cubin=cubin_name)
        toolchain["nvcc"] = nvcc_version() or "unknown"
        notes["cuda"] = (
            "TVM 0.27 embeds the CUDA source in model.so and compiles it when the library is loaded "
            "(NVRTC via cuda-python, or nvcc with TVM_CUDA_COMPILE_MODE=nvcc, on the device); "
            f"{cubin_name} is the same source compiled here to prove it builds for {target.cuda_arch}"
        )
    if target.cross_compiler:
        toolchain["cross_compiler"] = _first_line([target.cross_compiler, "--version"])
    return BuildResult(
        artifacts=artifacts,
        backend_options={"device": target.device},
        target_info=target_info,
        toolchain=toolchain,
        notes=notes,
    )


def _import(tc, onnx_path: Path, out_dir: Path, notes: dict, progress: Callable[[str], None]):
    """The Relax module of an ONNX file. TVM's importer keeps shape arithmetic (``Shape`` -> ``Gather``
    -> ... -> the ``pads`` of a ``Pad``, as torch exports ``F.pad`` sized from the input) as runtime
    tensors, and refuses a ``Pad`` whose pads are not constant; where every input shape is fixed,
    ONNX Runtime's basic graph optimizer (constant folding; it keeps ``DequantizeLinear`` nodes) folds
    that arithmetic into constants first."""
    model = onnx_graph.read_model(onnx_path)
    if any(node.op_type == "Shape" for node in model.graph.node):
        if any(spec.is_dynamic for spec in onnx_graph.read_specs(onnx_path)[0]):
            notes["shape_folding"] = "not done: dynamic input shapes (fix them with --input-shape)"
        else:
            ort = ort_backend.import_toolchain()
            folded = out_dir / "folded.onnx"
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(folded)
            try:
                ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
                model = onnx_graph.read_model(folded)
            finally:
                folded.unlink(missing_ok=True)
            progress("tvm: shape arithmetic folded into constants (ONNX Runtime basic graph optimization)")
            notes["shape_folding"] = "onnxruntime ORT_ENABLE_BASIC (static input shapes)"
    model, dropped = onnx_graph.without_zero_pads(model)
    if dropped:
        notes["zero_pads_dropped"] = dropped
    try:
        return tc.from_onnx(model, opset=onnx_graph.opset(model), keep_params_in_input=False)
    except ValueError as exc:  # the importer's "not supported yet" for a graph it cannot take
        raise UnsupportedError(
            f"TVM 0.27's ONNX importer cannot take {onnx_path.name}: {str(exc).splitlines()[-1][:200]}"
            + (
                "; fixing its input shapes (--input-shape) may let it"
                if "dynamic" in notes.get("shape_folding", "")
                else ""
            )
            + "; use openvino or onnxruntime"
        ) from None


def _integer_module(tc, onnx_path, own_qdq, out_dir, target, calibration, notes, progress):
    """The Relax module of the int8 package: QDQ-quantized (a model with its own Q/DQ as it is),
    imported, convolutions made integer."""
    from . import tvm_int8
    from .onnxruntime_build import quantize_qdq

    if own_qdq:
        # Already quantized (lanner's int8 students ship as QDQ ONNX): its own scales are the int8 model.
        progress(f"tvm: {onnx_path.name} is already quantized: importing its own Q/DQ into Relax")
        notes["quantization"] = f"the model's own Q/DQ nodes ({', '.join(own_qdq)}); no calibration"
        mod = _import(tc, onnx_path, out_dir, notes, progress)
    else:
        qdq = out_dir / "quantized.onnx"
        try:
            notes.update(quantize_qdq(onnx_path, qdq, calibration, progress, "tvm"))
            progress(f"tvm: importing the quantized {onnx_path.name} into Relax")
            mod = _import(tc, qdq, out_dir, notes, progress)
        finally:
            qdq.unlink(missing_ok=True)
    vnni = tvm_int8.vnni_available(tc, target)
    mod, report = tvm_int8.integer_convolutions(mod, tc, vnni=vnni)
    if report.rewritten == 0:
        raise UnsupportedError(
            "int8 is not supported for the tvm backend on this graph: it has no convolution in the quantized form "
            "lanner makes integer (uint8/int8 activations x per-channel int8 weights), so the package would "
            "compute in float32 under an int8 label; use openvino or onnxruntime for int8"
        )
    notes["int8"] = {
        "integer_convolutions": report.rewritten,
        "float_convolutions": len(report.left_float),
        "float_reasons": sorted(set(report.left_float)),
        "kernel": "conv2d uint8 x int8 -> int32, NCHW16c (NCHW4c where channels are not a multiple of 16) x OIHW16o4i "
        "(AVX512-VNNI layout), activations kept in NCHW16c between convolutions"
        if vnni
        else "conv2d uint8 x int8 -> int32, NCHW",
        "other_operators": "float32 between the QDQ model's quantize / dequantize (TVM's ONNX frontend)",
    }
    return mod


def _tuned(tc, mod, onnx_path, out_dir, target, target_dict, tuning, notes, progress):
    """MetaSchedule-tuned executable and the artifacts naming its database."""
    from . import tvm_tuning

    dynamic = [s.name for s in onnx_graph.read_specs(onnx_path)[0] if s.is_dynamic]
    if dynamic:
        raise UnsupportedError(
            f"tuning needs fixed input shapes; {dynamic} have dynamic axes: fix them with --input-shape NAME=D0,D1,..."
        )
    runnable_here = target.runnable_here()[0] and target.device == "cpu"
    executable, summary = tvm_tuning.tune_and_compile(
        tc, mod, tc.tvm.target.Target(target_dict), tuning, runnable_here, out_dir, progress, VM_EXEC_MODE
    )
    notes["tuning"] = summary
    folder = tvm_tuning.TUNING_DIR
    return executable, {
        "library": LIBRARY,
        "tuning_workloads": f"{folder}/{tvm_tuning.WORKLOAD_FILE}",
        "tuning_records": f"{folder}/{tvm_tuning.RECORD_FILE}",
    }


def _first_line(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"})
    return (out.stdout.splitlines() or ["unknown"])[0].strip()
