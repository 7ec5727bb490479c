"""The face-quality model: which registry model scores faces, and its input/output contract.

``face-quality`` (issue 16) is a tiny regressor trained by ``lanner distill face-quality`` on
SDD-FIQA pseudo-labels (Ou et al., CVPR 2021) made with the teacher of the embedding space
(dlib's ResNet). It reads an aligned ``CHIP_SIZE`` chip (:func:`lanner.face.align.align_faces`,
RGB, float32 in [0, 1], ``(N, 3, S, S)``) and outputs ``(N, 1)`` qualities in [0, 1]; its card
is ``face_quality/README.md``. :meth:`lanner.FaceRecognizer.quality` runs it.
"""

from __future__ import annotations

__all__ = ["MODEL", "CHIP_SIZE", "OUTPUT"]

MODEL = "face-quality"  # registry name (lanner.models.REGISTRY)
CHIP_SIZE = 32  # px, side of the aligned chip it reads (lanner.distill.quality.QUALITY_CHIP_SIZE)
OUTPUT = "quality"  # its output tensor, (N, 1) float32 in [0, 1]
