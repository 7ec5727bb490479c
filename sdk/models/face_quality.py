"""The face-quality model: which registry model scores faces, and its input/output contract.

``face-quality`` (issue 16) is a tiny regressor trained by ``lanner distill face-quality`` on
SDD-FIQA pseudo-labels (Ou et al., CVPR 2021) made with the teacher of the embedding space
(dlib's ResNet). It reads an aligned ``CHIP_SIZE`` chip (:func:`lanner.face.align.align_faces`,
RGB, float32 in [0, 1], ``(N, 3, S, S)``, input ``image``) and the face's width in the image
(``WIDTH_INPUT``, ``(N, 1)`` float32 px, as :func:`lanner.face.align.face_widths` measures it), and
outputs ``(N, 1)`` qualities in [0, 1]; its card is ``face_quality/README.md``.
:meth:`lanner.FaceRecognizer.quality` runs it.
"""

from __future__ import annotations

__all__ = ["MODEL", "CHIP_SIZE", "WIDTH_INPUT", "OUTPUT"]

MODEL = "face-quality"  # registry name (lanner.models.REGISTRY)
CHIP_SIZE = 32  # px, side of the aligned chip it reads (lanner.distill.quality.QUALITY_CHIP_SIZE)
WIDTH_INPUT = "face_width"  # its second input, (N, 1) float32 face widths in image px
OUTPUT = "quality"  # its output tensor, (N, 1) float32 in [0, 1]
