"""facenet-pytorch's MTCNN as the reference detector (parity tests and benchmarks/detection).

facenet-pytorch 2.6.0 pins torch<2.3 and numpy<2, which conflict with ours, and no CPU
torchvision wheel exists for our torch; so it is installed with
``pip install --no-deps facenet-pytorch==2.6.0`` and run with two small stand-in packages from
``standins/`` beside this file: ``torchvision`` (a vectorised pure-torch ``batched_nms`` and
``to_tensor``, all MTCNN uses) and ``requests`` (imported at module level by facenet-pytorch for
weight downloads MTCNN never makes). :func:`standins` puts them on ``sys.path`` only while
the reference is in use and takes them (and the facenet-pytorch modules bound to them) out of
``sys.modules`` afterwards, so they never leak into other tests. Parameters: facenet-pytorch's
defaults (min_face_size 20, thresholds [0.6, 0.7, 0.7], factor 0.709).
Never part of the package.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

STANDINS = Path(__file__).resolve().parent / "standins"
_STANDIN_PACKAGES = ("torchvision", "requests", "facenet_pytorch")


@contextlib.contextmanager
def standins() -> Iterator[None]:
    """Make the stand-in ``torchvision`` and ``requests`` importable for the ``with`` block only."""
    sys.path.insert(0, str(STANDINS))
    try:
        yield
    finally:
        sys.path.remove(str(STANDINS))
        for name in list(sys.modules):
            if name.split(".")[0] in _STANDIN_PACKAGES:
                del sys.modules[name]


def load_mtcnn(num_threads: int | None = None):
    """Return facenet-pytorch's ``MTCNN(keep_all=True)`` with the default cascade parameters
    (call inside :func:`standins`)."""
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
