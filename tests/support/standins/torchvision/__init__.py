"""A minimal stand-in for torchvision, for running facenet-pytorch's MTCNN as a reference.

No CPU torchvision wheel matches our torch, and facenet-pytorch only needs
``torchvision.ops.boxes.batched_nms`` and ``torchvision.transforms.functional.to_tensor``.
It is put on ``sys.path`` only while the reference runs (tests/support/facenet_reference.py); never installed.
"""

__version__ = "0.0.0+lanner-standin"
from . import ops, transforms  # noqa: F401
