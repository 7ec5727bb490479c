"""facenet-pytorch's MTCNN as the reference detector, run as /work/shared/ANCHORS.md explains.

facenet-pytorch 2.6.0 is installed with ``--no-deps`` (its pins conflict with ours) and no CPU
torchvision wheel exists for our torch, so the small ``torchvision`` stand-in beside this file
(a vectorised pure-torch ``batched_nms`` and ``to_tensor``) is put first on ``sys.path``, with a
``requests`` stand-in (imported at module level by facenet-pytorch for weight downloads MTCNN
never makes).
Used by benchmarks/detection and by the parity tests; never part of the package.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent


def load_mtcnn(num_threads: int | None = None):
    """Return facenet-pytorch's ``MTCNN(keep_all=True)`` with the default cascade parameters."""
    if str(_HERE) not in sys.path:
        sys.path.insert(0, str(_HERE))
    import torch
    from facenet_pytorch import MTCNN

    if num_threads is not None:
        torch.set_num_threads(num_threads)
    return MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709, device="cpu")


def detect(mtcnn, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the reference on an HxWx3 RGB uint8 image: ``(boxes (N,4), scores (N,), landmarks (N,5,2))``."""
    boxes, probs, points = mtcnn.detect(image_rgb, landmarks=True)
    if boxes is None:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
    return (np.asarray(boxes, np.float32), np.asarray(probs, np.float32), np.asarray(points, np.float32))
