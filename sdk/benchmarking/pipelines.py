"""Pipelines ``lanner bench`` knows by name, adapted to the stage protocol
(:mod:`lanner.timing`). Each entry is a factory usable as a ``factory``
variant (``--pipeline face`` on the command line, or
``--factory NAME=lanner.benchmarking.pipelines:face_detector``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._paths import existing_file
from ..names import FACE_BACKENDS

#: ``--pipeline`` name -> (factory spec, backends the pipeline supports).
PIPELINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "face": ("lanner.benchmarking.pipelines:face_detector", FACE_BACKENDS),
}


class FaceDetectorBench:
    """``lanner.FaceDetector`` (MTCNN) timed per stage: pyramid, pnet, rnet, onet, nms
    (the detector's own ``other``, input conversion, is folded into the bench's ``other``).

    One call detects faces in one image; batch ``b`` means ``b`` images in a row.
    """

    def __init__(self, detector: Any, image: np.ndarray) -> None:
        self.detector = detector
        self.image = image
        self.backend = detector.backend
        self.precision = detector.precision
        self.target = "x86"
        self.artifact_bytes, self.fidelity = _net_packages(detector.model, detector.backend, detector.precision)
        self._last: dict[str, int] = {}

    @property
    def stage_times_ns(self) -> Mapping[str, int]:
        """Stage times of the last :meth:`run`, in ns (the stage protocol)."""
        return self._last

    def example_inputs(self, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
        """``batch`` copies of the benchmark image (the RNG is unused: real images only)."""
        return [self.image] * batch

    def run(self, images: list[np.ndarray]) -> list[Any]:
        """Detect faces in each image; records per-stage times."""
        total: dict[str, float] = {}
        out = []
        for image in images:
            dets, times = self.detector.profile(image)
            out.append(dets)
            for k, v in times.items():
                if k != "other":
                    total[k] = total.get(k, 0.0) + v
        self._last = {k: int(v * 1e9) for k, v in total.items()}
        return out

    def close(self) -> None:
        self.detector.close()


def _net_packages(model: str, backend: str, precision: str) -> tuple[int | None, dict[str, Any] | None]:
    """Total size of the detector's three nets' packages and their fidelity reports merged (worst
    cosine per output, ``passed`` only when every net passed)."""
    from .. import models
    from ..manifest import Manifest
    from ..models.face_detectors import get_face_detector
    from .variants import dir_size_bytes

    size, outputs, passed = 0, {}, True
    try:
        for net in get_face_detector(model).nets:
            pkg = models.package_dir(net, backend, precision)
            size += dir_size_bytes(pkg)
            fid = Manifest.read(pkg).fidelity or {}
            for out, m in (fid.get("outputs") or {}).items():
                outputs[f"{net}/{out}"] = m
            passed = passed and bool(fid.get("passed", False))
    except (OSError, ValueError):
        return None, None
    return size, ({"outputs": outputs, "passed": passed, "top1_agreement": None} if outputs else None)


def face_detector(
    *,
    backend: str = "auto",
    precision: str = "auto",
    image: str | None = None,
    num_threads: int | None = None,
    **options: Any,
) -> FaceDetectorBench:
    """Factory: a :class:`FaceDetectorBench` around ``lanner.FaceDetector``.

    Args:
        backend, precision, num_threads: passed to ``lanner.FaceDetector`` (its nets are
            compiled into the user cache on first use; run ``lanner models build`` first so
            cold start measures loading, not compiling).
        image: path of the image to detect in (default: the detector's bundled sample).
        **options: other ``FaceDetector`` options (``min_face_size``, ``thresholds``, ...).

    Raises:
        ImportError: this Lanner build has no face detector.
        FileNotFoundError: no such image file.
        ValueError: a folder, or a file that is not an image OpenCV decodes.
    """
    try:
        from .. import FaceDetector
    except ImportError as exc:
        raise ImportError("--pipeline face needs lanner.FaceDetector, which this build does not have") from exc
    import cv2

    path = Path(image) if image else Path(__file__).resolve().parent.parent / "face" / "data" / "astronaut.jpg"
    existing_file(path, "image file")
    img = cv2.imread(str(path))
    if img is None:
        raise ValueError(f"cannot read {path} as an image (OpenCV cannot decode it)")
    detector = FaceDetector(backend=backend, precision=precision, num_threads=num_threads, **options)
    return FaceDetectorBench(detector, img)
