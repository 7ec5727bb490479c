"""A tiny training set built from images shipped in scikit-image (no data folder needed).

scikit-image's ``lfw_subset`` holds 100 LFW faces at 25x25 (grey, no identities). Each face gets
fixed landmarks at the 25x25 crops' common eye/nose/mouth positions and an "identity" of its own,
whose target is a seeded random unit vector: enough to test the loop's mechanics (the losses go
down, resume equals an uninterrupted run), not the quality of a student.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

# Landmarks of the lfw_subset crops (left eye, right eye, nose, mouth corners), in 25x25 pixels.
LFW_SUBSET_LANDMARKS = np.array([[8.0, 9.5], [16.0, 9.5], [12.0, 13.5], [9.0, 17.5], [15.0, 17.5]], np.float32)


@pytest.fixture(scope="session")
def tiny_train_data():
    from lanner.distill import TrainData

    faces = skdata.lfw_subset()[:40]
    crops = np.repeat((faces * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=3)
    n = len(crops)
    identities = np.array([f"id{i // 2:02d}" for i in range(n)])  # two photos per "identity"
    rng = np.random.default_rng(0)
    per_id = rng.normal(size=(n // 2, 128)).astype(np.float32)
    targets = per_id[np.arange(n) // 2] + 0.3 * rng.normal(size=(n, 128)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    validation = np.zeros(n, bool)
    validation[32:] = True  # four identities held out
    return TrainData(
        crops=crops,
        landmarks=np.repeat(LFW_SUBSET_LANDMARKS[None], n, 0),
        face_widths=np.full(n, 14.0, np.float32),
        identities=identities,
        targets=targets,
        train=np.ones(n, bool),
        validation=validation,
    )
