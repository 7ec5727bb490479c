"""Exporters: turn a model's original weights into the ONNX files Lanner ships or compiles.

Compile-time only (they need the ``torch`` extra and the model's own package); the runtime
never imports them. ``dlib_resnet``: the face-recognition teacher from dlib's ``.dat``.
``mtcnn``: the face detector's three nets from facenet-pytorch's weights
(``lanner models build --from-weights`` re-exports them and checks the registry's checksums).
"""
