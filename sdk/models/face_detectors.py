"""The face detectors ``lanner.FaceDetector(model=...)`` offers: each a cascade of registry nets.

Every entry names three registry models (``lanner.models.REGISTRY``, checksummed ONNX) that play
the MTCNN cascade's P-Net, R-Net and O-Net roles (same inputs and outputs). ``"mtcnn"`` is the
teacher, facenet-pytorch's MTCNN exactly; a student detector ships by adding its registry nets and
one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FaceDetectorSpec", "FACE_DETECTORS", "DEFAULT_FACE_DETECTOR", "get_face_detector"]


@dataclass(frozen=True)
class FaceDetectorSpec:
    """One face detector (frozen: safe to share between threads).

    Attributes:
        name: what ``FaceDetector(model=...)`` and ``lanner detect --model`` take.
        nets: registry names of its P-Net, R-Net and O-Net.
        description: one line for ``lanner models list``.
        thresholds: its default P-Net, R-Net and O-Net face-probability thresholds (what
            ``FaceDetector(thresholds=None)`` uses): the teacher's are facenet-pytorch's, a student's
            are tuned on its training data.
        rnet_iou_threshold: NMS overlap (IoU) between R-Net's survivors before O-Net (the
            teacher's 0.7; ``lanner.face.cascade.CascadeParams``).
        landmark_net: registry name of an O-Net whose landmark head gives the five points, run once on the
            final boxes (its boxes and scores are not used); None: the detector's own O-Net's. The recognizer
            aligns faces by these points and its template was fitted on the teacher's.
    """

    name: str
    nets: tuple[str, str, str]
    description: str
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    rnet_iou_threshold: float = 0.7
    landmark_net: str | None = None


FACE_DETECTORS: dict[str, FaceDetectorSpec] = {
    spec.name: spec
    for spec in (
        FaceDetectorSpec(
            "mtcnn",
            ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet"),
            "the MTCNN teacher (facenet-pytorch's weights, exact parity)",
        ),
        FaceDetectorSpec(
            "mtcnn-masked",
            ("mtcnn-pnet", "mtcnn-masked-rnet", "mtcnn-masked-onet"),
            "issue 15's student: the teacher's P-Net, R-/O-Net retrained for masked and tiny faces",
            # Retrained with the hard negatives of three earlier students and blurred or dark faces (card), then
            # tuned on training data only (benchmarks/detection/tune_masked.py: facemask-voc train split, scenes of
            # celeba-faces training identities): R-Net 0.3, O-Net 0.5 and an R-Net NMS overlap of 0.5 give the
            # best masked AP (0.732 vs the teacher's 0.593) among the settings that send O-Net few enough crops
            # (8.4 per training photo vs the teacher's 20.5) to pay for the landmark call below.
            thresholds=(0.6, 0.3, 0.5),
            rnet_iou_threshold=0.5,
            # Its own O-Net's landmarks lie up to 15% of the face width from the teacher's, which breaks the
            # recognizer's alignment; the teacher's O-Net on the final boxes gives the teacher's points
            # (benchmarks/detection/README.md, "Landmarks").
            landmark_net="mtcnn-onet",
        ),
    )
}
# The student is the default since it meets all four of issue 15's targets on the facemask-voc test split: masked AP
# +0.163, unmasked AP +0.061, no parity-photo face lost, 1.06x the teacher's fp32 speed with the teacher's O-Net's
# landmarks (benchmarks/detection/README.md, "Masked and tiny faces"). model="mtcnn" keeps the exact teacher.
DEFAULT_FACE_DETECTOR = "mtcnn-masked"


def get_face_detector(name: str) -> FaceDetectorSpec:
    """The face detector called ``name``.

    Raises:
        TypeError: name is not a string.
        ValueError: no such detector (the message lists the ones that exist).
    """
    if not isinstance(name, str):
        raise TypeError(f"model should be a str, got {type(name).__name__}")
    try:
        return FACE_DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown face detector model {name!r}; expected one of {sorted(FACE_DETECTORS)}") from None
