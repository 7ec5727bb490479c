"""Writing the small ONNX graphs the compile tests build node by node."""

from __future__ import annotations

from pathlib import Path


def save_graph(path: Path, nodes: list, name: str, inputs: list, outputs: list, initializers: list) -> Path:
    """Save a graph of ``nodes`` as an opset-17, IR-version-8 model (what every runtime here reads) at ``path``."""
    import onnx
    from onnx import helper

    model = helper.make_model(
        helper.make_graph(nodes, name, inputs, outputs, initializers), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
