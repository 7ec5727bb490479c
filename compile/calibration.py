"""Samples for calibration and fidelity checks: a folder of images (with the model's
preprocessing), ``.npy``/``.npz`` arrays, or seeded random inputs.

Preprocessing dict (stored in the manifest, applied to calibration images here and by the
caller at run time)::

    {"color": "rgb" | "bgr" | "gray",   # channel order fed to the model (default "rgb")
     "size": [height, width],           # resize target (default: the input's fixed H, W)
     "scale": 1/255,                    # multiply pixel values first (default 1/255)
     "mean": [...], "std": [...],       # then (x - mean) / std per channel (default 0, 1)
     "layout": "nchw" | "nhwc"}         # default "nchw"
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lanner.manifest import TensorSpec

__all__ = ["Feed", "load_calibration", "random_samples", "preprocess_image", "concrete_shape", "check_preprocessing"]

Feed = dict[str, np.ndarray]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


def concrete_shape(spec: TensorSpec, sample_shape: Sequence[int] | None) -> tuple[int, ...]:
    """A concrete shape for sample generation: ``sample_shape`` if given, else the spec with a
    dynamic leading (batch) axis set to 1.

    Raises:
        ValueError: a dynamic non-leading axis with no ``sample_shape``, or a sample shape that
            contradicts the spec.
    """
    if sample_shape is not None:
        shape = tuple(int(d) for d in sample_shape)
        if len(shape) != len(spec.shape) or any(isinstance(w, int) and w != g for w, g in zip(spec.shape, shape)):
            raise ValueError(f"sample shape for {spec.name!r} must fit {spec.shape}, got {shape}")
        return _bounded(spec, shape)
    shape = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int):
            shape.append(dim)
        elif axis == 0:
            shape.append(1)
        else:
            raise ValueError(
                f"input {spec.name!r} has a dynamic axis {axis} ({dim!r}) in shape {spec.shape}: pass "
                f"sample_shapes={{{spec.name!r}: (...)}} or calibration arrays to pick concrete sizes"
            )
    return _bounded(spec, tuple(shape))


MAX_SAMPLE_ELEMENTS = 2**28  # one made-up sample of at most 1 GiB of float32


def _bounded(spec: TensorSpec, shape: tuple[int, ...]) -> tuple[int, ...]:
    count = math.prod(shape)
    if any(d < 1 for d in shape) or count > MAX_SAMPLE_ELEMENTS:
        raise ValueError(
            f"samples for {spec.name!r} would have shape {shape} ({count:,} values): each axis should be >= 1 and "
            f"a sample at most {MAX_SAMPLE_ELEMENTS:,} values; pass smaller sample shapes or calibration arrays"
        )
    return shape


def random_samples(
    inputs: Sequence[TensorSpec], count: int, *, seed: int = 0, sample_shapes: Mapping[str, Sequence[int]] | None = None
) -> list[Feed]:
    """Seeded standard-normal float inputs (uniform ints for integer inputs)."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        feed = {}
        for spec in inputs:
            shape = concrete_shape(spec, (sample_shapes or {}).get(spec.name))
            if np.dtype(spec.dtype).kind == "f":
                feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
            else:
                feed[spec.name] = rng.integers(0, 2, size=shape).astype(spec.dtype)
        samples.append(feed)
    return samples


def check_preprocessing(preprocessing: Any) -> dict | None:
    """Check a preprocessing dict (module docstring) before anything is built with it or written to a manifest.

    Keys other than the documented ones are kept as they are (the manifest's field is free-form) but must be
    JSON without NaN or infinities, like the whole dict.

    Returns:
        A copy of the dict, or None.

    Raises:
        TypeError: not a mapping (a JSON object).
        ValueError: a documented key with a bad value (a std of 0 divided by zero; a NaN mean went into the
            manifest as ``NaN``, which is not JSON), or a value JSON cannot hold.
    """
    if preprocessing is None:
        return None
    if not isinstance(preprocessing, Mapping):
        raise TypeError(f"preprocessing should be a dict (a JSON object), got {type(preprocessing).__name__}")
    prep = dict(preprocessing)
    try:
        json.dumps(prep, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"preprocessing should be JSON without NaN or infinities: {exc}") from None

    def numbers(key: str, positive: bool) -> None:
        value = prep[key]
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise ValueError(f"preprocessing {key} should be a number or a list of numbers, got {value!r}")
        if positive and any(v == 0 for v in values):
            raise ValueError(f"preprocessing {key} should be non-zero, got {value!r}")

    if prep.get("color", "rgb") not in ("rgb", "bgr", "gray"):
        raise ValueError(f"preprocessing color must be rgb, bgr or gray, got {prep['color']!r}")
    if prep.get("layout", "nchw") not in ("nchw", "nhwc"):
        raise ValueError(f"preprocessing layout must be nchw or nhwc, got {prep['layout']!r}")
    if "size" in prep:
        size = prep["size"]
        if not (
            isinstance(size, list)
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in size)
        ):
            raise ValueError(f"preprocessing size should be [height, width], ints in [1, 16384], got {size!r}")
    for key, positive in (("scale", True), ("mean", False), ("std", True)):
        if key in prep:
            numbers(key, positive)
    return prep


