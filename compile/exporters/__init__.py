"""Exporters that turn real pretrained weights into the ONNX models Lanner ships (the ``torch`` extra)."""
