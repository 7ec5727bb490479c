"""Reading and editing the input ONNX graph: the only module that imports ``onnx``.

:func:`read_specs` reads a model's inputs and outputs through ONNX Runtime (a runtime
dependency) instead, so that compiling an unchanged model for OpenVINO or ONNX Runtime (what
the model cache does) needs no ``onnx`` package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from lanner._paths import existing_file
from lanner.backends import ort_backend
from lanner.manifest import TensorSpec

__all__ = [
    "import_onnx",
    "read_model",
    "read_specs",
    "io_specs",
    "with_input_shapes",
    "save_model",
    "opset",
    "quantization_ops",
    "without_zero_pads",
]

# ONNX Runtime's type strings for the tensor types a package may have (TensorSpec dtypes).
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def import_onnx() -> ModuleType:
    """Import the ``onnx`` package.

    Raises:
        ImportError: onnx is not installed (``pip install 'lanner[compile]'``).
    """
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("lanner.compile needs the onnx package: pip install 'lanner[compile]'") from exc
    return onnx


def read_model(path: str | os.PathLike[str]) -> Any:
    """Load and check an ONNX model.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a valid ONNX model.
    """
    onnx = import_onnx()
    existing_file(path, "ONNX model file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise ValueError(f"{str(path)!r} is not a valid ONNX model: {exc}") from exc
    return model


def quantization_ops(model: Any) -> list[str]:
    """The Q/DQ operator types in a loaded model (empty for a float model): an int8 QDQ graph has
    ``QuantizeLinear`` / ``DequantizeLinear`` nodes, which a backend runs on its own int8 kernels."""
    return sorted({n.op_type for n in model.graph.node} & {"QuantizeLinear", "DequantizeLinear"})


def refuse_requantization(path: str | os.PathLike[str], backend: str) -> None:
    """Refuse to post-training-quantize a model that is already quantized.

    A second quantizer over a QDQ graph at best rounds its int8 model twice (OpenVINO's NNCF: a student's
    cosine to its own int8 run fell to ~0.99) and at worst writes an invalid model (ONNX Runtime's
    ``quantize_static``: duplicate node names); at fp32 both runtimes already run the file's own Q/DQ on
    their int8 kernels.

    Raises:
        UnsupportedError: the model has Q/DQ nodes.
    """
    from .artifact import UnsupportedError

    quantized = quantization_ops(read_model(path))
    if quantized:
        raise UnsupportedError(
            f"{backend} int8: this model is already quantized (it has {quantized} nodes): build it with "
            "precision fp32, which keeps its own int8 Q/DQ as they are"
        )


def read_specs(path: str | os.PathLike[str]) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The (inputs, outputs) specs of an ONNX file, read by ONNX Runtime (which also checks the model).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a valid ONNX model, or a tensor type a package cannot hold.
    """
    existing_file(path, "ONNX model file")
    ort = ort_backend.import_toolchain()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # only reading the signature
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own exception types for a bad file
        raise ValueError(f"{str(path)!r} is not a valid ONNX model: {exc}") from exc

    def spec(arg: Any) -> TensorSpec:
        if arg.type not in _ORT_DTYPES:
            raise ValueError(f"tensor {arg.name!r} has type {arg.type}; expected one of {sorted(_ORT_DTYPES)}")
        shape = tuple(d if isinstance(d, str) or d is None or d > 0 else None for d in arg.shape)
        return TensorSpec(arg.name, shape, _ORT_DTYPES[arg.type])

    return tuple(spec(a) for a in session.get_inputs()), tuple(spec(a) for a in session.get_outputs())


def _spec(value_info: Any) -> TensorSpec:
    onnx = import_onnx()
    ttype = value_info.type.tensor_type
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type)).name
    shape: list[int | str | None] = []
    for dim in ttype.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            shape.append(str(dim.dim_param))
        else:
            shape.append(None)
    return TensorSpec(value_info.name, tuple(shape), dtype)


def io_specs(model: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The graph's (inputs, outputs) specs; initializers listed as inputs are skipped."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_spec(v) for v in model.graph.output)
    return inputs, outputs


def with_input_shapes(model: Any, input_shapes: Mapping[str, Sequence[int | str | None]]) -> Any:
    """Return a copy whose inputs have these shapes (ints fix an axis, str/None make it dynamic).

    Raises:
        ValueError: unknown input name or a rank different from the model's.
    """
    onnx = import_onnx()
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph_inputs = {v.name: v for v in model.graph.input}
    for name, shape in input_shapes.items():
        if name not in graph_inputs:
            raise ValueError(f"input_shapes names input {name!r}; the model's inputs are {sorted(graph_inputs)}")
        dims = graph_inputs[name].type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ValueError(f"input_shapes[{name!r}] has rank {len(shape)}, the model's input has rank {len(dims)}")
        for axis, (dim, want) in enumerate(zip(dims, shape)):
            if isinstance(want, (int, np.integer)) and not isinstance(want, bool):
                if want < 1:
                    raise ValueError(f"input_shapes[{name!r}] axis {axis} must be >= 1, got {want}")
                dim.dim_value = int(want)
            elif want is None or isinstance(want, str):
                dim.dim_param = want or f"{name}_dim{axis}"
            else:
                raise ValueError(f"input_shapes[{name!r}] axis {axis} must be int, str or None, got {want!r}")
    # Intermediate shapes inferred for the old input shapes would now be stale.
    del model.graph.value_info[:]
    return model


def save_model(model: Any, path: str | os.PathLike[str]) -> None:
    """Write the model to ``path`` (a single file; no external data)."""
    import_onnx().save(model, str(path))


def opset(model: Any) -> int:
    """The default-domain opset version of the model."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def without_zero_pads(model: Any) -> tuple[Any, int]:
    """The model without the ``Pad`` nodes whose pads are constants and all zero (identities by the ONNX
    spec, whatever the mode and value), each consumer reading the Pad's input instead (a copy; ``model``
    itself is never changed), and how many were dropped. Such pads appear where shape arithmetic sized them
    (dlib's residual channel pad, folded to constants by ONNX Runtime's basic optimizer, is zero in every
    block that keeps its width); TVM's importer
    makes each a copy kernel, and in a QDQ graph it sits between a dequantize and a quantize of the same
    scale, which only then become foldable (:func:`lanner.compile.tvm_int8.integer_convolutions`). A Pad
    whose output is a graph output is kept."""
    onnx = import_onnx()
    from onnx import numpy_helper

    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return model, 0  # (a subgraph may read a Pad's output by name: nothing dropped, nothing copied)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    outputs = {v.name for v in graph.output}
    renamed: dict[str, str] = {}
    kept = []
    for node in graph.node:
        pads = None
        if node.op_type == "Pad" and node.domain in ("", "ai.onnx"):
            if len(node.input) > 1 and node.input[1] in constants:  # opset >= 11: pads are an input
                pads = numpy_helper.to_array(constants[node.input[1]])
            elif len(node.input) == 1:  # opset < 11: an attribute
                pads = next((np.asarray(a.ints) for a in node.attribute if a.name == "pads"), None)
        if pads is not None and pads.size and not pads.any() and node.output[0] not in outputs:
            renamed[node.output[0]] = renamed.get(node.input[0], node.input[0])
            continue
        kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    del graph.node[:]
    graph.node.extend(kept)
    return model, len(renamed)
