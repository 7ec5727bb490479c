"""lanner.compile: quantize and compile student models per target into verified deployable packages.

Needs the ``compile`` extra (``pip install 'lanner[compile]'``: onnx, nncf, apache-tvm);
``export_torch`` needs the ``torch`` extra. Load packages with :func:`lanner.load`.
"""

from __future__ import annotations

from .artifact import UnsupportedError
from .fidelity import DEFAULT_THRESHOLDS, FidelityError, FidelityThresholds
from .pipeline import BACKEND_CHOICES, PRECISION_CHOICES, compile_model
from .tvm_tuning import TuningInterrupted, TuningRequest

__all__ = [
    "compile_model",
    "export_torch",
    "FidelityError",
    "FidelityThresholds",
    "DEFAULT_THRESHOLDS",
    "UnsupportedError",
    "BACKEND_CHOICES",
    "PRECISION_CHOICES",
    "TuningRequest",
    "TuningInterrupted",
]


def export_torch(module, example_inputs, path, **kwargs):
    """Export a ``torch.nn.Module`` to ONNX (see :func:`lanner.compile.torch_export.export_torch`)."""
    from .torch_export import export_torch as _export

    return _export(module, example_inputs, path, **kwargs)
