"""Export a ``torch.nn.Module`` to ONNX with named, optionally dynamic inputs.

The only module of ``lanner.compile`` that imports torch (the ``torch`` extra), lazily.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import onnx_graph

__all__ = ["export_torch"]


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("export_torch needs PyTorch: pip install 'lanner[torch]'") from exc
    return torch


def export_torch(
    module: Any,
    example_inputs: Sequence[Any] | Any,
    path: str | os.PathLike[str],
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    opset: int = 17,
) -> Path:
    """Export ``module`` (in eval mode) to an ONNX file.

    Uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no extra packages
    and gives plain ONNX graphs that OpenVINO, ONNX Runtime and TVM all import.

    Args:
        module: a ``torch.nn.Module``.
        example_inputs: one tensor or a tuple of tensors, in ``forward`` order.
        path: destination ``.onnx`` file.
        input_names: one name per forward argument.
        output_names: one name per output.
        dynamic_axes: ``{tensor name: {axis: axis name}}``, e.g. ``{"image": {0: "batch"}}``;
            list output axes too when they follow the input's.
        opset: ONNX opset version.

    Returns:
        ``path`` as a Path (the model is checked with ``onnx.checker``).

    Raises:
        TypeError: ``module`` is not a ``torch.nn.Module``.
        ValueError: names that do not match the example inputs, or dynamic axes naming unknown tensors.
        ImportError: torch is not installed.
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if len(input_names) != len(inputs):
        raise ValueError(f"expected {len(inputs)} input names (one per example input), got {list(input_names)}")
    unknown = sorted(set(dynamic_axes or {}) - set(input_names) - set(output_names))
    if unknown:
        raise ValueError(
            f"dynamic_axes names unknown tensors {unknown}; inputs {list(input_names)}, outputs {list(output_names)}"
        )
    path = Path(path)
    module = module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is "legacy" since 2.9
        with torch.no_grad():
            torch.onnx.export(
                module,
                inputs,
                str(path),
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()},
                opset_version=opset,
                dynamo=False,
            )
    onnx_graph.read_model(path)
    return path