def preprocess_image(image_bgr: np.ndarray, preprocessing: Mapping[str, Any], size_hw: tuple[int, int]) -> np.ndarray:
    """Apply ``preprocessing`` to one BGR uint8 image; returns a float32 (1, C, H, W) or (1, H, W, C) array."""
    import cv2

    color = preprocessing.get("color", "rgb")
    if color == "rgb":
        image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    elif color == "gray":
        image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)[..., None]
    elif color == "bgr":
        image = image_bgr
    else:
        raise ValueError(f"preprocessing color must be rgb, bgr or gray, got {color!r}")
    h, w = size_hw
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    if image.ndim == 2:
        image = image[..., None]
    x = image.astype(np.float32) * np.float32(preprocessing.get("scale", 1.0 / 255.0))
    x = (x - np.asarray(preprocessing.get("mean", 0.0), np.float32)) / np.asarray(
        preprocessing.get("std", 1.0), np.float32
    )
    layout = preprocessing.get("layout", "nchw")
    if layout == "nchw":
        x = x.transpose(2, 0, 1)
    elif layout != "nhwc":
        raise ValueError(f"preprocessing layout must be nchw or nhwc, got {layout!r}")
    return np.ascontiguousarray(x[None])


def load_calibration(
    calib: str | os.PathLike[str] | Sequence[Feed],
    inputs: Sequence[TensorSpec],
    preprocessing: Mapping[str, Any] | None,
) -> list[Feed]:
    """Load calibration samples.

    Args:
        calib: a folder of images (single-input image models: needs the input's H, W fixed or
            ``preprocessing["size"]``), a folder of ``.npy`` files (single-input models: one
            sample each, with the batch axis) or ``.npz`` files (one array per input name), or
            a list of ready feeds ``{name: array}``.
        inputs: the model's input specs.
        preprocessing: see the module docstring.

    Returns:
        Feeds in file-name order.

    Raises:
        FileNotFoundError: no such folder. ValueError: empty folder, mixed or unusable files.
    """
    if not isinstance(calib, (str, os.PathLike)):
        samples = [dict(feed) for feed in calib]
        if not samples:
            raise ValueError("calibration sample list is empty")
        return samples
    root = Path(calib)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration folder {str(calib)!r} does not exist")
    files = sorted(p for p in root.iterdir() if p.is_file())
    arrays = [p for p in files if p.suffix in (".npy", ".npz")]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if arrays and images:
        raise ValueError(f"calibration folder {root} mixes images and arrays; use one kind")
    if arrays:
        return [_load_array(p, inputs) for p in arrays]
    if not images:
        raise ValueError(f"calibration folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}) or .npy/.npz arrays")
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ValueError("image calibration needs a model with one 4-d image input; pass .npz arrays instead")
    spec = inputs[0]
    prep = dict(preprocessing or {})
    layout = prep.get("layout", "nchw")
    hw_axes = (2, 3) if layout == "nchw" else (1, 2)
    size = prep.get("size") or [spec.shape[hw_axes[0]], spec.shape[hw_axes[1]]]
    if not all(isinstance(d, int) for d in size):
        raise ValueError(f"input {spec.name!r} has dynamic height/width: set preprocessing['size'] = [h, w]")
    import cv2

    samples = []
    for path in images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode calibration image {path}")
        samples.append({spec.name: preprocess_image(image, prep, (int(size[0]), int(size[1]))).astype(spec.dtype)})
    return samples


def _load_array(path: Path, inputs: Sequence[TensorSpec]) -> Feed:
    if path.suffix == ".npy":
        if len(inputs) != 1:
            raise ValueError(
                f"{path.name}: .npy samples need a single-input model; use .npz with keys {[s.name for s in inputs]}"
            )
        return {inputs[0].name: np.load(path, allow_pickle=False).astype(inputs[0].dtype, copy=False)}
    with np.load(path, allow_pickle=False) as data:
        missing = [s.name for s in inputs if s.name not in data]
        if missing:
            raise ValueError(f"{path.name}: missing arrays for inputs {missing} (has {sorted(data.files)})")
        return {s.name: data[s.name].astype(s.dtype, copy=False) for s in inputs}
