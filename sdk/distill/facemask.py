"""The facemask-voc folder (issue 15): real photos of masked and unmasked faces with VOC boxes.

The folder holds ``images/*.jpg`` and ``annotations/*.xml`` (Pascal VOC; classes ``with_mask``,
``without_mask``, ``mask_weared_incorrect``), from the Kaggle "Face Mask Detection" set (andrewmvd,
listed as CC0). Its test split is defined here, once: :func:`facemask_split`.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["FACEMASK_CLASSES", "MASKED_CLASSES", "SPLITS", "AnnotatedPhoto", "facemask_split", "read_facemask"]

FACEMASK_CLASSES: tuple[str, ...] = ("with_mask", "without_mask", "mask_weared_incorrect")
# A mask worn below the nose still covers the mouth and chin: for detection it is a masked face.
MASKED_CLASSES: frozenset[str] = frozenset({"with_mask", "mask_weared_incorrect"})
SPLITS: tuple[str, ...] = ("train", "test")
_TEST_BUCKETS = 3  # of 10: sha1(stem) mod 10 < 3 puts 192 of the 617 photos (31.1%) in the test split


def facemask_split(filename: str) -> str:
    """The facemask-voc split of a photo: ``"test"`` iff int(sha1(stem)[:8], 16) mod 10 < 3, else ``"train"``.

    The stem (file name without folder and extension) is hashed, so ``x.png`` and its re-encoded
    ``x.jpg`` fall in the same split. Never train on the test split.

    Args:
        filename: the photo's file name (a path is accepted; only its stem counts).

    Returns:
        ``"train"`` or ``"test"``.

    Raises:
        TypeError: filename is not a string.
        ValueError: an empty file name.
    """
    if not isinstance(filename, str):
        raise TypeError(f"filename should be a str, got {type(filename).__name__}")
    stem = Path(filename).stem
    if not stem:
        raise ValueError(f"filename should name a file, got {filename!r}")
    return "test" if int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16) % 10 < _TEST_BUCKETS else "train"


@dataclass(frozen=True)
class AnnotatedPhoto:
    """One facemask-voc photo and its boxes (frozen: safe to share between threads).

    Attributes:
        image_path: the photo.
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` pixels (VOC's inclusive corners, as written).
        labels: N class names from :data:`FACEMASK_CLASSES`.
    """

    image_path: Path
    boxes: np.ndarray
    labels: tuple[str, ...]

    @property
    def masked(self) -> np.ndarray:
        """(N,) bool, boxes of :data:`MASKED_CLASSES`."""
        return np.array([label in MASKED_CLASSES for label in self.labels], bool)


def read_facemask(data_dir: str | Path, split: str) -> list[AnnotatedPhoto]:
    """Read one split of the facemask-voc folder, sorted by file name.

    Args:
        data_dir: the facemask-voc folder (``images/`` and ``annotations/`` inside).
        split: ``"train"`` or ``"test"`` (:func:`facemask_split`).

    Returns:
        The split's photos with their boxes.

    Raises:
        ValueError: unknown split, a malformed annotation, or an unknown class.
        FileNotFoundError: the folder, an annotation folder or a photo is missing.
    """
    if split not in SPLITS:
        raise ValueError(f"split should be one of {SPLITS}, got {split!r}")
    data_dir = Path(data_dir)
    annotations = data_dir / "annotations"
    if not annotations.is_dir():
        raise FileNotFoundError(f"{data_dir} is not a facemask-voc folder: expected {annotations}/*.xml")
    photos = []
    for xml in sorted(annotations.glob("*.xml")):
        photo = _read_annotation(xml, data_dir / "images")
        if facemask_split(photo.image_path.name) == split:
            photos.append(photo)
    return photos


def _read_annotation(xml: Path, images: Path) -> AnnotatedPhoto:
    try:
        root = ET.parse(xml).getroot()
        filename = root.findtext("filename", "").strip()
        boxes, labels = [], []
        for obj in root.iter("object"):
            label = (obj.findtext("name") or "").strip()
            if label not in FACEMASK_CLASSES:
                raise ValueError(f"class should be one of {FACEMASK_CLASSES}, got {label!r}")
            box = obj.find("bndbox")
            boxes.append([float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
            labels.append(label)
    except (ET.ParseError, AttributeError, TypeError) as exc:
        raise ValueError(f"{xml} is not a VOC annotation: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{xml}: {exc}") from None
    image_path = images / filename
    if not filename or not image_path.is_file():
        raise FileNotFoundError(f"{xml} names the photo {filename!r}, not found in {images}")
    return AnnotatedPhoto(image_path, np.array(boxes, np.float32).reshape(-1, 4), tuple(labels))
